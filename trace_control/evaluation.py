"""Evaluation results: per-seed episodes and their totals, with a confidence interval.

Results depend only on the seeds, never on the number of workers (see
:mod:`trace_control.runners`): each episode resets with its own seed, and results are
reported in seed order.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from trace_control.rollout import Episode


@dataclass
class EvalReport:
    """Per-seed episodes and their totals."""

    task: str
    seeds: list[int]
    episodes: list[dict] = field(default_factory=list)
    success_rate: float = 0.0
    success_interval: tuple[float, float] = (0.0, 1.0)
    return_mean: float = 0.0
    return_std: float = 0.0
    length_mean: float = 0.0
    env_steps: int = 0
    seconds: float = 0.0
    workers: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        low, high = self.success_interval
        return (f"{self.task}: success {self.success_rate:.2f} (95% CI {low:.2f}-{high:.2f}) over {len(self.seeds)} "
                f"seeds, return {self.return_mean:.2f} ± {self.return_std:.2f}, length {self.length_mean:.1f}")


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % by default); (0, 1) without trials."""
    if trials <= 0:
        return (0.0, 1.0)
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def summarize(task: str, seeds: Sequence[int], episodes: list[Episode], seconds: float, workers: int) -> EvalReport:
    returns = [e.episode_return for e in episodes]
    successes = sum(e.success for e in episodes)
    return EvalReport(
        task=task, seeds=list(seeds), episodes=[e.summary() for e in episodes],
        success_rate=successes / len(episodes) if episodes else 0.0,
        success_interval=wilson_interval(successes, len(episodes)),
        return_mean=statistics.fmean(returns) if returns else 0.0,
        return_std=statistics.pstdev(returns) if len(returns) > 1 else 0.0,
        length_mean=statistics.fmean(e.length for e in episodes) if episodes else 0.0,
        env_steps=sum(e.length for e in episodes), seconds=seconds, workers=workers)
