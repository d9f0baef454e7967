"""Prompts stay within max_prompt_tokens, and condensing keeps what matters.

Graphs have the shape the trainer builds: per step a ``controller`` op (observation,
code and constants in) and a ``step`` op (an observation dict carrying the step's
feedback), episodes possibly ending in an error, and one ``batch`` op over the
detailed episodes. They are built with the engine's own node types, fast enough to
try many shapes, including 1000-step rollouts and 200-line controllers in memory.
"""

from __future__ import annotations

import re

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.llm_server import ScriptedLLMServer, answer
from trace_control.controllers.base import Controller
from trace_control.llm import LLMClient
from trace_control.optim import OPRO, OptoPrime, prompt_tokens
from trace_control.trace import ExceptionNode, MessageNode, bundle, name_scope, node

SUCCESS = "Success! The hand is at the goal."


class Arm(Controller):
    """A controller with trainable code and one trainable constant."""

    def __init__(self):
        self.gain = node(0.5, name="gain", trainable=True)

    @bundle(trainable=True)
    def controller(self, obs):
        """Map an observation to 7 joint torques."""
        return [0.0] * 7


class Observation(dict):
    """An observation that shows its step's feedback next to its values (as the trainer's does)."""

    def __init__(self, values: dict, feedback: str) -> None:
        super().__init__(values)
        self.feedback = feedback

    def __trace_render__(self) -> dict:
        return {**self, "feedback": self.feedback}


def controller_code(lines: int) -> str:
    body = "\n".join(f"    torque = torque + gain * error{i}" for i in range(lines))
    return f"def controller(self, obs):\n{body}\n    return [0.0] * 7\n"


def step_feedback(step: int, success_at: int | None) -> str:
    if step == success_at:
        return SUCCESS
    trend = "closer to" if step % 7 else "farther from"
    return f"Your reward for the latest step is {1 + step * 0.01:.3f}. You moved {trend} where you should go."


def episode(arm: Arm, steps: int, success_at: int | None = None, error: str | None = None):
    """The final node of a synthetic episode (rebuilt the way the trainer rebuilds detailed episodes)."""
    code = arm.controller.parameter
    rng = np.random.default_rng(steps)
    current = node(Observation({"tip_pos": rng.normal(size=3)}, "The episode starts."), name="obs")
    for step in range(steps):
        inputs = {"obs": current, "__code": code, "gain": arm.gain}
        action = MessageNode(rng.normal(size=7), inputs, name="controller", description="[controller] torques")
        values = {"tip_pos": rng.normal(size=3), "joint_frames": rng.normal(size=(7, 3)), "goal_pos": [0.1, 0.2, 0.3]}
        current = MessageNode(Observation(values, step_feedback(step, success_at)), {"action": action},
                              name="step", description="[step] Apply the action.")
    if error is not None:
        inputs = {"obs": current, "__code": code, "gain": arm.gain}
        current = ExceptionNode(error, inputs, RuntimeError("failed"), name="controller",
                                description="[controller] torques")
    return current


def batch(finals: list, placements: int):
    lines = [f"placement {17 + i}: Success: {i % 5 == 0}, Return {3.1 + i:.1f}, final distance 0.{i:02d} m"
             for i in range(placements)]
    inputs = {f"episode{i}": final for i, final in enumerate(finals)}
    return MessageNode(lines, inputs, name="batch", description="[batch] The outcomes of a batch of placements."), \
        "\n".join(lines)


def client(server: ScriptedLLMServer) -> LLMClient:
    return LLMClient(model="test-model", base_url=server.base_url, api_key="sk-test", max_retries=1)


def sent_prompt(server: ScriptedLLMServer, index: int = -1) -> tuple[str, str]:
    messages = server.requests[index]["messages"]
    return messages[0]["content"], messages[-1]["content"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.sampled_from([1, 10, 50, 100, 1000]), code_lines=st.sampled_from([5, 60, 200]),
       memory=st.integers(0, 10), detailed=st.integers(1, 3), placements=st.integers(1, 40),
       budget=st.integers(1500, 8000), error_chars=st.sampled_from([0, 200, 100_000]),
       use_opro=st.booleans())
