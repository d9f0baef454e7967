"""Hand-written reference controllers: what a learned controller has to beat.

The Meta-World ones follow the scripted experts' logic on named observations (the same
targets as the ``fp`` feedback, in the relative action mode); they check that a task,
its P-controller and its success flag are wired right. The Pusher one pushes with the
wrist's inside corner, steering the arm with its own forward kinematics from the joint
angles.
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
    """Pushes the object with the inside corner of the wrist, like a V-shaped pusher.

    The wrist ends in a U: a crossbar (``tip_pos`` is its centre) and two prongs 0.1 m long at
    0.1 m to each side. The object (radius 0.05 m) goes into the corner between the crossbar
    and one prong, with the fork turned 45 degrees from the object->goal line, so both press
    on it and their pushes add up along that line; the prong also keeps it from sliding off.
    Contacts with the object are soft (about 0.4 N per metre of overlap, against the object's
    damping of 0.5 N s/m), so the corner presses 5.7 cm into it, which pushes it at about
    7 cm/s. The kinematics (the tip's Jacobian and the fork's direction) come from the joint
    angles; the tip's velocity is the first task (damped least squares), the fork's
    orientation the second, a rest posture the third; a torque servoes the joint velocities.
    """

    task = "pusher"

    @bundle(trainable=True)
    def controller(self, obs):
        """Return 7 joint torques: bring the wrist's inside corner behind the object, then push it to the goal."""
        import numpy as np

        # the arm (Pusher-v5's model): joint limits, joint damping, the shoulder
        lower = np.array([-2.2854, -0.5236, -1.5, -2.3213, -1.5, -1.094, -1.5])
        upper = np.array([1.7146, 1.3963, 1.7, 0.0, 1.5, 0.0, 1.5])
        joint_damping = np.array([1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1])
        shoulder = np.array([0.0, -0.6, 0.0])
        # the push: how far the crossbar and the prong press into the object, the fork's angle to
        # the object->goal line, where the tip comes down (inside the U, clear of the object)
        depth, corner_angle, entry_back, entry_side = 0.057, np.pi / 4, 0.03, 0.05
        lift, descend_within, settled_height, hold_within = 0.06, 0.2, 0.015, 0.02
        push_speed, lead_speed, reach_speed, braking, position_gain = 0.15, 0.06, 0.7, 1.0, 10.0
        turn_gain, pitch_band = 3.0, (0.0, 0.3)
        velocity_gains = np.array([3.0, 3.0, 1.0, 1.5, 0.5, 0.5, 0.5])
        rest_posture, posture_gain = np.array([0.0, 0.8, -1.4, -1.5, 0.0, -0.5, 0.0]), 1.0
        preferred_fork = 0.87  # the fork's angle from the shoulder->object line that the arm reaches best

        def rotation(axis, angle):
            c, s = np.cos(angle), np.sin(angle)
            i, j = [(1, 2), (2, 0), (0, 1)][axis]
            r = np.eye(3)
            r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
            return r

        def wrap(angle):
            return (angle + np.pi) % (2 * np.pi) - np.pi

        q, qd = obs["joint_angles"], obs["joint_velocities"]
        obj, goal, tip = obs["object_pos"], obs["goal_pos"], obs["tip_pos"]
        to_goal = goal[:2] - obj[:2]
        distance = np.linalg.norm(to_goal)
        heading = np.arctan2(to_goal[1], to_goal[0])

        # forward kinematics: each joint's axis and position; the wrist frame's x is the prongs'
        # direction (the fork), its y the crossbar's
        frames = [rotation(2, q[0])]
        for axis, angle in zip((1, 0, 1, 0, 1, 0), q[1:]):
            frames.append(frames[-1] @ rotation(axis, angle))
        lift_joint = shoulder + frames[0] @ np.array([0.1, 0.0, 0.0])
        elbow = lift_joint + frames[2] @ np.array([0.4, 0.0, 0.0])
        wrist = elbow + frames[3] @ np.array([0.321, 0.0, 0.0])
        axes = np.stack([frames[j][:, axis] for j, axis in enumerate((2, 1, 0, 1, 0, 1, 0))], 1)
        joint_points = [shoulder, lift_joint, lift_joint, elbow, elbow, wrist, wrist]
        position_jacobian = np.stack([np.cross(axes[:, j], wrist - joint_points[j]) for j in range(7)], 1)
        fork3, crossbar3 = frames[6][:, 0], frames[6][:, 1]
        fork = fork3[:2] / (np.linalg.norm(fork3[:2]) + 1e-9)
        crossbar = np.array([-fork[1], fork[0]])

        # the object in the wrist frame: along the fork (u) and along the crossbar (w)
        u, w = (obj[:2] - tip[:2]) @ fork, (obj[:2] - tip[:2]) @ crossbar
        in_corner = -0.01 < u < 0.12 and 0.02 < abs(w) < 0.12 and tip[2] < obj[2] + 0.03
        if in_corner:
            side = np.sign(w)  # keep pushing with the prong the object leans on
        else:
            radial = np.arctan2(obj[1] - shoulder[1], obj[0] - shoulder[0])
            side = min((1.0, -1.0), key=lambda s: abs(wrap(heading + s * corner_angle - radial - preferred_fork)))
        fork_yaw = heading + side * corner_angle
        if in_corner and distance < hold_within:
            fork_yaw = np.arctan2(fork[1], fork[0])

        # come down inside the U next to the object (at its mid-height, where the contacts push
        # sideways), then press into the corner and lead the object toward the goal
        engaged = in_corner and tip[2] < obj[2] + settled_height
        if engaged:
            spot = obj[:2] - (0.07 - depth) * fork - side * (0.03 + depth) * crossbar
        else:
            spot = obj[:2] - entry_back * fork - side * entry_side * crossbar
        off = np.linalg.norm(tip[:2] - spot)
        target = np.array([spot[0], spot[1], obj[2] + lift * min(1.0, off / descend_within)])
        velocity = position_gain * (target - tip)
        pushing = engaged and distance > hold_within
        if pushing:
            velocity[:2] += lead_speed * to_goal / distance
            speed_limit = push_speed
        else:
            speed_limit = min(reach_speed, max(push_speed, np.sqrt(2 * braking * np.linalg.norm(target - tip))))
        velocity *= min(1.0, speed_limit / (np.linalg.norm(velocity) + 1e-9))

        # orientation: the fork toward fork_yaw, its pitch kept in a band, the crossbar level
        pitch = np.clip(np.arcsin(np.clip(fork3[2], -1.0, 1.0)), *pitch_band)
        fork_target = np.array([np.cos(pitch) * np.cos(fork_yaw), np.cos(pitch) * np.sin(fork_yaw), np.sin(pitch)])
        level = -crossbar3[2] * np.sign(np.cross(fork3, crossbar3)[2] + 1e-9) * fork3
        spin = turn_gain * (np.cross(fork3, fork_target) + level)

        # joint velocities: the tip's velocity first, the orientation in its null space, the rest
        # posture last; a joint at a limit that would be pushed past it sits out
        free = np.ones(7, bool)
        for _ in range(3):
            n = int(free.sum())
            j1, j2 = position_jacobian[:, free], axes[:, free]
            first = j1.T @ np.linalg.inv(j1 @ j1.T + 0.05**2 * np.eye(3)) @ velocity
            null1 = np.eye(n) - np.linalg.pinv(j1, rcond=1e-3) @ j1
            j2n = j2 @ null1
            second = j2n.T @ np.linalg.inv(j2n @ j2n.T + 0.3**2 * np.eye(3)) @ (spin - j2 @ first)
            null2 = null1 @ (np.eye(n) - np.linalg.pinv(j2n, rcond=1e-2) @ j2n)
            qd_target = np.zeros(7)
            qd_target[free] = first + second + null2 @ (posture_gain * (rest_posture - q)[free])
            blocked = ((q <= lower + 0.02) & (qd_target < 0)) | ((q >= upper - 0.02) & (qd_target > 0))
            if not np.any(blocked & free):
                break
            free &= ~blocked
        torque = joint_damping * qd_target + velocity_gains * (qd_target - qd)
        return list(np.clip(torque, -2.0, 2.0))


EXPERTS = {cls.task: cls for cls in (ReachExpert, PushExpert, PickPlaceExpert, InvertedPendulumExpert, PusherExpert)}
