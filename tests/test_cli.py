"""The ``trace-control`` command: the main job end to end, and every command off its happy path."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.llm_server import ScriptedLLMServer, answer
from trace_control.cli import main

BROKEN = "def controller(self, obs):\n    hand = obs['hand_position']\n    return [0, 0, 0, 0]\n"
WORKING = ("def controller(self, obs):\n    hand, goal = obs['hand_pos'], obs['goal_pos']\n"
           "    return [goal[0] - hand[0], goal[1] - hand[1], goal[2] - hand[2], 0.0]\n")
RUN_FILES = ["config.json", "log.jsonl", "llm_calls.jsonl", "state.json", "results.json", "best_controller.py",
             "last_controller.py", "learning_curve.png", "prompts/001.txt"]
FAST = ["--validation-seeds", "1000-1004", "--test-seeds", "2000-2004", "--no-progress"]
SECRET = "sk-test-not-a-secret-1234"


def cli(args: list[str], env: dict | None = None, timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environment.update(env or {})
    done = subprocess.run([sys.executable, "-m", "trace_control.cli", *args], env=environment, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def run_here(args: list[str], capsys) -> tuple[int, str, str]:
    """The command in this process (for input checks that stop before any work)."""
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's own checks
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def llm_env(server: ScriptedLLMServer) -> dict:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": SECRET, "TRACE_CONTROL_MODEL": "gpt-4o-mini"}


def deterministic(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "seconds"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run on reach: broken code first, then a working controller; it stops once solved."""
    runs = tmp_path_factory.mktemp("runs")
    settings = runs / "settings.json"
    settings.write_text(json.dumps({"memory_size": 3, "batch": 3}))
    with ScriptedLLMServer([answer({"__code0": BROKEN}, "use the hand position"),
                            answer({"__code:0": WORKING}, "move to the goal")]) as server:
        done = cli(["train", "reach", "--iterations", "6", "--runs-dir", str(runs), "--run-name", "first",
                    "--config", str(settings), *FAST], llm_env(server))
    return runs / "first", done


def test_training_records_the_error_applies_the_fix_and_writes_every_file(trained):
    run, done = trained
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[1]["update"]["__code0"] == BROKEN
    assert all(item["error"] for item in log[2]["batch"]) and "(KeyError) 'hand_position'" in log[2]["feedback"]
    assert ">> 2 |     hand = obs['hand_position']" in log[2]["feedback"]
    assert log[2]["update"]["__code0"] == WORKING and log[2]["validation"]["success_rate"] == 1.0
    assert all(item["success"] for item in log[3]["batch"]) and len(log[3]["batch"]) == 3
    prompt = (run / "prompts" / "002.txt").read_text()
    assert "#Feedback" in prompt and "(KeyError) 'hand_position'" in prompt
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["success_rate"] == 1.0 and results["best_iteration"] == 2
    assert results["stopped"].startswith("solved") and results["status"] == "completed"
    assert results["llm"]["total_tokens"] > 0 and results["env_steps"]["train"] > 0
    assert "unprivileged uid 65534" in results["isolation"] and "seccomp on" in results["isolation"]
    assert "controller code runs in: a bubblewrap jail: unprivileged uid 65534" in done.stdout
    assert "own user, PID, NET, MNT" in done.stdout and "iter   2/6" in done.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["memory_size"] == 3 and config["sources"]["memory_size"].startswith("config file")
    assert config["settings"]["batch"] == 3 and config["sources"]["iterations"] == "command line"
    written = "".join(p.read_text() for p in run.rglob("*") if p.suffix in (".json", ".jsonl", ".txt", ".py"))
    assert SECRET not in written and SECRET not in done.stdout + done.stderr


def test_run_folder_files_share_one_mode(trained):
    run, _ = trained
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in run.iterdir() if path.is_file()}
    assert len(set(modes.values())) == 1, modes


def test_best_controller_evaluates_the_same_in_a_fresh_process(trained):
    run, _ = trained
    results = json.loads((run / "results.json").read_text())
    done = cli(["evaluate", str(run / "best_controller.py"), "--task", "reach", "--seeds", "2000-2004", "--json"])
    report = json.loads(done.stdout)
    assert report["success_rate"] == results["test"]["success_rate"]
    assert report["return_mean"] == pytest.approx(results["test"]["return_mean"])
    trusted = cli(["evaluate", str(run), "--episodes", "5", "--in-process"])
    assert "reach: success 1.00 (95% CI" in trusted.stdout and "without the jail" in trusted.stderr


