"""Containers of nodes: parameter holders (with their state as plain data), ``Seq``, ``Map``,
and the helpers that walk containers: ``to_data`` and ``apply_op``.

A :class:`ParameterContainer` is anything that holds parameters under attribute-path
keys (``Module``, a bundled function, ``Seq``, ``Map``). Its state is one plain dict,
``state_dict()``; ``load_state_dict`` sets it back strictly, and ``save`` / ``load``
write and read that dict as JSON.
"""

from __future__ import annotations

import copy
import json
import os
from collections import UserDict, UserList
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trace_control.trace.errors import TraceError
from trace_control.trace.nodes import Node, ParameterNode
from trace_control.trace.state import atomic_write_text, fit_value, to_literal

SAVE_FORMAT = "trace-control/module-1"


class NodeContainer:
    """Marks an object whose attributes hold nodes: ``to_data`` and ``apply_op`` walk into it."""


class ParameterContainer(NodeContainer):
    """Holds parameters; ``parameters_dict()`` maps attribute paths to them.

    Subclasses define :meth:`parameters_dict`; everything else is built on it.
    """

    def parameters_dict(self) -> dict[str, ParameterNode]:
        raise NotImplementedError

    def parameters(self) -> list[ParameterNode]:
        return list(self.parameters_dict().values())

    def state_dict(self) -> dict[str, Any]:
        """The parameters' values as plain data, keyed as :meth:`parameters_dict`."""
        return {key: to_literal(parameter._data, key) for key, parameter in self.parameters_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Set the parameters from ``state`` (as :meth:`state_dict` returns it).

        With ``strict`` a missing or an extra name is a :class:`TraceError` naming
        them; without, extra names are ignored and missing ones keep their value. A
        value that does not fit its parameter's type is an error either way. Nothing
        is set unless everything fits.
        """
        parameters = self.parameters_dict()
        if strict:
            missing = sorted(set(parameters) - set(state))
            extra = sorted(set(state) - set(parameters))
            if missing or extra:
                problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"not parameters of this {type(self).__name__}: {', '.join(extra)}"] if extra else [])
                raise TraceError(f"the state does not match the parameters ({'; '.join(problems)})")
        fitted = {key: fit_value(value, parameters[key]._data, key)
                  for key, value in state.items() if key in parameters}
        for key, value in fitted.items():
            parameters[key].set_value(value)

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` as JSON (code as text), atomically."""
        document = {"format": SAVE_FORMAT, "class": type(self).__qualname__, "parameters": self.state_dict()}
        atomic_write_text(path, json.dumps(document, indent=2) + "\n")

    def load(self, path: str | os.PathLike, strict: bool = True) -> None:
        """Set the parameters from a file written by :meth:`save` (see :meth:`load_state_dict`)."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise TraceError(f"cannot read saved parameters from {path}: {error}") from error
        if not isinstance(document, dict) or document.get("format") != SAVE_FORMAT:
            raise TraceError(f"{path} is not a file written by save()")
        try:
            self.load_state_dict(document["parameters"], strict=strict)
        except TraceError as error:
            raise TraceError(f"{path}: {error}") from error


def collect_parameters(items: Any) -> dict[str, ParameterNode]:
    """``{path: parameter}`` for ``(key, value)`` pairs: trainable nodes, and containers' own (``key.inner``)."""
    found: dict[str, ParameterNode] = {}
    for key, value in items:
        if isinstance(value, ParameterNode) and value.trainable:
            found[str(key)] = value
        elif isinstance(value, ParameterContainer):
            for inner, parameter in value.parameters_dict().items():
                found[f"{key}.{inner}"] = parameter
    return found


class Seq(UserList, ParameterContainer):
    """A list whose trainable nodes (and containers) are parameters, keyed by position.

    ``Seq([1, 2])`` or ``Seq(1, 2)``.
    """

    def __init__(self, *items: Any) -> None:
        single = len(items) == 1 and hasattr(items[0], "__len__") and hasattr(items[0], "__getitem__")
        super().__init__(items[0] if single else items)

    def parameters_dict(self) -> dict[str, ParameterNode]:
        return collect_parameters(enumerate(self.data))


class Map(UserDict, ParameterContainer):
    """A dict whose trainable nodes (and containers) are parameters, keyed by their key.

    A trainable node used as a key is a parameter too, under its ``py_name``.
    """

    def parameters_dict(self) -> dict[str, ParameterNode]:
        found = collect_parameters((key.py_name if isinstance(key, Node) else key, value)
                                   for key, value in self.data.items())
        found.update(collect_parameters((key.py_name, key) for key in self.data if isinstance(key, Node)))
        return found


def to_data(value: Any) -> Any:
    """``value`` with every node replaced by its value, through lists, tuples, sets, dicts
    (keys and values), NodeContainers (a copy with converted attributes) and node values."""
    if isinstance(value, Node):
        return to_data(value.data)
    if isinstance(value, (list, tuple, set)):
        return type(value)(to_data(item) for item in value)
    if isinstance(value, dict):
        return {to_data(key): to_data(item) for key, item in value.items()}
    if isinstance(value, NodeContainer) and not isinstance(value, ParameterContainer):
        converted = copy.copy(value)
        for key, item in vars(value).items():
            setattr(converted, key, to_data(item))
        return converted
    return value


def apply_op(op: Callable, output: Any, *args: Any, **kwargs: Any) -> Any:
    """Apply ``op`` element by element over containers of nodes, writing into ``output``.

    When every input is a node, returns ``op(*args, **kwargs)``. Otherwise the inputs
    that are not nodes must be containers of ``output``'s type (list, tuple, dict or
    NodeContainer) and shape; ``op`` is applied to their matching elements (a node
    input is used for every element) and each result replaces ``output``'s element.
    Other values in ``output`` are left as they are. Returns ``output`` (a new tuple
    for tuples).
    """
    inputs = [*args, *kwargs.values()]
    if all(isinstance(item, Node) for item in inputs):
        return op(*args, **kwargs)
    for item in inputs:
        if not isinstance(item, Node) and type(item) is not type(output):
            raise TypeError(f"apply_op: inputs must be nodes or of the output's type {type(output).__name__}, "
                            f"got {type(item).__name__}")

    def element(key: Any) -> Any:
        def pick(item: Any) -> Any:
            if isinstance(item, Node):
                return item
            return getattr(item, key) if isinstance(output, NodeContainer) else item[key]

        return apply_op(op, pick(output), *map(pick, args), **{name: pick(item) for name, item in kwargs.items()})

    if isinstance(output, (list, tuple)):
        if any(not isinstance(item, Node) and len(item) != len(output) for item in inputs):
            raise ValueError(f"apply_op: the inputs and the output ({len(output)} items) differ in length")
        results = [element(index) for index in range(len(output))]
        if isinstance(output, tuple):
            return tuple(results)
        output[:] = results
    elif isinstance(output, dict):
        for key in list(output):
            output[key] = element(key)
    elif isinstance(output, NodeContainer):
        for key in list(vars(output)):
            setattr(output, key, element(key))
    return output
