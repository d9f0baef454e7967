"""What code written for trace-opt's ``opto.trace`` relies on, through our public surface."""

from __future__ import annotations

import asyncio
import copy
import pickle

import pytest

from trace_control.trace import (
    ExceptionNode,
    ExecutionError,
    Feedback,
    Map,
    MessageNode,
    Module,
    Node,
    NodeContainer,
    ParameterNode,
    Seq,
    TraceError,
    TraceMissingInputsError,
    apply_op,
    bundle,
    contain,
    model,
    node,
    node_to_function_feedback,
    operators,
    stop_tracing,
    sum_feedback,
    to_data,
)


def double(value):
    """Twice the value."""
    return value * 2


def shout(text):
    return text.upper()


def passthrough(fn):
    return fn


# -- bugs ------------------------------------------------------------------------------
def test_deep_copy_and_pickle_give_detached_roots():
    x = node(1.5, name="x", trainable=True, constraint="positive")
    y = x * 2
    for twin in (copy.deepcopy(y), pickle.loads(pickle.dumps(y))):
        assert twin.data == 3.0 and twin.parents == [] and not contain(x.children, twin)
        assert type(twin) is MessageNode and twin.op_name == "mul" and twin.name != y.name
    twin = copy.deepcopy(x)
    assert twin.trainable and twin.constraint == "positive" and twin.feedback == [] and twin is not x
    listed = node([1, 2])
    assert copy.deepcopy(listed).data is not listed.data


@model
class Gains:
    def __init__(self):
        self.gain = node(2.0, name="gain", trainable=True)

    @bundle(trainable=True)
    def forward(self, obs):
        """Scale the observation."""
        return self.gain * obs


def test_deep_copy_of_a_used_model_is_independent():
    original = Gains()
    original(3.0).backward("smaller")
    twin = copy.deepcopy(original)
    assert twin.gain is not original.gain and twin.gain.data == 2.0
    assert twin.forward.parameter is not original.forward.parameter
    twin.forward.parameter.set_value("def forward(self, obs):\n    return -self.gain\n")
    twin.gain.set_value(5.0)
    assert twin(3.0).data == -5.0 and original(3.0).data == 6.0
    assert original.gain in original(1.0).parents and twin.gain in twin(1.0).parents


class Policy(Module):
    def __init__(self):
        self.offset = node(0.5, name="offset", trainable=True)
        self.act = bundle(trainable=True)(double)

    def forward(self, obs):
        return self.act(obs) + self.offset


def test_bundle_stored_as_an_attribute_is_a_parameter():
    policy = Policy()
    parameters = policy.parameters_dict()
    assert list(parameters) == ["offset", "act.__code"] and parameters["act.__code"] is policy.act.parameter
    out = policy(2.0)
    out.backward("lower")
    assert policy.act.parameter.feedback and out.data == 4.5


def test_async_bundle_is_awaited_for_a_node():
    @bundle()
    async def fetch(query, delay=0.0):
        await asyncio.sleep(delay)
        return f"answer to {query}"

    @bundle()
    async def broken(query):
        raise ValueError("offline")

    async def main():
        query = node("q", name="query")
        single = await fetch(query)
        pair = await asyncio.gather(fetch(query, 0.01), fetch(query))
        with pytest.raises(ExecutionError) as raised:
            await broken(query)
        with stop_tracing():
            untraced = await fetch(query)
        return query, single, pair, raised.value, untraced

    query, single, pair, error, untraced = asyncio.run(main())
    assert type(single) is MessageNode and single.data == "answer to q" and single.parents[0] is query
    assert [n.data for n in pair] == ["answer to q"] * 2 and all(n.parents[0] is query for n in pair)
    assert "(ValueError) offline" in error.exception_node.data and error.exception_node.parents == [query]
    assert untraced.parents == [] and untraced.data == "answer to q"


class Holder:
    def __init__(self):
        self.child = node(7, name="child")
        self.plain = 3

    def add(self, value):
        return value + self.plain


