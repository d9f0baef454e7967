"""What OptoPrime and OPRO share: settings and their checks, memory, feedback plumbing,
asking the LLM, applying answers, and a bounded history of steps."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from trace_control.llm import LLMClient, LLMError
from trace_control.optim.memory import Memory
from trace_control.optim.parse import parse_answer
from trace_control.optim.problem import feedback_of
from trace_control.optim.prompts import NO_FEEDBACK
from trace_control.optim.render import clip, compact
from trace_control.optim.tokens import prompt_tokens
from trace_control.optim.update import CodeChecker, apply, resolve_names, validate
from trace_control.trace import Feedback, Node, ParameterContainer, ParameterNode, TraceError, sum_feedback, to_literal

MIN_PROMPT_TOKENS = 500
RECORDS_KEPT = 10  # steps whose record (prompt, answers) the optimizer keeps
MAX_ANSWER_CHARS = 20_000  # of each answer, kept in its proposal
MAX_PROBLEM_CHARS = 500
MAX_CODE_SHARE = 0.6  # of max_prompt_tokens: longer suggested code is refused
STATE_FORMAT = "trace-control/optimizer-2"


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
    """What one ``step()`` did, for logs and reports.

    ``prompt_tokens_estimate`` counts system and user prompt with the chat framing
    (cl100k_base when installed, see :mod:`trace_control.optim.tokens`); ``omitted``
    says what the report left out to stay within ``max_prompt_tokens``.
    """

    prompt: str = ""
    prompt_tokens_estimate: int = 0
    omitted: list[str] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)
    reasoning: str = ""
    problems: list[str] = field(default_factory=list)
    error: str | None = None


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number, {minimum} or more (got {value!r})")
    return value


class Optimizer:
    """Base: ``zero_feedback()``, ``backward(node, feedback)``, ``step()``.

    ``memory_size``: past attempts shown in each prompt (0: none). ``max_prompt_tokens``:
    the budget of each request, system prompt included (None: no limit); suggested code
    longer than ``MAX_CODE_SHARE`` of it is refused. ``step()`` never raises for a bad answer or a
    failed call: the reason is kept in ``last_record`` and shown to the LLM next time.
    ``records`` keeps the last ``RECORDS_KEPT`` steps only.
    """

    system_prompt = ""

    def __init__(self, parameters: Iterable[ParameterNode] | ParameterContainer, llm: LLMClient | None = None,
                 memory_size: int = 0, objective: str | None = None, max_prompt_tokens: int | None = 6000,
                 num_candidates: int = 1, code_checker: CodeChecker | None = None,
                 aliases: dict[str, ParameterNode] | None = None) -> None:
        if isinstance(parameters, ParameterContainer):  # a Module, or a bundled function
            aliases = {**parameters.parameters_dict(), **(aliases or {})}
            parameters = parameters.parameters()
        self.parameters: list[ParameterNode] = [p for p in parameters]
        for parameter in self.parameters:
            if not isinstance(parameter, ParameterNode):
                raise TypeError(f"optimizers take ParameterNodes, got {type(parameter).__name__}")
        self._check_unique_names()
        self.memory = Memory(memory_size)
        self.num_candidates = _check_count("num_candidates", num_candidates, 1)
        if max_prompt_tokens is not None:
            _check_count("max_prompt_tokens", max_prompt_tokens, MIN_PROMPT_TOKENS)
        self.max_prompt_tokens = max_prompt_tokens
        self.llm = llm if llm is not None else LLMClient()
        self.objective = objective
        self.code_checker = code_checker
        self.aliases = aliases or {}
        self.originals = {p: p.data for p in self.parameters if isinstance(p.data, str)}
        self.pending_problems: list[str] = []
        self.records: deque[StepRecord] = deque(maxlen=RECORDS_KEPT)

    def __deepcopy__(self, memo: dict) -> Optimizer:
        """A copy with its own parameters and memory that shares the LLM client (a connection pool)."""
        memo[id(self.llm)] = self.llm
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        for key, value in self.__dict__.items():
            setattr(copied, key, copy.deepcopy(value, memo))
        return copied

    def summarize(self) -> Feedback:
        """All feedback the parameters hold, summed into one record (trace-opt's ``summarize``)."""
        return sum_feedback(self.parameters)

    def _check_unique_names(self) -> None:
        seen: dict[str, ParameterNode] = {}
        for parameter in self.parameters:
            other = seen.get(parameter.py_name)
            if other is not None and other is not parameter:
                raise ValueError(f"two parameters share the name {parameter.py_name}; give them distinct names")
            seen[parameter.py_name] = parameter

    @property
    def memory_size(self) -> int:
        return self.memory.size

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

    def create_feedback(self, *args: Any, **kwargs: Any) -> None:
        """Not offered: trace-opt's ``create_feedback`` belongs to its ExceptionNode, not the optimizer."""
        raise AttributeError(
            "optimizers have no create_feedback: pass the feedback text to optimizer.backward(node, feedback); "
            "for an error caught as ExecutionError, backward from error.exception_node with its data (the error "
            "text with the failing line marked) as the feedback")

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly (JSON-able): memory and pending problems."""
        return {"format": STATE_FORMAT, "pending_problems": list(self.pending_problems),
                "memory": self.memory.state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output. ``ValueError`` for anything else."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not an optimizer state of format {STATE_FORMAT} (written by state_dict())")
        problems = state.get("pending_problems", [])
        if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
            raise ValueError("pending_problems must be a list of text")
        self.memory.load(state.get("memory", []))
        self.pending_problems = list(problems)

    # -- to be provided by subclasses ---------------------------------------------
    def build_prompt(self, problems: list[str], budget: int | None) -> tuple[str, list[str]]:
        """The user prompt within ``budget`` tokens (None: no limit), and notes on what it left out.

        ``problems``: what was wrong with the previous answer, to be shown.
        """
        raise NotImplementedError

    # -- shared pieces for subclasses --------------------------------------------------
    def current_values(self) -> dict[str, Any]:
        return {parameter.py_name: parameter.data for parameter in self.parameters}

    def feedback_lines(self) -> list[str]:
        return feedback_of(self.parameters) or [NO_FEEDBACK]

    @staticmethod
    def problems_text(problems: list[str]) -> str:
        return "\n".join(f"- {clip(problem, MAX_PROBLEM_CHARS)}" for problem in problems)

    # -- the shared step ------------------------------------------------------------
    def propose(self, n: int | None = None, verbose: bool | str = False) -> list[Proposal]:
        """Ask the LLM for ``n`` candidate updates (validated, not applied).

        ``verbose``: True prints the prompt and the answers, ``"output"`` the answers only.
        """
        n = _check_count("n", n, 1) if n is not None else self.num_candidates
        record = StepRecord()
        self.records.append(record)
        budget = None
        if self.max_prompt_tokens is not None:
            budget = self.max_prompt_tokens - prompt_tokens(self.system_prompt, "")
        record.prompt, record.omitted = self.build_prompt(self.pending_problems, budget)
        self.pending_problems = []
        record.prompt_tokens_estimate = prompt_tokens(self.system_prompt, record.prompt)
        self.memory.remember(self.current_values(), "\n".join(self.feedback_lines()))
        if verbose and verbose != "output":
            print(f"Prompt ({record.prompt_tokens_estimate:,} tokens)\n{self.system_prompt}\n\n{record.prompt}")
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": record.prompt}]
        try:
            completions = self.llm.complete(messages, n=n)
        except LLMError as error:
            record.error = clip(str(error), MAX_PROBLEM_CHARS)
            return []
        for completion in completions:
            if verbose:
                print(f"LLM answer:\n{completion.text}")
            record.proposals.append(self.proposal_from(completion.text, completion.finish_reason))
        return record.proposals

    def proposal_from(self, text: str, finish_reason: str | None = None) -> Proposal:
        """Read one answer into a validated (not applied) proposal. Never raises for bad answers."""
        answer = parse_answer(text, finish_reason)
        resolved, name_problems = resolve_names(answer.suggestion, self.parameters, self.aliases)
        max_code_tokens = None
        if self.max_prompt_tokens is not None:
            max_code_tokens = int(self.max_prompt_tokens * MAX_CODE_SHARE)
        update, value_problems = validate(resolved, self.originals, self.code_checker, max_code_tokens)
        answer_text = clip(text, MAX_ANSWER_CHARS) if isinstance(text, str) else ""
        return Proposal(update, answer.reasoning, answer.problems + name_problems + value_problems, answer_text)

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

    def step(self, verbose: bool | str = False) -> dict[ParameterNode, Any]:
        """Ask for an update and apply it. Returns the update applied (maybe empty).

        ``verbose``: True prints the prompt and the answer, ``"output"`` the answer only.
        """
        proposals = self.propose(verbose=verbose)
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
