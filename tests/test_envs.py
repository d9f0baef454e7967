"""The task suite as Gymnasium environments: spaces, checker, wrappers, vector envs, feedback."""

from __future__ import annotations

import inspect
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import FlattenObservation, RecordEpisodeStatistics, TimeLimit

from trace_control import controllers, envs

HELD_OUT = list(range(100, 110))

# Warnings Gymnasium's checker gives its own MuJoCo environments too: unbounded observations,
# torque ranges that are not [-1, 1], and checking a wrapped environment.
EXPECTED_WARNINGS = ("infinity", "symmetric and normalized space", "is different from the unwrapped version")


def run_episode(env, policy, seed):
    """(success, return, last info) of one episode of ``policy`` on ``env``."""
    observation, info = env.reset(seed=seed)
    success, episode_return = False, 0.0
    for _ in range(env.horizon):
        observation, reward, terminated, truncated, info = env.step(policy(observation))
        success, episode_return = success or info["success"], episode_return + reward
        if terminated or truncated:
            break
    return success, episode_return, info


@pytest.mark.parametrize("name", list(envs.TASKS))
def test_every_registered_id_passes_the_gymnasium_checker(name):
    env = gym.make(envs.TASKS[name].env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True, skip_close_check=True)
    unexpected = [str(w.message) for w in caught if not any(text in str(w.message) for text in EXPECTED_WARNINGS)]
    assert not unexpected, unexpected
    observation, _ = env.reset(seed=3)
    assert set(observation) == set(env.observation_space.spaces)
    assert all(value.dtype == np.float64 for value in observation.values())
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and isinstance(info["success"], bool)
    assert info["feedback"] and info["progress"].endswith(".")
    for attribute in ("instruction", "task_hint", "success_criterion", "horizon", "task_name"):
        assert env.get_wrapper_attr(attribute), attribute
    assert env.get_wrapper_attr("task_name") == name
    env.close()


@pytest.mark.parametrize("name", ["push", "half-cheetah", "reacher"])
def test_vector_envs_and_standard_wrappers_run(name):
    env_id = envs.TASKS[name].env_id
    vector = gym.make_vec(env_id, num_envs=4, vectorization_mode="sync")
    observations, _ = vector.reset(seed=0)
    assert all(value.shape[0] == 4 for value in observations.values())
    observations, rewards, _, _, infos = vector.step(vector.action_space.sample())
    assert rewards.shape == (4,) and len(infos["feedback"]) == 4
    vector.close()
    wrapped = RecordEpisodeStatistics(TimeLimit(FlattenObservation(gym.make(env_id)), max_episode_steps=3))
    flat, _ = wrapped.reset(seed=0)
    assert flat.ndim == 1 and flat.dtype == np.float64
    for _ in range(3):
        _, _, terminated, truncated, info = wrapped.step(wrapped.action_space.sample())
        if terminated or truncated:
            break
    assert "episode" in info


def test_observations_keep_full_precision_and_are_new_arrays():
    env = envs.make("reach")
    first, _ = env.reset(seed=1)
    second, _ = env.reset(seed=1)
    assert any(value != round(value, 3) for value in first["hand_pos"])
    assert first["hand_pos"] is not second["hand_pos"] and np.array_equal(first["hand_pos"], second["hand_pos"])


def test_placements_match_meta_world_seeding_and_unseeded_resets_draw_new_ones():
    from trace_control.envs.metaworld_tasks import _goal_observable

    for name in ("push", "stick-pull"):
        env = envs.make(name)
        env_name = envs.resolve(name).name + "-v3"
        for seed in (4, 9, 4):
            observation, _ = env.reset(seed=seed)
            reference, _ = _goal_observable(env_name)(seed=seed).reset()
            assert np.allclose(observation["goal_pos"], reference[36:39], atol=1e-9)
            assert np.allclose(env.unwrapped_metaworld._get_obs(), reference, atol=1e-6)
    env = envs.make("push")
    env.reset(seed=4)
    drawn = [env.reset()[0]["goal_pos"] for _ in range(2)]
    env.reset(seed=4)
    again = [env.reset()[0]["goal_pos"] for _ in range(2)]
    assert not np.array_equal(drawn[0], drawn[1]) and np.array_equal(drawn[0], again[0])


def test_task_sets_expand_to_short_names():
    assert len(envs.TASK_SETS["mt50"]) == 50 and len(envs.TASK_SETS["mt10"]) == 10
    assert len(envs.TASK_SETS["gym"]) == 11
    names = envs.expand_tasks("mt10, reacher,reach")
    assert names[:3] == ["reach", "push", "pick-place"] and names[-1] == "reacher" and len(names) == 11
    assert envs.expand_tasks(["trace_control/HalfCheetahText-v5", "paper"]) == ["half-cheetah", "reach", "push",
                                                                                "pick-place"]
    with pytest.raises(envs.UnknownTaskError, match="Did you mean reach"):
        envs.expand_tasks("mt10,reahc")
    with pytest.raises(envs.UnknownTaskError, match="Did you mean mt10"):
        envs.resolve("mt1O")


