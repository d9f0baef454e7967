"""Task-suite costs and reference figures, measured in one run, in-process.

- steps per second of each family's tasks, as a ratio against the environment underneath
  without our layer (raw Meta-World / ``gymnasium.make(base_id)``), same actions
- Pusher kinematics: median tip error reaching points near the object on held-out seeds,
  plain ``J.T @ K e - D qdot`` against damped least squares on the same Jacobian
- the Pusher reference controller (experts.py) on fresh placements: success and return,
  beside the starting controller's

    python benchmarks/tasks.py
"""

from __future__ import annotations

import statistics
import time
import warnings

import gymnasium as gym
import numpy as np

from trace_control import controllers, envs
from trace_control.envs.metaworld_tasks import _goal_observable


def rate(step, steps: int) -> float:
    """Calls of ``step`` per second (best of three runs of ``steps`` calls)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - started)
    return steps / best


def gymnasium_rate(name: str, steps: int = 2000) -> None:
    """One line: our wrapper's and the raw environment's steps per second on the same actions."""
    task = envs.make(name, horizon=10**6)
    raw = gym.make(task.base_id, max_episode_steps=10**6, disable_env_checker=True)
    task.reset(seed=0)
    raw.reset(seed=0)
    actions = [task.action_space.sample() for _ in range(64)]
    counter = iter(range(10**9))
    ours = rate(lambda: task.step(actions[next(counter) % 64]), steps)
    theirs = rate(lambda: raw.step(actions[next(counter) % 64]), steps)
    print(f"  {name:<26} {ours:8.0f} steps/s, raw {theirs:8.0f} steps/s, ratio {ours / theirs:.2f}")


def metaworld_rate(name: str, macro_steps: int = 30) -> None:
    """One line: macro-steps (and simulator steps) per second, and native steps against the raw env."""
    task = envs.make(name, horizon=10**6)
    native = envs.make(name, action_mode="native", horizon=10**6)
    raw = _goal_observable(f"{name}-v3")(seed=0)
    raw.max_path_length = 10**9
    for env in (task, native):
        env.reset(seed=0)
    raw.reset()
    substeps = []

    def macro_step() -> None:
        substeps.append(task.step([0.01, 0.0, 0.0, 0.0])[4]["substeps"])

    macro = rate(macro_step, macro_steps)
    simulated = macro * statistics.fmean(substeps)
    ours_native = rate(lambda: native.step([0.1, 0.0, 0.0, 0.0]), macro_steps * 10)
    theirs = rate(lambda: raw.step(np.array([0.1, 0.0, 0.0, 0.0])), macro_steps * 10)
    print(f"  {name:<26} {macro:6.1f} macro-steps/s ({simulated:6.0f} simulator steps/s, ratio "
          f"{simulated / theirs:.2f}); native {ours_native:6.0f} steps/s, raw {theirs:6.0f} steps/s, ratio "
          f"{ours_native / theirs:.2f}")


def dls_step(observation: dict, target: np.ndarray) -> np.ndarray:
    jacobian = observation["tip_jacobian"]
    return jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + 0.0025 * np.eye(3), target - observation["tip_pos"])


def pusher_reaching(seeds: range, steps: int = 50) -> None:
    laws = {
        "plain J.T K e - D qdot (K=100, D=3)":
            lambda o, x: 100.0 * o["tip_jacobian"].T @ (x - o["tip_pos"]) - 3.0 * o["joint_velocities"],
        "damped least squares (K=20, D=2)": lambda o, x: 20.0 * dls_step(o, x) - 2.0 * o["joint_velocities"],
    }
    env = envs.make("pusher")
    for label, law in laws.items():
        errors = []
        for seed in seeds:
            observation, _ = env.reset(seed=seed)
            target = observation["object_pos"] + np.array([0.0, 0.0, 0.05])
            for _ in range(steps):
                observation, *_ = env.step(np.clip(law(observation, target), -2, 2))
            errors.append(float(np.linalg.norm(observation["tip_pos"] - target)))
        print(f"  {label:<38} median tip error {100 * statistics.median(errors):.1f} cm, "
              f"worst {100 * max(errors):.1f} cm ({len(errors)} seeds, {steps} steps)")


def pusher_reference(seeds: range) -> None:
    env = envs.make("pusher")
    for label, controller in (("reference (experts.PusherExpert)", controllers.expert_controller("pusher")),
                              ("starting controller (zeros)", controllers.starting_controller("pusher"))):
        policy = controller.controller.plain_function()
        wins, returns = 0, []
        for seed in seeds:
            observation, _ = env.reset(seed=seed)
            episode_return, truncated, info = 0.0, False, {}
            while not truncated:
                observation, reward, _, truncated, info = env.step(policy(observation))
                episode_return += reward
            wins += info["success"]
            returns.append(episode_return)
        print(f"  {label:<38} success {wins / len(seeds):.2f}, return {statistics.fmean(returns):.1f} "
              f"± {statistics.pstdev(returns):.1f} ({len(seeds)} fresh placements)")


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    print("Gymnasium tasks (our wrapper vs gymnasium.make(base_id)):")
    for gymnasium_task in envs.TASK_SETS["gym"]:
        gymnasium_rate(gymnasium_task)
    print("Meta-World tasks (our macro-step / native step vs the raw goal-observable env):")
    for metaworld_task in ("reach", "push", "pick-place", "door-open", "assembly"):
        metaworld_rate(metaworld_task)
    print("Pusher kinematics (held-out seeds 100-119, points 5 cm above the object):")
    pusher_reaching(range(100, 120))
    print("Pusher reference controller (seeds 1000-1049):")
    pusher_reference(range(1000, 1050))
