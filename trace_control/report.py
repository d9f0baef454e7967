"""Reports a person reads: the learning curve (PNG) and an HTML page of the run."""

from __future__ import annotations

import difflib
import html
import os
import sys
from pathlib import Path

from trace_control.runs import BEST, CONFIG, CURVE, RESULTS, RunFolder


def run_settings(run: RunFolder) -> dict:
    """The settings a run folder recorded (``config.json``), or nothing."""
    if not run.file(CONFIG).is_file():
        return {}
    recorded = run.read_json(CONFIG)
    return recorded.get("settings", recorded)


def write_curve(run: RunFolder) -> Path:
    """Validation success and the training batches' success per iteration, as ``learning_curve.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    records = run.read_log()
    validated = [(r["iteration"], r["validation"]["success_rate"]) for r in records if r.get("validation")]
    trained = [(r["iteration"], sum(e["success"] for e in r["batch"]) / len(r["batch"]))
               for r in records if r.get("batch")]
    figure, success_axis = plt.subplots(figsize=(7, 4), dpi=110)
    if validated:
        success_axis.plot(*zip(*validated), marker="o", color="tab:blue", label="validation success rate")
    if trained:
        success_axis.plot(*zip(*trained), marker=".", linestyle="--", color="tab:orange", alpha=0.7,
                          label="training batch success rate")
    success_axis.set_ylim(-0.05, 1.05)
    success_axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    success_axis.set_xlabel("iteration")
    success_axis.set_ylabel("success rate")
    success_axis.legend(loc="lower right", fontsize=8)
    config = run_settings(run)
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
    config = run_settings(run)
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
        low, high = test.get("success_interval", (0.0, 1.0))
        parts.append(f"<p>{esc(str(results.get('stopped', '')))}</p>")
        parts.append("<table><tr><th>status</th><th>best iteration (validation)</th><th>test success (95% CI)</th>"
                     "<th>test return</th><th>LLM calls</th><th>tokens</th><th>estimated cost</th></tr>")
        parts.append(f"<tr><td>{esc(str(results.get('status')))}</td><td>{results.get('best_iteration')}</td>"
                     f"<td>{test.get('success_rate', 0):.2f} ({low:.2f}-{high:.2f})</td>"
                     f"<td>{test.get('return_mean', 0):.2f} ± "
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
        batch = record["batch"]
        validation = record.get("validation")
        succeeded = sum(e["success"] for e in batch)
        seeds = ", ".join(str(e["seed"]) for e in batch)
        checked = f" Validation success: {validation['success_rate']:.2f}." if validation else ""
        parts.append(f"<div class='it'><h3>Iteration {record['iteration']}</h3><p>Training batch (placements "
                     f"{esc(seeds)}): {succeeded} of {len(batch)} succeeded.{checked}</p>")
        errors = [f"placement {e['seed']}: {e['error']}" for e in batch if e.get("error")]
        if errors:
            parts.append("<p><b>Errors</b></p><pre>" + esc("\n\n".join(text[:1500] for text in errors[:3]))
                         + "</pre>")
        if record.get("stopped"):
            parts.append(f"<p><b>Stopped:</b> {esc(record['stopped'])}</p>")
        parts.append(f"<p><b>Feedback</b></p><pre>{esc(record.get('feedback', ''))}</pre>")
        if record.get("reasoning"):
            parts.append(f"<p><b>LLM reasoning</b></p><pre>{esc(record['reasoning'])}</pre>")
        if record.get("problems"):
            parts.append("<p><b>Rejected</b></p><ul>" + "".join(f"<li>{esc(p)}</li>" for p in record["problems"])
                         + "</ul>")
        if record.get("llm_error"):
            parts.append(f"<p><b>LLM call failed</b></p><pre>{esc(record['llm_error'])}</pre>")
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
    """Write the curve, the best controller's video (optional) and the HTML page of a run.

    The video's controller runs in the jail, like every run of exported code.
    """
    from trace_control.config import config_from_record
    from trace_control.policies import ControllerCode
    from trace_control.sandbox import JailUnavailable
    from trace_control.video import record_video

    run = RunFolder(run_path)
    if not run.file(CONFIG).is_file():
        raise FileNotFoundError(f"{run_path} is not a run folder (no {CONFIG})")
    written = {"curve": write_curve(run)}
    video_name = None
    if with_video and run.file(BEST).is_file():
        config = config_from_record(run.read_json(CONFIG))
        out = run.file("best_controller.mp4")
        try:
            record_video(ControllerCode.from_file(run.file(BEST)), config.task, out, seeds=config.test_seeds[:2],
                         layout="grid", env_kwargs=config.env_kwargs(), width=240, height=240,
                         jailed=True, limits=config.jail_limits())
            written["video"] = out
            video_name = out.name
        except (JailUnavailable, ValueError, OSError) as error:
            print(f"the video could not be recorded: {error}", file=sys.stderr)
    written["html"] = write_html(run, video_name)
    return written
