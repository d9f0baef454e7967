"""Training settings: one object, with per-task defaults in ``configs/*.json``.

Precedence (later wins): the dataclass defaults, ``configs/defaults.json``,
``configs/<task>.json``, a user's config file, command-line options. Every setting
is checked before any work starts; a bad one is one clear error.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"

METHODS: dict[str, dict[str, Any]] = {
    "trace": {"optimizer": "optoprime", "memory_size": 10, "mask": []},
    "nomem": {"optimizer": "optoprime", "memory_size": 0, "mask": []},
    "masked": {"optimizer": "optoprime", "memory_size": 10, "mask": ["Inputs", "Others", "Code", "Documentation"]},
    "opro": {"optimizer": "opro", "memory_size": 10, "mask": []},
}
METHOD_HELP = {"trace": "OptoPrime with memory 10 (the paper's Trace)", "nomem": "OptoPrime without memory",
               "masked": "OptoPrime with #Inputs, #Others, #Code, #Documentation hidden",
               "opro": "OPRO: parameters and feedback only, no trace"}


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


@dataclass
class TrainConfig:
    """Every setting of a training run."""

    task: str = "reach"
    method: str = "trace"
    optimizer: str = "optoprime"
    memory_size: int = 10
    mask: list[str] = field(default_factory=list)
    iterations: int = 30
    horizon: int | None = None
    feedback_types: str = "r hp hn fp"
    action_mode: str = "relative"
    train_seed: int = 0
    eval_seeds: list[int] = field(default_factory=lambda: list(range(100, 110)))
    eval_every: int = 1
    num_candidates: int = 1
    stop_at_success: bool = False
    model: str | None = None
    base_url: str | None = None
    temperature: float | None = None
    max_prompt_tokens: int = 6000
    workers: int = 1
    isolated: bool = True
    step_seconds: float = 1.0
    episode_seconds: float = 120.0
    max_consecutive_failures: int = 5
    controller: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def family(self) -> str:
        from trace_control import envs

        return envs.resolve(self.task).family

    def env_kwargs(self) -> dict:
        kwargs: dict[str, Any] = {}
        if self.horizon is not None:
            kwargs["horizon"] = self.horizon
        if self.family == "metaworld":
            kwargs["feedback_types"] = self.feedback_types
            kwargs["action_mode"] = self.action_mode
        return kwargs

    def label(self) -> str:
        return self.method if self.method in METHODS else f"{self.optimizer}-mem{self.memory_size}"


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the config file {path}: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"the config file {path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the config file {path} must hold a JSON object of settings")
    return data


def _coerce(name: str, value: Any) -> Any:
    kind = str(_FIELDS[name].type)
    optional = "None" in kind
    if value is None:
        if optional:
            return None
        raise ConfigError(f"setting {name} cannot be empty")
    try:
        if kind.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1"):
                    return True
                if value.lower() in ("false", "no", "0"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("list[int]"):
            return [int(v) for v in value]
        if kind.startswith("list[str]"):
            return [str(v) for v in value]
        return str(value) if kind.startswith("str") else value
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name} must be {kind.replace(' | None', '')}, got {value!r}") from None


def build_config(task: str, overrides: dict | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """The settings for ``task``: defaults, the task's file, ``config_file``, then ``overrides``."""
    from trace_control import envs

    try:
        info = envs.resolve(task)
    except envs.UnknownTaskError as error:
        raise ConfigError(str(error)) from None
    merged: dict[str, Any] = {}
    for path in (CONFIG_DIR / "defaults.json", CONFIG_DIR / f"{info.name}.json"):
        if path.is_file():
            merged.update(_read(path))
    if config_file is not None:
        merged.update(_read(Path(config_file)))
    supplied = {k: v for k, v in (overrides or {}).items() if v is not None}
    method = supplied.get("method", merged.get("method", "trace"))
    if method not in METHODS and method != "custom":
        raise ConfigError(f"unknown method {method!r}; methods: {', '.join(METHODS)}, custom")
    values = {**merged, **METHODS.get(method, {}), **supplied}
    values["task"] = info.name
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; settings are: {', '.join(sorted(_FIELDS))}")
    config = TrainConfig(**{name: _coerce(name, value) for name, value in values.items()})
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    from trace_control.envs.metaworld_tasks import FEEDBACK_TYPES
    from trace_control.optim.problem import normalize_section

    checks = [
        (config.iterations >= 1, "iterations must be at least 1"),
        (config.memory_size >= 0, "memory_size must be 0 or more"),
        (config.eval_every >= 1, "eval_every must be at least 1"),
        (config.num_candidates >= 1, "num_candidates must be at least 1"),
        (config.workers >= 1, "workers must be at least 1"),
        (config.horizon is None or config.horizon >= 1, "horizon must be at least 1"),
        (config.max_prompt_tokens >= 500, "max_prompt_tokens must be at least 500"),
        (config.step_seconds > 0 and config.episode_seconds > 0, "time limits must be positive"),
        (config.max_consecutive_failures >= 1, "max_consecutive_failures must be at least 1"),
        (bool(config.eval_seeds), "eval_seeds must name at least one seed"),
        (config.optimizer in ("optoprime", "opro"), f"unknown optimizer {config.optimizer!r}; use optoprime or opro"),
        (config.action_mode in ("relative", "absolute", "native"), "action_mode must be relative, absolute or native"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if config.train_seed in config.eval_seeds:
        raise ConfigError(f"the training seed {config.train_seed} is also an evaluation seed; evaluation seeds "
                          "must be held out")
    bad = [t for t in config.feedback_types.replace(",", " ").split() if t not in FEEDBACK_TYPES]
    if bad:
        raise ConfigError(f"unknown feedback type {bad[0]!r}; types: {', '.join(FEEDBACK_TYPES)}")
    for section in config.mask:
        try:
            normalize_section(section)
        except ValueError as error:
            raise ConfigError(str(error)) from None


def parse_seeds(text: str) -> list[int]:
    """``"100-109"``, ``"1,2,5"`` or ``"0-4,9"`` -> a list of seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                low, high = part.split("-", 1) if not part.startswith("-") else (part, part)
                seeds += list(range(int(low), int(high) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ConfigError(f"cannot read seeds from {text!r}; write e.g. 100-109 or 1,2,5") from None
    if not seeds:
        raise ConfigError(f"no seeds in {text!r}")
    return seeds
