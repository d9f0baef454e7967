"""``Module`` / ``model``: objects whose trainable parts are collected, saved and exported."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from trace_control.trace.bundle import FunOp
from trace_control.trace.errors import TraceError
from trace_control.trace.nodes import ParameterNode

SAVE_FORMAT = "trace-control/module-1"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def to_literal(value: Any, where: str = "value") -> Any:
    """``value`` as plain Python data (numpy scalars and arrays become floats and lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [to_literal(item, where) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {str(key): to_literal(item, where) for key, item in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_literal(value.tolist(), where)
    raise TraceError(f"{where} of type {type(value).__name__} is not plain data (numbers, text, lists, dicts)")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)  # the mode any other new file gets, not mkstemp's 0600
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _own_classes(cls: type) -> list[type]:
    return [klass for klass in cls.__mro__ if klass not in (Module, object)]


class Module:
    """Base class for traced models: collects trainable code and ParameterNode attributes.

    Keys of :meth:`parameters_dict` are attribute paths: ``"gain"`` for a node
    attribute, ``"act.__code"`` for the code of a trainable method, ``"arm.gain"`` for
    a sub-module's attribute. Calling a module calls its ``forward`` method.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        forward = getattr(self, "forward", None)
        if forward is None:
            raise TraceError(f"{type(self).__name__} has no forward method to call")
        return forward(*args, **kwargs)

    def parameters_dict(self) -> dict[str, ParameterNode]:
        found: dict[str, ParameterNode] = {}
        seen: set[str] = set()
        for klass in reversed(_own_classes(type(self))):
            for attr, value in vars(klass).items():
                if isinstance(value, FunOp) and value.trainable and attr not in seen:
                    seen.add(attr)
                    found[f"{attr}.__code"] = getattr(self, attr).parameter
        for attr, value in vars(self).items():
            if isinstance(value, ParameterNode) and value.trainable:
                found[attr] = value
            elif isinstance(value, Module):
                for key, parameter in value.parameters_dict().items():
                    found[f"{attr}.{key}"] = parameter
        return found

    def parameters(self) -> list[ParameterNode]:
        return list(self.parameters_dict().values())

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters' values as JSON (code as text), atomically."""
        values = {key: to_literal(p._data, key) for key, p in self.parameters_dict().items()}
        document = {"format": SAVE_FORMAT, "class": type(self).__qualname__, "parameters": values}
        atomic_write_text(path, json.dumps(document, indent=2) + "\n")

    def load(self, path: str | os.PathLike) -> None:
        """Set the parameters from a file written by :meth:`save`."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise TraceError(f"cannot read saved parameters from {path}: {error}") from error
        if not isinstance(document, dict) or document.get("format") != SAVE_FORMAT:
            raise TraceError(f"{path} is not a file written by Module.save")
        parameters = self.parameters_dict()
        unknown = sorted(set(document["parameters"]) - set(parameters))
        if unknown:
            raise TraceError(f"{path} has parameters this {type(self).__name__} does not: {', '.join(unknown)}")
        for key, value in document["parameters"].items():
            parameters[key]._set(value)

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
