"""Which training placements an iteration rolls out: failing ones first, then fresh ones.

The training pool is shuffled once with the run's seed. Each batch starts with the
placements that failed last time they ran (most recent first), like hard-example mining,
and is filled with placements not tried yet; once every placement of a batch succeeds,
the next batch is all new. Without resampling (the paper's protocol), every batch is
the same first draw.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence


class PlacementSampler:
    """Draws batches of training placement seeds (see the module doc)."""

    def __init__(self, pool: Sequence[int], batch: int, seed: int = 0, resample: bool = True) -> None:
        if batch > len(pool):
            raise ValueError(f"a batch of {batch} cannot be drawn from a pool of {len(pool)} placements")
        self.order = list(pool)
        random.Random(seed).shuffle(self.order)
        self.batch = batch
        self.resample = resample
        self.next_fresh = 0
        self.failing: list[int] = []

    def draw(self) -> list[int]:
        if not self.resample:
            return self.order[:self.batch]
        chosen = self.failing[:self.batch]
        while len(chosen) < self.batch:
            seed = self.order[self.next_fresh % len(self.order)]
            self.next_fresh += 1
            if seed not in chosen:
                chosen.append(seed)
        return chosen

    def record(self, outcomes: Mapping[int, bool]) -> None:
        """Note which placements of the last batch succeeded."""
        failed = [seed for seed, success in outcomes.items() if not success]
        self.failing = failed + [seed for seed in self.failing if seed not in outcomes]

    def state_dict(self) -> dict:
        return {"next_fresh": self.next_fresh, "failing": list(self.failing)}

    def load_state_dict(self, state: Mapping) -> None:
        self.next_fresh = int(state["next_fresh"])
        self.failing = [int(seed) for seed in state["failing"]]
