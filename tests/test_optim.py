"""OptoPrime, OPRO and the LLM client against a scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import re

import pytest

from tests.llm_server import ScriptedLLMServer, answer
from trace_control.llm import LLMClient, LLMNotConfiguredError, ReplayMissError
from trace_control.optim import OPRO, OptoPrime, convert, count_tokens, parse_answer, prompt_tokens, tokenizer_name
from trace_control.optim.base import RECORDS_KEPT
from trace_control.trace import bundle, name_scope, node


@bundle()
def shifted_double(x, shift):
    """Return 2 * x + shift."""
    return 2 * x + shift


def make_client(server: ScriptedLLMServer, **kwargs) -> LLMClient:
    return LLMClient(model="test-model", base_url=server.base_url, api_key="sk-test", max_retries=3, **kwargs)


def user_prompt(body: dict) -> str:
    return body["messages"][-1]["content"]


def bisection_server(low: float, high: float) -> ScriptedLLMServer:
    """An 'LLM' that reads x and the feedback from the prompt and bisects."""
    bounds = {"low": low, "high": high}

    def reply(body: dict) -> str:
        prompt = user_prompt(body)
        x = float(re.search(r"\(float\) x0 = ([-\d.e]+)", prompt).group(1))
        feedback = re.search(r"#Feedback\n(.*)", prompt).group(1)
        if "larger" in feedback:
            bounds["low"] = x
        elif "smaller" in feedback:
            bounds["high"] = x
        return answer({"x0": (bounds["low"] + bounds["high"]) / 2}, "bisect")

    return ScriptedLLMServer(reply)


def test_backward_step_drives_a_numeric_workflow_to_its_target():
    x = node(0.0, name="x", trainable=True)
    target = 11.0
    applied = []
    with bisection_server(0.0, 16.0) as server:
        optimizer = OptoPrime([x], llm=make_client(server), objective="Make the output equal 11.")
        for _ in range(12):
            output = shifted_double(x, 1.0)
            if output.data == target:
                break
            direction = "larger" if output.data < target else "smaller"
            optimizer.zero_feedback()
            optimizer.backward(output, f"The output should be {direction} (it is {output.data}).")
            update = optimizer.step()
            applied.append(update[x])
    assert applied[:3] == [8.0, 4.0, 6.0]
    assert x.data == 5.0 and shifted_double(x, 1.0).data == target
    assert optimizer.llm.usage.calls == len(applied) and optimizer.llm.usage.prompt_tokens > 0


def known_graph():
    a = node(2.0, name="a", trainable=True)
    offset = node(0.5, name="offset")  # a plain input
    hidden = a * 3  # an intermediate
    out = hidden + offset
    out.backward("The output should be smaller.")
    return a, offset, hidden, out


def test_prompt_has_every_section_and_the_right_entries():
    a, offset, hidden, out = known_graph()
    with ScriptedLLMServer() as server:
        optimizer = OptoPrime([a], llm=make_client(server), objective="Minimise the output.")
        assert optimizer.step() == {}
        prompt = user_prompt(server.requests[0])
    for section in ("#Instruction", "#Code", "#Documentation", "#Variables", "#Constraints", "#Inputs",
                    "#Others", "#Outputs", "#Feedback"):
        assert section in prompt
    sections = dict(re.findall(r"#(\w+)\n(.*?)(?=\n\n#|\Z)", prompt, re.DOTALL))
    assert "Minimise the output." in sections["Instruction"]
    assert sections["Code"].splitlines() == ["mul0 = mul(x=a0, y=int0)", "add0 = add(x=mul0, y=offset0)"]
    assert sections["Variables"] == "(float) a0 = 2.0"
    assert "offset0 = 0.5" in sections["Inputs"] and "int0 = 3" in sections["Inputs"]
    assert sections["Others"] == "mul0 = 6.0" and sections["Outputs"] == "add0 = 6.5"
    assert sections["Feedback"] == "The output should be smaller."
    assert "np.float64" not in prompt


def test_masked_sections_are_withheld():
    a, *_ = known_graph()
    with ScriptedLLMServer() as server:
        OptoPrime([a], llm=make_client(server), mask=["Inputs", "#Others", "code", "Documentation"]).step()
        prompt = user_prompt(server.requests[0])
    for section in ("Inputs", "Others", "Code", "Documentation"):
        assert f"#{section}\n(not shown)" in prompt
    assert "mul0 = 6.0" not in prompt and "offset0" not in prompt
    assert "(float) a0 = 2.0" in prompt and "#Feedback\nThe output should be smaller." in prompt
    with pytest.raises(ValueError, match="unknown section"):
        OptoPrime([a], llm=LLMClient(base_url="http://127.0.0.1:9/v1"), mask=["Nope"])


def test_memory_shows_past_variables_and_feedback():
    x = node(1.0, name="x", trainable=True)
    script = [answer({"x0": 2.0}), answer({"x0": 3.0}), answer({"x0": 4.0})]
    with ScriptedLLMServer(script) as server:
        optimizer = OptoPrime([x], llm=make_client(server), memory_size=2)
        for round_ in range(3):
            optimizer.zero_feedback()
            optimizer.backward(x + 0, f"feedback of round {round_}")
            optimizer.step()
        prompts = [user_prompt(body) for body in server.requests]
    assert "#Past attempts" not in prompts[0]
    assert "Attempt 1:\nx0 = 1.0\nFeedback: feedback of round 0" in prompts[1]
    last = prompts[2].split("#Past attempts")[1]
    assert "x0 = 1.0" in last and "x0 = 2.0" in last and "round 1" in last and "Attempt 3" not in last


def test_code_suggestion_replaces_the_bundle_code():
    @bundle(trainable=True)
    def policy(obs):
        """Return an action for the observation."""
        return 0.0

    new_code = "def policy(obs):\n    return obs['target'] * 2\n"
    with ScriptedLLMServer([answer({"__code:0": new_code})]) as server:
        optimizer = OptoPrime([policy.parameter], llm=make_client(server))
        out = policy({"target": 1.5})
        optimizer.backward(out, "The action should be 3.0.")
        update = optimizer.step()
        prompt = user_prompt(server.requests[0])
    assert update == {policy.parameter: new_code}
    assert policy({"target": 1.5}).data == 3.0
    assert "(code) __code0:\ndef policy(obs):" in prompt and "must define the function" in prompt


@pytest.mark.parametrize("bad_answer, reason", [
    ('{"reasoning": "cut", "suggestion": {"__code0": "def policy(obs):\\n    ret', "could not be read as JSON"),
    ("I would make the gain larger, but I will not give JSON.", "could not be read as JSON"),
    (answer({"gain_typo": 3.0}), "'gain_typo' is not a variable"),
    (answer({"__code0": "def policy(obs):\n    return (obs\n"}), "syntax error"),
    (answer({"__code0": "def act(obs):\n    return 1\n"}), "must define a function named policy"),
    (answer({"__code0": "def policy(obs, t):\n    return 1\n"}), "must keep its arguments"),
    (answer({"gain0": "very large"}), "must be a float"),
    (answer({"gain0": [1, 2]}), "must be a number"),
    (answer({"__code0": 42}), "must be text"),
    ('{"reasoning": "x", "suggestion": "make it bigger"}', "must be an object"),
])
def test_malformed_answers_never_raise_and_the_next_prompt_says_why(bad_answer, reason):
    @bundle(trainable=True)
    def policy(obs):
        return obs

    gain = node(1.0, name="gain", trainable=True)
    with ScriptedLLMServer([bad_answer, answer({})]) as server:
        optimizer = OptoPrime([policy.parameter, gain], llm=make_client(server))
        optimizer.backward(policy(gain), "bigger")
        before = policy.parameter.data
        assert optimizer.step() == {}
        assert policy.parameter.data == before and gain.data == 1.0
        assert any(reason in problem for problem in optimizer.last_record.problems)
        optimizer.step()
        follow_up = user_prompt(server.requests[1])
    assert "#Problems with your previous answer" in follow_up and reason in follow_up


def test_tolerant_parsing_and_conversion():
    fenced = 'Sure!\n```json\n{"reasoning": "r", "suggestion": {"k": "def f(x):\n    return x\n"}}\n```'
    parsed = parse_answer(fenced)
    assert parsed.problems == [] and parsed.suggestion["k"].startswith("def f(x):\n")
    python_style = parse_answer("{'reasoning': 'r', 'suggestion': {'x0': 2}}")
    assert python_style.suggestion == {"x0": 2}
    assert convert("[1, 2]", [0, 0], "v") == [1, 2]  # not a list of characters
    assert convert("2.5", 1.0, "v") == 2.5 and convert(3, 1.0, "v") == 3.0
    with pytest.raises(ValueError):
        convert("abc", [0], "v")


def test_rate_limits_and_server_errors_are_retried():
    x = node(1.0, name="x", trainable=True)
    script = [{"status": 429, "headers": {"Retry-After": "0"}}, {"status": 500}, {"status": 503},
              answer({"x0": 2.0})]
    with ScriptedLLMServer(script) as server:
        optimizer = OptoPrime([x], llm=make_client(server))
        optimizer.backward(x * 1, "larger")
        assert optimizer.step() == {x: 2.0}
        assert len(server.requests) == 4


def test_failed_calls_are_recorded_and_reported_next_time():
    x = node(1.0, name="x", trainable=True)
    with ScriptedLLMServer([{"status": 500}] * 3 + [answer({})]) as server:
        client = LLMClient(model="m", base_url=server.base_url, api_key="k", max_retries=2)
        optimizer = OptoPrime([x], llm=client)
        optimizer.backward(x * 1, "larger")
        assert optimizer.step() == {}
        assert "HTTP 500" in optimizer.last_record.error and client.usage.failed_calls == 1
        optimizer.step()
        assert "the previous request failed" in user_prompt(server.requests[-1])


def test_record_then_replay_gives_identical_updates_offline(tmp_path):
    recording = tmp_path / "calls.jsonl"

    def run(client: LLMClient) -> list:
        with name_scope():  # a fresh process numbers names from zero
            return rounds(client)

    def rounds(client: LLMClient) -> list:
        x = node(0.0, name="x", trainable=True)
        optimizer = OptoPrime([x], llm=client, memory_size=3)
        applied = []
        for _ in range(4):
            optimizer.zero_feedback()
            output = shifted_double(x, 1.0)
            optimizer.backward(output, "larger" if output.data < 11 else "smaller")
            applied.append(optimizer.step().get(x))
        return applied

    with bisection_server(0.0, 16.0) as server:
        recorded = run(make_client(server, record=recording))
        url = server.base_url
    lines = recording.read_text().splitlines()
    assert recorded == [8.0, 4.0, 6.0, 5.0]
    assert len(lines) == 4 and all(json.loads(line)["response"]["text"] for line in lines)
    replayed = run(LLMClient(model="test-model", replay=recording, base_url=url))
    assert replayed == recorded
    replay_client = LLMClient(model="test-model", replay=recording)
    x = node(0.0, name="x", trainable=True)
    optimizer = OptoPrime([x], llm=replay_client)
    optimizer.backward(x + 100, "a question never recorded")
    with pytest.raises(ReplayMissError, match="the replay no longer matches its recording"):
        optimizer.step()  # a replay that leaves its recording stops; it is not an LLM failure to work around


def test_missing_configuration_names_the_three_ways(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMNotConfiguredError) as raised:
        LLMClient()
    message = str(raised.value)
    assert "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message and "--replay" in message


def test_json_mode_refused_is_retried_without_it():
    with ScriptedLLMServer([answer({})], support_json_mode=False) as server:
        client = make_client(server)
        texts = client.complete([{"role": "user", "content": "hi"}])
    assert json.loads(texts[0].text)["suggestion"] == {}
    assert "response_format" in server.requests[0] and "response_format" not in server.requests[1]


@pytest.mark.parametrize("support_n", [True, False])
def test_several_candidates_per_step(support_n):
    x = node(1.0, name="x", trainable=True)
    script = [answer({"x0": 2.0}), answer({"x0": 3.0}), answer({"x0": 4.0})]
    with ScriptedLLMServer(script, support_n=support_n) as server:
        optimizer = OptoPrime([x], llm=make_client(server), num_candidates=3)
        optimizer.backward(x * 1, "larger")
        proposals = optimizer.propose()
        assert [p.update[x] for p in proposals] == [2.0, 3.0, 4.0]
        assert len(server.requests) == (1 if support_n else 3)
        assert x.data == 1.0  # proposing applies nothing
        optimizer.apply(proposals[2])
    assert x.data == 4.0


def test_opro_sees_values_and_feedback_but_no_trace():
    a, *_ = known_graph()
    with ScriptedLLMServer([answer({"a0": 1.0}), answer({})]) as server:
        optimizer = OPRO([a], llm=make_client(server), objective="Minimise the output.")
        assert optimizer.step() == {a: 1.0}
        optimizer.step()
        first, second = (user_prompt(body) for body in server.requests)
    assert "(float) a0 = 2.0" in first and "The output should be smaller." in first
    assert "#Code" not in first and "mul0" not in first and "offset0" not in first
    assert "#Earlier values and feedback" in second and "a0 = 2.0" in second and "a0 = 1.0" in second


def test_long_graphs_are_condensed_to_the_budget_keeping_both_ends():
    x = node(1.0, name="x", trainable=True)
    value = x
    for _ in range(400):
        value = value + 1
    value.backward("smaller")
    with ScriptedLLMServer() as server:
        optimizer = OptoPrime([x], llm=make_client(server), max_prompt_tokens=1500)
        optimizer.step()
        prompt = user_prompt(server.requests[0])
    assert prompt_tokens(OptoPrime.system_prompt, prompt) <= 1500
    assert "add0 = add(x=x0" in prompt and "add399 = add(x=add398" in prompt
    assert "repetitions left out" in prompt and optimizer.last_record.omitted


@pytest.mark.parametrize("kind", [OptoPrime, OPRO])
def test_memory_size_zero_shows_no_history_and_negative_sizes_are_refused(kind):
    x = node(1.0, name="x", trainable=True)
    script = [answer({"x0": 2.0}), answer({"x0": 3.0}), answer({})]
    with ScriptedLLMServer(script) as server:
        optimizer = kind([x], llm=make_client(server), memory_size=0)
        for round_ in range(3):
            optimizer.zero_feedback()
            optimizer.backward(x * 1, f"feedback of round {round_}")
            optimizer.step()
        prompts = [user_prompt(body) for body in server.requests]
    assert len(optimizer.memory) == 0 and optimizer.state_dict()["memory"] == []
    assert "round 0" not in prompts[2] and "round 1" not in prompts[2] and "x0 = 1.0" not in prompts[2]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="memory_size"):
            kind([x], llm=optimizer.llm, memory_size=bad)


def test_history_is_bounded_and_state_round_trips_through_json():
    x = node(1.0, name="x", trainable=True)
    script = [answer({"x0": float(value)}) for value in range(2, 30)]
    with ScriptedLLMServer(script) as server:
        optimizer = OptoPrime([x], llm=make_client(server), memory_size=3)
        for round_ in range(RECORDS_KEPT + 5):
            optimizer.zero_feedback()
            optimizer.backward(x * 1, f"feedback of round {round_}")
            optimizer.step()
        state = json.loads(json.dumps(optimizer.state_dict()))
        restored = OptoPrime([x], llm=make_client(server), memory_size=3)
        restored.load_state_dict(state)
        for current in (optimizer, restored):
            current.zero_feedback()
            current.backward(x * 1, "again")
            current.step()
        first, second = (user_prompt(body) for body in server.requests[-2:])
    assert len(optimizer.records) == RECORDS_KEPT and len(optimizer.memory) == 3
    assert first.split("#Past attempts")[1] == second.split("#Past attempts")[1]
    with pytest.raises(ValueError, match="optimizer state"):
        restored.load_state_dict({"memory": [["old", "format"]]})


def test_step_verbose_prints_prompt_and_answer(capsys):
    x = node(1.0, name="x", trainable=True)
    with ScriptedLLMServer([answer({"x0": 2.0}, "make it larger"), answer({}, "keep it")]) as server:
        optimizer = OptoPrime([x], llm=make_client(server))
        optimizer.backward(x * 1, "larger")
        assert optimizer.step(verbose=True) == {x: 2.0}
        printed = capsys.readouterr().out
        optimizer.step(verbose="output")
        answers_only = capsys.readouterr().out
    assert "#Feedback\nlarger" in printed and "make it larger" in printed
    assert "keep it" in answers_only and "#Feedback" not in answers_only


def test_create_feedback_says_what_to_use_instead():
    x = node(1.0, name="x", trainable=True)
    optimizer = OptoPrime([x], llm=LLMClient(model="m", base_url="http://127.0.0.1:9/v1", api_key="k"))
    with pytest.raises(AttributeError, match=r"optimizer\.backward\(node, feedback\).*exception_node"):
        optimizer.create_feedback()


def test_tokens_are_counted_in_cl100k_when_installed_else_estimated():
    text = "hello world"
    if tokenizer_name() == "cl100k_base":
        assert count_tokens(text) == 2 and count_tokens("<|endoftext|>") > 1
    else:
        assert tokenizer_name() == "characters/4" and count_tokens(text) == 3
    assert prompt_tokens("", text) == count_tokens(text) + 9


@bundle(trainable=True)
def one_more(x):
    return x + 1


def test_a_bundled_function_is_optimized_directly_and_an_optimizer_deep_copies():
    """trace-opt users write OptoPrime(fn.parameters()) or OptoPrime(fn); deep copies share the client."""
    import copy

    client = LLMClient(base_url="http://127.0.0.1:9/v1", api_key="k")
    optimizer = OptoPrime(one_more, llm=client)
    assert optimizer.parameters == one_more.parameters() and "#Feedback" in OptoPrime.default_objective
    twin = copy.deepcopy(optimizer)
    assert twin.llm is client and twin.parameters[0] is not optimizer.parameters[0]
    output = one_more(node(1))
    optimizer.backward(output, "bigger")
    summary = optimizer.summarize()
    assert summary.feedback == "bigger" and output in summary.nodes