def test_meta_world_feedback_follows_the_situation():
    env = envs.make("reach", feedback_types="r hp hn fp")
    observation, _ = env.reset(seed=3)
    toward = list((observation["goal_pos"] - observation["hand_pos"]) * 0.5) + [0.0]
    _, _, _, _, info = env.step(toward)
    assert "You moved closer to where you should go." in info["feedback"]
    assert "Your reward for the latest step is" in info["feedback"] and "You should go to [" in info["feedback"]
    away = list((observation["hand_pos"] - observation["goal_pos"]) * 0.5) + [1.0]
    _, _, _, _, info = env.step(away)
    assert "You moved away from where you should go." in info["feedback"]
    assert "You should open the gripper." in info["feedback"]
    assert info["progress"].startswith("The distance from the hand to the goal: ")
    assert info["progress"].endswith("(success needs at most 0.05 m).")
    only_reward = envs.make("reach", feedback_types=("r",))
    only_reward.reset(seed=3)
    text = only_reward.step(toward)[4]["feedback"]
    assert text.startswith("Your reward") and "You should" not in text
    _, _, _, _, info = only_reward.step([5.0, 0.0, 0.0, 0.0])
    assert "clipped to the allowed range at index 0" in info["feedback"]


def test_gymnasium_feedback_names_events():
    env = envs.make("inverted-pendulum")
    env.reset(seed=0)
    for _ in range(200):
        _, _, terminated, _, info = env.step([3.0])
        if terminated:
            break
    assert terminated and info["feedback"].startswith("The pole fell at step") and "0.2 rad limit" in info["feedback"]
    assert info["progress"].startswith("The pole fell at step") and not info["success"]
    hopper = envs.make("hopper", horizon=5)
    hopper.reset(seed=0)
    for _ in range(5):
        _, _, _, truncated, info = hopper.step([0.0, 0.0, 0.0])
    assert truncated and "Forward velocity" in info["feedback"]
    assert "success needs at least 19 over 5 steps" in info["progress"]


def test_the_time_limit_owns_the_horizon():
    env = envs.make("reacher", horizon=7)
    assert env.horizon == 7 and env.spec.max_episode_steps == 7
    env.reset(seed=0)
    truncated = [env.step([0.0, 0.0])[3] for _ in range(7)]
    assert truncated == [False] * 6 + [True]
    assert env.unwrapped.model.nu == 2


def test_pendulum_camera_follows_the_cart():
    env = envs.make("inverted-pendulum", render_mode="rgb_array", width=64, height=64)
    env.reset(seed=0)
    first = env.render()
    for _ in range(30):
        env.step([3.0])
    env.render()
    camera = env.unwrapped.mujoco_renderer._get_viewer("rgb_array").cam
    assert first.shape == (64, 64, 3) and first.std() > 5
    assert camera.lookat[0] == pytest.approx(float(env.unwrapped.data.qpos[0])) and abs(camera.lookat[0]) > 0.05


def test_pusher_jacobian_drives_the_tip_to_points_near_the_object():
    env = envs.make("pusher")
    errors = []
    for seed in range(100, 105):
        observation, _ = env.reset(seed=seed)
        target = observation["object_pos"] + np.array([0.0, 0.0, 0.05])
        for _ in range(50):
            jacobian = observation["tip_jacobian"]
            step = jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + 0.0025 * np.eye(3),
                                                target - observation["tip_pos"])
            observation, *_ = env.step(np.clip(20.0 * step - 2.0 * observation["joint_velocities"], -2, 2))
        errors.append(np.linalg.norm(observation["tip_pos"] - target))
    assert np.median(errors) < 0.02, errors


@pytest.mark.parametrize("task", ["reach", "push", "pick-place"])
def test_reference_experts_solve_held_out_placements(task):
    env, expert = envs.make(task), controllers.expert_controller(task)
    policy = expert.controller.plain_function()
    assert all(run_episode(env, policy, seed)[0] for seed in HELD_OUT)


@pytest.mark.parametrize("task", ["door-open", "half-cheetah", "pusher", "reacher"])
def test_starting_controllers_fail_with_a_progress_sentence(task):
    env = envs.make(task, horizon=100) if envs.resolve(task).family == "gymnasium" else envs.make(task)
    controller = controllers.starting_controller(task)
    policy = controller.controller.plain_function()
    success, _, info = run_episode(env, policy, seed=100)
    assert not success and "success needs" in info["progress"]


@pytest.mark.parametrize("task", list(envs.TASKS))
def test_starting_controller_docstring_names_every_observation_key(task):
    controller = controllers.starting_controller(task)
    source = controller.controller.parameter.data
    for field in envs.interface(task).fields:
        assert field.name in source, field.name
    assert source.rstrip() == inspect.getsource(type(controller).controller.fn).rstrip() or task in (
        "reacher", "pusher", "inverted-pendulum", "inverted-double-pendulum")


def test_generated_controller_exports_and_runs_without_the_suite(tmp_path):
    controller = controllers.starting_controller("drawer-open")
    path = tmp_path / "drawer_open.py"
    controller.export(path)
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # our own export: trusted here
    assert namespace["load"]().controller({"hand_pos": np.zeros(3)}) == [0.0, 0.0, 0.0, 0.0]
    assert "handle_pos" in path.read_text()
    assert controllers.import_class(controllers.STARTING["drawer-open"]) is type(controller)
