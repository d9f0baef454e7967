"""The task suite: Gymnasium environments that speak (text feedback per step).

After ``from trace_control import envs`` every task is registered with Gymnasium (with
its environment checker on), e.g. ``gymnasium.make("trace_control/MetaWorld-reach-v3")``;
``envs.make("reach")`` builds the same task by its short name without Gymnasium's
wrappers, so its attributes (``instruction``, ``task_hint``, ``success_criterion``,
``horizon``, ``task_name``) are plain attributes. ``TASK_SETS`` names groups of tasks
(``mt10``, ``mt50``, ``paper``, ``gym``, ``all``); ``expand_tasks`` reads a list of both.
No environment is built at import.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from trace_control.envs.base import ActionError, Interface, check_action, ensure_headless_rendering
from trace_control.envs.gym_tasks import (
    GymnasiumTask,
    InvertedDoublePendulumTask,
    InvertedPendulumTask,
    PusherTask,
    ReacherTask,
)
from trace_control.envs.locomotion import LOCOMOTION_TASKS
from trace_control.envs.metaworld_catalog import METAWORLD_TASKS, MT10
from trace_control.envs.metaworld_tasks import FEEDBACK_TYPES, MetaWorldTextEnv

GYMNASIUM_TASKS: dict[str, type[GymnasiumTask]] = {
    cls.task_name: cls for cls in (ReacherTask, PusherTask, InvertedPendulumTask, InvertedDoublePendulumTask,
                                   *LOCOMOTION_TASKS)}


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
    for name, task in METAWORLD_TASKS.items():
        tasks[name] = TaskInfo(name, f"trace_control/MetaWorld-{name}-v3", "metaworld",
                               "trace_control.envs.metaworld_tasks:MetaWorldTextEnv", {"task": name},
                               task.success_criterion)
    for name, cls in GYMNASIUM_TASKS.items():
        base = cls.base_id.replace("-v5", "")
        tasks[name] = TaskInfo(name, f"trace_control/{base}Text-v5", "gymnasium",
                               f"{cls.__module__}:{cls.__name__}", {}, cls.success_for(cls.default_horizon))
    return tasks


TASKS: dict[str, TaskInfo] = _tasks()

TASK_SETS: dict[str, list[str]] = {
    "paper": ["reach", "push", "pick-place"],
    "mt10": list(MT10),
    "mt50": list(METAWORLD_TASKS),
    "gym": list(GYMNASIUM_TASKS),
    "all": list(TASKS),
}


class UnknownTaskError(KeyError):
    """A task or task-set name that the suite does not know (the message suggests close ones)."""

    def __str__(self) -> str:
        return str(self.args[0])


def resolve(name: str) -> TaskInfo:
    """The task for a short name (``reach``) or a Gymnasium id; a clear error otherwise."""
    if name in TASKS:
        return TASKS[name]
    for info in TASKS.values():
        if info.env_id == name:
            return info
    close = difflib.get_close_matches(name, list(TASKS) + list(TASK_SETS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownTaskError(f"unknown task {name!r}.{hint} Task sets: {', '.join(TASK_SETS)}; "
                           f"tasks: {', '.join(TASKS)}")


def expand_tasks(names: str | list[str]) -> list[str]:
    """Short task names for a comma-separated list (or list) of tasks, ids and task sets.

    ``expand_tasks("mt10,reacher")`` -> the ten MT10 tasks then ``reacher``; repeats are
    dropped, order kept. Raises :class:`UnknownTaskError` for a name that is neither.
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    expanded: list[str] = []
    for item in (item.strip() for item in items):
        if not item:
            continue
        members = TASK_SETS.get(item.lower()) or [resolve(item).name]
        for name in members:
            if name not in expanded:
                expanded.append(name)
    return expanded


def make(name: str, **kwargs: Any) -> MetaWorldTextEnv | GymnasiumTask:
    """Build the task ``name`` (short name or id) with keyword settings."""
    info = resolve(name)
    module_name, class_name = info.entry_point.split(":")
    return getattr(importlib.import_module(module_name), class_name)(**{**info.kwargs, **kwargs})


def interface(name: str, **settings: Any) -> Interface:
    """What a controller for task ``name`` reads and returns, without building the task.

    ``settings`` are the Meta-World ``action_mode`` / ``max_substeps`` where they matter.
    """
    from trace_control.envs import metaworld_tasks

    info = resolve(name)
    if info.family == "metaworld":
        return metaworld_tasks.interface(info.name, **settings)
    return GYMNASIUM_TASKS[info.name].interface()


def _register() -> None:
    for info in TASKS.values():
        if info.env_id not in gymnasium.registry:
            gymnasium.register(id=info.env_id, entry_point=info.entry_point, kwargs=dict(info.kwargs))


_register()

__all__ = [
    "FEEDBACK_TYPES", "GYMNASIUM_TASKS", "TASKS", "TASK_SETS", "ActionError", "GymnasiumTask", "Interface",
    "MetaWorldTextEnv", "TaskInfo", "UnknownTaskError", "check_action", "ensure_headless_rendering",
    "expand_tasks", "interface", "make", "resolve",
]
