"""The Keras backend: structure, names, numerics of the building blocks, portability of saves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import ghostspec
from ghostspec.keras import build_model
from ghostspec.keras.blocks import ACTIVATIONS
from ghostspec.keras.layers import DepthwiseConv2D as TapDepthwiseConv2D
from ghostspec.language.reading import dump_yaml
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import BatchNorm, Conv, Linear, Plan, layer_name, nearest_indices

# CI runs these on every Keras backend; on PyTorch without gradients (but the training step)
pytestmark = [pytest.mark.backend_neutral, pytest.mark.inference]

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "specs" / "large.yaml"


def tiny(**changes: Any) -> dict[str, Any]:
    """A small spec document: stem, two stages (one stride-2 SE block), head."""
    doc: dict[str, Any] = {
        "ghostspec": 1,
        "name": "tiny",
        "input": {"shape": [32, 32, 3]},
        "width": 0.5,
        "stem": {"filters": 16, "kernel": 3, "stride": 2},
        "stages": [[[16, 16, 0, 1, 3]], [[48, 24, 0.25, 2, 5], [72, 24, 0, 1, 3]]],
        "head": {"filters": 64, "hidden": 32, "dropout": 0.2, "classes": 5},
    }
    for key, value in changes.items():
        target = doc
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    return doc


def plan_of(doc: dict[str, Any]) -> Plan:
    return ghostspec.plan(ghostspec.load("tiny.yaml", text=dump_yaml(doc)))


def counts(model: keras.Model) -> tuple[int, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return trainable, frozen


def plan_layers(plan: Plan) -> list[Conv | BatchNorm | Linear]:
    return [layer for node in plan.nodes for layer in node.layers()]


@pytest.fixture(scope="module")
def large() -> tuple[Plan, keras.Model]:
    plan = ghostspec.plan(LARGE)
    return plan, build_model(plan)


def test_large_matches_the_reference_totals(large: tuple[Plan, keras.Model]) -> None:
    plan, model = large
    assert counts(model) == (plan.params, plan.buffers) == (5_182_508, 21_968)
    assert model.output.shape == (None, 1000)
    assert model.name == "ghostnet_large"
    assert sum(isinstance(x, keras.layers.BatchNormalization) for x in model.layers) == 80


def test_weight_layers_are_named_after_reference_modules(
    large: tuple[Plan, keras.Model],
) -> None:
    plan, model = large
    names = {layer.name for layer in model.layers}
    assert {layer_name(t.name.rsplit(".", 1)[0]) for t in plan.tensors()} <= names
    assert not any("." in name for name in names)  # PyTorch forbids dots in module names
    kinds = {
        "blocks-3-0-ghost1-primary_conv-0": keras.layers.Conv2D,
        "blocks-3-0-ghost1-primary_conv-1": keras.layers.BatchNormalization,
        "blocks-3-0-ghost1-cheap_operation-0": keras.layers.DepthwiseConv2D,
        "blocks-3-0-conv_dw": keras.layers.DepthwiseConv2D,
        "blocks-3-0-se-conv_reduce": keras.layers.Conv2D,
        "blocks-6-3-shortcut-2": keras.layers.Conv2D,
        "blocks-9-0-conv": keras.layers.Conv2D,
        "conv_head": keras.layers.Conv2D,
        "classifier": keras.layers.Dense,
    }
    if keras.backend.backend() == "jax":  # see ghostspec.keras.layers
        kinds = {
            k: TapDepthwiseConv2D if v is keras.layers.DepthwiseConv2D else v
            for k, v in kinds.items()
        }
    for name, kind in kinds.items():
        assert type(model.get_layer(name)) is kind, name
    for name in ("conv_stem-pad", "blocks-3-0-ghost1-concat", "blocks-3-0-add", "global_pool"):
        model.get_layer(name)
    # a path: layer name, then the variable
    assert model.get_layer("bn1").moving_variance.path == "bn1/moving_variance"


def test_every_layer_matches_its_plan_layer(large: tuple[Plan, keras.Model]) -> None:
    plan, model = large
    for layer in plan_layers(plan):
        target = model.get_layer(layer.layer_name)
        if isinstance(layer, BatchNorm):
            assert target.epsilon == layer.epsilon and target.momentum == layer.momentum
        elif isinstance(layer, Conv):
            assert target.kernel_size == (layer.kernel, layer.kernel)
            assert target.strides == (layer.stride, layer.stride)
            assert target.use_bias == layer.bias
            assert target.padding == ("valid" if layer.stride > 1 else "same")


def test_names_are_deterministic() -> None:
    plan = plan_of(tiny())
    first = [x.name for x in build_model(plan).layers]
    assert [x.name for x in build_model(plan).layers] == first
    assert len(set(first)) == len(first)


def test_only_standard_layers(large: tuple[Plan, keras.Model]) -> None:
    """Standard Keras layers only, so the file loads without ghostspec; on JAX the depthwise
    convs are ghostspec's subclass (XLA's CPU grouped convolution is slow)."""
    _, model = large
    jax = keras.backend.backend() == "jax"
    for layer in model.layers:
        if jax and isinstance(layer, keras.layers.DepthwiseConv2D):
            assert type(layer) is TapDepthwiseConv2D, layer.name
            continue
        assert type(layer).__module__.startswith("keras.src.layers."), layer.name
        assert not isinstance(layer, keras.layers.Lambda)
    config = json.dumps(model.get_config())
    assert "Lambda" not in config and '"module": "keras.layers"' in config


def test_symmetric_padding_at_stride_2_on_even_input() -> None:
    """PyTorch pads a strided conv by k // 2 on both sides; Keras' "same" would not at stride 2."""
    plan = plan_of(tiny(**{"input.shape": [8, 8, 1], "head.include_top": False}))
    model = build_model(plan)
    stem = model.get_layer("conv_stem")
    stem.kernel.assign(np.ones(stem.kernel.shape, np.float32))
    probe = keras.Model(model.input, stem.output)
    out = np.asarray(probe(np.ones((1, 8, 8, 1), np.float32)))[0, :, :, 0]
    assert out.shape == (4, 4)
    # top-left window sees 2x2 real pixels, inner windows 3x3, bottom/right edges 3x2 (8 is even)
    assert out[0, 0] == 4 and out[1, 1] == 9 and out[3, 3] == 9 and out[0, 3] == 6


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("relu", lambda x: np.maximum(x, 0)),
        ("relu6", lambda x: np.clip(x, 0, 6)),
        ("hard_swish", lambda x: x * np.clip(x + 3, 0, 6) / 6),
        ("swish", lambda x: x / (1 + np.exp(-x))),
        ("hard_sigmoid", lambda x: np.clip(x + 3, 0, 6) / 6),
        ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
        ("linear", lambda x: x),
    ],
)
def test_activations_compute_the_reference_functions(kind: str, expected: Any) -> None:
    x = np.linspace(-8, 8, 161, dtype=np.float32)
    got = keras.ops.convert_to_numpy(keras.activations.get(ACTIVATIONS[kind])(x))
    np.testing.assert_allclose(got, expected(x), atol=1e-6)


