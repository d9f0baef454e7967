"""Graph nodes: values that remember where they came from.

A ``Node`` holds a value. A ``ParameterNode`` is a value the optimizer may change.
A ``MessageNode`` is the output of an operation; its parents are the operation's
inputs. An ``ExceptionNode`` is an operation that raised: its value is the error
text. Parents are strong references and children weak ones, so a graph lives
exactly as long as something holds its output.
"""

from __future__ import annotations

import functools
import re
import weakref
from types import MappingProxyType
from typing import Any

from trace_control.trace import context

_NAME_CLEAN = re.compile(r"\W")
_NO_INPUTS: dict = MappingProxyType({})  # type: ignore[assignment]
_NO_INFO: dict = MappingProxyType({})  # type: ignore[assignment]


@functools.lru_cache(maxsize=4096)
def _split_name(name: str) -> str:
    base = name.split(":", 1)[0]
    base = _NAME_CLEAN.sub("_", base)
    return base or "node"


class Node:
    """A value in a traced graph.

    Attributes: ``data`` (the value), ``name`` (``"base:index"``), ``py_name``
    (``"baseindex"``, used in prompts), ``parents``, ``children``, ``description``,
    ``trainable``, ``feedback`` (list of :class:`Feedback` received by backward).
    """

    trainable = False
    kind = "Node"
    default_base = "node"
    default_description = "a value"
    __slots__ = (
        "_data", "_base", "_index", "_parents", "_inputs", "_children", "_prune_at",
        "description", "_feedback", "info", "level", "_backwarded", "__weakref__",
    )

    def __init__(self, value: Any, name: str | None = None, description: str | None = None,
                 info: dict | None = None) -> None:
        if isinstance(value, Node):
            raise TypeError("a Node cannot wrap another Node; pass node.data or use node() instead")
        self._base, self._index = context.next_name(_split_name(name) if name else self.default_base)
        self._data = value
        self._parents: list[Node] = []
        self._inputs: dict[str, Node] = _NO_INPUTS
        self._children: list[weakref.ref] = []
        self._prune_at = 64
        self.description = description if description is not None else self.default_description
        self._feedback: list | None = None
        self.info = info if info is not None else _NO_INFO
        self.level = 0
        self._backwarded = False

    @property
    def name(self) -> str:
        """``"base:index"``, unique among the nodes of one naming scope."""
        return f"{self._base}:{self._index}"

    @property
    def py_name(self) -> str:
        """The name as an identifier (``"base" + index``), as shown in prompts."""
        return f"{self._base}{self._index}"

    @property
    def feedback(self) -> list:
        """What backward calls sent here (a list of :class:`Feedback`)."""
        if self._feedback is None:
            self._feedback = []
        return self._feedback

    @feedback.setter
    def feedback(self, value: list) -> None:
        self._feedback = value

    # -- value ------------------------------------------------------------------
    @property
    def data(self) -> Any:
        context.record_use(self)
        return self._data

    # -- graph ------------------------------------------------------------------
    @property
    def parents(self) -> list[Node]:
        return list(self._parents)

    @property
    def inputs(self) -> dict[str, Node]:
        """The operation's inputs by argument name (empty for roots)."""
        return dict(self._inputs)

    @property
    def children(self) -> list[Node]:
        return [child for ref in self._children if (child := ref()) is not None]

    def _prune_children(self) -> None:
        self._children = [ref for ref in self._children if ref() is not None]
        self._prune_at = max(64, 2 * len(self._children))

    def is_root(self) -> bool:
        return not self._parents

    # -- feedback ---------------------------------------------------------------
    def zero_feedback(self) -> None:
        self._feedback = None

    def backward(self, feedback: Any = "", retain_graph: bool = False, propagator: Any = None,
                 visualize: bool = False) -> Any:
        """Send ``feedback`` from this node to every parameter it depends on.

        Each trainable ancestor receives a :class:`Feedback` holding the feedback and
        its minimal subgraph (see :func:`trace_control.trace.propagation.backward`).
        With ``visualize=True`` returns the Graphviz text of the traced graph.
        """
        from trace_control.trace.propagation import backward

        return backward(self, feedback, retain_graph=retain_graph, propagator=propagator,
                        visualize=visualize)

    def to_dot(self) -> str:
        """Graphviz (dot) text of the graph that produced this node."""
        from trace_control.trace.visualize import to_dot

        return to_dot(self)

    # -- plain-Python behaviour ---------------------------------------------------
    def __bool__(self) -> bool:
        return bool(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, item: Any) -> bool:
        return (item.data if isinstance(item, Node) else item) in self.data

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __index__(self) -> int:
        return self.data.__index__()

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{self.kind}(name={self.name}, data={self._data!r})"

    def __str__(self) -> str:
        return str(self._data)


