"""Starting controller for Meta-World door-open: it does not move (the paper's starting point)."""

from __future__ import annotations

from trace_control.controllers.base import Controller
from trace_control.trace import bundle


class DoorOpenController(Controller):
    """Controls the Sawyer arm in Meta-World door-open."""

    task = "door-open"

    @bundle(trainable=True)
    def controller(self, obs):
        """Map an observation to an action for Meta-World door-open.

        obs: a dict with hand_pos, gripper_distance_apart, handle_pos, goal_pos; positions are [x, y, z] in meters.
        Returns [x, y, z, gripper]: a target for the hand relative to its current position
        (meters) and the gripper command (0 open, 1 closed).
        """
        return [0.0, 0.0, 0.0, 0.0]
