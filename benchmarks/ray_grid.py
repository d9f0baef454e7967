"""Wall time of a small experiment grid on Ray with 2 workers against the local path, same machine.

The grid (reach x trace, nomem x seeds 0-1, 3 iterations each, every iteration changing
the controller so that it is validated) runs twice through the real command, against the
scripted LLM server of the tests, which waits a fixed time before every answer to stand
in for an LLM's latency:

- here: ``trace-control experiment`` (one run after another, in one process);
- Ray: the same command with ``--ray ADDRESS``, joining a local Ray instance of 2 CPUs
  started beforehand (as a cluster would be), so 2 runs go at once.

    python -m benchmarks.ray_grid [--latency 5.0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import count
from pathlib import Path

import ray

from tests.llm_server import ScriptedLLMServer, answer

GRID = ["--tasks", "reach", "--methods", "trace,nomem", "--seeds", "0-1", "--iterations", "3", "--solved-batches",
        "0", "--patience", "0", "--validation-seeds", "1000-1002", "--test-seeds", "2000-2002", "--no-progress"]
CODE = ("def controller(self, obs):\n    hand, goal = obs['hand_pos'], obs['goal_pos']\n"
        "    return [goal[0] - hand[0], goal[1] - hand[1], goal[2] - hand[2], 0.0]  # version {}\n")


def timed_grid(out: Path, latency: float, extra: list[str]) -> tuple[float, dict]:
    """Seconds the command took, and the summary it wrote."""
    versions = count(1)
    with ScriptedLLMServer(lambda body: answer({"__code0": CODE.format(next(versions))}),
                           answer_delay=latency) as server:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
        environment.update({"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "benchmark",
                            "TRACE_CONTROL_MODEL": "gpt-4o-mini"})
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "trace_control.cli", "experiment", *GRID, "--out", str(out), *extra],
                       env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started, json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=5.0, help="seconds the scripted LLM waits per answer")
    latency = parser.parse_args().latency
    with tempfile.TemporaryDirectory() as folder:
        here_seconds, here = timed_grid(Path(folder) / "here", latency, [])
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing leaves this machine
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - started
        try:
            address = ray.get_runtime_context().gcs_address
            ray_seconds, there = timed_grid(Path(folder) / "ray", latency, ["--ray", address])
        finally:
            ray.shutdown()
    same = "the same summary" if here == there else "DIFFERENT summaries"
    print(f"experiment grid of 4 runs x 3 iterations (reach; trace, nomem; seeds 0-1), scripted LLM waiting "
          f"{latency:.1f} s per answer to mimic an LLM's latency, {os.cpu_count()} CPU(s):")
    print(f"  here (one run after another): {here_seconds:.1f} s")
    print(f"  Ray, 2 workers (local instance, started beforehand in {startup:.1f} s): {ray_seconds:.1f} s")
    print(f"  wall time Ray / here: {ray_seconds / here_seconds:.2f} (speed-up {here_seconds / ray_seconds:.2f}x); "
          f"{same}")


if __name__ == "__main__":
    main()
