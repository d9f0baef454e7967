"""OPRO, the baseline: the LLM sees parameter values and feedback, never the trace."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from trace_control.llm import LLMClient
from trace_control.optim.base import Optimizer
from trace_control.optim.problem import variable_text
from trace_control.optim.prompts import OPRO_SYSTEM
from trace_control.optim.render import compact
from trace_control.optim.update import CodeChecker
from trace_control.trace import Module, ParameterNode


class OPRO(Optimizer):
    """Optimization by prompting: current values, their feedback, and a history of both."""

    system_prompt = OPRO_SYSTEM

    def __init__(self, parameters: Iterable[ParameterNode] | Module, llm: LLMClient | None = None,
                 memory_size: int = 10, objective: str | None = None, num_candidates: int = 1,
                 code_checker: CodeChecker | None = None) -> None:
        super().__init__(parameters, llm, objective, num_candidates, code_checker)
        self.memory_size = memory_size
        self.history: deque[tuple[str, str]] = deque(maxlen=memory_size or None)
        self._current: tuple[str, str] | None = None

    def build_prompt(self) -> str:
        feedback: list[str] = []
        for parameter in self.parameters:
            for record in parameter.feedback:
                text = record.feedback if isinstance(record.feedback, str) else compact(record.feedback)
                if text not in feedback:
                    feedback.append(text)
        variables = "\n".join(variable_text(p) for p in self.parameters)
        current_feedback = "\n".join(feedback) or "(no feedback was given)"
        self._current = (variables, current_feedback)
        parts = [f"#Goal\n{self.objective or 'Improve the solution according to the feedback.'}"]
        if self.history:
            past = "\n\n".join(f"Values:\n{v}\nFeedback: {f}" for v, f in self.history)
            parts.append(f"#Earlier values and feedback (oldest first)\n{past}")
        parts.append(f"#Current values\n{variables}")
        parts.append(f"#Feedback on the current values\n{current_feedback}")
        return "\n\n".join(parts)

    def _memory(self) -> deque:
        return self.history

    def remember(self) -> None:
        if self._current is not None:
            self.history.append(self._current)