def test_replay_reproduces_the_log_with_the_server_stopped(trained, tmp_path):
    run, _ = trained
    cli(["train", "--replay", str(run), "--runs-dir", str(tmp_path), "--run-name", "replayed", "--no-progress"])
    original = [deterministic(json.loads(line)) for line in (run / "log.jsonl").read_text().splitlines()]
    replayed = [deterministic(json.loads(line)) for line in
                (tmp_path / "replayed" / "log.jsonl").read_text().splitlines()]
    assert replayed == original
    for name in ("001.txt", "002.txt"):
        assert (tmp_path / "replayed" / "prompts" / name).read_text() == (run / "prompts" / name).read_text()


def test_a_replay_that_leaves_its_recording_stops_at_the_first_miss(trained, tmp_path):
    run, _ = trained
    other = cli(["train", "push", "--replay", str(run), "--runs-dir", str(tmp_path)], check=False)
    assert other.returncode == 2 and "the recording is of reach, not push" in other.stderr
    changed = cli(["train", "--replay", str(run), "--runs-dir", str(tmp_path), "--run-name", "changed", "--batch",
                   "2", "--no-progress"], check=False)
    assert changed.returncode == 1 and "the replay no longer matches its recording" in changed.stderr
    assert "a replay needs the same task, settings and code as the recorded run" in changed.stderr
    assert not (tmp_path / "changed" / "results.json").exists()


def test_report_writes_the_curve_the_page_and_a_jailed_video(trained):
    run, _ = trained
    done = cli(["report", str(run)])
    html = (run / "report.html").read_text()
    assert (run / "learning_curve.png").stat().st_size > 5000
    assert "Learning curve" in html and "move to the goal" in html and "hand_position" in html
    assert "<span class='add'>" in html and "best_controller.mp4" in html
    assert "<pre>placement" in html  # the error block keeps its lines
    assert (run / "best_controller.mp4").stat().st_size > 1000, done.stderr


def test_resume_after_kill_continues_with_the_earlier_log_intact(tmp_path):
    script = [{"content": answer({"__code0": BROKEN}), "delay": 0.2}] + \
        [{"content": answer({"__code0": BROKEN + f"    # {i}\n"}), "delay": 1.5} for i in range(10)]
    with ScriptedLLMServer(script) as server:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        environment.update(llm_env(server))
        process = subprocess.Popen([sys.executable, "-m", "trace_control.cli", "train", "reach", "--iterations", "5",
                                    "--runs-dir", str(tmp_path), "--run-name", "killed", "--patience", "0",
                                    "--validate-every", "5", *FAST], env=environment,
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
                    "--out", str(tmp_path / "grid"), "--no-progress", "--validation-seeds", "1000-1002",
                    "--test-seeds", "2000-2002"], llm_env(server))
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    cells = {c["method"]: c for c in summary["cells"]}
    assert set(cells) == {"trace", "opro"} and all(c["seeds"] == 1 for c in cells.values())
    assert cells["trace"]["test_success_mean"] == 1.0 and cells["trace"]["test_success_interval"][1] == 1.0
    assert (tmp_path / "grid" / "learning_curves.png").is_file() and "| reach |" in done.stdout


def test_record_prints_outcomes_and_a_failing_controller_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def load():\n    return lambda obs: 1 / 0\n")
    done = cli(["record", str(bad), "--task", "reach", "--out", str(tmp_path / "bad.gif"), "--size", "64"],
               check=False)
    assert done.returncode == 1 and "(ZeroDivisionError) division by zero" in done.stdout
    assert "every episode ended in a controller error" in done.stderr
    good = cli(["record", "expert", "--task", "trace_control/MetaWorld-push-v3", "--out", str(tmp_path / "p.mp4"),
                "--size", "64"])
    assert "seed   100  success" in good.stdout and (tmp_path / "p.mp4").stat().st_size > 1000


