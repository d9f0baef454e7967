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

        obs: a dict of numpy float64 arrays: joint_angles (7), joint_velocities (7), tip_pos,
        object_pos and goal_pos ([x, y, z] in meters), and tip_jacobian (3x7), with
        d(tip_pos)/dt = tip_jacobian @ joint_velocities: torques tau = tip_jacobian.T @ force
        push the tip along force, so tau = J.T @ (K * (target - tip_pos)) - D * joint_velocities
        moves the tip to target.
        Returns 7 joint torques, each in [-2, 2].
        """
        return [0.0] * 7