def test_attribute_holding_a_node_reads_its_value():
    holder = node(Holder(), name="holder")
    child = holder.child
    assert child.data == 7 and holder in child.parents
    assert holder.getattr("child").data == 7
    method = holder.getattr("add")
    out = method(node(2, name="two"))
    assert out.data == 5 and method in out.parents and holder in out.parents[0].parents
    assert holder.call("add", 4).data == 7


def test_unpacking_a_none_result_is_an_execution_error():
    @bundle()
    def nothing(x):
        return None

    with pytest.raises(ExecutionError) as raised:
        first, second = nothing(1)
    failed = raised.value.exception_node
    assert isinstance(failed, ExceptionNode) and "cannot iterate" in failed.data
    assert failed.parents[0].op_name == "nothing"


# -- node methods and operators ------------------------------------------------------
def test_node_methods_record_their_inputs():
    text = node("+", name="sep").join([node("a"), node("b")])
    assert text.data == "a+b" and len(text.parents) == 3
    x = node(3, name="x", trainable=True)
    copied = x.clone()
    assert copied.data == 3 and copied.parents == [x] and copied.op_name == "clone"
    table = node({"a": 1, "b": 2}, name="table")
    pairs = table.items()
    assert [(k.data, v.data) for k, v in pairs] == [("a", 1), ("b", 2)]
    key, value = pairs[1]
    assert contain(key.parents[0].parents, table) and contain(value.parents, table)
    assert [k.data for k in table.keys()] == ["a", "b"] and [v.data for v in table.values()] == [1, 2]
    assert (x.eq(3)).data is True and x.neq(3).data is False
    y = node(2.0, name="y", trainable=True)
    z = x * y + node(1.0, name="one")
    assert z.parameter_dependencies == {x, y}


def test_functional_operators_and_their_missing_names():
    x, y = node(1, name="x"), node(2, name="y")
    total = operators.add(x, y)
    assert total.data == 3 and total.parents == [x, y]
    condition = node(False, name="condition")
    chosen = operators.cond(condition, x, y)
    assert chosen.data == 2 and set(map(id, chosen.parents)) == {id(condition), id(x), id(y)}
    items = node([node(10), node(20)], name="items")
    assert operators.getitem(items, 1).data == 20  # a node inside the value yields its value
    assert operators.identity(x).parents == [x]
    base = node([1, 2], name="base")
    extended = operators.list_extend(base, node((3,)))
    assert extended.data == [1, 2, 3] and base.data == [1, 2]
    merged = operators.dict_update(node({"a": 1}), node({"b": 2}))
    assert merged.data == {"a": 1, "b": 2}
    with pytest.raises(AttributeError, match="x.call"):
        operators.list_sort  # noqa: B018


def test_bitwise_operators_are_traced():
    x = node(6, name="x")
    for result, expected in ((x & 3, 2), (x | 1, 7), (x ^ 2, 4), (x << 1, 12), (x >> 1, 3), (~x, -7),
                             (3 & x, 2), (1 << node(2), 4)):
        assert isinstance(result, MessageNode) and result.data == expected


def test_descriptions_carry_their_kind():
    assert node(1, description="x").description == "[Node] x"
    assert node(1, trainable=True, description="y").description == "[ParameterNode] y"
    assert node(1, description="[custom] z").description == "[custom] z"
    assert node(1).description.startswith("[Node] ")


def test_exception_node_from_an_error_and_its_feedback():
    action = node([0.0], name="action")
    failed = ExceptionNode(ValueError("bad action\nmore detail"), inputs={"action": action})
    assert failed.data.startswith("(ValueError) bad action") and failed.parents == [action]
    assert failed.exception.args == ("bad action\nmore detail",)
    assert failed.create_feedback() == "(ValueError) bad action"
    assert failed.create_feedback("full") == failed.data
    listed = ExceptionNode(KeyError("k"), inputs=[action])
    assert listed.inputs == {action.py_name: action}


