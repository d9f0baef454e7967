"""Behaviour of the Trace engine through its public surface."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

from trace_control.trace import (
    ExceptionNode,
    ExecutionError,
    MessageNode,
    Module,
    Node,
    ParameterNode,
    TraceError,
    bundle,
    model,
    name_scope,
    node,
    stop_tracing,
)

REPO = Path(__file__).resolve().parents[1]


def test_operators_record_messages_with_parents():
    x = node(2.0, name="x", trainable=True)
    y = x * 3 + 1
    assert isinstance(y, MessageNode) and y.data == 7.0
    mul = y.parents[0]
    assert mul.parents[0] is x and mul.data == 6.0
    assert y in x.children[0].children
    obs = node({"hand_pos": [0.1, 0.2, 0.3]}, name="obs")
    z = obs["hand_pos"][1]
    assert z.data == 0.2 and z.parents[0].parents[0] is obs
    items = list(node([1, 2, 3]))
    assert [i.data for i in items] == [1, 2, 3] and all(isinstance(i, MessageNode) for i in items)
    assert (x < 3).data is True and isinstance(x < 3, MessageNode)
    branch = "small" if x < 3 else "large"  # bool() is plain Python
    assert branch == "small"
    assert 2 in node([1, 2]) and len(node([1, 2])) == 2
    assert node([1, 2]).len().data == 2
    assert (-x).data == -2.0 and abs(node(-4)).data == 4 and (10 - x).data == 8.0


def test_bundle_records_one_operation_with_documentation():
    @bundle()
    def scale(value, factor):
        """Multiply value by factor."""
        return value * factor

    x = node(2.0, name="x", trainable=True)
    out = scale(x, 4)
    assert out.data == 8.0
    assert set(out.inputs) == {"value", "factor"} and out.inputs["value"] is x
    assert "Multiply value by factor." in out.description
    assert scale.parameter is None


def test_trainable_code_is_a_parameter_and_replacement_takes_effect():
    @bundle(trainable=True)
    def policy(obs):
        """Return an action."""
        return obs * 0

    code = policy.parameter
    assert isinstance(code, ParameterNode) and code.py_name.startswith("__code")
    assert code.data.startswith("def policy(obs):") and "@bundle" not in code.data
    assert "def policy(obs):" in code.constraint
    first = policy(3)
    assert first.data == 0 and first.inputs["__code"] is code
    code.set_value("def policy(obs):\n    return obs * 2\n")
    assert policy(3).data == 6


def test_errors_become_exception_nodes_with_the_failing_line_marked():
    @bundle(trainable=True)
    def policy(obs):
        gain = 2
        return obs["missing"] * gain

    with pytest.raises(ExecutionError) as raised:
        policy({"present": 1})
    failed = raised.value.exception_node
    assert isinstance(failed, ExceptionNode)
    assert "(KeyError)" in failed.data and "'missing'" in failed.data
    marked = [line for line in failed.data.splitlines() if line.startswith(">>")]
    assert len(marked) == 1 and 'obs["missing"]' in marked[0]
    assert policy.parameter in failed.parents
    failed.backward("the controller crashed")
    assert policy.parameter.feedback[-1].feedback == "the controller crashed"

    policy.parameter.set_value("def policy(obs):\n    return (obs\n")
    with pytest.raises(ExecutionError) as raised:
        policy({})
    assert "(SyntaxError)" in raised.value.exception_node.data
    policy.parameter.set_value("def other(obs):\n    return 1\n")
    with pytest.raises(ExecutionError) as raised:
        policy({})
    assert "must define a function named 'policy'" in raised.value.exception_node.data
    assert "it defines other" in raised.value.exception_node.data


def test_errors_propagate_unchanged_when_not_caught():
    @bundle(catch_execution_error=False)
    def boom(x):
        raise ValueError("plain")

    with pytest.raises(ValueError, match="plain"):
        boom(1)


def test_minimal_subgraph_per_parameter_with_a_shared_path():
    a = node(1.0, name="a", trainable=True)
    b = node(2.0, name="b", trainable=True)
    c = node(5.0, name="c")  # an input, not trainable
    only_a = a * 10
    only_b = b + c
    shared = only_a + only_b
    out = shared * 2
    dangling = a - 100  # depends on a but does not reach the output
    out.backward("make it smaller")
    nodes_a = a.feedback[0].nodes
    nodes_b = b.feedback[0].nodes
    assert nodes_a == [a, only_a, shared, out]
    assert nodes_b == [b, only_b, shared, out]
    assert only_b not in nodes_a and c not in nodes_a and dangling not in nodes_a
    assert c in only_b.parents  # the inputs a subgraph node read are its parents
    assert a.feedback[0].feedback == "make it smaller" and c.feedback == []


def test_second_backward_needs_retain_graph_and_feedback_accumulates():
    x = node(1.0, name="x", trainable=True)
    y = x + 1
    y.backward("first", retain_graph=True)
    y.backward("second", retain_graph=True)
    assert [f.feedback for f in x.feedback] == ["first", "second"]
    y.backward("third")
    with pytest.raises(TraceError, match="retain_graph"):
        y.backward("fourth")
    x.zero_feedback()
    assert x.feedback == []


def test_custom_propagator_is_used():
    seen = []

    def propagator(output, feedback, order):
        seen.append((output, feedback, len(order)))
        return {}

    x = node(1.0, trainable=True)
    y = x + 1
    y.backward("text", propagator=propagator)
    assert seen == [(y, "text", 3)] and x.feedback == []


def test_stop_tracing_is_nestable_and_builds_no_graph():
    x = node(1.0, trainable=True)
    with stop_tracing():
        with stop_tracing():
            y = x + 1
        z = x * 2
    w = x * 3
    assert y.parents == [] and z.parents == [] and w.parents[0] is x


def test_external_node_read_inside_a_bundle_is_reported_unless_allowed():
    hidden = node(3.0, name="hidden", trainable=True)

    @bundle()
    def strict(x):
        return x + hidden

    @bundle(allow_external_dependencies=True)
    def lenient(x):
        return x + hidden

    with pytest.raises(TraceError, match="without receiving it as an input"):
        strict(1.0)
    out = lenient(1.0)
    assert out.data == 4.0 and hidden in out.parents


def test_threads_build_separate_graphs_and_names():
    results = {}

    def work(tag):
        with name_scope():
            x = node(float(tag), name="x", trainable=True)
            y = x
            for _ in range(200):
                y = y + 1
            y.backward(f"feedback {tag}")
            results[tag] = (x, y, x.feedback[0].nodes)

    threads = [threading.Thread(target=work, args=(tag,)) for tag in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for tag, (x, y, nodes) in results.items():
        assert y.data == tag + 200 and len(nodes) == 201 and nodes[0] is x
        assert x.name == "x:0" and y.name == "add:199"
        assert x.feedback[0].feedback == f"feedback {tag}"


NAMING_SCRIPT = """
from trace_control.trace import bundle, node
@bundle(trainable=True)
def policy(obs):
    return obs["a"] * 2
