"""RL baseline costs, as ratios measured in one run: SAC training time with 1 vs 2 PyTorch threads.

Why ``--threads 1`` is the default: SAC's networks are small, and on a two-core machine a second
thread mostly waits on the first (and on the simulator). Runs alternate between the two settings,
so load from other work falls on both alike.

    python benchmarks/baselines.py [--task reacher] [--steps 600] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from trace_control import baselines


def training_seconds(task: str, steps: int, threads: int) -> float:
    """Wall time of SAC's training (not its test) for ``steps`` environment steps, through the real run."""
    with tempfile.TemporaryDirectory() as folder:
        results = baselines.train_baseline(task, "sac", steps, 0, folder, test_seeds=[2000], threads=threads,
                                           echo=lambda line: None)
    return results["seconds"]["train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="reacher")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeat):
        for threads in times:
            times[threads].append(training_seconds(args.task, args.steps, threads))
    one, two = (statistics.median(times[threads]) for threads in (1, 2))
    print(f"SAC on {args.task}, {args.steps} steps, median of {args.repeat}: 1 thread {one:.1f} s "
          f"({args.steps / one:.0f} steps/s), 2 threads {two:.1f} s ({args.steps / two:.0f} steps/s)")
    print(f"2 threads take {two / one:.2f}x the time of 1 thread")


if __name__ == "__main__":
    main()
