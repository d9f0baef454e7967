"""What every trace-control task shares: the action check, the description, rendering setup.

A task is a Gymnasium environment whose observation is a ``Dict`` of named float64
``Box``es (full precision), whose ``info["feedback"]`` is the step's text,
``info["success"]`` whether the task is solved and ``info["progress"]`` one sentence on
where the episode stands against the success criterion. Nothing here knows about LLMs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces


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
            try:
                value = value.item()
            except ValueError:  # an array of several values where one number belongs
                raise ActionError(f"action[{index}] holds {np.size(value)} values, expected one number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ActionError(f"action[{index}] is {type(value).__name__} {repr(value)[:40]}, expected a number")
        try:
            number = float(value)
        except OverflowError:
            raise ActionError(f"action[{index}] is an integer too large for a float") from None
        if math.isnan(number):
            raise ActionError(f"the action contained NaN at index {index}")
        if math.isinf(number):
            raise ActionError(f"the action contained an infinite value at index {index}")
        values.append(number)
    return values


def clip_to(values: list[float], space: spaces.Box) -> tuple[np.ndarray, str]:
    """``values`` clipped to ``space``, and a sentence saying so when clipping changed them."""
    wanted = np.asarray(values, dtype=np.float64)
    clipped = np.clip(wanted, space.low.astype(np.float64), space.high.astype(np.float64))
    if np.array_equal(wanted, clipped):
        return clipped, ""
    changed = [str(i) for i in np.flatnonzero(wanted != clipped)]
    return clipped, (f" The action was clipped to the allowed range at index {', '.join(changed)} "
                     f"(low {_numbers(space.low)}, high {_numbers(space.high)}).")


def _numbers(values: np.ndarray) -> str:
    unique = np.unique(values)
    return f"{unique[0]:g}" if unique.size == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"


@dataclass(frozen=True)
class Field:
    """One named observation: its shape, bounds and meaning (what the LLM is told)."""

    name: str
    shape: tuple[int, ...]
    meaning: str
    low: float = -np.inf
    high: float = np.inf

    def space(self) -> spaces.Box:
        return spaces.Box(self.low, self.high, self.shape, dtype=np.float64)


def dict_space(fields: Sequence[Field]) -> spaces.Dict:
    """The observation space of ``fields``, in their order."""
    return spaces.Dict({field.name: field.space() for field in fields})


def describe_fields(fields: Sequence[Field]) -> str:
    """``fields`` as one text line each: ``- name (shape): meaning``."""
    lines = []
    for field in fields:
        shape = "a number" if field.shape == () else f"{'x'.join(map(str, field.shape))} array"
        lines.append(f"- {field.name} ({shape}): {field.meaning}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Interface:
    """What a controller for a task reads and returns (for instructions and docstrings)."""

    fields: tuple[Field, ...]
    action: str
    action_size: int

    def describe(self) -> str:
        return f"obs: a dict of numpy float64 arrays:\n{describe_fields(self.fields)}\nReturns {self.action}"


def instruction_text(robot: str, interface: Interface, horizon_text: str, hint: str, success: str) -> str:
    """The instruction an optimizer is given: robot, observation keys, action, horizon, goal."""
    return (f"{robot} {hint}\nThe controller receives the observation {interface.describe()}\n"
            f"{horizon_text} Success: {success}.")
