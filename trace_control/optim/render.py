"""Compact, readable text for values shown to an LLM.

Floats are rounded to a few significant digits, numpy values become plain numbers
and lists, objects never appear as ``<object at 0x...>`` reprs. Objects may define
``__trace_render__()`` returning plain data to be shown in their place. Rendering is
total: any value (huge integers, deep or cyclic nesting, odd types) gives text.
"""

from __future__ import annotations

import math
from typing import Any

SIGNIFICANT_DIGITS = 4
MAX_DEPTH = 24  # nesting shown; deeper values (and cycles) render as "..."
MAX_INTEGER_BITS = 1024  # larger integers (beyond any float) are described, not written out


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain data: numpy scalars/arrays to numbers/lists, hooks applied."""
    if depth > MAX_DEPTH:
        return "..."
    render = getattr(type(value), "__trace_render__", None)
    if render is not None:
        return plain(render(value), depth + 1)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {key: plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain(item, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return plain(value.tolist(), depth + 1)
    if isinstance(value, BaseException):
        return f"({type(value).__name__}) {value}"
    return f"<{type(value).__name__}>"


def format_float(number: float, digits: int = SIGNIFICANT_DIGITS) -> str:
    if math.isnan(number) or math.isinf(number):
        return str(number)
    text = f"{number:.{digits}g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text


def format_int(number: int) -> str:
    """The integer, or a description of it when it is too large to be worth writing out."""
    if number.bit_length() > MAX_INTEGER_BITS:
        return f"<an integer of about {int(number.bit_length() * math.log10(2)) + 1} digits>"
    return str(number)


def clip(text: str, max_chars: int) -> str:
    """``text`` cut to about ``max_chars`` characters, keeping its start and its end."""
    if len(text) <= max_chars:
        return text
    tail = max_chars // 4
    head = max_chars - tail
    return f"{text[:head]} ... ({len(text) - head - tail:,} characters left out) ... {text[len(text) - tail:]}"


def compact(value: Any, max_chars: int = 2000, digits: int = SIGNIFICANT_DIGITS) -> str:
    """Render ``value`` compactly (Python literal style), cut at ``max_chars``."""
    return clip(_render(plain(value), digits, max_chars), max_chars)


def _render(value: Any, digits: int, max_chars: int) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return format_float(value, digits)
    if isinstance(value, int):
        return format_int(value)
    if isinstance(value, str):
        return repr(clip(value, max_chars))
    if isinstance(value, list):
        return "[" + ", ".join(_render(item, digits, max_chars) for item in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_render(item, digits, max_chars) for item in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_render(k, digits, max_chars)}: {_render(v, digits, max_chars)}"
                               for k, v in value.items()) + "}"
    return f"<{type(value).__name__}>"


def compact_delta(value: Any, previous: Any, previous_name: str, max_chars: int = 2000) -> str:
    """Like :func:`compact`, but what equals ``previous`` is named, not repeated.

    A value equal to ``previous`` reads ``(same as NAME)``; a dict's equal entries read
    ``(and KEYS as in NAME)``. ``previous_name`` must name an entry the reader can see.
    """
    current, before = plain(value), plain(previous)
    if same_value(current, before):
        return f"(same as {previous_name})"
    if not isinstance(current, dict) or not isinstance(before, dict):
        return compact(current, max_chars)
    changed = {key: item for key, item in current.items() if key not in before or not same_value(before[key], item)}
    same = [key for key in current if key not in changed]
    if not same:
        return compact(current, max_chars)
    text = compact(changed, max_chars)
    names = ", ".join(key if isinstance(key, str) else compact(key, 80) for key in same)
    return f"{text} (and {names} as in {previous_name})"


def same_value(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` have the same type and compare equal (never raises)."""
    try:
        return bool(type(a) is type(b) and a == b)
    except (ValueError, TypeError, RecursionError):
        return False
