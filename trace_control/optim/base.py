"""What OptoPrime and OPRO share: feedback plumbing, asking the LLM, applying answers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from trace_control.llm import LLMClient, LLMError
from trace_control.optim.parse import parse_answer
from trace_control.optim.render import compact, estimate_tokens
from trace_control.optim.update import CodeChecker, apply, resolve_names, validate
from trace_control.trace import Module, Node, ParameterNode, TraceError, to_literal


@dataclass
class Proposal:
    """One candidate update: what the LLM suggested, what passed validation, and why not."""

    update: dict[ParameterNode, Any]
    reasoning: str = ""
    problems: list[str] = field(default_factory=list)
    answer: str = ""

    def named_update(self) -> dict[str, Any]:
        return {parameter.py_name: value for parameter, value in self.update.items()}


@dataclass
class StepRecord:
    """What one ``step()`` did, for logs and reports."""

    prompt: str = ""
    prompt_tokens_estimate: int = 0
    proposals: list[Proposal] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)
    reasoning: str = ""
    problems: list[str] = field(default_factory=list)
    error: str | None = None


class Optimizer:
    """Base: ``zero_feedback()``, ``backward(node, feedback)``, ``step()``.

    ``step()`` never raises for a bad answer or a failed call: the reason is kept in
    ``last_record`` and shown to the LLM in the next prompt.
    """

    system_prompt = ""

    def __init__(self, parameters: Iterable[ParameterNode] | Module, llm: LLMClient | None = None,
                 objective: str | None = None, num_candidates: int = 1,
                 code_checker: CodeChecker | None = None,
                 aliases: dict[str, ParameterNode] | None = None) -> None:
        if isinstance(parameters, Module):
            aliases = {**parameters.parameters_dict(), **(aliases or {})}
            parameters = parameters.parameters()
        self.parameters: list[ParameterNode] = [p for p in parameters]
        for parameter in self.parameters:
            if not isinstance(parameter, ParameterNode):
                raise TypeError(f"optimizers take ParameterNodes, got {type(parameter).__name__}")
        self._check_unique_names()
        self.llm = llm if llm is not None else LLMClient()
        self.objective = objective
        self.num_candidates = max(1, int(num_candidates))
        self.code_checker = code_checker
        self.aliases = aliases or {}
        self.originals = {p: p._data for p in self.parameters if isinstance(p._data, str)}
        self.pending_problems: list[str] = []
        self.records: list[StepRecord] = []

    def _check_unique_names(self) -> None:
        seen: dict[str, ParameterNode] = {}
        for parameter in self.parameters:
            other = seen.get(parameter.py_name)
            if other is not None and other is not parameter:
                raise ValueError(f"two parameters share the name {parameter.py_name}; give them distinct names")
            seen[parameter.py_name] = parameter

    @property
    def last_record(self) -> StepRecord | None:
        return self.records[-1] if self.records else None

    def zero_feedback(self) -> None:
        for parameter in self.parameters:
            parameter.zero_feedback()

    def backward(self, node: Node, feedback: Any, **kwargs: Any) -> None:
        """Send ``feedback`` from ``node`` to the parameters (graph kept for more calls)."""
        kwargs.setdefault("retain_graph", True)
        node.backward(feedback, **kwargs)

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly: memory and pending problems."""
        return {"pending_problems": list(self.pending_problems), "memory": [list(m) for m in self._memory()]}

    def load_state_dict(self, state: dict) -> None:
        self.pending_problems = list(state.get("pending_problems", []))
        memory = self._memory()
        memory.clear()
        memory.extend(tuple(item) for item in state.get("memory", []))

    def _memory(self) -> Any:
        return []

    # -- to be provided by subclasses ---------------------------------------------
    def build_prompt(self) -> str:
        raise NotImplementedError

    def remember(self) -> None:
        """Store what this step saw, for the next prompts (memory)."""

    # -- the shared step ------------------------------------------------------------
    def propose(self, n: int | None = None) -> list[Proposal]:
        """Ask the LLM for ``n`` candidate updates (validated, not applied)."""
        n = n or self.num_candidates
        record = StepRecord()
        self.records.append(record)
        record.prompt = self.build_prompt()
        if self.pending_problems:
            notes = "\n".join(f"- {problem}" for problem in self.pending_problems)
            record.prompt += f"\n\n#Problems with your previous answer\n{notes}"
            self.pending_problems = []
        record.prompt_tokens_estimate = estimate_tokens(self.system_prompt + record.prompt)
        self.remember()
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": record.prompt}]
        try:
            completions = self.llm.complete(messages, n=n)
        except LLMError as error:
            record.error = str(error)
            return []
        for completion in completions:
            record.proposals.append(self.proposal_from(completion.text, completion.finish_reason))
        return record.proposals

    def proposal_from(self, text: str, finish_reason: str | None = None) -> Proposal:
        """Read one answer into a validated (not applied) proposal. Never raises for bad answers."""
        answer = parse_answer(text, finish_reason)
        resolved, name_problems = resolve_names(answer.suggestion, self.parameters, self.aliases)
        update, value_problems = validate(resolved, self.originals, self.code_checker)
        return Proposal(update, answer.reasoning, answer.problems + name_problems + value_problems, text)

    def apply(self, proposal: Proposal) -> dict[ParameterNode, Any]:
        """Apply ``proposal`` (one of :meth:`propose`'s) and queue its problems as feedback."""
        apply(proposal.update)
        record = self.last_record
        if record is not None:
            record.applied = {p.py_name: _loggable(v) for p, v in proposal.update.items()}
            record.reasoning = proposal.reasoning
            record.problems = list(proposal.problems)
        self.pending_problems = list(proposal.problems)
        return dict(proposal.update)

    def step(self) -> dict[ParameterNode, Any]:
        """Ask for an update and apply it. Returns the update applied (maybe empty)."""
        proposals = self.propose()
        if not proposals:
            record = self.last_record
            self.pending_problems = [f"the previous request failed: {record.error}"] if record and record.error else []
            return {}
        chosen = next((p for p in proposals if p.update), proposals[0])
        return self.apply(chosen)


def _loggable(value: Any) -> Any:
    """``value`` as JSON-able data for logs (plain data stays data; anything else becomes text)."""
    try:
        return to_literal(value)
    except TraceError:
        return compact(value)
