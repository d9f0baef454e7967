"""Reading an LLM's answer: a JSON object anywhere in the text, tolerantly.

Accepts code fences, prose around the object, raw newlines inside strings and
Python-style literals. Never raises: what cannot be read is returned as a problem.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder(strict=False)  # strict=False admits raw newlines inside strings
MAX_START_POSITIONS = 200


@dataclass
class Answer:
    """What an answer said: ``reasoning`` text, ``suggestion`` (name -> value), ``problems``."""

    reasoning: str = ""
    suggestion: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _objects(text: str) -> list[dict]:
    found: list[dict] = []
    starts = [match.start() for match in re.finditer(r"\{", text)][:MAX_START_POSITIONS]
    end_of_last = -1
    for start in starts:
        if start < end_of_last:
            continue  # inside an object already read
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            value, end = _python_literal(text, start)
        if isinstance(value, dict):
            found.append(value)
            end_of_last = end
    return found


def _python_literal(text: str, start: int) -> tuple[Any, int]:
    depth, quote, escaped = 0, "", False
    for index in range(start, min(len(text), start + 200_000)):
        char = text[index]
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
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                try:
                    return ast.literal_eval(text[start:index + 1]), index + 1
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    return None, start
    return None, start


def parse_answer(text: Any, finish_reason: str | None = None) -> Answer:
    """Find the answer object in ``text``; problems explain what was wrong."""
    if not isinstance(text, str) or not text.strip():
        return Answer(problems=["the answer was empty"])
    candidates = [match.group(1) for match in _FENCE.finditer(text)] + [text]
    objects: list[dict] = []
    for candidate in candidates:
        objects = _objects(candidate)
        if objects:
            break
    if not objects:
        why = "it was cut off at the length limit" if finish_reason == "length" else \
            "no complete JSON object was found"
        return Answer(reasoning=text.strip()[:2000],
                      problems=[f"the answer could not be read as JSON ({why}); answer with one JSON "
                                'object {"reasoning": ..., "suggestion": {...}}'])
    chosen = next((o for o in objects if "suggestion" in o), None)
    if chosen is None:
        chosen = next((o for o in objects if "reasoning" in o), objects[0])
    reasoning = chosen.get("reasoning", "")
    reasoning = reasoning if isinstance(reasoning, str) else json.dumps(reasoning)
    if "suggestion" not in chosen:
        rest = {k: v for k, v in chosen.items() if k not in ("reasoning", "answer")}
        return Answer(reasoning=reasoning, suggestion=rest)
    suggestion = chosen["suggestion"]
    if suggestion is None or suggestion == "" or suggestion == []:
        return Answer(reasoning=reasoning)
    if not isinstance(suggestion, dict):
        return Answer(reasoning=reasoning,
                      problems=[f'"suggestion" must be an object mapping variable names to values, '
                                f"got {type(suggestion).__name__}"])
    return Answer(reasoning=reasoning, suggestion=suggestion)
