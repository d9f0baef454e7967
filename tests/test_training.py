"""The training loop through its Python surface: batches, honest splits, stop rules, budgets."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.llm_server import ScriptedLLMServer, answer
from trace_control import envs
from trace_control.config import build_config
from trace_control.llm import LLMClient
from trace_control.placements import PlacementSampler
from trace_control.runners import LocalRunner
from trace_control.runs import RunFolder
from trace_control.trace import name_scope, node
from trace_control.train import Trainer

WORKING = ("def controller(self, obs):\n    hand, goal = obs['hand_pos'], obs['goal_pos']\n"
           "    return [goal[0] - hand[0], goal[1] - hand[1], goal[2] - hand[2], 0.0]\n")
WORSE = "def controller(self, obs):\n    return [0.0, 0.0, 0.0, 0.0]\n"
FAST = {"validation_seeds": [1000, 1001, 1002], "test_seeds": [2000, 2001, 2002]}


def train(tmp_path, script, jailed: bool = False, **settings):
    config, sources = build_config("reach", {**FAST, "in_process": not jailed, **settings})
    run = RunFolder.create(tmp_path, "reach", "trace")
    runner = LocalRunner("reach", config.env_kwargs(), jailed=jailed)
    with ScriptedLLMServer(script) as server, name_scope():
        llm = LLMClient(model="gpt-4o-mini", base_url=server.base_url, api_key="k")
        result = Trainer(config, run, llm, runner=runner, progress=False, echo=lambda _: None,
                         sources=sources).train()
        prompts = [request["messages"][-1]["content"] for request in server.requests]
    runner.close()
    return run, result, prompts


def test_the_best_controller_is_chosen_on_validation_and_never_replaced_by_a_worse_one(tmp_path):
    run, result, _ = train(tmp_path, [answer({"__code0": WORKING}), answer({"__code0": WORSE})], iterations=2,
                           solved_batches=0)
    log = run.read_log()
    assert log[1]["validation"]["success_rate"] == 1.0 and log[2]["validation"]["success_rate"] == 0.0
    assert "goal[0] - hand[0]" in (run.path / "best_controller.py").read_text()
    assert "goal[0]" not in (run.path / "last_controller.py").read_text()
    results = result.results
    assert results["best_iteration"] == 1 and results["selected_on"] == "validation"
    assert results["test"]["success_rate"] == 1.0 and results["last_iteration_test"]["success_rate"] == 0.0
    low, high = results["test"]["success_interval"]
    assert low < 1.0 == high and results["test_seeds"] == 3


def test_candidates_are_tried_on_the_batch_and_the_best_applied(tmp_path):
    script = [answer({"__code0": WORSE}), answer({"__code0": WORKING}), answer({})]
    run, _, _ = train(tmp_path, script, iterations=1, num_candidates=3, batch=2)
    record = run.read_log()[1]
    assert record["update"]["__code0"] == WORKING
    tried = [c for c in record["candidates"] if "successes" in c]
    assert [c["successes"] for c in tried] == [0, 2] and record["candidates"][2]["skipped"]


def test_a_controller_fitted_to_one_placement_is_caught_and_a_general_one_chosen(tmp_path):
    """The first answer hard-codes the goal of the first training placement; the batch shows the others fail."""
    first = PlacementSampler(list(range(1000)), 4, seed=0).draw()[0]
    env = envs.make("reach")
    goal = [round(float(v), 4) for v in env.reset(seed=first)[0]["goal_pos"]]
    env.close()
    fitted = ("def controller(self, obs):\n    hand = obs['hand_pos']\n"
              f"    return [{goal[0]} - hand[0], {goal[1]} - hand[1], {goal[2]} - hand[2], 0.0]\n")
    run, result, prompts = train(tmp_path, [answer({"__code0": fitted}), answer({"__code0": WORKING})],
                                 iterations=4)
    log = run.read_log()
    second_batch = [item["seed"] for item in log[2]["batch"]]
    failed = [item["seed"] for item in log[2]["batch"] if not item["success"]]
    assert first in second_batch and failed and first not in failed
    assert all(f"placement {seed}: failure" in prompts[1] for seed in failed)
    assert log[1]["validation"]["success_rate"] < 1.0 and log[2]["validation"]["success_rate"] == 1.0
    assert result.results["best_iteration"] == 2 and result.results["test"]["success_rate"] == 1.0


def test_a_solved_run_stops_early_and_spends_at_most_two_calls_after_convergence(tmp_path):
    run, result, prompts = train(tmp_path, [answer({"__code0": WORKING})], iterations=30)
    log = run.read_log()
    converged = next(r["iteration"] for r in log if (r.get("validation") or {}).get("success_rate") == 1.0)
    calls_after = sum(1 for r in log if r["iteration"] > converged and "changed" in r)
    assert result.results["stopped"].startswith("solved") and calls_after <= 2
    assert len(prompts) == converged + calls_after and log[-1]["iteration"] < 30


def test_a_token_budget_ends_the_run_with_its_results(tmp_path):
    run, result, prompts = train(tmp_path, [], iterations=30, max_tokens=1500, patience=0)
    assert result.results["stopped"].startswith("token budget reached")
    assert result.results["llm"]["total_tokens"] >= 1500 and len(prompts) < 30
    assert json.loads((run.path / "results.json").read_text())["test"]["success_rate"] == 0.0


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    same_behaviour = [answer({"__code0": WORSE + f"    # attempt {i}\n"}) for i in range(10)]
    _, result, prompts = train(tmp_path, same_behaviour, iterations=30, patience=2)
    assert result.results["stopped"].startswith("no validation improvement") and len(prompts) == 2


def test_the_papers_protocol_rolls_out_one_fixed_placement_with_the_papers_feedback(tmp_path):
    run, _, prompts = train(tmp_path, [], iterations=3, protocol="paper")
    log = run.read_log()
    seeds = [[item["seed"] for item in record["batch"]] for record in log[1:]]
    assert seeds == [seeds[0]] * 3 and len(seeds[0]) == 1
    assert log[1]["feedback"].startswith("Success: False\nReturn: ")
    assert "#Feedback\nSuccess: False\nReturn:" in prompts[0]


def test_failing_placements_come_first_and_solved_batches_are_replaced():
    sampler = PlacementSampler(list(range(100)), 3, seed=1)
    first = sampler.draw()
    sampler.record({first[0]: True, first[1]: False, first[2]: True})
    second = sampler.draw()
    assert second[0] == first[1] and not set(second[1:]) & set(first)
    sampler.record(dict.fromkeys(second, True))
    assert not set(sampler.draw()) & set(first + second)
    fixed = PlacementSampler(list(range(100)), 2, seed=1, resample=False)
    assert fixed.draw() == fixed.draw()


def test_settings_keep_what_the_user_set_and_say_where_each_came_from(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"optimizer": "opro", "memory_size": 3, "mask": ["Inputs"]}))
    config, sources = build_config("reach", {}, path)
    assert (config.optimizer, config.memory_size, config.mask, config.method) == ("opro", 3, ["Inputs"], "custom")
    assert sources["memory_size"] == f"config file {path}" and sources["iterations"].startswith("task defaults")
    config, sources = build_config("reach", {"method": "nomem", "mask": ["Code"]})
    assert (config.memory_size, config.mask, sources["memory_size"]) == (0, ["Code"], "method nomem")


@pytest.mark.parametrize("settings, words", [
    ({"iterations": True}, "iterations must be an integer"),
    ({"mask": "Inputs"}, "mask must be a list of texts"),
    ({"feedback_types": "r,hp,xx"}, "unknown feedback type 'xx'"),
    ({"validation_seeds": [5], "train_seeds": [5, 6]}, "share placement 5"),
    ({"test_seeds": "9-3"}, "runs backwards"),
    ({"batch": 5, "train_seeds": [1, 2]}, "larger than the training pool"),
])
def test_bad_settings_are_one_clear_error(settings, words):
    from trace_control.config import ConfigError

    with pytest.raises(ConfigError, match=words):
        build_config("reach", settings)


def test_asyncio_tasks_trace_separate_graphs():
    async def build(tag: int):
        with name_scope():
            value = node(float(tag), name="x", trainable=True)
            for _ in range(50):
                value = value + 1
                await asyncio.sleep(0)
            return value

    async def main():
        return await asyncio.gather(*(build(tag) for tag in range(3)))

    results = asyncio.run(main())
    for tag, value in enumerate(results):
        assert value.data == tag + 50 and value.name == "add:49"
        root = value
        while root.parents:
            root = root.parents[0]
        assert root.data == float(tag)
