"""Run folders handed over by someone else: they choose no code, no server, no way out, no markup.

Each test crafts a run folder the way an attacker would and drives the command a user would
run on it (resume, replay, report). The command either does its job safely or stops with one
line; nothing outside the folder changes, and the user's key reaches no server the folder names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.llm_server import ScriptedLLMServer, answer

KEY = "sk-run-folder-canary-77"


def cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "trace_control.cli", *args], env=environment, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small finished run (two iterations on reach) to copy and craft."""
    runs = tmp_path_factory.mktemp("runs")
    with ScriptedLLMServer([answer({})] * 4) as server:
        done = cli(["train", "reach", "--iterations", "2", "--batch", "1", "--solved-batches", "0", "--runs-dir",
                    str(runs), "--run-name", "base", "--validation-seeds", "1000", "--test-seeds", "2000",
                    "--no-progress"], {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "k"})
    assert done.returncode == 0, done.stderr
    return runs / "base"


def crafted(finished: Path, tmp_path: Path, settings: dict | None = None, state: dict | None = None) -> Path:
    run = tmp_path / "crafted"
    run.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-r", str(finished), str(run)], check=True)
    config = json.loads((run / "config.json").read_text())
    config["settings"].update(settings or {})
    (run / "config.json").write_text(json.dumps(config))
    saved = json.loads((run / "state.json").read_text())
    saved.update({"iteration": 1, "stopped": None, **(state or {})})
    (run / "state.json").write_text(json.dumps(saved))
    return run


def test_a_run_folder_cannot_send_the_key_to_a_server_it_names(finished, tmp_path):
    with ScriptedLLMServer([answer({})] * 4) as elsewhere, ScriptedLLMServer([answer({})] * 4) as chosen:
        run = crafted(finished, tmp_path, {"base_url": elsewhere.base_url})
        done = cli(["train", "--resume", str(run), "--no-progress"],
                   {"OPENAI_BASE_URL": chosen.base_url, "OPENAI_API_KEY": KEY})
        assert done.returncode == 0, done.stderr
        assert not elsewhere.requests and chosen.requests


def test_a_run_folder_cannot_choose_code_to_import(finished, tmp_path):
    run = crafted(finished, tmp_path, {"controller": "tempfile:mkdtemp"})
    done = cli(["train", "--resume", str(run)], {"OPENAI_API_KEY": KEY})
    assert done.returncode == 2 and "a run folder cannot choose code to import" in done.stderr
    done = cli(["train", "--resume", str(run), "--controller", "tempfile:mkdtemp"], {"OPENAI_API_KEY": KEY})
    assert done.returncode == 2 and "is not a controller class" in done.stderr


def test_symbolic_links_in_a_run_folder_are_refused_not_written_through(finished, tmp_path):
    outside = tmp_path / "victim.txt"
    outside.write_text("unchanged")
    run = crafted(finished, tmp_path)
    (run / "learning_curve.png").unlink()
    (run / "learning_curve.png").symlink_to(outside)
    for args in (["report", str(run), "--no-video"], ["train", "--resume", str(run)]):
        done = cli(args, {"OPENAI_API_KEY": KEY})
        assert done.returncode == 2 and "holds symbolic links (learning_curve.png)" in done.stderr, done.stderr
    assert outside.read_text() == "unchanged"


def test_markup_in_a_run_folder_is_shown_as_text(finished, tmp_path):
    run = crafted(finished, tmp_path)
    results = json.loads((run / "results.json").read_text())
    results.update(best_iteration="<script>alert(1)</script>", task="\x1b]0;owned\x07reach")
    results["llm"]["calls"] = "<img src=x onerror=alert(2)>"
    (run / "results.json").write_text(json.dumps(results))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    log[1]["iteration"] = "<script>alert(3)</script>"
    log.append({"kind": "train", "batch": "not a list"})
    (run / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in log))
    done = cli(["report", str(run), "--no-video"])
    page = (run / "report.html").read_text()
    assert done.returncode == 0, done.stderr
    assert "<script>" not in page and "<img src=x" not in page and "&lt;script&gt;alert(1)" in page
    assert "A log record could not be read" in page
    done = cli(["report", str(run), str(finished), "--out", str(tmp_path / "table.md")])
    assert done.returncode == 0 and "\x1b" not in done.stdout and "\\x1b" in done.stdout


def test_odd_values_in_a_run_folder_are_one_clear_line(finished, tmp_path):
    run = crafted(finished, tmp_path, state={"iteration": "1"})
    done = cli(["train", "--resume", str(run)], {"OPENAI_API_KEY": KEY})
    assert done.returncode == 2 and "state.json is damaged: iteration" in done.stderr
    run = crafted(finished, tmp_path / "summary", state={"best_validation": {"success_rate": "x", "return_mean": 0}})
    done = cli(["train", "--resume", str(run)], {"OPENAI_API_KEY": KEY})
    assert done.returncode == 2 and "best_validation is not a validation summary" in done.stderr
    run = crafted(finished, tmp_path / "again", {"workers": 100_000})
    done = cli(["train", "--resume", str(run)], {"OPENAI_API_KEY": KEY})
    assert done.returncode == 2 and "workers must be between 1 and 256" in done.stderr


def test_a_run_folder_with_an_endless_horizon_is_refused_and_videos_stay_bounded(finished, tmp_path):
    run = crafted(finished, tmp_path, {"horizon": 1_000_000_000})
    done = cli(["report", str(run)])
    assert done.returncode == 2 and "horizon must be between 1 and 10000" in done.stderr
    from trace_control import video
    from trace_control.policies import ControllerCode

    code = ControllerCode.from_file(finished / "best_controller.py")
    video.MAX_FRAME_BYTES, kept = 40 * 40 * 3 * 2 * 30, video.MAX_FRAME_BYTES  # room for 30 frames per episode
    try:
        recorded = video.record_episodes(code, "reach", [2000, 2001], width=40, height=40)
    finally:
        video.MAX_FRAME_BYTES = kept
    for frames, text, episode in recorded:  # a reach episode renders about 200 frames
        assert len(frames) == 30 and "(the first 30 frames)" in text and episode.length == 10


def test_a_recording_with_odd_token_counts_still_replays(finished, tmp_path):
    recording = tmp_path / "calls.jsonl"
    lines = [json.loads(line) for line in (finished / "llm_calls.jsonl").read_text().splitlines()]
    for line in lines:
        line["response"]["prompt_tokens"] = "1000"
    recording.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = cli(["train", "reach", "--replay", str(recording), "--iterations", "2", "--batch", "1",
                "--solved-batches", "0", "--runs-dir", str(tmp_path), "--validation-seeds", "1000",
                "--test-seeds", "2000", "--no-progress"])
    assert done.returncode == 0, done.stderr[-2000:]