def test_gelu_is_the_exact_form() -> None:
    from math import erf, sqrt

    x = np.linspace(-4, 4, 81, dtype=np.float32)
    got = keras.ops.convert_to_numpy(keras.activations.get(ACTIVATIONS["gelu"])(x))
    exact = np.array([v * 0.5 * (1 + erf(v / sqrt(2))) for v in x.astype(np.float64)])
    np.testing.assert_allclose(got, exact, atol=1e-6)


def test_ghost_module_slice_keeps_the_first_channels() -> None:
    """ratio 3 makes 3 * ceil(out / 3) channels; the module keeps the first `out` of them."""
    doc = tiny(ghost={"ratio": 3, "cheap_kernel": 3}, divisor=1, width=1.0)
    doc["stages"] = [[[10, 7, 0, 1, 3]]]
    plan = plan_of(doc)
    block = plan.blocks[0]
    assert block.ghost2.primary.conv.cout + block.ghost2.cheap.conv.cout == 9
    assert block.ghost2.cout == 7
    model = build_model(plan)
    concat = model.get_layer("blocks-0-0-ghost2-concat").output
    sliced = model.get_layer("blocks-0-0-ghost2-slice").output
    probe = keras.Model(model.input, [concat, sliced])
    full, cut = probe(np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32"))
    assert cut.shape[-1] == 7
    np.testing.assert_array_equal(np.asarray(cut), np.asarray(full)[..., :7])


def test_any_input_size_when_height_and_width_are_null() -> None:
    plan = plan_of(tiny(**{"input.shape": [None, None, 3]}))
    model = build_model(plan)
    assert model.input.shape == (None, None, None, 3)
    for h, w in ((32, 32), (41, 57)):
        out = model(np.zeros((1, h, w, 3), np.float32), training=False)
        assert out.shape == (1, 5)


def test_feature_extractor_and_pooling_variants() -> None:
    pooled = build_model(plan_of(tiny(**{"head.include_top": False, "head.pooling": "max"})))
    assert pooled.output.shape == (None, 32)
    assert isinstance(pooled.get_layer("global_pool"), keras.layers.GlobalMaxPooling2D)
    unpooled = build_model(plan_of(tiny(**{"head.include_top": False, "head.pooling": None})))
    assert unpooled.output.shape == (None, 8, 8, 32)
    assert unpooled.layers[-1].name == "blocks-2-0-act1"


def test_softmax_classifier() -> None:
    model = build_model(plan_of(tiny(**{"head.classifier_activation": "softmax"})))
    x = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x, training=False)).sum(axis=1), 1, rtol=1e-5)


