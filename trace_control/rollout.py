"""Episodes: traced (for training) and plain (for evaluation and workers).

A traced episode records, per step, the controller op (``controller``: observation
and parameters -> action) and the env-step op (``step``: action -> next observation,
whose value also carries the step's feedback text, so OptoPrime sees it under
#Others). It ends on success, termination, the horizon, or an error, and returns
the node to call ``backward`` on together with the episode's feedback text.

A plain episode runs the same loop on plain values and keeps a record of it;
:func:`graph_from_episode` rebuilds the traced graph from that record, which is how
episodes run in isolated workers are shown to the optimizer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trace_control.trace import ExceptionNode, ExecutionError, MessageNode, Module, Node, bundle, node

STEP_DOC = ("Apply the action in the simulator (one environment step). Returns the next observation, "
            "which carries the step's feedback text.")


class Observation(dict):
    """An observation dict with the feedback of the step that produced it."""

    def __init__(self, values: dict, feedback: str = "") -> None:
        super().__init__(values)
        self.feedback = feedback

    def __trace_render__(self) -> dict:
        return {**self, "feedback": self.feedback}

    def __reduce__(self) -> tuple:
        return (Observation, (dict(self), self.feedback))


@dataclass
class StepRecord:
    observation: dict
    action: Any
    reward: float
    feedback: str


@dataclass
class Episode:
    """What happened in one episode (plain data, picklable)."""

    seed: int | None
    success: bool = False
    episode_return: float = 0.0
    length: int = 0
    error: str | None = None
    error_kind: str | None = None  # "controller" or "action"
    first_observation: dict = field(default_factory=dict)
    first_feedback: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    outcome: str = ""
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"seed": self.seed, "success": self.success, "return": round(self.episode_return, 6),
                "length": self.length, "error": self.error}


@dataclass
class Rollout:
    """A traced episode: ``output`` is the node to back-propagate ``feedback`` from."""

    output: Node
    feedback: str
    episode: Episode


def _error_feedback(episode: Episode) -> str:
    where = f"at step {episode.length + 1}"
    if episode.error_kind == "action":
        return f"Success: False\nThe action returned {where} could not be executed: {episode.error}"
    return f"Success: False\nThe controller raised an error {where}:\n{episode.error}"


def _finish(episode: Episode, env: Any, started: float) -> Episode:
    """Fill in the episode's feedback text (outcome or error) and its duration."""
    episode.outcome = _error_feedback(episode) if episode.error else env.outcome_text(
        episode.episode_return, episode.success)
    episode.seconds = time.perf_counter() - started
    return episode


def run_episode(env: Any, policy: Callable[[dict], Any], seed: int | None = None, horizon: int | None = None,
                keep_steps: bool = False, describe_error: Callable[[BaseException], str] | None = None,
                on_frame: Callable[[Any], None] | None = None) -> Episode:
    """Run ``policy`` (observation dict -> action) for one episode, untraced."""
    from trace_control.envs.base import ActionError

    started = time.perf_counter()
    observation, info = env.reset(seed=seed)
    episode = Episode(seed=seed, first_observation=dict(observation), first_feedback=info.get("feedback", ""))
    if on_frame is not None:
        on_frame(env.render())
    limit = horizon or getattr(env, "horizon", 1000)
    for _ in range(limit):
        try:
            action = policy(observation)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - the controller's failure (even SystemExit) is feedback
            episode.error = describe_error(error) if describe_error else f"({type(error).__name__}) {error}"
            episode.error_kind = "controller"
            break
        try:
            observation, reward, terminated, truncated, info = env.step(action)
        except ActionError as error:
            episode.error, episode.error_kind = str(error), "action"
            if keep_steps:
                episode.steps.append(StepRecord({}, _plain_action(action), 0.0, ""))
            break
        episode.length += 1
        episode.episode_return += reward
        if keep_steps:
            episode.steps.append(StepRecord(dict(observation), _plain_action(action), float(reward),
                                            info.get("feedback", "")))
        if on_frame is not None:
            on_frame(env.render())
        if info.get("success"):
            episode.success = True
        if terminated or truncated:
            break
    return _finish(episode, env, started)


