"""Starting controller for Pusher: no torque, with a trainable gain for a first law."""

from __future__ import annotations

from trace_control.controllers.base import Controller
from trace_control.trace import bundle, node


class PusherController(Controller):
    """Drives the 7-joint arm of Pusher-v5."""

    task = "pusher"

    def __init__(self):
        self.gain = node(0.0, name="gain", trainable=True, description="a gain the controller may use")

    @bundle(trainable=True)
    def controller(self, obs):
        """Map an observation to joint torques for Pusher.

        obs: a dict with joint_angles (7), joint_velocities (7), tip_pos, object_pos and
        goal_pos ([x, y, z] in meters).
        Returns 7 joint torques, each in [-2, 2].
        """
        return [0.0] * 7