def test_batch_norm_settings_come_from_the_plan() -> None:
    plan = plan_of(tiny(normalization={"epsilon": 1e-3, "momentum": 0.99}))
    model = build_model(plan)
    bns = [x for x in model.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert bns and all(b.epsilon == 1e-3 and b.momentum == 0.99 for b in bns)


LOAD_SCRIPT = """
import sys
import numpy as np
import keras
model = keras.saving.load_model(sys.argv[1])
data = np.load(sys.argv[2])
out = keras.ops.convert_to_numpy(model(data["x"], training=False))
assert "ghostspec" not in sys.modules, "ghostspec was imported"
print(float(np.abs(out - data["y"]).max()))
"""


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras' saver
def test_saved_model_loads_in_a_process_without_ghostspec(tmp_path: Path) -> None:
    if keras.backend.backend() == "jax":
        pytest.skip("a model built on JAX holds ghostspec's DepthwiseConv2D")
    # ratio 3 exercises the slice layer, the SE the activations inside convs
    doc = tiny(ghost={"ratio": 3, "cheap_kernel": 3}, divisor=1)
    doc["stages"][1][0] = [48, 23, 0.25, 2, 5]
    model = build_model(plan_of(doc))
    assert any(x.name.endswith("-slice") for x in model.layers)
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    np.savez(tmp_path / "io.npz", x=x, y=np.asarray(model(x, training=False)))
    model.save(tmp_path / "tiny.keras")
    result = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_SCRIPT, "tiny.keras", "io.npz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PATH": "/usr/bin:/bin",
            "KERAS_BACKEND": keras.backend.backend(),  # the backend that saved it
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) == 0.0


@pytest.mark.inference(False)  # it trains
def test_a_training_step_updates_weights_and_batch_statistics() -> None:
    model = build_model(plan_of(tiny()))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss=loss_fn)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 5, size=(4,))
    bn = model.get_layer("bn1")
    kernel = model.get_layer("conv_stem").kernel.numpy().copy()
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert not np.allclose(bn.moving_mean.numpy(), 0.0)
    assert not np.array_equal(model.get_layer("conv_stem").kernel.numpy(), kernel)


@pytest.mark.parametrize("size", [32, 30])
def test_dfc_gate_is_upsampled_by_pytorchs_nearest_rule(size: int) -> None:
    """32 px gives even maps (16 -> 8 -> 16), 30 px odd ones (15 -> 7 -> 15: row 0 thrice)."""
    doc = tiny(ghost={"attention": "dfc", "attention_from": 0})
    doc["input"]["shape"] = [size, size, 3]
    plan = plan_of(doc)
    dfc = plan.blocks[0].ghost1.attention
    assert dfc is not None
    model = build_model(plan)
    name = dfc.name
    gate = model.get_layer(layer_name(name, "gate")).output
    upsampled = model.get_layer(layer_name(name, "scale")).input[1]
    probe = keras.Model(model.input, [gate, upsampled])
    x = np.random.default_rng(4).normal(size=(1, size, size, 3)).astype("float32")
    small, big = (np.asarray(t) for t in probe(x, training=False))
    (h, w), (ph, pw) = dfc.in_size, dfc.pooled_size
    assert small.shape[1:3] == (ph, pw) and big.shape[1:3] == (h, w)
    rows, cols = nearest_indices(ph, h), nearest_indices(pw, w)
    np.testing.assert_array_equal(big, small[:, rows][:, :, cols])


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras' saver
def test_dfc_attention_with_dynamic_sizes(tmp_path: Path) -> None:
    """Any input size: the gate follows PyTorch's rule at run time, for odd and even maps."""
    doc = tiny(ghost={"attention": "dfc", "attention_from": 0})
    doc["input"]["shape"] = [None, None, 3]
    model = build_model(plan_of(doc))
    name = "blocks-0-0-ghost1-short_conv"
    gate = model.get_layer(layer_name(name, "gate")).output
    upsampled = model.get_layer(layer_name(name, "scale")).input[1]
    probe = keras.Model(model.input, [gate, upsampled])
    rng = np.random.default_rng(5)
    for h, w in ((30, 32), (34, 42)):  # maps of 15 x 16 and 17 x 21
        x = rng.normal(size=(1, h, w, 3)).astype("float32")
        small, big = (np.asarray(t) for t in probe(x, training=False))
        rows = nearest_indices(small.shape[1], big.shape[1])
        cols = nearest_indices(small.shape[2], big.shape[2])
        assert big.shape[1:3] == (h // 2, w // 2)
        np.testing.assert_array_equal(big, small[:, rows][:, :, cols])
    x = rng.normal(size=(2, 38, 30, 3)).astype("float32")
    model.save(tmp_path / "v2.keras")
    loaded = keras.saving.load_model(tmp_path / "v2.keras")
    np.testing.assert_array_equal(
        np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False))
    )


