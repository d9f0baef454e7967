"""The paper's robot experiment in one call: tasks x methods x seeds, then a summary.

Each cell of the grid is one run with its own seed (which training placements it draws;
with ``--protocol paper`` its single training placement), tested on the same test
placements. :func:`run_cell` trains one cell into its run folder; :func:`run_experiment`
runs the cells here, one after another, or hands them to Ray
(:mod:`trace_control.distributed`), then writes the summary. Either way the experiment
folder ends up the same, every LLM request of every run passes through one shared
budget (:mod:`trace_control.llm.limiter`), finished runs are skipped and interrupted
ones resumed, so an experiment can be continued after a stop.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trace_control.config import TrainConfig, build_config
from trace_control.evaluation import wilson_interval
from trace_control.llm import LLMClient
from trace_control.llm.limiter import BudgetHandle, Limits, LocalBudget
from trace_control.runs import LLM_CALLS, RESULTS, STATE, RunFolder
from trace_control.trace import atomic_write_text, name_scope
from trace_control.train import Trainer


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its task, method and seed, and its checked settings."""

    task: str
    method: str
    seed: int
    config: TrainConfig
    sources: dict[str, str]

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.task, self.method, self.seed)

    @property
    def name(self) -> str:
        """The run folder's name inside ``<experiment>/runs/``."""
        return f"{self.task}-{self.method}-seed{self.seed}"


@dataclass(frozen=True)
class LLMSettings:
    """How every run reaches the LLM. Plain data, so it travels to the machines that run cells;
    ``api_key`` None means each machine's own ``OPENAI_API_KEY``."""

    model: str | None = None
    base_url: str | None = None
    temperature: float | None = None
    api_key: str | None = field(default=None, repr=False)

    def client(self, run: RunFolder, limiter: BudgetHandle | None = None) -> LLMClient:
        """A client that records into ``run`` and passes every request through ``limiter``."""
        return LLMClient(model=self.model, base_url=self.base_url, api_key=self.api_key,
                         temperature=self.temperature, record=run.file(LLM_CALLS), limiter=limiter)


@dataclass(frozen=True)
class RayOptions:
    """Run the cells as Ray tasks (see :mod:`trace_control.distributed`).

    ``address``: None starts a local Ray instance; ``"auto"`` or ``"ray://host:10001"`` joins
    a cluster. ``storage``: a folder mounted at the same path on every node, where runs work
    and keep their checkpoints (default: each node's temporary folder).
    """

    address: str | None = None
    cpus_per_run: float = 1.0
    storage: Path | None = None


class RunsFailed(RuntimeError):
    """Some runs raised instead of finishing; the others are summarised, and the same command retries these."""


def plan(tasks: list[str], methods: list[str], seeds: list[int], overrides: dict | None = None) -> list[Cell]:
    """Every cell with its settings, all checked before any work starts."""
    cells = []
    for task in tasks:
        for method in methods:
            for seed in seeds:
                config, sources = build_config(task, {**(overrides or {}), "method": method, "seed": seed})
                cells.append(Cell(task, method, seed, config, sources))
    return cells


