"""Gymnasium MuJoCo (v5) locomotion tasks: move forward (or stand up) with joint torques.

They have no success notion of their own, so success is a return target at the end of a
full episode, taken from published reinforcement-learning results (per robot below) and
scaled by ``horizon / 1000`` when the horizon differs from Gymnasium's 1000 steps.
Observations are read from the simulator state (``qpos`` / ``qvel``) at full precision.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from trace_control.envs.base import Field
from trace_control.envs.gym_tasks import GymnasiumTask

REFERENCE_HORIZON = 1000


def body_fields(body: str, joints: int) -> tuple[Field, ...]:
    """The named state of a ``body`` kind with ``joints`` actuated joints."""
    if body == "planar":
        return (Field("torso_height", (), "height of the torso (meters)"),
                Field("torso_angle", (), "pitch of the torso (radians, 0 upright)"),
                Field("joint_angles", (joints,), "joint angles (radians), in action order"),
                Field("torso_velocity", (3,), "[forward, upward, pitch rate] (m/s, m/s, rad/s)"),
                Field("joint_velocities", (joints,), "joint velocities (rad/s)"))
    if body == "swimmer":
        return (Field("body_angle", (), "heading of the front segment (radians)"),
                Field("joint_angles", (joints,), "joint angles (radians), in action order"),
                Field("body_velocity", (3,), "[forward (x), sideways (y), turn rate] (m/s, m/s, rad/s)"),
                Field("joint_velocities", (joints,), "joint velocities (rad/s)"))
    return (Field("torso_height", (), "height of the torso (meters)"),
            Field("torso_orientation", (4,), "torso orientation quaternion [w, x, y, z]"),
            Field("joint_angles", (joints,), "joint angles (radians), in action order"),
            Field("torso_velocity", (6,), "[vx, vy, vz, wx, wy, wz]: linear (m/s) and angular (rad/s) velocity; "
                  "x is forward"),
            Field("joint_velocities", (joints,), "joint velocities (rad/s)"))


class LocomotionTask(GymnasiumTask):
    """A locomotion robot: named body state, forward-speed feedback, return target.

    ``body``: "planar" (x, z, pitch root: Hopper, Walker2d, HalfCheetah), "swimmer"
    (x, y, yaw root) or "free" (a free-floating torso: Ant, Humanoid).
    """

    body: ClassVar[str] = "planar"
    joints: ClassVar[int] = 0
    torque_limit: ClassVar[float] = 1.0
    return_target: ClassVar[float] = 0.0  # for REFERENCE_HORIZON steps
    target_source: ClassVar[str] = ""
    healthy_text: ClassVar[str] = ""  # when the episode ends early; "" when it never does
    noun: ClassVar[str] = "robot"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fields = body_fields(cls.body, cls.joints)
        cls.action_size = cls.joints
        cls.action_doc = f"{cls.joints} joint torques, each in [-{cls.torque_limit:g}, {cls.torque_limit:g}]."

    def __init__(self, horizon: int | None = None, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        self.target = self.return_target * self.horizon / REFERENCE_HORIZON
        self._return = 0.0

    @classmethod
    def success_for(cls, horizon: int) -> str:
        target = cls.return_target * horizon / REFERENCE_HORIZON
        ends = f" without the episode ending early ({cls.healthy_text})" if cls.healthy_text else ""
        return f"a return of at least {target:g} over the {horizon}-step episode{ends}"

    def observation(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        data = self.unwrapped.data
        qpos, qvel = data.qpos.astype(np.float64), data.qvel.astype(np.float64)
        if self.body == "planar":
            return {"torso_height": np.array(qpos[1]), "torso_angle": np.array(qpos[2]), "joint_angles": qpos[3:],
                    "torso_velocity": qvel[0:3], "joint_velocities": qvel[3:]}
        if self.body == "swimmer":
            return {"body_angle": np.array(qpos[2]), "joint_angles": qpos[3:], "body_velocity": qvel[0:3],
                    "joint_velocities": qvel[3:]}
        return {"torso_height": np.array(qpos[2]), "torso_orientation": qpos[3:7], "joint_angles": qpos[7:],
                "torso_velocity": qvel[0:6], "joint_velocities": qvel[6:]}

    def _height(self) -> float:
        return float(self.unwrapped.data.qpos[1 if self.body == "planar" else 2])

    def on_reset(self) -> None:
        self._return = 0.0

    def after_step(self, reward: float) -> None:
        self._return += reward

    def feedback(self, before, after, info, terminated):
        text = self.motion_text(info)
        if terminated:
            text = (f"The {self.noun} fell at step {self.elapsed_steps}: torso height {self._height():.2f} m "
                    f"(healthy: {self.healthy_text}). ") + text
        return text

    def motion_text(self, info: dict) -> str:
        control = -float(info.get("reward_ctrl", 0.0))
        return (f"Forward velocity {float(info.get('x_velocity', 0.0)):.2f} m/s, torso height {self._height():.2f} m, "
                f"control cost {control:.3f}.")

    def is_success(self, terminated, truncated):
        return truncated and not terminated and self._return >= self.target

    def progress(self, terminated):
        ended = f"; the {self.noun} fell at step {self.elapsed_steps}, ending the episode early" if terminated else ""
        return (f"Return {self._return:.1f} after {self.elapsed_steps} steps (success needs at least {self.target:g} "
                f"over {self.horizon} steps){ended}.")


class HalfCheetahTask(LocomotionTask):
    base_id = "HalfCheetah-v5"
    task_name = "half-cheetah"
    robot = "Control a planar two-legged cheetah (MuJoCo HalfCheetah-v5) with 6 joints (back thigh, shin, foot; " \
        "front thigh, shin, foot)."
    task_hint = "The goal of the task is to run forward (+x) as fast as possible."
    joints = 6
    noun = "cheetah"
    return_target = 4800.0
    target_source = "Gymnasium's reward_threshold for HalfCheetah-v5"


class HopperTask(LocomotionTask):
    base_id = "Hopper-v5"
    task_name = "hopper"
    robot = "Control a one-legged planar hopper (MuJoCo Hopper-v5) with 3 joints (thigh, leg, foot)."
    task_hint = "The goal of the task is to hop forward (+x) as fast as possible without falling."
    joints = 3
    noun = "hopper"
    return_target = 3800.0
    target_source = "Gymnasium's reward_threshold for Hopper-v5"
    healthy_text = "torso height at least 0.7 m, torso angle within 0.2 rad of upright"


class Walker2dTask(LocomotionTask):
    base_id = "Walker2d-v5"
    task_name = "walker2d"
    robot = "Control a planar two-legged walker (MuJoCo Walker2d-v5) with 6 joints (right thigh, leg, foot; left " \
        "thigh, leg, foot)."
    task_hint = "The goal of the task is to walk forward (+x) as fast as possible without falling."
    joints = 6
    noun = "walker"
    return_target = 3876.0
    target_source = "Stable-Baselines3 RL Zoo SAC on Walker2d-v3 after 1e6 steps: 3876 +/- 76 (model " \
        "sb3/sac-Walker2d-v3)"
    healthy_text = "torso height between 0.8 and 2 m, torso angle within 1 rad of upright"


class SwimmerTask(LocomotionTask):
    base_id = "Swimmer-v5"
    task_name = "swimmer"
    robot = "Control a three-segment swimmer in a viscous fluid (MuJoCo Swimmer-v5) with 2 joints."
    task_hint = "The goal of the task is to swim forward (+x) as fast as possible."
    body = "swimmer"
    joints = 2
    noun = "swimmer"
    return_target = 360.0
    target_source = "Gymnasium's reward_threshold for Swimmer-v5"


class AntTask(LocomotionTask):
    base_id = "Ant-v5"
    task_name = "ant"
    robot = "Control a four-legged ant (MuJoCo Ant-v5) with 8 joints (hip and ankle of the front-left, " \
        "front-right, back-left and back-right legs)."
    task_hint = "The goal of the task is to walk forward (+x) as fast as possible without flipping over."
    body = "free"
    joints = 8
    noun = "ant"
    return_target = 6000.0
    target_source = "Gymnasium's reward_threshold for Ant-v5"
    healthy_text = "torso height between 0.2 and 1 m"


class HumanoidTask(LocomotionTask):
    base_id = "Humanoid-v5"
    task_name = "humanoid"
    robot = "Control a 3D humanoid (MuJoCo Humanoid-v5) with 17 joints (abdomen z, y, x; right hip x, z, y, knee; " \
        "left hip x, z, y, knee; right shoulder 1, 2, elbow; left shoulder 1, 2, elbow)."
    task_hint = "The goal of the task is to walk forward (+x) as fast as possible without falling."
    body = "free"
    joints = 17
    torque_limit = 0.4
    noun = "humanoid"
    return_target = 5742.0
    target_source = "CleanRL SAC on Humanoid-v4 after 1e6 steps: 5742 +/- 32 (model " \
        "sdpkjc/Humanoid-v4-sac_continuous_action-seed5)"
    healthy_text = "torso height between 1 and 2 m"


class HumanoidStandupTask(LocomotionTask):
    base_id = "HumanoidStandup-v5"
    task_name = "humanoid-standup"
    robot = "Control a 3D humanoid lying on the ground (MuJoCo HumanoidStandup-v5) with 17 joints (abdomen z, y, x; " \
        "right hip x, z, y, knee; left hip x, z, y, knee; right shoulder 1, 2, elbow; left shoulder 1, 2, elbow)."
    task_hint = "The goal of the task is to stand up and stay standing: the reward grows with the torso's height."
    body = "free"
    joints = 17
    torque_limit = 0.4
    noun = "humanoid"
    return_target = 151148.0
    target_source = "Stable-Baselines3 RL Zoo PPO on HumanoidStandup-v2, median of five trained agents (50504, " \
        "134334, 151148, 156095, 164634; models qgallouedec/ppo-HumanoidStandup-v2-*)"

    def motion_text(self, info: dict) -> str:
        return (f"Torso height {self._height():.2f} m (upward reward {float(info.get('reward_linup', 0.0)):.2f}), "
                f"control cost {-float(info.get('reward_quadctrl', 0.0)):.3f}.")


LOCOMOTION_TASKS: tuple[type[LocomotionTask], ...] = (
    AntTask, HalfCheetahTask, HopperTask, HumanoidTask, HumanoidStandupTask, SwimmerTask, Walker2dTask)
