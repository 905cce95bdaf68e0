"""keras.applications-style constructors: every registered name, every argument's meaning."""

from __future__ import annotations

import inspect
from pathlib import Path

import keras
import numpy as np
import pytest

import ghostspec
from ghostspec import models
from ghostspec.language.names import REGISTRY
from ghostspec.plan.ir import layer_name

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TOLERANCE = 1e-4
SMALL = (64, 64, 3)  # keeps the builds quick; ghostnet_050 then ends at 2x2x480


def trainable(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_one_constructor_per_registered_name_with_keras_argument_names() -> None:
    public = {n for n in models.__all__ if n != "create_model"}
    assert public == set(REGISTRY)
    expected = [
        "include_top",
        "weights",
        "input_shape",
        "pooling",
        "classes",
        "classifier_activation",
        "features",
        "taps",
    ]
    for name in REGISTRY:
        constructor = getattr(models, name)
        assert constructor.__name__ == name
        assert list(inspect.signature(constructor).parameters) == expected
        assert REGISTRY[name].description in (constructor.__doc__ or "")
    assert ghostspec.create_model is models.create_model


def test_default_is_the_registered_classifier() -> None:
    model = models.ghostnet_small_100()
    plan = ghostspec.plan("ghostnet_small_100")
    assert model.name == "ghostnet_small_100"
    assert tuple(model.input_shape) == (None, 224, 224, 3)
    assert tuple(model.output_shape) == (None, 1000)
    assert trainable(model) == plan.params
    assert model.get_layer("classifier").activation.__name__ == "linear"


@pytest.mark.parametrize(
    ("pooling", "shape"), [(None, (2, 2, 480)), ("avg", (480,)), ("max", (480,))]
)
def test_include_top_false_with_each_pooling(pooling: str | None, shape: tuple[int, ...]) -> None:
    model = models.ghostnet_050(include_top=False, pooling=pooling, input_shape=SMALL)
    assert tuple(model.output_shape) == (None, *shape)
    names = {layer.name for layer in model.layers}
    assert "classifier" not in names and "conv_head" not in names
    assert trainable(model) == ghostspec.plan("ghostnet_050", ["head.include_top=false"]).params


def test_pooling_computes_what_it_says() -> None:
    """The same weights, unpooled and pooled: "max" is the spatial max, "avg" the mean."""
    unpooled = models.ghostnet_050(False, input_shape=SMALL)
    x = np.random.default_rng(0).standard_normal((2, *SMALL)).astype(np.float32)
    features = np.asarray(unpooled(x, training=False))
    for pooling, reduce in (("max", np.max), ("avg", np.mean)):
        pooled = models.ghostnet_050(False, input_shape=SMALL, pooling=pooling)
        pooled.set_weights(unpooled.get_weights())
        np.testing.assert_allclose(
            np.asarray(pooled(x, training=False)), reduce(features, axis=(1, 2)), atol=1e-5
        )


def test_classes_and_softmax() -> None:
    model = ghostspec.create_model(
        "ghostnet_050", classes=7, classifier_activation="softmax", input_shape=SMALL
    )
    assert tuple(model.output_shape) == (None, 7)
    assert trainable(model) == ghostspec.plan("ghostnet_050", ["head.classes=7"]).params
    x = np.random.default_rng(1).standard_normal((3, *SMALL)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x, training=False)).sum(axis=1), 1.0, atol=1e-5)
    logits = ghostspec.create_model("ghostnet_050", classes=7, classifier_activation=None)
    assert logits.get_layer("classifier").activation.__name__ == "linear"


def test_input_shape_fixed_and_any_size() -> None:
    fixed = models.ghostnet_050(input_shape=(80, 96, 3))
    assert tuple(fixed.input_shape) == (None, 80, 96, 3)
    anysize = models.ghostnet_050(False, input_shape=(None, None, 3), pooling="avg")
    assert tuple(anysize.input_shape) == (None, None, None, 3)
    for size in (64, 97):
        x = np.zeros((1, size, size, 3), dtype=np.float32)
        assert np.asarray(anysize(x, training=False)).shape == (1, 480)
    gray = models.ghostnet_050(False, input_shape=(64, 64, 1))
    assert gray.get_layer("conv_stem").kernel.shape[2] == 1


@pytest.mark.parametrize(
    ("name", "fixture"),
    [("ghostnet_050", "ghostnet_050_c10_96"), ("ghostnetv3_050", "ghostnetv3_050_c10_97")],
)
def test_weights_from_a_reference_state_dict_give_timms_logits(name: str, fixture: str) -> None:
    with np.load(FIXTURES / f"{fixture}.npz") as data:
        x, expected = data["input"], data["output"]
    model = ghostspec.create_model(
        name,
        weights=FIXTURES / f"{fixture}.safetensors",
        classes=10,
        input_shape=x.shape[1:],
    )
    got = np.asarray(model(x, training=False))
    assert float(np.max(np.abs(got - expected))) < TOLERANCE


