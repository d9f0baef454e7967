"""Starting controller for Reacher: a proportional law on the fingertip error, gains zero."""

from __future__ import annotations

from trace_control.controllers.base import Controller
from trace_control.trace import bundle, node


class ReacherController(Controller):
    """Drives the two-link arm of Reacher-v5."""

    task = "reacher"

    def __init__(self):
        self.gains = node([0.0, 0.0], name="gains", trainable=True,
                          description="gains from the fingertip-to-target error to the two torques")

    @bundle(trainable=True)
    def controller(self, obs):
        """Map an observation to joint torques for Reacher.

        obs: a dict of numpy float64 arrays: joint_angles [q0, q1], joint_velocities [w0, w1],
        target_pos [x, y], fingertip_to_target [dx, dy] (fingertip minus target, meters),
        fingertip_pos [x, y], and fingertip_jacobian (2x2), with d(fingertip_pos)/dt =
        fingertip_jacobian @ joint_velocities: torques tau = J.T @ force push the fingertip along force.
        Returns [t0, t1]: joint torques, each in [-1, 1].
        """
        dx, dy = obs["fingertip_to_target"]
        return [-self.gains[0] * dx, -self.gains[1] * dy]
