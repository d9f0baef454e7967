"""Memory: the past attempts an optimizer shows the LLM (the values tried, the feedback they got).

It keeps the last ``size`` attempts (none for size 0). Each is shown against the
current values: multi-line text (code) as a diff from the current text, or a one-line
summary when diffs do not fit; other values whole. Under a short allowance older
attempts lose their diffs first, then are left out, and the text says so.
"""

from __future__ import annotations

import difflib
from collections import deque
from dataclasses import dataclass
from typing import Any

from trace_control.optim.compose import Part
from trace_control.optim.condense import condense_lines, largest_fitting
from trace_control.optim.render import compact, plain, same_value

FEEDBACK_TOKENS = 300  # the most an attempt's feedback keeps
VALUE_CHARS = 300
DIFF_NOTE = "(In code diffs, lines with - are in the current code, lines with + were in that attempt.)"


@dataclass
class Attempt:
    """Values (by variable name, plain data) and the feedback they received."""

    values: dict[str, Any]
    feedback: str


class Memory:
    """A bounded record of past attempts, rendered within a token allowance."""

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"memory_size must be a whole number, 0 or more (got {size!r})")
        self.size = size
        self.attempts: deque[Attempt] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self.attempts)

    def remember(self, values: dict[str, Any], feedback: str) -> None:
        """Keep ``values`` and their ``feedback`` (condensed) as the newest attempt."""
        if self.size:
            condensed, _ = condense_lines(feedback, FEEDBACK_TOKENS)
            self.attempts.append(Attempt({name: plain(value) for name, value in values.items()}, condensed))

    def state(self) -> list[dict]:
        return [{"values": attempt.values, "feedback": attempt.feedback} for attempt in self.attempts]

    def load(self, state: list) -> None:
        """Replace the attempts by those of :meth:`state`; ``ValueError`` if ``state`` is not such a list."""
        if not isinstance(state, list) or not all(
                isinstance(item, dict) and isinstance(item.get("values"), dict)
                and isinstance(item.get("feedback"), str) for item in state):
            raise ValueError("optimizer memory must be a list of {'values': {...}, 'feedback': '...'} "
                             "(a checkpoint from an older version cannot restore it)")
        self.attempts.clear()
        self.attempts.extend(Attempt(dict(item["values"]), item["feedback"]) for item in state)

    def render(self, current: dict[str, Any], allowance: int | None) -> tuple[str, list[str]]:
        """The attempts (oldest first) against ``current`` values, within ``allowance`` tokens."""
        attempts = list(self.attempts)
        count = len(attempts)
        full = self._render(attempts, current, diffs=count)
        if allowance is None:
            return full, []
        # detail k: for k <= count the newest k attempts, summarised; above, all with the newest k - count diffed
        fitted = largest_fitting(2 * count, lambda k: self._render(
            attempts[count - min(k, count):], current, diffs=max(0, k - count)), allowance)
        if fitted is None:
            return f"({count} attempts left out to fit the budget)", [f"#Past attempts: all {count} left out"]
        detail, text = fitted
        notes = []
        if detail < count:
            notes.append(f"#Past attempts: {count - detail} oldest of {count} left out, code diffs summarised")
        elif detail < 2 * count:
            notes.append(f"#Past attempts: code diffs of the {2 * count - detail} oldest summarised")
        return text, notes

    def _render(self, attempts: list[Attempt], current: dict[str, Any], diffs: int) -> str:
        lines: list[str] = []
        left_out = len(self.attempts) - len(attempts)
        if left_out:
            lines.append(f"({left_out} older attempts left out to fit the budget)")
        first_number = left_out + 1
        for offset, attempt in enumerate(attempts):
            diffed = offset >= len(attempts) - diffs
            lines.append(f"Attempt {first_number + offset}:")
            for name, value in attempt.values.items():
                lines.append(_describe(name, value, current.get(name), diffed))
            lines.append(f"Feedback: {attempt.feedback}")
        if any("(diff from the current code):" in line for line in lines):
            lines.insert(0, DIFF_NOTE)
        return "\n".join(lines)


def _describe(name: str, value: Any, now: Any, diffed: bool) -> str:
    if same_value(value, now):
        return f"{name}: same as now"
    if isinstance(value, str) and isinstance(now, str) and ("\n" in value or "\n" in now):
        diff = list(difflib.unified_diff(now.splitlines(), value.splitlines(), lineterm="", n=1))[2:]
        changed = sum(line[:1] in ("+", "-") for line in diff)
        if diffed:
            return f"{name} (diff from the current code):\n" + "\n".join(diff)
        return f"{name}: {changed} lines differ from the current code (diff left out)"
    return f"{name} = {compact(value, VALUE_CHARS)}"


def memory_part(title: str, memory: Memory, current: dict[str, Any], share: float) -> Part:
    """The memory as a flexible section of a composed prompt."""

    def render(allowance: int | None) -> tuple[dict[str, str], list[str]]:
        text, notes = memory.render(current, allowance)
        return {title: text}, notes

    return Part((title,), render, share)
