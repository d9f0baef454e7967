"""Reading an LLM's answer: a JSON object anywhere in the text, tolerantly.

Accepts code fences, prose around the object, raw newlines inside strings and
Python-style literals. Never raises: what cannot be read is returned as a problem.
Integers too long for any number type are kept as :class:`OversizedNumber` markers,
which validation refuses with a reason.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from trace_control.optim.render import clip, compact

MAX_START_POSITIONS = 200
MAX_ANSWER_CHARS = 200_000
MAX_FENCES = 8
MAX_LITERAL_ATTEMPTS = 20
MAX_REASONING_CHARS = 4000
MAX_INTEGER_DIGITS = 400  # beyond the range of a float; Python refuses to parse past 4,300


class OversizedNumber:
    """An integer in an answer with more digits than any parameter can hold."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __trace_render__(self) -> str:
        return f"<a number of {self.digits:,} digits>"


def _json_int(text: str) -> int | OversizedNumber:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INTEGER_DIGITS else OversizedNumber(digits)


_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\s*\n?(.*?)```", re.DOTALL)
# strict=False admits raw newlines inside strings
_DECODER = json.JSONDecoder(strict=False, parse_int=_json_int)


@dataclass
class Answer:
    """What an answer said: ``reasoning`` text, ``suggestion`` (name -> value), ``problems``."""

    reasoning: str = ""
    suggestion: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _objects(text: str) -> list[dict]:
    found: list[dict] = []
    starts = [match.start() for match in re.finditer(r"\{", text)][:MAX_START_POSITIONS]
    closing = _closing_braces(text) if starts else {}
    literal_attempts = MAX_LITERAL_ATTEMPTS
    end_of_last = -1
    for start in starts:
        if start < end_of_last:
            continue  # inside an object already read
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            value, end = None, start
            if start in closing and literal_attempts > 0:
                literal_attempts -= 1
                value, end = _python_literal(text, start, closing[start])
        if isinstance(value, dict):
            found.append(value)
            end_of_last = end
    return found


def _closing_braces(text: str) -> dict[int, int]:
    """Where each ``{`` outside a quoted string is closed, in one pass over ``text``."""
    closing: dict[int, int] = {}
    opened: list[int] = []
    quote, escaped = "", False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "{":
            opened.append(index)
        elif char == "}" and opened:
            closing[opened.pop()] = index
    return closing


def _python_literal(text: str, start: int, end: int) -> tuple[Any, int]:
    """The Python literal (e.g. single quotes, True/None) spanning ``text[start:end + 1]``, if it is one."""
    try:
        return ast.literal_eval(text[start:end + 1]), end + 1
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, start


def read_literal(text: str) -> Any:
    """``text`` as a JSON value, else as a Python literal. Raises ``ValueError`` when it is neither."""
    try:
        return _DECODER.decode(text.strip())
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
        raise ValueError(f"not a JSON or Python value: {type(error).__name__}") from None


def parse_answer(text: Any, finish_reason: str | None = None) -> Answer:
    """Find the answer object in ``text``; problems explain what was wrong."""
    if not isinstance(text, str) or not text.strip():
        return Answer(problems=["the answer was empty"])
    if len(text) > MAX_ANSWER_CHARS:
        return Answer(problems=[f"the answer was {len(text):,} characters long; answers are read up to "
                                f"{MAX_ANSWER_CHARS:,} (the code may be at most a few thousand lines)"])
    candidates = [match.group(1) for match in itertools.islice(_FENCE.finditer(text), MAX_FENCES)] + [text]
    objects: list[dict] = []
    for candidate in candidates:
        objects = _objects(candidate)
        if objects:
            break
    if not objects:
        why = "it was cut off at the length limit" if finish_reason == "length" else \
            "no complete JSON object was found"
        return Answer(reasoning=clip(text.strip(), MAX_REASONING_CHARS),
                      problems=[f"the answer could not be read as JSON ({why}); answer with one JSON "
                                'object {"reasoning": ..., "suggestion": {...}}'])
    chosen = next((o for o in objects if "suggestion" in o), None)
    if chosen is None:
        chosen = next((o for o in objects if "reasoning" in o), objects[0])
    reasoning = chosen.get("reasoning", "")
    reasoning = clip(reasoning, MAX_REASONING_CHARS) if isinstance(reasoning, str) else \
        compact(reasoning, MAX_REASONING_CHARS)
    if "suggestion" in chosen:
        suggestion = chosen["suggestion"]
    else:  # a bare {"name": value} object
        suggestion = {k: v for k, v in chosen.items() if k not in ("reasoning", "answer")}
    if suggestion is None or (isinstance(suggestion, (str, list)) and not suggestion):
        return Answer(reasoning=reasoning)
    if not isinstance(suggestion, dict):
        return Answer(reasoning=reasoning,
                      problems=[f'"suggestion" must be an object mapping variable names to values, '
                                f"got {type(suggestion).__name__}"])
    if any(not isinstance(key, str) for key in suggestion):
        return Answer(reasoning=reasoning, problems=['the names in "suggestion" must be text'])
    return Answer(reasoning=reasoning, suggestion=suggestion)
