"""Gymnasium MuJoCo tasks (v5) with named observations and text feedback.

Each task wraps the standard environment (``gymnasium.make``) and adds: a dict
observation with named quantities, a documented success criterion, and feedback
text per step built from the reward terms and events (distance and its trend,
control cost, the step where the pole fell and why).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from trace_control.envs.base import TextTask, check_action, ensure_headless_rendering, fast_rendering, rounded


class GymTextEnv(TextTask):
    """Base for the Gymnasium tasks: wraps ``gym.make(base_id)`` with a horizon."""

    base_id = ""
    default_horizon = 200

    def __init__(self, horizon: int | None = None, render_mode: str | None = None, width: int = 480,
                 height: int = 480) -> None:
        if render_mode is not None:
            ensure_headless_rendering()
        self.horizon = int(horizon if horizon is not None else self.default_horizon)
        if self.horizon < 1:
            raise ValueError("horizon must be at least 1")
        self.render_mode = render_mode
        extra = {"width": width, "height": height} if render_mode else {}
        self._env = gym.make(self.base_id, render_mode=render_mode, max_episode_steps=self.horizon, **extra)
        self.action_space = self._env.action_space
        self.action_size = int(np.prod(self._env.action_space.shape))
        self._low = self._env.action_space.low.astype(float)
        self._high = self._env.action_space.high.astype(float)
        self._raw: np.ndarray | None = None
        self._steps = 0
        self.last_info: dict = {}

    @property
    def model(self) -> Any:
        return self._env.unwrapped.model

    @property
    def data(self) -> Any:
        return self._env.unwrapped.data

    def named(self, raw: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def step_feedback(self, before: np.ndarray, after: np.ndarray, action: np.ndarray, info: dict,
                      terminated: bool) -> str:
        raise NotImplementedError

    def is_success(self, terminated: bool, truncated: bool, info: dict) -> bool:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        raw, _ = self._env.reset(seed=seed, options=options)
        self._raw = raw
        self._steps = 0
        self.last_info = {"feedback": f"The episode starts. {self.task_hint}", "success": False}
        return self.named(raw), dict(self.last_info)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._raw is None:
            raise RuntimeError("call reset() before step()")
        values = np.array(check_action(action, self.action_size))
        clipped = np.clip(values, self._low, self._high)
        before = self._raw
        raw, reward, terminated, truncated, info = self._env.step(clipped)
        self._raw = raw
        self._steps += 1
        truncated = truncated or self._steps >= self.horizon
        text = self.step_feedback(before, raw, clipped, info, terminated)
        if not np.array_equal(values, clipped):
            text += f" The action was clipped to the allowed range [{self._low[0]:g}, {self._high[0]:g}]."
        success = self.is_success(terminated, truncated, info)
        self.last_info = {**{k: float(v) for k, v in info.items() if np.isscalar(v)}, "feedback": text,
                          "success": success, "reward": float(reward), "step": self._steps}
        return self.named(raw), float(reward), bool(terminated), bool(truncated), dict(self.last_info)

    def failure_detail(self) -> str:
        """What went wrong in a failed episode, in one sentence."""
        raise NotImplementedError

    def outcome_text(self, episode_return: float, success: bool) -> str:
        lines = [f"Success: {success}", f"Return: {episode_return:.3f}"]
        if not success:
            lines.append(self.failure_detail())
        return "\n".join(lines)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if not getattr(self, "_fast", False):
            fast_rendering(self.model, self._env.unwrapped.mujoco_renderer)
            self._fast = True
        return self._env.render()

    def close(self) -> None:
        self._env.close()


class ReacherText(GymTextEnv):
    """Reacher-v5: move a two-joint arm's fingertip to a target."""

    base_id = "Reacher-v5"
    default_horizon = 50
    task_name = "reacher"
    threshold = 0.02
    task_hint = "The goal of the task is to move the fingertip of a two-link arm onto the target and keep it there."
    success_criterion = "fingertip within 0.02 m of the target at the end of the episode"

    def __init__(self, horizon: int | None = None, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        self.instruction = (
            "Control a two-link planar arm (MuJoCo Reacher). The observation is a dict: joint_angles [q0, q1] "
            "(radians), joint_velocities [w0, w1] (rad/s), target_pos [x, y] (meters), fingertip_to_target "
            "[dx, dy] (fingertip minus target, meters). The action is two joint torques [t0, t1], each in "
            f"[-1, 1]. Reward per step: minus the fingertip-target distance minus the squared torque. "
            f"An episode has {self.horizon} steps. {self.task_hint}")

    def named(self, raw: np.ndarray) -> dict[str, Any]:
        angles = [math.atan2(raw[2], raw[0]), math.atan2(raw[3], raw[1])]
        return {"joint_angles": rounded(angles), "joint_velocities": rounded(raw[6:8]),
                "target_pos": rounded(raw[4:6]), "fingertip_to_target": rounded(raw[8:10])}

    def step_feedback(self, before, after, action, info, terminated):
        d0, d1 = float(np.linalg.norm(before[8:10])), float(np.linalg.norm(after[8:10]))
        trend = "closer to" if d1 < d0 - 1e-4 else ("farther from" if d1 > d0 + 1e-4 else "no nearer to")
        text = f"The fingertip is {d1:.3f} m from the target, {trend} it than before."
        cost = -float(info.get("reward_ctrl", 0.0))
        if cost > 0.05:
            text += f" The control cost was {cost:.3f}: large torques are penalised."
        return text

    def is_success(self, terminated, truncated, info):
        return bool(truncated and -float(info.get("reward_dist", -1.0)) <= self.threshold)

    def failure_detail(self) -> str:
        distance = float(np.linalg.norm(self._raw[8:10]))
        return (f"Final fingertip-target distance: {distance:.3f} m (success needs at most {self.threshold} m "
                "at the end).")


class PusherText(GymTextEnv):
    """Pusher-v5: a 7-joint arm pushes a cylinder to a goal on the table."""

    base_id = "Pusher-v5"
    default_horizon = 100
    task_name = "pusher"
    threshold = 0.1
    task_hint = "The goal of the task is to push the object (a cylinder) to the goal position with the arm's tip."
    success_criterion = "object within 0.1 m of the goal at the end of the episode"

    def __init__(self, horizon: int | None = None, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        self.instruction = (
            "Control a 7-joint robot arm (MuJoCo Pusher). The observation is a dict: joint_angles (7 values, "
            "radians), joint_velocities (7 values), tip_pos [x, y, z], object_pos [x, y, z], goal_pos [x, y, z] "
            "(meters). The action is 7 joint torques, each in [-2, 2]. Reward per step: minus the object-goal "
            "distance, minus half the tip-object distance, minus 0.1 times the squared torque. "
            f"An episode has {self.horizon} steps. {self.task_hint}")

    def named(self, raw: np.ndarray) -> dict[str, Any]:
        return {"joint_angles": rounded(raw[0:7]), "joint_velocities": rounded(raw[7:14]),
                "tip_pos": rounded(raw[14:17]), "object_pos": rounded(raw[17:20]), "goal_pos": rounded(raw[20:23])}

    def step_feedback(self, before, after, action, info, terminated):
        near0, near1 = (float(np.linalg.norm(x[14:17] - x[17:20])) for x in (before, after))
        dist0, dist1 = (float(np.linalg.norm(x[17:20] - x[20:23])) for x in (before, after))
        text = (f"The tip is {near1:.3f} m from the object ({'closer' if near1 < near0 else 'not closer'} than "
                f"before); the object is {dist1:.3f} m from the goal")
        text += " and moved toward it." if dist1 < dist0 - 1e-4 else (
            " and moved away from it." if dist1 > dist0 + 1e-4 else " and did not move toward it.")
        return text

    def is_success(self, terminated, truncated, info):
        return bool(truncated and float(np.linalg.norm(self._raw[17:20] - self._raw[20:23])) <= self.threshold)

    def failure_detail(self) -> str:
        distance = float(np.linalg.norm(self._raw[17:20] - self._raw[20:23]))
        return f"Final object-goal distance: {distance:.3f} m (success needs at most {self.threshold} m)."


class InvertedPendulumText(GymTextEnv):
    """InvertedPendulum-v5: balance a pole on a cart."""

    base_id = "InvertedPendulum-v5"
    task_name = "inverted-pendulum"
    limit = 0.2
    task_hint = "The goal of the task is to keep the pole upright by pushing the cart left and right."

    def __init__(self, horizon: int | None = None, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        self.success_criterion = f"the pole stays within 0.2 rad of upright for all {self.horizon} steps"
        self.instruction = (
            "Control a cart that balances a pole (MuJoCo InvertedPendulum). The observation is a dict: cart_pos "
            "(meters), pole_angle (radians from upright, positive leans right), cart_vel (m/s), pole_angular_vel "
            "(rad/s). The action is one force on the cart [f] in [-3, 3] (positive pushes right). The episode "
            f"fails when |pole_angle| exceeds {self.limit} rad; it lasts {self.horizon} steps. {self.task_hint}")

    def named(self, raw: np.ndarray) -> dict[str, Any]:
        return {"cart_pos": rounded(raw[0]), "pole_angle": rounded(raw[1]), "cart_vel": rounded(raw[2]),
                "pole_angular_vel": rounded(raw[3])}

    def step_feedback(self, before, after, action, info, terminated):
        angle = float(after[1])
        if terminated:
            return (f"The pole fell at step {self._steps}: its angle {angle:.3f} rad passed the "
                    f"{self.limit} rad limit while the cart moved at {after[2]:.2f} m/s.")
        trend = "toward upright" if abs(angle) < abs(before[1]) else "away from upright"
        return f"The pole angle is {angle:.3f} rad, moving {trend}; the cart is at {after[0]:.2f} m."

    def is_success(self, terminated, truncated, info):
        return bool(truncated and not terminated)

    def failure_detail(self) -> str:
        return f"The pole was balanced for {self._steps} of {self.horizon} steps."


class InvertedDoublePendulumText(GymTextEnv):
    """InvertedDoublePendulum-v5: balance two stacked poles on a cart."""

    base_id = "InvertedDoublePendulum-v5"
    task_name = "inverted-double-pendulum"
    task_hint = "The goal of the task is to keep both poles upright by pushing the cart left and right."

    def __init__(self, horizon: int | None = None, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        self.success_criterion = f"the tip stays above 1.0 m (poles upright) for all {self.horizon} steps"
        self.instruction = (
            "Control a cart that balances two stacked poles (MuJoCo InvertedDoublePendulum). The observation is "
            "a dict: cart_pos (meters), pole_angles [a1, a2] (radians; a1 from vertical, a2 relative to the first "
            "pole), cart_vel (m/s), pole_angular_vels [w1, w2] (rad/s), tip_height (meters, 1.2 when upright). "
            "The action is one force on the cart [f] in [-1, 1]. The episode fails when tip_height drops to 1.0 "
            f"or below; it lasts {self.horizon} steps. {self.task_hint}")

    def _tip_height(self) -> float:
        return float(self.data.site_xpos[0][2])

    def named(self, raw: np.ndarray) -> dict[str, Any]:
        angles = [math.atan2(raw[1], raw[3]), math.atan2(raw[2], raw[4])]
        return {"cart_pos": rounded(raw[0]), "pole_angles": rounded(angles), "cart_vel": rounded(raw[5]),
                "pole_angular_vels": rounded(raw[6:8]), "tip_height": rounded(self._tip_height())}

    def step_feedback(self, before, after, action, info, terminated):
        height = self._tip_height()
        if terminated:
            return (f"The poles fell at step {self._steps}: the tip dropped to {height:.3f} m (it must stay "
                    f"above 1.0 m).")
        penalty = abs(float(info.get("distance_penalty", 0.0)))
        return f"The tip is at {height:.3f} m; its distance penalty was {penalty:.3f}."

    def is_success(self, terminated, truncated, info):
        return bool(truncated and not terminated)

    def failure_detail(self) -> str:
        return f"The poles stayed up for {self._steps} of {self.horizon} steps."


GYM_TASKS: dict[str, type[GymTextEnv]] = {
    cls.task_name: cls for cls in (ReacherText, PusherText, InvertedPendulumText, InvertedDoublePendulumText)}
