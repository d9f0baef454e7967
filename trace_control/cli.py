"""``trace-control``: train, evaluate, record and report LLM-optimized robot controllers.

Every command checks its input before any work and ends with an exit code that means
something: 0 done, 1 the work failed, 2 bad input or a missing prerequisite (one line
saying what and how to fix it; ``--debug`` shows the traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import typing
from pathlib import Path
from typing import Any

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

EPILOG = """examples:
  trace-control list
  trace-control list push
  trace-control train reach --iterations 10
  trace-control train --resume runs/reach-trace-20260101-120000
  trace-control train reach --replay runs/reach-trace-20260101-120000
  trace-control evaluate runs/reach-trace-20260101-120000 --episodes 50 --workers 2
  trace-control evaluate expert --task push
  trace-control record runs/reach-trace-20260101-120000 --out videos/reach.mp4
  trace-control report runs/reach-trace-20260101-120000
  trace-control experiment --tasks reach,push --methods trace,opro --seeds 0-2
  trace-control experiment --tasks reach,push --seeds 0-9 --ray auto --llm-concurrency 8 --max-cost 20

The LLM: set OPENAI_API_KEY (OpenAI), or OPENAI_BASE_URL for any OpenAI-compatible server
(Ollama, vLLM, llama.cpp), and TRACE_CONTROL_MODEL (or --model) for the model name.
Controller code runs in a bubblewrap jail (install: apt-get install bubblewrap libseccomp2);
--in-process runs it unprotected instead, for code you trust."""

CONTROLLER_HELP = ("CONTROLLER is an exported .py file (best_controller.py), a run folder (its best controller), "
                   "'starting' or 'expert' (the task's starting or hand-written reference controller), or "
                   "package.module:Class (or package.module holding one controller class).")


class UsageError(Exception):
    """Bad input found before any work started; the message says what and how to fix it."""


class Failed(Exception):
    """The command could not do its job (exit 1); the message says why."""


# -- settings, generated from the config dataclass ----------------------------------------------------
def _flag(name: str) -> str:
    from trace_control.config import FIELDS

    return FIELDS[name].metadata.get("flag") or "--" + name.replace("_", "-")


def _value_parser(name: str):
    from trace_control.config import SEED_FIELDS, ConfigError, _kind, parse_seeds

    kind, _ = _kind(name)

    def parse(text: str) -> Any:
        try:
            if name in SEED_FIELDS:
                return parse_seeds(text, _flag(name))
            if kind == list[str]:
                return [part.strip() for part in text.split(",") if part.strip()]
            return {int: int, float: float}.get(kind, str)(text)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") \
                from None

    return parse


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line that says where to look."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"trace-control: error: {message} (see '{self.prog} --help')\n")


def add_settings(parser: argparse.ArgumentParser, names: typing.Iterable[str] | None = None) -> None:
    """Add the command-line options of the config fields ``names`` (all but ``task`` by default)."""
    from trace_control.config import FIELDS, _kind

    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in names or [n for n in FIELDS if n != "task"]:
        spec = FIELDS[name]
        group_name = spec.metadata["group"]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(f"{group_name} settings")
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        shown = _shown_default(name, default)
        help_text = f"{spec.metadata['help']} (default: {shown})"
        kind, _ = _kind(name)
        if kind is bool:
            groups[group_name].add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                            default=None, help=help_text)
        else:
            groups[group_name].add_argument(_flag(name), dest=name, type=_value_parser(name), default=None,
                                            choices=spec.metadata.get("choices"), help=help_text,
                                            metavar=spec.metadata.get("metavar") or name.upper())


def _shown_default(name: str, value: Any) -> str:
    from trace_control.config import SEED_FIELDS, format_seeds

    if name in SEED_FIELDS:
        return format_seeds(value)
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def settings_given(args: argparse.Namespace) -> dict:
    """The settings the user typed (None: not given)."""
    from trace_control.config import FIELDS

    return {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}


# -- list ----------------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from trace_control import controllers, envs
    from trace_control.config import METHOD_HELP, PROTOCOL_HELP

    if args.task:
        info = _task(args.task)
        env = envs.make(info.name)
        try:
            print(f"{info.name} ({info.env_id}, {info.family})")
            for label, attribute in (("instruction", "instruction"), ("hint", "task_hint"),
                                     ("success", "success_criterion")):
                print(f"  {label}: {env.get_wrapper_attr(attribute)}")
            print(f"  observation space: {env.observation_space}")
            print(f"  action space: {env.action_space}")
            print(f"  starting controller: {controllers.STARTING.get(info.name, '-')}")
        finally:
            env.close()
        return 0
    from trace_control.controllers.experts import EXPERTS

    print("tasks (details: trace-control list TASK):")
    for info in envs.TASKS.values():
        print(f"  {info.name:<26} {info.env_id:<46} success: {info.success}")
    sections = {
        "task sets (--tasks NAME in experiment)": {
            name: f"{len(members)} tasks: {', '.join(members[:6])}{', ...' if len(members) > 6 else ''}"
            for name, members in envs.TASK_SETS.items()},
        "reference controllers ('expert' as CONTROLLER)": {
            task: f"{cls.__module__}:{cls.__name__}" for task, cls in EXPERTS.items()},
        "methods (--method)": METHOD_HELP,
        "protocols (--protocol)": PROTOCOL_HELP,
    }
    for title, rows in sections.items():
        print(f"\n{title}:")
        for name, text in rows.items():
            print(f"  {name:<26} {text}")
    return 0


def _task(name: str):
    from trace_control import envs

    try:
        return envs.resolve(name)
    except envs.UnknownTaskError as error:
        raise UsageError(str(error)) from None


# -- train ---------------------------------------------------------------------------------------------
def _make_llm(config, replay: Path | None = None):
    from trace_control.llm import LLMClient, LLMNotConfiguredError

    try:
        llm = LLMClient(model=config.model, base_url=config.base_url, temperature=config.temperature, replay=replay)
    except LLMNotConfiguredError as error:
        raise UsageError(str(error)) from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read the recording {replay}: {error}") from None
    config.model = llm.model  # the run folder names the model that answered, so a replay asks the same
    return llm


def _replay_source(value: str) -> tuple[Path, Path | None]:
    """(recording file, run folder or None) for ``--replay``."""
    from trace_control.runs import LLM_CALLS

    path = Path(value)
    if path.is_dir():
        if not (path / LLM_CALLS).is_file():
            raise UsageError(f"{path} has no {LLM_CALLS} to replay; give a run folder of a finished run")
        return path / LLM_CALLS, path
    if not path.is_file():
        raise UsageError(f"no recording at {path}; give a run folder or its {LLM_CALLS}")
    return path, None


def _runner_for(config):
    """The runner a config asks for, started now: a command that cannot jail its code stops here."""
    from trace_control.runners import make_runner
    from trace_control.sandbox import JailUnavailable

    runner = make_runner(config.task, config.env_kwargs(), config.workers, not config.in_process,
                         config.jail_limits())
    try:
        runner.start()
    except JailUnavailable as error:
        runner.close()
        raise UsageError(f"cannot run controller code safely: {error}") from None
    if config.in_process:
        print("warning: --in-process: controller code runs in this process, without the jail", file=sys.stderr)
    return runner


def cmd_train(args: argparse.Namespace) -> int:
    from trace_control.config import build_config, config_from_record, read_config_file, recorded_settings
    from trace_control.llm import Recorder, ReplayMissError
    from trace_control.runs import CONFIG, LLM_CALLS, STATE, RunFolder
    from trace_control.train import Trainer

    if args.resume:
        run = RunFolder(args.resume)
        if not run.file(CONFIG).is_file() or not run.file(STATE).is_file():
            raise UsageError(f"{args.resume} is not a run folder that can be resumed (no {CONFIG} / {STATE})")
        run.check_links()
        given = settings_given(args)
        if set(given) - {"in_process", "base_url", "controller", "model"} or args.config or args.replay:
            raise UsageError("--resume continues a run with its recorded settings; give no other settings "
                             "(--in-process, --base-url, --model and --controller aside)")
        saved = json.loads(run.file(CONFIG).read_text(encoding="utf-8"))
        config, sources = config_from_record(saved, given), saved.get("sources", {})
        llm = _make_llm(config)
    else:
        replay, replay_run = _replay_source(args.replay) if args.replay else (None, None)
        task, base = args.task, {}
        if replay_run is not None:
            if not (replay_run / CONFIG).is_file():
                raise UsageError(f"{replay_run} has no {CONFIG}: replay needs the recorded run's settings")
            base = {k: v for k, v in recorded_settings(read_config_file(replay_run / CONFIG),
                                                       settings_given(args)).items() if k != "task"}
            recorded_task = read_config_file(replay_run / CONFIG).get("task")
            if task and _task(task).name != recorded_task:
                raise UsageError(f"the recording is of {recorded_task}, not {_task(task).name}: a replay "
                                 "re-runs the recorded task")
            task = recorded_task
        if not task:
            raise UsageError("name a task (see 'trace-control list'), or --resume a run")
        config, sources = build_config(task, {**base, **settings_given(args)}, args.config)
        llm = _make_llm(config, replay)
    runner = _runner_for(config)
    try:
        if not args.resume:
            try:
                run = RunFolder.create(args.runs_dir, config.task, config.label(), args.run_name)
            except OSError as error:
                raise UsageError(f"cannot create the run folder in {args.runs_dir}: "
                                 f"{error.strerror or error}") from None
        llm.recorder = Recorder(run.writable(LLM_CALLS))
        print(f"training {config.task} with {config.label()} ({config.protocol} protocol) for up to "
              f"{config.iterations} iterations; LLM: {llm.source}; run folder: {run.path}")
        trainer = Trainer(config, run, llm, runner=runner, progress=not args.no_progress, sources=sources)
        try:
            result = trainer.train(resume=bool(args.resume))
        except ReplayMissError as error:
            raise Failed(f"{error}. The run stopped at iteration {trainer.state.iteration + 1}; its folder is "
                         f"{run.path}") from None
        except KeyboardInterrupt:
            print(f"\ninterrupted; continue with: trace-control train --resume {run.path}", file=sys.stderr)
            return EXIT_INTERRUPTED
    finally:
        runner.close()
    if result.results["status"] != "completed":
        raise Failed(f"{result.results['status']} ({result.stopped_reason}); see {run.path}/log.jsonl")
    if result.stopped_reason and result.stopped_reason.startswith("stopped after"):
        raise Failed(result.stopped_reason)
    return 0


# -- the controller argument of evaluate / record ------------------------------------------------------
def resolve_controller(value: str, task: str | None) -> tuple[Any, str]:
    """(ControllerCode, task short name) for a CONTROLLER argument (see CONTROLLER_HELP)."""
    from trace_control import controllers
    from trace_control.policies import ControllerCode
    from trace_control.runs import BEST, CONFIG

    task = _task(task).name if task else None
    path = Path(value)
    if path.is_dir():
        if not (path / BEST).is_file():
            raise UsageError(f"{path} is a folder without {BEST}; give a run folder or an exported file")
        saved = (json.loads((path / CONFIG).read_text()).get("settings", {}).get("task")
                 if (path / CONFIG).is_file() else None)
        if not (task or saved):
            raise UsageError(f"{path} does not say its task; add --task")
        return _file_code(path / BEST), task or saved
    if value in ("starting", "expert"):
        if not task:
            raise UsageError(f"'{value}' needs --task (see 'trace-control list')")
        try:
            module = (controllers.starting_controller if value == "starting" else controllers.expert_controller)(task)
        except KeyError as error:
            raise UsageError(str(error.args[0])) from None
        return ControllerCode.from_module(module), task
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise UsageError(f"no controller file at {path}")
        if not task:
            raise UsageError(f"{path} does not say its task; add --task (see 'trace-control list')")
        return _file_code(path), task
    if not task:
        raise UsageError(f"{value} does not say its task; add --task (see 'trace-control list')")
    return ControllerCode.from_module(_module_controller(value)), task


def _file_code(path: Path):
    """An exported file as code for the jail; a file that is not one gets a clear line."""
    import ast

    from trace_control.policies import ControllerCode

    try:
        code = ControllerCode.from_file(path)
        tree = ast.parse(code.source)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    except SyntaxError as error:
        raise UsageError(f"{path} is not valid Python (line {error.lineno}: {error.msg})") from None
    if not any(isinstance(item, ast.FunctionDef) and item.name == "load" for item in tree.body):
        classes = [item.name for item in tree.body if isinstance(item, ast.ClassDef)]
        hint = (f" It defines {', '.join(classes)}: if that is a controller module, give it as "
                f"package.module:{classes[0]}" if classes else "")
        raise UsageError(f"{path} is not an exported controller (it has no load() function).{hint}")
    return code


def _module_controller(reference: str):
    """A controller Module from ``package.module:Class`` or ``package.module`` (one controller class)."""
    import importlib

    from trace_control import controllers

    module_name, _, class_name = reference.partition(":")
    try:
        if class_name:
            return controllers.import_class(reference)()
        module = importlib.import_module(module_name)
    except (ImportError, AttributeError, ValueError, TypeError) as error:
        raise UsageError(f"cannot use {reference!r} as a controller ({error}). {CONTROLLER_HELP}") from None
    found = [value for value in vars(module).values() if isinstance(value, type)
             and issubclass(value, controllers.Controller) and value is not controllers.Controller
             and value.__module__ == module.__name__]
    if len(found) != 1:
        raise UsageError(f"{module_name} holds {len(found)} controller classes; name one as {module_name}:Class")
    return found[0]()


def _env_kwargs(task: str, args: argparse.Namespace) -> dict:
    from trace_control.config import build_config

    config, _ = build_config(task, {"horizon": getattr(args, "horizon", None)})
    return config.env_kwargs()


def _seeds(args: argparse.Namespace, default_start: int) -> list[int]:
    from trace_control.config import parse_seeds

    if args.seeds is not None:
        return parse_seeds(args.seeds, "--seeds")
    if args.episodes < 1:
        raise UsageError("--episodes must be at least 1")
    return list(range(default_start, default_start + args.episodes))


def _static_advice(code) -> None:
    """Print what the static check flags in an exported file (advice: the jail is the wall)."""
    from trace_control.sandbox.checks import check_file

    problems = check_file(code.source)
    for problem in problems[:5]:
        print(f"note: {code.filename}: {problem} (it runs in the jail all the same)", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trace_control.config import build_config
    from trace_control.runners import evaluate

    code, task = resolve_controller(args.controller, args.task)
    seeds = _seeds(args, 100)
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.workers is not None and args.ray is not None:
        raise UsageError("--workers is for this machine; with --ray every CPU of the cluster runs episodes")
    config, _ = build_config(task, {"horizon": args.horizon, "workers": args.workers or 1,
                                    "in_process": args.in_process, "step_seconds": args.step_seconds})
    _static_advice(code)
    if config.in_process and code.filename != "controller.py":
        from trace_control.sandbox.checks import check_file

        if check_file(code.source):
            raise UsageError(f"{code.filename} reaches outside a controller's job (see the notes above): run it "
                             "in the jail (drop --in-process)")
    if args.ray is None:
        runner = _runner_for(config)
    else:
        from trace_control.sandbox import JailUnavailable

        distributed = _ray_backend(args.ray, quiet=args.json)
        runner = distributed.RayRunner(task, config.env_kwargs(), not config.in_process, config.jail_limits())
        try:
            runner.start()
        except JailUnavailable as error:
            raise UsageError(f"cannot run controller code safely on the Ray nodes: {error}") from None
    if not args.json:
        print(f"evaluating on {task} over {len(seeds)} placements; controller code runs in: {runner.isolation}")
    try:
        from tqdm import tqdm

        with tqdm(total=len(seeds), desc="evaluate", unit="ep", leave=False,
                  disable=args.json or not sys.stderr.isatty()) as bar:
            report = evaluate(runner, code, seeds, progress=bar.update)
    finally:
        runner.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    for episode in report.episodes:
        error = f"  error: {episode['error'].splitlines()[0][:120]}" if episode.get("error") else ""
        print(f"  seed {episode['seed']:>5}  {'success' if episode['success'] else 'failure':<8} "
              f"return {episode['return']:>9.3f}  length {episode['length']:>4}{error}")
    print(f"{report.line()} ({report.workers} worker(s), {report.seconds:.1f} s)")
    return 0


def _ray_backend(address: str, quiet: bool = False):
    """:mod:`trace_control.distributed`, joined to the cluster at ``address`` ("" starts a local instance)."""
    try:
        from trace_control import distributed
    except ImportError as error:
        if error.name is None or error.name.split(".")[0] != "ray":
            raise
        raise UsageError('--ray needs Ray, which is not installed: pip install "trace-control[ray]"') from None
    try:
        line = distributed.connect(address or None)
    except distributed.ClusterUnavailable as error:
        raise UsageError(str(error)) from None
    if not quiet:
        print(line)
    return distributed


VIDEO_SUFFIXES = (".mp4", ".gif")


def _check_output(path: Path) -> None:
    """Refuse an output path that cannot be written before any frame is rendered."""
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file name ending in .mp4 or .gif")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"--out {path}: the file must end in .mp4 or .gif")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"--out {path}: {folder} is a file, not a folder")
    try:  # the one test that holds for every user and file system: write something there
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise UsageError(f"--out {path}: cannot write in {folder} ({error.strerror or error})") from None


def cmd_record(args: argparse.Namespace) -> int:
    from trace_control.config import build_config
    from trace_control.video import record_video

    code, task = resolve_controller(args.controller, args.task)
    seeds = _seeds(args, 100)
    if args.fps < 1 or args.fps > 240:
        raise UsageError("--fps must be between 1 and 240")
    if args.size < 16 or args.size > 4096:
        raise UsageError("--size must be between 16 and 4096 pixels")
    name = Path(args.controller).stem if Path(args.controller).exists() else args.controller.replace(":", "-")
    out = Path(args.out or f"videos/{task}-{name}.mp4")
    _check_output(out)
    config, _ = build_config(task, {"horizon": args.horizon, "in_process": args.in_process,
                                    "step_seconds": args.step_seconds})
    _static_advice(code)
    print(f"recording {len(seeds)} episode(s) of {task}; controller code runs in: "
          f"{'this process (--in-process)' if config.in_process else 'a bubblewrap jail'}")
    try:
        recording = record_video(code, task, out, seeds=seeds, layout=args.layout, fps=args.fps,
                                 env_kwargs=config.env_kwargs(), width=args.size, height=args.size,
                                 jailed=not config.in_process, limits=config.jail_limits())
    except _jail_unavailable() as error:
        raise UsageError(f"cannot run controller code safely: {error}") from None
    for episode in recording.episodes:
        outcome = "success" if episode.success else ("error" if episode.error else "failure")
        print(f"  seed {episode.seed:>5}  {outcome:<8} return {episode.episode_return:>9.3f}  "
              f"length {episode.length:>4}")
        if episode.error:
            print("    " + episode.error.replace("\n", "\n    "))
    print(f"wrote {recording.path} ({recording.frames} frames, {recording.path.stat().st_size:,} bytes)")
    if all(episode.error_kind == "controller" for episode in recording.episodes):
        raise Failed("every episode ended in a controller error (see above)")
    return 0


def _jail_unavailable() -> type:
    from trace_control.sandbox import JailUnavailable

    return JailUnavailable


# -- baseline --------------------------------------------------------------------------------------------
def cmd_baseline(args: argparse.Namespace) -> int:
    from trace_control.baselines import RLExtraMissing, baseline_config, require_rl_extra, run_baseline
    from trace_control.config import format_seeds
    from trace_control.runs import RunFolder

    try:
        require_rl_extra()
    except RLExtraMissing as error:
        raise UsageError(str(error)) from None
    config = baseline_config(_task(args.task).name, args.algo, args.steps, args.seed, test_seeds=args.test_seeds,
                             horizon=args.horizon, device=args.device, threads=args.threads)
    try:
        run = RunFolder.create(args.runs_dir, config.task, config.algo, args.run_name)
    except OSError as error:
        raise UsageError(f"cannot create the run folder in {args.runs_dir}: {error.strerror or error}") from None
    print(f"training {config.algo.upper()} on {config.task} for {config.steps:,} environment steps (seed "
          f"{config.seed}, {config.device}); test placements {format_seeds(config.test_seeds)}; run folder: "
          f"{run.path}")
    try:
        run_baseline(config, run, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {run.path} has no results (an RL run does not resume): run the command again",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


# -- report / experiment --------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from trace_control.report import make_report, write_comparison

    if len(args.runs) > 1 or args.out:
        try:
            table = write_comparison(args.runs, args.out or "comparison.md")
        except FileNotFoundError as error:
            raise UsageError(str(error)) from None
        except (KeyError, TypeError, ValueError) as error:  # a damaged or crafted results.json
            raise UsageError(f"a run's results.json could not be read ({type(error).__name__}: {error})") from None
        print(table)
        print(f"wrote comparison: {args.out or 'comparison.md'}")
        return 0
    try:
        written = make_report(args.runs[0], with_video=not args.no_video)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from trace_control import envs
    from trace_control.config import parse_seeds
    from trace_control.experiment import LLMSettings, RayOptions, RunsFailed, run_experiment
    from trace_control.llm import LLMClient, LLMNotConfiguredError, price_for
    from trace_control.llm.limiter import Limits

    try:
        tasks = envs.expand_tasks(args.tasks)
    except envs.UnknownTaskError as error:
        raise UsageError(str(error)) from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = parse_seeds(args.seeds, "--seeds")
    if not tasks or not methods:
        raise UsageError("--tasks and --methods must each name at least one")
    for flag, value in (("--llm-concurrency", args.llm_concurrency), ("--rpm", args.rpm), ("--tpm", args.tpm),
                        ("--max-cost", args.max_cost), ("--ray-cpus", args.ray_cpus)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be more than 0")
    if args.ray is None and (args.ray_cpus is not None or args.storage is not None):
        raise UsageError("--ray-cpus and --storage are for runs on Ray; add --ray")
    try:
        probe = LLMClient(model=args.model, base_url=args.base_url)  # fail now, not after the first run
    except LLMNotConfiguredError as error:
        lines = [line for line in str(error).splitlines() if "--replay" not in line]  # replay is train's alone
        raise UsageError("\n".join(lines)) from None
    if args.max_cost is not None and price_for(probe.model) is None:
        raise UsageError(f"--max-cost needs a price for the model {probe.model}, and none is known; cap the "
                         "experiment with --tpm instead")
    overrides = settings_given(args)
    out = Path(args.out or f"experiments/{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the experiment folder {out}: {error.strerror or error}") from None
    limits = Limits(args.llm_concurrency, args.rpm, args.tpm, args.max_cost)
    on_ray = None
    if args.ray is not None:
        _ray_backend(args.ray)
        # the machines that run cells get this machine's LLM settings, key included
        llm = LLMSettings(probe.model, probe.base_url, args.temperature, os.environ.get("OPENAI_API_KEY"))
        on_ray = RayOptions(args.ray or None, args.ray_cpus or overrides.get("workers", 1), args.storage)
    else:
        llm = LLMSettings(args.model, args.base_url, args.temperature)
    try:
        run_experiment(tasks, methods, seeds, out, llm, overrides, limits, on_ray, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunsFailed as error:
        raise Failed(f"{error}; the summary covers the others ({out}/summary.md)") from None
    print(f"wrote {out}/summary.md, summary.json, summary.csv, learning_curves.png")
    return 0


# -- the parser --------------------------------------------------------------------------------------------
def _controller_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every command that runs one controller takes."""
    parser.add_argument("controller", metavar="CONTROLLER", help=CONTROLLER_HELP)
    parser.add_argument("--task", help="task short name or id (read from the run folder when omitted)")
    parser.add_argument("--horizon", type=int, help="steps per episode (default: the task's)")
    parser.add_argument("--seeds", help="placement seeds, e.g. 100-149 or 100,105 (overrides --episodes)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the controller in this process, without the jail (only for code you trust)")
    parser.add_argument("--step-seconds", type=float, help="time limit of one controller call (default 1.0)")


