"""Prompt size: the paper's reach report, 10-iteration runs, and a 1000-step rollout.

Tokens are counted as the reference counts them: cl100k_base, system prompt included
(install the ``tokens`` extra; without it counts are characters / 4 and say so).

1. The report for a real 10-step Meta-World reach rollout with the starting controller
   (the paper's setting), against trace-opt's on the same episode when trace-opt is
   installed (``bench`` extra), else against a typed-in figure.
2. Prompt tokens per iteration (median / max) over 10 iterations of reach, push and
   pusher with memory 10 and a 6,000-token budget; a scripted LLM answers with code
   that grows every iteration (pusher's controller from ~140 to ~200 lines).
3. A 1000-step Pusher rollout: its prompt within the budget, what was left out, and
   the time to build it against a 100-step rollout.

    python -m benchmarks.prompt      (from the repository root: it uses tests/llm_server.py)
"""

from __future__ import annotations

import os
import statistics
import time

from tests.llm_server import ScriptedLLMServer, answer
from trace_control import controllers, envs
from trace_control.llm import LLMClient
from trace_control.optim import OptoPrime, count_tokens, prompt_tokens, tokenizer_name
from trace_control.policies import ControllerCode, InProcessPolicy
from trace_control.rollout import graph_from_episode, run_episode
from trace_control.trace import name_scope

BUDGET = 6000
ITERATIONS = 10
TRACE_OPT_REACH_TOKENS = 3000  # trace-opt's reach report, cl100k with its system prompt (typed in)
GROWTH = {"reach": (0, 3), "push": (0, 3), "pusher": (140, 6)}  # (lines added at first, lines added per answer)


def recorded_rollout(env, controller, seed: int):
    """The trainer's path: an episode run (in this process: our own controllers) and its graph."""
    policy = InProcessPolicy()
    policy.load(ControllerCode.from_module(controller))
    return graph_from_episode(run_episode(env, policy, seed=seed, keep_steps=True), controller)


def offline_client(url: str = "http://127.0.0.1:9/v1") -> LLMClient:
    return LLMClient(model="benchmark", base_url=url, api_key="none", max_retries=1)


def reach_report() -> tuple[str, str, object]:
    """System and user prompt for one 10-step reach rollout (no memory, no budget), and the episode."""
    env = envs.make("reach", horizon=10)
    controller = controllers.starting_controller("reach")
    with name_scope():
        rollout = recorded_rollout(env, controller, seed=0)
        optimizer = OptoPrime(controller, llm=offline_client(), objective=env.instruction, max_prompt_tokens=None)
        optimizer.backward(rollout.output, rollout.feedback)
        user, _ = optimizer.build_prompt([], None)
    env.close()
    return optimizer.system_prompt, user, rollout.episode


def trace_opt_reach_tokens(episode) -> int | None:
    """trace-opt's OptoPrime prompt for the same episode (recorded observations replayed), if installed."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # trace-opt's LLM library: no download
    try:
        from opto import trace as opto_trace  # type: ignore[import-not-found]
        from opto.optimizers import OptoPrime as TheirOptoPrime  # type: ignore[import-not-found]
    except ImportError:
        return None
    steps = iter(episode.steps)

    @opto_trace.bundle(trainable=True)
    def controller(obs):
        """Map an observation to an action for Meta-World reach."""
        return [0.0, 0.0, 0.0, 0.0]

    @opto_trace.bundle()
    def step(action):
        """Apply the action in the simulator (one environment step)."""
        record = next(steps)
        return {**record.observation, "feedback": record.feedback}

    current = opto_trace.node({**episode.first_observation, "feedback": episode.first_feedback})
    for _ in episode.steps:
        current = step(controller(current))
    theirs = TheirOptoPrime([controller.parameter], llm=object(), objective=envs.make("reach").instruction)
    theirs.backward(current, episode.outcome)
    system, user = theirs.construct_prompt(theirs.summarize())
    return count_tokens(system + user)


def grown(code: str, lines: int) -> str:
    """``code`` with ``lines`` more statements before its final return."""
    head, _, last = code.rstrip("\n").rpartition("\n")
    extra = "".join(f"\n    term = {i} * 0.001 * len(obs)" for i in range(lines))
    return f"{head}{extra}\n{last}\n"


def run_task(task: str) -> tuple[list[int], int]:
    """Prompt tokens per iteration over ITERATIONS iterations, and the final controller's lines."""
    env = envs.make(task)
    controller = controllers.starting_controller(task)
    code = controller.controller.parameter
    first, per_answer = GROWTH[task]
    start = grown(code.data, first)
    code._set(start)
    answers = [answer({code.py_name: grown(start, per_answer * (i + 1))}) for i in range(ITERATIONS)]
    with name_scope(), ScriptedLLMServer(answers) as server:
        optimizer = OptoPrime(controller, llm=offline_client(server.base_url), memory_size=10,
                              objective=env.instruction, max_prompt_tokens=BUDGET)
        for _ in range(ITERATIONS):
            rollout = recorded_rollout(env, controller, seed=0)
            optimizer.zero_feedback()
            optimizer.backward(rollout.output, rollout.feedback)
            optimizer.step()
        sent = [prompt_tokens(body["messages"][0]["content"], body["messages"][1]["content"])
                for body in server.requests]
    env.close()
    return sent, len(code.data.splitlines())


def long_rollout(horizon: int) -> tuple[int, float, list[str]]:
    """Prompt tokens, seconds to build the prompt, and what was left out, for one Pusher rollout."""
    env = envs.make("pusher", horizon=horizon)
    controller = controllers.starting_controller("pusher")
    with name_scope():
        rollout = recorded_rollout(env, controller, seed=0)
        optimizer = OptoPrime(controller, llm=offline_client(), objective=env.instruction, max_prompt_tokens=BUDGET)
        optimizer.backward(rollout.output, rollout.feedback)
        started = time.perf_counter()
        user, omitted = optimizer.build_prompt([], BUDGET - prompt_tokens(optimizer.system_prompt, ""))
        seconds = time.perf_counter() - started
    env.close()
    return prompt_tokens(optimizer.system_prompt, user), seconds, omitted


def main() -> None:
    exact = tokenizer_name() == "cl100k_base"
    print(f"tokenizer: {tokenizer_name()}" + ("" if exact else " (estimates: install the 'tokens' extra)"))
    system, user, episode = reach_report()
    ours = count_tokens(system + user)
    theirs = trace_opt_reach_tokens(episode)
    label = "trace-opt on the same episode" if theirs is not None else "trace-opt, typed-in reference"
    theirs = theirs or TRACE_OPT_REACH_TOKENS
    print(f"10-step reach report, system prompt included: {ours:,} tokens ({len(system + user):,} characters); "
          f"{label}: {theirs:,} tokens; ours / theirs = {ours / theirs:.2f}")
    for task in GROWTH:
        sent, lines = run_task(task)
        print(f"{task}: prompt tokens over {ITERATIONS} iterations (memory 10, budget {BUDGET:,}): median "
              f"{statistics.median(sent):,.0f}, max {max(sent):,} (max / budget = {max(sent) / BUDGET:.2f}); "
              f"controller grew to {lines} lines")
    short_tokens, short_seconds, _ = long_rollout(100)
    tokens, seconds, omitted = long_rollout(1000)
    print(f"1000-step pusher rollout: {tokens:,} prompt tokens (max / budget = {tokens / BUDGET:.2f}); "
          f"building it takes {seconds / short_seconds:.1f}x the 100-step one ({short_tokens:,} tokens)")
    print("  left out: " + "; ".join(omitted))


if __name__ == "__main__":
    main()
