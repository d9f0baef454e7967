"""A module's parameter state as plain data: state_dict, strict load_state_dict, save and load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trace_control.trace import Module, Seq, TraceError, bundle, fit_value, node


class Controller(Module):
    def __init__(self):
        self.gain = node(2, name="gain", trainable=True)
        self.weights = node(np.array([0.5, 1.5]), name="weights", trainable=True)
        self.mode = node("track", name="mode", trainable=True)
        self.limits = node((1.0, 2.0), name="limits", trainable=True)
        self.fixed = node(9.0, name="fixed")  # an input, not a parameter
        self.extras = Seq([node({"k": 1.0}, name="table", trainable=True)])

    @bundle(trainable=True)
    def forward(self, obs):
        return obs * self.gain


def test_state_dict_is_plain_data_keyed_like_parameters_dict():
    controller = Controller()
    state = controller.state_dict()
    assert list(state) == list(controller.parameters_dict())
    assert list(state) == ["forward.__code", "gain", "weights", "mode", "limits", "extras.0"]
    assert state["weights"] == [0.5, 1.5] and state["limits"] == (1.0, 2.0) and state["extras.0"] == {"k": 1.0}
    json.dumps(state)


def test_load_state_dict_round_trips_and_keeps_types():
    source, target = Controller(), Controller()
    source.gain.set_value(3)
    source.weights.set_value(np.array([4.0, 5.0]))
    source.forward.parameter.set_value("def forward(self, obs):\n    return obs + self.gain\n")
    state = json.loads(json.dumps(source.state_dict()))  # as read back from a file
    target.load_state_dict(state)
    assert target.gain.data == 3 and isinstance(target.weights.data, np.ndarray)
    assert target.weights.data.tolist() == [4.0, 5.0] and target.limits.data == (1.0, 2.0)
    assert target(1).data == 4


def test_strict_load_names_missing_and_extra_parameters():
    controller = Controller()
    state = controller.state_dict()
    del state["mode"]
    state["unknown"] = 1.0
    with pytest.raises(TraceError, match="missing mode") as raised:
        controller.load_state_dict(state)
    assert "unknown" in str(raised.value)
    state["gain"] = 7
    controller.load_state_dict(state, strict=False)
    assert controller.gain.data == 7 and controller.mode.data == "track"


def test_a_value_of_the_wrong_type_is_refused_and_nothing_changes():
    controller = Controller()
    state = controller.state_dict()
    state["gain"] = 5
    state["weights"] = "0.5"  # text for an array of floats
    with pytest.raises(TraceError, match="weights"):
        controller.load_state_dict(state)
    assert controller.gain.data == 2  # checked before anything is set
    state["weights"] = [1.0, 2.0]
    state["mode"] = 3.0
    with pytest.raises(TraceError, match="mode must be text"):
        controller.load_state_dict(state)


def test_fit_value_rules():
    assert fit_value(2.5, 1) == 2.5 and fit_value(2.0, 1) == 2 and isinstance(fit_value(2, 1.0), float)
    assert fit_value([1, 2.5], [0.0]) == [1.0, 2.5] and fit_value([3], (1,)) == (3,)
    for value, current in (("0.5", 1.0), (True, 1.0), (1, True), ([1.0, "a"], [0.0]), ({"k": "x"}, {"k": 1})):
        with pytest.raises(TraceError):
            fit_value(value, current)
    assert fit_value("anything", None) == "anything"


def test_save_and_load_use_the_state(tmp_path):
    saved, loaded = Controller(), Controller()
    saved.mode.set_value("hold")
    path = tmp_path / "controller.json"
    saved.save(path)
    document = json.loads(path.read_text())
    assert document["parameters"] == json.loads(json.dumps(saved.state_dict()))
    loaded.load(path)
    assert loaded.mode.data == "hold"
    document["parameters"]["mode"] = 1
    path.write_text(json.dumps(document))
    with pytest.raises(TraceError, match="controller.json: mode must be text"):
        loaded.load(path)
