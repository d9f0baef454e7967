"""Reports a person reads: the learning curve (PNG), an HTML page of a run, and runs side by side.

A run folder is an LLM run (``trace-control train``) or an RL baseline (``trace-control baseline``, its
``config.json`` names an ``algo``); each report reads both kinds.
"""

from __future__ import annotations

import difflib
import html
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from trace_control.runs import BEST, CONFIG, CURVE, RESULTS, RunFolder
from trace_control.sandbox.jail import clean_text
from trace_control.trace import atomic_write_text


def run_settings(run: RunFolder) -> dict:
    """The settings a run folder recorded (``config.json``), or nothing."""
    if not run.file(CONFIG).is_file():
        return {}
    recorded = run.read_json(CONFIG)
    return recorded.get("settings", recorded)


def is_baseline(run: RunFolder) -> bool:
    """Whether the folder holds an RL baseline run (its settings name an algorithm)."""
    return "algo" in run_settings(run)


def write_curve(run: RunFolder) -> Path:
    """``learning_curve.png``: per iteration, validation success and the training batches' success (LLM run);
    per window of environment steps, the training episodes' success rate and mean return (RL baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, success_axis = plt.subplots(figsize=(7, 4), dpi=110)
    (_plot_baseline if is_baseline(run) else _plot_iterations)(success_axis, run.read_log())
    success_axis.set_ylim(-0.05, 1.05)
    success_axis.set_ylabel("success rate")
    config = run_settings(run)
    success_axis.set_title(f"{config.get('task', '?')} — {config.get('method', '?')}")
    figure.tight_layout()
    path = run.writable(CURVE)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    try:
        with os.fdopen(handle, "wb") as stream:  # a new file of our own: never a link someone left there
            figure.savefig(stream, format="png")
        os.chmod(temporary, path.parent.stat().st_mode & 0o666)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        Path(temporary).unlink(missing_ok=True)
    return path


def _points(records: list[dict], value: Callable[[dict], float | None]) -> list[tuple[int, float]]:
    """(iteration, value) of the records that have both, as numbers; damaged or crafted records are skipped."""
    points = []
    for record in records:
        try:
            found, iteration = value(record), record["iteration"]
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        if isinstance(iteration, int) and isinstance(found, (int, float)) and not isinstance(found, bool):
            points.append((iteration, float(found)))
    return points


def _plot_iterations(success_axis, records: list[dict]) -> None:
    import matplotlib.ticker

    validated = _points(records, lambda r: r["validation"]["success_rate"] if r.get("validation") else None)
    trained = _points(records, lambda r: sum(bool(e["success"]) for e in r["batch"]) / len(r["batch"])
                      if r.get("batch") else None)
    if validated:
        success_axis.plot(*zip(*validated), marker="o", color="tab:blue", label="validation success rate")
    if trained:
        success_axis.plot(*zip(*trained), marker=".", linestyle="--", color="tab:orange", alpha=0.7,
                          label="training batch success rate")
    success_axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    success_axis.set_xlabel("iteration")
    if validated or trained:
        success_axis.legend(loc="lower right", fontsize=8)


def _plot_baseline(success_axis, records: list[dict]) -> None:
    points = [(r["env_steps"], r["success_rate"], r["return_mean"]) for r in records if r.get("kind") == "rl"]
    success_axis.set_xlabel("environment steps")
    if not points:
        return
    steps, rates, returns = zip(*points)
    success_axis.plot(steps, rates, marker="o", color="tab:blue", label="training episodes' success rate")
    return_axis = success_axis.twinx()
    return_axis.plot(steps, returns, marker=".", linestyle="--", color="tab:orange", alpha=0.8,
                     label="training episodes' mean return")
    return_axis.set_ylabel("return")
    lines = success_axis.get_lines() + return_axis.get_lines()
    success_axis.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.15),
                        ncol=2, fontsize=8)  # below the plot: the two axes' lines may cover any corner


def _code_versions(records: list[dict]) -> list[tuple[int, str, str]]:
    """(iteration, parameter, new value) for every applied code change."""
    versions = []
    for record in records:
        for name, value in (record.get("update") or {}).items():
            versions.append((record["iteration"], name, value))
    return versions


def _page_start(run: RunFolder) -> list[str]:
    """The head of a run's page: title, style, heading and where the run folder is."""
    config = run_settings(run)
    esc = html.escape
    return [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>trace-control run {esc(run.path.name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:13px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        ".add{color:#1a7f37}.del{color:#cf222e}.it{border-top:2px solid #ddd;margin-top:1.5em}</style>",
        "</head><body>",
        f"<h1>{cell(config.get('task', '?'))} — {cell(config.get('method', '?'))}</h1>",
        f"<p>Run folder <code>{esc(str(run.path))}</code>.</p>",
    ]


def cell(value: object, spec: str = "") -> str:
    """``value`` for the page: a number formatted with ``spec``, anything else as escaped text."""
    if spec and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return html.escape(str(value))


def _iteration_html(record: dict, current: dict) -> list[str]:
    """One training iteration of the log as HTML (every value from the file escaped)."""
    esc = html.escape
    parts: list[str] = []
    batch = record["batch"]
    validation = record.get("validation")
    succeeded = sum(e["success"] for e in batch)
    seeds = ", ".join(str(e["seed"]) for e in batch)
    checked = f" Validation success: {cell(validation['success_rate'], '.2f')}." if validation else ""
    parts.append(f"<div class='it'><h3>Iteration {cell(record['iteration'])}</h3><p>Training batch (placements "
                 f"{esc(seeds)}): {cell(succeeded)} of {len(batch)} succeeded.{checked}</p>")
    errors = [f"placement {e['seed']}: {e['error']}" for e in batch if e.get("error")]
    if errors:
        parts.append("<p><b>Errors</b></p><pre>" + esc("\n\n".join(text[:1500] for text in errors[:3]))
                     + "</pre>")
    if record.get("stopped"):
        parts.append(f"<p><b>Stopped:</b> {cell(record['stopped'])}</p>")
    parts.append(f"<p><b>Feedback</b></p><pre>{cell(record.get('feedback', ''))}</pre>")
    if record.get("reasoning"):
        parts.append(f"<p><b>LLM reasoning</b></p><pre>{cell(record['reasoning'])}</pre>")
    if record.get("problems"):
        parts.append("<p><b>Rejected</b></p><ul>" + "".join(f"<li>{cell(p)}</li>" for p in record["problems"])
                     + "</ul>")
    if record.get("llm_error"):
        parts.append(f"<p><b>LLM call failed</b></p><pre>{cell(record['llm_error'])}</pre>")
    for name, value in (record.get("update") or {}).items():
        old = _matching(current, name)
        parts.append(f"<p><b>Changed {cell(name)}</b></p>{_diff(old, value)}")
        _store(current, name, value)
    parts.append("</div>")
    return parts


def write_html(run: RunFolder, video: str | None = None) -> Path:
    """``report.html``: curve, per-iteration outcomes, code diffs, reasoning, token totals, video (LLM run);
    see :func:`_write_baseline_html` for an RL baseline."""
    if is_baseline(run):
        return _write_baseline_html(run)
    records = run.read_log()
    results = run.read_json(RESULTS) if run.file(RESULTS).is_file() else {}
    initial = next((r for r in records if r.get("kind") == "initial"), {})
    current = {key: value for key, value in (initial.get("parameters") or {}).items()}
    esc = html.escape
    parts = _page_start(run)
    if results:
        test, llm = results.get("test", {}), results.get("llm", {})
        cost = llm.get("cost_usd")
        low, high = test.get("success_interval", (0.0, 1.0))
        parts.append(f"<p>{esc(str(results.get('stopped', '')))}</p>")
        parts.append("<table><tr><th>status</th><th>best iteration (validation)</th><th>test success (95% CI)</th>"
                     "<th>test return</th><th>LLM calls</th><th>tokens</th><th>estimated cost</th></tr>")
        parts.append(f"<tr><td>{cell(results.get('status'))}</td><td>{cell(results.get('best_iteration'))}</td>"
                     f"<td>{cell(test.get('success_rate'), '.2f')} ({cell(low, '.2f')}-{cell(high, '.2f')})</td>"
                     f"<td>{cell(test.get('return_mean'), '.2f')} ± {cell(test.get('return_std'), '.2f')}</td>"
                     f"<td>{cell(llm.get('calls'))}</td><td>{cell(llm.get('total_tokens'), ',')}</td>"
                     f"<td>{'n/a' if cost is None else '$' + cell(cost, '.4f')}</td></tr></table>")
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
        try:
            parts += _iteration_html(record, current)
        except (KeyError, TypeError, ValueError, AttributeError):  # a damaged or crafted log line
            parts.append(f"<div class='it'><p>A log record could not be read: {cell(str(record)[:300])}</p></div>")
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


def _write_baseline_html(run: RunFolder) -> Path:
    """``report.html`` of an RL baseline: results, curve, settings, every test episode, how to load the policy."""
    from trace_control.baselines import ALGORITHMS, POLICY, TEST_EPISODES

    esc = html.escape
    settings = run_settings(run)
    results = run.read_json(RESULTS) if run.file(RESULTS).is_file() else {}
    parts = _page_start(run)
    if results:
        test = results["test"]
        low, high = test["success_interval"]
        parts.append(f"<p>{cell(results['stopped'])}; {cell(results['baseline']['library'])}, torch "
                     f"{cell(results['baseline']['torch'])}; observation: {cell(results['baseline']['observation'])}."
                     "</p>")
        parts.append("<table><tr><th>status</th><th>training steps</th><th>training time</th><th>test success "
                     "(95% CI)</th><th>test return</th><th>test placements</th></tr>")
        parts.append(f"<tr><td>{cell(results['status'])}</td><td>{cell(results['env_steps']['train'], ',')}</td>"
                     f"<td>{cell(results['seconds']['train'], '.0f')} s</td>"
                     f"<td>{cell(test['success_rate'], '.2f')} ({cell(low, '.2f')}-{cell(high, '.2f')})</td>"
                     f"<td>{cell(test['return_mean'], '.2f')} ± {cell(test['return_std'], '.2f')}</td>"
                     f"<td>{cell(settings.get('test_seeds', '?'))}</td></tr></table>")
    if run.file(CURVE).is_file():
        parts.append(f"<h2>Learning curve</h2><img src='{CURVE}' alt='learning curve' width='700'>")
    parts.append("<h2>Settings</h2><table>")
    for key in ("algo", "steps", "seed", "device", "threads", "env_kwargs", "hyperparameters", "train_seeds",
                "test_seeds"):
        parts.append(f"<tr><th>{cell(key)}</th><td>{cell(settings.get(key, ''))}</td></tr>")
    parts.append("</table>")
    if run.file(TEST_EPISODES).is_file():
        parts.append("<h2>Test episodes</h2><table><tr><th>placement</th><th>outcome</th><th>return</th>"
                     "<th>length</th></tr>")
        for episode in run.read_json(TEST_EPISODES):
            parts.append(f"<tr><td>{episode['seed']}</td><td>{'success' if episode['success'] else 'failure'}</td>"
                         f"<td>{episode['return']:.3f}</td><td>{episode['length']}</td></tr>")
        parts.append("</table>")
    use = _POLICY_USE.format(algorithm=ALGORITHMS.get(settings.get("algo", ""), "SAC"), task=settings.get("task"),
                             policy=run.file(POLICY))
    parts.append(f"<h2>Using the policy</h2><pre>{esc(use)}</pre>")
    parts.append("</body></html>")
    run.write_text("report.html", "\n".join(parts))
    return run.file("report.html")


_POLICY_USE = """import gymnasium
from stable_baselines3 import {algorithm}
from trace_control import envs

model = {algorithm}.load("{policy}", device="cpu")
env = envs.make("{task}")
observation, info = env.reset(seed=2000)
action, _ = model.predict(gymnasium.spaces.flatten(env.observation_space, observation), deterministic=True)"""


# -- runs side by side -----------------------------------------------------------------------------------------
def comparison_row(run: RunFolder) -> dict:
    """One finished run's figures for the side-by-side table; FileNotFoundError for an unfinished one.

    ``env_steps`` is what learning used (training plus validation episodes); ``learning_seconds`` is the
    wall time of learning: an RL run's training, an LLM run's iterations and validations (LLM calls
    included). Neither counts the test.
    """
    if not run.file(RESULTS).is_file():
        raise FileNotFoundError(f"{run.path} has no {RESULTS}: only finished runs can be compared")
    results, settings = run.read_json(RESULTS), run_settings(run)
    baseline = is_baseline(run)
    seconds = results["seconds"]["train"]
    if baseline:
        learner, tokens = f"RL: {results['baseline']['algorithm']}", None
    else:
        learner, tokens = f"LLM: {results['llm'].get('model') or '?'}", results["llm"]["total_tokens"]
    return {"run": run.path.name, "task": results["task"], "method": results["method"], "learner": learner,
            "test_success": results["test"]["success_rate"], "test_interval": results["test"]["success_interval"],
            "test_placements": settings.get("test_seeds", str(results.get("test_seeds", "?"))),
            "return_mean": results["test"]["return_mean"], "return_std": results["test"]["return_std"],
            "env_steps": results["env_steps"]["train"] + results["env_steps"]["validation"],
            "learning_seconds": round(seconds, 1), "llm_tokens": tokens}


def comparison_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (by task, then method), with a note on what each column counts."""
    lines = ["| task | method | learner | test success (95% CI) | test return | env steps | learning time | "
             "LLM tokens | run |", "|---" * 9 + "|"]
    for row in sorted(rows, key=lambda row: (row["task"], row["method"], row["run"])):
        low, high = row["test_interval"]
        tokens = "-" if row["llm_tokens"] is None else f"{row['llm_tokens']:,}"
        lines.append(f"| {row['task']} | {row['method']} | {row['learner']} | {row['test_success']:.2f} "
                     f"({low:.2f}-{high:.2f}) | {row['return_mean']:.2f} ± {row['return_std']:.2f} | "
                     f"{row['env_steps']:,} | {_duration(row['learning_seconds'])} | {tokens} | {row['run']} |")
    notes = ["", "Test: the final controller or policy (an LLM run's is chosen on validation), once per test "
             "placement. Env steps: training and validation episodes (Meta-World: macro-steps). Learning time: "
             "wall time of training (LLM runs: iterations, validations and LLM calls), without the test."]
    for task in sorted({row["task"] for row in rows}):
        placements = {row["test_placements"] for row in rows if row["task"] == task}
        if len(placements) > 1:
            notes.append(f"Warning: the {task} runs were tested on different placements "
                         f"({', '.join(sorted(placements))}); their success rates are not comparable.")
        else:
            notes.append(f"{task}: every run tested on placements {placements.pop()}.")
    return clean_text("\n".join(lines + notes) + "\n")  # names and numbers from files: no terminal escapes


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{rest:02d}s" if minutes else f"{rest}s")


def write_comparison(run_paths: list[str | Path], out: str | Path) -> str:
    """Compare finished runs (LLM and RL alike) in one Markdown table written to ``out``; return its text.

    Raises FileNotFoundError naming a folder that is not a finished run.
    """
    rows = []
    for path in run_paths:
        run = RunFolder(path)
        if not run.file(CONFIG).is_file():
            raise FileNotFoundError(f"{path} is not a run folder (no {CONFIG})")
        rows.append(comparison_row(run))
    text = comparison_table(rows)
    atomic_write_text(out, text)
    return text


def make_report(run_path: str | Path, with_video: bool = True) -> dict[str, Path]:
    """Write the curve, the best controller's video (optional) and the HTML page of a run.

    The video's controller runs in the jail, like every run of exported code. An RL baseline has no
    controller file, so no video.
    """
    from trace_control.config import config_from_record
    from trace_control.policies import ControllerCode
    from trace_control.sandbox import JailUnavailable
    from trace_control.video import record_video

    run = RunFolder(run_path)
    if not run.file(CONFIG).is_file():
        raise FileNotFoundError(f"{run_path} is not a run folder (no {CONFIG})")
    run.check_links()
    written = {"curve": write_curve(run)}
    video_name = None
    if with_video and run.file(BEST).is_file():
        config = config_from_record(run.read_json(CONFIG), continuing=False)
        out = run.writable("best_controller.mp4")
        try:  # always jailed, with the default limits: the run folder chooses neither
            record_video(ControllerCode.from_file(run.file(BEST)), config.task, out, seeds=config.test_seeds[:2],
                         layout="grid", env_kwargs=config.env_kwargs(), width=240, height=240, jailed=True)
            written["video"] = out
            video_name = out.name
        except (JailUnavailable, ValueError, OSError) as error:
            print(f"the video could not be recorded: {error}", file=sys.stderr)
    written["html"] = write_html(run, video_name)
    return written
