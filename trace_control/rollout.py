"""Episodes: the simulator here, the controller wherever its policy runs, and the graph they make.

:func:`run_episode` is the one episode loop: the trusted side resets and steps the
environment, asks the policy (a jail, or this process) for each action, and records what
happened. Success, return, the feedback text and the outcome are computed here, from the
simulator, never from the controller.

:func:`graph_from_episode` turns an episode's record into the traced graph OptoPrime
reads: per step a ``controller`` op (parents: the observation and the controller's
parameters) and a ``step`` op whose value carries the next observation and the step's
feedback text (so the text lands in #Others, as in the paper).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trace_control.policies import ControllerFailure, Policy
from trace_control.trace import ExceptionNode, MessageNode, Module, Node, node

STEP_DOC = ("Apply the action in the simulator (one environment step). Returns the next observation, "
            "which carries the step's feedback text.")
MAX_PRINTED_CHARS = 500


class Observation(dict):
    """An observation dict with the feedback of the step that produced it (how graph nodes show it)."""

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
    """What happened in one episode (plain data, picklable, JSON-able)."""

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
    """A recorded episode as a graph: ``output`` is the node to back-propagate ``feedback`` from."""

    output: Node
    feedback: str
    episode: Episode


def plain_observation(observation: Mapping[str, Any]) -> dict:
    """Numpy values as lists and floats, for records and prompts."""
    return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in observation.items()}


def plain_action(action: Any, limit: int = 64) -> Any:
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


def outcome_text(episode: Episode, progress: str = "") -> str:
    """The episode's feedback for the optimizer: the outcome, or what stopped the episode."""
    if episode.error_kind == "action":
        return (f"Success: False\nThe action returned at step {episode.length + 1} could not be executed: "
                f"{episode.error}")
    if episode.error_kind == "controller":
        return f"Success: False\nThe controller failed at step {episode.length + 1}:\n{episode.error}"
    lines = [f"Success: {episode.success}", f"Return: {episode.episode_return:.3f}"]
    if not episode.success and progress:
        lines.append(progress)
    return "\n".join(lines)


def horizon_of(env: Any) -> int:
    """The most steps an episode of ``env`` can take (its time limit)."""
    for name in ("horizon", "_max_episode_steps"):
        try:
            value = env.get_wrapper_attr(name)
        except AttributeError:
            continue
        if value:
            return int(value)
    spec = getattr(env, "spec", None)
    return int(spec.max_episode_steps) if spec is not None and spec.max_episode_steps else 1000


def run_episode(env: Any, policy: Policy, seed: int | None = None, keep_steps: bool = False,
                on_frame: Callable[[Any], None] | None = None) -> Episode:
    """Run one episode of the policy's loaded controller on ``env`` (reset with ``seed``)."""
    from trace_control.envs import ActionError

    started = time.perf_counter()
    observation, info = env.reset(seed=seed)
    episode = Episode(seed=seed, first_observation=plain_observation(observation),
                      first_feedback=info.get("feedback", ""))
    progress = ""
    if on_frame is not None:
        on_frame(env.render())
    try:
        policy.begin()
        for _ in range(horizon_of(env)):
            action = policy.act(observation)
            try:
                observation, reward, terminated, truncated, info = env.step(action)
            except ActionError as error:
                episode.error, episode.error_kind = str(error), "action"
                if keep_steps:
                    episode.steps.append(StepRecord({}, plain_action(action), 0.0, ""))
                break
            episode.length += 1
            episode.episode_return += float(reward)
            progress = info.get("progress", progress)
            if keep_steps:
                episode.steps.append(StepRecord(plain_observation(observation), plain_action(action), float(reward),
                                                info.get("feedback", "")))
            if on_frame is not None:
                on_frame(env.render())
            if info.get("success"):
                episode.success = True
            if terminated or truncated:
                break
    except ControllerFailure as failure:
        episode.error, episode.error_kind = failure.feedback, "controller"
    episode.outcome = outcome_text(episode, progress)
    printed = policy.printed()
    if printed:
        more = f"... ({len(printed) - MAX_PRINTED_CHARS} more characters)" if len(printed) > MAX_PRINTED_CHARS else ""
        quoted = (printed[:MAX_PRINTED_CHARS] + more).rstrip("\n").replace("\n", "\n  | ")
        episode.outcome += f"\nThe controller printed (its own text, not an outcome):\n  | {quoted}"
    episode.seconds = time.perf_counter() - started
    return episode


