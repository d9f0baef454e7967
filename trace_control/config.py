"""Training settings, declared once: each field carries its help text and its check.

The command line and the config file are both generated from :class:`TrainConfig`.
Precedence (later wins): the field defaults, ``configs/defaults.json``,
``configs/<task>.json``, the method and protocol presets, a user's config file, the
command line. A preset only fills what the user did not set. Every value is checked
(strict types: a bool is not an int, a text is not a list) before any work starts; a bad
one is one clear error. ``config.json`` in a run folder records every final value and
where it came from.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
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
PROTOCOLS: dict[str, dict[str, Any]] = {
    "batches": {},
    "paper": {"batch": 1, "resample": False, "solved_batches": 0, "patience": 0,
              "test_seeds": list(range(2000, 2010))},
}
PROTOCOL_HELP = {"batches": "a batch of training placements per iteration, failing ones first, new ones once "
                            "solved; stop when validation is solved",
                 "paper": "the paper's protocol: one fixed training placement, every iteration run, 10 test "
                          "placements"}


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why."""


def setting(default: Any, help: str, *, flag: str | None = None, choices: tuple | None = None,
            check: Callable[[Any], str | None] | None = None, group: str = "training",
            metavar: str | None = None) -> Any:
    """A field of :class:`TrainConfig` with its help, command-line flag and check (None = fine)."""
    metadata = {"help": help, "flag": flag, "choices": choices, "check": check, "group": group, "metavar": metavar}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda value: None if value is None or value >= low else f"must be at least {low}"


def _positive(value: Any) -> str | None:
    return None if value is None or value > 0 else "must be positive"


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda value: None if value is None or low <= value <= high else f"must be between {low} and {high}"


def _seed_list(value: list[int]) -> str | None:
    if not value:
        return "must name at least one seed"
    if any(seed < 0 or seed >= 2**32 for seed in value):
        return "seeds must be between 0 and 4294967295"
    if len(set(value)) != len(value):
        return "must not repeat a seed"
    return None


def _feedback(value: str) -> str | None:
    from trace_control.envs import FEEDBACK_TYPES

    bad = [item for item in value.replace(",", " ").split() if item not in FEEDBACK_TYPES]
    return f"unknown feedback type {bad[0]!r}; types: {', '.join(FEEDBACK_TYPES)}" if bad else None


def _mask(value: list[str]) -> str | None:
    from trace_control.optim.problem import normalize_section

    for section in value:
        try:
            normalize_section(section)
        except ValueError as error:
            return str(error)
    return None


def _method(value: str) -> str | None:
    return None if value in METHODS or value == "custom" else f"unknown method {value!r}; methods: " \
        f"{', '.join(METHODS)}, custom"


