"""The Trace engine: traced values, bundled operations, backward with rich feedback.

Public surface (following trace-opt's ``opto.trace``; see docs/engine.md for porting)::

    node, bundle, model, Module, stop_tracing, ExecutionError,
    Node, ParameterNode, MessageNode, ExceptionNode, GraphPropagator, Feedback,
    operators, Seq, Map, NodeContainer, apply_op, to_data, sum_feedback, contain
"""

from trace_control.trace import operators
from trace_control.trace.bundle import FunOp, bundle
from trace_control.trace.containers import Map, NodeContainer, ParameterContainer, Seq, apply_op, to_data
from trace_control.trace.context import is_tracing, name_scope, stop_tracing
from trace_control.trace.errors import ExecutionError, TraceError, TraceMissingInputsError
from trace_control.trace.feedback import (
    Feedback,
    FeedbackLog,
    FunctionFeedback,
    call_text,
    node_to_function_feedback,
    sum_feedback,
)
from trace_control.trace.module import Module, model
from trace_control.trace.nodes import (
    ExceptionNode,
    MessageNode,
    NestedMessageNode,
    Node,
    ParameterNode,
    ancestors,
    contain,
    node,
)
from trace_control.trace.propagation import GraphPropagator, backward
from trace_control.trace.state import atomic_write_text, fit_value, to_literal
from trace_control.trace.visualize import to_dot

# trace-opt names left out on purpose, and what to use instead (see docs/engine.md)
_LEFT_OUT = {
    "GRAPH": "there is no process-global graph: graphs are freed when nothing holds them, and name_scope() "
             "restarts the names; there is nothing to clear",
    "USED_NODES": "there is no process-global registry; bundle records the nodes a body reads by itself",
    "for_all_methods": "apply the decorator to each method in the class body",
    "TraceGraph": "use Feedback: node.feedback holds Feedback records (user_feedback, graph, visualize, expand)",
}


def __getattr__(name: str) -> object:
    if name in _LEFT_OUT:
        # ImportError, so that ``from trace_control.trace import GRAPH`` shows the reason
        raise ImportError(f"trace_control.trace has no {name}: {_LEFT_OUT[name]}", name=name)
    raise AttributeError(f"module 'trace_control.trace' has no attribute {name!r}")


__all__ = [
    "ExceptionNode", "ExecutionError", "Feedback", "FeedbackLog", "FunOp", "FunctionFeedback", "GraphPropagator",
    "Map", "MessageNode", "Module", "NestedMessageNode", "Node", "NodeContainer", "ParameterContainer",
    "ParameterNode", "Seq", "TraceError", "TraceMissingInputsError", "ancestors", "apply_op", "atomic_write_text",
    "backward", "bundle", "call_text", "contain", "fit_value", "is_tracing", "model", "name_scope", "node",
    "node_to_function_feedback", "operators", "stop_tracing", "sum_feedback", "to_data", "to_dot", "to_literal",
]
