"""Python operators on nodes, recorded as graph operations.

Traced (return a MessageNode): ``+ - * / // % **`` (and reflected forms), unary
``- + abs() round()``, comparisons ``< <= > >= == !=``, indexing ``x[i]``, iteration
(each item is a node), attribute reads of the wrapped value (``x.shape``), calls
(``f(...)`` where ``f`` is a node), and ``x.len()``.

Plain Python (return plain values, because the language requires it): ``bool(x)``
(so ``if x < 3:`` works), ``len(x)``, ``item in x``, ``float(x)``, ``int(x)``,
``hash(x)`` (identity). Not traced: bitwise operators, in-place assignment to the
wrapped value, and methods of the wrapped value called through ``x.data``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

from trace_control.trace import context
from trace_control.trace.errors import ExecutionError
from trace_control.trace.nodes import ExceptionNode, MessageNode, Node, constant_node


def apply_op(op_name: str, fn: Callable, description: str, named_inputs: tuple) -> Any:
    """Run ``fn`` on the inputs' values; record it as an operation when tracing."""
    if not context.is_tracing():
        values = [value.data if isinstance(value, Node) else value for _, value in named_inputs]
        result = fn(*values)
        return result if context.in_op_body() else Node(result, name=op_name)
    inputs: dict[str, Node] = {}
    values = []
    for arg, value in named_inputs:
        as_node = value if isinstance(value, Node) else constant_node(value)
        inputs[arg] = as_node
        values.append(as_node._data)
    try:
        result = fn(*values)
    except Exception as error:
        failed = ExceptionNode(f"({type(error).__name__}) {error}", inputs, error, name=op_name,
                               description=description)
        raise ExecutionError(failed) from error
    return MessageNode(result, inputs, name=op_name, description=description)


def _binary(op_name: str, fn: Callable, symbol: str) -> tuple[Callable, Callable]:
    description = f"[{op_name}] x {symbol} y"

    def forward(self: Node, other: Any) -> Any:
        return apply_op(op_name, fn, description, (("x", self), ("y", other)))

    def reflected(self: Node, other: Any) -> Any:
        return apply_op(op_name, fn, description, (("x", other), ("y", self)))

    return forward, reflected


def _unary(op_name: str, fn: Callable, text: str) -> Callable:
    description = f"[{op_name}] {text}"

    def method(self: Node) -> Any:
        return apply_op(op_name, fn, description, (("x", self),))

    return method


_BINARY = {
    "add": (operator.add, "+"), "sub": (operator.sub, "-"), "mul": (operator.mul, "*"),
    "truediv": (operator.truediv, "/"), "floordiv": (operator.floordiv, "//"),
    "mod": (operator.mod, "%"), "pow": (operator.pow, "**"),
}
_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def _getitem(self: Node, index: Any) -> Any:
    return apply_op("getitem", operator.getitem, "[getitem] x[index]", (("x", self), ("index", index)))


def _iter(self: Node) -> Iterator[Any]:
    items = list(self.data)
    if not context.is_tracing():
        yield from (items if context.in_op_body() else (Node(item, name="item") for item in items))
        return
    for index, item in enumerate(items):
        yield MessageNode(item, {"x": self, "index": constant_node(index)}, name="item",
                          description="[item] the index-th item when iterating over x")


def _getattr(self: Node, attr: str) -> Any:
    if attr.startswith("_"):
        raise AttributeError(attr)
    value = object.__getattribute__(self, "_data")
    if not hasattr(value, attr):
        raise AttributeError(f"{type(self).__name__} {self.name} has no attribute {attr!r} "
                             f"and neither has its value of type {type(value).__name__}")
    return apply_op("getattr", getattr, "[getattr] x.attr", (("x", self), ("attr", attr)))


def _call(self: Node, *args: Any, **kwargs: Any) -> Any:
    named = [("fn", self)] + [(f"arg{i}", a) for i, a in enumerate(args)]
    named += [(key, value) for key, value in kwargs.items()]
    keys = list(kwargs)
    positional = len(args)

    def call(fn: Callable, *values: Any) -> Any:
        return fn(*values[:positional], **dict(zip(keys, values[positional:], strict=False)))

    return apply_op("call", call, "[call] fn(*args, **kwargs)", tuple(named))


def _len(self: Node) -> Any:
    return apply_op("len", len, "[len] len(x)", (("x", self),))


def install(cls: type) -> None:
    """Give ``cls`` (the Node class) its traced operators."""
    for op_name, (fn, symbol) in _BINARY.items():
        forward, reflected = _binary(op_name, fn, symbol)
        setattr(cls, f"__{op_name}__", forward)
        setattr(cls, f"__r{op_name}__", reflected)
    for op_name, symbol in _COMPARE.items():
        setattr(cls, f"__{op_name}__", _binary(op_name, getattr(operator, op_name), symbol)[0])
    cls.__neg__ = _unary("neg", operator.neg, "-x")
    cls.__pos__ = _unary("pos", operator.pos, "+x")
    cls.__abs__ = _unary("abs", abs, "abs(x)")
    cls.__round__ = lambda self, ndigits=None: apply_op(
        "round", round, "[round] round(x, ndigits)", (("x", self), ("ndigits", ndigits)))
    cls.__getitem__ = _getitem
    cls.__iter__ = _iter
    cls.__getattr__ = _getattr
    cls.__call__ = _call
    cls.len = _len


install(Node)
