"""Backward: from an output and its feedback to every parameter's minimal subgraph.

A parameter's minimal subgraph is the set of nodes on some path from the parameter
to the output (both included). The inputs those nodes read are their parents, so a
renderer finds them without further search. This is the paper's TraceGraph,
computed in one pass: time and memory are linear in the graph times the number of
parameters on a path, not quadratic in its depth.
"""

from __future__ import annotations

from typing import Any, Protocol

from trace_control.trace.errors import TraceError
from trace_control.trace.feedback import Feedback
from trace_control.trace.nodes import Node, ParameterNode, ancestors

__all__ = ["Feedback", "GraphPropagator", "Propagator", "ancestors", "backward"]


class Propagator(Protocol):
    """Turns (output, feedback, graph) into feedback per parameter."""

    def __call__(self, output: Node, feedback: Any, order: list[Node]) -> dict[ParameterNode, Feedback]:
        ...


class GraphPropagator:
    """The default propagator: each parameter gets its minimal subgraph.

    A parameter read inside an operation's own traced body (``hidden_dependencies``)
    gets the subgraph from that operation on, with itself first.
    """

    def __call__(self, output: Node, feedback: Any, order: list[Node]) -> dict[ParameterNode, Feedback]:
        empty: frozenset = frozenset()
        reach: dict[int, frozenset] = {}
        for current in order:
            found = empty
            for parent in current._parents:
                upstream = reach[id(parent)]
                if upstream and upstream is not found:
                    found = upstream if not found else found | upstream
            if current.trainable:
                found = found | {current}
            hidden = current.hidden_dependencies
            if hidden:
                found = found | {p for p in hidden if p.trainable}
            reach[id(current)] = found
        subgraphs: dict[ParameterNode, list[Node]] = {}
        for current in order:
            for parameter in reach[id(current)]:
                nodes = subgraphs.get(parameter)
                if nodes is None:
                    nodes = subgraphs[parameter] = [] if parameter is current else [parameter]
                nodes.append(current)
        return {parameter: Feedback(output, feedback, nodes) for parameter, nodes in subgraphs.items()}


def backward(output: Node, feedback: Any = "", retain_graph: bool = False,
             propagator: Propagator | None = None, visualize: bool = False) -> str | None:
    """Propagate ``feedback`` from ``output`` to the parameters it depends on.

    Each parameter's ``feedback`` log gains one :class:`Feedback`. Without
    ``retain_graph`` the operations of this graph are marked as used, and a second
    backward through them raises :class:`TraceError` (as in PyTorch); with it,
    feedback from several calls accumulates. Returns Graphviz text if ``visualize``.
    """
    if not isinstance(output, Node):
        raise TypeError(f"backward starts from a Node, got {type(output).__name__}")
    order = ancestors(output)
    for current in order:
        if current._backwarded:
            raise TraceError(
                f"backward went through {current.name} a second time; pass retain_graph=True to the "
                "earlier backward call to send several feedbacks through one graph")
    results = (propagator or GraphPropagator())(output, feedback, order)
    for parameter, record in results.items():
        parameter.feedback.append(record)
    if not retain_graph:
        for current in order:
            if current._parents:
                current._backwarded = True
    if visualize:
        from trace_control.trace.visualize import to_dot

        return to_dot(output)
    return None
