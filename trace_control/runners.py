"""Where controller episodes run: in this process, or in sandboxed workers.

Both runners give the trainer the same things: a traced rollout (the graph the
optimizer reads), untraced candidate trials, and evaluations over many seeds. The
isolated runner runs whole episodes in a worker and rebuilds the traced graph from
the worker's record (see docs/isolation.md for why this design).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trace_control import envs
from trace_control.evaluation import ControllerSpec, EvalReport, evaluate, summarize
from trace_control.rollout import Episode, Rollout, graph_from_episode, run_episode, traced_rollout
from trace_control.sandbox import Limits, SandboxPool, check_controller_code
from trace_control.trace import Module, name_scope


def spec_message(controller: Module | ControllerSpec | str | Path) -> dict:
    """A controller as a JSON message for a worker."""
    if isinstance(controller, Module):
        controller = ControllerSpec.from_module(controller)
    if isinstance(controller, ControllerSpec) and controller.kind == "module":
        return {"kind": "module", "reference": controller.reference,
                "parameters": controller.parameter_values()}
    path = Path(controller.reference if isinstance(controller, ControllerSpec) else controller)
    return {"kind": "source", "source": path.read_text(encoding="utf-8")}


def static_problems(controller: Any) -> list[str]:
    """Static-check problems of a Module's trainable code (exported files are the user's own)."""
    if not isinstance(controller, Module):
        return []
    problems = []
    for key, parameter in controller.parameters_dict().items():
        if key.endswith(".__code"):
            problems += check_controller_code(parameter._data, parameter.info.get("fn_name", "controller"))
    return problems


def _rejected_episode(seed: int, problems: list[str]) -> Episode:
    reason = "; ".join(problems)
    episode = Episode(seed=seed, error=f"the controller code was not run: {reason}", error_kind="controller")
    episode.outcome = f"Success: False\nThe controller code was not run: {reason}."
    return episode


class InProcessRunner:
    """Runs controllers in this process (fast, no protection): for trusted code and debugging."""

    isolation = "none (controller code runs in the trainer's process)"

    def __init__(self, task: str, env_kwargs: dict | None = None, workers: int = 1) -> None:
        self.task = task
        self.env_kwargs = dict(env_kwargs or {})
        self.workers = workers
        self.env = envs.make(task, **self.env_kwargs)

    def rollout(self, controller: Module, seed: int) -> Rollout:
        with name_scope():
            return traced_rollout(self.env, controller, seed=seed)

    def trial(self, controller: Module, seed: int) -> Episode:
        op = controller.controller
        try:
            policy = op.plain_function()
        except Exception as error:  # the code does not even define the function
            episode = Episode(seed=seed, error=op.describe(error), error_kind="controller")
            episode.outcome = f"Success: False\n{episode.error}"
            return episode
        return run_episode(self.env, policy, seed=seed, describe_error=op.describe)

    def evaluate(self, controller: Any, seeds: Sequence[int]) -> EvalReport:
        spec = controller if isinstance(controller, ControllerSpec) else (
            ControllerSpec.from_module(controller) if isinstance(controller, Module) else
            ControllerSpec.from_file(controller))
        return evaluate(spec, self.task, seeds, self.workers, self.env_kwargs)

    def close(self) -> None:
        self.env.close()


class IsolatedRunner:
    """Runs controllers in sandboxed worker processes (see :mod:`trace_control.sandbox`)."""

    def __init__(self, task: str, env_kwargs: dict | None = None, workers: int = 1, seeds: Sequence[int] = (),
                 limits: Limits | None = None) -> None:
        self.task = task
        self.env_kwargs = dict(env_kwargs or {})
        self.pool = SandboxPool(task, self.env_kwargs, workers, list(seeds), limits)

    @property
    def isolation(self) -> str:
        status = self.pool.status or {}
        if not status:
            return "sandboxed workers (not started yet)"
        return (f"sandboxed workers: network {status.get('network')}; files {status.get('files')}; "
                f"privileges {status.get('privileges')}")

    def _run(self, controller: Any, seeds: list[int], keep_steps: bool) -> list[Episode]:
        problems = static_problems(controller)
        if problems:
            return [_rejected_episode(seed, problems) for seed in seeds]
        return self.pool.run(spec_message(controller), seeds, keep_steps)

    def rollout(self, controller: Module, seed: int) -> Rollout:
        episode = self._run(controller, [seed], keep_steps=True)[0]
        with name_scope():
            return graph_from_episode(episode, controller)

    def trial(self, controller: Module, seed: int) -> Episode:
        return self._run(controller, [seed], keep_steps=False)[0]

    def evaluate(self, controller: Any, seeds: Sequence[int]) -> EvalReport:
        started = time.perf_counter()
        seeds = [int(s) for s in seeds]
        episodes = self._run(controller, seeds, keep_steps=False)
        return summarize(self.task, seeds, episodes, time.perf_counter() - started, len(self.pool.workers))

    def close(self) -> None:
        self.pool.close()


def make_runner(task: str, env_kwargs: dict | None = None, workers: int = 1, isolated: bool = True,
                seeds: Sequence[int] = (), limits: Limits | None = None) -> InProcessRunner | IsolatedRunner:
    if isolated:
        return IsolatedRunner(task, env_kwargs, workers, seeds, limits)
    return InProcessRunner(task, env_kwargs, workers)