def test_no_prompt_exceeds_its_budget(steps, code_lines, memory, detailed, placements, budget, error_chars,
                                      use_opro):
    """Every prompt sent (system prompt and chat framing included) fits max_prompt_tokens."""
    with name_scope():
        arm = Arm()
        arm.controller.parameter._set(controller_code(code_lines))
        script = [answer({"__code0": controller_code(code_lines + 1 + round_)}) for round_ in range(2)]
        with ScriptedLLMServer(script) as server:
            kind = OPRO if use_opro else OptoPrime
            optimizer = kind(arm, llm=client(server), memory_size=memory, max_prompt_tokens=budget)
            for round_ in range(2):
                error = ("(ValueError) " + "x" * error_chars) if error_chars and round_ == 1 else None
                finals = [episode(arm, steps if i == 0 else 10, success_at=steps // 2, error=error)
                          for i in range(detailed)]
                output, feedback = batch(finals, placements)
                optimizer.zero_feedback()
                optimizer.backward(output, feedback + (f"\n{error}" if error else ""))
                optimizer.step()
                system, user = sent_prompt(server)
                assert prompt_tokens(system, user) <= budget
                assert optimizer.last_record.prompt_tokens_estimate == prompt_tokens(system, user)


def shown_entries(prompt: str) -> set[str]:
    return set(re.findall(r"^(\w+) = ", prompt, re.MULTILINE))


def test_long_rollout_keeps_events_and_deltas_name_only_shown_entries():
    """A 100-step rollout under a tight budget: the one success line stays, runs are summarised
    with their ranges, and every '(as in X)' / '(same as X)' names an entry that is shown."""
    arm = Arm()
    final = episode(arm, 100, success_at=63)
    with ScriptedLLMServer() as server:
        optimizer = OptoPrime(arm, llm=client(server), max_prompt_tokens=2500)
        optimizer.backward(final, "Success: True\nReturn: 5.0")
        optimizer.step()
        system, prompt = sent_prompt(server)
    assert prompt_tokens(system, prompt) <= 2500
    others = prompt.split("#Others\n")[1].split("\n\n#")[0]
    assert SUCCESS in others and "step63 = " in others
    assert "step0 = " in others and "step99 = " in prompt  # both ends (step99 is the output)
    assert re.search(r"\.\.\. \(controller\d+ \.\.\. step\d+: \d+ repetitions left out; their feedback", others)
    shown = shown_entries(prompt)
    referenced = re.findall(r"as in (\w+)\)", others) + re.findall(r"\(same as (\w+)'?s?\)", others)
    assert referenced and set(referenced) <= shown
    assert optimizer.last_record.omitted and "of 100 repetitions shown" in optimizer.last_record.omitted[0]


def test_a_rollout_that_fits_is_shown_whole():
    arm = Arm()
    final = episode(arm, 10)
    with ScriptedLLMServer() as server:
        optimizer = OptoPrime(arm, llm=client(server))
        optimizer.backward(final, "Success: False")
        optimizer.step()
        _, prompt = sent_prompt(server)
    assert all(f"step{i} = " in prompt for i in range(10)) and "left out" not in prompt
    assert optimizer.last_record.omitted == []
    assert "np." not in prompt and "array(" not in prompt
    # a float64 7x3 array renders as rounded nested lists
    assert re.search(r"'joint_frames': \[\[-?\d\.\d+, -?\d\.\d+, -?\d\.\d+\], \[", prompt)


def test_batch_episodes_stay_together_and_errors_are_capped():
    """Detailed episodes of a batch are listed one after the other, not interleaved, and a
    3 MB error message reaches the prompt only in part."""
    arm = Arm()
    huge = "(ZeroDivisionError) " + "division by zero " * 180_000
    finals = [episode(arm, 3), episode(arm, 3, error=huge)]
    output, lines = batch(finals, 4)
    with ScriptedLLMServer() as server:
        optimizer = OptoPrime(arm, llm=client(server), max_prompt_tokens=6000)
        optimizer.backward(output, lines + "\nThe controller raised an error:\n" + huge)
        optimizer.step()
        system, prompt = sent_prompt(server)
    code = prompt.split("#Code\n")[1].split("\n\n#")[0].splitlines()
    assert code.index("step2 = step(action=controller2)") < code.index("controller3 = controller(obs=obs1, "
                                                                       "__code=__code0, gain=gain0)")
    assert code[-1].startswith("batch0 = batch(episode0=step2, episode1=controller6")
    assert prompt_tokens(system, prompt) <= 6000 and len(prompt) < 40_000
    assert "characters left out" in prompt


def test_memory_shows_code_as_diffs_and_fits_with_a_200_line_controller():
    arm = Arm()
    arm.controller.parameter._set(controller_code(200))
    script = [answer({"__code0": controller_code(200).replace(f"error{i}\n", f"error{i} * 2\n")}) for i in range(12)]
    with ScriptedLLMServer(script) as server:
        optimizer = OptoPrime(arm, llm=client(server), memory_size=10, max_prompt_tokens=6000)
        for _ in range(12):
            optimizer.zero_feedback()
            optimizer.backward(episode(arm, 10), "Success: False")
            optimizer.step()
        system, prompt = sent_prompt(server)
    past = prompt.split("#Past attempts\n")[1]
    assert prompt_tokens(system, prompt) <= 6000
    assert ("(diff from the current code)" in past and "lines with - are in the current code" in past) or \
        "lines differ from the current code" in past
    assert len(past.splitlines()) < 200  # ten attempts at 200 lines each, and not one full copy among them
    assert len(optimizer.memory) == 10 and len(optimizer.records) <= 10
