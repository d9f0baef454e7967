"""From the feedback parameters received to the paper's problem instance, as text.

The report has the sections #Instruction #Code #Documentation #Variables
#Constraints #Inputs #Others #Outputs #Feedback. Rendering is linear in the graph;
long graphs are cut to a token budget by keeping the first and last entries of the
long sections whole and naming what was left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from trace_control.optim.prompts import DEFAULT_INSTRUCTION, SECTIONS
from trace_control.optim.render import compact, compact_delta, estimate_tokens
from trace_control.trace import ExceptionNode, Node, ParameterNode


def show(value: object, max_chars: int) -> str:
    """Top-level text is shown as it is (errors keep their line breaks); the rest compactly."""
    if isinstance(value, str):
        return value if len(value) <= max_chars else value[:max_chars] + "... (cut)"
    return compact(value, max_chars)


def is_code(parameter: Node) -> bool:
    """True for a bundle's ``__code`` parameter."""
    return bool(parameter.info.get("fn_name")) if parameter.info else False


def variable_text(parameter: ParameterNode, max_chars: int = 4000) -> str:
    if is_code(parameter):
        return f"(code) {parameter.py_name}:\n{parameter._data}".rstrip()
    return f"({type(parameter._data).__name__}) {parameter.py_name} = {compact(parameter._data, max_chars)}"


@dataclass
class ProblemInstance:
    """The sections of the report, each a list of entries (lines or blocks)."""

    instruction: str
    code: list[str] = field(default_factory=list)
    documentation: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)

    def render(self, masked: Iterable[str] = (), max_tokens: int | None = None,
               keep_ends: int = 4) -> str:
        """The report as text. ``masked`` names sections to withhold; ``max_tokens`` cuts
        the middle of #Code, #Others and #Inputs until the estimate fits."""
        hidden = {normalize_section(name) for name in masked}
        text = self._render(hidden, None)
        if max_tokens is None or estimate_tokens(text) <= max_tokens:
            return text
        keep = max(len(self.code), len(self.others), len(self.inputs)) // 2
        while keep > keep_ends and estimate_tokens(text) > max_tokens:
            keep = max(keep_ends, keep // 2)
            text = self._render(hidden, keep)
        return text

    def _render(self, hidden: set[str], keep: int | None) -> str:
        parts = []
        for section in SECTIONS:
            entries = [self.instruction] if section == "Instruction" else getattr(self, section.lower())
            if section in hidden:
                body = "(not shown)"
            else:
                if keep is not None and section in ("Code", "Others", "Inputs"):
                    entries = _elide(entries, keep)
                body = "\n".join(entries) if entries else "(none)"
            parts.append(f"#{section}\n{body}")
        return "\n\n".join(parts)


def _elide(entries: list[str], keep: int) -> list[str]:
    if len(entries) <= 2 * keep + 1:
        return entries
    left_out = len(entries) - 2 * keep
    note = f"... ({left_out} entries in the middle left out to keep the report short) ..."
    return entries[:keep] + [note] + entries[-keep:]


def normalize_section(name: str) -> str:
    cleaned = name.strip().lstrip("#").strip().lower()
    for section in SECTIONS:
        if section.lower() == cleaned:
            return section
    raise ValueError(f"unknown section {name!r}; sections are {', '.join(SECTIONS)}")


def build_problem(parameters: list[ParameterNode], instruction: str | None = None,
                  value_chars: int = 1500) -> ProblemInstance:
    """Collect the subgraphs and feedback the ``parameters`` received into a report."""
    variables = {id(p): p for p in parameters}
    nodes: dict[int, Node] = {}
    outputs: dict[int, Node] = {}
    feedbacks: list[str] = []
    for parameter in parameters:
        for record in parameter.feedback:
            for current in record.nodes:
                nodes.setdefault(id(current), current)
            outputs.setdefault(id(record.output), record.output)
            text = record.feedback if isinstance(record.feedback, str) else compact(record.feedback)
            if text not in feedbacks:
                feedbacks.append(text)
    ordered = sorted(nodes.values(), key=lambda n: n.level)  # stable: keeps discovery order per level
    problem = ProblemInstance(instruction=(instruction or DEFAULT_INSTRUCTION).strip())
    documented: set[str] = set()
    inputs_seen: set[int] = set()
    previous_by_op: dict[str, Node] = {}
    for current in ordered:
        if id(current) in variables:
            problem.variables.append(variable_text(current))
            if current.constraint:
                problem.constraints.append(f"{current.py_name}: {current.constraint}")
            continue
        if not current._parents:
            continue  # a root on a path is always a parameter; kept for other propagators
        arguments = ", ".join(f"{arg}={parent.py_name}" for arg, parent in current._inputs.items())
        op_name = current._base
        line = f"{current.py_name} = {op_name}({arguments})"
        if isinstance(current, ExceptionNode):
            line += "  # raised an error"
        problem.code.append(line)
        if op_name not in documented:
            documented.add(op_name)
            problem.documentation.append(current.description)
        for parent in current._parents:
            if id(parent) in nodes or id(parent) in inputs_seen:
                continue
            inputs_seen.add(id(parent))
            label = "(code) " if is_code(parent) else ""
            problem.inputs.append(f"{label}{parent.py_name} = {show(parent._data, value_chars)}")
        if id(current) in outputs:
            continue
        previous = previous_by_op.get(op_name)
        if previous is None:
            rendered = show(current._data, value_chars)
        else:
            rendered = compact_delta(current._data, previous._data, previous.py_name, value_chars)
        previous_by_op[op_name] = current
        problem.others.append(f"{current.py_name} = {rendered}")
    for output in outputs.values():
        problem.outputs.append(f"{output.py_name} = {show(output._data, value_chars)}")
    problem.feedback = feedbacks
    return problem
