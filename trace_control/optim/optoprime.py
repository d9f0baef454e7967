"""OptoPrime: the paper's optimizer. It shows the LLM the trace and the feedback."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from trace_control.llm import LLMClient
from trace_control.optim.base import Optimizer
from trace_control.optim.problem import build_problem, normalize_section, variable_text
from trace_control.optim.prompts import OPTOPRIME_SYSTEM
from trace_control.optim.update import CodeChecker
from trace_control.trace import Module, ParameterNode


class OptoPrime(Optimizer):
    """Renders each parameter's minimal subgraph as a report and asks for new values.

    ``memory_size``: how many past (variables, feedback) pairs to show.
    ``mask``: sections to withhold (the paper's "Masked" ablation hides Inputs, Others,
    Code and Documentation). ``max_prompt_tokens``: the report's budget; longer graphs
    keep their first and last entries and say what was left out.
    """

    system_prompt = OPTOPRIME_SYSTEM

    def __init__(self, parameters: Iterable[ParameterNode] | Module, llm: LLMClient | None = None,
                 memory_size: int = 0, objective: str | None = None, mask: Iterable[str] = (),
                 max_prompt_tokens: int | None = 6000, num_candidates: int = 1,
                 code_checker: CodeChecker | None = None, value_chars: int = 1500) -> None:
        super().__init__(parameters, llm, objective, num_candidates, code_checker)
        if memory_size < 0:
            raise ValueError("memory_size must be 0 or more")
        self.memory_size = memory_size
        self.memory: deque[tuple[str, str]] = deque(maxlen=memory_size or None)
        self.mask = [normalize_section(name) for name in mask]
        self.max_prompt_tokens = max_prompt_tokens
        self.value_chars = value_chars
        self._current: tuple[str, str] | None = None

    def build_prompt(self) -> str:
        problem = build_problem(self.parameters, self.objective, self.value_chars)
        if not any(parameter.feedback for parameter in self.parameters):
            problem.feedback = ["(no feedback was given; call backward before step)"]
        report = problem.render(self.mask, self.max_prompt_tokens)
        variables = "\n".join(variable_text(p) for p in self.parameters)
        self._current = (variables, "\n".join(problem.feedback))
        if self.memory_size and self.memory:
            past = "\n\n".join(f"Attempt {i}:\n{v}\nFeedback: {f}" for i, (v, f) in enumerate(self.memory, 1))
            report += f"\n\n#Past attempts (oldest first)\n{past}"
        return report

    def _memory(self) -> deque:
        return self.memory

    def remember(self) -> None:
        if self.memory_size and self._current is not None:
            self.memory.append(self._current)
