"""Property tests of the Keras backend on random small specs: the model is what the plan says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import spec_documents

import ghostspec
from ghostspec.keras import build_model
from ghostspec.language.spec import Spec
from ghostspec.plan.ir import Plan, layer_name

# Each example builds a Keras model (a fraction of a second on 2 cores); keep the count small.
SETTINGS = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SMALL = {"max_stages": 3, "max_blocks": 2, "max_channels": 24}


def small_specs() -> st.SearchStrategy[dict[str, Any]]:
    """Random valid specs with small widths and 1-3 stages of 1-2 blocks."""
    return spec_documents(**SMALL).map(_narrow)


def _narrow(doc: dict[str, Any]) -> dict[str, Any]:
    doc["width"] = min(doc["width"], 0.5)
    return doc


def total_stride(plan: Plan) -> int:
    stride = plan.nodes[0].op.conv.stride
    for block in plan.blocks:
        stride *= block.stride
    return stride


def sized(spec: Spec, plan: Plan, data: st.DataObject) -> tuple[Plan, tuple[int, int]]:
    """The plan at a concrete input size: the spec's own, or a drawn one for null height/width."""
    h, w, _ = plan.input_shape
    if h is not None and w is not None:
        return plan, (h, w)
    low = total_stride(plan)
    if any(block.ghost1.attention for block in plan.blocks):
        low *= 2  # DFC attention pools its input 2x2: every map it sees must be 2 px or more
    size = (
        data.draw(st.integers(low, max(low, 64)), label="height"),
        data.draw(st.integers(low, max(low, 64)), label="width"),
    )
    return ghostspec.plan(spec, input_size=size), size


@SETTINGS
@given(doc=small_specs(), data=st.data())
def test_model_has_the_plans_shapes_and_counts(doc: dict[str, Any], data: st.DataObject) -> None:
    spec = Spec.model_validate(doc)
    plan = ghostspec.plan(spec)
    model = build_model(plan)

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert (trainable, frozen) == (plan.params, plan.buffers)
    assert model.output.shape[1:] == plan.output_shape

    concrete, (h, w) = sized(spec, plan, data)
    blocks = [model.get_layer(layer_name(b.name, "add")).output for b in plan.blocks]
    probe = keras.Model(model.input, [*blocks, model.output])
    x = np.random.default_rng(0).normal(size=(2, h, w, plan.input_shape[2])).astype("float32")
    *block_outputs, output = probe(x, training=False)
    for block, out in zip(concrete.blocks, block_outputs, strict=True):
        assert tuple(out.shape) == (2, *block.out_size, block.cout), block.name
    assert tuple(output.shape) == (2, *concrete.output_shape)
    assert np.isfinite(np.asarray(output)).all()


@SETTINGS
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras' saver
@given(doc=small_specs())
def test_save_load_and_config_round_trips(doc: dict[str, Any], tmp_path_factory: Any) -> None:
    doc["input"]["shape"] = [32, 32, 3]
    doc["stem"]["stride"] = 1  # 32 px stays above any total stride the strategy draws
    plan = ghostspec.plan(Spec.model_validate(doc))
    model = build_model(plan)
    rng = np.random.default_rng(1)
    for variable in model.weights:  # non-trivial BN statistics, so a lost buffer shows
        value = rng.normal(0.0, 0.5, variable.shape)
        if variable.path.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        variable.assign(value.astype("float32"))
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))

    path = Path(tmp_path_factory.mktemp("saved")) / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), expected)

    rebuilt = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    assert [(v.path, v.shape) for v in rebuilt.weights] == [
        (v.path, v.shape) for v in model.weights
    ]
