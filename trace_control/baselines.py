"""Reinforcement-learning baselines: Stable-Baselines3 on the same tasks, placements and success as the LLM runs.

    build  <- the task through its Gymnasium id, with the per-task settings an LLM run gets (horizon, action
              mode); every training episode starts on a placement of the training pool (seeds 0-999)
    learn  <- SAC, TD3 or PPO for N environment steps (a progress bar with ETA; a log record per window)
    test   <- the final policy, deterministic, one episode per test placement (``env.reset(seed=s)``, seeds
              2000-2049), through the episode loop and the summary the LLM runs are tested with
    write  <- config.json, log.jsonl, policy.zip, test_episodes.json, results.json, learning_curve.png

Observations: the task's ``Dict`` is flattened by Gymnasium's ``FlattenObservation`` into one vector for SB3's
``MlpPolicy``. SB3's ``MultiInputPolicy`` would flatten each key and concatenate them all the same, but it cannot
take the scalar (shape ``()``) fields of the pendulum tasks; one flat vector works on every task, and the saved
policy reads ``gymnasium.spaces.flatten(env.observation_space, obs)``.

Stable-Baselines3 and PyTorch are the optional ``rl`` extra: nothing here imports them until a run starts.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from trace_control import envs
from trace_control.config import ConfigError, build_config, format_seeds
from trace_control.evaluation import EvalReport, summarize
from trace_control.placements import PlacementSampler
from trace_control.rollout import run_episode
from trace_control.runs import CONFIG, LOG, RESULTS, RunFolder

POLICY = "policy.zip"
TEST_EPISODES = "test_episodes.json"
RL_EXTRA_FIX = 'pip install "trace-control[rl]"'
OBSERVATION = "FlattenObservation (the Dict's fields in one vector) -> MlpPolicy"

ALGORITHMS: dict[str, str] = {"sac": "SAC", "td3": "TD3", "ppo": "PPO"}
DEFAULT_STEPS: dict[str, int] = {"sac": 100_000, "td3": 100_000, "ppo": 300_000}
ALGORITHM_HELP: dict[str, str] = {
    "sac": "Soft Actor-Critic: off-policy, entropy-regularised; the usual first choice for continuous control",
    "td3": "Twin Delayed DDPG: off-policy, deterministic actor with Gaussian exploration noise (0.1 of the range)",
    "ppo": "Proximal Policy Optimization: on-policy, needs more environment steps, cheaper per step",
}
CURVE_POINTS = 20


class RLExtraMissing(ImportError):
    """Stable-Baselines3 or PyTorch cannot be imported; the message says how to install them."""


def require_rl_extra() -> None:
    """Import Stable-Baselines3 and PyTorch, or raise :class:`RLExtraMissing` with the install command."""
    try:
        import stable_baselines3  # noqa: F401
        import torch  # noqa: F401
    except ImportError as error:
        raise RLExtraMissing(f"RL baselines need Stable-Baselines3 and PyTorch ({error}); install them with: "
                             f"{RL_EXTRA_FIX}") from None


def hyperparameters(algo: str, steps: int) -> dict[str, Any]:
    """The settings a run changes from SB3's defaults, so that a small budget still learns.

    Off-policy (SAC, TD3): random actions for the first tenth of the budget (at most 10,000 steps), a replay
    buffer as large as the budget (at most 1M); TD3 adds Gaussian action noise of 0.1 of the half range.
    PPO: rollouts of 2,048 steps (fewer, in multiples of the minibatch of 64, for a smaller budget).
    """
    if algo == "ppo":
        rollout = 2048 if steps >= 2048 else (steps - steps % 64 if steps >= 64 else steps)
        return {"n_steps": rollout, "batch_size": min(64, rollout)}
    settings: dict[str, Any] = {"learning_starts": min(10_000, steps // 10), "buffer_size": min(1_000_000, steps)}
    if algo == "td3":
        settings["action_noise_sigma"] = 0.1
    return settings


@dataclass(frozen=True)
class BaselineConfig:
    """Every setting of an RL baseline run; :func:`baseline_config` builds a checked one."""

    task: str
    algo: str
    steps: int
    seed: int
    device: str
    threads: int
    env_kwargs: dict
    train_seeds: list[int]
    test_seeds: list[int]
    hyperparameters: dict

    def record(self) -> dict:
        """What ``config.json`` holds (seed lists as ranges, like an LLM run's)."""
        settings = asdict(self)
        settings.update(method=self.algo, observation=OBSERVATION,
                        train_seeds=format_seeds(self.train_seeds), test_seeds=format_seeds(self.test_seeds))
        return {"settings": settings}


def baseline_config(task: str, algo: str = "sac", steps: int | None = None, seed: int = 0, *,
                    test_seeds: Sequence[int] | None = None, train_seeds: Sequence[int] | None = None,
                    horizon: int | None = None, device: str = "cpu", threads: int = 1) -> BaselineConfig:
    """A checked config: the task's environment settings and placement seeds are an LLM run's defaults.

    ``steps`` None is the algorithm's default (:data:`DEFAULT_STEPS`). Raises :class:`ConfigError` for an
    unknown task or algorithm, a bad budget, seed set or device, and :class:`RLExtraMissing` without SB3.
    """
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo!r}; algorithms: {', '.join(ALGORITHMS)}")
    steps = DEFAULT_STEPS[algo] if steps is None else steps
    if steps < 2:
        raise ConfigError(f"steps must be at least 2 (a PPO minibatch needs two), got {steps}")
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    _check_device(device)
    settings = {"seed": seed, "horizon": horizon, "test_seeds": None if test_seeds is None else list(test_seeds),
                "train_seeds": None if train_seeds is None else list(train_seeds)}
    protocol, _ = build_config(task, settings)  # the same defaults and checks (disjoint seed sets) as train
    return BaselineConfig(task=protocol.task, algo=algo, steps=steps, seed=seed, device=device, threads=threads,
                          env_kwargs=protocol.env_kwargs(), train_seeds=list(protocol.train_seeds),
                          test_seeds=list(protocol.test_seeds), hyperparameters=hyperparameters(algo, steps))


