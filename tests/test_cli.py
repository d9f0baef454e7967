"""The main job end to end, through the ``trace-control`` command and a scripted LLM server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.llm_server import ScriptedLLMServer, answer

BROKEN = "def controller(self, obs):\n    hand = obs['hand_position']\n    return [0, 0, 0, 0]\n"
WORKING = ("def controller(self, obs):\n    hand, goal = obs['hand_pos'], obs['goal_pos']\n"
           "    return [goal[0] - hand[0], goal[1] - hand[1], goal[2] - hand[2], 0.0]\n")
RUN_FILES = ["config.json", "log.jsonl", "llm_calls.jsonl", "state.json", "results.json", "best_controller.py",
             "last_controller.py", "learning_curve.png", "prompts/001.txt"]
FAST = ["--eval-seeds", "100-104", "--no-progress"]


def cli(args: list[str], env: dict | None = None, timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environment.update(env or {})
    done = subprocess.run([sys.executable, "-m", "trace_control.cli", *args], env=environment, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def llm_env(server: ScriptedLLMServer) -> dict:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-not-a-secret",
            "TRACE_CONTROL_MODEL": "gpt-4o-mini"}


def deterministic(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "seconds"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-iteration run on reach: broken code first, then a working controller."""
    runs = tmp_path_factory.mktemp("runs")
    with ScriptedLLMServer([answer({"__code0": BROKEN}, "use the hand position"),
                            answer({"__code:0": WORKING}, "move to the goal")]) as server:
        done = cli(["train", "reach", "--iterations", "3", "--runs-dir", str(runs), "--run-name", "first", *FAST],
                   llm_env(server))
    return runs / "first", done


def test_training_records_the_error_applies_the_fix_and_writes_every_file(trained):
    run, done = trained
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [0, 1, 2, 3]
    assert log[1]["update"]["__code0"] == BROKEN
    assert log[2]["train"]["error"] and "(KeyError) 'hand_position'" in log[2]["feedback"]
    assert ">> 2 |     hand = obs['hand_position']" in log[2]["feedback"]
    assert log[2]["update"]["__code0"] == WORKING
    assert log[2]["eval"]["success_rate"] >= 0.9 and log[3]["train"]["success"]
    prompt = (run / "prompts" / "002.txt").read_text()
    assert "#Feedback" in prompt and "(KeyError) 'hand_position'" in prompt
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["success_rate"] >= 0.9 and results["best_iteration"] == 2
    assert results["llm"]["calls"] == 3 and results["llm"]["total_tokens"] > 0
    assert results["llm"]["cost_usd"] is not None and results["env_steps"]["train"] > 0
    assert "iter   2/3" in done.stdout and "tokens" in done.stdout
    assert "sk-test-not-a-secret" not in "".join(p.read_text() for p in run.rglob("*") if p.suffix in
                                                  (".json", ".jsonl", ".txt", ".py"))


def test_best_controller_evaluates_the_same_in_a_fresh_process(trained):
    run, _ = trained
    results = json.loads((run / "results.json").read_text())
    done = cli(["evaluate", str(run / "best_controller.py"), "--task", "reach", "--seeds", "100-104", "--json"])
    report = json.loads(done.stdout)
    assert report["success_rate"] == results["test"]["success_rate"]
    assert report["return_mean"] == pytest.approx(results["test"]["return_mean"])
    isolated_free = cli(["evaluate", str(run), "--episodes", "5", "--in-process"])
    assert "reach: success 1.00 over 5 seeds" in isolated_free.stdout


def test_replay_reproduces_the_log_with_the_server_stopped(trained, tmp_path):
    run, _ = trained
    cli(["train", "--replay", str(run), "--runs-dir", str(tmp_path), "--run-name", "replayed", "--no-progress"])
    original = [deterministic(json.loads(line)) for line in (run / "log.jsonl").read_text().splitlines()]
    replayed_log = (tmp_path / "replayed" / "log.jsonl").read_text()
    replayed = [deterministic(json.loads(line)) for line in replayed_log.splitlines()]
    assert replayed == original
    for name in ("001.txt", "002.txt", "003.txt"):
        assert (tmp_path / "replayed" / "prompts" / name).read_text() == (run / "prompts" / name).read_text()


def test_report_writes_the_curve_and_the_html_page(trained):
    run, _ = trained
    done = cli(["report", str(run)])
    html = (run / "report.html").read_text()
    assert (run / "learning_curve.png").stat().st_size > 5000
    assert "Learning curve" in html and "move to the goal" in html and "hand_position" in html
    assert "<span class='add'>" in html and "best_controller.mp4" in html
    assert (run / "best_controller.mp4").stat().st_size > 1000, done.stderr


def test_resume_after_kill_continues_with_the_earlier_log_intact(tmp_path):
    script = [{"content": answer({"__code0": BROKEN}), "delay": 0.2}] + \
        [{"content": answer({}), "delay": 1.5} for _ in range(10)]
    with ScriptedLLMServer(script) as server:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        environment.update(llm_env(server))
        process = subprocess.Popen([sys.executable, "-m", "trace_control.cli", "train", "reach", "--iterations", "5",
                                    "--runs-dir", str(tmp_path), "--run-name", "killed", "--in-process",
                                    "--eval-every", "5", *FAST], env=environment,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = tmp_path / "killed" / "log.jsonl"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if log.is_file() and len(log.read_text().splitlines()) >= 3:  # iterations 0, 1, 2 finished
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
        assert 3 <= len(before) < 6
        cli(["train", "--resume", str(tmp_path / "killed"), "--no-progress"], llm_env(server))
    after = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iteration"] for r in after] == [0, 1, 2, 3, 4, 5]
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    kept = [r for r in before if r["iteration"] <= state["iteration"]]
    assert after[:len(kept)] == kept
    assert (tmp_path / "killed" / "results.json").is_file()


def test_experiment_runs_a_tiny_grid(tmp_path):
    with ScriptedLLMServer([answer({"__code0": WORKING})] * 2) as server:
        done = cli(["experiment", "--tasks", "reach", "--methods", "trace,opro", "--seeds", "0", "--iterations", "1",
                    "--out", str(tmp_path / "grid"), "--no-progress", "--in-process"], llm_env(server))
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    cells = {c["method"]: c for c in summary["cells"]}
    assert set(cells) == {"trace", "opro"} and all(c["seeds"] == 1 for c in cells.values())
    assert cells["trace"]["test_success_mean"] == 1.0
    assert (tmp_path / "grid" / "learning_curves.png").is_file() and "| reach |" in done.stdout


def test_bad_input_is_one_clear_line_before_any_work(tmp_path):
    cases = [
        (["train", "reahc"], "unknown task 'reahc'"),
        (["train", "reach", "--iterations", "0"], "iterations must be at least 1"),
        (["train", "reach", "--eval-seeds", "1-x"], "cannot read seeds"),
        (["train", "reach", "--train-seed", "100"], "must be held out"),
        (["train", "reach", "--config", str(tmp_path / "missing.json")], "cannot read the config file"),
        (["train", "reach", "--mask", "Nonsense"], "unknown section"),
        (["evaluate", "nothing.py", "--task", "reach"], "no controller file"),
        (["train", "reach"], "no LLM is configured"),
    ]
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    cases.append((["train", "reach", "--config", str(broken)], "not valid JSON"))
    for args, message in cases:
        done = cli(args, {"OPENAI_API_KEY": "k"} if "no LLM" not in message else {}, timeout=120, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert not Path("runs").exists() or not any(Path("runs").glob("reahc*"))
