"""Prompt size and rendering cost for rollout-shaped graphs.

Builds the graph of a real 10-step Meta-World reach rollout (the paper's setting,
starting controller, all feedback types), renders OptoPrime's report, and prints its
size in characters and estimated tokens. Then times rendering for 10 vs 100 steps
(in-process traced rollouts on Reacher) to show it stays linear.

    python benchmarks/prompt.py
"""

from __future__ import annotations

import time

from trace_control import controllers, envs
from trace_control.optim.problem import build_problem
from trace_control.optim.prompts import OPTOPRIME_SYSTEM
from trace_control.optim.render import estimate_tokens
from trace_control.rollout import traced_rollout
from trace_control.trace import name_scope


def report_for(task: str, horizon: int, seed: int = 0) -> tuple[str, object]:
    env = envs.make(task, horizon=horizon)
    controller = controllers.starting_controller(task)
    with name_scope():
        rollout = traced_rollout(env, controller, seed=seed)
    rollout.output.backward(rollout.feedback)
    problem = build_problem(controller.parameters(), env.instruction)
    return problem.render(), problem


def render_time(task: str, horizon: int, repeat: int = 20) -> float:
    env = envs.make(task, horizon=horizon)
    controller = controllers.starting_controller(task)
    with name_scope():
        rollout = traced_rollout(env, controller, seed=0)
    rollout.output.backward(rollout.feedback)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        build_problem(controller.parameters(), env.instruction).render()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    report, problem = report_for("reach", 10)
    sections = {name: sum(len(e) for e in getattr(problem, name)) for name in
                ("code", "documentation", "variables", "inputs", "others", "outputs", "feedback")}
    print(f"10-step Meta-World reach report: {len(report):,} characters, ~{estimate_tokens(report):,} tokens "
          f"(system prompt adds ~{estimate_tokens(OPTOPRIME_SYSTEM)} tokens; reference: ~8,800 characters, "
          f"~3,000 tokens; target <= 1,800 tokens)")
    print("characters per section: " + ", ".join(f"{k} {v:,}" for k, v in sections.items()))
    small, large = render_time("reacher", 10), render_time("reacher", 100, repeat=5)
    print(f"rendering: 10 steps {small * 1e3:.2f} ms, 100 steps {large * 1e3:.2f} ms, "
          f"ratio {large / small:.1f} for 10x the steps (linear = 10; reference implementation: 97)")


if __name__ == "__main__":
    main()
