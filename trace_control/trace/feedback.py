"""Feedback records, their merge, and the trace read as a function (trace-opt's views).

A :class:`Feedback` is what one backward call gave one parameter: the user's
feedback and the parameter's minimal subgraph; a node keeps its records in a
:class:`FeedbackLog`. ``sum_feedback`` merges records;
``node_to_function_feedback`` reads one as a small program: a call per operation,
the inputs it read (roots), intermediate values, the output and the documentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral
from typing import TYPE_CHECKING, Any

from trace_control.trace.errors import TraceError

if TYPE_CHECKING:
    from trace_control.trace.nodes import MessageNode, Node


@dataclass
class Feedback:
    """What one backward call gave one parameter.

    ``output``: the node backward started from; ``feedback``: what the user passed
    (text, score, dict); ``nodes``: the parameter's minimal subgraph in topological
    order (the parameter first). ``user_feedback`` and ``graph`` are trace-opt's names.
    """

    output: Node | None
    feedback: Any
    nodes: list[Node]

    @property
    def user_feedback(self) -> Any:
        return self.feedback

    @property
    def graph(self) -> list[tuple[int, Node]]:
        """``(level, node)`` for the subgraph and the inputs its operations read, roots first."""
        seen: set[int] = set()
        found: list[Node] = []
        for current in self.nodes:
            for member in (*current._parents, current):
                if id(member) not in seen:
                    seen.add(id(member))
                    found.append(member)
        found.sort(key=lambda n: n.level)
        return [(member.level, member) for member in found]

    def __len__(self) -> int:
        return len(self.nodes)

    def __add__(self, other: Feedback) -> Feedback:
        """The union of two records of one feedback (the subgraphs merged, in order)."""
        if not isinstance(other, Feedback):
            return NotImplemented
        if self.feedback is not None and other.feedback is not None and self.feedback != other.feedback:
            raise TraceError("cannot merge records of different feedback "
                             f"({self.feedback!r:.60} and {other.feedback!r:.60}); read node.feedback for each")
        seen = {id(n) for n in self.nodes}
        nodes = self.nodes + [n for n in other.nodes if id(n) not in seen]
        nodes.sort(key=lambda n: n.level)
        feedback = self.feedback if self.feedback is not None else other.feedback
        return Feedback(self.output if self.output is not None else other.output, feedback, nodes)

    def __radd__(self, other: Any) -> Feedback:
        if other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def visualize(self) -> str:
        """Graphviz (dot) text of the subgraph."""
        from trace_control.trace.visualize import to_dot

        return to_dot([member for _, member in self.graph])

    @staticmethod
    def expand(operation: MessageNode) -> Feedback:
        """The graph inside an operation bundled with ``traceable_code``: its body's subgraph.

        Holds the nodes on a path from the body's inputs or the parameters it read to
        the body's output; empty for other operations.
        """
        from trace_control.trace.nodes import Node, ancestors

        info = operation.info if isinstance(operation.info, dict) else {}
        inner = info.get("output")
        if not isinstance(inner, Node):
            return Feedback(None, None, [])
        inputs = info.get("inputs", {})
        roots = {id(n) for n in (*inputs.get("args", ()), *inputs.get("kwargs", {}).values()) if isinstance(n, Node)}
        roots |= {id(n) for n in inner.parameter_dependencies | inner.expandable_dependencies}
        reached: set[int] = set()
        nodes = []
        for current in ancestors(inner):
            if id(current) in roots or any(id(parent) in reached for parent in current._parents):
                reached.add(id(current))
                nodes.append(current)
        return Feedback(inner, "", nodes)


class FeedbackLog(list):
    """The :class:`Feedback` records a node received, in arrival order.

    Also readable as trace-opt's mapping ``{child: [records]}`` (``items()``,
    ``keys()``, ``values()``, ``log[child]``): each record is listed under the
    children of the node through which it arrived (under the output when backward
    started at the node itself).
    """

    __slots__ = ()

    def by_child(self) -> dict[Node, list]:
        """``{child: [records]}``, children in order of first arrival."""
        grouped: dict[Node, list] = {}
        for record in self:
            receiver = record.nodes[0] if record.nodes else None
            children = [n for n in record.nodes if n.feeds_from(receiver)] if receiver is not None else []
            for child in children or [record.output]:
                grouped.setdefault(child, []).append(record)
        return grouped

    def items(self):  # noqa: ANN201 - a dict view
        return self.by_child().items()

    def keys(self):  # noqa: ANN201
        return self.by_child().keys()

    def values(self):  # noqa: ANN201
        return self.by_child().values()

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, (Integral, slice)):  # a child node
            return self.by_child()[key]
        return super().__getitem__(key)


def sum_feedback(nodes: list[Node]) -> Feedback:
    """All the feedback records of ``nodes`` merged into one (see :meth:`Feedback.__add__`)."""
    merged = Feedback(None, None, [])
    for current in nodes:
        for record in current.feedback:
            merged = merged + record
    return merged


@dataclass
class FunctionFeedback:
    """A feedback record read as a program (trace-opt's FunctionFeedback).

    ``graph``: ``(level, "out = op(arg=in, ...)")`` per operation, in order;
    ``documentation``: op name -> description; ``roots``: inputs (name -> (value,
    constraint)); ``others``: intermediate values; ``output``: the final value;
    ``user_feedback``: the feedback.
    """

    graph: list[tuple[int, str]] = field(default_factory=list)
    documentation: dict[str, str] = field(default_factory=dict)
    others: dict[str, tuple[Any, str | None]] = field(default_factory=dict)
    roots: dict[str, tuple[Any, str | None]] = field(default_factory=dict)
    output: dict[str, tuple[Any, str | None]] = field(default_factory=dict)
    user_feedback: Any = None


def call_text(operation: Node) -> str:
    """The operation as one line of code: ``"add0 = add(x=a0, y=b0)"``."""
    arguments = ", ".join(f"{arg}={parent.py_name}" for arg, parent in (operation._inputs or {}).items())
    return f"{operation.py_name} = {operation.op_name}({arguments})"


def node_to_function_feedback(record: Feedback) -> FunctionFeedback:
    """Read ``record`` (one parameter's feedback, or a merge of several) as a program."""
    graph = record.graph
    last_level = graph[-1][0] if graph else 0
    in_subgraph = {id(n) for n in record.nodes}
    view = FunctionFeedback(user_feedback=record.feedback)
    for level, current in graph:
        entry = (current._data, current.constraint)
        if not current._parents or id(current) not in in_subgraph:
            view.roots[current.py_name] = entry
            continue
        view.documentation[current.op_name] = current.description
        view.graph.append((level, call_text(current)))
        (view.output if level == last_level else view.others)[current.py_name] = entry
    return view
