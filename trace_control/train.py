"""The training loop: the paper's algorithm over batches of placements, resumable.

    for each iteration:
        rollout   <- the controller on a batch of training placements (failing ones first)
        stop if validation is solved and the last batches all succeeded
        backward  <- optimizer.zero_feedback(); optimizer.backward(batch graph, batch feedback)
        step      <- optimizer.step()  (one LLM call; a bad answer is feedback, not a crash)
        evaluate  <- the updated controller on the validation placements; keep the best
        log, checkpoint; stop on a budget, on patience, or after the last iteration
    test the chosen (best) controller once on the test placements
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trace_control import controllers, envs
from trace_control.config import ConfigError, TrainConfig, config_record
from trace_control.evaluation import EvalReport
from trace_control.llm import LLMClient
from trace_control.optim import OPRO, Optimizer, OptoPrime, Proposal
from trace_control.optim.render import compact
from trace_control.placements import PlacementSampler
from trace_control.policies import ControllerCode
from trace_control.rollout import Episode, batch_rollout
from trace_control.runners import Runner, evaluate, make_runner
from trace_control.runs import BEST, CONFIG, LAST, LLM_CALLS, PROMPTS, RESULTS, STATE, RunFolder, RunFolderError
from trace_control.sandbox import check_controller_code
from trace_control.trace import Module, TraceError, name_scope


def build_controller(config: TrainConfig) -> Module:
    if config.controller:
        try:
            cls = controllers.import_class(config.controller)
        except (ImportError, AttributeError, ValueError, TypeError) as error:
            raise ConfigError(f"cannot load the controller {config.controller!r}: {error}") from None
        if not (isinstance(cls, type) and issubclass(cls, Module)):
            raise ConfigError(f"{config.controller!r} is not a controller class (a Module such as "
                              "trace_control.controllers.base.Controller)")
        return cls()
    return controllers.starting_controller(config.task)


def task_text(config: TrainConfig) -> tuple[str, str]:
    """(instruction, success criterion) of the configured task."""
    env = envs.make(config.task, **config.env_kwargs())
    try:
        return env.get_wrapper_attr("instruction"), env.get_wrapper_attr("success_criterion")
    finally:
        env.close()


def objective_for(config: TrainConfig) -> str:
    instruction, success = task_text(config)
    scope = ("one episode" if config.batch == 1 else
             f"a batch of {config.batch} training placements (an outcome line for each; the most informative "
             "episode is traced in full)")
    return (f"{instruction}\nImprove the controller so that episodes succeed on every placement, not only the "
            f"ones shown: success means {success}. The feedback reports {scope}.")


def make_optimizer(config: TrainConfig, controller: Module, llm: LLMClient, objective: str) -> Optimizer:
    checker = check_controller_code if config.static_check else None
    if config.optimizer == "opro":
        return OPRO(controller, llm=llm, memory_size=config.memory_size, objective=objective,
                    num_candidates=config.num_candidates, code_checker=checker)
    return OptoPrime(controller, llm=llm, memory_size=config.memory_size, objective=objective, mask=config.mask,
                     max_prompt_tokens=config.max_prompt_tokens, num_candidates=config.num_candidates,
                     code_checker=checker)


def score(report: EvalReport | dict) -> tuple[float, float]:
    if isinstance(report, dict):
        return (report["success_rate"], report["return_mean"])
    return (report.success_rate, report.return_mean)


def describe_change(update: dict[str, Any], before: dict[str, Any]) -> str:
    """A short phrase for what changed, e.g. ``__code0 (+4 -1 lines), gain0 -> 0.5``."""
    if not update:
        return "no change"
    parts = []
    for name, value in update.items():
        old = before.get(name)
        if isinstance(value, str) and isinstance(old, str):
            diff = list(difflib.unified_diff(old.splitlines(), value.splitlines(), lineterm="", n=0))
            added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
            removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
            parts.append(f"{name} (+{added} -{removed} lines)")
        else:
            parts.append(f"{name} -> {compact(value, 60)}")
    return ", ".join(parts)


def validation_summary(report: EvalReport) -> dict:
    low, high = report.success_interval
    return {"success_rate": report.success_rate, "success_interval": [round(low, 4), round(high, 4)],
            "return_mean": round(report.return_mean, 6), "return_std": round(report.return_std, 6),
            "length_mean": report.length_mean, "episodes": report.episodes}


@dataclass
class TrainState:
    """Everything a resumed run needs besides the run folder's files (written to ``state.json``)."""

    iteration: int = 0
    parameters: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    usage: dict = field(default_factory=dict)
    llm_calls_lines: int = 0
    best_iteration: int = 0
    best_validation: dict = field(default_factory=dict)
    last_validation: dict = field(default_factory=dict)
    unvalidated: bool = False
    validations_without_improvement: int = 0
    solved_streak: int = 0
    consecutive_failures: int = 0
    train_episodes: int = 0
    train_successes: int = 0
    train_env_steps: int = 0
    validation_env_steps: int = 0
    learning_seconds: float = 0.0
    stopped: str | None = None