obs = node({"a": 1.0}, name="obs")
gain = node(2.0, name="gain", trainable=True)
out = policy(obs) + gain
names = [n.name for n in [obs, gain, out] + out.parents + policy.parameter.children]
print(" ".join(names))
"""


def test_names_are_readable_and_deterministic_across_runs(tmp_path):
    script = tmp_path / "naming.py"
    script.write_text(NAMING_SCRIPT)
    runs = [subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                           cwd=REPO).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    assert "<locals>" not in runs[0] and "0x" not in runs[0]
    assert runs[0].split()[:3] == ["obs:0", "gain:0", "add:0"]
    assert "policy:0" in runs[0].split()


@model
class Arm:
    """A tiny model: a trainable gain and trainable code."""

    def __init__(self):
        self.gain = node(2.0, name="gain", trainable=True)
        self.offset = 0.5

    @bundle(trainable=True)
    def forward(self, obs):
        """Scale the observation."""
        return [self.gain * obs["a"] + self.offset, 0.0]


class Twin(Module):
    def __init__(self):
        self.bias = node([1.0, 2.0], name="bias", trainable=True)

    @bundle(trainable=True)
    def forward(self, x):
        return x + self.bias[0]


def test_module_collects_parameters_per_instance():
    first, second = Arm(), Arm()
    keys = list(first.parameters_dict())
    assert keys == ["forward.__code", "gain"]
    assert first.parameters_dict()["forward.__code"] is not second.parameters_dict()["forward.__code"]
    out = first({"a": 3.0})
    assert out.data == [6.5, 0.0] and first.gain in out.parents
    out.backward("too far")
    assert first.gain.feedback and first.forward.parameter.feedback and not second.gain.feedback
    second.forward.parameter.set_value("def forward(self, obs):\n    return [1.0, 1.0]\n")
    assert second({"a": 3.0}).data == [1.0, 1.0] and first({"a": 3.0}).data == [6.5, 0.0]
    assert Twin()(1.0).data == 2.0


def test_save_load_round_trip(tmp_path):
    arm = Arm()
    arm.gain.set_value(7.5)
    arm.forward.parameter.set_value("def forward(self, obs):\n    return [self.gain, 1.0]\n")
    path = tmp_path / "arm.json"
    arm.save(path)
    saved = json.loads(path.read_text())
    assert saved["parameters"]["gain"] == 7.5 and "def forward" in saved["parameters"]["forward.__code"]
    fresh = Arm()
    fresh.load(path)
    assert fresh.gain.data == 7.5 and fresh({"a": 0.0}).data == [7.5, 1.0]
    path.write_text(json.dumps({"format": "trace-control/module-1", "parameters": {"nope": 1}}))
    with pytest.raises(TraceError, match="nope"):
        fresh.load(path)


def test_export_runs_in_a_fresh_interpreter_without_trace_control(tmp_path):
    arm = Arm()
    arm.gain.set_value(3.0)
    arm.forward.parameter.set_value("def forward(self, obs):\n    return [self.gain * obs['a'] + self.offset, 9.0]\n")
    path = tmp_path / "exported_arm.py"
    arm.export(path)
    text = path.read_text()
    assert "import trace_control" not in text and "from trace_control" not in text
    check = ("import sys; sys.modules['trace_control'] = None\n"
             "import importlib.util as u\n"
             f"spec = u.spec_from_file_location('m', {str(path)!r}); m = u.module_from_spec(spec)\n"
             "spec.loader.exec_module(m)\n"
             "print(m.load()({'a': 2.0}))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[6.5, 9.0]"


def test_memory_stays_flat_over_many_iterations():
    gain = node(1.0, name="gain", trainable=True)

    @bundle(trainable=True)
    def step(obs, k):
        return obs * k

    def iteration():
        obs = node(0.5, name="obs")
        value = obs
        for _ in range(20):
            value = step(value, gain) + 1
        value.backward("feedback")
        gain.zero_feedback()
        step.parameter.zero_feedback()

    for _ in range(100):  # warm up caches
        iteration()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(1000):
        iteration()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 200_000, f"memory grew by {grown} bytes over 1000 iterations"
    assert len(gain._children) < 200  # dead child references are pruned


def test_visualize_gives_graphviz_text():
    x = node(1.0, name="x", trainable=True)

    @bundle()
    def fail(v):
        raise RuntimeError("no")

    with pytest.raises(ExecutionError) as raised:
        fail(x + 1)
    dot = raised.value.exception_node.backward("fix", visualize=True)
    assert dot.startswith("digraph") and "x0 -> add0" in dot and "shape=box" in dot and "octagon" in dot


def test_node_of_node_returns_it():
    x = node(1)
    assert node(x) is x and isinstance(x, Node)
    p = node(x, trainable=True)
    assert p.trainable and p is not x
