"""Hostile controllers, faulty LLM services and killed processes: contained, reported, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.llm_server import ScriptedLLMServer, answer
from trace_control.config import build_config
from trace_control.llm import LLMClient
from trace_control.optim import OptoPrime
from trace_control.runners import IsolatedRunner
from trace_control.runs import RunFolder
from trace_control.sandbox import Limits, SandboxWorker, check_controller_code
from trace_control.trace import bundle, name_scope, node
from trace_control.train import Trainer

SECRET = "sk-SECRET-do-not-leak-4242"
OUTSIDE = Path("/tmp") / f"trace-control-outside-{os.getpid()}.txt"


def body(code: str) -> str:
    return "def controller(self, obs):\n" + "".join(f"    {line}\n" for line in code.splitlines())


HOSTILE = [
    # (name, controller body, where the problem is named, the words that name it)
    ("infinite loop", "while True:\n    pass", "rollout", "exceeded 0.5 s at step 1"),
    ("swallowed timeout", "try:\n    while True:\n        pass\nexcept BaseException:\n    while True:\n        pass",
     "rollout", "exceeded 0.5 s"),
    ("10 GB allocation", "blob = bytearray(10 * 1024 ** 3)\nreturn [0, 0, 0, 0]", "rollout", "(MemoryError)"),
    ("fork bomb", "import os\nwhile True:\n    os.fork()", "static", "tried to import os"),
    ("os._exit", "import os\nos._exit(3)", "static", "tried to import os"),
    ("ctypes segfault", "import ctypes\nctypes.string_at(0)", "static", "tried to import ctypes"),
    ("secret in the action", "import os\nreturn [os.environ['OPENAI_API_KEY'], 0, 0, 0]", "static",
     "tried to import os"),
    ("write outside", f"open({str(OUTSIDE)!r}, 'w').write('x')\nreturn [0, 0, 0, 0]", "static", "uses open"),
    ("socket", "import socket\nsocket.create_connection(('127.0.0.1', 9))\nreturn [0, 0, 0, 0]", "static",
     "tried to import socket"),
    ("dunder escape", "return obs.__class__.__mro__", "static", "double-underscore attributes"),
    ("NaN action", "return [float('nan'), 0.0, 0.0, 0.0]", "rollout", "the action contained NaN"),
    ("inf action", "return [float('inf'), 0.0, 0.0, 0.0]", "rollout", "infinite value"),
    ("wrong length", "return [0.0, 0.0, 0.0]", "rollout", "had 3 values, expected 4"),
    ("non-numeric", "return ['left', 0.0, 0.0, 0.0]", "rollout", "expected a number"),
    ("1 MB of code", "x = 0\n" * 170_000 + "return [0, 0, 0, 0]", "static", "the limit is 20,000"),
]


@pytest.fixture(scope="module")
def runner():
    shared = IsolatedRunner("reach", {}, 1, seeds=[0, 100], limits=Limits(step_seconds=0.5, grace_seconds=1.0))
    yield shared
    shared.close()


@pytest.mark.parametrize("name, code, where, words", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_controller_is_contained_and_named(name, code, where, words, runner, tmp_path, monkeypatch,
                                                    capsys):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    hostile = body(code)
    config = build_config("reach", {"iterations": 2, "eval_seeds": [100], "step_seconds": 0.5})
    run = RunFolder.create(tmp_path, "reach", "trace")
    with ScriptedLLMServer([answer({"__code0": hostile}, f"try {name}")]) as server:
        llm = LLMClient(model="gpt-4o-mini", base_url=server.base_url, api_key=SECRET, max_retries=0,
                        record=run.file("llm_calls.jsonl"))
        with name_scope():
            result = Trainer(config, run, llm, runner=runner, progress=False).train()
        prompts = [user["messages"][-1]["content"] for user in server.requests]
    assert result.results["status"] == "completed"
    log = run.read_log()
    if where == "static":
        assert any(words in problem for problem in log[1]["problems"]), log[1]["problems"]
        assert log[1]["update"] == {} and words in prompts[1]
    else:
        assert log[1]["update"]["__code0"] == hostile
        assert words in log[2]["feedback"] and words in prompts[1]
    everything = "".join(p.read_text(errors="replace") for p in run.path.rglob("*") if p.is_file()
                         and p.suffix != ".png")
    assert SECRET not in everything and SECRET not in "".join(prompts) and SECRET not in capsys.readouterr().out
    assert not OUTSIDE.exists()
    assert max(len(p) for p in prompts) < 40_000  # the 1 MB suggestion is refused, not echoed


RUNTIME_ONLY = [
    ("os._exit", "import os\nos._exit(3)", "exited with code 3"),
    ("segfault", "import ctypes\nctypes.string_at(0)", "killed by SIGSEGV"),
    ("secret", "import os\nreturn [os.environ['OPENAI_API_KEY'], 0, 0, 0]", "(KeyError) 'OPENAI_API_KEY'"),
    ("print secret", "import os\nprint(dict(os.environ))\nreturn [0, 0, 0, 0]", "The controller printed"),
    ("write outside", f"open({str(OUTSIDE)!r}, 'w').write('x')\nreturn [0, 0, 0, 0]", "Read-only file system"),
    ("socket", "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=0.2)\nreturn [0, 0, 0, 0]",
     "(OSError)"),
]


@pytest.fixture(scope="module")
def bare_worker():
    worker = SandboxWorker("reach", seeds=[0], limits=Limits(step_seconds=0.5, grace_seconds=1.0))
    yield worker
    worker.close()


@pytest.mark.parametrize("name, code, words", RUNTIME_ONLY, ids=[case[0] for case in RUNTIME_ONLY])
def test_the_worker_contains_what_the_static_check_would_have_refused(name, code, words, bare_worker, monkeypatch):
    """Defence in depth: with the static check out of the way, the worker's own walls hold."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    spec = {"kind": "module", "reference": "trace_control.controllers.reach:ReachController",
            "parameters": {"controller.__code": body(code)}}
    episode = bare_worker.run(spec, [0], keep_steps=True)[0]
    text = f"{episode.error} {episode.outcome}"
    status = bare_worker.status
    if name == "write outside" and not status.get("files", "").startswith("read-only"):
        pytest.skip(f"this OS gave the worker no read-only filesystem: {status.get('files')}")
    if name == "socket" and not status.get("network", "").startswith("isolated"):
        pytest.skip(f"this OS gave the worker no network namespace: {status.get('network')}")
    assert words in text, text
    assert SECRET not in text and not OUTSIDE.exists()
    if name == "socket":
        assert "Network is unreachable" in text


