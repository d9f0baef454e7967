"""Engine cost: a 10,000-op chain (build + backward) and a 500-step traced loop.

Prints times and ratios measured in this run: chain time per op at 1k vs 10k ops
(linearity), and the traced loop over the same loop untraced. When trace-opt is
installed (``pip install -e .[bench]``) the same workloads run on it too and the
ratio ours / theirs is printed.

``--baseline REF`` also runs the workloads on the engine as it was at git ``REF``
(imported from a temporary copy outside the repository) and prints now / then:

    python benchmarks/engine.py
    python benchmarks/engine.py --baseline main
"""

from __future__ import annotations

import argparse
import importlib
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import trace_control.trace as engine
from trace_control.trace import bundle, name_scope, node

REPO = Path(__file__).resolve().parents[1]


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def chain(n: int) -> None:
    with name_scope():
        x = node(1.0, name="x", trainable=True)
        y = x
        for _ in range(n):
            y = y + 1
        y.backward("smaller")
        x.zero_feedback()


def controller_body(obs: dict) -> list[float]:
    # about 50 microseconds of plain-Python arithmetic, like a small controller
    total = 0.0
    for i in range(420):
        total += math.sin(obs["hand_pos"][i % 3] * i)
    return [total * 1e-3, 0.0, 0.0, 0.0]


@bundle(trainable=True)
def controller(obs):
    """Map the observation to an action."""
    return controller_body(obs)


@bundle()
def env_step(action, obs):
    """Apply the action; return the next observation."""
    return {"hand_pos": [h + 0.01 * a for h, a in zip(obs["hand_pos"], action[:3], strict=False)]}


def plain_loop(steps: int = 500) -> None:
    obs = {"hand_pos": [0.1, 0.2, 0.3]}
    for _ in range(steps):
        action = controller_body(obs)
        obs = {"hand_pos": [h + 0.01 * a for h, a in zip(obs["hand_pos"], action[:3], strict=False)]}


def traced_loop(steps: int = 500) -> None:
    with name_scope():
        obs = node({"hand_pos": [0.1, 0.2, 0.3]}, name="obs")
        for _ in range(steps):
            action = controller(obs)
            obs = env_step(action, obs)
        obs.backward("feedback")
        controller.parameter.zero_feedback()


def trace_opt_workloads():
    """The same workloads written against trace-opt's API, or None when it is not installed."""
    try:
        from opto import trace as opto_trace  # type: ignore[import-not-found]
    except ImportError:
        return None

    def their_chain(n: int = 10_000) -> float:
        started = time.perf_counter()
        x = opto_trace.node(1.0, trainable=True)
        y = x
        for _ in range(n):
            y = y + 1
        y.backward("smaller")
        return time.perf_counter() - started

    @opto_trace.bundle(trainable=True)
    def their_controller(obs):
        """Map the observation to an action."""
        return controller_body(obs)

    @opto_trace.bundle()
    def their_env_step(action, obs):
        """Apply the action; return the next observation."""
        return {"hand_pos": [h + 0.01 * a for h, a in zip(obs["hand_pos"], action[:3])]}

    def their_loop(steps: int = 500) -> None:
        obs = opto_trace.node({"hand_pos": [0.1, 0.2, 0.3]})
        for _ in range(steps):
            action = their_controller(obs)
            obs = their_env_step(action, obs)
        obs.backward("feedback")

    return their_chain, their_loop


