"""Graphviz (dot) text for a traced graph; rendering it is left to Graphviz."""

from __future__ import annotations

import json

from trace_control.trace.nodes import ExceptionNode, Node, ancestors


def _label(node: Node, width: int = 40) -> str:
    value = str(node._data).replace("\n", " ")
    if len(value) > width:
        value = value[: width - 3] + "..."
    return f"{node.py_name}\n{value}"


def to_dot(graph: Node | list[Node]) -> str:
    """The graph that produced a node (or the given nodes): parameters as boxes, errors in red.

    Edges are drawn between the nodes shown.
    """
    order = ancestors(graph) if isinstance(graph, Node) else list(graph)
    shown = {id(n) for n in order}
    lines = ["digraph trace {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    for current in order:
        if current.trainable:
            style = 'shape=box, style="rounded,filled", fillcolor="#ffe9a8"'
        elif isinstance(current, ExceptionNode):
            style = 'shape=octagon, style=filled, fillcolor="#f8b4b4", color="#b00000"'
        elif current._parents:
            style = 'shape=ellipse, style=filled, fillcolor="#dce8f7"'
        else:
            style = "shape=ellipse"
        lines.append(f"  {current.py_name} [label={json.dumps(_label(current))}, {style}];")
    for current in order:
        for parent in current._parents:
            if id(parent) in shown:
                lines.append(f"  {parent.py_name} -> {current.py_name};")
    lines.append("}")
    return "\n".join(lines) + "\n"