def test_worker_environment_has_no_secrets(monkeypatch):
    from trace_control.sandbox import clean_environment

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:1")
    environment = clean_environment()
    assert not {"OPENAI_API_KEY", "GITHUB_TOKEN", "HTTPS_PROXY"} & set(environment)


def test_static_check_accepts_ordinary_controllers():
    from trace_control import controllers

    for task in controllers.STARTING:
        code = controllers.starting_controller(task).controller.parameter.data
        assert check_controller_code(code, "controller") == [], task
    assert check_controller_code(body("import numpy as np\nreturn list(np.zeros(4))"), "controller") == []


# -- the answer parser, fuzzed -------------------------------------------------------------------
@bundle(trainable=True)
def fuzz_policy(obs):
    return obs


ANSWER_PIECES = st.one_of(
    st.text(max_size=200),
    st.sampled_from(['{"reasoning": "r", "suggestion": {', '}}', '"__code0": ', '"gain0": ', "```json\n", "```",
                     '"def fuzz_policy(obs):\\n    return obs\\n"', "[1, 2]", "null", "NaN", '"3.5"', "{", "}",
                     "'", '"', "\\", "\n", '{"suggestion": []}', '{"suggestion": {"__code:0": 5}}']),
    st.builds(json.dumps, st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(string.printable, max_size=30),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(
            st.sampled_from(["reasoning", "suggestion", "__code0", "gain0", "x"]), children, max_size=4),
        max_leaves=12)),
)


_FUZZ: dict = {}


def fuzz_optimizer() -> tuple[OptoPrime, object]:
    """One optimizer for all generated answers (building an HTTP client per example is slow)."""
    if not _FUZZ:
        gain = node(1.0, name="gain", trainable=True)
        _FUZZ["gain"] = gain
        _FUZZ["optimizer"] = OptoPrime([fuzz_policy.parameter, gain], llm=LLMClient(base_url="http://127.0.0.1:9/v1"))
    return _FUZZ["optimizer"], _FUZZ["gain"]


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(pieces=st.lists(ANSWER_PIECES, max_size=6), truncated=st.booleans())
def test_no_answer_breaks_the_optimizer(pieces, truncated):
    optimizer, gain = fuzz_optimizer()
    proposal = optimizer.proposal_from("".join(pieces), "length" if truncated else "stop")
    for parameter, value in proposal.update.items():
        assert parameter in (fuzz_policy.parameter, gain)
        if parameter is gain:
            assert isinstance(value, float)
        else:
            assert isinstance(value, str) and "def fuzz_policy(obs)" in value


