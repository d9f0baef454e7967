"""Experiments and evaluations on Ray, and the LLM budget every run shares.

One local Ray instance (2 CPUs) serves the module; the commands run as separate
processes that join it with ``--ray ADDRESS``, as they would join a cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

import trace_control
from tests.llm_server import ScriptedLLMServer, answer
from tests.test_cli import SECRET, WORKING, cli, llm_env, run_here
from trace_control.llm import LLMClient
from trace_control.llm.limiter import Limits, LocalBudget, SharedBudget

ray = pytest.importorskip("ray")

TINY = ["--tasks", "reach", "--iterations", "1", "--no-progress", "--validation-seeds", "1000-1002",
        "--test-seeds", "2000-2002"]
QUESTION = [{"role": "user", "content": "Which gain? Answer in JSON."}]


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray instance with 2 CPUs, stopped after the module."""
    reporting = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # tests reach nothing beyond this machine
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if reporting is None:
            os.environ.pop("RAY_USAGE_STATS_ENABLED")
        else:
            os.environ["RAY_USAGE_STATS_ENABLED"] = reporting


def run_files(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def test_a_grid_on_ray_ends_as_the_same_experiment_folder_as_here(cluster, tmp_path):
    grid = TINY + ["--methods", "trace,opro", "--seeds", "0"]
    with ScriptedLLMServer([answer({"__code0": WORKING})] * 2) as server:
        cli(["experiment", *grid, "--out", str(tmp_path / "here")], llm_env(server))
    with ScriptedLLMServer([answer({"__code0": WORKING})] * 2, answer_delay=0.5) as server:
        done = cli(["experiment", *grid, "--out", str(tmp_path / "ray"), "--ray", cluster, "--llm-concurrency", "1"],
                   llm_env(server))
        again = cli(["experiment", *grid, "--out", str(tmp_path / "ray"), "--ray", cluster], llm_env(server))
    assert server.most_at_once == 1 and len(server.requests) == 2
    assert "reach-trace-seed0: already finished" in again.stdout
    here, there = tmp_path / "here", tmp_path / "ray"
    assert json.loads((there / "summary.json").read_text()) == json.loads((here / "summary.json").read_text())
    assert (there / "summary.md").read_text() == (here / "summary.md").read_text()
    assert run_files(there) == run_files(here)
    for run in ("reach-trace-seed0", "reach-opro-seed0"):
        here_results, there_results = (json.loads((grid / "runs" / run / "results.json").read_text())
                                       for grid in (here, there))
        assert there_results.pop("seconds") and here_results.pop("seconds")  # wall times, the only difference
        assert there_results == here_results
    assert "Ray: 1 node(s), 2 CPUs" in done.stdout
    assert "[1/2] reach / " in done.stdout and "[2/2] reach / " in done.stdout and "experiment: " in done.stdout
    written = "".join(path.read_text(errors="replace") for path in there.rglob("*") if path.is_file())
    assert SECRET not in written


def kill_the_worker_of(task_name: str) -> None:
    """SIGKILL the Ray worker process running ``task_name`` (as if its node died)."""
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and command.startswith(f"ray::{task_name}".encode()):
            os.kill(int(entry.name), signal.SIGKILL)
            return
    raise AssertionError(f"no worker runs {task_name}")


def test_a_run_whose_worker_dies_is_retried_from_its_last_checkpoint(cluster, tmp_path):
    def script(body: dict) -> str:
        if len(server.requests) == 2:  # iteration 2 asks: iteration 1 is checkpointed
            kill_the_worker_of("train reach-trace-seed0")
        return answer({}, "no change")

    with ScriptedLLMServer(script) as server:
        done = cli(["experiment", *TINY, "--methods", "trace", "--seeds", "0", "--iterations", "2", "--patience", "0",
                    "--solved-batches", "0", "--out", str(tmp_path / "grid"), "--ray", cluster], llm_env(server))
    assert "(resumed after iteration 1)" in done.stdout
    assert len(server.requests) == 3  # 1, 2 (killed), 2 again; from scratch it would be 4
    run = tmp_path / "grid" / "runs" / "reach-trace-seed0"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [record["iteration"] for record in log] == [0, 1, 2]
    assert json.loads((run / "results.json").read_text())["iterations_done"] == 2


def test_the_shared_budget_holds_concurrent_requests_to_its_cap_across_tasks(cluster):
    from trace_control.distributed import RayBudget

    @ray.remote(num_cpus=1)
    def ask(base_url: str, budget, clients: int) -> int:
        def one() -> None:
            llm = LLMClient(model="gpt-4o-mini", base_url=base_url, api_key="k", limiter=RayBudget(budget))
            for _ in range(2):
                llm.complete(QUESTION)

        threads = [threading.Thread(target=one) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return clients

    with ScriptedLLMServer(answer_delay=0.3) as server:
        budget = ray.remote(SharedBudget).options(num_cpus=0).remote(Limits(concurrency=2))
        assert sum(ray.get([ask.remote(server.base_url, budget, 3) for _ in range(2)])) == 6
    assert server.most_at_once == 2 and len(server.requests) == 12
    assert ray.get(budget.totals.remote())["requests"] == 12


def test_a_429_holds_back_every_client_for_its_retry_after():
    budget = LocalBudget(Limits())
    try:
        with ScriptedLLMServer([{"status": 429, "headers": {"Retry-After": "1"}}]) as server:
            first = LLMClient(model="gpt-4o-mini", base_url=server.base_url, api_key="k", limiter=budget)
            second = LLMClient(model="gpt-4o-mini", base_url=server.base_url, api_key="k", limiter=budget)
            refused = threading.Thread(target=first.complete, args=(QUESTION,))
            refused.start()
            while not budget.budget.held_until:  # the 429 has reached the first client
                threading.Event().wait(0.01)
            second.complete(QUESTION)
            refused.join()
        told_to_wait = server.arrivals[0]
        assert len(server.arrivals) == 3 and min(server.arrivals[1:]) - told_to_wait >= 0.95
        assert first.usage.calls == 1 and second.usage.calls == 1
    finally:
        budget.close()


def test_the_minute_windows_and_leases_decide_when_a_request_may_start():
    async def scenario() -> None:
        requests = SharedBudget(Limits(requests_per_minute=2))
        await requests.acquire(10, 60)
        await requests.acquire(10, 60)
        with pytest.raises(asyncio.TimeoutError):  # the third of the minute waits for the first to age out
            await asyncio.wait_for(requests.acquire(10, 60), 0.3)
        tokens = SharedBudget(Limits(tokens_per_minute=100))
        first = await tokens.acquire(80, 60)
        second = asyncio.ensure_future(tokens.acquire(30, 60))
        await asyncio.sleep(0.3)
        assert not second.done()  # 80 estimated + 30 do not fit in 100
        await tokens.release(first, 6, 4, None)  # the server reports 10 tokens: now 10 + 30 fit
        await asyncio.wait_for(second, 1.0)
        assert (await tokens.totals())["tokens"] == 10
        slots = SharedBudget(Limits(concurrency=1))
        await slots.acquire(1, lease_seconds=0.3)  # its client dies and never releases
        await asyncio.wait_for(slots.acquire(1, 60), 2.0)

    asyncio.run(scenario())


def test_max_cost_stops_every_run_cleanly_with_its_results(tmp_path):
    with ScriptedLLMServer([answer({"__code0": WORKING})] * 4) as server:
        cli(["experiment", *TINY, "--methods", "trace", "--seeds", "0-1", "--iterations", "2", "--solved-batches",
             "0", "--max-cost", "0.0001", "--out", str(tmp_path / "grid")], llm_env(server))
    assert len(server.requests) == 1  # the first call spent the budget; the second run never asked
    for seed in (0, 1):
        results = json.loads((tmp_path / "grid" / "runs" / f"reach-trace-seed{seed}" / "results.json").read_text())
        assert results["status"] == "completed" and "LLM budget is spent" in results["stopped"]
        assert results["iterations_done"] == 1
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert summary["cells"][0]["seeds"] == 2


def test_evaluate_on_ray_reports_what_one_machine_reports(cluster):
    def report(*args: str) -> list[str]:
        lines = cli(["evaluate", "expert", "--task", "reach", "--seeds", "100-105", *args]).stdout.splitlines()
        return [line.rsplit(" (", 1)[0] if "worker(s)" in line else line for line in lines]

    here, there = report(), report("--ray", cluster)
    assert there[0] == "Ray: 1 node(s), 2 CPUs" and there[1:] == here
    assert "controller code runs in: a bubblewrap jail: unprivileged uid 65534" in here[0]
    assert "reach: success 1.00" in here[-1] and len(here) == 8


def test_ray_options_fail_in_one_line_before_any_work(monkeypatch, capsys, tmp_path):
    code, _, err = run_here(["evaluate", "expert", "--task", "reach", "--ray", "127.0.0.1:1"], capsys)
    assert code == 2 and "cannot reach a Ray cluster at 127.0.0.1:1" in err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "trace_control.distributed", raising=False)
    monkeypatch.delattr(trace_control, "distributed", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    code, _, err = run_here(["evaluate", "expert", "--task", "reach", "--ray"], capsys)
    assert code == 2 and 'pip install "trace-control[ray]"' in err and len(err.strip().splitlines()) == 1
    for args, message in [(["--ray", "--out", str(tmp_path)], 'pip install "trace-control[ray]"'),
                          (["--storage", str(tmp_path)], "add --ray"),
                          (["--llm-concurrency", "0"], "--llm-concurrency must be more than 0"),
                          (["--max-cost", "1", "--model", "no-such-model"], "--max-cost needs a price")]:
        code, _, err = run_here(["experiment", "--tasks", "reach", *args], capsys)
        assert code == 2 and message in err, (args, err)
