"""OptoPrime's report: the paper's nine sections (plus memory and problems) as parts of a prompt."""

from __future__ import annotations

from trace_control.optim.compose import Part, fixed_part, text_part
from trace_control.optim.condense import TRACE_SECTIONS, TraceCondenser
from trace_control.optim.problem import ProblemInstance, show
from trace_control.optim.prompts import MEMORY, NO_FEEDBACK, PROBLEMS, SECTIONS

ORDER = [*SECTIONS, MEMORY, PROBLEMS]


def report_parts(problem: ProblemInstance, hidden: set[str], problems_text: str = "",
                 memory: Part | None = None) -> list[Part]:
    """The parts in priority order: instruction, variables and constraints whole; feedback,
    problems, outputs, documentation and memory with bounded shares; the trace takes the rest."""

    def visible(title: str, entries: list[str]) -> str:
        return "(not shown)" if title in hidden else "\n".join(entries) or "(none)"

    outputs = [f"{output.py_name} = {show(output.data, problem.value_chars)}" for output in problem.outputs]
    parts = [
        fixed_part("Instruction", visible("Instruction", [problem.instruction])),
        fixed_part("Variables", visible("Variables", problem.variables)),
        fixed_part("Constraints", visible("Constraints", problem.constraints)),
        text_part("Feedback", visible("Feedback", problem.feedback or [NO_FEEDBACK]), share=0.3),
    ]
    if problems_text:
        parts.append(text_part(PROBLEMS, problems_text, share=0.1))
    parts += [text_part("Outputs", visible("Outputs", outputs), share=0.15),
              text_part("Documentation", visible("Documentation", problem.documentation), share=0.15)]
    if memory is not None:
        parts.append(memory)
    parts.append(Part(TRACE_SECTIONS, TraceCondenser(problem, hidden).fit))
    return parts
