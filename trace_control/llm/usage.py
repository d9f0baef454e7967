"""Token and cost accounting for LLM calls."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# US dollars per million tokens (prompt, completion): list prices of widely used models,
# used only for an estimate. Unknown models report no cost rather than a guess.
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
}


def price_for(model: str) -> tuple[float, float] | None:
    """The (prompt, completion) price per million tokens, matching dated variants too."""
    if model in PRICES_PER_MILLION:
        return PRICES_PER_MILLION[model]
    candidates = [name for name in PRICES_PER_MILLION if model.startswith(name + "-")]
    return PRICES_PER_MILLION[max(candidates, key=len)] if candidates else None


@dataclass
class Usage:
    """Totals over calls: counts, tokens as the server reported them, estimated cost."""

    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, model: str, prompt_tokens: int, completion_tokens: int) -> dict:
        """Count one successful call; returns its own record (tokens and cost)."""
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        price = price_for(model)
        cost = None
        if price is not None:
            cost = (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
        if cost is None:
            self.cost_usd = None
        elif self.cost_usd is not None:
            self.cost_usd += cost
        record = {"model": model, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "cost_usd": cost}
        return record

    def restore(self, summary: dict) -> None:
        """Continue counting from a :meth:`summary` (a resumed run)."""
        for key in ("calls", "failed_calls", "prompt_tokens", "completion_tokens"):
            value = summary.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"the recorded usage {key} is {value!r}, not a count")
            setattr(self, key, value)
        cost = summary.get("cost_usd", 0.0)
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0):
            raise ValueError(f"the recorded cost is {cost!r}, not an amount")
        self.cost_usd = cost

    def summary(self) -> dict:
        data = asdict(self)
        data["total_tokens"] = self.total_tokens
        return data
