"""Graph nodes: values that remember where they came from.

A ``Node`` holds a value. A ``ParameterNode`` is a value the optimizer may change.
A ``MessageNode`` is the output of an operation; its parents are the operation's
inputs. An ``ExceptionNode`` is an operation that raised: its value is the error
text. Parents are strong references and children weak ones, so a graph lives
exactly as long as something holds its output.

Copies (``copy.deepcopy``, ``detach()``, pickling) are new roots: same value, name
base, description and constraint; no parents, children or feedback.
"""

from __future__ import annotations

import copy
import functools
import re
import weakref
from collections.abc import Iterable
from typing import Any

from trace_control.trace import context
from trace_control.trace.feedback import FeedbackLog

_NAME_CLEAN = re.compile(r"\W")
_TAGGED = re.compile(r"^\[[^\[\]]+\]")
# The slots that tie a node into a graph; a copy starts them afresh.
_GRAPH_SLOTS = frozenset({"_index", "_parents", "_inputs", "_children", "_prune_at", "_feedback", "level",
                          "_backwarded", "__weakref__"})


@functools.lru_cache(maxsize=4096)
def _split_name(name: str) -> str:
    base = name.split(":", 1)[0]
    base = _NAME_CLEAN.sub("_", base)
    return base or "node"


class Node:
    """A value in a traced graph.

    Attributes: ``data`` (the value), ``name`` (``"base:index"``), ``py_name``
    (``"baseindex"``, used in prompts), ``op_name`` (``"base"``), ``parents``,
    ``children``, ``inputs``, ``description`` (``"[Kind] text"``), ``constraint``,
    ``trainable``, ``feedback`` (a :class:`FeedbackLog` of what backward sent here).
    """

    trainable = False
    kind = "Node"
    default_base = "node"
    default_description = "[Node] a value"
    # parameters an operation read inside its own traced body (see bundle's traceable_code)
    hidden_dependencies: frozenset = frozenset()
    __slots__ = (
        "_data", "_base", "_index", "_parents", "_inputs", "_children", "_prune_at",
        "description", "constraint", "_feedback", "info", "level", "_backwarded", "__weakref__",
    )

    def __init__(self, value: Any, name: str | None = None, description: str | None = None,
                 info: dict | None = None, constraint: str | None = None) -> None:
        if isinstance(value, Node):
            raise TypeError("a Node cannot wrap another Node; pass node.data or use node() instead")
        self._base, self._index = context.next_name(_split_name(name) if name else self.default_base)
        self._data = value
        self._parents: list[Node] = []
        self._inputs: dict[str, Node] | None = None
        self._children: list[weakref.ref] = []
        self._prune_at = 64
        if not description:
            self.description = self.default_description
        else:
            self.description = description if _TAGGED.match(description) else f"[{self.kind}] {description}"
        self.constraint = constraint
        self._feedback: FeedbackLog | None = None
        self.info = info
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
    def op_name(self) -> str:
        """The base of the name: the operation for a MessageNode (``"controller"`` for ``controller:3``)."""
        return self._base

    @property
    def feedback(self) -> FeedbackLog:
        """What backward calls sent here (see :class:`FeedbackLog`)."""
        if self._feedback is None:
            self._feedback = FeedbackLog()
        return self._feedback

    @feedback.setter
    def feedback(self, value: list) -> None:
        self._feedback = FeedbackLog(value)

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
        return dict(self._inputs) if self._inputs else {}

    @property
    def children(self) -> list[Node]:
        return [child for ref in self._children if (child := ref()) is not None]

    def _prune_children(self) -> None:
        self._children = [ref for ref in self._children if ref() is not None]
        self._prune_at = max(64, 2 * len(self._children))

    @property
    def is_root(self) -> bool:
        return not self._parents

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def feeds_from(self, other: Node | None) -> bool:
        """True when ``other`` is a parent of this node or a parameter its operation read inside."""
        return any(parent is other for parent in self._parents) or other in self.hidden_dependencies

    @property
    def parameter_dependencies(self) -> set[ParameterNode]:
        """The ParameterNodes this node depends on through its parents (itself included)."""
        return {n for n in ancestors(self) if isinstance(n, ParameterNode)}

    @property
    def expandable_dependencies(self) -> set[Node]:
        """The operations (this node included) that read parameters inside their own traced body."""
        return {n for n in ancestors(self) if n.hidden_dependencies}

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

    # -- copies -----------------------------------------------------------------
    def _own_state(self) -> dict[str, Any]:
        return {slot: getattr(self, slot) for cls in type(self).__mro__ for slot in getattr(cls, "__slots__", ())
                if slot not in _GRAPH_SLOTS and hasattr(self, slot)}

    def __reduce__(self) -> tuple:
        return _restore, (type(self), self._own_state())

    def __deepcopy__(self, memo: dict) -> Node:
        state = self._own_state()
        state["_data"] = copy.deepcopy(self._data, memo)
        if isinstance(self.info, dict):
            state["info"] = dict(self.info)
        new = _restore(type(self), state)
        memo[id(self)] = new
        return new

    def detach(self) -> Node:
        """A deep copy of this node: a new root holding a copy of the value."""
        return copy.deepcopy(self)

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


