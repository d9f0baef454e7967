"""One LLM budget shared by many clients: concurrency, requests and tokens per minute, cost.

:class:`SharedBudget` holds the state. It lives in one place (this process, or a Ray
actor for a whole cluster) and is reached through a :class:`BudgetHandle`, whose
methods block like plain calls. :class:`LimitedTransport` sits under an ``openai``
client and passes every HTTP request through the budget, retries included:

- before a request: wait until a slot is free (``concurrency``), fewer than ``rpm``
  requests started in the last 60 s, and the tokens started in the last 60 s plus this
  request's estimate (its body's size / 4, plus ``max_tokens`` if set) fit in ``tpm``.
  Waiting requests are admitted first come, first served.
- after the answer: the estimate is replaced by the tokens the server reports, and the
  tokens and estimated cost are added to the totals.
- on HTTP 429: every client holds back for Retry-After (or one second), not only the
  one that was refused.

Spending is checked before each new call (:meth:`BudgetHandle.stop_reason`): once
``max_cost`` is reached no call starts, while calls already under way finish, so the
total can pass the cap by what those cost.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

try:  # the HTTP library under the openai client (renamed in its newer versions)
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older openai releases
    import httpx

from trace_control.llm.usage import price_for

WINDOW_SECONDS = 60.0
DEFAULT_HOLD_SECONDS = 1.0
CHARACTERS_PER_TOKEN = 4


@dataclass(frozen=True)
class Limits:
    """Caps over every client of one budget (None: no cap)."""

    concurrency: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_cost: float | None = None


@dataclass
class Started:
    """A request started in the last minute: when, and its tokens (estimated, then as reported)."""

    at: float
    tokens: int


class SharedBudget:
    """The budget's state; its methods are coroutines so one event loop (or Ray actor) serves many waiters.

    ``spent_cost`` and ``spent_tokens`` carry over what earlier sessions of the same work
    spent. A request not released within its lease (its client died mid-request) frees
    its slot when the lease ends.
    """

    def __init__(self, limits: Limits, spent_cost: float = 0.0, spent_tokens: int = 0) -> None:
        self.limits = limits
        self.cost = spent_cost
        self.tokens = spent_tokens
        self.requests = 0
        self.held_until = 0.0
        self._under_way: dict[int, tuple[Started, float]] = {}  # grant -> (its window entry, when its slot lapses)
        self._window: deque[Started] = deque()
        self._queue: deque[int] = deque()
        self._numbers = itertools.count(1)
        self._changed: asyncio.Condition | None = None

    async def acquire(self, estimated_tokens: int, lease_seconds: float) -> int:
        """Wait for this request's turn; return its grant (hand it to :meth:`release`)."""
        changed = self._condition()
        async with changed:
            number = next(self._numbers)
            self._queue.append(number)
            try:
                while (wait := self._wait(number, estimated_tokens, time.monotonic())) > 0:
                    try:
                        await asyncio.wait_for(changed.wait(), timeout=None if math.isinf(wait) else wait)
                    except asyncio.TimeoutError:
                        pass
            finally:
                self._queue.remove(number)
                changed.notify_all()
            entry = Started(time.monotonic(), estimated_tokens)
            self._window.append(entry)
            self._under_way[number] = (entry, entry.at + lease_seconds)
            self.requests += 1
            return number

    async def release(self, grant: int, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        """The request ended: count what the server reported (zeros when it answered nothing)."""
        changed = self._condition()
        async with changed:
            entry, _ = self._under_way.pop(grant, (None, 0.0))
            tokens = prompt_tokens + completion_tokens
            if entry is not None:
                entry.tokens = tokens
            self.tokens += tokens
            self.cost += cost or 0.0
            changed.notify_all()

    async def hold(self, seconds: float) -> None:
        """The server said to slow down: no request of any client starts for ``seconds``."""
        changed = self._condition()
        async with changed:
            self.held_until = max(self.held_until, time.monotonic() + seconds)
            changed.notify_all()

    async def stop_reason(self) -> str | None:
        """Why no new call may start (the cost cap is reached), or None."""
        cap = self.limits.max_cost
        if cap is None or self.cost < cap:
            return None
        return f"the experiment's LLM budget is spent: ${self.cost:.4f} of ${cap:.4f} (--max-cost)"

    async def totals(self) -> dict[str, Any]:
        """Tokens, estimated cost and HTTP requests (retries included) over every client."""
        return {"tokens": self.tokens, "cost_usd": self.cost, "requests": self.requests}

    # -- the rules --------------------------------------------------------------------------------------
    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # made on first use, inside the loop that serves it
            self._changed = asyncio.Condition()
        return self._changed

    def _wait(self, number: int, estimated_tokens: int, now: float) -> float:
        """Seconds until request ``number`` may start (0: now; inf: until something changes)."""
        while self._window and self._window[0].at <= now - WINDOW_SECONDS:
            self._window.popleft()
        for grant in [grant for grant, (_, lapses) in self._under_way.items() if lapses <= now]:
            del self._under_way[grant]
        limits = self.limits
        waits = [self.held_until - now]
        if self._queue[0] != number:
            waits.append(math.inf)
        if limits.concurrency is not None and len(self._under_way) >= limits.concurrency:
            waits.append(min(lapses for _, lapses in self._under_way.values()) - now)
        if limits.requests_per_minute is not None and len(self._window) >= limits.requests_per_minute:
            waits.append(self._window[0].at + WINDOW_SECONDS - now)
        if limits.tokens_per_minute is not None:
            waits.append(self._token_wait(estimated_tokens, now))
        return max(0.0, *waits)

    def _token_wait(self, estimated_tokens: int, now: float) -> float:
        """Seconds until the window leaves room for ``estimated_tokens`` (alone, a request always fits)."""
        used = sum(entry.tokens for entry in self._window)
        if used + estimated_tokens <= self.limits.tokens_per_minute:
            return 0.0
        for entry in self._window:
            used -= entry.tokens
            if used <= 0 or used + estimated_tokens <= self.limits.tokens_per_minute:
                return entry.at + WINDOW_SECONDS - now
        return 0.0


class BudgetHandle:
    """Blocking access to a :class:`SharedBudget`, wherever it lives (see :class:`LocalBudget`)."""

    def acquire(self, estimated_tokens: int, lease_seconds: float) -> int:
        return self._call("acquire", estimated_tokens, lease_seconds)

    def release(self, grant: int, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        self._call("release", grant, prompt_tokens, completion_tokens, cost)

    def hold(self, seconds: float) -> None:
        self._call("hold", seconds)

    def stop_reason(self) -> str | None:
        return self._call("stop_reason")

    def totals(self) -> dict[str, Any]:
        return self._call("totals")

    def _call(self, method: str, *args: Any) -> Any:
        raise NotImplementedError


class LocalBudget(BudgetHandle):
    """A :class:`SharedBudget` served by an event loop on a thread of this process."""

    def __init__(self, limits: Limits, spent_cost: float = 0.0, spent_tokens: int = 0) -> None:
        self.budget = SharedBudget(limits, spent_cost, spent_tokens)
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="llm-budget", daemon=True).start()

    def _call(self, method: str, *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(getattr(self.budget, method)(*args), self._loop).result()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


class LimitedTransport(httpx.BaseTransport):
    """An HTTP transport that passes every request through a budget (see the module doc)."""

    def __init__(self, budget: BudgetHandle, lease_seconds: float) -> None:
        self.budget = budget
        self.lease_seconds = lease_seconds
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        grant = self.budget.acquire(estimate_tokens(request.content), self.lease_seconds)
        prompt_tokens = completion_tokens = 0
        cost = None
        try:
            response = self.inner.handle_request(request)
            response.read()  # the slot is held until the whole answer is in
            if response.status_code == 429:
                self.budget.hold(retry_after_seconds(response.headers) or DEFAULT_HOLD_SECONDS)
            elif response.status_code == 200:
                prompt_tokens, completion_tokens, cost = reported_usage(response.content)
            return response
        finally:
            self.budget.release(grant, prompt_tokens, completion_tokens, cost)

    def close(self) -> None:
        self.inner.close()


def estimate_tokens(body: bytes) -> int:
    """A request's tokens before it is sent: its size / 4, plus the completion cap it asks for."""
    try:
        request = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        request = None
    cap = (request.get("max_completion_tokens") or request.get("max_tokens") or 0) if isinstance(request, dict) else 0
    return len(body or b"") // CHARACTERS_PER_TOKEN + int(cap)


def reported_usage(body: bytes) -> tuple[int, int, float | None]:
    """(prompt tokens, completion tokens, estimated cost) from a chat-completions answer; zeros if unreadable."""
    try:
        answer = json.loads(body)
        usage = answer.get("usage") or {}
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        model = str(answer.get("model") or "")
    except (ValueError, TypeError, AttributeError):
        return 0, 0, None
    price = price_for(model)
    return prompt, completion, (prompt * price[0] + completion * price[1]) / 1e6 if price else None


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds a 429 asks to wait: ``retry-after-ms``, ``retry-after`` in seconds or as a date; None if absent."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            pass
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            continue
    return None
