"""Meta-World v3 tasks in the Trace paper's protocol (the LLF-Bench Meta-World setting).

The controller returns a target pose ``[x, y, z, gripper]`` (relative to the hand by
default, or absolute); a P-controller moves the hand toward it for up to
``max_substeps`` simulator steps, with the gain the task's scripted expert uses. An
episode is ``horizon`` such steps (10 by default) and ends on success. ``reset(seed=s)``
gives exactly the placement Meta-World builds for seed ``s``; ``reset()`` draws a new
placement from the environment's random generator. Feedback types follow LLF-Bench:
``r`` the reward, ``hp`` / ``hn`` whether the hand moved closer to / away from where the
scripted expert would go (and whether the gripper should open or close), ``fp`` the
expert's next target. ``action_mode="native"`` exposes Meta-World's own action (hand
displacement in [-1, 1] per axis and gripper effort) with 500 steps.
"""

from __future__ import annotations

import types
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from trace_control.envs.base import (
    Interface,
    check_action,
    clip_to,
    dict_space,
    ensure_headless_rendering,
    fast_rendering,
    instruction_text,
)
from trace_control.envs.metaworld_catalog import METAWORLD_TASKS, MetaWorldTask, observation_layout

FEEDBACK_TYPES = ("r", "hp", "hn", "fp")
ACTION_MODES = ("relative", "absolute", "native")
NATIVE_HORIZON = 500
PROTOCOL_HORIZON = 10


def _goal_observable(env_name: str) -> Any:
    import metaworld  # noqa: F401  (registers the environments)
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{env_name}-goal-observable"]


def action_text(action_mode: str, max_substeps: int = 20) -> str:
    """What the action means in ``action_mode``."""
    if action_mode == "native":
        return ("[dx, dy, dz, gripper]: a hand displacement per axis in [-1, 1] (about 1 cm per unit per simulator "
                "step) and a gripper effort in [-1, 1] (+1 closes, -1 opens).")
    frame = "relative to the current hand position, each in [-1, 1]" if action_mode == "relative" else \
        "in absolute coordinates"
    return (f"[x, y, z, gripper]: a target for the hand, x, y, z {frame} (meters), and gripper 0 for open or 1 for "
            f"closed. A P-controller moves the hand toward the target for up to {max_substeps} simulator steps.")


def interface(name: str, action_mode: str = "relative", max_substeps: int = 20) -> Interface:
    """What a controller for Meta-World task ``name`` reads and returns (no environment is built)."""
    return Interface(tuple(slot.field for slot in observation_layout(name)), action_text(action_mode, max_substeps), 4)


