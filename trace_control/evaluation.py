"""Evaluation: a controller, untraced, on many held-out seeds, optionally in parallel.

Results depend only on the seeds, never on the number of workers: each episode
resets its environment with its own seed, and results are reported in seed order.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from trace_control.rollout import Episode, run_episode
from trace_control.trace import Module, to_literal


@dataclass(frozen=True)
class ControllerSpec:
    """A controller that another process can rebuild.

    ``kind="module"``: ``reference`` is ``"package.module:Class"`` and ``parameters``
    its values (as ``Module.parameters_dict`` keys). ``kind="file"``: ``reference`` is
    an exported ``.py`` file.
    """

    kind: str
    reference: str
    parameters: tuple = ()

    @classmethod
    def from_module(cls, module: Module) -> ControllerSpec:
        reference = f"{type(module).__module__}:{type(module).__qualname__}"
        values = tuple(sorted((key, _freeze(to_literal(p._data, key))) for key, p in module.parameters_dict().items()))
        return cls("module", reference, values)

    @classmethod
    def from_file(cls, path: str | Path) -> ControllerSpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no controller file at {path}")
        return cls("file", str(path.resolve()))

    def parameter_values(self) -> dict[str, Any]:
        """The parameters as plain data (``Module.parameters_dict`` keys -> values)."""
        return {key: _thaw(value) for key, value in self.parameters}

    def build(self) -> tuple[Any, Callable[[dict], Any], Callable[[BaseException], str] | None]:
        """(object, policy: obs -> action, error describer) in this process."""
        from trace_control.controllers import import_class, load_exported

        if self.kind == "file":
            controller = load_exported(self.reference)
            policy = getattr(controller, "controller", None) or controller
            return controller, policy, None
        controller = import_class(self.reference)()
        parameters = controller.parameters_dict()
        for key, value in self.parameter_values().items():
            parameters[key]._set(value)
        op = controller.controller
        return controller, op.plain_function(), op.describe


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return ("__list__", tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("__dict__", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__list__":
        return [_thaw(v) for v in value[1]]
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__dict__":
        return {k: _thaw(v) for k, v in value[1]}
    return value


@dataclass
class EvalReport:
    """Per-seed episodes and their totals."""

    task: str
    seeds: list[int]
    episodes: list[dict] = field(default_factory=list)
    success_rate: float = 0.0
    return_mean: float = 0.0
    return_std: float = 0.0
    length_mean: float = 0.0
    env_steps: int = 0
    seconds: float = 0.0
    workers: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.task}: success {self.success_rate:.2f} over {len(self.seeds)} seeds, return "
                f"{self.return_mean:.2f} ± {self.return_std:.2f}, length {self.length_mean:.1f}")


def summarize(task: str, seeds: Sequence[int], episodes: list[Episode], seconds: float, workers: int) -> EvalReport:
    returns = [e.episode_return for e in episodes]
    return EvalReport(
        task=task, seeds=list(seeds), episodes=[e.summary() for e in episodes],
        success_rate=sum(e.success for e in episodes) / len(episodes) if episodes else 0.0,
        return_mean=statistics.fmean(returns) if returns else 0.0,
        return_std=statistics.pstdev(returns) if len(returns) > 1 else 0.0,
        length_mean=statistics.fmean(e.length for e in episodes) if episodes else 0.0,
        env_steps=sum(e.length for e in episodes), seconds=seconds, workers=workers)


# One environment and controller per worker process, reused across its episodes.
_WORKER_CACHE: dict[tuple, tuple] = {}


def _episodes_in_process(spec: ControllerSpec, task: str, env_kwargs: tuple, seeds: list[int]) -> list[Episode]:
    from trace_control import envs

    key = (spec, task, env_kwargs)
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()
        env = envs.make(task, **dict(env_kwargs))
        _, policy, describe = spec.build()
        _WORKER_CACHE[key] = (env, policy, describe)
    env, policy, describe = _WORKER_CACHE[key]
    return [run_episode(env, policy, seed=seed, describe_error=describe) for seed in seeds]


def evaluate(spec: ControllerSpec | Module, task: str, seeds: Sequence[int], workers: int = 1,
             env_kwargs: dict | None = None, progress: Callable[[int], None] | None = None) -> EvalReport:
    """Run the controller once per seed; ``workers`` > 1 spreads the seeds over processes."""
    if isinstance(spec, Module):
        spec = ControllerSpec.from_module(spec)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluation needs at least one seed")
    workers = max(1, min(int(workers), len(seeds)))
    frozen_kwargs = tuple(sorted((env_kwargs or {}).items()))
    started = time.perf_counter()
    if workers == 1:
        episodes = []
        for seed in seeds:
            episodes += _episodes_in_process(spec, task, frozen_kwargs, [seed])
            if progress:
                progress(1)
    else:
        chunk = math.ceil(len(seeds) / workers)
        chunks = [seeds[i:i + chunk] for i in range(0, len(seeds), chunk)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_episodes_in_process, spec, task, frozen_kwargs, part) for part in chunks]
            episodes = []
            for future in futures:
                part = future.result()
                episodes += part
                if progress:
                    progress(len(part))
    return summarize(task, seeds, episodes, time.perf_counter() - started, workers)
