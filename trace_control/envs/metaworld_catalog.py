"""The 50 Meta-World v3 tasks (MT50): what each asks, how success is measured, what is observed.

The goal sentence and success measure of each task are written here (read from
Meta-World's ``evaluate_state``); the observation names are derived from the task's
scripted policy, whose ``_parse_obs`` names the slices of the 39-number observation.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from trace_control.envs.base import Field


@dataclass(frozen=True)
class MetaWorldTask:
    """One Meta-World task. ``quantity`` is what Meta-World's ``obj_to_target`` measures when
    success is ``quantity <= threshold``; tasks judged otherwise state it in ``success``."""

    name: str
    hint: str
    quantity: str | None
    threshold: float | None = None
    success: str = ""

    @property
    def env_name(self) -> str:
        return f"{self.name}-v3"

    @property
    def success_criterion(self) -> str:
        if self.quantity is None:
            return f"{self.success} at any step (Meta-World's success flag)"
        return f"{self.quantity} at most {self.threshold} m at any step (Meta-World's success flag)"


def _task(name: str, hint: str, quantity: str | None, threshold: float | None = None,
          success: str = "") -> MetaWorldTask:
    return MetaWorldTask(name, f"The goal of the task is to {hint}.", quantity, threshold, success)


_PUCK_TO_GOAL = "the distance from the puck to the goal"
_OBJECT_TO_GOAL = "the distance from the object to the goal"

METAWORLD_TASKS: dict[str, MetaWorldTask] = {task.name: task for task in [
    _task("assembly", "pick up the ring-shaped nut by its handle and put it over the peg", None,
          success="the nut centred over the peg (within 0.02 m horizontally) and below the peg's top"),
    _task("basketball", "pick up the ball and drop it into the hoop", "the distance from the ball to the hoop", 0.08),
    _task("bin-picking", "pick up the cube from one bin and place it in the other bin",
          "the distance from the cube to the goal in the other bin", 0.05),
    _task("box-close", "pick up the lid and put it on the box", None,
          success="the lid within 0.08 m of the goal on top of the box"),
    _task("button-press-topdown", "press the button down from above",
          "the distance the button still has to travel", 0.024),
    _task("button-press-topdown-wall", "press the button down from above, reaching over a wall",
          "the distance the button still has to travel", 0.024),
    _task("button-press", "press a button by pushing it forward with the hand",
          "the distance the button still has to travel", 0.02),
    _task("button-press-wall", "press a button behind a short wall by pushing it forward",
          "the distance the button still has to travel", 0.03),
    _task("coffee-button", "push the button on the coffee machine", "the distance the button still has to travel",
          0.02),
    _task("coffee-pull", "pull the mug from under the coffee machine to the goal",
          "the distance from the mug to the goal", 0.07),
    _task("coffee-push", "push the mug under the coffee machine", "the distance from the mug to the goal", 0.07),
    _task("dial-turn", "turn the dial a quarter turn by pushing its knob",
          "the distance from the dial's knob to the goal", 0.07),
    _task("disassemble", "pick the ring-shaped nut up off the peg by its handle", None,
          success="the nut lifted above the goal height (off the peg)"),
    _task("door-close", "push the open door closed", "the distance from the door handle to its closed position",
          0.08),
    _task("door-lock", "turn the door's lock down by pushing its knob", "the distance from the lock knob to the goal",
          0.02),
    _task("door-open", "open a door by pulling its handle around its hinge", None,
          success="the door handle within 0.08 m of the goal along x"),
    _task("door-unlock", "turn the door's lock up by pushing its knob", "the distance from the lock knob to the goal",
          0.02),
    _task("drawer-close", "push an open drawer closed", "the distance from the drawer handle to its closed position",
          0.055),
    _task("drawer-open", "pull a closed drawer open by its handle",
          "the distance from the drawer handle to its open position", 0.03),
    _task("faucet-close", "turn the faucet handle to close it", "the distance from the faucet handle to the goal",
          0.07),
    _task("faucet-open", "turn the faucet handle to open it", "the distance from the faucet handle to the goal", 0.07),
    _task("hammer", "pick up the hammer and drive the nail into the box", None,
          success="the nail driven in by more than 0.09 m"),
    _task("hand-insert", "push the object into the hole in the table", _OBJECT_TO_GOAL, 0.05),
    _task("handle-press-side", "press the handle down from the side",
          "the distance from the handle to its pressed position", 0.02),
    _task("handle-press", "press the handle down", "the distance from the handle to its pressed position", 0.02),
    _task("handle-pull-side", "pull the handle up from the side", "the distance from the handle to its raised position",
          0.08),
    _task("handle-pull", "pull the handle up", "the distance from the handle to its raised position", 0.08),
    _task("lever-pull", "pull the lever up by a quarter turn", None,
          success="the lever within pi/24 rad (7.5 degrees) of a quarter turn"),
    _task("peg-insert-side", "pick up the peg and insert it sideways into the hole",
          "the distance from the peg to the goal in the hole", 0.07),
    _task("peg-unplug-side", "pull the peg sideways out of its hole", "the distance from the peg to the goal", 0.07),
    _task("pick-out-of-hole", "pick the puck up out of the hole and bring it to the goal", _PUCK_TO_GOAL, 0.07),
    _task("pick-place", "pick up a puck and put it at a goal position", _PUCK_TO_GOAL, 0.07),
    _task("pick-place-wall", "pick up a puck, lift it over a wall and put it at the goal", _PUCK_TO_GOAL, 0.07),
    _task("plate-slide-back-side", "slide the plate sideways back into the cabinet", _PUCK_TO_GOAL, 0.07),
    _task("plate-slide-back", "slide the plate back into the cabinet", _PUCK_TO_GOAL, 0.07),
    _task("plate-slide-side", "slide the plate sideways into the cabinet", _PUCK_TO_GOAL, 0.07),
    _task("plate-slide", "slide the plate into the cabinet", _PUCK_TO_GOAL, 0.07),
    _task("push-back", "push the puck backwards (toward the robot) to the goal", _PUCK_TO_GOAL, 0.07),
    _task("push", "push a puck to a goal position", _PUCK_TO_GOAL, 0.05),
    _task("push-wall", "push the object around a wall to the goal", _OBJECT_TO_GOAL, 0.07),
    _task("reach", "move the hand to the goal position", "the distance from the hand to the goal", 0.05),
    _task("reach-wall", "move the hand over a wall to the goal position", "the distance from the hand to the goal",
          0.05),
    _task("shelf-place", "pick up the block and place it on the shelf", "the distance from the block to the goal",
          0.07),
    _task("soccer", "push the ball into the goal", "the distance from the ball to the goal", 0.07),
    _task("stick-pull", "grasp the stick and use it to pull the container to the goal", None,
          success="the container within 0.12 m of the goal with the stick hooked into its handle"),
    _task("stick-push", "grasp the stick and use it to push the container to the goal", None,
          success="the container within 0.12 m of the goal while the stick is held"),
    _task("sweep-into", "sweep the cube into the hole", "the distance from the cube to the goal", 0.05),
    _task("sweep", "sweep the cube off the edge of the table", "the distance from the cube to the goal", 0.05),
    _task("window-close", "slide the window closed by its handle",
          "the distance from the window handle to its closed position", 0.05),
    _task("window-open", "slide the window open by its handle",
          "the distance from the window handle to its open position", 0.05),
]}

MT10 = ("reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close", "button-press-topdown",
        "peg-insert-side", "window-open", "window-close")

# Abbreviated object names in the scripted policies, as the observation calls them.
_OBJECT_NAMES = {"drwr": "handle", "door": "handle", "wndw": "handle", "obj": "object"}
# obs[3] is the gripper opening where the policy reads it under one of these names.
_GRIPPER_NAMES = ("gripper", "gripper_distance_apart")


@dataclass(frozen=True)
class Slot:
    """A named slice of Meta-World's 39-number observation."""

    field: Field
    start: int
    stop: int

    def read(self, raw: np.ndarray) -> np.ndarray:
        values = raw[self.start:self.stop].astype(np.float64)
        return values.reshape(self.field.shape)