class ParameterNode(Node):
    """A trainable value. ``constraint`` is text shown to the optimizer."""

    kind = "ParameterNode"
    __slots__ = ("constraint", "_trainable")

    def __init__(self, value: Any, name: str | None = None, description: str | None = None,
                 constraint: str | None = None, info: dict | None = None,
                 trainable: bool = True) -> None:
        super().__init__(value, name=name, description=description, info=info)
        self.constraint = constraint
        self._trainable = trainable

    @property  # type: ignore[override]
    def trainable(self) -> bool:
        return self._trainable

    default_base = "param"
    default_description = "a trainable parameter"

    def _set(self, value: Any) -> None:
        """Replace the value (used by optimizers; no tracing)."""
        self._data = value


class MessageNode(Node):
    """The output of an operation; ``inputs`` maps argument names to parent nodes."""

    kind = "MessageNode"
    __slots__ = ()

    def __init__(self, value: Any, inputs: dict[str, Node], name: str | None = None,
                 description: str | None = None, info: dict | None = None) -> None:
        # Node.__init__ inlined: this runs once per recorded operation, the engine's hot path
        if isinstance(value, Node):
            raise TypeError("a Node cannot wrap another Node; pass node.data or use node() instead")
        base = _split_name(name) if name else self.default_base
        counters = context.counters()
        index = counters.get(base, 0)
        counters[base] = index + 1
        self._base = base
        self._index = index
        self._data = value
        self._children = []
        self._prune_at = 64
        self.description = description if description is not None else self.default_description
        self._feedback = None
        self.info = info if info is not None else _NO_INFO
        self._backwarded = False
        self._inputs = inputs
        self._parents = parents = []
        level = 0
        me = weakref.ref(self)
        for parent in inputs.values():
            for known in parents:
                if known is parent:
                    break
            else:
                parents.append(parent)
                children = parent._children
                children.append(me)
                if len(children) >= parent._prune_at:
                    parent._prune_children()
                if parent.level >= level:
                    level = parent.level + 1
        self.level = level

    default_base = "message"
    default_description = "the output of an operation"


class ExceptionNode(MessageNode):
    """An operation that raised. ``data`` is the error text; ``exception`` the error."""

    kind = "ExceptionNode"
    __slots__ = ("exception",)

    def __init__(self, value: str, inputs: dict[str, Node], exception: BaseException,
                 name: str | None = None, description: str | None = None,
                 info: dict | None = None) -> None:
        super().__init__(value, inputs, name=name, description=description, info=info)
        self.exception = exception

    default_base = "exception"


def node(value: Any, name: str | None = None, trainable: bool = False,
         description: str | None = None, constraint: str | None = None) -> Node:
    """Make a graph node holding ``value`` (a ParameterNode when ``trainable``).

    Passing a node returns it unchanged unless a trainable copy is asked for.
    """
    if isinstance(value, Node):
        if not trainable or value.trainable:
            return value
        value = value._data
    if trainable:
        return ParameterNode(value, name=name, description=description, constraint=constraint)
    return Node(value, name=name, description=description)


def constant_node(value: Any, name: str | None = None) -> Node:
    """Wrap a plain value met as an operation input, named after its argument or type."""
    return Node(value, name=name or type(value).__name__)