def restored_state(saved: object) -> TrainState:
    """A ``state.json`` as a TrainState, each field of its declared type; RunFolderError otherwise."""
    kinds = {"int": int, "float": (int, float), "bool": bool, "dict": dict, "str | None": (str, type(None))}
    if not isinstance(saved, dict):
        raise RunFolderError("state.json does not hold a checkpoint (a JSON object); the run cannot be resumed")
    values = {}
    for spec in dataclasses.fields(TrainState):
        if spec.name not in saved:
            continue
        value = saved[spec.name]
        expected = kinds[str(spec.type)]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise RunFolderError(f"state.json is damaged: {spec.name} is {json.dumps(value)[:40]}, not a "
                                 f"{spec.type}; the run cannot be resumed")
        if spec.name in ("best_validation", "last_validation") and value and not _is_summary(value):
            raise RunFolderError(f"state.json is damaged: {spec.name} is not a validation summary; the run cannot be "
                                 "resumed")
        values[spec.name] = value
    return TrainState(**values)


def _is_summary(value: dict) -> bool:
    """Whether ``value`` has the numbers a validation summary (:func:`validation_summary`) holds."""
    def number(item: object, low: float = -math.inf, high: float = math.inf) -> bool:
        return isinstance(item, (int, float)) and not isinstance(item, bool) and low <= item <= high

    interval = value.get("success_interval")
    return (number(value.get("success_rate"), 0.0, 1.0) and number(value.get("return_mean"))
            and number(value.get("return_std", 0.0), 0.0) and number(value.get("length_mean", 0.0), 0.0)
            and isinstance(interval, list) and len(interval) == 2 and all(number(x, 0.0, 1.0) for x in interval)
            and isinstance(value.get("episodes", []), list))


@dataclass
class TrainResult:
    run: RunFolder
    results: dict
    stopped_reason: str | None = None


