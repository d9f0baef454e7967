"""Optimizers that read traces and feedback and ask an LLM for better parameters."""

from trace_control.optim.base import Optimizer, Proposal, StepRecord
from trace_control.optim.opro import OPRO
from trace_control.optim.optoprime import OptoPrime
from trace_control.optim.parse import Answer, parse_answer
from trace_control.optim.problem import ProblemInstance, build_problem
from trace_control.optim.render import compact
from trace_control.optim.tokens import count_tokens, prompt_tokens, tokenizer_name
from trace_control.optim.update import check_code, convert

__all__ = [
    "OPRO", "Answer", "OptoPrime", "Optimizer", "ProblemInstance", "Proposal", "StepRecord", "build_problem",
    "check_code", "compact", "convert", "count_tokens", "parse_answer", "prompt_tokens", "tokenizer_name",
]
