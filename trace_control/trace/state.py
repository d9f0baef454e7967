"""Parameter values as plain data: convert, check against the current value, write safely."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from trace_control.trace.errors import TraceError

_UMASK = os.umask(0o022)  # read once: os.umask can only be read by setting it
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


def fit_value(value: Any, current: Any, where: str = "value") -> Any:
    """``value`` in the type of ``current`` (a parameter's value), or :class:`TraceError`.

    Numbers stay numbers (an int parameter may become a float), text stays text,
    lists and tuples keep their kind and their items are checked against the current
    items, dicts are checked key by key, numpy arrays keep their dtype. Text is never
    parsed: ``"0.5"`` does not fit a float.
    """
    if current is None:
        return value
    if isinstance(current, bool) or isinstance(current, str):
        if type(value) is not type(current):
            raise TraceError(f"{where} must be {_kind(current)}, got {_kind(value)}")
        return value
    if isinstance(current, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TraceError(f"{where} must be a number, got {_kind(value)}")
        if isinstance(current, int) and not float(value).is_integer():
            return float(value)
        return type(current)(value)
    if isinstance(current, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise TraceError(f"{where} must be a list, got {_kind(value)}")
        items = [fit_value(item, current[min(i, len(current) - 1)], f"{where}[{i}]") if current else item
                 for i, item in enumerate(value)]
        return items if isinstance(current, list) else tuple(items)
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise TraceError(f"{where} must be a dict, got {_kind(value)}")
        return {key: fit_value(item, current[key], f"{where}[{key!r}]") if key in current else item
                for key, item in value.items()}
    if hasattr(current, "dtype") and hasattr(current, "shape"):  # numpy array
        import numpy

        if isinstance(value, str):
            raise TraceError(f"{where} must be an array of {current.dtype}, got {_kind(value)}")
        try:
            return numpy.asarray(value, dtype=current.dtype)
        except (TypeError, ValueError) as error:
            raise TraceError(f"{where} must be an array of {current.dtype}: {error}") from None
    if type(value) is not type(current):
        raise TraceError(f"{where} must be {_kind(current)}, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"text ({value[:40]!r})" if value else "text"
    return "true or false" if isinstance(value, bool) else f"a {type(value).__name__}"


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