def _policy(env_name: str):
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[env_name]


@lru_cache(maxsize=64)
def observation_layout(name: str) -> tuple[Slot, ...]:
    """The named observation of task ``name``: hand, gripper (where used), objects, goal.

    Names come from the task's scripted policy (which slices it reads and what it calls
    them); the goal, observable in every task, is always ``goal_pos``.
    """
    importlib.import_module("metaworld")  # registers the environments the policies refer to
    parsed = _policy(METAWORLD_TASKS[name].env_name)._parse_obs(np.arange(39, dtype=np.float64))
    names: dict[int, str] = {}
    for key, value in parsed.items():
        first = int(np.atleast_1d(value)[0])
        names.setdefault(first, key)
    slots = [Slot(Field("hand_pos", (3,), "[x, y, z] of the hand (meters)"), 0, 3)]
    if names.get(3) in _GRIPPER_NAMES:
        slots.append(Slot(Field("gripper_distance_apart", (), "how far the fingers are apart (1.0 open, about 0.3 "
                                "closed on nothing)", 0.0, 1.0), 3, 4))
    for start, rotation_start in ((4, 7), (11, 14)):
        key = names.get(start, "")
        if not key.endswith("_pos"):
            continue
        base = key[:-len("_pos")]
        base = _OBJECT_NAMES.get(base, base)
        words = base.replace("_", " ")
        slots.append(Slot(Field(f"{base}_pos", (3,), f"[x, y, z] of the {words} (meters)"), start, start + 3))
        if names.get(rotation_start, "").endswith("_rot"):
            slots.append(Slot(Field(f"{base}_rot", (4,), f"orientation quaternion of the {words}", -1.0, 1.0),
                              rotation_start, rotation_start + 4))
    slots.append(Slot(Field("goal_pos", (3,), "[x, y, z] of the goal (meters)"), 36, 39))
    return tuple(slots)
