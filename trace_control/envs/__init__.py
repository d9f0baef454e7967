"""The task suite: Gymnasium environments that speak (text feedback per step).

After ``import envs`` every task is registered with Gymnasium, e.g.
``gymnasium.make("trace_control/MetaWorld-reach-v3")``; ``envs.make("reach")`` builds
the same environment by its short name without Gymnasium's wrappers.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from trace_control.envs.base import ActionError, TextTask, check_action, ensure_headless_rendering
from trace_control.envs.gym_tasks import GYM_TASKS
from trace_control.envs.metaworld_tasks import FEEDBACK_TYPES, METAWORLD_TASKS, MetaWorldTextEnv


@dataclass(frozen=True)
class TaskInfo:
    """A task of the suite: short name, Gymnasium id, family and what success means."""

    name: str
    env_id: str
    family: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    success: str = ""


def _tasks() -> dict[str, TaskInfo]:
    tasks = {}
    for name, spec in METAWORLD_TASKS.items():
        tasks[name] = TaskInfo(name, f"trace_control/MetaWorld-{name}-v3", "metaworld",
                               "trace_control.envs.metaworld_tasks:MetaWorldTextEnv", {"task": name},
                               f"{spec.distance_of} within {spec.threshold} m of the goal")
    for name, cls in GYM_TASKS.items():
        base = cls.base_id.replace("-v5", "")
        success = cls.success_criterion if isinstance(cls.success_criterion, str) and cls.success_criterion else \
            "balanced for the whole episode"
        tasks[name] = TaskInfo(name, f"trace_control/{base}Text-v5", "gymnasium",
                               f"trace_control.envs.gym_tasks:{cls.__name__}", {}, success)
    return tasks


TASKS: dict[str, TaskInfo] = _tasks()


class UnknownTaskError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def resolve(name: str) -> TaskInfo:
    """The task for a short name (``reach``) or a Gymnasium id; a clear error otherwise."""
    if name in TASKS:
        return TASKS[name]
    for info in TASKS.values():
        if info.env_id == name:
            return info
    close = difflib.get_close_matches(name, list(TASKS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownTaskError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(TASKS)}")


def make(name: str, **kwargs: Any) -> TextTask:
    """Build the task ``name`` (short name or id) with keyword settings."""
    info = resolve(name)
    module_name, class_name = info.entry_point.split(":")
    module = __import__(module_name, fromlist=[class_name])
    return getattr(module, class_name)(**{**info.kwargs, **kwargs})


def _register() -> None:
    for info in TASKS.values():
        if info.env_id not in gymnasium.registry:
            gymnasium.register(id=info.env_id, entry_point=info.entry_point, kwargs=dict(info.kwargs),
                               disable_env_checker=True)


_register()

__all__ = [
    "FEEDBACK_TYPES", "TASKS", "ActionError", "MetaWorldTextEnv", "TaskInfo", "TextTask", "UnknownTaskError",
    "check_action", "ensure_headless_rendering", "make", "resolve",
]