@dataclass
class TrainConfig:
    """Every setting of a training run."""

    task: str = setting("reach", "task short name or Gymnasium id (see 'trace-control list')", group="task")
    method: str = setting("trace", "preset of optimizer, memory and masking: " + "; ".join(
        f"{name}: {text}" for name, text in METHOD_HELP.items()) + "; custom: as set", check=_method,
        group="method")
    protocol: str = setting("batches", "training protocol: " + "; ".join(
        f"{name}: {text}" for name, text in PROTOCOL_HELP.items()), choices=tuple(PROTOCOLS), group="method")
    optimizer: str = setting("optoprime", "the optimizer", choices=("optoprime", "opro"), group="method")
    memory_size: int = setting(10, "past attempts shown to the LLM (0: none)", flag="--memory",
                               check=_at_least(0), group="method")
    mask: list[str] = setting([], "report sections hidden from the LLM, e.g. Inputs,Others,Code", check=_mask,
                              group="method", metavar="SECTIONS")
    iterations: int = setting(30, "most optimization iterations (one batch and one update each)",
                              check=_at_least(1))
    batch: int = setting(4, "training placements rolled out per iteration", check=_at_least(1))
    resample: bool = setting(True, "replace solved training placements with new ones (--no-resample keeps "
                                   "the first batch for the whole run, as the paper does)")
    traced_episodes: int = setting(1, "failing episodes of a batch shown in full in the trace",
                                   check=_at_least(1))
    seed: int = setting(0, "the run's seed: which training placements are drawn, and in which order",
                        check=_at_least(0))
    train_seeds: list[int] = setting(list(range(0, 1000)), "the training pool of placement seeds",
                                     check=_seed_list, metavar="SEEDS")
    validation_seeds: list[int] = setting(list(range(1000, 1020)), "placements that choose the best iteration",
                                          check=_seed_list, metavar="SEEDS")
    validate_every: int = setting(1, "validate every N iterations (and always after the last)",
                                  check=_at_least(1))
    test_seeds: list[int] = setting(list(range(2000, 2050)), "placements tested once at the end, on the chosen "
                                                             "controller", check=_seed_list, metavar="SEEDS")
    solved_batches: int = setting(2, "stop once validation success is 1.0 and this many batches in a row all "
                                     "succeeded (0: never stop early)", check=_at_least(0), group="stopping")
    patience: int = setting(10, "stop after this many validations without improvement (0: never)",
                            check=_at_least(0), group="stopping")
    max_tokens: int | None = setting(None, "stop cleanly once the run has used this many LLM tokens",
                                     check=_at_least(1), group="stopping")
    max_cost: float | None = setting(None, "stop cleanly once the run's estimated LLM cost reaches this (USD)",
                                     check=_positive, group="stopping")
    max_consecutive_failures: int = setting(5, "stop after this many failed LLM calls in a row",
                                            check=_at_least(1), group="stopping")
    num_candidates: int = setting(1, "suggestions per update; each is tried on the batch and the best applied",
                                  flag="--candidates", check=_at_least(1), group="method")
    max_prompt_tokens: int = setting(6000, "token budget of every prompt", check=_at_least(500), group="method")
    horizon: int | None = setting(None, "steps per episode (default: the task's)", check=_between(1, 10_000),
                                  group="task")
    feedback_types: str = setting("r hp hn fp", "Meta-World feedback types: r (reward), hp / hn (hindsight "
                                                "positive / negative), fp (future positive)", flag="--feedback",
                                  check=_feedback, group="task")
    action_mode: str = setting("relative", "Meta-World action mode", choices=("relative", "absolute", "native"),
                               group="task")
    controller: str | None = setting(None, "starting controller as package.module:Class (default: the task's)",
                                     group="task")
    model: str | None = setting(None, "model name (default: $TRACE_CONTROL_MODEL or gpt-4o)", group="LLM")
    base_url: str | None = setting(None, "OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 (default: "
                                         "$OPENAI_BASE_URL or the OpenAI API)", group="LLM")
    temperature: float | None = setting(None, "sampling temperature (default: the server's)", check=_at_least(0),
                                        group="LLM")
    workers: int = setting(1, "parallel episode workers (each with its own simulator and jail)",
                           check=_between(1, 256), group="execution")
    static_check: bool = setting(True, "refuse LLM code that imports outside math/numpy/... or reaches for files "
                                       "and internals, with the reason as feedback (advice for the LLM: the jail "
                                       "is the wall)", group="execution")
    in_process: bool = setting(False, "run controller code in this process, without the jail (only for code you "
                                      "trust)", group="execution")
    step_seconds: float = setting(1.0, "time limit of one controller call", check=_between(0.001, 3600),
                                  group="execution")
    episode_seconds: float = setting(120.0, "time limit of the controller's calls in one episode",
                                     check=_between(0.001, 86400), group="execution")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

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

    def jail_limits(self):
        from trace_control.sandbox import JailLimits

        return JailLimits(step_seconds=self.step_seconds, episode_seconds=self.episode_seconds)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
SEED_FIELDS = {name for name, f in FIELDS.items() if f.metadata.get("metavar") == "SEEDS"}