def load_baseline(ref: str, folder: Path) -> ModuleType:
    """The engine package as it was at git ``ref``, copied into ``folder`` and imported as ``baseline_engine``."""
    listed = subprocess.run(["git", "ls-tree", "--name-only", f"{ref}:trace_control/trace"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    package = folder / "baseline_engine"
    package.mkdir()
    for name in listed:
        if name.endswith(".py"):
            text = subprocess.run(["git", "show", f"{ref}:trace_control/trace/{name}"], cwd=REPO,
                                  capture_output=True, text=True, check=True).stdout
            (package / name).write_text(text.replace("trace_control.trace", "baseline_engine"))
    sys.path.insert(0, str(folder))
    return importlib.import_module("baseline_engine")


def engine_workloads(trace: ModuleType) -> dict:
    """The benchmark workloads written against ``trace`` (this engine or a baseline copy)."""

    @trace.bundle(trainable=True)
    def controller(obs):
        """Map the observation to an action."""
        return controller_body(obs)

    @trace.bundle()
    def env_step(action, obs):
        """Apply the action; return the next observation."""
        return {"hand_pos": [h + 0.01 * a for h, a in zip(obs["hand_pos"], action[:3], strict=False)]}

    @trace.bundle()
    def scale(value, factor):
        """Multiply."""
        return value * factor

    def chain_10k() -> None:
        with trace.name_scope():
            x = trace.node(1.0, name="x", trainable=True)
            y = x
            for _ in range(10_000):
                y = y + 1
            y.backward("smaller")
            x.zero_feedback()

    def loop() -> None:
        with trace.name_scope():
            obs = trace.node({"hand_pos": [0.1, 0.2, 0.3]}, name="obs")
            for _ in range(500):
                action = controller(obs)
                obs = env_step(action, obs)
            obs.backward("feedback")
            controller.parameter.zero_feedback()

    def bundle_calls() -> None:
        with trace.name_scope():
            value = trace.node(1.0, name="value")
            for _ in range(10_000):
                scale(value, 1.0)

    return {"10,000-op chain + backward": chain_10k, "500-step traced loop": loop,
            "10,000 bundle calls": bundle_calls}


def compare_with_baseline(ref: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="trace-engine-baseline-"))
    try:
        now, then = engine_workloads(engine), engine_workloads(load_baseline(ref, folder))
        for label in now:
            ratios = []
            for _ in range(7):  # interleave to share the machine's noise
                ratios.append(best_of(now[label], repeat=3) / best_of(then[label], repeat=3))
            print(f"{label}: this engine / {ref} = {statistics.median(ratios):.3f} (1.0 = same speed)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="REF", help="also time the engine at this git ref, e.g. main")
    options = parser.parse_args()
    small = best_of(lambda: chain(1_000))
    large = best_of(lambda: chain(10_000), repeat=3)
    print(f"chain 1,000 ops: {small * 1e3:.1f} ms; 10,000 ops: {large * 1e3:.1f} ms (target <= 250 ms)")
    print(f"linearity: time per op at 10k / at 1k = {(large / 10_000) / (small / 1_000):.2f} (1.0 = linear)")
    plain_loop()
    traced_loop()
    ratios = []
    for _ in range(7):  # interleave to share the machine's noise
        plain = best_of(plain_loop, repeat=3)
        traced = best_of(traced_loop, repeat=3)
        ratios.append(traced / plain)
    print(f"500-step loop: untraced {plain * 1e3:.1f} ms, traced {traced * 1e3:.1f} ms, "
          f"ratio traced/untraced = {statistics.median(ratios):.3f} (target <= 1.10)")
    if options.baseline:
        compare_with_baseline(options.baseline)
    theirs = trace_opt_workloads()
    if theirs is None:
        print("trace-opt not installed: install the 'bench' extra to compare against it")
        return
    their_chain, their_loop = theirs
    their_time = their_chain()
    print(f"trace-opt 10,000-op chain (build + backward): {their_time * 1e3:.0f} ms; ours / theirs = "
          f"{large / their_time:.3f}")
    their_loop(50)
    their_traced = best_of(their_loop, repeat=2)
    print(f"trace-opt 500-step loop: {their_traced * 1e3:.1f} ms = {their_traced / plain:.2f}x untraced; "
          f"ours / theirs = {traced / their_traced:.3f}")


if __name__ == "__main__":
    main()
