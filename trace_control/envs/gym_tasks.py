"""Gymnasium MuJoCo (v5) tasks with named observations and text feedback.

Each task is a :class:`gymnasium.Wrapper` around ``gymnasium.make(base_id)``, whose
``TimeLimit`` is the one owner of the horizon. A task adds one observation hook
(``observation(raw)``: the raw vector as named float64 arrays, shaped like Gymnasium's
``ObservationWrapper.observation``) and one feedback hook (``feedback``: the step's text
from the reward terms and events), plus a documented success criterion.
``unwrapped`` is the Gymnasium MuJoCo environment (``unwrapped.model``, ``.data``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from trace_control.envs.base import (
    Field,
    Interface,
    check_action,
    clip_to,
    dict_space,
    ensure_headless_rendering,
    fast_rendering,
    instruction_text,
)
from trace_control.envs.kinematics import body_com_jacobian


class GymnasiumTask(gym.Wrapper):
    """A Gymnasium MuJoCo environment with named observations and text feedback.

    Subclasses set the class attributes and implement the hooks ``observation``,
    ``feedback``, ``is_success`` and ``progress``. Settings: ``horizon`` (steps per
    episode, the ``TimeLimit``), ``render_mode`` (``"rgb_array"``), ``width``, ``height``.
    """

    base_id: ClassVar[str] = ""
    task_name: ClassVar[str] = ""
    robot: ClassVar[str] = ""
    task_hint: ClassVar[str] = ""
    default_horizon: ClassVar[int] = 1000
    fields: ClassVar[tuple[Field, ...]] = ()
    action_doc: ClassVar[str] = ""
    action_size: ClassVar[int] = 0
    success_text: ClassVar[str] = ""  # may name {horizon}

    def __init__(self, horizon: int | None = None, render_mode: str | None = None, width: int = 480,
                 height: int = 480) -> None:
        if render_mode is not None:
            ensure_headless_rendering()
        horizon = int(horizon if horizon is not None else self.default_horizon)
        if horizon < 1:
            raise ValueError("horizon must be at least 1")
        size = {"width": width, "height": height} if render_mode else {}
        super().__init__(gym.make(self.base_id, render_mode=render_mode, max_episode_steps=horizon,
                                  disable_env_checker=True, **size, **self.base_kwargs()))
        self.observation_space = dict_space(self.fields)
        self.horizon = horizon
        self.success_criterion = self.success_for(horizon)
        self.instruction = instruction_text(self.robot, self.interface(), f"An episode has {horizon} steps.",
                                            self.task_hint, self.success_criterion)
        self._raw: np.ndarray | None = None
        self._fast = False

    # -- what subclasses provide -------------------------------------------------------
    @classmethod
    def base_kwargs(cls) -> dict[str, Any]:
        """Keyword settings for ``gymnasium.make(base_id)``."""
        return {}

    @classmethod
    def success_for(cls, horizon: int) -> str:
        """The success criterion for episodes of ``horizon`` steps."""
        return cls.success_text.format(horizon=horizon)

    @classmethod
    def interface(cls) -> Interface:
        """What a controller reads and returns (no environment is built)."""
        return Interface(cls.fields, cls.action_doc, cls.action_size)

    def observation(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """The raw observation vector as named float64 arrays (the task's fields)."""
        raise NotImplementedError

    def feedback(self, before: np.ndarray, after: np.ndarray, info: dict, terminated: bool) -> str:
        """The step's text, from the reward terms and events."""
        raise NotImplementedError

    def is_success(self, terminated: bool, truncated: bool) -> bool:
        raise NotImplementedError

    def progress(self, terminated: bool) -> str:
        """One sentence: where the episode stands against the success criterion."""
        raise NotImplementedError

    # -- Gymnasium API -------------------------------------------------------------------
    @property
    def elapsed_steps(self) -> int:
        """Steps since the reset, as counted by the ``TimeLimit`` (the horizon's owner)."""
        return int(self.env.get_wrapper_attr("_elapsed_steps") or 0)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        raw, _ = self.env.reset(seed=seed, options=options)
        self._raw = raw
        self.on_reset()
        return self.observation(raw), {"feedback": f"The episode starts. {self.task_hint}", "success": False,
                                       "progress": self.progress(False)}

    def on_reset(self) -> None:
        """Clear per-episode state (none by default)."""

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._raw is None:
            raise RuntimeError("call reset() before step()")
        values = check_action(action, self.action_space.shape[0])
        clipped, clip_note = clip_to(values, self.action_space)
        before = self._raw
        raw, reward, terminated, truncated, info = self.env.step(clipped.astype(self.action_space.dtype))
        self._raw = raw
        self.after_step(float(reward))
        terminated, truncated = bool(terminated), bool(truncated)
        step_info = {key: float(value) for key, value in info.items() if np.isscalar(value)}
        step_info.update(feedback=self.feedback(before, raw, info, terminated) + clip_note,
                         success=self.is_success(terminated, truncated), progress=self.progress(terminated))
        return self.observation(raw), float(reward), terminated, truncated, step_info

    def after_step(self, reward: float) -> None:
        """Record what a step brought (nothing by default)."""

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        renderer = self.unwrapped.mujoco_renderer
        if not self._fast:
            fast_rendering(self.unwrapped.model, renderer)
            self._fast = True
        self.aim_camera(renderer._get_viewer("rgb_array").cam)
        return self.env.render()

    def aim_camera(self, camera: Any) -> None:
        """Point the free camera before a frame (it stays put by default)."""


def _trend(before: float, after: float, closer: str, farther: str, same: str, tolerance: float = 1e-4) -> str:
    if after < before - tolerance:
        return closer
    return farther if after > before + tolerance else same


class ReacherTask(GymnasiumTask):
    """Reacher-v5: move a two-joint arm's fingertip onto a target."""

    base_id = "Reacher-v5"
    task_name = "reacher"
    robot = "Control a two-link planar arm (MuJoCo Reacher-v5)."
    task_hint = "The goal of the task is to move the fingertip of a two-link arm onto the target and keep it there."
    default_horizon = 50
    action_size = 2
    threshold = 0.02
    success_text = f"the fingertip within {threshold} m of the target at the end of the episode"
    fields = (
        Field("joint_angles", (2,), "[q0, q1] joint angles (radians)"),
        Field("joint_velocities", (2,), "[w0, w1] joint velocities (rad/s)"),
        Field("target_pos", (2,), "[x, y] of the target (meters)"),
        Field("fingertip_to_target", (2,), "[dx, dy]: fingertip minus target (meters)"),
        Field("fingertip_pos", (2,), "[x, y] of the fingertip (meters)"),
        Field("fingertip_jacobian", (2, 2), "J with d(fingertip_pos)/dt = J @ joint_velocities, so joint "
              "torques tau = J.T @ force move the fingertip along force (e.g. tau = J.T @ (K * error) - D * "
              "joint_velocities)"),
    )
    action_doc = "[t0, t1]: the two joint torques, each in [-1, 1]. Reward per step: minus the fingertip-target " \
        "distance minus the squared torques."

    def observation(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        angles = np.array([math.atan2(raw[2], raw[0]), math.atan2(raw[3], raw[1])])
        unwrapped = self.unwrapped
        return {"joint_angles": angles, "joint_velocities": raw[6:8].copy(), "target_pos": raw[4:6].copy(),
                "fingertip_to_target": raw[8:10].copy(), "fingertip_pos": raw[4:6] + raw[8:10],
                "fingertip_jacobian": body_com_jacobian(unwrapped.model, unwrapped.data, "fingertip", [0, 1], 2)}

    def _distance(self) -> float:
        return float(np.linalg.norm(self._raw[8:10]))

    def feedback(self, before, after, info, terminated):
        d0, d1 = float(np.linalg.norm(before[8:10])), float(np.linalg.norm(after[8:10]))
        trend = _trend(d0, d1, "closer to", "farther from", "no nearer to")
        text = f"The fingertip is {d1:.3f} m from the target, {trend} it than before."
        cost = -float(info.get("reward_ctrl", 0.0))
        if cost > 0.05:
            text += f" The control cost was {cost:.3f}: large torques are penalised."
        return text

    def is_success(self, terminated, truncated):
        return truncated and self._distance() <= self.threshold

    def progress(self, terminated):
        return (f"Final fingertip-target distance: {self._distance():.3f} m (success needs at most {self.threshold} m "
                "at the end).")


class PusherTask(GymnasiumTask):
    """Pusher-v5: a 7-joint arm pushes a cylinder to a goal on the table."""

    base_id = "Pusher-v5"
    task_name = "pusher"
    robot = "Control a 7-joint robot arm (MuJoCo Pusher-v5) on a table, with no gravity."
    task_hint = "The goal of the task is to push the object (a cylinder) to the goal position with the arm's tip."
    default_horizon = 100
    action_size = 7
    threshold = 0.1
    success_text = f"the object within {threshold} m of the goal at the end of the episode"
    arm_dofs = tuple(range(7))
    fields = (
        Field("joint_angles", (7,), "the 7 joint angles (radians)"),
        Field("joint_velocities", (7,), "the 7 joint velocities (rad/s)"),
        Field("tip_pos", (3,), "[x, y, z] of the arm's tip (meters)"),
        Field("object_pos", (3,), "[x, y, z] of the object (meters)"),
        Field("goal_pos", (3,), "[x, y, z] of the goal (meters)"),
        Field("tip_jacobian", (3, 7), "J with d(tip_pos)/dt = J @ joint_velocities, so joint torques "
              "tau = J.T @ force push the tip along force: operational-space control is "
              "tau = J.T @ (K * (target - tip_pos)) - D * joint_velocities"),
    )
    action_doc = "7 joint torques, each in [-2, 2]. Reward per step: minus the object-goal distance, minus half " \
        "the tip-object distance, minus 0.1 times the squared torques. One step lasts 0.05 s."

    def observation(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        unwrapped = self.unwrapped
        return {"joint_angles": raw[0:7].copy(), "joint_velocities": raw[7:14].copy(), "tip_pos": raw[14:17].copy(),
                "object_pos": raw[17:20].copy(), "goal_pos": raw[20:23].copy(),
                "tip_jacobian": body_com_jacobian(unwrapped.model, unwrapped.data, "tips_arm", self.arm_dofs)}

    def _distance(self) -> float:
        return float(np.linalg.norm(self._raw[17:20] - self._raw[20:23]))

    def feedback(self, before, after, info, terminated):
        near0, near1 = (float(np.linalg.norm(x[14:17] - x[17:20])) for x in (before, after))
        dist0, dist1 = (float(np.linalg.norm(x[17:20] - x[20:23])) for x in (before, after))
        moved = _trend(dist0, dist1, "moved toward it", "moved away from it", "did not move toward it")
        return (f"The tip is {near1:.3f} m from the object ({'closer' if near1 < near0 else 'not closer'} than "
                f"before); the object is {dist1:.3f} m from the goal and {moved}.")

    def is_success(self, terminated, truncated):
        return truncated and self._distance() <= self.threshold

    def progress(self, terminated):
        return (f"Final object-goal distance: {self._distance():.3f} m (success needs at most {self.threshold} m "
                "at the end).")


class CartTask(GymnasiumTask):
    """A cart balancing poles: the camera follows the cart; success is staying up to the horizon."""

    action_size = 1

    def aim_camera(self, camera: Any) -> None:
        camera.lookat[0] = float(self.unwrapped.data.qpos[0])

    def is_success(self, terminated, truncated):
        return truncated and not terminated


class InvertedPendulumTask(CartTask):
    """InvertedPendulum-v5: balance a pole on a cart."""

    base_id = "InvertedPendulum-v5"
    task_name = "inverted-pendulum"
    robot = "Control a cart that balances a pole (MuJoCo InvertedPendulum-v5)."
    task_hint = "The goal of the task is to keep the pole upright by pushing the cart left and right."
    default_horizon = 200
    limit = 0.2
    success_text = f"the pole stays within {limit} rad of upright for all {{horizon}} steps"
    fields = (
        Field("cart_pos", (), "cart position (meters)"),
        Field("pole_angle", (), "pole angle from upright (radians, positive leans right)"),
        Field("cart_vel", (), "cart velocity (m/s)"),
        Field("pole_angular_vel", (), "pole angular velocity (rad/s)"),
    )
    action_doc = f"[force]: one force on the cart in [-3, 3] (positive pushes right). The episode fails when " \
        f"|pole_angle| exceeds {limit} rad."

    def observation(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        return {name: np.array(raw[index]) for index, name in enumerate(f.name for f in self.fields)}

    def feedback(self, before, after, info, terminated):
        angle = float(after[1])
        if terminated:
            return (f"The pole fell at step {self.elapsed_steps}: its angle {angle:.3f} rad passed the "
                    f"{self.limit} rad limit while the cart moved at {after[2]:.2f} m/s.")
        trend = "toward upright" if abs(angle) < abs(before[1]) else "away from upright"
        return f"The pole angle is {angle:.3f} rad, moving {trend}; the cart is at {after[0]:.2f} m."

    def progress(self, terminated):
        if terminated:
            return (f"The pole fell at step {self.elapsed_steps} (angle {abs(float(self._raw[1])):.3f} rad > "
                    f"{self.limit}); success needs {self.horizon} steps.")
        return f"The pole stayed up for {self.elapsed_steps} of {self.horizon} steps."


class InvertedDoublePendulumTask(CartTask):
    """InvertedDoublePendulum-v5: balance two stacked poles on a cart."""

    base_id = "InvertedDoublePendulum-v5"
    task_name = "inverted-double-pendulum"
    robot = "Control a cart that balances two stacked poles (MuJoCo InvertedDoublePendulum-v5)."
    task_hint = "The goal of the task is to keep both poles upright by pushing the cart left and right."
    default_horizon = 200
    min_height = 1.0
    success_text = f"the tip stays above {min_height} m (poles upright) for all {{horizon}} steps"
    fields = (
        Field("cart_pos", (), "cart position (meters)"),
        Field("pole_angles", (2,), "[a1, a2]: a1 of the lower pole from vertical, a2 of the upper pole relative "
              "to the lower one (radians)"),
        Field("cart_vel", (), "cart velocity (m/s)"),
        Field("pole_angular_vels", (2,), "[w1, w2] angular velocities (rad/s, clipped to [-10, 10])"),
        Field("tip_height", (), "height of the upper pole's tip (meters, about 1.2 when upright)"),
    )
    action_doc = f"[force]: one force on the cart in [-1, 1]. The episode fails when tip_height drops to " \
        f"{min_height} m or below."

    def _tip_height(self) -> float:
        return float(self.unwrapped.data.site_xpos[0][2])

    def observation(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        return {"cart_pos": np.array(raw[0]), "pole_angles": np.arctan2(raw[1:3], raw[3:5]),
                "cart_vel": np.array(raw[5]), "pole_angular_vels": raw[6:8].copy(),
                "tip_height": np.array(self._tip_height())}

    def feedback(self, before, after, info, terminated):
        height = self._tip_height()
        if terminated:
            return (f"The poles fell at step {self.elapsed_steps}: the tip dropped to {height:.3f} m (it must stay "
                    f"above {self.min_height} m).")
        penalty = abs(float(info.get("distance_penalty", 0.0)))
        return f"The tip is at {height:.3f} m; its distance penalty was {penalty:.3f}."

    def progress(self, terminated):
        if terminated:
            return (f"The poles fell at step {self.elapsed_steps} (tip height {self._tip_height():.3f} m <= "
                    f"{self.min_height}); success needs {self.horizon} steps.")
        return f"The poles stayed up for {self.elapsed_steps} of {self.horizon} steps."
