"""Faults of the LLM service and of the trainer's own process: retried, recorded, resumed, never lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.llm_server import ScriptedLLMServer, answer
from trace_control.config import build_config
from trace_control.llm import LLMClient
from trace_control.runners import LocalRunner
from trace_control.runs import RunFolder
from trace_control.trace import name_scope
from trace_control.train import Trainer


def body(code: str) -> str:
    return "def controller(self, obs):\n" + "".join(f"    {line}\n" for line in code.splitlines())



def test_llm_faults_are_retried_then_recorded_and_the_run_goes_on(tmp_path):
    working = body("hand, goal = obs['hand_pos'], obs['goal_pos']\n"
                   "return [goal[0] - hand[0], goal[1] - hand[1], goal[2] - hand[2], 0.0]")
    script = [
        {"status": 429}, {"status": 429, "headers": {"Retry-After": "0"}}, answer({}),  # 1: retried, then fine
        {"status": 500}, {"status": 503}, answer({}),                                   # 2: retried, then fine
        {"raw": "this is not json"}, {"raw": "not json"}, {"raw": "{"},                 # 3: fails
        {"delay": 3.0}, {"delay": 3.0}, {"delay": 3.0},                                 # 4: hangs past the timeout
        {"drop": True}, {"drop": True}, {"drop": True},                                 # 5: connection dropped
        {"content": '{"reasoning": "cut", "suggestion": {"__code0": "def contr', "finish_reason": "length"},  # 6
        answer({"__code0": working}),                                                   # 7
    ]
    config, _ = build_config("reach", {"iterations": 7, "batch": 1, "validation_seeds": [1000], "test_seeds": [2000],
                                       "solved_batches": 0, "patience": 0})
    run = RunFolder.create(tmp_path, "reach", "trace")
    runner = LocalRunner("reach", config.env_kwargs())
    with ScriptedLLMServer(script) as server:
        llm = LLMClient(model="m", base_url=server.base_url, api_key="k", timeout=1.0, max_retries=2)
        with name_scope():
            result = Trainer(config, run, llm, runner=runner, progress=False, echo=lambda _: None).train()
    runner.close()
    log = run.read_log()
    errors = [r["llm_error"] for r in log[1:]]
    assert errors[0] is None and errors[1] is None, errors
    assert "could not be read" in errors[2], errors[2]
    assert "did not answer within the timeout" in errors[3], errors[3]
    assert "could not reach the LLM server" in errors[4], errors[4]
    assert errors[5] is None and any("cut off at the length limit" in p for p in log[6]["problems"])
    assert errors[6] is None and log[7]["update"]["__code0"] == working
    assert log[7]["validation"]["success_rate"] == 1.0
    assert result.results["status"] == "completed" and [r["iteration"] for r in log] == list(range(8))
    assert result.results["llm"]["failed_calls"] == 3


def test_consecutive_llm_failures_stop_the_run_cleanly(tmp_path):
    with ScriptedLLMServer(default={"status": 500}) as server:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        environment.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="k")
        done = subprocess.run([sys.executable, "-m", "trace_control.cli", "train", "reach", "--iterations", "10",
                               "--runs-dir", str(tmp_path), "--run-name", "down", "--validation-seeds", "1000",
                               "--in-process", "--no-progress", "--config", str(_config(tmp_path))],
                              env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "stopped after 2 consecutive failed LLM calls" in done.stdout
    results = json.loads((tmp_path / "down" / "results.json").read_text())
    assert results["status"] == "failed: every LLM call failed" and results["iterations_done"] == 2
    assert results["stopped"].startswith("stopped after 2")


def _config(folder: Path) -> Path:
    path = folder / "settings.json"
    path.write_text(json.dumps({"max_consecutive_failures": 2}))
    return path


# -- kill -9 at several points --------------------------------------------------------------------
def test_kill_at_several_points_then_resume_keeps_the_log_continuous(tmp_path):
    script = [{"content": answer({}), "delay": 0.4} for _ in range(40)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    run = tmp_path / "hard"
    with ScriptedLLMServer(script) as server:
        environment.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="k")
        first = [sys.executable, "-m", "trace_control.cli", "train", "reach", "--iterations", "8", "--runs-dir",
                 str(tmp_path), "--run-name", "hard", "--validation-seeds", "1000", "--test-seeds", "2000",
                 "--solved-batches", "0", "--patience", "0", "--no-progress"]
        resume = [sys.executable, "-m", "trace_control.cli", "train", "--resume", str(run), "--no-progress"]
        log = run / "log.jsonl"

        def lines() -> int:
            return len(log.read_text().splitlines()) if log.is_file() else 0

        def wait_for(condition, limit: float = 120.0) -> None:
            deadline = time.monotonic() + limit
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.02)

        # kill points: during the first iteration, during start-up, right after a log line, mid-iteration
        killed = []
        for attempt in range(4):
            process = subprocess.Popen(first if attempt == 0 else resume, env=environment,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seen = lines()
            if attempt == 0:
                wait_for(lambda: (run / "state.json").is_file())
                time.sleep(0.3)
            elif attempt == 1:
                time.sleep(0.5)
            elif attempt == 2:
                wait_for(lambda seen=seen: lines() > seen)
            else:
                wait_for(lambda seen=seen: lines() > seen)
                time.sleep(0.6)
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed.append(process.pid)
        assert (run / "state.json").is_file()
        time.sleep(1.0)
        for pid in killed:  # a killed trainer takes its jails with it
            strays = subprocess.run(["pgrep", "-f", f'"owner": {pid}}}'], capture_output=True, text=True).stdout
            assert not strays.strip(), pid
        done = subprocess.run(resume, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(9))
    state = json.loads((run / "state.json").read_text())
    assert state["iteration"] == 8 and json.loads((run / "results.json").read_text())["iterations_done"] == 8
    calls = (run / "llm_calls.jsonl").read_text().splitlines()
    assert len(calls) == 8 and all(json.loads(line) for line in calls)
    compile((run / "best_controller.py").read_text(), "best", "exec")
