"""The Trace engine: traced values, bundled operations, backward with rich feedback.

Public surface (kept close to trace-opt's ``opto.trace``)::

    node, bundle, model, Module, stop_tracing, ExecutionError,
    Node, ParameterNode, MessageNode, ExceptionNode, GraphPropagator, Feedback
"""

from trace_control.trace import operators as _operators  # noqa: F401  (installs the operators)
from trace_control.trace.bundle import FunOp, bundle
from trace_control.trace.context import is_tracing, name_scope, stop_tracing
from trace_control.trace.errors import ExecutionError, TraceError
from trace_control.trace.module import Module, atomic_write_text, model, to_literal
from trace_control.trace.nodes import ExceptionNode, MessageNode, Node, ParameterNode, node
from trace_control.trace.propagation import Feedback, GraphPropagator, ancestors, backward
from trace_control.trace.visualize import to_dot

__all__ = [
    "ExceptionNode", "ExecutionError", "Feedback", "FunOp", "GraphPropagator", "MessageNode",
    "Module", "Node", "ParameterNode", "TraceError", "ancestors", "atomic_write_text", "backward",
    "bundle", "is_tracing", "model", "name_scope", "node", "stop_tracing", "to_dot", "to_literal",
]
