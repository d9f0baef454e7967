"""What every trace-control task adds to a Gymnasium environment.

Observations are dicts of named plain floats / lists. ``info["feedback"]`` holds the
step's text, ``info["success"]`` whether the task is solved. The class attributes
tell an optimizer what the task is; nothing here knows about LLMs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym


def ensure_headless_rendering() -> None:
    """Use EGL for MuJoCo rendering when there is no display, unless the user chose."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    if os.environ.get("MUJOCO_GL") == "egl":
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def fast_rendering(model: Any, renderer: Any) -> None:
    """Turn off multisampling, shadows and reflections: 4-16x faster frames, same physics."""
    import mujoco

    model.vis.quality.offsamples = 0
    viewer = renderer._get_viewer("rgb_array")
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


def rounded(values: Any, digits: int = 3) -> Any:
    """Plain Python floats (or lists of them), rounded: what a controller receives."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (list, tuple)):
        return [rounded(v, digits) for v in values]
    return round(float(values), digits)


class ActionError(ValueError):
    """An action a task cannot execute (wrong length, not numbers, NaN or infinite)."""


def check_action(action: Any, size: int) -> list[float]:
    """``action`` as a list of ``size`` finite floats, or :class:`ActionError` saying why."""
    if hasattr(action, "tolist"):
        action = action.tolist()
    if isinstance(action, (int, float)) and size == 1:
        action = [action]
    if not isinstance(action, Sequence) or isinstance(action, (str, bytes)):
        raise ActionError(f"the action must be a list of {size} numbers, got {type(action).__name__}")
    if len(action) != size:
        raise ActionError(f"the action had {len(action)} values, expected {size}")
    values = []
    for index, value in enumerate(action):
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ActionError(f"action[{index}] is {type(value).__name__} {value!r:.40}, expected a number")
        if math.isnan(value):
            raise ActionError(f"the action contained NaN at index {index}")
        if math.isinf(value):
            raise ActionError(f"the action contained an infinite value at index {index}")
        values.append(float(value))
    return values


class TextTask(gym.Env):
    """Base class of trace-control tasks (a Gymnasium Env with text feedback).

    Subclasses set ``task_name``, ``instruction``, ``task_hint``, ``success_criterion``,
    ``action_size``, and implement ``reset`` / ``step`` / ``outcome_text``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    task_name = ""
    instruction = ""
    task_hint = ""
    success_criterion = ""
    action_size = 0

    def outcome_text(self, episode_return: float, success: bool) -> str:
        """The episode's feedback: success, return, and what went wrong."""
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        return {"task": self.task_name, "instruction": self.instruction, "hint": self.task_hint,
                "success": self.success_criterion}
