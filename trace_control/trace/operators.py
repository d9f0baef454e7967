"""Python operators on nodes, recorded as graph operations, and the same operations as functions.

Traced (return a MessageNode): ``+ - * / // % **``, bitwise ``<< >> & | ^ ~`` (and
reflected forms), unary ``- + abs() round()``, comparisons ``< <= > >= == !=``,
indexing ``x[i]``, iteration (each item is a node), attribute reads of the wrapped
value (``x.shape``), calls (``f(...)`` where ``f`` is a node), and the node methods
``len() getattr() call() clone() join() items() keys() values() eq() neq()``.

Plain Python (return plain values, because the language requires it): ``bool(x)``
(so ``if x < 3:`` works), ``len(x)``, ``item in x``, ``float(x)``, ``int(x)``,
``hash(x)`` (identity). Not traced: assignment into the wrapped value, and methods of
the wrapped value called through ``x.data``.

The module-level functions (``add``, ``cond``, ``getitem``, ``identity``,
``list_extend``, ``dict_update``, ...) are the same operations for code written as
``operators.add(x, y)``. An operation whose result is a node yields that node's value.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from trace_control.trace import context
from trace_control.trace.errors import ExecutionError
from trace_control.trace.nodes import ExceptionNode, MessageNode, Node, constant_node


def record_op(op_name: str, fn: Callable, description: str, named_inputs: tuple) -> Any:
    """Run ``fn`` on the inputs' values; record it as an operation when tracing.

    ``named_inputs`` is ``((argument name, value or node), ...)``. An error raises
    :class:`ExecutionError` holding an ExceptionNode whose parents are the inputs.
    """
    if not context.is_tracing():
        values = [value.data if isinstance(value, Node) else value for _, value in named_inputs]
        result = fn(*values)
        if isinstance(result, Node):
            result = result._data
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
    if isinstance(result, Node):
        result = result._data
    return MessageNode(result, inputs, name=op_name, description=description)


def _binary(op_name: str, fn: Callable, symbol: str) -> Callable:
    description = f"[{op_name}] x {symbol} y"

    def operation(x: Any, y: Any) -> Any:
        return record_op(op_name, fn, description, (("x", x), ("y", y)))

    operation.__name__ = op_name
    operation.__doc__ = f"``x {symbol} y``, traced."
    return operation


def _unary(op_name: str, fn: Callable, text: str) -> Callable:
    description = f"[{op_name}] {text}"

    def operation(x: Any) -> Any:
        return record_op(op_name, fn, description, (("x", x),))

    operation.__name__ = op_name
    operation.__doc__ = f"``{text}``, traced."
    return operation


add = _binary("add", operator.add, "+")
subtract = _binary("sub", operator.sub, "-")
multiply = _binary("mul", operator.mul, "*")
divide = _binary("truediv", operator.truediv, "/")
floor_divide = _binary("floordiv", operator.floordiv, "//")
mod = _binary("mod", operator.mod, "%")
power = _binary("pow", operator.pow, "**")
lshift = _binary("lshift", operator.lshift, "<<")
rshift = _binary("rshift", operator.rshift, ">>")
and_ = _binary("and", operator.and_, "&")
or_ = _binary("or", operator.or_, "|")
xor = _binary("xor", operator.xor, "^")
lt = _binary("lt", operator.lt, "<")
le = _binary("le", operator.le, "<=")
gt = _binary("gt", operator.gt, ">")
ge = _binary("ge", operator.ge, ">=")
eq = _binary("eq", operator.eq, "==")
ne = neq = _binary("ne", operator.ne, "!=")
concat = add
in_ = _binary("in", lambda x, y: x in y, "in")
not_in = _binary("not_in", lambda x, y: x not in y, "not in")
is_ = _binary("is", operator.is_, "is")
is_not = _binary("is_not", operator.is_not, "is not")
list_extend = _binary("list_extend", lambda x, y: [*x, *y], "+ y, as a new list (x is unchanged)")
list_append = _binary("list_append", lambda x, y: [*x, y], "with y appended, as a new list (x is unchanged)")
dict_update = _binary("dict_update", lambda x, y: {**x, **y}, "updated with y, as a new dict (x is unchanged)")

pos = _unary("pos", operator.pos, "+x")
neg = _unary("neg", operator.neg, "-x")
abs = _unary("abs", builtins.abs, "abs(x)")  # noqa: A001 - trace-opt's name for the operation
invert = _unary("invert", operator.invert, "~x")
not_ = _unary("not", operator.not_, "not x")
identity = _unary("identity", lambda x: x, "x (the same value, one step further in the graph)")
clone = _unary("clone", lambda x: x, "x (the same value, one step further in the graph)")
len_ = _unary("len", len, "len(x)")
to_list = _unary("to_list", list, "list(x)")
to_dict = _unary("to_dict", dict, "dict(x)")
to_tuple = _unary("to_tuple", tuple, "tuple(x)")
to_set = _unary("to_set", set, "set(x)")
keys = _unary("keys", lambda x: list(x.keys()), "the keys of x, as a list")
values = _unary("values", lambda x: list(x.values()), "the values of x, as a list")

# operator dunder name -> operation; each also gets its reflected form (__radd__ ...)
_BINARY_DUNDERS = {"add": add, "sub": subtract, "mul": multiply, "truediv": divide, "floordiv": floor_divide,
                   "mod": mod, "pow": power, "lshift": lshift, "rshift": rshift, "and": and_, "or": or_,
                   "xor": xor}
_COMPARISON_DUNDERS = {"lt": lt, "le": le, "gt": gt, "ge": ge, "eq": eq, "ne": ne}


def getitem(x: Any, index: Any) -> Any:
    """``x[index]``, traced."""
    return record_op("getitem", operator.getitem, "[getitem] x[index]", (("x", x), ("index", index)))


def cond(condition: Any, x: Any, y: Any) -> Any:
    """``x if condition else y``, traced: the condition and both branches are parents."""
    return record_op("cond", lambda c, a, b: a if c else b, "[cond] x if condition else y",
                     (("condition", condition), ("x", x), ("y", y)))


def round(x: Any, ndigits: Any = None) -> Any:  # noqa: A001 - trace-opt's name for the operation
    """``round(x, ndigits)``, traced."""
    return record_op("round", builtins.round, "[round] round(x, ndigits)", (("x", x), ("ndigits", ndigits)))


def node_getattr(obj: Any, attr: str) -> Any:
    """``getattr(obj, attr)``, traced. A node held in the attribute yields its value."""
    return record_op("getattr", getattr, "[getattr] x.attr", (("x", obj), ("attr", attr)))


def join(separator: Any, *items: Any) -> Any:
    """``separator.join(items)``, traced: the separator and every item are parents."""
    named = (("x", separator),) + tuple((f"y{i}", item) for i, item in enumerate(items))
    return record_op("join", lambda sep, *parts: sep.join(parts), "[join] x.join(y0, y1, ...)", named)


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, traced; ``fn`` and every argument are parents.

    The arguments reach ``fn`` as given (nodes stay nodes), so a callable written
    for nodes can trace inside; a node it returns yields its value.
    """
    target = fn.data if isinstance(fn, Node) else fn
    named = (("fn", fn),) + tuple((f"arg{i}", a) for i, a in enumerate(args)) + tuple(kwargs.items())
    return record_op("call", lambda *_values: target(*args, **kwargs), "[call] fn(*args, **kwargs)", named)


