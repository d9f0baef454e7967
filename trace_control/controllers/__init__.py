"""Traced controller policies: a starting point per task, reference experts, and loading.

A controller is anything that maps an observation dict to an action list: a
:class:`~trace_control.controllers.base.Controller` (traced, trainable), or the object
``load()`` returns in an exported ``.py`` file, which runs where every controller runs (see
:mod:`trace_control.policies`).
"""

from __future__ import annotations

import importlib

from trace_control.controllers.base import Controller

# Tasks with a hand-written starting controller (trainable constants for a first law);
# every other task starts from zeros, with a docstring written from its interface.
_HAND_WRITTEN: dict[str, str] = {
    "reacher": "trace_control.controllers.reacher:ReacherController",
    "pusher": "trace_control.controllers.pusher:PusherController",
    "inverted-pendulum": "trace_control.controllers.inverted_pendulum:InvertedPendulumController",
    "inverted-double-pendulum": "trace_control.controllers.inverted_double_pendulum:InvertedDoublePendulumController",
}


def _starting_references() -> dict[str, str]:
    from trace_control import envs
    from trace_control.controllers.starting import class_name

    return {task: _HAND_WRITTEN.get(task, f"trace_control.controllers.starting:{class_name(task)}")
            for task in envs.TASKS}


STARTING: dict[str, str] = _starting_references()


def import_class(reference: str) -> type:
    """``"package.module:Class"`` -> the class."""
    module_name, _, class_name = reference.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def starting_controller(task: str) -> Controller:
    """A fresh starting controller for ``task`` (deliberately naive)."""
    if task not in STARTING:
        raise KeyError(f"no starting controller for task {task!r}; known: {', '.join(STARTING)}")
    return import_class(STARTING[task])()


def expert_controller(task: str) -> Controller:
    """The hand-written reference controller for ``task``, where one exists."""
    from trace_control.controllers.experts import EXPERTS

    if task not in EXPERTS:
        raise KeyError(f"no reference controller for task {task!r}; known: {', '.join(EXPERTS)}")
    return EXPERTS[task]()


__all__ = ["STARTING", "Controller", "expert_controller", "import_class", "starting_controller"]