def test_evaluate_accepts_what_a_user_will_try(capsys):
    code, out, _ = run_here(["evaluate", "expert", "--task", "trace_control/MetaWorld-push-v3", "--episodes", "2",
                             "--in-process"], capsys)
    assert code == 0 and "push: success 1.00" in out
    for reference in ("trace_control.controllers.pusher:PusherController", "trace_control.controllers.pusher",
                      "trace_control.controllers.starting:ReachController"):
        task = "reach" if "Reach" in reference else "pusher"
        code, out, _ = run_here(["evaluate", reference, "--task", task, "--episodes", "1"], capsys)
        assert code == 0 and f"{task}: success 0.00" in out
    code, _, err = run_here(["evaluate", "trace_control/controllers/pusher.py", "--task", "pusher"], capsys)
    assert code == 2 and "is not an exported controller (it has no load() function)" in err
    assert "PusherController" in err and len(err.strip().splitlines()) == 1


def test_bad_input_is_one_clear_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    typed = tmp_path / "typed.json"
    cases = [
        (["train", "reahc"], "unknown task 'reahc'"),
        (["train", "reach", "--iterations", "0"], "iterations must be at least 1"),
        (["train", "reach", "--validation-seeds", "1-x"], "cannot read --validation-seeds"),
        (["train", "reach", "--train-seeds", "1000-1010"], "share placement 1000"),
        (["train", "reach", "--config", str(tmp_path / "missing.json")], "cannot read the config file"),
        (["train", "reach", "--config", str(broken)], "not valid JSON"),
        (["train", "reach", "--mask", "Nonsense"], "unknown section"),
        (["evaluate", "nothing.py", "--task", "reach"], "no controller file"),
        (["evaluate", "expert", "--task", "reach", "--seeds", "-5"], "cannot read --seeds"),
        (["evaluate", "starting", "--task", "reacher", "--seeds", "-1"], "cannot read --seeds"),
        (["evaluate", "expert", "--task", "reach", "--seeds", "4294967296"], "between 0 and 4294967295"),
        (["evaluate", "expert", "--task", "reach", "--seeds", ""], "no seeds"),
        (["record", "expert", "--task", "reach", "--size", "0"], "--size must be between"),
        (["record", "expert", "--task", "reach", "--fps", "0", "--out", "x.gif"], "--fps must be between"),
        (["record", "expert", "--task", "reach", "--out", str(a_file / "v.mp4")], "is a file, not a folder"),
        (["record", "expert", "--task", "reach", "--out", str(tmp_path)], "is a folder"),
        (["record", "expert", "--task", "reach", "--out", "video"], "must end in .mp4 or .gif"),
        (["record", "expert", "--task", "reach", "--out", "/proc/v.mp4"], "cannot write in /proc"),
        (["train", "reach"], "no LLM is configured"),
    ]
    for settings, message in [({"iterations": True}, "iterations must be an integer"),
                              ({"mask": "Inputs"}, "mask must be a list of texts"),
                              ({"feedback_types": ["r", "hp"]}, "feedback_types must be text")]:
        path = tmp_path / f"{len(cases)}.json"
        path.write_text(json.dumps(settings))
        cases.append((["train", "reach", "--config", str(path)], message))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for args, message in cases:
        code, out, err = run_here(args, capsys)
        assert code == 2, (args, out, err)
        assert message in err and err.startswith("trace-control: error: "), (args, err)
    assert "--replay runs/<run>" in run_here(["train", "reach"], capsys)[2]
    code, _, err = run_here(["experiment", "--tasks", "reach"], capsys)
    assert code == 2 and "no LLM is configured" in err and "--replay" not in err
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    code, _, err = run_here(["train", "reach", "--runs-dir", str(a_file / "runs")], capsys)
    assert code == 2 and "cannot create the run folder" in err
    code, _, err = run_here(["experiment", "--tasks", "reach", "--out", str(a_file / "grid")], capsys)
    assert code == 2 and "cannot create the experiment folder" in err
    assert not list(tmp_path.glob("runs*")) and not typed.exists()


def test_list_describes_a_task_in_full(capsys):
    code, out, _ = run_here(["list", "push"], capsys)
    assert code == 0 and "instruction: Control a Sawyer robot arm" in out and "hint: " in out
    code, out, _ = run_here(["list"], capsys)
    assert code == 0 and "reach" in out and "protocols" in out


def test_experiments_folder_is_ignored_by_git():
    ignored = (Path(__file__).parent.parent / ".gitignore").read_text().split()
    assert "experiments/" in ignored and "runs/" in ignored
