"""Compact, readable text for values shown to an LLM.

Floats are rounded to a few significant digits, numpy values become plain numbers
and lists, objects never appear as ``<object at 0x...>`` reprs. Objects may define
``__trace_render__()`` returning plain data to be shown in their place.
"""

from __future__ import annotations

import math
from typing import Any

SIGNIFICANT_DIGITS = 4


def plain(value: Any) -> Any:
    """``value`` as plain data: numpy scalars/arrays to numbers/lists, hooks applied."""
    render = getattr(type(value), "__trace_render__", None)
    if render is not None:
        return plain(render(value))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return plain(value.tolist())
    if isinstance(value, BaseException):
        return f"({type(value).__name__}) {value}"
    return f"<{type(value).__name__}>"


def format_float(number: float, digits: int = SIGNIFICANT_DIGITS) -> str:
    if math.isnan(number) or math.isinf(number):
        return str(number)
    text = f"{number:.{digits}g}"
    if "e" not in text and "." not in text and "inf" not in text and "nan" not in text:
        text += ".0"
    return text


def compact(value: Any, max_chars: int = 2000, digits: int = SIGNIFICANT_DIGITS) -> str:
    """Render ``value`` compactly (Python literal style), cut at ``max_chars``."""
    text = _render(plain(value), digits)
    if len(text) > max_chars:
        text = text[:max_chars] + f"... ({len(text) - max_chars} more characters)"
    return text


def _render(value: Any, digits: int) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return format_float(value, digits)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_render(item, digits) for item in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_render(item, digits) for item in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_render(k, digits)}: {_render(v, digits)}" for k, v in value.items()) + "}"
    return str(value)


def compact_delta(value: Any, previous: Any, previous_name: str, max_chars: int = 2000) -> str:
    """Like :func:`compact`, but a dict's entries equal to ``previous``'s are named, not repeated."""
    current, before = plain(value), plain(previous)
    if not isinstance(current, dict) or not isinstance(before, dict):
        return compact(current, max_chars)
    changed = {key: item for key, item in current.items() if key not in before or before[key] != item}
    same = [key for key in current if key not in changed]
    if not same:
        return compact(current, max_chars)
    text = compact(changed, max_chars)
    return f"{text} (and {', '.join(str(key) for key in same)} as in {previous_name})"


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters per token for English and code)."""
    return (len(text) + 3) // 4
