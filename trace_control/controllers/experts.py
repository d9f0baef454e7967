"""Hand-written reference controllers: what a learned controller has to beat.

The Meta-World ones follow the scripted experts' logic on named observations (the same
targets as the ``fp`` feedback, in the relative action mode); they check that a task,
its P-controller and its success flag are wired right. The Pusher one is built on the
kinematics in the observation (``tip_jacobian``): damped-least-squares operational-space
control of the tip.
"""

from __future__ import annotations

from trace_control.controllers.base import Controller
from trace_control.trace import bundle


class ReachExpert(Controller):
    """Moves the hand straight to the goal."""

    task = "reach"

    @bundle(trainable=True)
    def controller(self, obs):
        """Return [dx, dy, dz, gripper]: the offset from the hand to the goal, gripper open."""
        hand, goal = obs["hand_pos"], obs["goal_pos"]
        return [goal[0] - hand[0], goal[1] - hand[1], goal[2] - hand[2], 0.0]


class PushExpert(Controller):
    """Goes above the puck, lowers onto it with the gripper closing, then pushes to the goal."""

    task = "push"

    @bundle(trainable=True)
    def controller(self, obs):
        """Return [dx, dy, dz, gripper] following the push expert's stages."""
        hand, puck, goal = obs["hand_pos"], obs["puck_pos"], obs["goal_pos"]
        puck = [puck[0] - 0.005, puck[1], puck[2]]
        xy_error = ((hand[0] - puck[0]) ** 2 + (hand[1] - puck[1]) ** 2) ** 0.5
        if xy_error > 0.02:
            target = [puck[0], puck[1], puck[2] + 0.2]
        elif abs(hand[2] - puck[2]) > 0.04:
            target = [puck[0], puck[1], puck[2] + 0.03]
        else:
            target = goal
        grip = 0.0 if xy_error > 0.02 or abs(hand[2] - puck[2]) > 0.10 else 1.0
        return [target[0] - hand[0], target[1] - hand[1], target[2] - hand[2], grip]


class PickPlaceExpert(Controller):
    """Goes above the puck, descends, grasps, waits for the grip, then carries it to the goal."""

    task = "pick-place"

    @bundle(trainable=True)
    def controller(self, obs):
        """Return [dx, dy, dz, gripper] following the pick-place expert's stages."""
        hand, puck, goal = obs["hand_pos"], obs["puck_pos"], obs["goal_pos"]
        puck = [puck[0] - 0.005, puck[1], puck[2]]
        xy_error = ((hand[0] - puck[0]) ** 2 + (hand[1] - puck[1]) ** 2) ** 0.5
        if xy_error > 0.02:
            target = [puck[0], puck[1], puck[2] + 0.1]
        elif abs(hand[2] - puck[2]) > 0.05 and puck[2] < 0.04:
            target = [puck[0], puck[1], puck[2] + 0.03]
        elif obs["gripper_distance_apart"] > 0.73:
            target = hand
        else:
            target = goal
        near = sum((h - p) ** 2 for h, p in zip(hand, obs["puck_pos"])) ** 0.5 < 0.07
        return [target[0] - hand[0], target[1] - hand[1], target[2] - hand[2], 1.0 if near else 0.0]


class InvertedPendulumExpert(Controller):
    """A hand-tuned linear state feedback that balances the single pole."""

    task = "inverted-pendulum"

    @bundle(trainable=True)
    def controller(self, obs):
        """Return [force] from a stabilising linear feedback on the cart-pole state."""
        force = (1.0 * obs["cart_pos"] + 25.0 * obs["pole_angle"] + 1.5 * obs["cart_vel"]
                 + 4.0 * obs["pole_angular_vel"])
        return [max(-3.0, min(3.0, force))]


class PusherExpert(Controller):
    """Moves the tip behind the object (seen from the goal), lowers it, then drives it toward the goal.

    The tip follows targets with operational-space control on the observed Jacobian:
    ``tau = K * J.T @ inv(J @ J.T + damping**2 * I) @ (target - tip) - D * qdot``.
    """

    task = "pusher"

    @bundle(trainable=True)
    def controller(self, obs):
        """Return 7 joint torques that move the tip to the current stage's target."""
        import numpy as np

        gain, damping, regularisation = 3.0, 0.5, 0.05
        behind_distance, push_past, height, tolerance = 0.15, 0.15, 0.05, 0.03
        obj, goal, tip = obs["object_pos"], obs["goal_pos"], obs["tip_pos"]
        direction = (goal[:2] - obj[:2]) / (np.linalg.norm(goal[:2] - obj[:2]) + 1e-9)
        relative = tip[:2] - obj[:2]
        along = relative @ direction
        lateral = np.linalg.norm(relative - along * direction)
        behind = obj[:2] - behind_distance * direction
        target = np.array([behind[0], behind[1], obj[2] + height])
        at_behind = np.linalg.norm(tip[:2] - behind) < tolerance
        if at_behind or (along < 0 and lateral < tolerance and tip[2] < obj[2] + height + 0.05):
            target[:2] = goal[:2] - push_past * direction
        elif not at_behind:
            target[2] += 0.15  # travel above the object, then come down behind it
        jacobian = obs["tip_jacobian"]
        step = jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + regularisation**2 * np.eye(3), target - tip)
        torque = gain * step - damping * obs["joint_velocities"]
        return list(np.clip(torque, -2.0, 2.0))


EXPERTS = {cls.task: cls for cls in (ReachExpert, PushExpert, PickPlaceExpert, InvertedPendulumExpert, PusherExpert)}
