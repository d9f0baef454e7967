"""The training loop through its Python surface: best-controller keeping, candidates, async tracing."""

from __future__ import annotations

import asyncio
import json

from tests.llm_server import ScriptedLLMServer, answer
from trace_control.config import build_config
from trace_control.llm import LLMClient
from trace_control.runners import InProcessRunner
from trace_control.runs import RunFolder
from trace_control.trace import name_scope, node
from trace_control.train import Trainer

WORKING = ("def controller(self, obs):\n    hand, goal = obs['hand_pos'], obs['goal_pos']\n"
           "    return [goal[0] - hand[0], goal[1] - hand[1], goal[2] - hand[2], 0.0]\n")
WORSE = "def controller(self, obs):\n    return [0.0, 0.0, 0.0, 0.0]\n"


def train(tmp_path, script, **settings):
    config = build_config("reach", {"eval_seeds": [100, 101], "isolated": False, **settings})
    run = RunFolder.create(tmp_path, "reach", "trace")
    runner = InProcessRunner("reach", config.env_kwargs())
    with ScriptedLLMServer(script) as server, name_scope():
        llm = LLMClient(model="gpt-4o-mini", base_url=server.base_url, api_key="k")
        result = Trainer(config, run, llm, runner=runner, progress=False).train()
    runner.close()
    return run, result


def test_the_best_controller_is_never_replaced_by_a_worse_one(tmp_path):
    run, result = train(tmp_path, [answer({"__code0": WORKING}), answer({"__code0": WORSE})], iterations=2)
    log = run.read_log()
    assert log[1]["eval"]["success_rate"] == 1.0 and log[2]["eval"]["success_rate"] == 0.0
    assert "goal[0] - hand[0]" in (run.path / "best_controller.py").read_text()
    assert "goal" not in (run.path / "last_controller.py").read_text().split("def controller")[1].split("def ")[0]
    assert result.results["best_iteration"] == 1 and result.results["test"]["success_rate"] == 1.0


def test_candidates_are_tried_and_the_best_applied(tmp_path):
    script = [answer({"__code0": WORSE}), answer({"__code0": WORKING}), answer({})]
    run, _ = train(tmp_path, script, iterations=1, num_candidates=3)
    record = run.read_log()[1]
    assert record["update"]["__code0"] == WORKING
    tried = [c for c in record["candidates"] if "success" in c]
    assert [c["success"] for c in tried] == [False, True] and record["candidates"][2]["skipped"]
    assert json.loads((run.path / "results.json").read_text())["test"]["success_rate"] == 1.0


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