# -- values and their types ------------------------------------------------------------------------
def _field_type(name: str) -> Any:
    return typing.get_type_hints(TrainConfig)[name]


def _kind(name: str) -> tuple[Any, bool]:
    """(the base type, whether None is allowed) of a field."""
    hint = _field_type(name)
    arguments = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in arguments:
        return next(a for a in arguments if a is not type(None)), True
    return hint, False


def type_name(name: str) -> str:
    kind, optional = _kind(name)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    text = names.get(kind) or ("a list of seeds (e.g. [1, 2] or \"100-119\")" if name in SEED_FIELDS
                               else "a list of texts" if kind == list[str] else str(kind))
    return f"{text} or null" if optional else text


def coerce(name: str, value: Any) -> Any:
    """``value`` for the field ``name``, strictly typed; raises ConfigError naming the field."""
    kind, optional = _kind(name)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"setting {name} cannot be empty; it must be {type_name(name)}")
    if name in SEED_FIELDS and isinstance(value, str):
        return parse_seeds(value, name)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif kind == list[int]:
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    elif kind == list[str]:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"setting {name} must be {type_name(name)}, got {json.dumps(value, default=str)[:80]}")
    return list(value) if isinstance(value, list) else value


def check(config: TrainConfig) -> None:
    """Every field's own check, then the checks that involve several fields."""
    for name, spec in FIELDS.items():
        value = getattr(config, name)
        choices = spec.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"setting {name} must be one of {', '.join(choices)}, got {value!r}")
        problem = spec.metadata["check"](value) if spec.metadata.get("check") else None
        if problem:
            raise ConfigError(f"setting {name} {problem}")
    pools = {"train_seeds": set(config.train_seeds), "validation_seeds": set(config.validation_seeds),
             "test_seeds": set(config.test_seeds)}
    names = list(pools)
    for index, first in enumerate(names):
        for second in names[index + 1:]:
            shared = sorted(pools[first] & pools[second])
            if shared:
                raise ConfigError(f"{first} and {second} share placement {shared[0]}; the three seed sets must "
                                  "be disjoint")
    if config.batch > len(config.train_seeds):
        raise ConfigError(f"batch ({config.batch}) is larger than the training pool ({len(config.train_seeds)})")


# -- building a config ------------------------------------------------------------------------------
def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the config file {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else ""
        raise ConfigError(f"the config file {path} is not valid JSON{where}: "
                          f"{getattr(error, 'msg', error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the config file {path} must hold a JSON object of settings")
    if isinstance(data.get("settings"), dict):  # a run folder's config.json
        data = data["settings"]
    return data


def build_config(task: str, command_line: dict | None = None,
                 config_file: str | Path | None = None) -> tuple[TrainConfig, dict[str, str]]:
    """The settings for ``task`` and where each came from (see the module doc for the order)."""
    from trace_control import envs

    try:
        info = envs.resolve(task)
    except envs.UnknownTaskError as error:
        raise ConfigError(str(error)) from None
    layers: list[tuple[str, dict]] = []
    for path, label in ((CONFIG_DIR / "defaults.json", "defaults"),
                        (CONFIG_DIR / f"{info.name}.json", f"task defaults ({info.name})")):
        if path.is_file():
            layers.append((label, read_config_file(path)))
    user = [(f"config file {config_file}", read_config_file(config_file))] if config_file is not None else []
    user.append(("command line", {k: v for k, v in (command_line or {}).items() if v is not None}))
    chosen = {key: value for _, layer in layers + user for key, value in layer.items()}
    for layer_label, layer in layers + user:
        unknown = sorted(set(layer) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} in the {layer_label}; settings: "
                              f"{', '.join(sorted(FIELDS))}")
    user_set = {key for _, layer in user for key in layer}
    method = chosen.get("method", "trace")
    if "method" not in user_set and user_set & set(METHODS["trace"]):
        method = "custom"  # optimizer, memory or mask set by hand: the preset does not apply
    presets = [(f"method {method}", METHODS.get(method, {})),
               (f"protocol {chosen.get('protocol', 'batches')}", PROTOCOLS.get(chosen.get("protocol", "batches"),
                                                                              {}))]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {name: "default" for name in FIELDS}
    for label, layer in layers + presets:
        for key, value in layer.items():
            if label.startswith(("method", "protocol")) and key in user_set:
                continue
            values[key], sources[key] = value, label
    for label, layer in user:
        for key, value in layer.items():
            values[key], sources[key] = value, label
    values["method"], values["task"] = method, info.name
    sources["task"] = "command line"
    config = TrainConfig(**{name: coerce(name, value) for name, value in values.items()})
    check(config)
    return config, sources


