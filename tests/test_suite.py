"""The task suite: environments with text feedback, controllers, rollouts, evaluation, video."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from trace_control import controllers, envs
from trace_control.evaluation import ControllerSpec, evaluate
from trace_control.optim.problem import build_problem
from trace_control.rollout import graph_from_episode, run_episode, traced_rollout
from trace_control.trace import name_scope

HELD_OUT = list(range(100, 110))


@pytest.mark.parametrize("name", list(envs.TASKS))
def test_every_task_id_makes_and_steps_with_feedback(name):
    info = envs.TASKS[name]
    env = gym.make(info.env_id)
    observation, first = env.reset(seed=1)
    assert isinstance(observation, dict) and observation
    for value in observation.values():
        assert isinstance(value, (float, list))
    task = env.unwrapped
    assert task.instruction and task.task_hint and task.success_criterion
    _, reward, terminated, truncated, step_info = env.step([0.0] * task.action_size)
    assert isinstance(step_info["feedback"], str) and step_info["feedback"]
    assert isinstance(step_info["success"], bool) and isinstance(reward, float)
    env.close()


def test_unknown_task_is_a_clear_error():
    with pytest.raises(envs.UnknownTaskError, match="Did you mean reach"):
        envs.resolve("reahc")


def test_meta_world_feedback_follows_the_situation():
    env = envs.make("reach", feedback_types="r hp hn fp")
    observation, _ = env.reset(seed=3)
    hand, goal = np.array(observation["hand_pos"]), np.array(observation["goal_pos"])
    toward = list((goal - hand) * 0.5) + [0.0]
    _, _, _, _, info = env.step(toward)
    assert "You moved closer to where you should go." in info["feedback"]
    assert "Your reward for the latest step is" in info["feedback"]
    assert "You should go to [" in info["feedback"]
    away = list((hand - goal) * 0.5) + [1.0]
    _, _, _, _, info = env.step(away)
    assert "You moved away from where you should go." in info["feedback"]
    assert "You should open the gripper." in info["feedback"]
    only_reward = envs.make("reach", feedback_types=("r",))
    only_reward.reset(seed=3)
    assert only_reward.step(toward)[4]["feedback"].startswith("Your reward") and \
        "You should" not in only_reward.step(toward)[4]["feedback"]


def test_gymnasium_feedback_names_events():
    env = envs.make("inverted-pendulum")
    env.reset(seed=0)
    texts = []
    for _ in range(200):
        _, _, terminated, _, info = env.step([3.0])
        texts.append(info["feedback"])
        if terminated:
            break
    assert terminated and texts[-1].startswith("The pole fell at step") and "0.2 rad limit" in texts[-1]
    reacher = envs.make("reacher")
    observation, _ = reacher.reset(seed=0)
    _, _, _, _, info = reacher.step([1.0, 1.0])
    assert "m from the target" in info["feedback"]


def test_placements_are_reproducible_and_match_meta_world_seeding():
    from trace_control.envs.metaworld_tasks import _goal_observable

    env = envs.make("push")
    for seed in (4, 9, 4):
        observation, _ = env.reset(seed=seed)
        reference, _ = _goal_observable("push-v3")(seed=seed).reset()
        assert observation["puck_pos"] == [round(float(v), 3) for v in reference[4:7]]
        assert observation["goal_pos"] == [round(float(v), 3) for v in reference[36:39]]


@pytest.mark.parametrize("task", ["reach", "push", "pick-place"])
def test_expert_following_controller_succeeds_on_held_out_seeds(task):
    report = evaluate(controllers.expert_controller(task), task, HELD_OUT)
    assert report.success_rate >= 0.8, report.line()


@pytest.mark.parametrize("task", list(controllers.STARTING))
def test_naive_starting_controllers_do_not_succeed(task):
    report = evaluate(controllers.starting_controller(task), task, HELD_OUT[:3])
    assert report.success_rate == 0.0, report.line()


def test_traced_rollout_records_controller_and_step_ops_and_reaches_the_code():
    env = envs.make("reach")
    controller = controllers.expert_controller("reach")
    with name_scope():
        rollout = traced_rollout(env, controller, seed=3)
    assert rollout.episode.success and rollout.feedback.startswith("Success: True")
    chain, current = [], rollout.output
    while current.parents:
        chain.append(current.py_name)
        current = next(p for p in current.parents if p.parents or p.py_name.startswith("obs"))
    assert list(reversed(chain)) == ["controller0", "step0", "controller1", "step1"][: len(chain)]
    assert "feedback" in rollout.output.data.__trace_render__()
    rollout.output.backward(rollout.feedback)
    code = controller.controller.parameter
    assert code.feedback and code.feedback[0].feedback.startswith("Success: True")
    assert [n.py_name for n in code.feedback[0].nodes][:3] == ["__code0", "controller0", "step0"]


def test_graph_rebuilt_from_a_recorded_episode_matches_the_traced_one():
    env = envs.make("push")
    controller = controllers.starting_controller("push")
    reports = []
    with name_scope():
        rollout = traced_rollout(env, controller, seed=5)
        rollout.output.backward(rollout.feedback)
        reports.append(build_problem(controller.parameters(), env.instruction).render())
    for parameter in controller.parameters():
        parameter.zero_feedback()
    op = controller.controller
    episode = run_episode(env, op.plain_function(), seed=5, keep_steps=True, describe_error=op.describe)
    with name_scope():
        rebuilt = graph_from_episode(episode, controller)
        rebuilt.output.backward(rebuilt.feedback)
        reports.append(build_problem(controller.parameters(), env.instruction).render())
    assert reports[0] == reports[1]
    assert reports[0].count(" = step(action=controller") == 10


def test_controller_errors_and_bad_actions_become_feedback():
    env = envs.make("reach")
    controller = controllers.starting_controller("reach")
    controller.controller.parameter._set(
        "def controller(self, obs):\n    hand = obs['hand']\n    return [0, 0, 0, 0]\n")
    with name_scope():
        rollout = traced_rollout(env, controller, seed=0)
    assert "(KeyError)" in rollout.feedback and ">> 2 |     hand = obs['hand']" in rollout.feedback
    rollout.output.backward(rollout.feedback)
    assert controller.controller.parameter.feedback
    for bad, reason in [("[0, 0, 0]", "had 3 values, expected 4"), ("[float('nan')] * 4", "NaN"),
                        ("['a', 0, 0, 0]", "expected a number")]:
        controller.controller.parameter._set(f"def controller(self, obs):\n    return {bad}\n")
        with name_scope():
            rollout = traced_rollout(env, controller, seed=0)
        assert reason in rollout.feedback and "could not be executed" in rollout.feedback


def test_evaluation_is_identical_with_one_and_two_workers(tmp_path):
    controller = controllers.expert_controller("push")
    one = evaluate(controller, "push", HELD_OUT[:4], workers=1)
    two = evaluate(controller, "push", HELD_OUT[:4], workers=2)
    assert one.episodes == two.episodes and one.success_rate == two.success_rate
    assert [e["seed"] for e in two.episodes] == HELD_OUT[:4]


def test_exported_controller_evaluates_like_the_module(tmp_path):
    controller = controllers.expert_controller("reach")
    path = tmp_path / "learned.py"
    controller.export(path)
    from_file = evaluate(ControllerSpec.from_file(path), "reach", HELD_OUT[:3])
    from_module = evaluate(controller, "reach", HELD_OUT[:3])
    assert from_file.episodes == from_module.episodes and from_file.success_rate == 1.0
    loaded = controllers.load_exported(path)
    assert len(loaded({"hand_pos": [0, 0, 0], "puck_pos": [0, 0, 0], "goal_pos": [1, 2, 3]})) == 4


def test_video_is_written_and_not_blank(tmp_path):
    import imageio.v2 as imageio

    from trace_control.video import record_video

    out = record_video(controllers.expert_controller("reach"), "reach", tmp_path / "reach.mp4", seeds=[0, 1],
                       layout="grid", width=160, height=160)
    reader = imageio.get_reader(out)
    frames = [reader.get_data(i) for i in (0, 5)]
    assert frames[0].shape[1] == 320 and frames[0].std() > 10
    assert not np.array_equal(frames[0], frames[1])  # the arm moves
    gif = record_video(controllers.expert_controller("inverted-pendulum"), "inverted-pendulum",
                       tmp_path / "pendulum.gif", seeds=[0], width=96, height=96,
                       env_kwargs={"horizon": 20})
    assert gif.stat().st_size > 1000