def build_parser() -> argparse.ArgumentParser:
    from trace_control.config import FIELDS

    parser = Parser(
        prog="trace-control", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Train robot controllers with Trace: an LLM (OptoPrime) rewrites a controller's code and "
                    "constants from the execution trace and text feedback of simulated episodes.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    listing = sub.add_parser("list", help="tasks, task sets, controllers, methods",
                             description="List the tasks (short name, id, what success means), task sets, "
                                         "reference controllers, methods and protocols; with a TASK, its "
                                         "instruction, hint, success criterion and spaces.")
    listing.add_argument("task", nargs="?", help="a task to describe in full")
    listing.set_defaults(func=cmd_list)

    train = sub.add_parser("train", help="train a controller on a task",
                           description="Run the Trace loop: per iteration a batch of training placements (failing "
                                       "ones first), one backward of their feedback, one OptoPrime (or OPRO) "
                                       "update, a validation on held-out placements; at the end one test of the "
                                       "controller chosen on validation. Writes runs/<task>-<method>-<time>/.")
    train.add_argument("task", nargs="?", help="task short name or id (see 'trace-control list')")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last finished iteration")
    train.add_argument("--replay", metavar="RUN_OR_FILE",
                       help="answer LLM calls from a recording (a run folder or its llm_calls.jsonl), offline; "
                            "stops at the first request the recording does not hold")
    train.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    train.add_argument("--run-name", help="name of the run folder (default: <task>-<method>-<time>)")
    train.add_argument("--config", help="a JSON file of settings (command-line options win over it)")
    train.add_argument("--no-progress", action="store_true", help="plain lines instead of a progress bar")
    add_settings(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="success rate and return of a controller over many placements",
                              description="Run a controller once per placement seed and report success rate (with "
                                          "a 95% confidence interval) and return. " + CONTROLLER_HELP)
    _controller_arguments(evaluate)
    evaluate.add_argument("--episodes", type=int, default=10, help="number of placements, from seed 100 up "
                                                                   "(default 10)")
    evaluate.add_argument("--workers", type=int, help="parallel worker processes on this machine (default 1)")
    evaluate.add_argument("--json", action="store_true", help="print the full report as JSON")
    evaluate.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                          help="spread the episodes over a Ray cluster: 'auto' (the cluster this machine belongs "
                               "to), ray://HOST:10001, or nothing for a local Ray instance; each task builds its "
                               "own environment and jail (needs trace-control[ray])")
    evaluate.set_defaults(func=cmd_evaluate)

    record = sub.add_parser("record", help="record a video of a controller",
                            description="Record episodes of a controller to .mp4 or .gif, headless, captioned with "
                                        "task, seed and outcome; prints each episode's outcome. " + CONTROLLER_HELP)
    _controller_arguments(record)
    record.add_argument("--episodes", type=int, default=1, help="number of placements from seed 100 (default 1)")
    record.add_argument("--out", help="output file, .mp4 or .gif (default videos/<task>-<controller>.mp4)")
    record.add_argument("--layout", choices=["sequence", "grid"], default="sequence",
                        help="episodes one after another or side by side (default sequence)")
    record.add_argument("--fps", type=int, default=20, help="frames per second (default 20)")
    record.add_argument("--size", type=int, default=320, help="frame width and height in pixels (default 320)")
    record.set_defaults(func=cmd_record)

    report = sub.add_parser("report", help="learning curve and HTML page of a run; several runs side by side",
                            description="With one RUN: write learning_curve.png and report.html (curve, code diffs "
                                        "per iteration, the LLM's reasoning, token and cost totals, a video of the "
                                        "best controller recorded in the jail; for an RL baseline its settings and "
                                        "test episodes) into the run folder. With several RUNs (LLM and RL alike): "
                                        "print and write a table of test success, return, env steps, learning time "
                                        "and LLM tokens.")
    report.add_argument("runs", nargs="+", metavar="RUN", help="a finished run folder (train or baseline)")
    report.add_argument("--out", help="write the comparison table to this Markdown file (default with several "
                                      "RUNs: comparison.md)")
    report.add_argument("--no-video", action="store_true", help="skip recording the best controller's video")
    report.set_defaults(func=cmd_report)

    from trace_control.baselines import ALGORITHM_HELP, DEFAULT_STEPS, RL_EXTRA_FIX

    baseline = sub.add_parser(
        "baseline", help="train an RL baseline (SAC, TD3, PPO) on a task",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a Stable-Baselines3 agent on a task with the environment settings and training\n"
                    "placements an LLM run gets, then test the final policy once per test placement (the\n"
                    "seeds an LLM run is tested on, 2000-2049 by default) with the same success criterion.\n"
                    "Writes runs/<task>-<algo>-<time>/: config.json, log.jsonl, policy.zip,\n"
                    "test_episodes.json, results.json, learning_curve.png.\n"
                    f"Needs the rl extra: {RL_EXTRA_FIX}",
        epilog="algorithms:\n" + "\n".join(f"  {name:<5} {text}" for name, text in ALGORITHM_HELP.items())
               + "\n\nexamples:\n  trace-control baseline reach --algo sac --steps 20000\n"
                 "  trace-control baseline reacher --algo ppo --seed 1\n"
                 "  trace-control report runs/reach-trace-20260101-120000 runs/reach-sac-20260101-130000")
    baseline.add_argument("task", help="task short name or id (see 'trace-control list')")
    baseline.add_argument("--algo", choices=list(ALGORITHM_HELP), default="sac", help="the algorithm (default sac)")
    baseline.add_argument("--steps", type=int, help="environment steps to train for (default: " + ", ".join(
        f"{name} {steps:,}" for name, steps in DEFAULT_STEPS.items()) + "; PPO trains whole rollouts)")
    baseline.add_argument("--seed", type=int, default=0, help="seeds the network, the exploration and the order of "
                                                              "training placements (default 0)")
    baseline.add_argument("--device", default="cpu", help="PyTorch device: cpu or cuda (default cpu)")
    baseline.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1: small networks "
                                                                 "run fastest on one)")
    baseline.add_argument("--test-seeds", type=_value_parser("test_seeds"), metavar="SEEDS",
                          help="test placements, e.g. 2000-2049 (default: an LLM run's, 2000-2049)")
    baseline.add_argument("--horizon", type=int, help="steps per episode (default: the task's, as in an LLM run)")
    baseline.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    baseline.add_argument("--run-name", help="name of the run folder (default: <task>-<algo>-<time>)")
    baseline.add_argument("--no-progress", action="store_true", help="plain lines instead of a progress bar")
    baseline.set_defaults(func=cmd_baseline)

    experiment = sub.add_parser("experiment", help="the paper's experiment: tasks x methods x seeds",
                                description="Train every (task, method, seed), then write a summary table (test "
                                            "success per method and task, mean over seeds, with confidence "
                                            "intervals) and plots. Finished runs are kept: re-running the command "
                                            "continues the experiment.")
    experiment.add_argument("--tasks", default="reach,push,pick-place",
                            help="tasks or task sets, comma-separated (default reach,push,pick-place)")
    experiment.add_argument("--methods", default="trace,nomem,masked,opro", help="methods (see 'list')")
    experiment.add_argument("--seeds", default="0-9", help="run seeds, e.g. 0-9 (default 0-9)")
    experiment.add_argument("--out", help="experiment folder (default experiments/<time>)")
    experiment.add_argument("--no-progress", action="store_true", help="plain lines instead of progress bars")
    cluster = experiment.add_argument_group(
        "Ray (each run is a Ray task; its run folder comes back to --out; needs trace-control[ray])")
    cluster.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                         help="run on Ray: 'auto' (the cluster this machine belongs to), ray://HOST:10001, or "
                              "nothing for a local Ray instance (default: one run after another, here)")
    cluster.add_argument("--ray-cpus", type=float, metavar="N",
                         help="CPUs Ray reserves for each run (default: the runs' --workers, 1)")
    cluster.add_argument("--storage", type=Path, metavar="DIR",
                         help="a folder mounted at the same path on every node: runs work and keep their "
                              "checkpoints there, so a run resumes from it after its node dies (default: each "
                              "node's temporary folder, checkpoints sent to this machine)")
    budget = experiment.add_argument_group(
        "LLM budget (shared by every run of the experiment, here or on Ray)")
    budget.add_argument("--llm-concurrency", type=int, metavar="N", help="LLM requests under way at once")
    budget.add_argument("--rpm", type=int, metavar="N", help="LLM requests per minute")
    budget.add_argument("--tpm", type=int, metavar="N",
                        help="LLM tokens per minute (a request counts its size / 4 until the server reports)")
    budget.add_argument("--max-cost", type=float, metavar="USD",
                        help="estimated cost at which no new LLM call starts; every run then ends with its "
                             "results (the runs' own cost cap is not set from here)")
    add_settings(experiment, [name for name in FIELDS if name not in ("task", "method", "seed", "max_cost")])
    experiment.set_defaults(func=cmd_experiment)
    return parser


def main(argv: list[str] | None = None) -> int:
    from trace_control.config import ConfigError
    from trace_control.envs import ensure_headless_rendering
    from trace_control.runs import RunFolderError
    from trace_control.sandbox import JailUnavailable

    ensure_headless_rendering()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ConfigError, RunFolderError) as error:
        if args.debug:
            raise
        print(f"trace-control: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Failed as error:
        if args.debug:
            raise
        print(f"trace-control: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except JailUnavailable as error:  # it worked at the start, then stopped: resume once it is fixed
        if args.debug:
            raise
        print(f"trace-control: error: the jail stopped working: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