def _plain_action(action: Any, limit: int = 64) -> Any:
    """The action as plain, small data for the record (oversized or odd values become text)."""
    if hasattr(action, "tolist"):
        action = action.tolist()
    if isinstance(action, (list, tuple)) and len(action) <= limit:
        items = [a.item() if hasattr(a, "item") else a for a in action]
        if all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in items):
            return items
    if isinstance(action, (int, float)) and not isinstance(action, bool):
        return action
    text = repr(action)
    return text if len(text) <= 200 else text[:200] + "..."


def traced_rollout(env: Any, controller: Module, seed: int | None = None, horizon: int | None = None) -> Rollout:
    """Run ``controller`` for one traced episode in this process (see the module doc)."""
    from trace_control.envs.base import ActionError

    started = time.perf_counter()
    observation, info = env.reset(seed=seed)
    episode = Episode(seed=seed, first_observation=dict(observation), first_feedback=info.get("feedback", ""))
    outcome: dict[str, Any] = {}

    @bundle(description=STEP_DOC)
    def step(action):
        next_observation, reward, terminated, truncated, step_info = env.step(action)
        outcome.update(reward=float(reward), done=bool(terminated or truncated), info=step_info)
        return Observation(next_observation, step_info.get("feedback", ""))

    current: Node = node(Observation(observation, episode.first_feedback), name="obs")
    limit = horizon or getattr(env, "horizon", 1000)
    for _ in range(limit):
        try:
            action = controller(current)
        except ExecutionError as error:
            episode.error, episode.error_kind = error.exception_node.data, "controller"
            current = error.exception_node
            break
        try:
            current = step(action)
        except ExecutionError as error:
            kind = "action" if isinstance(error.exception, ActionError) else "simulator"
            episode.error, episode.error_kind = str(error.exception), kind
            current = error.exception_node
            episode.steps.append(StepRecord({}, _plain_action(action.data), 0.0, ""))
            break
        episode.length += 1
        episode.episode_return += outcome["reward"]
        episode.steps.append(StepRecord(dict(current.data), _plain_action(action.data), outcome["reward"],
                                        current.data.feedback))
        if outcome["info"].get("success"):
            episode.success = True
        if outcome["done"]:
            break
    return Rollout(current, _finish(episode, env, started).outcome, episode)


def graph_from_episode(episode: Episode, controller: Module) -> Rollout:
    """Rebuild the traced graph of an episode recorded elsewhere (e.g. in a worker).

    The graph has the shape :func:`traced_rollout` records: per step a ``controller``
    op (parents: the observation and the controller's parameters) and a ``step`` op.
    """
    op = controller.controller
    code = op.parameter
    constants = {key: p for key, p in controller.parameters_dict().items() if p is not code and "." not in key}
    controller_doc = f"[{op.name}] {op.doc}"
    step_doc = f"[step] {STEP_DOC}"
    current: Node = node(Observation(episode.first_observation, episode.first_feedback), name="obs")

    def controller_inputs(observation_node: Node) -> dict[str, Node]:
        inputs: dict[str, Node] = {"obs": observation_node}
        inputs.update(constants)
        if code is not None:
            inputs["__code"] = code
        return inputs

    for record in episode.steps:
        action = MessageNode(record.action, controller_inputs(current), name=op.name, description=controller_doc)
        if not record.observation and episode.error_kind == "action":
            current = ExceptionNode(f"(ActionError) {episode.error}", {"action": action}, ValueError(episode.error),
                                    name="step", description=step_doc)
            return Rollout(current, episode.outcome, episode)
        current = MessageNode(Observation(record.observation, record.feedback), {"action": action}, name="step",
                              description=step_doc)
    if episode.error_kind == "controller":
        current = ExceptionNode(episode.error, controller_inputs(current), RuntimeError(episode.error),
                                name=op.name, description=controller_doc)
    return Rollout(current, episode.outcome, episode)
