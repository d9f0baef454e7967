"""The training loop: the paper's algorithm, one iteration at a time, resumable.

    for each iteration:
        rollout   <- one traced episode on the training placement
        feedback  <- the episode's outcome (or the controller's error)
        optimizer.zero_feedback(); optimizer.backward(rollout, feedback); optimizer.step()
        evaluate the updated controller on held-out placements
        log, checkpoint, keep the best controller by evaluation score
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trace_control import controllers, envs
from trace_control.config import TrainConfig
from trace_control.evaluation import EvalReport
from trace_control.llm import LLMClient
from trace_control.optim import OPRO, Optimizer, OptoPrime, Proposal
from trace_control.optim.render import compact
from trace_control.runners import make_runner, static_problems
from trace_control.runs import BEST, CONFIG, LAST, LLM_CALLS, PROMPTS, RESULTS, STATE, RunFolder
from trace_control.sandbox import Limits, check_controller_code
from trace_control.trace import Module, to_literal


def build_controller(config: TrainConfig) -> Module:
    if config.controller:
        try:
            return controllers.import_class(config.controller)()
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(f"cannot load the controller {config.controller!r}: {error}") from None
    return controllers.starting_controller(config.task)


def objective_for(config: TrainConfig) -> str:
    task = envs.make(config.task, **config.env_kwargs())
    text = (f"{task.instruction}\nImprove the controller so that episodes succeed: success means "
            f"{task.success_criterion}. The feedback reports the outcome of one episode.")
    task.close()
    return text


def make_optimizer(config: TrainConfig, controller: Module, llm: LLMClient, objective: str) -> Optimizer:
    checker = (lambda code, name: check_controller_code(code, name)) if config.isolated else None
    if config.optimizer == "opro":
        return OPRO(controller, llm=llm, memory_size=config.memory_size, objective=objective,
                    num_candidates=config.num_candidates, code_checker=checker)
    return OptoPrime(controller, llm=llm, memory_size=config.memory_size, objective=objective, mask=config.mask,
                     max_prompt_tokens=config.max_prompt_tokens, num_candidates=config.num_candidates,
                     code_checker=checker)


def score(report: EvalReport) -> tuple[float, float]:
    return (report.success_rate, report.return_mean)


def describe_change(update: dict[str, Any], before: dict[str, Any]) -> str:
    """A short phrase for what changed, e.g. ``__code0 (+4 -1 lines), gains0``."""
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


@dataclass
class TrainResult:
    run: RunFolder
    results: dict
    stopped_reason: str | None = None


class Trainer:
    """Runs (or resumes) one training run into a run folder."""

    def __init__(self, config: TrainConfig, run: RunFolder, llm: LLMClient, runner: Any = None,
                 echo: Callable[[str], None] = print, progress: bool = True) -> None:
        self.config = config
        self.run = run
        self.llm = llm
        self.echo = echo
        self.progress = progress
        self.controller = build_controller(config)
        self.objective = objective_for(config)
        self.optimizer = make_optimizer(config, self.controller, llm, self.objective)
        limits = Limits(step_seconds=config.step_seconds, episode_seconds=config.episode_seconds)
        self.owns_runner = runner is None
        self.runner = runner or make_runner(config.task, config.env_kwargs(), config.workers, config.isolated,
                                            [config.train_seed, *config.eval_seeds], limits)
        self.state: dict = {}

    # -- checkpoints ----------------------------------------------------------------------
    def _parameters(self) -> dict:
        return {key: to_literal(p._data, key) for key, p in self.controller.parameters_dict().items()}

    def _set_parameters(self, values: dict) -> None:
        parameters = self.controller.parameters_dict()
        for key, value in values.items():
            parameters[key]._set(value)

    def _usage(self) -> dict:
        return self.llm.usage.summary()

    def _checkpoint(self) -> None:
        self.state.update(parameters=self._parameters(), optimizer=self.optimizer.state_dict(),
                          usage=self._usage(), llm_calls_lines=self.run.count_lines(LLM_CALLS))
        self.run.write_json(STATE, self.state)

    def _restore(self) -> None:
        self.state = self.run.read_json(STATE)
        self._set_parameters(self.state["parameters"])
        self.optimizer.load_state_dict(self.state.get("optimizer", {}))
        usage = self.state.get("usage", {})
        for key in ("calls", "failed_calls", "prompt_tokens", "completion_tokens", "cost_usd"):
            if key in usage:
                setattr(self.llm.usage, key, usage[key])
        self.run.trim_log(self.state["iteration"])
        self.run.trim_lines(LLM_CALLS, self.state.get("llm_calls_lines", 0))

    # -- the loop -------------------------------------------------------------------------
    def train(self, resume: bool = False) -> TrainResult:
        config = self.config
        try:
            if resume:
                self._restore()
                self.echo(f"resuming {self.run.path} after iteration {self.state['iteration']}")
            else:
                self.run.write_json(CONFIG, config.to_dict())
                self._start()
            self.echo(f"controller code runs in: {self.runner.isolation}")
            stopped = self._iterate()
            return TrainResult(self.run, self._finish(stopped), stopped)
        finally:
            if self.owns_runner:
                self.runner.close()

    def _start(self) -> None:
        report = self.runner.evaluate(self.controller, self.config.eval_seeds)
        self.controller.export(self.run.file(BEST))
        self.controller.export(self.run.file(LAST))
        self.state = {"iteration": 0, "best": {"iteration": 0, "success_rate": report.success_rate,
                                               "return_mean": report.return_mean, "eval": report.to_dict()},
                      "consecutive_failures": 0, "train_env_steps": 0, "eval_env_steps": report.env_steps,
                      "train_successes": 0}
        record = {"iteration": 0, "kind": "initial", "eval": _eval_summary(report),
                  "parameters": self._parameters(), "tokens": self._usage()}
        self.run.append_log(record)
        self._checkpoint()
        self.echo(f"iteration 0 (starting controller): eval success {report.success_rate:.2f}, "
                  f"return {report.return_mean:.2f}")

    def _iterate(self) -> str | None:
        from tqdm import tqdm

        config = self.config
        bar = tqdm(total=config.iterations, initial=self.state["iteration"], disable=not self.progress,
                   desc=f"train {config.task}", unit="it", leave=False)
        try:
            for iteration in range(self.state["iteration"] + 1, config.iterations + 1):
                record = self._one_iteration(iteration)
                bar.update(1)
                line = _line(record, config.iterations, self.state["best"])
                if self.progress:
                    bar.write(line)
                else:
                    self.echo(line)
                if self.state["consecutive_failures"] >= config.max_consecutive_failures:
                    return (f"stopped after {self.state['consecutive_failures']} consecutive failed LLM calls "
                            f"(last: {record.get('llm_error')})")
                if config.stop_at_success and record.get("eval") and record["eval"]["success_rate"] >= 1.0:
                    return f"stopped at iteration {iteration}: evaluation success 1.0"
        finally:
            bar.close()
        return None

    def _one_iteration(self, iteration: int) -> dict:
        config = self.config
        started = time.perf_counter()
        before = {p.py_name: p._data for p in self.controller.parameters()}
        rollout = self.runner.rollout(self.controller, config.train_seed)
        episode = rollout.episode
        self.state["train_env_steps"] += episode.length
        self.state["train_successes"] += int(episode.success)
        self.optimizer.zero_feedback()
        self.optimizer.backward(rollout.output, rollout.feedback)
        candidates: list[dict] = []
        if config.num_candidates > 1:
            proposals = self.optimizer.propose()
            chosen = self._choose(proposals, candidates)
            if chosen is not None:
                self.optimizer.apply(chosen)
        else:
            self.optimizer.step()
        step = self.optimizer.last_record
        self.optimizer.zero_feedback()
        self.run.write_text(f"{PROMPTS}/{iteration:03d}.txt", step.prompt)
        failed = step.error is not None
        self.state["consecutive_failures"] = self.state["consecutive_failures"] + 1 if failed else 0
        report = None
        if iteration % config.eval_every == 0 or iteration == config.iterations:
            report = self.runner.evaluate(self.controller, config.eval_seeds)
            self.state["eval_env_steps"] += report.env_steps
            best = self.state["best"]
            if score(report) > (best["success_rate"], best["return_mean"]):
                self.controller.export(self.run.file(BEST))
                self.state["best"] = {"iteration": iteration, "success_rate": report.success_rate,
                                      "return_mean": report.return_mean, "eval": report.to_dict()}
        self.controller.export(self.run.file(LAST))
        record = {
            "iteration": iteration, "kind": "train",
            "train": {"success": episode.success, "return": round(episode.episode_return, 6),
                      "length": episode.length, "error": episode.error},
            "feedback": rollout.feedback,
            "update": dict(step.applied), "changed": describe_change(step.applied, before),
            "reasoning": step.reasoning, "problems": list(step.problems), "llm_error": step.error,
            "candidates": candidates, "prompt_tokens_estimate": step.prompt_tokens_estimate,
            "eval": _eval_summary(report) if report else None,
            "best_iteration": self.state["best"]["iteration"], "tokens": self._usage(),
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.run.append_log(record)
        self.state["iteration"] = iteration
        self._checkpoint()
        return record

    def _choose(self, proposals: list[Proposal], candidates: list[dict]) -> Proposal | None:
        """Try each candidate on the training placement; keep the best (success, then return)."""
        best, best_score = None, None
        for index, proposal in enumerate(proposals):
            if not proposal.update:
                candidates.append({"index": index, "skipped": "no valid change", "problems": proposal.problems})
                continue
            backup = {p: p._data for p in proposal.update}
            for parameter, value in proposal.update.items():
                parameter._set(value)
            problems = static_problems(self.controller)
            episode = self.runner.trial(self.controller, self.config.train_seed)
            for parameter, value in backup.items():
                parameter._set(value)
            self.state["train_env_steps"] += episode.length
            trial_score = (episode.success, episode.episode_return) if not problems else (False, float("-inf"))
            candidates.append({"index": index, "success": episode.success, "return": episode.episode_return,
                               "error": episode.error})
            if best_score is None or trial_score > best_score:
                best, best_score = proposal, trial_score
        return best if best is not None else (proposals[0] if proposals else None)

    def _finish(self, stopped: str | None) -> dict:
        best = self.state["best"]
        usage = self._usage()
        results = {
            "task": self.config.task, "method": self.config.label(), "status": stopped or "completed",
            "iterations_done": self.state["iteration"], "best_iteration": best["iteration"],
            "test": {key: best["eval"][key] for key in ("success_rate", "return_mean", "return_std", "length_mean")},
            "test_seeds": self.config.eval_seeds,
            "last": self._last_eval(), "env_steps": {"train": self.state["train_env_steps"],
                                                     "eval": self.state["eval_env_steps"]},
            "train_successes": self.state["train_successes"],
            "llm": {"calls": usage["calls"], "failed_calls": usage["failed_calls"],
                    "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                    "total_tokens": usage["total_tokens"], "cost_usd": usage["cost_usd"], "model": self.llm.model},
            "isolation": self.runner.isolation,
        }
        self.run.write_json(RESULTS, results)
        try:
            from trace_control.report import write_curve

            write_curve(self.run)
        except Exception as error:  # a plot is a convenience; the results are already safe
            self.echo(f"could not draw the learning curve: {error}")
        test = results["test"]
        self.echo(f"done: best controller from iteration {best['iteration']}: test success {test['success_rate']:.2f}, "
                  f"return {test['return_mean']:.2f} ± {test['return_std']:.2f}; {usage['total_tokens']:,} tokens "
                  f"in {usage['calls']} LLM calls; run folder {self.run.path}")
        if stopped:
            self.echo(stopped)
        return results

    def _last_eval(self) -> dict | None:
        for record in reversed(self.run.read_log()):
            if record.get("eval"):
                return record["eval"]
        return None


def _eval_summary(report: EvalReport) -> dict:
    return {"success_rate": report.success_rate, "return_mean": round(report.return_mean, 6),
            "return_std": round(report.return_std, 6), "length_mean": report.length_mean,
            "episodes": report.episodes}


def _line(record: dict, total: int, best: dict) -> str:
    train = record["train"]
    outcome = "error" if train["error"] else ("success" if train["success"] else "failure")
    evaluation = record.get("eval")
    eval_text = f"eval {evaluation['success_rate']:.2f}" if evaluation else "eval -"
    failure = f" | LLM call failed: {record['llm_error'][:80]}" if record.get("llm_error") else ""
    return (f"iter {record['iteration']:>3}/{total} | train {outcome}, return {train['return']:.2f} | {eval_text} "
            f"(best {best['success_rate']:.2f} @ {best['iteration']}) | tokens {record['tokens']['total_tokens']:,} "
            f"| {record['changed']}{failure}")