def test_a_classifier_checkpoint_loads_into_a_model_without_top() -> None:
    """As keras.applications' include_top=False: the head's tensors are skipped."""
    weights = FIXTURES / "ghostnet_050_c10_96.safetensors"
    full = models.ghostnet_050(weights=weights, classes=10, input_shape=SMALL)
    backbone = models.ghostnet_050(False, weights, input_shape=SMALL)
    x = np.random.default_rng(2).standard_normal((1, *SMALL)).astype(np.float32)
    inner = keras.Model(full.inputs[0], full.get_layer("blocks-9-0-act1").output)
    np.testing.assert_allclose(
        np.asarray(backbone(x, training=False)), np.asarray(inner(x, training=False)), atol=1e-5
    )


def test_features_return_one_map_per_level_from_the_plan() -> None:
    model = models.ghostnet_100(features=[2, 3, 4, 5], input_shape=SMALL)
    plan = ghostspec.plan("ghostnet_100", ["head.features=[2, 3, 4, 5]", "input.shape=[64, 64, 3]"])
    assert isinstance(model.outputs, list) and len(model.outputs) == 4
    assert [tuple(o.shape[1:]) for o in model.outputs] == [t.shape for t in plan.features]
    assert [t.channels for t in plan.features] == [24, 40, 112, 160]  # the last block per level
    timm = models.ghostnet_100(features=[2, 3, 4, 5], taps="timm", input_shape=SMALL)
    assert [o.shape[-1] for o in timm.outputs] == [24, 40, 80, 160]  # timm's stage ends


def test_a_classifier_checkpoint_loads_into_a_features_backbone() -> None:
    weights = FIXTURES / "ghostnet_050_c10_96.safetensors"
    full = models.ghostnet_050(weights=weights, classes=10, input_shape=SMALL)
    taps = ["blocks.4.0", "blocks.6.4"]
    backbone = models.ghostnet_050(weights=weights, features=taps, input_shape=SMALL)
    x = np.random.default_rng(3).standard_normal((1, *SMALL)).astype(np.float32)
    outputs = backbone(x, training=False)
    assert len(outputs) == 2
    for tap, got in zip(taps, outputs, strict=True):
        inner = keras.Model(full.inputs[0], full.get_layer(layer_name(tap, "add")).output)
        np.testing.assert_allclose(np.asarray(got), np.asarray(inner(x, training=False)), atol=1e-5)


@pytest.mark.parametrize(
    ("arguments", "argument", "message"),
    [
        ({"weights": "imagenet"}, "weights", "downloads nothing"),
        ({"pooling": "avg"}, "pooling", "include_top=False"),
        ({"pooling": "mean", "include_top": False}, "pooling", "not one of"),
        ({"include_top": False, "classes": 10}, "classes", "no classifier with include_top"),
        ({"features": [2], "classes": 10}, "classes", "no classifier with features"),
        ({"features": [2], "pooling": "avg"}, "pooling", "unpooled"),
        ({"include_top": False, "classifier_activation": "softmax"}, "classifier_activation", ""),
        ({"taps": "timm"}, "taps", "features= is not given"),
        ({"features": [2], "taps": "first"}, "taps", "not one of"),
        ({"classes": 0}, "classes", "positive integer"),
        ({"classes": True}, "classes", "positive integer"),
        ({"classifier_activation": "relu"}, "classifier_activation", "not one of"),
        ({"input_shape": (224, 224)}, "input_shape", "(height, width, channels)"),
        ({"include_top": "no"}, "include_top", "True or False"),
    ],
)
def test_bad_arguments_name_the_argument(
    arguments: dict[str, object], argument: str, message: str
) -> None:
    with pytest.raises(ghostspec.SpecError) as caught:
        ghostspec.create_model("ghostnet_050", **arguments)  # type: ignore[arg-type]
    (problem,) = caught.value.diagnostics
    assert problem.file == argument and message in problem.message


def test_values_the_spec_refuses_are_reported_against_the_spec(tmp_path: Path) -> None:
    with pytest.raises(ghostspec.SpecError) as caught:
        models.ghostnet_050(input_shape=(0, 64, 3))
    (problem,) = caught.value.diagnostics
    assert problem.path == "input.shape[0]" and "input.shape=[0, 64, 3]" in str(problem.override)


def test_create_model_takes_names_and_paths() -> None:
    with pytest.raises(ghostspec.SpecError) as caught:
        ghostspec.create_model("ghostnet_10")
    assert "did you mean ghostnet_100" in str(caught.value.diagnostics[0].hint)
    with pytest.raises(TypeError):
        ghostspec.create_model("ghostnet_050", input_tensor=None)  # type: ignore[call-arg]
    model = ghostspec.create_model(ROOT / "specs" / "small.yaml", False, input_shape=SMALL)
    assert model.name == "ghostnet_small"
