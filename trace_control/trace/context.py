"""Per-context tracing state, held in ``contextvars``.

Nothing here is process-global: two threads (or two asyncio tasks started from a
fresh context) tracing at once each see their own switches and name counters.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_TRACING: contextvars.ContextVar[bool] = contextvars.ContextVar("trace_control_tracing", default=True)
# Set while the body of a bundled operation runs: the nodes it reads are collected here
# (to find dependencies that were not passed as inputs) and operators on nodes return
# plain values instead of growing the graph.
_OP_BODY: contextvars.ContextVar[list | None] = contextvars.ContextVar("trace_control_op_body", default=None)
_NAMES: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "trace_control_names", default=None
)


def is_tracing() -> bool:
    """True when operations on nodes record new graph nodes in this context."""
    return _TRACING.get() and _OP_BODY.get() is None


@contextlib.contextmanager
def stop_tracing() -> Iterator[None]:
    """Run a block without recording: bundled operations return parentless nodes.

    Nestable; the previous state is restored on exit, also on error.
    """
    token = _TRACING.set(False)
    try:
        yield
    finally:
        _TRACING.reset(token)


def counters() -> dict[str, int]:
    """This context's name counters (base -> next index)."""
    found = _NAMES.get()
    if found is None:
        found = {}
        _NAMES.set(found)
    return found


def next_name(base: str) -> tuple[str, int]:
    """Return ``(base, index)`` with the next free index for ``base`` in this context."""
    found = counters()
    index = found.get(base, 0)
    found[base] = index + 1
    return base, index


@contextlib.contextmanager
def name_scope() -> Iterator[None]:
    """Number node names from zero inside the block (e.g. one scope per rollout).

    Nodes created before the block (parameters) keep their names; choose bases that
    do not clash, or rely on the optimizer's disambiguation of parameter names.
    """
    token = _NAMES.set({})
    try:
        yield
    finally:
        _NAMES.reset(token)


def record_use(node: object) -> None:
    """Note that an operation body read ``node`` (no-op outside op bodies)."""
    used = _OP_BODY.get()
    if used is not None:
        used.append(node)


def enter_op_body(used: list) -> contextvars.Token:
    """Start an operation's body: nodes it reads are collected in ``used``, and operators on nodes
    return plain values. Pass the token to :func:`exit_op_body`."""
    return _OP_BODY.set(used)


def exit_op_body(token: contextvars.Token) -> None:
    _OP_BODY.reset(token)


def in_op_body() -> bool:
    return _OP_BODY.get() is not None
