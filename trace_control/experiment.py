"""The paper's robot experiment in one call: tasks x methods x seeds, then a summary.

Each run has its own seed (which training placements it draws; with ``--protocol paper``
its single training placement) and is tested on the same test placements. Finished runs
are skipped and interrupted ones resumed, so an experiment can be continued after a stop.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from trace_control.config import build_config
from trace_control.evaluation import wilson_interval
from trace_control.llm import LLMClient
from trace_control.runs import LLM_CALLS, RESULTS, STATE, RunFolder
from trace_control.trace import atomic_write_text
from trace_control.train import Trainer


def run_experiment(tasks: list[str], methods: list[str], seeds: list[int], out: str | Path,
                   make_llm: Callable[[RunFolder], LLMClient], overrides: dict | None = None,
                   echo: Callable[[str], None] = print, progress: bool = True) -> dict:
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    configs = {(t, m, s): build_config(t, {**(overrides or {}), "method": m, "seed": s})
               for t in tasks for m in methods for s in seeds}  # every setting checked before any work
    results: dict[tuple, dict] = {}
    for (task, method, seed), (config, sources) in configs.items():
        run = RunFolder(out / "runs" / f"{task}-{method}-seed{seed}")
        run.path.mkdir(parents=True, exist_ok=True)
        if run.file(RESULTS).is_file():
            results[(task, method, seed)] = run.read_json(RESULTS)
            echo(f"{run.path.name}: already finished")
            continue
        echo(f"== {task} / {method} / seed {seed}")
        resume = run.file(STATE).is_file()
        trainer = Trainer(config, run, make_llm(run), echo=echo, progress=progress, sources=sources)
        results[(task, method, seed)] = trainer.train(resume=resume).results
    summary = summarize(results, tasks, methods, seeds)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", summary_table(summary))
    atomic_write_text(out / "summary.csv", summary_csv(summary))
    plot(summary, out, results, tasks, methods, seeds)
    echo(summary_table(summary))
    return summary


def summarize(results: dict, tasks: list[str], methods: list[str], seeds: list[int]) -> dict:
    cells = []
    for task in tasks:
        for method in methods:
            done = [results[(task, method, s)] for s in seeds if (task, method, s) in results]
            per_seed = [r["test"]["success_rate"] for r in done]
            returns = [r["test"]["return_mean"] for r in done]
            tokens = [r["llm"]["total_tokens"] for r in done]
            episodes = sum(r["test_seeds"] for r in done)
            successes = round(sum(r["test"]["success_rate"] * r["test_seeds"] for r in done))
            cells.append({"task": task, "method": method, "seeds": len(per_seed),
                          "test_success_mean": statistics.fmean(per_seed) if per_seed else None,
                          "test_success_std": statistics.pstdev(per_seed) if len(per_seed) > 1 else 0.0,
                          "test_success_interval": list(wilson_interval(successes, episodes)),
                          "test_return_mean": statistics.fmean(returns) if returns else None,
                          "last_iteration_test_success_mean": statistics.fmean(
                              r["last_iteration_test"]["success_rate"] for r in done) if done else None,
                          "per_seed": per_seed, "tokens_mean": statistics.fmean(tokens) if tokens else None})
    return {"tasks": tasks, "methods": methods, "seeds": seeds, "cells": cells}


def summary_table(summary: dict) -> str:
    methods = summary["methods"]
    lines = ["| task | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for task in summary["tasks"]:
        row = []
        for method in methods:
            cell = next(c for c in summary["cells"] if c["task"] == task and c["method"] == method)
            mean = cell["test_success_mean"]
            row.append("-" if mean is None else f"{mean:.2f} ± {cell['test_success_std']:.2f}")
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    seeds = len(summary["seeds"])
    return "\n".join(lines) + (f"\n\nTest success rate of the controller chosen on validation, mean ± std over "
                                f"{seeds} seed(s).\n")


def summary_csv(summary: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = ["task", "method", "seeds", "test_success_mean", "test_success_std", "test_success_interval",
               "test_return_mean", "last_iteration_test_success_mean", "tokens_mean"]
    writer.writerow(columns)
    for cell in summary["cells"]:
        writer.writerow([cell[column] for column in columns])
    return buffer.getvalue()


def plot(summary: dict, out: Path, results: dict, tasks: list[str], methods: list[str], seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), dpi=110, squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for method in methods:
            curves = []
            for seed in seeds:
                log = RunFolder(out / "runs" / f"{task}-{method}-seed{seed}").read_log()
                curves.append(validation_curve(log))
            iterations = sorted(set().union(*curves)) if curves else []
            means = [statistics.fmean(c[i] for c in curves if i in c) for i in iterations]
            axis.plot(iterations, means, marker=".", label=method)
        axis.set_title(task)
        axis.set_xlabel("iteration")
        axis.set_ylim(-0.05, 1.05)
    axes[0][0].set_ylabel("validation success (mean over seeds)")
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "learning_curves.png")
    plt.close(figure)


def validation_curve(log: list[dict]) -> dict[int, float]:
    """Validation success per iteration; an iteration without a validation keeps the last figure."""
    curve: dict[int, float] = {}
    current = None
    for record in log:
        if record.get("validation"):
            current = record["validation"]["success_rate"]
        if current is not None:
            curve[record["iteration"]] = current
    return curve


def recording_llm(model: str | None, base_url: str | None, temperature: float | None) -> Callable:
    def make(run: RunFolder) -> LLMClient:
        return LLMClient(model=model, base_url=base_url, temperature=temperature, record=run.file(LLM_CALLS))

    return make