class ExpertReader:
    """Where a task's scripted Meta-World policy would move the hand, and with what gain and grip.

    The policies compute their action with ``move(hand, to_xyz, p)``; a copy of
    ``get_action`` whose ``move`` records its arguments reads the target and gain the
    policy chose, for every task alike.
    """

    def __init__(self, env_name: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        self.policy = ENV_POLICY_MAP[env_name]()
        original = type(self.policy).get_action
        self._recorded: dict[str, Any] = {}
        namespace = {**original.__globals__, "move": self._record_move}
        self._get_action = types.FunctionType(original.__code__, namespace, original.__name__,
                                              original.__defaults__, original.__closure__)

    def _record_move(self, from_xyz: np.ndarray, to_xyz: np.ndarray, p: float) -> np.ndarray:
        target = np.array(from_xyz, dtype=np.float64)
        if np.ndim(to_xyz) == 0:  # handle-pull's policy names only the height it wants
            target[2] = float(to_xyz)
        else:
            target = np.array(to_xyz, dtype=np.float64)
        self._recorded.update(target=target, gain=float(p))
        return p * (to_xyz - from_xyz)

    def read(self, raw: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(target xyz, gain, grip 0 / 1) of the policy on the raw observation ``raw``."""
        self._recorded.clear()
        action = self._get_action(self.policy, raw.copy())
        return self._recorded["target"], self._recorded["gain"], 1.0 if float(action[3]) > 0.5 else 0.0


class MetaWorldTextEnv(gym.Env):
    """A Meta-World v3 task with named observations and LLF-Bench style feedback.

    Settings: ``task`` (short name), ``horizon``, ``action_mode`` (relative / absolute /
    native), ``feedback_types`` (subset of ``FEEDBACK_TYPES``, or a string "r hp hn fp"),
    ``gain`` (P-controller gain; default the scripted expert's), ``max_substeps``,
    ``render_mode`` ("rgb_array"), ``width``, ``height``, ``camera``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, task: str = "reach", horizon: int | None = None, action_mode: str = "relative",
                 feedback_types: tuple[str, ...] | str = FEEDBACK_TYPES, gain: float | None = None,
                 max_substeps: int = 20, render_mode: str | None = None, width: int = 480, height: int = 480,
                 camera: str = "corner3") -> None:
        if task not in METAWORLD_TASKS:
            raise ValueError(f"unknown Meta-World task {task!r}; known: {', '.join(METAWORLD_TASKS)}")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {', '.join(ACTION_MODES)}")
        if isinstance(feedback_types, str):
            feedback_types = tuple(t for t in feedback_types.replace(",", " ").split() if t)
        unknown = [t for t in feedback_types if t not in FEEDBACK_TYPES]
        if unknown:
            raise ValueError(f"unknown feedback types {unknown}; choose from {', '.join(FEEDBACK_TYPES)}")
        if render_mode is not None:
            ensure_headless_rendering()
        self.task: MetaWorldTask = METAWORLD_TASKS[task]
        self.task_name = task
        self.action_mode = action_mode
        self.feedback_types = tuple(feedback_types)
        self.max_substeps = int(max_substeps)
        self.horizon = int(horizon if horizon is not None else
                           (NATIVE_HORIZON if action_mode == "native" else PROTOCOL_HORIZON))
        if self.horizon < 1 or self.max_substeps < 1:
            raise ValueError("horizon and max_substeps must be at least 1")
        self.render_mode = render_mode
        self.camera = camera
        self._env = _goal_observable(self.task.env_name)(seed=0, render_mode=render_mode)
        self._env.max_path_length = 10**9  # the horizon is ours; v3 refuses steps past its own
        if render_mode is not None:
            self._env.mujoco_renderer.width, self._env.mujoco_renderer.height = width, height
            self._env.width, self._env.height = width, height
        self._layout = observation_layout(task)
        self.observation_space = dict_space([slot.field for slot in self._layout])
        self.action_space = self._action_space()
        self._expert = ExpertReader(self.task.env_name)
        self._raw, _ = self._env.reset()
        _, expert_gain, _ = self._expert.read(self._raw)
        self.gain = float(gain if gain is not None else expert_gain)
        self.placement_seed = 0
        self._placements: dict[int, np.ndarray] = {0: np.array(self._env._last_rand_vec)}
        self._steps = 0
        self._started = False
        self.task_hint = self.task.hint
        self.success_criterion = self.task.success_criterion
        self.instruction = instruction_text(
            f"Control a Sawyer robot arm to solve the Meta-World task {task}.",
            interface(task, action_mode, self.max_substeps), f"An episode has at most {self.horizon} steps.",
            self.task_hint, self.success_criterion)
        # set by video recording: called with a frame every ``frame_every`` simulator steps
        self.frame_hook = None
        self.frame_every = 2

    def _action_space(self) -> spaces.Box:
        if self.action_mode == "native":
            return spaces.Box(-1.0, 1.0, (4,), dtype=np.float64)
        if self.action_mode == "relative":
            return spaces.Box(np.array([-1.0, -1.0, -1.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0]), dtype=np.float64)
        low, high = self._env.mocap_low, self._env.mocap_high
        return spaces.Box(np.append(low, 0.0), np.append(high, 1.0), dtype=np.float64)

    @property
    def unwrapped_metaworld(self) -> Any:
        """The Meta-World environment underneath (``.model``, ``.data``)."""
        return self._env

    # -- observation and placement --------------------------------------------------------
    def _observation(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        return {slot.field.name: slot.read(raw) for slot in self._layout}

    def _rand_vec(self, seed: int) -> np.ndarray:
        """The object / goal placement Meta-World draws when built with ``seed``.

        Built like ``ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[...](seed=seed)`` does: one reset
        drawing from the global numpy generator seeded with ``seed`` (restored after).
        """
        if seed not in self._placements:
            saved = np.random.get_state()
            np.random.seed(seed)
            try:
                self._env._freeze_rand_vec = False
                self._env.reset()
            finally:
                self._env._freeze_rand_vec = True
                np.random.set_state(saved)
            self._placements[seed] = np.array(self._env._last_rand_vec)
        return self._placements[seed]

    # -- Gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Reset to the placement of ``seed``, or to one drawn from ``np_random`` without a seed."""
        super().reset(seed=seed)
        placement_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        self._env._last_rand_vec = self._rand_vec(placement_seed)
        self._env.seed(placement_seed)
        self.placement_seed = placement_seed
        mujoco.mj_resetData(self._env.model, self._env.data)  # every reset starts from the same state
        self._raw, _ = self._env.reset()
        self._steps = 0
        self._started = True
        return self._observation(self._raw), {"feedback": f"The episode starts. {self.task_hint}", "success": False,
                                              "progress": self._progress(self._raw, float("nan"), False),
                                              "placement_seed": placement_seed}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        values, clip_note = clip_to(check_action(action, 4), self.action_space)
        before = self._raw
        expert_pos, _, expert_grab = self._expert.read(before)
        success, substeps = False, 0
        if self.action_mode == "native":
            raw, reward, _, _, info = self._env.step(values)
            success, substeps = info["success"] > 0, 1
        else:
            target = before[0:3] + values[:3] if self.action_mode == "relative" else values[:3]
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
        gripper = values[3] if self.action_mode != "native" else (1.0 if values[3] > 0 else 0.0)
        feedback = self._feedback(float(reward), before, raw, expert_pos, expert_grab, gripper) + clip_note
        distance = float(info.get("obj_to_target", float("nan")))
        truncated = self._steps >= self.horizon and not success
        step_info = {"feedback": feedback, "success": bool(success), "progress": self._progress(raw, distance, success),
                     "distance": distance, "substeps": substeps, "placement_seed": self.placement_seed}
        return self._observation(raw), float(reward), bool(success), bool(truncated), step_info

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
            target, _, grab = self._expert.read(after)
            where = ", ".join(f"{v:.3f}" for v in target)
            parts.append(f"You should go to [{where}, {grab:.0f}].")
        return " ".join(parts)

    def _progress(self, raw: np.ndarray, distance: float, success: bool) -> str:
        if success:
            return f"Solved: {self.success_criterion}."
        if self.task.quantity is not None and distance == distance:
            return (f"{self.task.quantity[0].upper()}{self.task.quantity[1:]}: {distance:.3f} m (success needs at "
                    f"most {self.task.threshold} m).")
        observed = self._observation(raw)
        thing = next(name for name in observed if name not in ("hand_pos", "gripper_distance_apart"))
        where = ", ".join(f"{v:.3f}" for v in observed[thing])
        goal = ", ".join(f"{v:.3f}" for v in observed["goal_pos"])
        return f"Not solved: success needs {self.task.success or self.success_criterion}. {thing} is [{where}], " \
            f"goal_pos is [{goal}]."

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        renderer = self._env.mujoco_renderer
        if renderer.camera_id is None or renderer.camera_id == -1:
            renderer.camera_id = mujoco.mj_name2id(self._env.model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
            fast_rendering(self._env.model, renderer)
        frame = self._env.render()
        if self.camera.startswith("corner"):
            frame = frame[::-1]  # Meta-World's corner cameras render upside down
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        self._env.close()
