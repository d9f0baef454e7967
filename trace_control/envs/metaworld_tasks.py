"""Meta-World v3 tasks in the Trace paper's protocol (the LLF-Bench Meta-World setting).

The controller returns a target pose ``[x, y, z, gripper]`` (relative to the hand by
default, or absolute); a P-controller moves the hand toward it for up to
``max_substeps`` simulator steps. An episode is ``horizon`` such steps (10 by
default). A seed fixes the object / goal placement. Feedback types follow LLF-Bench:
``r`` the reward, ``hp`` / ``hn`` whether the hand moved closer to / away from where
the task's scripted expert would go (and whether the gripper should open or close),
``fp`` the expert's next target. ``action_mode="native"`` exposes Meta-World's own
action (hand displacement in [-1, 1] per axis and gripper effort) with 500 steps.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from trace_control.envs.base import TextTask, check_action, ensure_headless_rendering, fast_rendering, rounded

FEEDBACK_TYPES = ("r", "hp", "hn", "fp")


@dataclass(frozen=True)
class MetaWorldSpec:
    """How one Meta-World task is presented: names, expert, gain, success wording."""

    name: str
    env_name: str
    policy: str
    gain: float
    object_name: str
    hint: str
    distance_of: str  # what obj_to_target measures, for the outcome text
    threshold: float
    include_gripper: bool = False
    include_rotation: bool = False


METAWORLD_TASKS: dict[str, MetaWorldSpec] = {spec.name: spec for spec in [
    MetaWorldSpec("reach", "reach-v3", "SawyerReachV3Policy", 5.0, "puck",
                  "The goal of the task is to move the hand to the goal position.", "the hand", 0.05),
    MetaWorldSpec("push", "push-v3", "SawyerPushV3Policy", 10.0, "puck",
                  "The goal of the task is to push a puck to a goal position.", "the puck", 0.05),
    MetaWorldSpec("pick-place", "pick-place-v3", "SawyerPickPlaceV3Policy", 10.0, "puck",
                  "The goal of the task is to pick up a puck and put it at a goal position.", "the puck",
                  0.07, include_gripper=True, include_rotation=True),
    MetaWorldSpec("door-open", "door-open-v3", "SawyerDoorOpenV3Policy", 25.0, "handle",
                  "The goal of the task is to open a door by pulling its handle around its hinge.",
                  "the door handle", 0.08, include_gripper=True),
    MetaWorldSpec("drawer-close", "drawer-close-v3", "SawyerDrawerCloseV3Policy", 25.0, "handle",
                  "The goal of the task is to push an open drawer closed.", "the drawer handle", 0.055),
    MetaWorldSpec("button-press", "button-press-v3", "SawyerButtonPressV3Policy", 25.0, "button",
                  "The goal of the task is to press a button by pushing it forward with the hand.",
                  "the button", 0.02),
]}


def _goal_observable(env_name: str) -> Any:
    import metaworld  # noqa: F401  (registers the environments)
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{env_name}-goal-observable"]


@lru_cache(maxsize=512)
def placement(env_name: str, seed: int) -> tuple[float, ...]:
    """The object / goal placement Meta-World draws for ``seed`` (as built with that seed)."""
    env = _goal_observable(env_name)(seed=seed)
    vector = tuple(float(v) for v in env._last_rand_vec)
    env.close()
    return vector


class MetaWorldTextEnv(TextTask):
    """A Meta-World v3 task with named observations and LLF-Bench style feedback."""

    def __init__(self, task: str = "reach", seed: int = 0, horizon: int | None = None,
                 action_mode: str = "relative", feedback_types: tuple[str, ...] | str = FEEDBACK_TYPES,
                 gain: float | None = None, max_substeps: int = 20, render_mode: str | None = None,
                 width: int = 480, height: int = 480, camera: str = "corner3") -> None:
        if task not in METAWORLD_TASKS:
            raise ValueError(f"unknown Meta-World task {task!r}; known: {', '.join(METAWORLD_TASKS)}")
        if action_mode not in ("relative", "absolute", "native"):
            raise ValueError("action_mode must be 'relative', 'absolute' or 'native'")
        if isinstance(feedback_types, str):
            feedback_types = tuple(t for t in feedback_types.replace(",", " ").split() if t)
        unknown = [t for t in feedback_types if t not in FEEDBACK_TYPES]
        if unknown:
            raise ValueError(f"unknown feedback types {unknown}; choose from {', '.join(FEEDBACK_TYPES)}")
        if render_mode is not None:
            ensure_headless_rendering()
        self.spec_task = METAWORLD_TASKS[task]
        self.task_name = task
        self.action_mode = action_mode
        self.feedback_types = tuple(feedback_types)
        self.gain = float(gain if gain is not None else self.spec_task.gain)
        self.max_substeps = int(max_substeps)
        self.horizon = int(horizon if horizon is not None else (500 if action_mode == "native" else 10))
        if self.horizon < 1 or self.max_substeps < 1:
            raise ValueError("horizon and max_substeps must be at least 1")
        self.render_mode = render_mode
        self.camera = camera
        self.action_size = 4
        self._env = _goal_observable(self.spec_task.env_name)(seed=seed, render_mode=render_mode)
        self._env.max_path_length = 10**9  # the horizon is ours; v3 refuses steps past its own
        if render_mode is not None:
            self._env.mujoco_renderer.width, self._env.mujoco_renderer.height = width, height
            self._env.width, self._env.height = width, height
        self.placement_seed = seed
        module = importlib.import_module("metaworld.policies")
        self._expert_policy = getattr(module, self.spec_task.policy)()
        self._raw: np.ndarray | None = None
        self._steps = 0
        self.instruction = self._instruction()
        self.task_hint = self.spec_task.hint
        self.success_criterion = (f"{self.spec_task.distance_of} within {self.spec_task.threshold} m of the goal "
                                  f"at any step (Meta-World's success flag)")
        self.last_info: dict = {}
        # set by video recording: called with a frame every ``frame_every`` simulator steps
        self.frame_hook = None
        self.frame_every = 2

    # -- description ----------------------------------------------------------------
    def _observation_keys(self) -> list[str]:
        obj = self.spec_task.object_name
        keys = ["hand_pos"]
        if self.spec_task.include_gripper:
            keys.append("gripper_distance_apart")
        keys.append(f"{obj}_pos")
        if self.spec_task.include_rotation:
            keys.append(f"{obj}_rot")
        keys.append("goal_pos")
        return keys

    def _instruction(self) -> str:
        keys = ", ".join(self._observation_keys())
        if self.action_mode == "native":
            action = ("The action is [dx, dy, dz, gripper]: a hand displacement per axis in [-1, 1] (about 1 cm "
                      "per unit per simulator step) and a gripper effort in [-1, 1] (+1 closes, -1 opens).")
        else:
            frame = "relative to the current hand position" if self.action_mode == "relative" else \
                "in absolute coordinates"
            action = (f"The action is a target pose [x, y, z, gripper]: x, y, z {frame} (meters), and gripper "
                      f"0 for open or 1 for closed. A P-controller moves the hand toward the target for up to "
                      f"{self.max_substeps} simulator steps.")
        return (f"Control a Sawyer robot arm to solve the Meta-World task {self.task_name}. "
                f"{self.spec_task.hint} The observation is a dict with keys {keys} (positions in meters, "
                f"x, y, z). {action} An episode has at most {self.horizon} steps.")

    # -- helpers ------------------------------------------------------------------------
    def _observation(self, raw: np.ndarray) -> dict[str, Any]:
        obj = self.spec_task.object_name
        observation: dict[str, Any] = {"hand_pos": rounded(raw[0:3])}
        if self.spec_task.include_gripper:
            observation["gripper_distance_apart"] = rounded(raw[3])
        observation[f"{obj}_pos"] = rounded(raw[4:7])
        if self.spec_task.include_rotation:
            observation[f"{obj}_rot"] = rounded(raw[7:11])
        observation["goal_pos"] = rounded(raw[36:39])
        return observation

    def expert_target(self, raw: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Where the scripted expert would move the hand next, and whether it would grip (0 / 1)."""
        raw = self._raw if raw is None else raw
        policy = self._expert_policy
        parsed = policy._parse_obs(raw.copy())
        if hasattr(policy, "_desired_pos"):
            target = np.asarray(policy._desired_pos(parsed), dtype=float)
        else:  # reach's expert heads straight for the goal
            target = np.asarray(parsed["goal_pos"], dtype=float)
        with warnings.catch_warnings():  # the experts warn when their gains saturate
            warnings.simplefilter("ignore")
            grab = float(policy.get_action(raw.copy())[3])
        return target, 1.0 if grab > 0.5 else 0.0

    # -- Gymnasium API --------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Reset to the placement of ``seed`` (or of the current placement seed)."""
        super().reset(seed=seed)
        if seed is not None and seed != self.placement_seed:
            self._env._last_rand_vec = np.array(placement(self.spec_task.env_name, seed))
            self._env._freeze_rand_vec = True
            self._env.seed(seed)
            self.placement_seed = seed
        raw, _ = self._env.reset()
        self._raw = raw
        self._steps = 0
        feedback = f"The episode starts. {self.task_hint}"
        self.last_info = {"feedback": feedback, "success": False, "placement_seed": self.placement_seed}
        return self._observation(raw), dict(self.last_info)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._raw is None:
            raise RuntimeError("call reset() before step()")
        values = check_action(action, 4)
        before = self._raw
        expert_pos, expert_grab = self.expert_target(before)
        success = False
        substeps = 0
        if self.action_mode == "native":
            native = np.clip(np.array(values), -1.0, 1.0)
            raw, reward, _, _, info = self._env.step(native)
            success = info["success"] > 0
            substeps = 1
        else:
            hand = before[0:3]
            target = hand + np.array(values[:3]) if self.action_mode == "relative" else np.array(values[:3])
            grip = 1.0 if values[3] > 0.5 else -1.0
            raw, reward, info = before, 0.0, {}
            for substeps in range(1, self.max_substeps + 1):  # noqa: B007 - substeps is reported
                delta = np.clip(self.gain * (target - raw[0:3]), -1.0, 1.0)
                raw, reward, _, _, info = self._env.step(np.append(delta, grip))
                success = success or info["success"] > 0
                if self.frame_hook is not None and substeps % self.frame_every == 0:
                    self.frame_hook(self.render())
                if np.linalg.norm(target - raw[0:3]) < 1e-4:
                    break
        self._raw = raw
        self._steps += 1
        gripper_value = values[3] if self.action_mode != "native" else (1.0 if values[3] > 0 else 0.0)
        feedback = self._feedback(float(reward), before, raw, expert_pos, expert_grab, gripper_value)
        truncated = self._steps >= self.horizon and not success
        self.last_info = {"feedback": feedback, "success": bool(success), "reward": float(reward),
                          "distance": float(info.get("obj_to_target", float("nan"))), "substeps": substeps,
                          "placement_seed": self.placement_seed}
        return self._observation(raw), float(reward), bool(success), truncated, dict(self.last_info)

    def _feedback(self, reward: float, before: np.ndarray, after: np.ndarray, expert_pos: np.ndarray,
                  expert_grab: float, gripper: float) -> str:
        parts = []
        if "r" in self.feedback_types:
            parts.append(f"Your reward for the latest step is {reward:.3f}.")
        moved = np.linalg.norm(after[0:3] - expert_pos) - np.linalg.norm(before[0:3] - expert_pos)
        if moved < -1e-3 and "hp" in self.feedback_types:
            parts.append("You moved closer to where you should go.")
        elif moved >= -1e-3 and "hn" in self.feedback_types:
            parts.append("You moved away from where you should go." if moved > 1e-3
                         else "You did not get closer to where you should go.")
        if "hn" in self.feedback_types:
            if expert_grab > 0.5 and gripper <= 0.5:
                parts.append("You should close the gripper.")
            elif expert_grab <= 0.5 and gripper > 0.5:
                parts.append("You should open the gripper.")
        if "fp" in self.feedback_types:
            target, grab = self.expert_target(after)
            where = ", ".join(f"{v:.3f}" for v in target)
            parts.append(f"You should go to [{where}, {grab:.0f}].")
        return " ".join(parts)

    def outcome_text(self, episode_return: float, success: bool) -> str:
        lines = [f"Success: {success}", f"Return: {episode_return:.3f}"]
        if not success:
            distance = self.last_info.get("distance")
            if distance is not None and distance == distance:
                lines.append(f"Final distance from {self.spec_task.distance_of} to the goal: {distance:.3f} m "
                             f"(success needs at most {self.spec_task.threshold} m).")
        return "\n".join(lines)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        renderer = self._env.mujoco_renderer
        if renderer.camera_id is None or renderer.camera_id == -1:
            import mujoco

            renderer.camera_id = mujoco.mj_name2id(self._env.model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
            fast_rendering(self._env.model, renderer)
        frame = self._env.render()
        if self.camera.startswith("corner"):
            frame = frame[::-1]  # Meta-World's corner cameras render upside down
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        self._env.close()