def graph_from_episode(episode: Episode, controller: Module) -> Rollout:
    """The traced graph of a recorded episode, wired to ``controller``'s own parameter nodes."""
    op_name = "controller"
    parameters = controller.parameters_dict()
    op = getattr(controller, op_name, None)
    doc = getattr(op, "doc", "") or "The controller: maps an observation to an action."
    controller_doc = f"[{op_name}] {doc}"
    step_doc = f"[step] {STEP_DOC}"
    inputs_of_parameters: dict[str, Node] = {}
    for key, parameter in parameters.items():
        inputs_of_parameters["__code" if key == f"{op_name}.__code" else key.replace(".", "_")] = parameter
    current: Node = node(Observation(episode.first_observation, episode.first_feedback), name="obs")
    for record in episode.steps:
        action = MessageNode(record.action, {"obs": current, **inputs_of_parameters}, name=op_name,
                             description=controller_doc)
        if not record.observation and episode.error_kind == "action":
            current = ExceptionNode(f"(ActionError) {episode.error}", {"action": action}, ValueError(episode.error),
                                    name="step", description=step_doc)
            return Rollout(current, episode.outcome, episode)
        current = MessageNode(Observation(record.observation, record.feedback), {"action": action}, name="step",
                              description=step_doc)
    if episode.error_kind == "controller":
        current = ExceptionNode(episode.error, {"obs": current, **inputs_of_parameters}, RuntimeError(episode.error),
                                name=op_name, description=controller_doc)
    return Rollout(current, episode.outcome, episode)


def _informative(episode: Episode) -> tuple:
    """Sort key: errors first (they say exactly what to fix), then failures with the lowest return."""
    kind = {"controller": 0, "action": 1}.get(episode.error_kind or "", 2 if not episode.success else 3)
    return (kind, episode.episode_return)


def outcome_line(episode: Episode) -> str:
    """One line per placement of a batch: the outcome, the return, and what went wrong first."""
    if episode.error:
        where = "the controller failed" if episode.error_kind == "controller" else "the action could not be executed"
        return f"placement {episode.seed}: {where} at step {episode.length + 1}: {episode.error.splitlines()[0]}"
    detail = episode.outcome.split("\n")[2:3]
    text = f"placement {episode.seed}: {'success' if episode.success else 'failure'}, return " \
           f"{episode.episode_return:.3f}, {episode.length} steps"
    return text + (f". {detail[0]}" if detail and not episode.success else "")


def batch_rollout(episodes: list[Episode], controller: Module, traced: int = 1) -> Rollout:
    """One graph and one feedback for a batch of episodes of the same controller.

    A batch of one is the paper's setting: its graph and its outcome, unchanged. A larger
    batch shows the ``traced`` most informative episodes in full (errors first, then the
    worst failures) as the inputs of one ``batch`` op, and its feedback has a line per
    placement, then the full outcome of the traced episodes.
    """
    if len(episodes) == 1:
        return graph_from_episode(episodes[0], controller)
    shown = sorted(episodes, key=_informative)[:traced]
    rollouts = [graph_from_episode(episode, controller) for episode in shown]
    succeeded = sum(episode.success for episode in episodes)
    lines = [f"Batch of {len(episodes)} training placements: {succeeded} succeeded, "
             f"{len(episodes) - succeeded} failed."]
    lines += [outcome_line(episode) for episode in episodes]
    for index, rollout in enumerate(rollouts):
        lines.append(f"Placement {rollout.episode.seed} is traced in full (episode{index}); its outcome:\n"
                     f"{rollout.episode.outcome}")
    summary = {episode.seed: "success" if episode.success else ("error" if episode.error else "failure")
               for episode in episodes}
    output = MessageNode(summary, {f"episode{i}": r.output for i, r in enumerate(rollouts)}, name="batch",
                         description="[batch] The outcome of each placement of the batch (placement seed -> "
                                     "success / failure / error); the traced episodes are its inputs.")
    return Rollout(output, "\n".join(lines), rollouts[0].episode)
