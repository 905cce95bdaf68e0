"""A trained model becomes a keras-hub preset folder.

A run folder (its best.keras) or a `.keras` file written by ghostspec carries the resolved spec,
the class names and the normalisation in its metadata. That is all a keras-hub classifier needs:
the spec makes the `GhostNetBackbone` and the head, the model's weights go over through the
reference-layout state dict (the names both sides share), the metadata's mean and std make the
preprocessor, and keras-hub's own `save_to_preset` writes the folder. The classifier's outputs
are compared with the saved model's before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from ghostspec.deploy.source import RUN_HINT, saved_source
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import atomic_directory
from ghostspec.hub.backbone import GhostNetBackbone
from ghostspec.hub.classifier import (
    GhostNetImageClassifier,
    GhostNetImageClassifierPreprocessor,
    GhostNetImageConverter,
)
from ghostspec.keras.modelfile import METADATA_MEMBER, load_model_file
from ghostspec.keras.weights import export_state_dict

TOLERANCE = 1e-4  # the classifier against the saved model, on random images


def _error(file: str | Path, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


def classifier_from_model_file(source: str | Path) -> GhostNetImageClassifier:
    """The keras-hub classifier of a run folder or a `.keras` file written by ghostspec, with its
    weights and preprocessor, checked against the saved model. Raises SpecError."""
    saved = saved_source(str(source))
    if saved is None:
        raise _error(source, "is neither a run folder nor a .keras file", RUN_HINT)
    loaded = load_model_file(saved.path, compile=False)
    meta = loaded.metadata
    if meta is None or not meta.spec:
        raise _error(
            saved.path,
            f"its {METADATA_MEMBER} carries no spec, and a keras-hub backbone is built from one",
            "use a .keras file written by `ghostspec build` or `ghostspec train`",
        )
    state = export_state_dict(loaded.model)
    overrides = []
    if meta.mean is not None and meta.std is not None:
        overrides = [f"input.mean={list(meta.mean)}", f"input.std={list(meta.std)}"]
    backbone = GhostNetBackbone(meta.spec, overrides, weights=state)
    num_classes = int(loaded.model.output.shape[-1])
    preprocessor = GhostNetImageClassifierPreprocessor(
        image_converter=GhostNetImageConverter.for_backbone(backbone)
    )
    classifier = GhostNetImageClassifier(backbone, num_classes, preprocessor=preprocessor)
    classifier.load_head_weights(state)
    _check_parity(loaded.model, classifier, saved.path)
    return classifier


def _check_parity(reference: object, classifier: GhostNetImageClassifier, path: Path) -> None:
    h, w, c = classifier.backbone.plan.input_shape
    images = np.random.default_rng(0).normal(size=(2, h or 64, w or 64, c)).astype("float32")
    want = keras.ops.convert_to_numpy(reference(images, training=False))  # type: ignore[operator]
    if classifier.backbone.data_format == "channels_first":  # the saved model's is channels-last
        images = images.transpose(0, 3, 1, 2)
    got = keras.ops.convert_to_numpy(classifier(images, training=False))
    worst = float(np.max(np.abs(want - got)))
    if not worst <= TOLERANCE:
        raise RuntimeError(f"{path}: the keras-hub classifier differs from the model by {worst}")


def export_preset(source: str | Path, output: str | Path) -> Path:
    """Write the keras-hub preset folder of a run folder or a `.keras` file to `output` (a new
    or empty folder): `keras_hub.models.Backbone.from_preset(output)` and
    `keras_hub.models.ImageClassifier.from_preset(output)` load it. Returns `output`."""
    with atomic_directory(output, inputs=[source]) as folder:
        classifier = classifier_from_model_file(source)
        classifier.save_to_preset(str(folder))
    return Path(output)
