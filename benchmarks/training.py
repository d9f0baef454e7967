"""What the training loop spends once there is nothing left to learn, with a scripted LLM.

The scripted LLM answers the first call with the task's reference controller (a general
solution) and "no change" after that. A run converges when its validation success
reaches 1.0; every LLM call after that is spent on a solved problem. The paper's
protocol (one fixed placement, every iteration run) is measured beside the batch protocol,
on the same task, iterations and answers.

    python -m benchmarks.training      (from the repository root: it uses tests/llm_server.py)
"""

from __future__ import annotations

import tempfile
import time
import warnings

from tests.llm_server import ScriptedLLMServer, answer
from trace_control import controllers
from trace_control.config import build_config
from trace_control.llm import LLMClient
from trace_control.runs import RunFolder
from trace_control.trace import name_scope
from trace_control.train import Trainer

ITERATIONS = 15


def converged_run(task: str, protocol: str) -> dict:
    solution = controllers.expert_controller(task).controller.parameter.data
    settings = {"iterations": ITERATIONS, "protocol": protocol, "validation_seeds": list(range(1000, 1010)),
                "test_seeds": list(range(2000, 2010))}
    config, sources = build_config(task, settings)
    with tempfile.TemporaryDirectory() as folder, ScriptedLLMServer([answer({"__code0": solution})]) as server:
        run = RunFolder.create(folder, task, protocol)
        llm = LLMClient(model="gpt-4o-mini", base_url=server.base_url, api_key="benchmark")
        started = time.perf_counter()
        with name_scope():
            result = Trainer(config, run, llm, progress=False, echo=lambda _: None, sources=sources).train()
        seconds = time.perf_counter() - started
        log = run.read_log()
    converged = next((r["iteration"] for r in log if (r.get("validation") or {}).get("success_rate") == 1.0), None)
    calls_after = sum(1 for r in log if converged is not None and r["iteration"] > converged and "changed" in r)
    return {"converged": converged, "calls_after": calls_after, "iterations": result.results["iterations_done"],
            "tokens": result.results["llm"]["total_tokens"], "seconds": seconds,
            "test": result.results["test"]["success_rate"]}


def main() -> None:
    warnings.simplefilter("ignore")
    for task in ("reach", "push"):
        figures = {protocol: converged_run(task, protocol) for protocol in ("batches", "paper")}
        for protocol, found in figures.items():
            print(f"{task} ({protocol} protocol): validation solved at iteration {found['converged']}, "
                  f"{found['calls_after']} LLM call(s) after that, {found['iterations']} of {ITERATIONS} "
                  f"iterations run, {found['tokens']:,} tokens, test success {found['test']:.2f}, "
                  f"{found['seconds']:.0f} s")
        ratio = figures["batches"]["tokens"] / figures["paper"]["tokens"]
        print(f"  tokens, batch protocol / paper protocol = {ratio:.2f}")


if __name__ == "__main__":
    main()
