"""``trace-control``: train, evaluate, record and report LLM-optimized robot controllers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_USAGE = 2

EPILOG = """examples:
  trace-control list
  trace-control train reach --iterations 10
  trace-control train --resume runs/reach-trace-20260101-120000
  trace-control train reach --replay runs/reach-trace-20260101-120000
  trace-control evaluate runs/reach-trace-20260101-120000 --episodes 50 --workers 2
  trace-control record runs/reach-trace-20260101-120000 --out videos/reach.mp4
  trace-control report runs/reach-trace-20260101-120000
  trace-control experiment --tasks reach,push --methods trace,opro --seeds 0-2

The LLM: set OPENAI_API_KEY (OpenAI), or OPENAI_BASE_URL for any OpenAI-compatible server
(Ollama, vLLM, llama.cpp), and TRACE_CONTROL_MODEL (or --model) for the model name."""


class UsageError(Exception):
    """Bad input found before any work started."""


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"trace-control: error: {message}", file=sys.stderr)
    return code


def _llm_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LLM")
    group.add_argument("--model", help="model name (default: $TRACE_CONTROL_MODEL or gpt-4o)")
    group.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 "
                                          "(default: $OPENAI_BASE_URL or the OpenAI API)")
    group.add_argument("--temperature", type=float, help="sampling temperature (default: the server's)")


def _training_options(parser: argparse.ArgumentParser) -> None:
    from trace_control.config import METHOD_HELP

    group = parser.add_argument_group("training settings (defaults: trace_control/configs/<task>.json)")
    methods = "; ".join(f"{name}: {text}" for name, text in METHOD_HELP.items())
    group.add_argument("--method", help=f"a preset of optimizer, memory and masking ({methods}); custom: "
                                        "use --optimizer/--memory/--mask as given")
    group.add_argument("--optimizer", choices=["optoprime", "opro"], help="the optimizer (with --method custom)")
    group.add_argument("--memory", type=int, dest="memory_size", help="past (variables, feedback) pairs shown")
    group.add_argument("--mask", help="comma-separated report sections to hide, e.g. Inputs,Others,Code")
    group.add_argument("--iterations", type=int, help="optimization iterations (one rollout and one update each)")
    group.add_argument("--horizon", type=int, help="steps per episode (Meta-World default 10)")
    group.add_argument("--feedback", dest="feedback_types",
                       help="Meta-World feedback types, e.g. 'r hp hn fp' (reward, hindsight +/-, future positive)")
    group.add_argument("--action-mode", choices=["relative", "absolute", "native"], help="Meta-World action mode")
    group.add_argument("--train-seed", type=int, help="placement seed of the training episodes")
    group.add_argument("--eval-seeds", help="held-out seeds, e.g. 100-109 or 100,105")
    group.add_argument("--eval-every", type=int, help="evaluate every N iterations")
    group.add_argument("--candidates", type=int, dest="num_candidates",
                       help="suggestions per step; each is tried on the training placement and the best kept")
    group.add_argument("--stop-at-success", action="store_true", default=None,
                       help="stop once the evaluation success rate reaches 1.0")
    group.add_argument("--workers", type=int, help="parallel evaluation workers")
    group.add_argument("--in-process", action="store_true",
                       help="run controller code in this process (no sandbox: only for trusted code)")
    group.add_argument("--step-seconds", type=float, help="time limit of one controller call")
    group.add_argument("--controller", help="starting controller as package.module:Class (default: the task's)")
    group.add_argument("--config", help="a JSON file of settings (applied before the options above)")


def _overrides(args: argparse.Namespace) -> dict:
    from trace_control.config import parse_seeds

    keys = ["method", "optimizer", "memory_size", "iterations", "horizon", "feedback_types", "action_mode",
            "train_seed", "eval_every", "num_candidates", "stop_at_success", "workers", "step_seconds",
            "controller", "model", "base_url", "temperature"]
    values = {key: getattr(args, key, None) for key in keys}
    if getattr(args, "mask", None) is not None:
        values["mask"] = [s.strip() for s in args.mask.split(",") if s.strip()]
    if getattr(args, "eval_seeds", None):
        values["eval_seeds"] = parse_seeds(args.eval_seeds)
    if getattr(args, "in_process", False):
        values["isolated"] = False
    customised = values.get("optimizer") or values.get("memory_size") is not None or "mask" in values
    if customised and values.get("method") is None:
        values["method"] = "custom"
    return {k: v for k, v in values.items() if v is not None}


# -- list -----------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from trace_control import controllers, envs
    from trace_control.config import METHOD_HELP
    from trace_control.controllers.experts import EXPERTS

    print("tasks:")
    for info in envs.TASKS.values():
        print(f"  {info.name:<26} {info.env_id:<44} success: {info.success}")
    print("\nstarting controllers (naive by design):")
    for task, reference in controllers.STARTING.items():
        print(f"  {task:<26} {reference}")
    print("\nreference controllers (hand-written, use 'expert' as CONTROLLER):")
    for task, cls in EXPERTS.items():
        print(f"  {task:<26} controllers.experts:{cls.__name__}")
    print("\nmethods:")
    for name, text in METHOD_HELP.items():
        print(f"  {name:<26} {text}")
    return 0


# -- train ----------------------------------------------------------------------------------
def _make_llm(config, replay: Path | None = None):
    from trace_control.llm import LLMClient

    llm = LLMClient(model=config.model, base_url=config.base_url, temperature=config.temperature, replay=replay)
    config.model = llm.model  # the run folder names the model that answered, so a replay asks the same
    return llm


def _replay_source(value: str) -> tuple[Path, Path | None]:
    """(recording file, run folder or None) for ``--replay``."""
    from trace_control.runs import LLM_CALLS

    path = Path(value)
    if path.is_dir():
        if not (path / LLM_CALLS).is_file():
            raise UsageError(f"{path} has no {LLM_CALLS} to replay")
        return path / LLM_CALLS, path
    if not path.is_file():
        raise UsageError(f"no recording at {path}")
    return path, None


def cmd_train(args: argparse.Namespace) -> int:
    from trace_control.config import ConfigError, build_config
    from trace_control.llm import LLMNotConfiguredError, Recorder
    from trace_control.runs import CONFIG, LLM_CALLS, STATE, RunFolder
    from trace_control.train import Trainer

    try:
        if args.resume:
            run = RunFolder(args.resume)
            if not run.file(CONFIG).is_file() or not run.file(STATE).is_file():
                raise UsageError(f"{args.resume} is not a run folder that can be resumed (no {CONFIG} / {STATE})")
            saved = run.read_json(CONFIG)
            config = build_config(saved["task"], {k: v for k, v in saved.items() if k != "task"})
            replay = None
        else:
            replay, replay_run = _replay_source(args.replay) if args.replay else (None, None)
            task = args.task
            base: dict = {}
            if replay_run is not None:
                base = {k: v for k, v in json.loads((replay_run / CONFIG).read_text()).items() if k != "task"}
                task = task or json.loads((replay_run / CONFIG).read_text())["task"]
            if not task:
                raise UsageError("name a task (see 'trace-control list'), or --resume a run")
            config = build_config(task, {**base, **_overrides(args)}, args.config)
        llm = _make_llm(config, replay)
    except (ConfigError, UsageError, FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    except LLMNotConfiguredError as error:
        return _fail(str(error))
    if not args.resume:
        run = RunFolder.create(args.runs_dir, config.task, config.label(), args.run_name)
    llm.recorder = Recorder(run.file(LLM_CALLS))
    print(f"training {config.task} with {config.label()} for {config.iterations} iterations; LLM: {llm.source}; "
          f"run folder: {run.path}")
    try:
        result = Trainer(config, run, llm, progress=not args.no_progress).train(resume=bool(args.resume))
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: trace-control train --resume {run.path}", file=sys.stderr)
        return 130
    return 1 if result.stopped_reason and "failed" in result.stopped_reason else 0


# -- evaluate / record ------------------------------------------------------------------------
def _controller_source(value: str, task: str | None):
    """(spec or module, task) for a CONTROLLER argument: a .py file, a run folder, 'starting' or 'expert'."""
    from trace_control import controllers
    from trace_control.evaluation import ControllerSpec
    from trace_control.runs import BEST, CONFIG

    path = Path(value)
    if path.is_dir():
        if not (path / BEST).is_file():
            raise UsageError(f"{path} has no {BEST}")
        saved_task = json.loads((path / CONFIG).read_text())["task"] if (path / CONFIG).is_file() else None
        return ControllerSpec.from_file(path / BEST), task or saved_task
    if value in ("starting", "expert"):
        if not task:
            raise UsageError(f"'{value}' needs --task")
        try:
            make = controllers.starting_controller if value == "starting" else controllers.expert_controller
            module = make(task)
        except KeyError as error:
            raise UsageError(str(error.args[0])) from None
        return module, task
    if path.suffix == ".py":
        if not path.is_file():
            raise UsageError(f"no controller file at {path}")
        return ControllerSpec.from_file(path), task
    raise UsageError(f"cannot use {value!r} as a controller: give an exported .py file, a run folder, "
                     "'starting' or 'expert'")


def _env_kwargs(task: str, args: argparse.Namespace) -> dict:
    from trace_control.config import build_config

    overrides = {"horizon": getattr(args, "horizon", None)}
    return build_config(task, {k: v for k, v in overrides.items() if v is not None}).env_kwargs()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trace_control.config import ConfigError, parse_seeds
    from trace_control.runners import make_runner

    try:
        controller, task = _controller_source(args.controller, args.task)
        if not task:
            raise UsageError("--task is needed for a controller file")
        if args.episodes < 1 or args.workers < 1:
            raise UsageError("--episodes and --workers must be at least 1")
        seeds = parse_seeds(args.seeds) if args.seeds else list(range(100, 100 + args.episodes))
        env_kwargs = _env_kwargs(task, args)
    except (UsageError, ConfigError, FileNotFoundError) as error:
        return _fail(str(error))
    runner = make_runner(task, env_kwargs, args.workers, not args.in_process, seeds)
    try:
        started = time.perf_counter()
        report = runner.evaluate(controller, seeds)
        elapsed = time.perf_counter() - started
    finally:
        runner.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    for episode in report.episodes:
        error = f"  error: {episode['error'][:100]}" if episode.get("error") else ""
        print(f"  seed {episode['seed']:>5}  {'success' if episode['success'] else 'failure':<8} "
              f"return {episode['return']:>9.3f}  length {episode['length']:>4}{error}")
    print(f"{report.line()} ({args.workers} worker(s), {elapsed:.1f} s)")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from trace_control.config import ConfigError, parse_seeds
    from trace_control.video import record_video

    try:
        controller, task = _controller_source(args.controller, args.task)
        if not task:
            raise UsageError("--task is needed for a controller file")
        seeds = parse_seeds(args.seeds)
        env_kwargs = _env_kwargs(task, args)
    except (UsageError, ConfigError, FileNotFoundError) as error:
        return _fail(str(error))
    out = Path(args.out or f"videos/{task}-{Path(args.controller).stem}.mp4")
    path = record_video(controller, task, out, seeds=seeds, layout=args.layout, fps=args.fps, env_kwargs=env_kwargs,
                        width=args.size, height=args.size)
    print(f"wrote {path}")
    return 0


# -- report / experiment ----------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from trace_control.report import make_report

    try:
        written = make_report(args.run, with_video=not args.no_video)
    except FileNotFoundError as error:
        return _fail(str(error))
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from trace_control.config import ConfigError, parse_seeds
    from trace_control.experiment import recording_llm, run_experiment
    from trace_control.llm import LLMClient, LLMNotConfiguredError

    try:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        seeds = parse_seeds(args.seeds)
        LLMClient(model=args.model, base_url=args.base_url)  # fail now, not after the first run
        overrides = {k: v for k, v in {"iterations": args.iterations, "model": args.model,
                                       "workers": args.workers}.items() if v is not None}
        if args.in_process:
            overrides["isolated"] = False
        out = Path(args.out or f"experiments/{time.strftime('%Y%m%d-%H%M%S')}")
        summary_args = (tasks, methods, seeds, out)
        run_experiment(*summary_args, recording_llm(args.model, args.base_url, args.temperature), overrides,
                       progress=not args.no_progress)
    except (ConfigError, UsageError) as error:
        return _fail(str(error))
    except LLMNotConfiguredError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue", file=sys.stderr)
        return 130
    print(f"wrote {out}/summary.md, summary.json, summary.csv, learning_curves.png")
    return 0


CONTROLLER_HELP = ("CONTROLLER: an exported .py file, a run folder (its best controller), 'starting' or 'expert' "
                   "(the task's starting or reference controller).")


def _controller_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every command that runs one controller takes."""
    parser.add_argument("controller")
    parser.add_argument("--task", help="task (read from the run folder when omitted)")
    parser.add_argument("--horizon", type=int, help="steps per episode")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trace-control", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Train robot controllers with Trace: an LLM (OptoPrime) rewrites a controller's code and "
                    "constants from the execution trace and text feedback of simulated episodes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    listing = sub.add_parser("list", help="tasks, controllers and methods",
                             description="List the tasks (id, short name, what success means), the controllers "
                                         "and the training methods.")
    listing.set_defaults(func=cmd_list)

    train = sub.add_parser("train", help="train a controller on a task",
                           description="Run the Trace loop: per iteration one traced episode on the training "
                                       "placement, feedback to the controller's parameters, one OptoPrime (or OPRO) "
                                       "update, an evaluation on held-out placements, a log line and a checkpoint. "
                                       "Writes runs/<task>-<method>-<time>/.")
    train.add_argument("task", nargs="?", help="task short name or id (see 'trace-control list')")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last finished iteration")
    train.add_argument("--replay", metavar="RUN_OR_FILE",
                       help="answer LLM calls from a recording (a run folder or its llm_calls.jsonl), offline")
    train.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    train.add_argument("--run-name", help="name of the run folder (default: <task>-<method>-<time>)")
    train.add_argument("--no-progress", action="store_true", help="plain lines instead of a progress bar")
    _training_options(train)
    _llm_options(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="success rate and return of a controller over many seeds",
                              description="Run a controller (untraced) once per held-out seed and report success "
                                          "rate and return. " + CONTROLLER_HELP)
    _controller_arguments(evaluate)
    evaluate.add_argument("--episodes", type=int, default=10, help="number of seeds, from 100 up (default 10)")
    evaluate.add_argument("--seeds", help="explicit seeds, e.g. 100-149 (overrides --episodes)")
    evaluate.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    evaluate.add_argument("--in-process", action="store_true", help="run the controller in this process (no sandbox)")
    evaluate.add_argument("--json", action="store_true", help="print the full report as JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    record = sub.add_parser("record", help="record a video of a controller",
                            description="Record episodes of a controller to mp4 (or .gif), headless, with a "
                                        "caption of task, seed and outcome. " + CONTROLLER_HELP)
    _controller_arguments(record)
    record.add_argument("--out", help="output file (default videos/<task>-<controller>.mp4)")
    record.add_argument("--seeds", default="100", help="one episode per seed, e.g. 100-103 (default 100)")
    record.add_argument("--layout", choices=["sequence", "grid"], default="sequence",
                        help="episodes one after another or side by side")
    record.add_argument("--fps", type=int, default=20)
    record.add_argument("--size", type=int, default=320, help="frame width and height in pixels")
    record.set_defaults(func=cmd_record)

    report = sub.add_parser("report", help="learning curve (PNG) and an HTML page of a run",
                            description="Write learning_curve.png and report.html (curve, code diffs per "
                                        "iteration, the LLM's reasoning, token and cost totals, a video of the best "
                                        "controller) into the run folder.")
    report.add_argument("run")
    report.add_argument("--no-video", action="store_true", help="skip recording the best controller's video")
    report.set_defaults(func=cmd_report)

    experiment = sub.add_parser("experiment", help="the paper's experiment: tasks x methods x seeds",
                                description="Train every (task, method, seed), then write a summary table (test "
                                            "success per method and task, mean over seeds) and plots. Finished runs "
                                            "are kept: re-running the command continues the experiment.")
    experiment.add_argument("--tasks", default="reach,push,pick-place")
    experiment.add_argument("--methods", default="trace,nomem,masked,opro")
    experiment.add_argument("--seeds", default="0-9", help="training placement seeds, e.g. 0-9")
    experiment.add_argument("--iterations", type=int, help="iterations per run (default: per task)")
    experiment.add_argument("--workers", type=int, help="parallel evaluation workers")
    experiment.add_argument("--in-process", action="store_true", help="no sandbox (trusted code only)")
    experiment.add_argument("--out", help="experiment folder (default experiments/<time>)")
    experiment.add_argument("--no-progress", action="store_true")
    _llm_options(experiment)
    experiment.set_defaults(func=cmd_experiment)
    return parser


def main(argv: list[str] | None = None) -> int:
    from trace_control.envs.base import ensure_headless_rendering

    ensure_headless_rendering()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
