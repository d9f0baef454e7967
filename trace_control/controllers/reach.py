"""Starting controller for Meta-World reach: it does not move (the paper's starting point)."""

from __future__ import annotations

from trace_control.controllers.base import Controller
from trace_control.trace import bundle


class ReachController(Controller):
    """Controls the Sawyer arm in Meta-World reach."""

    task = "reach"

    @bundle(trainable=True)
    def controller(self, obs):
        """Map an observation to an action for Meta-World reach.

        obs: a dict with hand_pos, puck_pos, goal_pos; positions are [x, y, z] in meters.
        Returns [x, y, z, gripper]: a target for the hand relative to its current position
        (meters) and the gripper command (0 open, 1 closed).
        """
        return [0.0, 0.0, 0.0, 0.0]
