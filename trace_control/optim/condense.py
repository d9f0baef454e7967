"""Fitting a trace, or a list of lines, into a token allowance by meaning, not by position.

A rollout repeats the same operations (controller, step, controller, step, ...). The
operations are cut into *units*, one repetition of the pattern each, and linked
units with the same pattern form a *run* (an episode). In a run, the units always
kept are the first, the last, every error and the unit before it; then, as far as
the allowance permits: units whose feedback differs from a neighbour's (the rarest
kinds first), units with the largest change of their reward (or of the first number
in their feedback), then the rest. Left-out units are summarised in place by their
range and the kinds of feedback they had. A value written as a delta
(``(and x as in stepN)``) only ever names an entry that is shown.

Long feedback is condensed the same way, a line being a unit.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trace_control.optim.problem import ProblemInstance, is_code, op_name, show
from trace_control.optim.render import clip, compact_delta, plain
from trace_control.optim.tokens import fits
from trace_control.trace import ExceptionNode, Node

MAX_PERIOD = 4  # operations per repetition that are recognised
SAMPLE_STRIDE = 2  # unremarkable units are candidates only every this many positions, coarse to fine
MAX_LINE_CHARS = 1000  # one line of feedback, at most
SHORTER_VALUES = (400, 120)  # value lengths tried when the kept units do not fit at full length
TRACE_SECTIONS = ("Code", "Inputs", "Others")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_REWARD = re.compile(r"reward[^-\d]{0,40}(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)", re.IGNORECASE)


def kind_of(text: str) -> str:
    """What ``text`` says with its numbers masked: texts of one kind differ only in numbers."""
    return _NUMBER.sub("#", text)


def _scalar(text: str) -> float | None:
    """The number that measures progress in a feedback text: its reward, else its first number."""
    match = _REWARD.search(text) or _NUMBER.search(text)
    if match is None:
        return None
    try:
        return float(match.group(match.lastindex or 0))
    except (ValueError, OverflowError):
        return None


@dataclass
class Item:
    """One unit of condensation: what it means (``kind``), says (``text``) and measures (``scalar``)."""

    kind: tuple[str, ...]
    text: str | None
    scalar: float | None
    required: bool = False


def ranked(items: list[Item], groups: Iterable[list[int]]) -> list[int]:
    """Indices of items worth showing beyond the required ones, the most important first.

    ``groups`` are sequences of item indices that follow each other (the units of a
    run); neighbours and changes are judged inside a group only. First come items whose
    kind differs from a neighbour's (rarest kinds first), then the largest changes of
    the scalar (at least a quarter of the group's largest), then, every
    ``SAMPLE_STRIDE`` positions, items like their neighbours (coarse to fine).
    """
    changes: list[tuple[tuple, int]] = []
    jumps: list[tuple[tuple, int]] = []
    samples: list[tuple[tuple, int]] = []
    for group in groups:
        counts = Counter(items[i].kind for i in group)
        steps = [_change(items[group[p - 1]].scalar, items[i].scalar) if p else 0.0 for p, i in enumerate(group)]
        largest = max(steps, default=0.0)
        for position, index in enumerate(group):
            item = items[index]
            if item.required:
                continue
            neighbours = [group[p] for p in (position - 1, position + 1) if 0 <= p < len(group)]
            if any(items[n].kind != item.kind for n in neighbours):
                changes.append(((counts[item.kind], index), index))
            elif largest > 0 and steps[position] >= largest / 4:
                jumps.append(((-steps[position], index), index))
            elif position % SAMPLE_STRIDE == 0:
                spread = (position & -position).bit_length()  # multiples of larger powers of two first
                samples.append(((-spread, index), index))
    return [index for selection in (changes, jumps, samples) for _, index in sorted(selection)]


def _change(before: float | None, after: float | None) -> float:
    if before is None or after is None:
        return 0.0
    change = abs(after - before)
    return change if change == change and change != float("inf") else 0.0


def describe_kinds(items: list[Item], limit: int = 3, max_chars: int = 200) -> str:
    """The kinds of text of ``items``, most frequent first: a count and the text, with each
    number that changed written ``first->last`` (first and last text of that kind)."""
    by_kind: dict[tuple[str, ...], list[str]] = {}
    for item in items:
        if item.text:
            by_kind.setdefault(item.kind, []).append(item.text)
    common = sorted(by_kind.values(), key=len, reverse=True)
    parts = [f"{len(group)}x {clip(_span_numbers(group[0], group[-1]), max_chars)!r}" for group in common[:limit]]
    if len(common) > limit:
        parts.append(f"and {len(common) - limit} other kinds")
    return "; ".join(parts)


def _span_numbers(first: str, last: str) -> str:
    """``first`` with each number that differs in ``last`` (a text of the same kind) as ``a->b``."""
    ends = iter(_NUMBER.findall(last))
    return _NUMBER.sub(lambda match: _arrow(match.group(0), next(ends, match.group(0))), first)


def _arrow(start: str, end: str) -> str:
    return start if start == end else f"{start}->{end}"


def largest_fitting(count: int, render: Callable[[int], str], allowance: int) -> tuple[int, str] | None:
    """The largest ``k`` in ``0..count`` whose ``render(k)`` fits ``allowance`` tokens (sizes grow with k).

    Searches up from 0 by doubling, then halves the last interval, so no text counted
    is much longer than one that fits. Returns ``(k, text)``, or None when even 0 does not fit.
    """
    text = render(0)
    if not fits(text, allowance):
        return None
    low, best, step = 0, text, 1
    high = count
    while low < high:
        probe = min(high, low + step)
        text = render(probe)
        if fits(text, allowance):
            low, best = probe, text
            step *= 2
        else:
            high, step = probe - 1, 1
    return low, best


# -- lines -------------------------------------------------------------------------------------

def condense_lines(text: str, allowance: int | None) -> tuple[str, list[str]]:
    """``text`` within ``allowance`` tokens: lines cut to a length, then similar lines summarised.

    Returns the text and notes on what was left out.
    """
    raw = text.split("\n")
    lines = [clip(line, MAX_LINE_CHARS) for line in raw]
    cut = sum(len(line) > MAX_LINE_CHARS for line in raw)
    notes = [f"{cut} over-long lines cut to about {MAX_LINE_CHARS} characters"] if cut else []
    whole = "\n".join(lines)
    if allowance is None or fits(whole, allowance):
        return whole, notes
    items = [Item((kind_of(line),), line, _scalar(line)) for line in lines]
    items[0].required = True
    order = ranked(items, [list(range(len(items)))])

    def render(k: int) -> str:
        keep = {index for index, item in enumerate(items) if item.required} | set(order[:k])
        out: list[str] = []
        gap: list[int] = []
        for index, line in enumerate(lines + [""]):
            if index in keep or index == len(lines):
                if gap:
                    out.append(f"({len(gap)} lines left out: {describe_kinds([items[g] for g in gap])})")
                    gap = []
                if index < len(lines):
                    out.append(line)
            else:
                gap.append(index)
        return "\n".join(out)

    fitted = largest_fitting(len(order), render, allowance)
    if fitted is None:
        return clip(render(0), max(40, allowance * 2)), notes + ["lines summarised and cut to fit"]
    kept, body = fitted
    left_out = len(lines) - kept - 1
    return body, notes + ([f"{left_out} of {len(lines)} lines summarised"] if left_out else [])


# -- the trace ---------------------------------------------------------------------------------

@dataclass
class _Unit:
    nodes: list[Node]
    pattern: tuple[str, ...]


def split_units(operations: list[Node]) -> list[_Unit]:
    """Cut ``operations`` into repetitions of the shortest pattern of op names that repeats most."""
    names = [op_name(node) for node in operations]
    units: list[_Unit] = []
    start = 0
    while start < len(names):
        best_period, best_count = 1, 1
        for period in range(1, MAX_PERIOD + 1):
            pattern = names[start:start + period]
            if len(pattern) < period:
                break
            count = 1
            while names[start + count * period:start + (count + 1) * period] == pattern:
                count += 1
            if count > 1 and count * period > best_count * best_period:
                best_period, best_count = period, count
        for repetition in range(best_count):
            begin = start + repetition * best_period
            chunk = operations[begin:begin + best_period]
            units.append(_Unit(chunk, tuple(names[begin:begin + best_period])))
        start += best_period * best_count
    return units


def _runs(units: list[_Unit]) -> list[list[int]]:
    """Consecutive units with one pattern, each reading the one before (one episode each)."""
    runs: list[list[int]] = []
    for index, unit in enumerate(units):
        if runs and units[runs[-1][-1]].pattern == unit.pattern and _reads(unit, units[runs[-1][-1]]):
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def _reads(unit: _Unit, earlier: _Unit) -> bool:
    ids = {id(node) for node in earlier.nodes}
    return any(id(parent) in ids for node in unit.nodes for parent in node.parents)


def _node_text(value: object) -> str | None:
    """The text a value carries: its ``feedback`` entry, or itself when it is text."""
    if isinstance(value, dict):
        text = value.get("feedback")
        return text if isinstance(text, str) else None
    return value if isinstance(value, str) else None


def _unit_scalar(values: list[object]) -> float | None:
    for value in values:
        if isinstance(value, dict) and isinstance(value.get("reward"), (int, float)):
            return float(value["reward"])
        text = _node_text(value)
        if text is not None:
            return _scalar(text)
    return None


class TraceCondenser:
    """Renders #Code, #Inputs and #Others of a problem, whole or condensed to an allowance."""

    def __init__(self, problem: ProblemInstance, hidden: set[str]) -> None:
        self.problem = problem
        self.hidden = hidden
        self.outputs = {id(node) for node in problem.outputs}
        self.members = {id(node) for node in problem.operations}
        self.units = split_units(problem.operations)
        self.values = {id(node): plain(node.data) for node in problem.operations}
        self.items: list[Item] = []
        for unit in self.units:
            values = [self.values[id(node)] for node in unit.nodes]
            texts = [text for text in map(_node_text, values) if text is not None]
            error = any(isinstance(node, ExceptionNode) for node in unit.nodes)
            self.items.append(Item(tuple(kind_of(text) for text in texts), texts[0] if texts else None,
                                   _unit_scalar(values), error))
        self._shown: dict[tuple, str] = {}  # rendered values by (node, node compared with, length)
        self.runs = _runs(self.units)
        for run in self.runs:
            for position, index in enumerate(run):
                if position in (0, len(run) - 1) or len(run) <= 2:
                    self.items[index].required = True
                elif self.items[index].required:  # an error: the unit before shows what led to it
                    self.items[run[position - 1]].required = True
        self.order = ranked(self.items, self.runs)

    def fit(self, allowance: int | None) -> tuple[dict[str, str], list[str]]:
        """Section bodies within ``allowance`` tokens (together), and notes on what was left out."""
        whole = self.render(None, self.problem.value_chars)
        if allowance is None or fits(self._joined(whole), allowance):
            return whole, []
        for value_chars in (self.problem.value_chars, *SHORTER_VALUES):
            fitted = largest_fitting(len(self.order), lambda k, chars=value_chars: self._joined(
                self.render(set(self.order[:k]), chars)), allowance)
            if fitted is not None:
                kept = fitted[0]
                break
        else:
            kept = 0
        bodies = self.render(set(self.order[:kept]), value_chars)
        shown = kept + sum(item.required for item in self.items)
        note = (f"#Code/#Others: {shown} of {len(self.units)} repetitions shown in full, the rest summarised by "
                "range and kind of feedback")
        if value_chars < self.problem.value_chars:
            note += f"; values cut to {value_chars} characters"
        return bodies, [note]

    def _joined(self, bodies: dict[str, str]) -> str:
        return "\n\n".join(bodies[section] for section in TRACE_SECTIONS if section not in self.hidden)

    def render(self, chosen: set[int] | None, value_chars: int) -> dict[str, str]:
        """Bodies of #Code, #Inputs, #Others showing the required units and ``chosen`` (None: all)."""
        code: list[str] = []
        inputs: list[str] = []
        others: list[str] = []
        inputs_seen: set[int] = set()
        previous_by_op: dict[str, Node] = {}
        last_said: tuple[str, str] | None = None  # the last feedback text shown, and whose it is
        gap: list[int] = []
        for index, unit in enumerate(self.units + [None]):
            shown = unit is not None and (chosen is None or self.items[index].required or index in chosen)
            if not shown and unit is not None:
                gap.append(index)
                continue
            if gap:
                code.append(self._gap_code(gap))
                others.append(self._gap_others(gap, last_said))
                gap = []
            if unit is None:
                break
            for current in unit.nodes:
                code.append(self._code_line(current))
                for parent in current.parents:
                    if id(parent) not in self.members and id(parent) not in inputs_seen and not parent.trainable:
                        inputs_seen.add(id(parent))
                        label = "(code) " if is_code(parent) else ""
                        inputs.append(f"{label}{parent.py_name} = {show(parent.data, value_chars)}")
                if id(current) in self.outputs:
                    continue
                previous = previous_by_op.get(op_name(current))
                previous_by_op[op_name(current)] = current
                others.append(f"{current.py_name} = {self._value_text(current, previous, value_chars)}")
                text = _node_text(self.values[id(current)])
                if text is not None:
                    last_said = (text, current.py_name)
        bodies = {"Code": code, "Inputs": inputs, "Others": others}
        return {section: ("(not shown)" if section in self.hidden else "\n".join(entries) or "(none)")
                for section, entries in bodies.items()}

    def _value_text(self, current: Node, previous: Node | None, value_chars: int) -> str:
        """``current``'s value, written as a delta from ``previous`` (a shown entry) when there is one."""
        key = (id(current), id(previous) if previous is not None else None, value_chars)
        if key not in self._shown:
            value = self.values[id(current)]
            self._shown[key] = show(value, value_chars) if previous is None else compact_delta(
                value, self.values[id(previous)], previous.py_name, value_chars)
        return self._shown[key]

    @staticmethod
    def _code_line(current: Node) -> str:
        arguments = ", ".join(f"{arg}={parent.py_name}" for arg, parent in current.inputs.items())
        line = f"{current.py_name} = {op_name(current)}({arguments})"
        return line + "  # raised an error" if isinstance(current, ExceptionNode) else line

    def _span(self, gap: list[int]) -> str:
        first, last = self.units[gap[0]].nodes[0], self.units[gap[-1]].nodes[-1]
        return f"{first.py_name} ... {last.py_name}"

    def _gap_code(self, gap: list[int]) -> str:
        pattern = ", ".join(self.units[gap[0]].pattern)
        return f"... ({self._span(gap)}: {_repetitions(len(gap))} of {pattern} left out)"

    def _gap_others(self, gap: list[int], last_said: tuple[str, str] | None) -> str:
        items = [self.items[index] for index in gap]
        if last_said is not None and all(item.text == last_said[0] for item in items):
            said = f"; their feedback: the same as {last_said[1]}'s"
        else:
            kinds = describe_kinds(items)
            said = f"; their feedback: {kinds}" if kinds else ""
        return f"... ({self._span(gap)}: {_repetitions(len(gap))} left out{said})"


def _repetitions(count: int) -> str:
    return "1 repetition" if count == 1 else f"{count} repetitions"