class Trainer:
    """Runs (or resumes) one training run into a run folder."""

    def __init__(self, config: TrainConfig, run: RunFolder, llm: LLMClient, runner: Runner | None = None,
                 echo: Callable[[str], None] = print, progress: bool = True,
                 sources: dict[str, str] | None = None) -> None:
        self.config = config
        self.sources = sources or {}
        self.run = run
        self.llm = llm
        self.echo = echo
        self.progress = progress
        self.controller = build_controller(config)
        self.optimizer = make_optimizer(config, self.controller, llm, objective_for(config))
        self.sampler = PlacementSampler(config.train_seeds, config.batch, config.seed, config.resample)
        self.owns_runner = runner is None
        self.runner = runner or make_runner(config.task, config.env_kwargs(), config.workers,
                                            not config.in_process, config.jail_limits())
        self.state = TrainState()

    # -- parameters and checkpoints ---------------------------------------------------------------

    def code(self) -> ControllerCode:
        return ControllerCode.from_module(self.controller)

    def _checkpoint(self) -> None:
        self.state.parameters = self.controller.state_dict()
        self.state.optimizer = self.optimizer.state_dict()
        self.state.sampler = self.sampler.state_dict()
        self.state.usage = self.llm.usage.summary()
        self.state.llm_calls_lines = self.run.count_lines(LLM_CALLS)
        self.run.write_json(STATE, dataclasses.asdict(self.state))

    def _restore(self) -> None:
        self.state = restored_state(self.run.read_json(STATE))
        try:
            self.controller.load_state_dict(self.state.parameters, strict=True)
            self.optimizer.load_state_dict(self.state.optimizer)
            self.sampler.load_state_dict(self.state.sampler)
            self.llm.usage.restore(self.state.usage)
        except (TraceError, ValueError, TypeError, KeyError) as error:
            raise RunFolderError(f"state.json cannot be resumed: {error}") from None
        self.run.trim_log(self.state.iteration)
        self.run.trim_lines(LLM_CALLS, self.state.llm_calls_lines)

    # -- the run ------------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> TrainResult:
        try:
            isolation = self.runner.start()
            if resume:
                self._restore()
                self.echo(f"resuming {self.run.path} after iteration {self.state.iteration}")
            else:
                self.run.write_json(CONFIG, config_record(self.config, self.sources))
            self.echo(f"controller code runs in: {isolation}")
            if not resume:
                self._start()
            stopped = self.state.stopped or self._iterate()
            self.state.stopped = stopped
            self._checkpoint()
            return TrainResult(self.run, self._finish(stopped), stopped)
        finally:
            if self.owns_runner:
                self.runner.close()

    def _validate(self) -> EvalReport:
        report = evaluate(self.runner, self.code(), self.config.validation_seeds)
        self.state.validation_env_steps += report.env_steps
        self.state.last_validation = validation_summary(report)
        return report

    def _start(self) -> None:
        started = time.perf_counter()
        report = self._validate()
        self.state.learning_seconds += time.perf_counter() - started
        self.controller.export(self.run.file(BEST))
        self.controller.export(self.run.file(LAST))
        self.state.best_validation = self.state.last_validation
        self.run.append_log({"iteration": 0, "kind": "initial", "validation": self.state.last_validation,
                             "parameters": self.controller.state_dict(), "tokens": self.llm.usage.summary()})
        self._checkpoint()
        self.echo(f"iteration 0 (starting controller): validation success {report.success_rate:.2f}, "
                  f"return {report.return_mean:.2f}")

    def _iterate(self) -> str:
        from tqdm import tqdm

        config = self.config
        bar = tqdm(total=config.iterations, initial=self.state.iteration, disable=not self.progress,
                   desc=f"train {config.task}", unit="it", leave=False)
        try:
            for iteration in range(self.state.iteration + 1, config.iterations + 1):
                record, stopped = self._one_iteration(iteration)
                bar.update(1)
                (bar.write if self.progress else self.echo)(_line(record, config.iterations, self.state))
                if stopped:
                    return stopped
        finally:
            bar.close()
        return f"completed {config.iterations} iterations"

    def _one_iteration(self, iteration: int) -> tuple[dict, str | None]:
        config, state = self.config, self.state
        started = time.perf_counter()
        seeds = self.sampler.draw()
        episodes = self.runner.run(self.code(), seeds, keep_steps=True)                       # rollout
        self._count(episodes)
        record: dict[str, Any] = {"iteration": iteration, "kind": "train", "batch": [e.summary() for e in episodes]}
        validated = False
        stopped = self._solved()
        if stopped is None:
            record.update(self._update(iteration, episodes, seeds))                           # backward, step
            due = iteration % config.validate_every == 0 or iteration == config.iterations or self._stop_reason()
            if state.unvalidated and due:
                self._judge(iteration, self._validate())                                      # evaluate
                validated = True
            stopped = self._stop_reason()
        record.update({"validation": state.last_validation if validated else None,
                       "best_iteration": state.best_iteration, "tokens": self.llm.usage.summary(),
                       "stopped": stopped, "seconds": round(time.perf_counter() - started, 3)})
        state.learning_seconds += record["seconds"]
        self.run.append_log(record)
        state.iteration = iteration
        state.stopped = stopped
        self._checkpoint()
        return record, stopped

    def _update(self, iteration: int, episodes: list[Episode], seeds: list[int]) -> dict:
        """Backward the batch's feedback and take one optimizer step; what happened, for the log."""
        with name_scope():
            rollout = batch_rollout(episodes, self.controller, self.config.traced_episodes)
        before = {p.py_name: p.data for p in self.controller.parameters()}
        self.optimizer.zero_feedback()
        self.optimizer.backward(rollout.output, rollout.feedback)
        candidates = self._step(seeds)
        self.optimizer.zero_feedback()
        step = self.optimizer.last_record
        self.run.write_text(f"{PROMPTS}/{iteration:03d}.txt", step.prompt)
        self.state.consecutive_failures = self.state.consecutive_failures + 1 if step.error else 0
        if step.applied:
            self.state.unvalidated, self.state.solved_streak = True, 0
            self.controller.export(self.run.file(LAST))
        return {"feedback": rollout.feedback, "update": dict(step.applied),
                "changed": describe_change(step.applied, before), "reasoning": step.reasoning,
                "problems": list(step.problems), "llm_error": step.error, "candidates": candidates,
                "prompt_tokens_estimate": step.prompt_tokens_estimate,
                "omitted": list(getattr(step, "omitted", None) or [])}

    def _count(self, episodes: list[Episode]) -> None:
        state = self.state
        state.train_episodes += len(episodes)
        state.train_successes += sum(e.success for e in episodes)
        state.train_env_steps += sum(e.length for e in episodes)
        self.sampler.record({e.seed: e.success for e in episodes})
        state.solved_streak = state.solved_streak + 1 if all(e.success for e in episodes) else 0

    def _solved(self) -> str | None:
        """Why to stop before asking the LLM: validation solved and the last batches all succeeded."""
        config, state = self.config, self.state
        if not config.solved_batches or state.solved_streak < config.solved_batches:
            return None
        if state.unvalidated or state.last_validation.get("success_rate", 0.0) < 1.0:
            return None
        return (f"solved: validation success 1.00 and {state.solved_streak} batch(es) in a row all succeeded "
                f"({state.train_episodes} training episodes)")

    def _step(self, seeds: list[int]) -> list[dict]:
        """One update: the optimizer's own step, or the best of several candidates tried on the batch."""
        if self.config.num_candidates <= 1:
            self.optimizer.step()
            return []
        candidates: list[dict] = []
        proposals = self.optimizer.propose()
        chosen = self._choose(proposals, seeds, candidates)
        if chosen is not None:
            self.optimizer.apply(chosen)
        return candidates

    def _choose(self, proposals: list[Proposal], seeds: list[int], candidates: list[dict]) -> Proposal | None:
        best, best_score = None, None
        for index, proposal in enumerate(proposals):
            if not proposal.update:
                candidates.append({"index": index, "skipped": "no valid change", "problems": proposal.problems})
                continue
            backup = self.controller.state_dict()
            for parameter, value in proposal.update.items():
                parameter.set_value(value)
            try:
                episodes = self.runner.run(self.code(), seeds)
            finally:
                self.controller.load_state_dict(backup)
            self.state.train_env_steps += sum(e.length for e in episodes)
            successes = sum(e.success for e in episodes)
            mean_return = sum(e.episode_return for e in episodes) / len(episodes)
            candidates.append({"index": index, "successes": successes, "return_mean": mean_return,
                               "errors": [e.error for e in episodes if e.error][:1]})
            if best_score is None or (successes, mean_return) > best_score:
                best, best_score = proposal, (successes, mean_return)
        return best if best is not None else (proposals[0] if proposals else None)

    def _judge(self, iteration: int, report: EvalReport) -> None:
        """Keep the controller if its validation (``report``, summarised in the state) beats the best so far."""
        state = self.state
        state.unvalidated = False
        if score(state.last_validation) > score(state.best_validation):  # both rounded alike
            self.controller.export(self.run.file(BEST))
            state.best_iteration, state.best_validation = iteration, state.last_validation
            state.validations_without_improvement = 0
        else:
            state.validations_without_improvement += 1

    def _stop_reason(self) -> str | None:
        config, state, usage = self.config, self.state, self.llm.usage
        shared = self.llm.stop_reason()  # a budget shared with other runs (an experiment's --max-cost)
        if shared:
            return shared
        if state.consecutive_failures >= config.max_consecutive_failures:
            last = self.optimizer.last_record.error if self.optimizer.last_record else ""
            return f"stopped after {state.consecutive_failures} consecutive failed LLM calls (last: {last})"
        if config.max_tokens is not None and usage.total_tokens >= config.max_tokens:
            return f"token budget reached: {usage.total_tokens:,} of {config.max_tokens:,} tokens used"
        if config.max_cost is not None and usage.cost_usd is not None and usage.cost_usd >= config.max_cost:
            return f"cost budget reached: ${usage.cost_usd:.4f} of ${config.max_cost:.4f}"
        if config.patience and state.validations_without_improvement >= config.patience:
            return f"no validation improvement in {state.validations_without_improvement} validations (patience)"
        return None

    # -- the end ------------------------------------------------------------------------------------
    def _test(self, path: str) -> dict:
        report = evaluate(self.runner, ControllerCode.from_file(self.run.file(path)), self.config.test_seeds)
        summary = validation_summary(report)
        summary.pop("episodes")
        summary["env_steps"] = report.env_steps
        return summary

    def _finish(self, stopped: str) -> dict:
        state, usage = self.state, self.llm.usage.summary()
        started = time.perf_counter()
        test = self._test(BEST)
        same = self.run.file(BEST).read_text(encoding="utf-8") == self.run.file(LAST).read_text(encoding="utf-8")
        last_test = test if same else self._test(LAST)
        test_seconds = time.perf_counter() - started
        llm_failed_all = usage["calls"] == 0 and usage["failed_calls"] > 0
        results = {
            "task": self.config.task, "method": self.config.label(), "protocol": self.config.protocol,
            "status": "failed: every LLM call failed" if llm_failed_all else "completed",
            "stopped": stopped, "iterations_done": state.iteration, "best_iteration": state.best_iteration,
            "selected_on": "validation", "validation": {k: v for k, v in state.best_validation.items()
                                                        if k != "episodes"},
            "test": test, "last_iteration_test": last_test, "test_seeds": len(self.config.test_seeds),
            "env_steps": {"train": state.train_env_steps, "validation": state.validation_env_steps,
                          "test": test["env_steps"] + (0 if same else last_test["env_steps"])},
            "train_episodes": state.train_episodes, "train_successes": state.train_successes,
            "seconds": {"train": round(state.learning_seconds, 3), "test": round(test_seconds, 3)},
            "llm": {**{key: usage[key] for key in ("calls", "failed_calls", "prompt_tokens", "completion_tokens",
                                                    "total_tokens", "cost_usd")}, "model": self.llm.model},
            "isolation": self.runner.isolation,
        }
        self.run.write_json(RESULTS, results)
        try:
            from trace_control.report import write_curve

            write_curve(self.run)
        except Exception as error:  # noqa: BLE001 - a plot is a convenience; the results are already safe
            self.echo(f"could not draw the learning curve: {error}")
        low, high = test["success_interval"]
        self.echo(f"{stopped}")
        self.echo(f"done: best controller from iteration {state.best_iteration} (chosen on validation): test "
                  f"success {test['success_rate']:.2f} (95% CI {low:.2f}-{high:.2f}) over "
                  f"{len(self.config.test_seeds)} placements, return {test['return_mean']:.2f} ± "
                  f"{test['return_std']:.2f}; {usage['total_tokens']:,} tokens in {usage['calls']} LLM calls; run "
                  f"folder {self.run.path}")
        return results


def _line(record: dict, total: int, state: TrainState) -> str:
    batch = record["batch"]
    succeeded = sum(item["success"] for item in batch)
    errors = sum(1 for item in batch if item["error"])
    errors_text = f", {errors} error(s)" if errors else ""
    validation = record.get("validation")
    validation_text = f"val {validation['success_rate']:.2f}" if validation else "val -"
    best = state.best_validation.get("success_rate", 0.0)
    failure = f" | LLM call failed: {record['llm_error'][:80]}" if record.get("llm_error") else ""
    change = record.get("changed", "no LLM call")
    return (f"iter {record['iteration']:>3}/{total} | batch {succeeded}/{len(batch)} succeeded{errors_text} | "
            f"{validation_text} (best {best:.2f} @ {state.best_iteration}) | tokens "
            f"{record['tokens']['total_tokens']:,} | {change}{failure}")
