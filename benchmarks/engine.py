"""Engine cost: a 10,000-op chain (build + backward) and a 500-step traced loop.

Prints times and ratios measured in this run: chain time per op at 1k vs 10k ops
(linearity), and the traced loop over the same loop untraced. When trace-opt is
installed (``pip install -e .[bench]``) the same workloads run on it too and the
ratio ours / theirs is printed.

    python benchmarks/engine.py
"""

from __future__ import annotations

import math
import statistics
import time

from trace_control.trace import bundle, name_scope, node


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


def main() -> None:
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