# -- containers -------------------------------------------------------------------------
def test_seq_and_map_collect_parameters_and_pickle():
    gain = node(1.0, name="gain", trainable=True)
    key = node("k", name="key", trainable=True)
    nested = Seq(1, gain, Map({"inner": node(2.0, name="bias", trainable=True), key: 3}))
    assert list(nested.parameters_dict()) == ["1", "2.inner", "2.key0"] and nested.parameters()[0] is gain
    assert Seq([1, 2, 3]).parameters() == [] and Seq([1, 2]) == [1, 2]
    copied = pickle.loads(pickle.dumps(Map({"a": 1, "b": node(2)})))
    assert copied["a"] == 1 and copied["b"].data == 2


class Pair(NodeContainer):
    def __init__(self, left, right):
        self.left = node(left)
        self.items = [node(right), node(right * 2)]
        self.label = "pair"


def test_apply_op_broadcasts_over_containers_in_place():
    first, second = Pair(1, 10), Pair(2, 20)
    out = Pair(0, 0)
    assert apply_op(operators.add, out, first, second) is out
    assert out.left.data == 3 and first.left in out.left.parents
    assert [n.data for n in out.items] == [30, 60] and out.label == "pair"
    assert apply_op(operators.add, [0, 0], [node(1), node(2)], node(10)) == [node(11), node(12)]
    with pytest.raises(TypeError):
        apply_op(operators.add, [0], (node(1),))


def test_to_data_removes_every_node():
    value = {"a": [node(1), (node(2), {node("k"): node("v")})], "b": node([node(3)])}
    assert to_data(value) == {"a": [1, (2, {"k": "v"})], "b": [3]}
    pair = to_data(Pair(1, 2))
    assert pair.left == 1 and pair.items == [2, 4]


# -- bundle --------------------------------------------------------------------------------
def test_bundled_function_is_a_parameter_container(tmp_path):
    op = bundle(trainable=True)(double)
    assert op.parameters() == [op.parameter] and list(op.state_dict()) == ["__code"]
    op.parameter.set_value("def double(value):\n    return value * 3\n")
    op.save(tmp_path / "op.json")
    fresh = bundle(trainable=True)(double)
    fresh.load(tmp_path / "op.json")
    assert fresh(2).data == 6
    assert bundle()(double).parameters() == []


@bundle()
@passthrough
def decorated(value):  # the decorator under bundle is part of the function
    return value + 1


def test_info_holds_the_source_below_the_bundle_decorator():
    info = decorated.info
    assert info["source"].startswith("@passthrough\ndef decorated(value):") and info["fun_name"] == "decorated"
    assert info["line_number"] == decorated.fn.__code__.co_firstlineno + 1  # the line after @bundle()
    assert info["file"].endswith("test_engine_compat.py")
    code = bundle(trainable=True)(decorated.fn)
    assert code.parameter.data.startswith("@passthrough\n") and code(1).data == 2


def test_description_tag_names_the_operation():
    tagged = bundle("[scale_up] Doubles the value.")(double)
    out = tagged(2)
    assert out.op_name == "scale_up" and out.description == "[scale_up] Doubles the value."


def test_external_dependencies_are_recorded_in_info():
    hidden = node(3, name="hidden")

    @bundle(allow_external_dependencies=True)
    def lenient(x):
        return x + hidden.data

    @bundle()
    def strict(x):
        return x + hidden.data

    out = lenient(1)
    assert out.info["external_dependencies"] == (hidden,) and hidden in out.parents
    assert double_op(1).info["external_dependencies"] == ()
    with pytest.raises(TraceMissingInputsError) as raised:
        strict(1)
    assert isinstance(raised.value, TraceError)


double_op = bundle()(double)


def test_recursion_inside_a_bundle_runs_plain_and_false_is_refused():
    @bundle(overwrite_python_recursion=True)
    def total(n):
        return 0 if n == 0 else n + total(n - 1)

    assert total(4).data == 10 and len(total(4).parents) == 1
    with pytest.raises(TypeError, match="not supported"):
        bundle(overwrite_python_recursion=False)


