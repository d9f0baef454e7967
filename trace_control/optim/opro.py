"""OPRO, the baseline: the LLM sees parameter values and feedback, never the trace."""

from __future__ import annotations

from collections.abc import Iterable

from trace_control.llm import LLMClient
from trace_control.optim.base import Optimizer
from trace_control.optim.compose import compose, fixed_part, text_part
from trace_control.optim.memory import memory_part
from trace_control.optim.problem import variable_text
from trace_control.optim.prompts import OPRO_SYSTEM, PROBLEMS
from trace_control.optim.update import CodeChecker
from trace_control.trace import Module, ParameterNode

HISTORY = "Earlier values and feedback (oldest first)"
ORDER = ["Goal", HISTORY, "Current values", "Feedback on the current values", PROBLEMS]


class OPRO(Optimizer):
    """Optimization by prompting: current values, their feedback, and a history of both.

    The history is the shared memory of past attempts (``memory_size`` of them).
    """

    system_prompt = OPRO_SYSTEM

    def __init__(self, parameters: Iterable[ParameterNode] | Module, llm: LLMClient | None = None,
                 memory_size: int = 10, objective: str | None = None, max_prompt_tokens: int | None = 6000,
                 num_candidates: int = 1, code_checker: CodeChecker | None = None) -> None:
        super().__init__(parameters, llm, memory_size, objective, max_prompt_tokens, num_candidates, code_checker)

    def build_prompt(self, problems: list[str], budget: int | None) -> tuple[str, list[str]]:
        parts = [
            fixed_part("Goal", self.objective or "Improve the solution according to the feedback."),
            fixed_part("Current values", "\n".join(variable_text(p) for p in self.parameters)),
            text_part("Feedback on the current values", "\n".join(self.feedback_lines()), share=0.4),
        ]
        if problems:
            parts.append(text_part(PROBLEMS, self.problems_text(problems), share=0.1))
        if len(self.memory):
            parts.append(memory_part(HISTORY, self.memory, self.current_values(), share=1.0))
        return compose(parts, ORDER, budget)
