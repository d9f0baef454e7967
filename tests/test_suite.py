"""Episodes, graphs, runners, export and video: the suite's path from a controller to its outcome."""

from __future__ import annotations

import ast
import os

import numpy as np
import pytest

from trace_control import controllers, envs
from trace_control.optim.problem import build_problem
from trace_control.policies import ControllerCode, InProcessPolicy, JailedPolicy
from trace_control.rollout import Observation, batch_rollout, graph_from_episode, run_episode
from trace_control.runners import LocalRunner, evaluate
from trace_control.sandbox.jail import USABLE_CPUS
from trace_control.trace import ExecutionError, bundle, name_scope, node

HELD_OUT = list(range(100, 110))
REACH = ("def controller(self, obs):\n    hand, goal = obs['hand_pos'], obs['goal_pos']\n"
         "    return [goal[0] - hand[0], goal[1] - hand[1], goal[2] - hand[2], 0.0]\n")


def instruction(env) -> str:
    return env.get_wrapper_attr("instruction")


def with_code(task: str, code: str):
    controller = controllers.starting_controller(task)
    controller.controller.parameter._set(code)
    return controller


def live_rollout(env, controller, seed):
    """The graph a live traced episode records (bundled ops in this process): the oracle for the rebuilt one."""
    from trace_control.rollout import STEP_DOC

    outcome = {}

    @bundle(description=STEP_DOC)
    def step(action):
        observation, reward, terminated, truncated, info = env.step(action)
        outcome.update(done=terminated or truncated, success=info["success"], progress=info.get("progress", ""))
        return Observation({k: np.asarray(v).tolist() for k, v in observation.items()}, info["feedback"])

    observation, info = env.reset(seed=seed)
    current = node(Observation({k: np.asarray(v).tolist() for k, v in observation.items()}, info["feedback"]),
                   name="obs")
    for _ in range(env.get_wrapper_attr("horizon")):
        try:
            current = step(controller(current))
        except ExecutionError as error:
            return error.exception_node
        if outcome["done"]:
            break
    return current


@pytest.mark.parametrize("task", ["reach", "push", "pick-place", "pusher"])
def test_expert_controllers_succeed_on_held_out_placements(task):
    runner = LocalRunner(task, jailed=task == "pusher")  # Pusher's expert is the longest code: run it jailed
    report = evaluate(runner, ControllerCode.from_module(controllers.expert_controller(task)), HELD_OUT)
    runner.close()
    assert report.success_rate >= 0.8, report.line()
    low, high = report.success_interval
    assert 0.0 <= low <= report.success_rate <= high <= 1.0


@pytest.mark.parametrize("task", list(controllers.STARTING))
def test_naive_starting_controllers_do_not_succeed(task):
    runner = LocalRunner(task, jailed=False)
    report = evaluate(runner, ControllerCode.from_module(controllers.starting_controller(task)), HELD_OUT[:3])
    runner.close()
    assert report.success_rate == 0.0, report.line()


def test_graph_rebuilt_from_a_recorded_episode_matches_the_live_traced_one():
    env = envs.make("push")
    controller = controllers.starting_controller("push")
    reports = []
    with name_scope():
        output = live_rollout(env, controller, seed=5)
        output.backward("Success: False")
        reports.append(build_problem(controller.parameters(), instruction(env)).render())
    for parameter in controller.parameters():
        parameter.zero_feedback()
    policy = InProcessPolicy()
    policy.load(ControllerCode.from_module(controller))
    episode = run_episode(env, policy, seed=5, keep_steps=True)
    with name_scope():
        rebuilt = graph_from_episode(episode, controller)
        rebuilt.output.backward("Success: False")
        reports.append(build_problem(controller.parameters(), instruction(env)).render())
    assert reports[0] == reports[1]
    assert reports[0].count(" = step(action=controller") == 10


def test_controller_errors_and_bad_actions_become_feedback_with_the_failing_line():
    env = envs.make("reach")
    policy = InProcessPolicy()
    controller = with_code("reach", "def controller(self, obs):\n    hand = obs['hand']\n    return [0, 0, 0, 0]\n")
    policy.load(ControllerCode.from_module(controller))
    episode = run_episode(env, policy, seed=0, keep_steps=True)
    assert "(KeyError)" in episode.outcome and ">> 2 |     hand = obs['hand']" in episode.outcome
    with name_scope():
        rollout = graph_from_episode(episode, controller)
    rollout.output.backward(rollout.feedback)
    assert controller.controller.parameter.feedback
    for bad, reason in [("[0, 0, 0]", "had 3 values, expected 4"), ("[float('nan')] * 4", "NaN"),
                        ("['a', 0, 0, 0]", "expected a number")]:
        policy.load(ControllerCode.from_module(with_code("reach", f"def controller(self, obs):\n    return {bad}\n")))
        episode = run_episode(env, policy, seed=0)
        assert reason in episode.outcome and "could not be executed" in episode.outcome, episode.outcome


def test_jailed_and_in_process_episodes_are_identical():
    steering = ("def controller(self, obs):\n    error = obs['fingertip_to_target']\n"
                "    return [-3.0 * error[0] + 0.1, 2.0 * error[1] - 0.2]\n")
    code = ControllerCode.from_module(with_code("reacher", steering))
    results = []
    for policy in (InProcessPolicy(), JailedPolicy()):
        env = envs.make("reacher")
        policy.load(code)
        results.append([run_episode(env, policy, seed=seed, keep_steps=True) for seed in (1, 2)])
        policy.close()
    for here, jailed in zip(*results):
        assert here.episode_return == jailed.episode_return and here.success == jailed.success
        assert [s.action for s in here.steps] == [s.action for s in jailed.steps]