def test_reparameterised_branches_and_their_fused_form() -> None:
    plan = plan_of(tiny(ghost={"branches": 3}))
    model = build_model(plan)
    assert counts(model) == (plan.params, plan.buffers)
    for name in (
        "blocks-1-0-ghost1-primary_rpr_conv-2-conv",
        "blocks-1-0-ghost1-cheap_rpr_scale-bn1",
        "blocks-1-0-ghost1-cheap_rpr_skip",
        "blocks-1-0-dw_rpr_conv-0-conv-pad",
        "blocks-1-0-conv_dw-sum",
    ):
        model.get_layer(name)
    fused_plan = fuse_plan(plan)
    fused = build_model(fused_plan)
    assert counts(fused) == (fused_plan.params, fused_plan.buffers)
    assert fused.get_layer("blocks-1-0-conv_dw").use_bias


def test_first_weights_follow_keras_glorot_rule_drawn_on_the_host() -> None:
    """Kernels start from Keras' Glorot-uniform rule (drawn by NumPy: JAX would compile a kernel
    per shape), fixed by keras.utils.set_random_seed, and the config stays plain Keras."""
    plan = plan_of(tiny())
    keras.utils.set_random_seed(7)
    first = build_model(plan)
    keras.utils.set_random_seed(7)
    again = build_model(plan)
    keras.utils.set_random_seed(8)
    other = build_model(plan)
    kernels = [layer for layer in first.layers if isinstance(layer, keras.layers.Conv2D)]
    kernels += [layer for layer in first.layers if isinstance(layer, keras.layers.Dense)]
    assert len(kernels) > 10
    for layer in kernels:
        attribute = "depthwise" if isinstance(layer, keras.layers.DepthwiseConv2D) else "kernel"
        config = layer.get_config()[f"{attribute}_initializer"]
        assert config["class_name"] == "GlorotUniform" and config["config"]["seed"] is None
        weights = keras.ops.convert_to_numpy(getattr(layer, f"{attribute}").value)
        same = again.get_layer(layer.name).get_weights()[0]
        np.testing.assert_array_equal(weights, same)
        assert not np.array_equal(weights, other.get_layer(layer.name).get_weights()[0])
        shape = weights.shape
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fans = (shape[-2] + shape[-1]) * receptive / 2
        limit = np.sqrt(3.0 / max(1.0, fans))
        assert np.abs(weights).max() <= limit
        if weights.size >= 2000:  # a uniform draw of this size fills its range
            assert np.abs(weights).max() > 0.95 * limit
            assert abs(weights.std() - limit / np.sqrt(3)) < 0.05 * limit


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "multiplier"),
    [
        (3, 1, "same", 1),
        (3, 2, "valid", 1),
        (5, 2, "valid", 2),
        ((1, 5), 1, "same", 1),
        ((5, 1), 2, "same", 3),
    ],
)
def test_tap_by_tap_depthwise_is_the_standard_depthwise_conv(
    layout: str, kernel: Any, stride: int, padding: str, multiplier: int
) -> None:
    """JAX's tap-by-tap depthwise conv computes Keras' DepthwiseConv2D (elsewhere it is it)."""
    if layout == "channels_first" and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow has no channels-first depthwise conv on a CPU")
    rng = np.random.default_rng(3)
    settings = dict(kernel_size=kernel, strides=stride, padding=padding, data_format=layout)
    settings.update(depth_multiplier=multiplier, use_bias=True, activation="relu")
    standard = keras.layers.DepthwiseConv2D(**settings)
    shifted = TapDepthwiseConv2D(**settings)
    shape = (2, 11, 12, 6) if layout == "channels_last" else (2, 6, 11, 12)
    for layer in (standard, shifted):
        layer.build(shape)
    values = [rng.standard_normal(tuple(w.shape)).astype("float32") for w in standard.weights]
    standard.set_weights(values)
    shifted.set_weights(values)
    x = rng.standard_normal(shape).astype("float32")
    expected = keras.ops.convert_to_numpy(standard(x))
    got = keras.ops.convert_to_numpy(shifted(x))
    assert got.shape == expected.shape and expected.std() > 0.5
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert shifted.get_config() == {**standard.get_config(), "name": shifted.name}
