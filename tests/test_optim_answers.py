"""Any answer text gives a valid update or feedback, never an exception out of the optimizer."""

from __future__ import annotations

import functools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.llm_server import ScriptedLLMServer, answer
from trace_control.llm import LLMClient
from trace_control.optim import OptoPrime
from trace_control.optim.render import compact
from trace_control.trace import bundle, model, node


@model
class Policy:
    def __init__(self):
        self.gain = node(1.0, name="gain", trainable=True)
        self.count = node(3, name="count", trainable=True)
        self.offsets = node([0.0, 0.0], name="offsets", trainable=True)

    @bundle(trainable=True)
    def act(self, obs):
        """Return an action."""
        return obs


def optimizer_for(policy: Policy, **kwargs) -> OptoPrime:
    # proposal_from never calls the LLM; the client only has to exist
    client = LLMClient(model="m", base_url="http://127.0.0.1:9/v1", api_key="k")
    return OptoPrime(policy, llm=client, **kwargs)


@functools.cache
def shared_optimizer() -> OptoPrime:
    return optimizer_for(Policy())


def read(text: str):
    """The proposal made of ``text`` (reading validates only: the parameters stay as they are)."""
    optimizer = shared_optimizer()
    return optimizer.parameters, optimizer.proposal_from(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
names = st.sampled_from(["gain0", "count0", "offsets0", "__code0", "__code:0", "gain", "nope"])


@settings(max_examples=150, deadline=None)
@given(suggestion=st.dictionaries(names, json_values, max_size=4), prose=st.text(max_size=40))
def test_any_json_suggestion_is_applied_valid_or_explained(suggestion, prose):
    text = prose + json.dumps({"reasoning": "r", "suggestion": suggestion}) + prose
    _, proposal = read(text)
    for parameter, value in proposal.update.items():  # what is accepted keeps the parameter's type
        assert type(value) is type(parameter.data) or (isinstance(value, float) and isinstance(parameter.data, int))
    assert all(isinstance(problem, str) and len(problem) < 2000 for problem in proposal.problems)
    compact(proposal.update)  # everything accepted can be shown in the next prompt


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_at_all_is_read_without_raising(text):
    _, proposal = read(text)
    assert isinstance(proposal.reasoning, str) and isinstance(proposal.problems, list)


@pytest.mark.parametrize("text, name, reason", [
    ('{"suggestion": {"gain0": ' + "9" * 5000 + "}}", "gain0", "5,000 digits is out of range"),
    ('{"suggestion": {"count0": -' + "9" * 5000 + "}}", "count0", "out of range"),
    ("{'suggestion': {'gain0': 0x" + "f" * 5000 + "}}", "gain0", "out of range"),
    ('{"suggestion": {"offsets0": [1, ' + "9" * 5000 + "]}}", "offsets0", "out of range"),
    ('{"suggestion": {"offsets0": ' + "[" * 40 + "]" * 40 + "}}", "offsets0", "nested more than"),
    ('{"suggestion": {"offsets0": ' + "[" * 5000 + "]" * 5000 + "}}", None, "could not be read"),
    ("{'suggestion': {'offsets0': {1, 2}}}", "offsets0", "plain data"),
    ("{'suggestion': {'gain0': 1j}}", "gain0", "plain data"),
    ("{'suggestion': {'offsets0': {1: 2}}}", "offsets0", "keys must be text"),
    ("{'suggestion': {1: 2}}", None, "names in \"suggestion\" must be text"),
])
def test_out_of_range_deep_and_odd_values_become_problems(text, name, reason):
    _, proposal = read(text)
    assert proposal.update == {}
    assert any(reason in problem for problem in proposal.problems), proposal.problems
    if name:
        assert any(name in problem for problem in proposal.problems)


def test_nan_and_infinite_constants_are_allowed():
    _, proposal = read('{"suggestion": {"gain0": NaN, "count0": Infinity, "offsets0": [-Infinity, 1]}}')
    values = proposal.named_update()
    assert math.isnan(values["gain0"]) and values["count0"] == math.inf and values["offsets0"][0] == -math.inf
    assert proposal.problems == []


CODE = "def act(self, obs):\n    return obs\n"


@pytest.mark.parametrize("code, reason", [
    ("def act(self, obs):\n    break\n", "'break' outside loop"),
    ("def act(self, obs):\n    nonlocal x\n    return obs\n", "syntax error"),
    ("from __future__ import annotations\n" + CODE, "must not import from __future__"),
    ("def act(self, obs):\u2028    return obs\n", "U+2028"),
    ("def act(self, obs):\n    return obs\u2029", "U+2029"),
    ("def act(self, obs):\n\x0c    return obs\n", "form feed"),
    ("def act(self, obs):\n    return obs\x0b\n", "vertical tab"),
    ("def act(self, obs):\n    return obs\x1c\n", "\\x1c"),
    ("def act(self, obs):\n    return obs\x85\n", "U+0085"),
    ("def act(self, obs):\n    return obs\x00\n", "null bytes"),
])
def test_code_that_would_fail_later_or_read_differently_is_refused(code, reason):
    _, proposal = read(answer({"__code0": code}))
    assert proposal.update == {}
    assert any(reason in problem for problem in proposal.problems), proposal.problems


@pytest.mark.parametrize("separator", ["\r\n", "\r"])
def test_carriage_returns_are_normalised_before_the_check(separator):
    code = "def act(self, obs):" + separator + "    return [obs]" + separator
    _, proposal = read(answer({"__code0": code}))
    applied = proposal.named_update()["__code0"]
    assert applied == "def act(self, obs):\n    return [obs]\n" and "\r" not in applied


def test_a_failing_code_checker_becomes_a_problem():
    def broken_checker(code: str, name: str) -> list[str]:
        raise RuntimeError("checker bug")

    policy = Policy()
    proposal = optimizer_for(policy, code_checker=broken_checker).proposal_from(answer({"__code0": CODE + "\n"}))
    assert proposal.update == {} and "the code check failed (RuntimeError): checker bug" in proposal.problems[0]


def test_huge_and_nasty_answers_through_the_real_client_never_raise():
    """End to end: a 3 MB answer, a 5,000-digit number and NaN; each step returns and the next
    prompt stays within the budget, with the problems capped."""
    policy = Policy()
    nasty = ['{"suggestion": {"gain0": ' + "1" * 5000 + "}}", "x" * 3_000_000,
             '{"reasoning": "' + "y" * 3_000_000 + '", "suggestion": {"gain0": 5.0}}',
             '{"reasoning": "not a number", "suggestion": {"gain0": NaN}}', answer({})]
    with ScriptedLLMServer(nasty) as server:
        client = LLMClient(model="m", base_url=server.base_url, api_key="k", max_retries=1)
        optimizer = OptoPrime(policy, llm=client, max_prompt_tokens=3000)
        results = []
        for _ in range(5):
            optimizer.zero_feedback()
            optimizer.backward(policy.act(policy.gain), "bigger")
            results.append(optimizer.step())
            assert len(optimizer.last_record.reasoning) <= 5000
        prompts = [body["messages"][-1]["content"] for body in server.requests]
    assert results[0] == {} and "out of range" in prompts[1]
    assert results[2] == {} and "3,000,0" in prompts[3] and "characters long" in prompts[3]
    assert math.isnan(results[3][policy.gain]) and max(len(prompt) for prompt in prompts) < 20_000


def test_an_unclosed_fence_of_blank_lines_is_read_in_one_pass():
    """A fence regular expression that backtracks took minutes on this answer; the one-pass reader does not."""
    from trace_control.optim.parse import parse_answer

    answer_text = "```\n" + "\n" * 199_990
    assert parse_answer(answer_text).problems and parse_answer("```" * 60_000).problems