def config_record(config: TrainConfig, sources: dict[str, str]) -> dict:
    """What a run folder's ``config.json`` holds: the final values (seed lists as ranges) and their sources."""
    settings = {name: format_seeds(value) if name in SEED_FIELDS else value
                for name, value in config.to_dict().items()}
    return {"settings": settings, "sources": sources}


# Settings a run folder (someone else's, maybe) must not choose: leaving the jail, where the API key
# is sent, and which code the trainer imports are the user's explicit choices, on the command line.
NEVER_INHERITED = ("in_process", "base_url", "controller")


def recorded_settings(record: dict, command_line: dict | None = None, continuing: bool = True) -> dict:
    """A run folder's settings without :data:`NEVER_INHERITED`, for resuming or replaying the run
    (``continuing``) or for reading its task settings (e.g. a report).

    A run that used its own controller class names it, and continuing that run asks for the
    same reference on the command line.
    """
    settings = record.get("settings", record)
    given = {name: value for name, value in (command_line or {}).items() if value is not None}
    if continuing and settings.get("controller") and "controller" not in given:
        raise ConfigError(f"this run used the controller {settings['controller']!r}; a run folder cannot choose "
                          f"code to import: pass --controller {settings['controller']} to continue it")
    kept = {name: value for name, value in settings.items() if name in FIELDS and name not in NEVER_INHERITED}
    return {**kept, **given}


def config_from_record(record: dict, command_line: dict | None = None, continuing: bool = True) -> TrainConfig:
    """The config a run folder recorded (see :func:`config_record`; and :func:`recorded_settings`)."""
    settings = recorded_settings(record, command_line, continuing)
    config = TrainConfig(**{name: coerce(name, value) for name, value in settings.items()})
    check(config)
    return config


# -- seeds ------------------------------------------------------------------------------------------
def parse_seeds(text: str, what: str = "seeds") -> list[int]:
    """``"100-109"``, ``"1,2,5"`` or ``"0-4,9"`` -> a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, separator, high = part.partition("-")
        try:
            first, last = int(low), int(high if separator else low)
        except ValueError:
            raise ConfigError(f"cannot read {what} from {text!r}; write e.g. 100-109 or 1,2,5 (seeds are 0 or "
                              "more)") from None
        if last < first:
            raise ConfigError(f"{what}: the range {part!r} runs backwards; write low-high")
        if last - first > 10_000_000:
            raise ConfigError(f"{what}: the range {part!r} is too long")
        seeds += range(first, last + 1)
    if not seeds:
        raise ConfigError(f"no seeds in {text!r}; write e.g. 100-109 or 1,2,5")
    problem = _seed_list(seeds)
    if problem:
        raise ConfigError(f"{what} {problem}")
    return seeds


def format_seeds(seeds: list[int]) -> str:
    """The inverse of :func:`parse_seeds`: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    parts: list[str] = []
    start = previous = None
    for seed in list(seeds) + [None]:
        if start is not None and (seed is None or seed != previous + 1):
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = None
        if seed is not None and start is None:
            start = seed
        previous = seed
    return ",".join(parts)