def run_cell(cell: Cell, run: RunFolder, llm: LLMSettings, limiter: BudgetHandle | None = None,
             echo: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Train one cell into ``run`` and return its results (``results.json``).

    A run folder with results is finished and not trained again; one with a checkpoint
    (``state.json``) resumes after its last finished iteration.
    """
    if run.file(RESULTS).is_file():
        return run.read_json(RESULTS)
    run.path.mkdir(parents=True, exist_ok=True)
    with name_scope():  # parameter names as in a fresh process (__code0), whatever ran here before
        trainer = Trainer(cell.config, run, llm.client(run, limiter), echo=echo, progress=progress,
                          sources=cell.sources)
        return trainer.train(resume=run.file(STATE).is_file()).results


def spent_so_far(out: Path, cells: list[Cell]) -> tuple[float, int]:
    """(estimated cost, tokens) the runs already in ``out`` used: an experiment's budget spans its sessions."""
    cost, tokens = 0.0, 0
    for cell in cells:
        run = RunFolder(out / "runs" / cell.name)
        if run.file(RESULTS).is_file():
            usage = run.read_json(RESULTS)["llm"]
        elif run.file(STATE).is_file():
            usage = run.read_json(STATE).get("usage", {})
        else:
            continue
        cost += usage.get("cost_usd") or 0.0
        tokens += usage.get("total_tokens") or 0
    return cost, tokens


class GridProgress:
    """What a person watches: one line per finished run, and a bar over the whole grid with its ETA."""

    def __init__(self, total: int, finished: int, echo: Callable[[str], None] = print, bar: bool = True) -> None:
        from tqdm import tqdm

        self.total, self.finished, self.finished_before = total, finished, finished
        self.echo = echo
        self.started = time.monotonic()
        self.bar = tqdm(total=total, initial=finished, desc="experiment", unit="run", disable=not bar)

    def ran(self, cell: Cell, results: dict, totals: dict, note: str = "") -> None:
        """``cell`` finished with ``results``; ``totals`` are the experiment's LLM totals so far."""
        self.finished += 1
        cost = f", ${totals['cost_usd']:.4f}" if totals.get("cost_usd") else ""
        self._line(f"{cell.task} / {cell.method} / seed {cell.seed}: test success "
                   f"{results['test']['success_rate']:.2f}, {results['llm']['total_tokens']:,} tokens{note} | "
                   f"experiment: {totals['tokens']:,} tokens{cost}")

    def failed(self, cell: Cell, reason: str) -> None:
        self.finished += 1
        self._line(f"{cell.task} / {cell.method} / seed {cell.seed}: FAILED: {reason}")

    def _line(self, text: str) -> None:
        self.bar.update(1)
        ran = self.finished - self.finished_before
        left = self.total - self.finished
        eta = f" | ETA {_duration((time.monotonic() - self.started) / ran * left)}" if left and ran else ""
        self.write(f"[{self.finished}/{self.total}] {text}{eta}")

    def write(self, text: str) -> None:
        """Print a line above the bar (so that it stays whole)."""
        if self.bar.disable:
            self.echo(text)
        else:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def run_experiment(tasks: list[str], methods: list[str], seeds: list[int], out: str | Path, llm: LLMSettings,
                   overrides: dict | None = None, limits: Limits | None = None, ray: RayOptions | None = None,
                   echo: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Train every cell not finished yet (here, or on Ray with ``ray``), then write and return the summary.

    Raises :class:`RunsFailed` after writing the summary of the others when some runs raised.
    """
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    cells = plan(tasks, methods, seeds, overrides)
    results: dict[tuple, dict] = {}
    pending = []
    for cell in cells:
        run = RunFolder(out / "runs" / cell.name)
        if run.file(RESULTS).is_file():
            results[cell.key] = run.read_json(RESULTS)
            echo(f"{cell.name}: already finished")
        else:
            pending.append(cell)
    limits = limits or Limits()
    spent = spent_so_far(out, cells)
    watch = GridProgress(len(cells), len(results), echo, progress)
    failures: dict[tuple, str] = {}
    try:
        if ray is None:
            _run_here(pending, out, llm, limits, spent, watch, results, progress)
        elif pending:
            from trace_control import distributed

            failures = distributed.run_grid(pending, out, llm, limits, spent, ray, watch, results)
    finally:
        watch.close()
    summary = summarize(results, tasks, methods, seeds)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", summary_table(summary))
    atomic_write_text(out / "summary.csv", summary_csv(summary))
    plot(summary, out, results, tasks, methods, seeds)
    echo(summary_table(summary))
    if failures:
        raise RunsFailed(f"{len(failures)} of {len(cells)} runs failed (first: {next(iter(failures.values()))}); "
                         "run the same command again to retry them")
    return summary


def _run_here(cells: list[Cell], out: Path, llm: LLMSettings, limits: Limits, spent: tuple[float, int],
              watch: GridProgress, results: dict, progress: bool) -> None:
    """The cells one after another in this process."""
    budget = LocalBudget(limits, *spent)
    try:
        for cell in cells:
            watch.write(f"== {cell.task} / {cell.method} / seed {cell.seed}")
            results[cell.key] = run_cell(cell, RunFolder(out / "runs" / cell.name), llm, budget, watch.write,
                                         progress)
            watch.ran(cell, results[cell.key], budget.totals())
    finally:
        budget.close()


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
