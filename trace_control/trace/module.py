"""``Module`` / ``model``: objects whose trainable parts are collected, saved and exported."""

from __future__ import annotations

import os
from typing import Any

from trace_control.trace.bundle import FunOp
from trace_control.trace.containers import NodeContainer, ParameterContainer, collect_parameters
from trace_control.trace.errors import TraceError
from trace_control.trace.nodes import ParameterNode
from trace_control.trace.state import atomic_write_text, to_literal

__all__ = ["Module", "_own_classes", "atomic_write_text", "model", "to_literal"]


def _own_classes(cls: type) -> list[type]:
    return [klass for klass in cls.__mro__ if klass not in (Module, ParameterContainer, NodeContainer, object)]


class Module(ParameterContainer):
    """Base class for traced models: collects trainable code and ParameterNode attributes.

    Keys of :meth:`parameters_dict` are attribute paths: ``"gain"`` for a node
    attribute, ``"act.__code"`` for the code of a trainable method or of a bundled
    function stored as an attribute, ``"arm.gain"`` for an attribute of a sub-module
    (or of a ``Seq`` / ``Map``). Calling a module calls its ``forward`` method.
    State, ``save`` and ``load``: see :class:`ParameterContainer`.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        forward = getattr(self, "forward", None)
        if forward is None:
            raise TraceError(f"{type(self).__name__} has no forward method to call")
        return forward(*args, **kwargs)

    def parameters_dict(self) -> dict[str, ParameterNode]:
        methods: dict[str, FunOp] = {}
        for klass in reversed(_own_classes(type(self))):
            for attr, value in vars(klass).items():
                if isinstance(value, FunOp) and value.trainable and attr not in methods:
                    methods[attr] = getattr(self, attr)
        attributes = ((attr, value) for attr, value in vars(self).items() if not attr.startswith("__bundle_"))
        return {**collect_parameters(methods.items()), **collect_parameters(attributes)}

    def export(self, path: str | os.PathLike | None = None) -> str:
        """Write the model as a plain Python file that runs without trace_control.

        The file defines the class with its current code and constants, the module's
        imports, constants and helper functions it needs, and ``load()`` returning an
        instance. Returns the text (and writes it when ``path`` is given).
        """
        from trace_control.trace.export import export_source

        text = export_source(self)
        if path is not None:
            atomic_write_text(path, text)
        return text


def model(cls: type) -> type:
    """Class decorator: make ``cls`` a :class:`Module` (same name, same behaviour)."""
    if issubclass(cls, Module):
        return cls
    return type(cls.__name__, (cls, Module), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                              "__doc__": cls.__doc__})