def ancestors(output: Node) -> list[Node]:
    """Every node ``output`` depends on (itself included), parents before children."""
    seen = {id(output)}
    stack = [output]
    found = [output]
    while stack:
        for parent in stack.pop()._parents:
            if id(parent) not in seen:
                seen.add(id(parent))
                found.append(parent)
                stack.append(parent)
    found.sort(key=lambda n: n.level)
    return found


def contain(nodes: Iterable[Node], item: Node) -> bool:
    """True when ``item`` itself is among ``nodes`` (``in`` compares values: ``==`` is an operation)."""
    return any(member is item for member in nodes)


def _restore(cls: type, state: dict[str, Any]) -> Node:
    """A new root of type ``cls`` with ``state`` (see ``Node.__reduce__``), named afresh."""
    new = cls.__new__(cls)
    for slot, value in state.items():
        object.__setattr__(new, slot, value)
    new._base, new._index = context.next_name(new._base)
    new._parents, new._inputs, new._children, new._prune_at = [], None, [], 64
    new._feedback, new.level, new._backwarded = None, 0, False
    return new


class ParameterNode(Node):
    """A trainable value. ``constraint`` is text shown to the optimizer."""

    kind = "ParameterNode"
    default_base = "param"
    default_description = "[ParameterNode] a trainable parameter"
    __slots__ = ("_trainable",)

    def __init__(self, value: Any, name: str | None = None, description: str | None = None,
                 constraint: str | None = None, info: dict | None = None,
                 trainable: bool = True) -> None:
        super().__init__(value, name=name, description=description, info=info, constraint=constraint)
        self._trainable = trainable

    @property  # type: ignore[override]
    def trainable(self) -> bool:
        return self._trainable

    def set_value(self, value: Any) -> None:
        """Replace the value (what optimizers call; not traced). A node passes its value."""
        self._data = value._data if isinstance(value, Node) else value

    _set = set_value  # trace-opt's name


class MessageNode(Node):
    """The output of an operation; ``inputs`` maps argument names to parent nodes.

    ``inputs`` may also be a list of nodes (keyed by their names, as in trace-opt).
    """

    kind = "MessageNode"
    default_base = "message"
    default_description = "[message] the output of an operation"
    __slots__ = ()

    def __init__(self, value: Any, inputs: dict[str, Node] | list[Node], name: str | None = None,
                 description: str | None = None, info: dict | None = None,
                 constraint: str | None = None) -> None:
        # Node.__init__ inlined: this runs once per recorded operation, the engine's hot path
        if isinstance(value, Node):
            raise TypeError("a Node cannot wrap another Node; pass node.data or use node() instead")
        if type(inputs) is not dict:
            inputs = {parent.py_name: parent for parent in inputs}
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
        self.constraint = constraint
        self._feedback = None
        self.info = info
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


class NestedMessageNode(MessageNode):
    """The output of an operation whose body built a graph of its own (bundle's ``traceable_code``).

    ``info["output"]`` is the inner graph's output; ``hidden_dependencies`` are the
    parameters that graph read which are not among this node's own dependencies.
    Backward sends feedback to them too.
    """

    __slots__ = ("hidden_dependencies",)

    def __init__(self, value: Any, inputs: dict[str, Node], name: str | None, description: str | None,
                 info: dict, hidden_dependencies: frozenset) -> None:
        super().__init__(value, inputs, name=name, description=description, info=info)
        self.hidden_dependencies = hidden_dependencies


class ExceptionNode(MessageNode):
    """An operation that raised. ``data`` is the error text; ``exception`` the error.

    ``ExceptionNode(error, inputs=...)`` (trace-opt's form) takes the text from the
    error; ``ExceptionNode(text, inputs, error)`` gives the text explicitly.
    """

    kind = "ExceptionNode"
    default_base = "exception"
    default_description = "[exception] an operation raised an error"
    __slots__ = ("exception",)

    def __init__(self, value: str | BaseException, inputs: dict[str, Node] | list[Node] | None = None,
                 exception: BaseException | None = None, name: str | None = None,
                 description: str | None = None, info: dict | None = None,
                 constraint: str | None = None) -> None:
        if isinstance(value, BaseException):
            exception = exception or value
            value = f"({type(value).__name__}) {value}"
        super().__init__(value, inputs if inputs is not None else {}, name=name, description=description,
                         info=info, constraint=constraint)
        self.exception = exception

    def create_feedback(self, style: str = "simple") -> str:
        """The error as feedback: ``"simple"`` is its first line, ``"full"`` adds the marked source."""
        if style not in ("simple", "full"):
            raise ValueError(f"style must be 'simple' or 'full', got {style!r}")
        return self._data if style == "full" else self._data.split("\n", 1)[0]


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
    return Node(value, name=name, description=description, constraint=constraint)


def constant_node(value: Any, name: str | None = None) -> Node:
    """Wrap a plain value met as an operation input, named after its argument or type."""
    return Node(value, name=name or type(value).__name__)
