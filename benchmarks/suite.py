"""What the jail costs, and what the suite runs at, as ratios measured in one run.

- the jail's start-up (bubblewrap, the interpreter, numpy, the seccomp filters)
- a 50-episode evaluation, jailed / in-process (warm jail), on Meta-World reach (about 30
  simulator steps per controller call) and on Reacher (one round trip per simulator step)
- one training iteration's rollout (a batch of 4 episodes with their records, and a new
  controller version, so a fresh jail), jailed / in-process
- evaluation with 1 vs 2 worker processes
- steps per second per task family, in-process (see benchmarks/tasks.py for every task)

    python benchmarks/suite.py
"""

from __future__ import annotations

import statistics
import time
import warnings

from trace_control import controllers
from trace_control.policies import ControllerCode
from trace_control.runners import LocalRunner, evaluate
from trace_control.sandbox import Jail

REACHER = ("def controller(self, obs):\n    error = obs['fingertip_to_target']\n"
           "    return [-2.0 * error[0] - 0.1 * obs['joint_velocities'][0], -2.0 * error[1]]\n")


def median_time(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def code_for(task: str, version: int = 0) -> ControllerCode:
    if task == "reacher":
        controller = controllers.starting_controller("reacher")
        controller.controller.parameter._set(REACHER + f"    # version {version}\n")
        return ControllerCode.from_module(controller)
    controller = controllers.expert_controller(task)
    controller.controller.parameter._set(controller.controller.parameter.data + f"    # version {version}\n")
    return ControllerCode.from_module(controller)


def start_up() -> None:
    times = []
    for _ in range(5):
        jail = Jail()
        started = time.perf_counter()
        jail.start()
        times.append(time.perf_counter() - started)
        jail.kill()
    print(f"jail start-up (bubblewrap + interpreter + numpy + seccomp): median {statistics.median(times) * 1e3:.0f} ms "
          f"over 5 starts")


def evaluation_ratio(task: str) -> None:
    seeds = list(range(100, 150))
    code = code_for(task)
    runners = {"in-process": LocalRunner(task, jailed=False), "jailed": LocalRunner(task, jailed=True)}
    for runner in runners.values():
        evaluate(runner, code, seeds)  # warm: placements built, the jail started for this code
    seconds = {name: median_time(lambda runner=runner: evaluate(runner, code, seeds)) for name, runner in
               runners.items()}
    steps = evaluate(runners["in-process"], code, seeds).env_steps
    for runner in runners.values():
        runner.close()
    print(f"{task}: 50-episode evaluation ({steps} controller calls): in-process {seconds['in-process']:.2f} s, "
          f"jailed {seconds['jailed']:.2f} s, jailed / in-process = {seconds['jailed'] / seconds['in-process']:.2f}")


def rollout_ratio(task: str) -> None:
    """A new controller version per rollout. In training the LLM's answer takes seconds, time in
    which the spare jail starts: "spare ready" waits 0.5 s (untimed) before each rollout; "back to
    back" does not, so it pays part of a start-up."""
    seeds = [100, 101, 102, 103]
    versions = iter(range(1, 1000))
    seconds = {}
    for name, jailed, pause in (("in-process", False, 0.0), ("spare ready", True, 0.5), ("back to back", True, 0.0)):
        runner = LocalRunner(task, jailed=jailed)
        runner.run(code_for(task), seeds, keep_steps=True)
        times = []
        for _ in range(5):
            code = code_for(task, next(versions))
            time.sleep(pause)
            started = time.perf_counter()
            runner.run(code, seeds, keep_steps=True)
            times.append(time.perf_counter() - started)
        seconds[name] = statistics.median(times)
        runner.close()
    base = seconds["in-process"]
    print(f"{task}: training rollout (4 episodes, a new controller version): in-process {base * 1e3:.0f} ms; "
          f"jailed, spare ready {seconds['spare ready'] * 1e3:.0f} ms (ratio {seconds['spare ready'] / base:.2f}); "
          f"jailed, back to back {seconds['back to back'] * 1e3:.0f} ms (ratio {seconds['back to back'] / base:.2f})")


def workers_ratio() -> None:
    code = code_for("push")
    seeds = list(range(100, 120))
    reports = {}
    for workers in (1, 2):
        runner = LocalRunner("push", workers=workers)
        runner.start()
        evaluate(runner, code, seeds[:2])
        reports[workers] = evaluate(runner, code, seeds)
        runner.close()
    one, two = reports[1].seconds, reports[2].seconds
    print(f"push: 20 jailed episodes with 1 worker {one:.2f} s, with 2 workers {two:.2f} s, throughput ratio "
          f"{one / two:.2f} (2 shared cores)")


def family_rates() -> None:
    from benchmarks.tasks import gymnasium_rate, metaworld_rate

    print("steps per second, in-process, our task / the environment underneath:")
    for task in ("reacher", "half-cheetah", "humanoid"):
        gymnasium_rate(task)
    for task in ("reach", "push"):
        metaworld_rate(task)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    start_up()
    for name in ("reach", "reacher"):
        evaluation_ratio(name)
    for name in ("reach", "reacher"):
        rollout_ratio(name)
    workers_ratio()
    family_rates()