def test_step_survives_hostile_answers_over_http():
    answers = ["", "}{", '{"suggestion": {"gain0": {"nested": [1, {"deep": null}]}}}', "\x00" * 100,
               '{"reasoning": ' + '"a' * 5000, '{"suggestion": {"__code0": "def fuzz_policy(obs):\\n  return ("}}',
               "[" * 5000, '{"suggestion": {"gain0": 1e400}}', '{"suggestion": {"gain0": "NaN"}}']
    gain = node(1.0, name="gain", trainable=True)
    with ScriptedLLMServer(answers) as server:
        optimizer = OptoPrime([fuzz_policy.parameter, gain], llm=LLMClient(base_url=server.base_url, api_key="k"))
        for _ in answers:
            optimizer.zero_feedback()
            optimizer.backward(fuzz_policy(gain), "more")
            optimizer.step()
    assert isinstance(gain.data, float)


# -- faults of the LLM service --------------------------------------------------------------------
def test_llm_faults_are_retried_then_recorded_and_the_run_goes_on(runner, tmp_path):
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
    config = build_config("reach", {"iterations": 7, "eval_seeds": [100]})
    run = RunFolder.create(tmp_path, "reach", "trace")
    with ScriptedLLMServer(script) as server:
        llm = LLMClient(model="m", base_url=server.base_url, api_key="k", timeout=1.0, max_retries=2)
        with name_scope():
            result = Trainer(config, run, llm, runner=runner, progress=False).train()
    log = run.read_log()
    errors = [r["llm_error"] for r in log[1:]]
    assert errors[0] is None and errors[1] is None, errors
    assert "could not be read" in errors[2], errors[2]
    assert "did not answer within the timeout" in errors[3], errors[3]
    assert "could not reach the LLM server" in errors[4], errors[4]
    assert errors[5] is None and any("cut off at the length limit" in p for p in log[6]["problems"])
    assert errors[6] is None and log[7]["update"]["__code0"] == working and log[7]["eval"]["success_rate"] == 1.0
    assert result.results["status"] == "completed" and [r["iteration"] for r in log] == list(range(8))
    assert result.results["llm"]["failed_calls"] == 3


def test_consecutive_llm_failures_stop_the_run_cleanly(tmp_path):
    with ScriptedLLMServer(default={"status": 500}) as server:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        environment.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="k")
        done = subprocess.run([sys.executable, "-m", "trace_control.cli", "train", "reach", "--iterations", "10",
                               "--runs-dir", str(tmp_path), "--run-name", "down", "--eval-seeds", "100",
                               "--in-process", "--no-progress", "--config", str(_config(tmp_path))],
                              env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "stopped after 2 consecutive failed LLM calls" in done.stdout
    results = json.loads((tmp_path / "down" / "results.json").read_text())
    assert results["status"].startswith("stopped after 2") and results["iterations_done"] == 2


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
                 str(tmp_path), "--run-name", "hard", "--eval-seeds", "100", "--in-process", "--no-progress"]
        resume = [sys.executable, "-m", "trace_control.cli", "train", "--resume", str(run), "--no-progress"]
        log = run / "log.jsonl"

        def lines() -> int:
            return len(log.read_text().splitlines()) if log.is_file() else 0

        def wait_for(condition, limit: float = 120.0) -> None:
            deadline = time.monotonic() + limit
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.02)

        # kill points: during the first iteration, during start-up, right after a log line, mid-iteration
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
        assert (run / "state.json").is_file()
        done = subprocess.run(resume, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(9))
    state = json.loads((run / "state.json").read_text())
    assert state["iteration"] == 8 and json.loads((run / "results.json").read_text())["iterations_done"] == 8
    calls = (run / "llm_calls.jsonl").read_text().splitlines()
    assert len(calls) == 8 and all(json.loads(line) for line in calls)
    compile((run / "best_controller.py").read_text(), "best", "exec")
