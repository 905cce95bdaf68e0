"""keras-hub tasks on a ghostspec backbone, on the backend KERAS_BACKEND names (run it once per
backend, as tests/test_hub_backbone.py says): RetinaNet and DeepLabV3 train a few steps on shapes
the test draws (boxes and masks) with the loss falling, and predict; the classifier and the
preset folder a trained model becomes load back with equal outputs; reference weights load; and
without keras-hub, one line names the extra.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402
from test_hub_backbone import TINY  # noqa: E402

import ghostspec  # noqa: E402
from ghostspec import cli  # noqa: E402
from ghostspec.diagnostics import SpecError  # noqa: E402
from ghostspec.hub import GhostNetBackbone, GhostNetImageClassifier, export_preset  # noqa: E402
from ghostspec.keras.modelfile import ModelMetadata, save_model_file  # noqa: E402
from ghostspec.keras.weights import export_state_dict  # noqa: E402
from ghostspec.language.fmt import resolved_spec_text  # noqa: E402

pytestmark = pytest.mark.backend_neutral  # conftest: every backend runs these

FIXTURES = Path(__file__).parent / "fixtures"
SIZE = 64
EPOCHS = 4


def numpy(x: object) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))  # torch tensors that require grad too


def shapes(count: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images with one filled rectangle each, in the red (class 0) or green (class 1) channel:
    the images, their boxes (yxyx, pixels), labels and masks (0 background, 1 + class)."""
    rng = np.random.default_rng(0)
    images = np.zeros((count, SIZE, SIZE, 3), "float32")
    boxes = np.zeros((count, 1, 4), "float32")
    labels = np.zeros((count, 1), "int32")
    masks = np.zeros((count, SIZE, SIZE, 1), "int32")
    for i in range(count):
        y, x = rng.integers(4, SIZE // 2, size=2)
        h, w = rng.integers(16, SIZE // 2, size=2)
        images[i, y : y + h, x : x + w, i % 2] = 1.0
        boxes[i, 0] = (y, x, y + h, x + w)
        labels[i, 0] = i % 2
        masks[i, y : y + h, x : x + w, 0] = 1 + i % 2
    return images, boxes, labels, masks


def losses(model: keras.Model, x: object, y: object) -> list[float]:
    with warnings.catch_warnings():  # taps above P5 leave the trunk's last conv without gradients
        warnings.simplefilter("ignore")
        history = model.fit(x, y, epochs=EPOCHS, batch_size=4, verbose=0)
    return [float(v) for v in history.history["loss"]]


def test_retinanet_on_a_ghostnet_backbone_learns_boxes() -> None:
    keras.utils.set_random_seed(0)
    images, boxes, labels, _ = shapes()
    encoder = GhostNetBackbone(TINY, image_shape=(SIZE, SIZE, 3))
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=5, use_p5=False, image_shape=(SIZE, SIZE, 3)
    )
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=2, bounding_box_format="yxyx", pre_logits_num_conv_layers=1
    )
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    curve = losses(detector, images, {"boxes": boxes, "labels": labels})
    print(f"{keras.backend.backend()} RetinaNet loss per epoch: {curve}")
    assert curve[-1] < 0.5 * curve[0]
    found = detector.predict(images[:2], verbose=0)
    assert np.asarray(found["boxes"]).shape == (2, 100, 4)


def test_deeplabv3_on_a_ghostnet_backbone_learns_masks() -> None:
    keras.utils.set_random_seed(0)
    images, _, _, masks = shapes()
    encoder = GhostNetBackbone(TINY, image_shape=(SIZE, SIZE, 3))
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder,
        spatial_pyramid_pooling_key="P4",
        upsampling_size=2,
        dilation_rates=[1, 2],
        low_level_feature_key="P3",
        image_shape=(SIZE, SIZE, 3),
    )
    segmenter = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)
    segmenter.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    curve = losses(segmenter, images, masks)
    print(f"{keras.backend.backend()} DeepLabV3 loss per epoch: {curve}")
    assert curve[-1] < 0.5 * curve[0]
    assert np.asarray(segmenter.predict(images[:2], verbose=0)).shape == (2, SIZE, SIZE, 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, keras.Model]:
    """A .keras file as ghostspec's training writes it (metadata with the resolved spec),
    with weights that are not the initial ones, inside a folder shaped like a run."""
    keras.utils.set_random_seed(1)
    spec = ghostspec.load("tiny.yaml", ["head.classes=3"], text=TINY)
    model = ghostspec.build(spec)
    for variable in model.weights:
        noise = np.random.default_rng(len(variable.path)).normal(0, 0.05, variable.shape)
        variable.assign(np.asarray(variable.numpy()) + noise.astype(variable.dtype))
    run = tmp_path_factory.mktemp("run")
    meta = ModelMetadata(spec=resolved_spec_text(spec, "test"), classes=("a", "b", "c"))
    save_model_file(model, run / "best.keras", meta)
    return run, model