hidden_scale = node(-2.0, name="hidden_scale", trainable=True)


@bundle()
def square(x):
    return x * x


@bundle(traceable_code=True)
def composite(x):
    return square(x) + 1 + hidden_scale


def test_traceable_code_records_the_inner_graph_and_feeds_its_parameters():
    x = node(3.0, name="x", trainable=True)
    out = composite(x)
    assert out.data == 8.0 and out.parents == [x] and out.op_name == "composite"
    inner = out.info["output"]
    assert inner.data == 8.0 and not contain(inner.parents, x)
    assert out.parameter_dependencies == {x} and out.hidden_dependencies == {hidden_scale}
    assert out.expandable_dependencies == {out}
    expanded = Feedback.expand(out)
    assert expanded.nodes[-1] is inner and len(expanded.graph) == 6
    out.backward("too large")
    assert x.feedback[0].nodes == [x, out]
    assert hidden_scale.feedback[0].nodes == [hidden_scale, out] and list(hidden_scale.feedback.keys()) == [out]
    hidden_scale.zero_feedback()


# -- feedback views --------------------------------------------------------------------------
def test_feedback_is_a_list_of_records_and_a_mapping_by_child():
    x = node(1.0, name="x", trainable=True)
    y = node(1.0, name="y", trainable=True)
    doubled, tripled = x * 2, y * 3
    out = doubled + tripled + 1
    out.backward("smaller", retain_graph=True)
    record = x.feedback[0]
    assert isinstance(record, Feedback) and record.user_feedback == "smaller" and record.output is out
    assert list(x.feedback.keys()) == [doubled] and x.feedback[doubled] == [record]
    graph = [member for _, member in record.graph]
    # the inputs the subgraph's operations read are in the graph, not their sources
    assert contain(graph, doubled) and contain(graph, tripled) and not contain(graph, y)
    assert [level for level, _ in record.graph] == sorted(level for level, _ in record.graph)
    merged = sum_feedback([x, y])
    assert {id(n) for n in merged.nodes} == {id(n) for n in record.nodes + y.feedback[0].nodes}
    assert merged.feedback == "smaller" and sum(x.feedback) is record
    out.backward("other", retain_graph=True)
    with pytest.raises(TraceError, match="different feedback"):
        sum_feedback([x])


def test_function_feedback_reads_the_trace_as_a_program():
    @bundle(trainable=True)
    def policy(obs):
        """Return an action."""
        return obs * 2

    obs = node(3, name="obs")
    out = policy(obs) + 1
    out.backward("aim higher")
    view = node_to_function_feedback(policy.parameter.feedback[0])
    assert [line for _, line in view.graph] == [f"policy0 = policy(obs=obs0, __code={policy.parameter.py_name})",
                                                "add0 = add(x=policy0, y=int0)"]
    assert set(view.roots) == {"obs0", policy.parameter.py_name, "int0"} and view.roots["obs0"] == (3, None)
    assert view.others == {"policy0": (6, None)} and view.output == {"add0": (7, None)}
    assert view.documentation["policy"] == "[policy] Return an action." and view.user_feedback == "aim higher"


def test_parameter_accessors():
    code = bundle(trainable=True)(double).parameter
    assert code.op_name == "__code" and isinstance(code, ParameterNode)
    gain = node(1.0, name="gain", trainable=True)
    gain.set_value(node(2.0))
    assert gain.data == 2.0
    gain._set(3.0)
    assert gain.data == 3.0
    assert isinstance(node(1), Node) and node(1).is_root and node(1).is_leaf


def test_names_left_out_say_what_to_use_instead():
    with pytest.raises(ImportError, match="name_scope"):
        from trace_control.trace import GRAPH  # noqa: F401
    with pytest.raises(ImportError, match="Feedback"):
        from trace_control.trace import TraceGraph  # noqa: F401
    import trace_control.trace as trace

    assert not hasattr(trace, "no_such_name")
