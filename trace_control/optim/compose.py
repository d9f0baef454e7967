"""Composing a prompt from sections within a token budget.

Fixed parts are shown whole. Flexible parts render themselves within a token
allowance; they are allotted in the order given (priority), each at most its share
of what the fixed parts leave, so the last part takes what remains. The composed
text is then counted whole; should it still be over (joined text can count a few
tokens more than its parts), the last part is fitted again with less. If the fixed
parts alone are over the budget, the longest section is cut, with a note.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trace_control.optim.condense import condense_lines
from trace_control.optim.render import clip
from trace_control.optim.tokens import count_tokens, fits

Bodies = dict[str, str]
Renderer = Callable[[int | None], tuple[Bodies, list[str]]]  # allowance (None: no limit) -> bodies, notes
REFITS = 4


@dataclass
class Part:
    """Sections rendered together: ``titles``, ``render``, and their ``share`` of the flexible budget."""

    titles: tuple[str, ...]
    render: Renderer
    share: float = 1.0
    fixed: bool = False


def fixed_part(title: str, body: str) -> Part:
    return Part((title,), lambda _allowance: ({title: body}, []), fixed=True)


def text_part(title: str, text: str, share: float) -> Part:
    """A flexible section of lines, condensed by :func:`condense_lines` when it must be."""

    def render(allowance: int | None) -> tuple[Bodies, list[str]]:
        body, notes = condense_lines(text, allowance)
        return {title: body}, [f"#{title}: {note}" for note in notes]

    return Part((title,), render, share)


def join(order: Iterable[str], bodies: Bodies) -> str:
    return "\n\n".join(f"#{title}\n{bodies[title]}" for title in order if title in bodies)


def compose(parts: list[Part], order: list[str], budget: int | None) -> tuple[str, list[str]]:
    """The sections in ``order`` within ``budget`` tokens, and notes on what was left out."""
    bodies: Bodies = {}
    notes: list[str] = []
    for part in parts:
        rendered, part_notes = part.render(None)
        bodies.update(rendered)
        notes += part_notes
    text = join(order, bodies)
    if budget is None or fits(text, budget):
        return text, notes
    flexible = [part for part in parts if not part.fixed]
    skeleton = {**bodies, **{title: "" for part in flexible for title in part.titles}}
    available = max(0, budget - count_tokens(join(order, skeleton)))
    notes = [note for part in parts if part.fixed for note in part.render(None)[1]]
    remaining = available
    allowance = 0
    for part in flexible:
        allowance = max(0, min(remaining, int(part.share * available)))
        rendered, part_notes = part.render(allowance)
        bodies.update(rendered)
        notes += part_notes
        remaining -= count_tokens("\n\n".join(rendered.values()))
    for _ in range(REFITS):
        excess = count_tokens(join(order, bodies)) - budget
        if excess <= 0 or not flexible:
            break
        allowance = max(0, allowance - excess - 4)
        rendered, part_notes = flexible[-1].render(allowance)
        bodies.update(rendered)
        notes = [note for note in notes if not any(note.startswith(f"#{t}") for t in flexible[-1].titles)]
        notes += part_notes
    return _cut_to_fit(order, bodies, budget, notes)


def _cut_to_fit(order: list[str], bodies: Bodies, budget: int, notes: list[str]) -> tuple[str, list[str]]:
    """Cut the longest sections until the text fits: the last resort, said in the text."""
    text = join(order, bodies)
    excess = count_tokens(text) - budget
    while excess > 0:
        title = max(bodies, key=lambda name: len(bodies[name]))
        body = bodies[title]
        keep = max(0, len(body) - max(64, 4 * excess))
        bodies[title] = clip(body, keep) if keep else "(left out: over the prompt budget)"
        if body == bodies[title]:
            break  # nothing left to cut (the budget is smaller than the section titles)
        if f"#{title}: cut to fit the prompt budget" not in notes:
            notes.append(f"#{title}: cut to fit the prompt budget")
        text = join(order, bodies)
        excess = count_tokens(text) - budget
    return text, notes
