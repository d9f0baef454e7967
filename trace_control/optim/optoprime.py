"""OptoPrime: the paper's optimizer. It shows the LLM the trace and the feedback."""

from __future__ import annotations

from collections.abc import Iterable

from trace_control.llm import LLMClient
from trace_control.optim.base import Optimizer
from trace_control.optim.compose import compose
from trace_control.optim.memory import memory_part
from trace_control.optim.problem import build_problem, normalize_section
from trace_control.optim.prompts import DEFAULT_INSTRUCTION, MEMORY, OPTOPRIME_SYSTEM
from trace_control.optim.report import ORDER, report_parts
from trace_control.optim.update import CodeChecker
from trace_control.trace import Module, ParameterNode


class OptoPrime(Optimizer):
    """Renders the parameters' minimal subgraphs as a report and asks for new values.

    ``mask``: sections to withhold (the paper's "Masked" ablation hides Inputs, Others,
    Code and Documentation). Within ``max_prompt_tokens`` the report keeps the
    instruction, variables and constraints whole; feedback, outputs, documentation and
    memory get bounded shares, and the trace the rest, condensed by meaning (see
    :mod:`trace_control.optim.condense`). ``value_chars`` caps each value shown.
    """

    system_prompt = OPTOPRIME_SYSTEM
    default_objective = DEFAULT_INSTRUCTION  # trace-opt's name: a hint is often prepended to it

    def __init__(self, parameters: Iterable[ParameterNode] | Module, llm: LLMClient | None = None,
                 memory_size: int = 0, objective: str | None = None, mask: Iterable[str] = (),
                 max_prompt_tokens: int | None = 6000, num_candidates: int = 1,
                 code_checker: CodeChecker | None = None, value_chars: int = 1500) -> None:
        super().__init__(parameters, llm, memory_size, objective, max_prompt_tokens, num_candidates, code_checker)
        self.mask = [normalize_section(name) for name in mask]
        self.value_chars = value_chars

    def build_prompt(self, problems: list[str], budget: int | None) -> tuple[str, list[str]]:
        problem = build_problem(self.parameters, self.objective, self.value_chars)
        memory = memory_part(MEMORY, self.memory, self.current_values(), share=0.35) if len(self.memory) else None
        parts = report_parts(problem, set(self.mask), self.problems_text(problems), memory)
        return compose(parts, ORDER, budget)