def test_evaluation_is_identical_with_one_and_two_workers():
    code = ControllerCode.from_module(controllers.expert_controller("push"))
    reports = []
    for workers in (1, 2):  # the first pins this thread to one CPU: the workers must not inherit it
        runner = LocalRunner("push", workers=workers)
        reports.append(evaluate(runner, code, HELD_OUT[:4]))
        if workers == 2 and len(USABLE_CPUS) >= 2:
            cpus = [os.sched_getaffinity(worker.process.pid) for worker in runner._processes]
            assert cpus[0] != cpus[1] and all(len(one_cpu) == 1 for one_cpu in cpus), cpus
        runner.close()
    one, two = reports
    assert one.episodes == two.episodes and one.success_rate == two.success_rate
    assert [e["seed"] for e in two.episodes] == HELD_OUT[:4]


def test_a_spare_jail_starts_when_a_batch_ends_and_serves_the_next_version():
    runner = LocalRunner("reacher")
    versions = [ControllerCode.from_module(with_code("reacher", f"def controller(self, obs):\n    return [{g}, 0.0]\n"))
                for g in (0.1, 0.2)]
    runner.run(versions[0], [1])
    policy = runner._station.policy
    spare = policy.spare
    assert spare is not None and spare.alive() and spare is not policy.jail
    episode = runner.run(versions[1], [1])[0]
    assert policy.jail is spare and episode.length == 50 and not episode.error
    runner.close()
    assert not spare.alive()


def test_a_batch_shows_every_placement_and_traces_the_most_informative_failure():
    runner = LocalRunner("reach", jailed=False)
    controller = controllers.starting_controller("reach")
    episodes = runner.run(ControllerCode.from_module(controller), [1, 2, 3], keep_steps=True)
    runner.close()
    with name_scope():
        rollout = batch_rollout(episodes, controller)
    assert [line.split(":")[0] for line in rollout.feedback.splitlines()[1:4]] == \
        ["placement 1", "placement 2", "placement 3"]
    worst = min(episodes, key=lambda e: e.episode_return)
    assert f"Placement {worst.seed} is traced in full" in rollout.feedback
    assert rollout.output.data == {1: "failure", 2: "failure", 3: "failure"}
    rollout.output.backward(rollout.feedback)
    report = build_problem(controller.parameters(), "reach").render()
    assert report.count(" = step(action=controller") == worst.length


def test_the_export_holds_exactly_the_code_that_was_checked_and_run(tmp_path):
    code = REACH.replace("    return", "    # a comment\u2003with odd spacing\n    return")
    controller = with_code("pusher", "def controller(self, obs):\n    s = '''a\n  b  \n'''\n    return [0.0] * 7\n")
    controller.gain._set(float("nan"))
    exported = ControllerCode.from_module(controller)
    module = ast.parse(exported.source)
    (name, first, text), = exported.functions
    found = next(item for item in module.body if isinstance(item, ast.FunctionDef) and item.name == name)
    assert ast.dump(found) == ast.dump(ast.parse(text).body[0])
    assert exported.source.split("\n")[first - 1:first - 1 + text.count("\n")] == text.split("\n")[:-1]
    namespace: dict = {}
    exec(compile(exported.source, "x", "exec"), namespace)
    loaded = namespace["load"]()
    assert np.isnan(loaded.gain) and loaded.controller({}) == [0.0] * 7
    reach = with_code("reach", code)
    path = tmp_path / "reach.py"
    reach.export(path)
    assert ast.dump(ast.parse(path.read_text())) == ast.dump(ast.parse(ControllerCode.from_module(reach).source))


def test_exported_file_evaluates_like_the_module_in_the_jail(tmp_path):
    controller = controllers.expert_controller("reach")
    path = tmp_path / "learned.py"
    controller.export(path)
    runner = LocalRunner("reach")
    from_file = evaluate(runner, ControllerCode.from_file(path), HELD_OUT[:3])
    from_module = evaluate(runner, ControllerCode.from_module(controller), HELD_OUT[:3])
    runner.close()
    assert from_file.episodes == from_module.episodes and from_file.success_rate == 1.0


def test_video_is_written_and_not_blank(tmp_path):
    import imageio.v2 as imageio

    from trace_control.video import record_video

    recording = record_video(ControllerCode.from_module(controllers.expert_controller("reach")), "reach",
                             tmp_path / "reach.mp4", seeds=[0, 1], layout="grid", width=160, height=160)
    reader = imageio.get_reader(recording.path)
    frames = [reader.get_data(i) for i in (0, 5)]
    assert frames[0].shape[1] == 320 and frames[0].std() > 10
    assert not np.array_equal(frames[0], frames[1])  # the arm moves
    assert [e.success for e in recording.episodes] == [True, True]
    gif = record_video(ControllerCode.from_module(controllers.starting_controller("inverted-pendulum")),
                       "inverted-pendulum", tmp_path / "pendulum.gif", seeds=[0], width=96, height=96,
                       env_kwargs={"horizon": 20})
    assert gif.path.stat().st_size > 1000 and gif.frames > 5