def test_a_trained_model_becomes_a_preset_keras_hub_loads(
    trained: tuple[Path, keras.Model], tmp_path: Path
) -> None:
    run, model = trained
    preset = export_preset(run, tmp_path / "preset")
    assert (preset / "config.json").is_file() and (preset / "preprocessor.json").is_file()

    images = np.random.default_rng(2).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    classifier = keras_hub.models.ImageClassifier.from_preset(str(preset))
    assert isinstance(classifier, GhostNetImageClassifier)
    np.testing.assert_allclose(numpy(classifier(images)), numpy(model(images)), atol=1e-5)

    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    assert isinstance(backbone, GhostNetBackbone)
    # ghostspec's own backbone path, with the same weights, ending at the trunk's last map
    trunk = ghostspec.build(
        ghostspec.load("tiny.yaml", ["head.features=['blocks.5']"], text=TINY),
        weights=export_state_dict(model),
    )
    np.testing.assert_allclose(numpy(backbone(images)), numpy(trunk(images)), atol=1e-5)

    # keras-hub's preprocessing: raw [0, 255] pixels of any size, resized and normalised
    raw = np.random.default_rng(3).integers(0, 256, size=(2, 80, 96, 3)).astype("float32")
    assert classifier.predict(raw, verbose=0).shape == (2, 3)


def test_export_verb_writes_a_preset(trained: tuple[Path, keras.Model], tmp_path: Path) -> None:
    run, _ = trained
    out = tmp_path / "cli_preset"
    assert cli.run(["export", str(run), "--to", "keras-hub", "-o", str(out)]) == 0
    assert (out / "task.json").is_file()
    assert cli.run(["export", "ghostnet_050", "--to", "keras-hub", "-o", str(out)]) == 2


def test_config_carries_the_resolved_spec(tmp_path: Path) -> None:
    spec_file = tmp_path / "mine.yaml"
    spec_file.write_text(TINY)
    backbone = GhostNetBackbone(spec_file, ["width=0.25"], image_shape=(SIZE, SIZE, 3))
    config = backbone.get_config()
    spec_file.unlink()  # the config rebuilds the network without the file
    again = GhostNetBackbone.from_config(config)
    assert again.get_config() == config
    assert again.count_params() == backbone.count_params()
    assert "width: 0.25" in config["spec"]


def test_reference_weights_load_into_the_backbone() -> None:
    weights = FIXTURES / "ghostnet_050_c10_96.safetensors"
    backbone = GhostNetBackbone(
        "ghostnet_050", ["head.classes=10"], image_shape=(96, 96, 3), weights=weights
    )
    reference = ghostspec.build(
        "ghostnet_050",
        ["head.features=[1, 2, 3, 4, 5]", "input.shape=[96, 96, 3]"],
        weights=weights,
    )
    images = np.random.default_rng(4).normal(size=(1, 96, 96, 3)).astype("float32")
    pyramid = keras.Model(backbone.inputs, backbone.pyramid_outputs)(images)
    for level, want in zip(range(1, 6), reference(images), strict=True):
        np.testing.assert_allclose(numpy(pyramid[f"P{level}"]), numpy(want), atol=1e-5)


def test_without_keras_hub_one_line_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, trained: tuple[Path, keras.Model], tmp_path: Path
) -> None:
    import importlib.util

    import ghostspec.hub

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "keras_hub" else real(name)
    )
    with pytest.raises(SpecError, match=r"ghostspec\[hub\]"):
        ghostspec.hub.__getattr__("GhostNetBackbone")
    run, _ = trained
    out = str(tmp_path / "p")
    assert cli.run(["export", str(run), "--to", "keras-hub", "-o", out]) == 2
    assert not os.path.exists(out)
