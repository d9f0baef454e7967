"""Starting controller for Meta-World drawer-close: it does not move (the paper's starting point)."""

from __future__ import annotations

from trace_control.controllers.base import Controller
from trace_control.trace import bundle


class DrawerCloseController(Controller):
    """Controls the Sawyer arm in Meta-World drawer-close."""

    task = "drawer-close"

    @bundle(trainable=True)
    def controller(self, obs):
        """Map an observation to an action for Meta-World drawer-close.

        obs: a dict with hand_pos, handle_pos, goal_pos; positions are [x, y, z] in meters.
        Returns [x, y, z, gripper]: a target for the hand relative to its current position
        (meters) and the gripper command (0 open, 1 closed).
        """
        return [0.0, 0.0, 0.0, 0.0]