def _check_device(device: str) -> None:
    require_rl_extra()
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device}: PyTorch sees no CUDA device here; use --device cpu")
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"device {device}: only cpu and cuda are supported")


class TrainingPlacements(gymnasium.Wrapper):
    """Starts every episode on the next placement of the training pool (shuffled once with the run's seed).

    A seed passed to ``reset`` does not choose the placement (SB3 passes its own on the first reset): the pool
    does, so that training never meets a validation or test placement, as in the LLM runs.
    """

    def __init__(self, env: gymnasium.Env, pool: Sequence[int], seed: int) -> None:
        super().__init__(env)
        self.sampler = PlacementSampler(pool, batch=1, seed=seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        return self.env.reset(seed=self.sampler.draw()[0], options=options)


def training_env(config: BaselineConfig) -> gymnasium.Env:
    """The task by its registered Gymnasium id, on training placements, with one flat observation vector."""
    env = gymnasium.make(envs.resolve(config.task).env_id, **config.env_kwargs)
    return gymnasium.wrappers.FlattenObservation(TrainingPlacements(env, config.train_seeds, config.seed))


def build_model(config: BaselineConfig, env: gymnasium.Env) -> Any:
    """A fresh SB3 model of ``config.algo`` on ``env`` with the run's seed, device and hyperparameters."""
    import stable_baselines3
    from stable_baselines3.common.noise import NormalActionNoise

    settings = dict(config.hyperparameters)
    sigma = settings.pop("action_noise_sigma", None)
    if sigma is not None:
        half_range = (env.action_space.high - env.action_space.low) / 2
        settings["action_noise"] = NormalActionNoise(np.zeros(env.action_space.shape), sigma * half_range)
    algorithm = getattr(stable_baselines3, ALGORITHMS[config.algo])
    return algorithm("MlpPolicy", env, seed=config.seed, device=config.device, verbose=0, **settings)


def load_model(run: RunFolder) -> Any:
    """The trained policy saved in a baseline run folder (``policy.zip``), on the CPU."""
    require_rl_extra()
    import stable_baselines3

    algo = run.read_json(CONFIG)["settings"]["algo"]
    return getattr(stable_baselines3, ALGORITHMS[algo]).load(run.file(POLICY), device="cpu")


class NetworkPolicy:
    """A trained SB3 model in the shape :func:`~trace_control.rollout.run_episode` drives: deterministic actions.

    It runs in this process: it is a network's weights, not code. ``act`` flattens the observation the way
    training did.
    """

    isolation = "this process (a trained network: weights, not code)"

    def __init__(self, model: Any, observation_space: gymnasium.spaces.Dict) -> None:
        self.model = model
        self.observation_space = observation_space

    def begin(self) -> None:
        """Nothing to reset: the network keeps no state between episodes."""

    def act(self, observation: dict) -> np.ndarray:
        action, _ = self.model.predict(gymnasium.spaces.flatten(self.observation_space, observation),
                                       deterministic=True)
        return action

    def printed(self) -> str:
        return ""


def evaluate_network(model: Any, task: str, seeds: Sequence[int], env_kwargs: dict | None = None) -> EvalReport:
    """One deterministic episode of ``model`` per placement seed, summarised like every controller's test."""
    env = envs.make(task, **(env_kwargs or {}))
    policy = NetworkPolicy(model, env.observation_space)
    started = time.perf_counter()
    try:
        episodes = [run_episode(env, policy, seed=int(seed)) for seed in seeds]
    finally:
        env.close()
    return summarize(task, [int(seed) for seed in seeds], episodes, time.perf_counter() - started, workers=1)


class TrainingMonitor:
    """Called by SB3 after every environment step: advances the progress bar and writes the learning curve.

    A training episode succeeds when ``info["success"]`` is set at any of its steps (as in the test). Every
    window of about 1/20 of the budget, the episodes that ended in it become one ``log.jsonl`` record (kind
    ``rl``: env steps so far, episodes, success rate and mean return of the window) and one printed line.
    """

    def __init__(self, run: RunFolder, config: BaselineConfig, progress: bool, echo: Callable[[str], None]) -> None:
        from tqdm import tqdm

        self.run = run
        self.window = max(1, math.ceil(config.steps / CURVE_POINTS))
        self.next_record = self.window
        self.bar = tqdm(total=config.steps, disable=not progress, desc=f"{config.algo} {config.task}",
                        unit="step", leave=False, dynamic_ncols=True)
        self.say = self.bar.write if progress else echo
        self.started = time.perf_counter()
        self.running_returns: list[float] = []
        self.running_success: list[bool] = []
        self.window_outcomes: list[tuple[bool, float]] = []
        self.episodes = 0
        self.successes = 0
        self.env_steps = 0

    def __call__(self, sb3_locals: dict, sb3_globals: dict) -> bool:
        rewards, dones, infos = sb3_locals["rewards"], sb3_locals["dones"], sb3_locals["infos"]
        if not self.running_returns:
            self.running_returns, self.running_success = [0.0] * len(rewards), [False] * len(rewards)
        for index, (reward, done, info) in enumerate(zip(rewards, dones, infos)):
            self.running_returns[index] += float(reward)
            self.running_success[index] = self.running_success[index] or bool(info.get("success"))
            if done:
                self.window_outcomes.append((self.running_success[index], self.running_returns[index]))
                self.running_returns[index], self.running_success[index] = 0.0, False
        self.env_steps = int(sb3_locals["self"].num_timesteps)
        self.bar.update(self.env_steps - self.bar.n)
        if self.env_steps >= self.next_record:
            self.flush()
            self.next_record = (self.env_steps // self.window + 1) * self.window
        return True

    def flush(self) -> None:
        """Log the episodes that ended since the last record (nothing when none did)."""
        if not self.window_outcomes:
            return
        self.episodes += len(self.window_outcomes)
        self.successes += sum(success for success, _ in self.window_outcomes)
        rate = statistics.fmean(success for success, _ in self.window_outcomes)
        mean_return = statistics.fmean(episode_return for _, episode_return in self.window_outcomes)
        seconds = time.perf_counter() - self.started
        self.run.append_log({"kind": "rl", "env_steps": self.env_steps, "episodes": self.episodes,
                             "window_episodes": len(self.window_outcomes), "success_rate": rate,
                             "return_mean": round(mean_return, 6), "seconds": round(seconds, 3)})
        self.say(f"{self.env_steps:>9,} steps | {self.episodes:,} episodes | last {len(self.window_outcomes)}: "
                 f"success {rate:.2f}, return {mean_return:.2f} | {seconds:.0f} s")
        self.window_outcomes = []

    def close(self) -> None:
        self.flush()
        self.bar.close()


def run_baseline(config: BaselineConfig, run: RunFolder, *, progress: bool = True,
                 echo: Callable[[str], None] = print) -> dict:
    """Train ``config.algo`` on ``config.task``, test it, write the run folder; return ``results.json``'s content.

    A run starts from scratch (an earlier log in the folder is replaced). PyTorch uses ``config.threads``
    threads during the run. Raises :class:`RLExtraMissing` without SB3.
    """
    require_rl_extra()
    import stable_baselines3
    import torch

    from trace_control.train import validation_summary

    run.path.mkdir(parents=True, exist_ok=True)
    run.write_json(CONFIG, config.record())
    run.write_text(LOG, "")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    env = training_env(config)
    try:
        monitor = TrainingMonitor(run, config, progress, echo)
        started = time.perf_counter()
        model = build_model(config, env)
        try:
            model.learn(total_timesteps=config.steps, callback=monitor)
        finally:
            monitor.close()
        train_seconds = time.perf_counter() - started
        temporary = run.file(f".{POLICY}.tmp.zip")
        model.save(temporary)
        os.replace(temporary, run.file(POLICY))
        report = evaluate_network(model, config.task, config.test_seeds, config.env_kwargs)
    finally:
        torch.set_num_threads(threads)
        env.close()
    run.write_json(TEST_EPISODES, report.episodes)
    test = validation_summary(report)  # the figures an LLM run's test reports, rounded alike
    test.pop("episodes")
    test["env_steps"] = report.env_steps
    results = {
        "task": config.task, "method": config.algo, "status": "completed",
        "stopped": f"completed {model.num_timesteps:,} environment steps",
        "test": test, "last_iteration_test": test, "test_seeds": len(config.test_seeds),
        "env_steps": {"train": int(model.num_timesteps), "validation": 0, "test": report.env_steps},
        "train_episodes": monitor.episodes, "train_successes": monitor.successes,
        "seconds": {"train": round(train_seconds, 3), "test": round(report.seconds, 3),
                    "total": round(train_seconds + report.seconds, 3)},
        "llm": {"calls": 0, "failed_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                "cost_usd": 0.0, "model": None},
        "baseline": {"algorithm": ALGORITHMS[config.algo], "library": f"stable-baselines3 "
                     f"{stable_baselines3.__version__}", "torch": torch.__version__, "observation": OBSERVATION,
                     "policy_file": POLICY},
        "isolation": NetworkPolicy.isolation,
    }
    run.write_json(RESULTS, results)
    try:
        from trace_control.report import write_curve

        write_curve(run)
    except Exception as error:  # noqa: BLE001 - a plot is a convenience; the results are already safe
        echo(f"could not draw the learning curve: {error}")
    low, high = report.success_interval
    echo(f"done: {ALGORITHMS[config.algo]} after {model.num_timesteps:,} steps ({train_seconds:.0f} s): test "
         f"success {report.success_rate:.2f} (95% CI {low:.2f}-{high:.2f}) over {len(config.test_seeds)} "
         f"placements, return {report.return_mean:.2f} ± {report.return_std:.2f}; run folder {run.path}")
    return results


def train_baseline(task: str, algo: str, steps: int | None, seed: int, run_folder: RunFolder | str | Path,
                   test_seeds: Sequence[int] | None = None, *, horizon: int | None = None, device: str = "cpu",
                   threads: int = 1, progress: bool = False, echo: Callable[[str], None] = print) -> dict:
    """One baseline run into ``run_folder`` (created if missing): :func:`baseline_config` then :func:`run_baseline`.

    The entry point for an experiment grid whose method is an RL algorithm; returns ``results.json``'s content,
    with the keys an LLM run's results have (``test``, ``last_iteration_test``, ``test_seeds``, ``env_steps``,
    ``llm`` with zero tokens) plus ``seconds`` and ``baseline``.
    """
    config = baseline_config(task, algo, steps, seed, test_seeds=test_seeds, horizon=horizon, device=device,
                             threads=threads)
    run = run_folder if isinstance(run_folder, RunFolder) else RunFolder(run_folder)
    return run_baseline(config, run, progress=progress, echo=echo)