def __getattr__(name: str) -> Any:
    raise AttributeError(
        f"trace_control.trace.operators has no operation {name!r}; call the value's method through the "
        f"node instead, e.g. x.call({name.removeprefix('list_').removeprefix('dict_')!r}, ...), "
        "or bundle a function that does it")


# -- node methods ---------------------------------------------------------------------
def _iter(self: Node) -> Iterator[Any]:
    items = self.data
    try:
        items = list(items)
    except TypeError as error:
        if not context.is_tracing():
            raise
        failed = ExceptionNode(f"(TypeError) cannot iterate over (or unpack) {self.py_name}: {error}",
                               {"x": self}, error, name="iter", description="[iter] iterate over x")
        raise ExecutionError(failed) from error
    if not context.is_tracing():
        yield from (items if context.in_op_body() else (Node(item, name="item") for item in items))
        return
    for index, item in enumerate(items):
        if isinstance(item, Node):
            item = item._data
        yield MessageNode(item, {"x": self, "index": constant_node(index)}, name="item",
                          description="[item] the index-th item when iterating over x")


def _getattr(self: Node, attr: str) -> Any:
    if attr.startswith("_"):
        raise AttributeError(attr)
    value = object.__getattribute__(self, "_data")
    if not hasattr(value, attr):
        raise AttributeError(f"{type(self).__name__} {self.name} has no attribute {attr!r} "
                             f"and neither has its value of type {type(value).__name__}")
    return node_getattr(self, attr)


def _items(self: Node) -> Any:
    """``(key, value)`` node pairs of a dict node: keys come from ``keys()``, values from ``x[key]``."""
    if not isinstance(self._data, Mapping):
        return call(node_getattr(self, "items"))
    return [(key, getitem(self, key)) for key in keys(self)]


def _keys(self: Node) -> Any:
    return keys(self) if isinstance(self._data, Mapping) else call(node_getattr(self, "keys"))


def _values(self: Node) -> Any:
    return values(self) if isinstance(self._data, Mapping) else call(node_getattr(self, "values"))


def _join(self: Node, items: Any) -> Any:
    if not isinstance(self._data, str):
        return call(node_getattr(self, "join"), items)
    return join(self, *items)


def _call_method(self: Node, name: str, *args: Any, **kwargs: Any) -> Any:
    """``x.call("append", y)``: call the value's method ``name``, traced."""
    return call(node_getattr(self, name), *args, **kwargs)


def install(cls: type) -> None:
    """Give ``cls`` (the Node class) its traced operators and methods."""
    for dunder, operation in _BINARY_DUNDERS.items():
        setattr(cls, f"__{dunder}__", operation)
        setattr(cls, f"__r{dunder}__", _reflected(operation))
    for dunder, operation in _COMPARISON_DUNDERS.items():
        setattr(cls, f"__{dunder}__", operation)
    cls.__neg__ = neg
    cls.__pos__ = pos
    cls.__abs__ = abs
    cls.__invert__ = invert
    cls.__round__ = round
    cls.__getitem__ = getitem
    cls.__iter__ = _iter
    cls.__getattr__ = _getattr
    cls.__call__ = call
    cls.len = len_
    cls.eq = eq
    cls.neq = ne
    cls.clone = clone
    cls.getattr = node_getattr
    cls.call = _call_method
    cls.join = _join
    cls.items = _items
    cls.keys = _keys
    cls.values = _values


def _reflected(operation: Callable) -> Callable:
    def reflected(self: Node, other: Any) -> Any:
        return operation(other, self)

    return reflected


install(Node)
