"""Reports a person reads: the learning curve (PNG) and an HTML page of the run."""

from __future__ import annotations

import difflib
import html
import os
import subprocess
import sys
from pathlib import Path

from trace_control.runs import BEST, CONFIG, CURVE, RESULTS, RunFolder
from trace_control.sandbox.runner import clean_environment


def write_curve(run: RunFolder) -> Path:
    """Evaluation success and training return per iteration, as ``learning_curve.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    records = run.read_log()
    evaluated = [(r["iteration"], r["eval"]["success_rate"]) for r in records if r.get("eval")]
    trained = [(r["iteration"], r["train"]["return"]) for r in records if r.get("train")]
    figure, success_axis = plt.subplots(figsize=(7, 4), dpi=110)
    if evaluated:
        success_axis.plot(*zip(*evaluated), marker="o", color="tab:blue", label="test success rate")
    success_axis.set_ylim(-0.05, 1.05)
    success_axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    success_axis.set_xlabel("iteration")
    success_axis.set_ylabel("test success rate", color="tab:blue")
    return_axis = success_axis.twinx()
    if trained:
        return_axis.plot(*zip(*trained), marker=".", color="tab:orange", alpha=0.7, label="training return")
    return_axis.set_ylabel("training episode return", color="tab:orange")
    config = run.read_json(CONFIG) if run.file(CONFIG).is_file() else {}
    success_axis.set_title(f"{config.get('task', '?')} — {config.get('method', '?')}")
    figure.tight_layout()
    path = run.file(CURVE)
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary)
    plt.close(figure)
    os.replace(temporary, path)
    return path


def _code_versions(records: list[dict]) -> list[tuple[int, str, str]]:
    """(iteration, parameter, new value) for every applied code change."""
    versions = []
    for record in records:
        for name, value in (record.get("update") or {}).items():
            versions.append((record["iteration"], name, value))
    return versions


def write_html(run: RunFolder, video: str | None = None) -> Path:
    """``report.html``: curve, per-iteration outcomes, code diffs, reasoning, token totals, video."""
    records = run.read_log()
    config = run.read_json(CONFIG) if run.file(CONFIG).is_file() else {}
    results = run.read_json(RESULTS) if run.file(RESULTS).is_file() else {}
    initial = next((r for r in records if r.get("kind") == "initial"), {})
    current = {key: value for key, value in (initial.get("parameters") or {}).items()}
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>trace-control run {esc(run.path.name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:13px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        ".add{color:#1a7f37}.del{color:#cf222e}.it{border-top:2px solid #ddd;margin-top:1.5em}</style>",
        "</head><body>",
        f"<h1>{esc(config.get('task', '?'))} — {esc(str(config.get('method', '?')))}</h1>",
        f"<p>Run folder <code>{esc(str(run.path))}</code>.</p>",
    ]
    if results:
        test, llm = results.get("test", {}), results.get("llm", {})
        cost = llm.get("cost_usd")
        parts.append("<table><tr><th>status</th><th>best iteration</th><th>test success</th><th>test return</th>"
                     "<th>LLM calls</th><th>tokens</th><th>estimated cost</th></tr>")
        parts.append(f"<tr><td>{esc(str(results.get('status')))}</td><td>{results.get('best_iteration')}</td>"
                     f"<td>{test.get('success_rate', 0):.2f}</td><td>{test.get('return_mean', 0):.2f} ± "
                     f"{test.get('return_std', 0):.2f}</td><td>{llm.get('calls')}</td>"
                     f"<td>{llm.get('total_tokens', 0):,}</td>"
                     f"<td>{'n/a' if cost is None else f'${cost:.4f}'}</td></tr></table>")
    if run.file(CURVE).is_file():
        parts.append(f"<h2>Learning curve</h2><img src='{CURVE}' alt='learning curve' width='700'>")
    if video:
        parts.append(f"<h2>Best controller</h2><video src='{esc(video)}' controls loop muted width='480'></video>")
    if run.file(BEST).is_file():
        parts.append(f"<h2>Best controller code</h2><pre>{esc(run.file(BEST).read_text())}</pre>")
    parts.append("<h2>Iterations</h2>")
    for record in records:
        if record.get("kind") != "train":
            continue
        train = record["train"]
        evaluation = record.get("eval")
        status = "success" if train["success"] else "failure"
        error = f"; error: {esc(str(train['error'])[:300])}" if train.get("error") else ""
        test = f" Test success: {evaluation['success_rate']:.2f}." if evaluation else ""
        parts.append(f"<div class='it'><h3>Iteration {record['iteration']}</h3><p>Training episode: {status}, "
                     f"return {train['return']:.2f}, {train['length']} steps{error}.{test}</p>")
        parts.append(f"<p><b>Feedback</b></p><pre>{esc(record.get('feedback', ''))}</pre>")
        if record.get("reasoning"):
            parts.append(f"<p><b>LLM reasoning</b></p><pre>{esc(record['reasoning'])}</pre>")
        if record.get("problems"):
            parts.append("<p><b>Rejected</b></p><ul>" + "".join(f"<li>{esc(p)}</li>" for p in record["problems"])
                         + "</ul>")
        if record.get("llm_error"):
            parts.append(f"<p><b>LLM call failed:</b> {esc(record['llm_error'])}</p>")
        for name, value in (record.get("update") or {}).items():
            old = _matching(current, name)
            parts.append(f"<p><b>Changed {esc(name)}</b></p>{_diff(old, value)}")
            _store(current, name, value)
        parts.append("</div>")
    parts.append("</body></html>")
    path = run.file("report.html")
    run.write_text("report.html", "\n".join(parts))
    return path


def _matching(parameters: dict, name: str) -> object:
    if name in parameters:
        return parameters[name]
    if name.startswith("__code"):
        return next((v for k, v in parameters.items() if k.endswith(".__code")), "")
    stem = name.rstrip("0123456789")
    return parameters.get(stem, "")


def _store(parameters: dict, name: str, value: object) -> None:
    if name.startswith("__code"):
        key = next((k for k in parameters if k.endswith(".__code")), name)
    else:
        key = name.rstrip("0123456789") if name.rstrip("0123456789") in parameters else name
    parameters[key] = value


def _diff(old: object, new: object) -> str:
    if not isinstance(old, str) or not isinstance(new, str):
        return f"<pre>{html.escape(str(old))} → {html.escape(str(new))}</pre>"
    lines = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), "before", "after", lineterm=""):
        css = "add" if line.startswith("+") else ("del" if line.startswith("-") else "")
        lines.append(f"<span class='{css}'>{html.escape(line)}</span>")
    return "<pre>" + "\n".join(lines) + "</pre>"


def make_report(run_path: str | Path, with_video: bool = True) -> dict[str, Path]:
    """Write the curve, the best controller's video (optional) and the HTML page of a run."""
    run = RunFolder(run_path)
    if not run.file(CONFIG).is_file():
        raise FileNotFoundError(f"{run_path} is not a run folder (no {CONFIG})")
    written = {"curve": write_curve(run)}
    video_name = None
    if with_video and run.file(BEST).is_file():
        config = run.read_json(CONFIG)
        seeds = ",".join(str(s) for s in config.get("eval_seeds", [0])[:2])
        out = run.file("best_controller.mp4")
        # the learned code renders in a child process with a stripped environment, not in this one
        command = [sys.executable, "-m", "trace_control.cli", "record", str(run.path), "--out", str(out),
                   "--seeds", seeds, "--layout", "grid", "--size", "240"]
        environment = {**clean_environment(), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600,
                                  start_new_session=True)
        if finished.returncode == 0 and out.is_file():
            written["video"] = out
            video_name = out.name
        else:
            tail = (finished.stderr or finished.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"the video could not be recorded: {tail[0]}", file=sys.stderr)
    written["html"] = write_html(run, video_name)
    return written
