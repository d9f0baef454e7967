"""Rollout and evaluation costs of the task suite, as ratios measured in one run.

- traced vs untraced rollout (in-process, Meta-World reach, 10 steps, same controller)
- evaluation throughput with 1 vs 2 worker processes (push, 20 seeds)
- isolation: 50-episode evaluation in sandboxed workers vs in-process (warm worker), and
  one training iteration's rollout isolated vs in-process

    python benchmarks/suite.py
"""

from __future__ import annotations

import statistics
import time

from trace_control import controllers, envs
from trace_control.evaluation import evaluate
from trace_control.rollout import run_episode, traced_rollout
from trace_control.runners import InProcessRunner, IsolatedRunner
from trace_control.trace import name_scope


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def traced_vs_untraced() -> None:
    env = envs.make("reach")
    controller = controllers.expert_controller("reach")
    controller.controller.parameter._set(controller.controller.parameter.data.replace(
        "return [goal[0]", "return [0.3 * (goal[0]").replace("goal[1] - hand[1]", "goal[1] - hand[1])"))
    policy = controller.controller.plain_function()

    def traced():
        with name_scope():
            traced_rollout(env, controller, seed=0)

    def plain():
        run_episode(env, policy, seed=0)

    ratios = [timed(traced, 3) / timed(plain, 3) for _ in range(3)]
    print(f"traced / untraced rollout (reach, 10 steps): {statistics.median(ratios):.3f}")


def workers_ratio() -> None:
    controller = controllers.expert_controller("push")
    seeds = list(range(100, 120))
    evaluate(controller, "push", seeds[:2])  # warm caches (placements are built once per process)
    one = evaluate(controller, "push", seeds, workers=1)
    two = evaluate(controller, "push", seeds, workers=2)
    print(f"evaluation of 20 push episodes: 1 worker {one.seconds:.2f} s, 2 workers {two.seconds:.2f} s, "
          f"throughput ratio {one.seconds / two.seconds:.2f} (2 cores; includes starting the worker processes)")


def isolation_ratio() -> None:
    controller = controllers.expert_controller("reach")
    seeds = list(range(100, 150))
    in_process = InProcessRunner("reach")
    isolated = IsolatedRunner("reach", seeds=[0, *seeds])
    in_process.evaluate(controller, seeds[:1])
    started = time.perf_counter()
    isolated.evaluate(controller, seeds[:1])
    cold = time.perf_counter() - started
    direct = timed(lambda: in_process.evaluate(controller, seeds), 3)
    sandboxed = timed(lambda: isolated.evaluate(controller, seeds), 3)
    print(f"50-episode evaluation: in-process {direct:.2f} s, isolated {sandboxed:.2f} s, ratio "
          f"{sandboxed / direct:.3f} (worker start-up, paid once per run: {cold:.1f} s)")
    rollout_direct = timed(lambda: in_process.rollout(controller, 0), 5)
    rollout_isolated = timed(lambda: isolated.rollout(controller, 0), 5)
    print(f"training rollout (traced graph for the optimizer): in-process {rollout_direct * 1e3:.1f} ms, isolated "
          f"{rollout_isolated * 1e3:.1f} ms, ratio {rollout_isolated / rollout_direct:.3f}")
    in_process.close()
    isolated.close()


if __name__ == "__main__":
    traced_vs_untraced()
    workers_ratio()
    isolation_ratio()
