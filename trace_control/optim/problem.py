"""From the feedback parameters received to the paper's problem instance.

The report has the sections #Instruction #Code #Documentation #Variables
#Constraints #Inputs #Others #Outputs #Feedback. :func:`build_problem` collects what
they show from the parameters' minimal subgraphs; :mod:`trace_control.optim.condense`
turns the operations into #Code, #Inputs and #Others within a token allowance.
Nodes are read through their public accessors only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from trace_control.optim.prompts import DEFAULT_INSTRUCTION, SECTIONS
from trace_control.optim.render import clip, compact
from trace_control.trace import Node, ParameterNode


def show(value: object, max_chars: int) -> str:
    """Top-level text is shown as it is (errors keep their line breaks), a list of texts as
    lines; the rest compactly."""
    if isinstance(value, str):
        return clip(value, max_chars)
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
        return clip("\n".join(value), max_chars)
    return compact(value, max_chars)


def op_name(node: Node) -> str:
    """The operation that made ``node`` (the base of its name: ``step`` for ``step:3``)."""
    if hasattr(type(node), "op_name"):  # the engine's accessor, where it has one (never the node's
        return node.op_name              # attribute fallback, which would trace a getattr op)
    return node.name.rsplit(":", 1)[0]


def is_code(parameter: Node) -> bool:
    """True for a bundle's ``__code`` parameter."""
    return bool(parameter.info.get("fn_name")) if parameter.info else False


def variable_text(parameter: ParameterNode, max_chars: int = 4000) -> str:
    if is_code(parameter):
        return f"(code) {parameter.py_name}:\n{parameter.data}".rstrip()
    return f"({type(parameter.data).__name__}) {parameter.py_name} = {compact(parameter.data, max_chars)}"


def feedback_of(parameters: list[ParameterNode]) -> list[str]:
    """The distinct feedback texts the ``parameters`` received, in the order received."""
    texts: list[str] = []
    for parameter in parameters:
        for record in parameter.feedback:
            text = record.feedback if isinstance(record.feedback, str) else compact(record.feedback)
            if text not in texts:
                texts.append(text)
    return texts


@dataclass
class ProblemInstance:
    """What the report shows: texts per section, and the operations of the trace.

    ``operations`` are the non-parameter nodes of the subgraphs in execution order
    (each episode's chain together); ``outputs`` the nodes backward started from.
    """

    instruction: str
    variables: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    documentation: list[str] = field(default_factory=list)
    operations: list[Node] = field(default_factory=list)
    outputs: list[Node] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    value_chars: int = 1500

    def render(self, masked: Iterable[str] = (), max_tokens: int | None = None) -> str:
        """The report's sections as text (without memory), within ``max_tokens`` when given."""
        from trace_control.optim.compose import compose  # these build on this module
        from trace_control.optim.report import ORDER, report_parts

        hidden = {normalize_section(name) for name in masked}
        return compose(report_parts(self, hidden), ORDER, max_tokens)[0]


def execution_order(nodes: dict[int, Node], outputs: list[Node]) -> list[Node]:
    """``nodes`` parents first, each output's ancestry depth-first, so a chain stays together.

    (Ordering by depth alone would interleave the steps of episodes run side by side.)
    """
    ordered: list[Node] = []
    placed: set[int] = set()
    for output in outputs:
        stack: list[tuple[Node, bool]] = [(output, False)]
        while stack:
            current, expanded = stack.pop()
            if id(current) in placed:
                continue
            if expanded:
                placed.add(id(current))
                ordered.append(current)
                continue
            stack.append((current, True))
            for parent in reversed(current.parents):
                if id(parent) in nodes and id(parent) not in placed:
                    stack.append((parent, False))
    return ordered


def build_problem(parameters: list[ParameterNode], instruction: str | None = None,
                  value_chars: int = 1500) -> ProblemInstance:
    """Collect the subgraphs and feedback the ``parameters`` received into a problem instance."""
    variables = {id(p) for p in parameters}
    nodes: dict[int, Node] = {}
    outputs: dict[int, Node] = {}
    for parameter in parameters:
        for record in parameter.feedback:
            for current in record.nodes:
                nodes.setdefault(id(current), current)
            outputs.setdefault(id(record.output), record.output)
    problem = ProblemInstance(instruction=(instruction or DEFAULT_INSTRUCTION).strip(), value_chars=value_chars,
                              outputs=list(outputs.values()), feedback=feedback_of(parameters))
    documented: set[str] = set()
    for current in execution_order(nodes, problem.outputs):
        if id(current) in variables:
            problem.variables.append(variable_text(current))
            if current.constraint:
                problem.constraints.append(f"{current.py_name}: {current.constraint}")
        elif current.parents:  # a root on a path is always a parameter
            problem.operations.append(current)
            if op_name(current) not in documented:
                documented.add(op_name(current))
                problem.documentation.append(documentation(current, variables))
    return problem


def documentation(operation: Node, variables: set[int]) -> str:
    """The operation's description, or a pointer to the code variable whose docstring already says it."""
    text = operation.description
    name, _, doc = text.partition("] ")
    first_line = doc.strip().split("\n")[0].strip()
    for parent in operation.parents:
        if id(parent) in variables and is_code(parent) and first_line and first_line in parent.data:
            return f"{name}] the function in {parent.py_name}; its docstring says what it does"
    return text


def normalize_section(name: str) -> str:
    cleaned = name.strip().lstrip("#").strip().lower()
    for section in SECTIONS:
        if section.lower() == cleaned:
            return section
    raise ValueError(f"unknown section {name!r}; sections are {', '.join(SECTIONS)}")
