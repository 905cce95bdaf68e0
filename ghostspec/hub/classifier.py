"""GhostNet as a keras-hub `ImageClassifier`: the spec's own head on a `GhostNetBackbone`.

keras-hub's generic classifier is pool, dropout, dense. GhostNet's head is pool, a hidden 1x1
conv with bias and activation (`conv_head`), flatten, dropout, the linear `classifier`, like
MobileNetV3's, which keras-hub gives its own classifier class for the same reason. Here the head
is the backend's builders (`ghostspec.keras.blocks.head` and `.classifier`) run on the plan of the
backbone's spec with `num_classes` classes, so its numbers, layer names and reference weights are
the spec's. The preprocessor follows keras-hub's convention: an `ImageConverter` that resizes to
the spec's input size and maps [0, 255] pixels to `(x / 255 - mean) / std` with the spec's mean
and std.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras_hub.layers import ImageConverter
from keras_hub.models import ImageClassifier, ImageClassifierPreprocessor, Task

from ghostspec.hub.backbone import PACKAGE, GhostNetBackbone, keras_defaults, load_spec
from ghostspec.keras import blocks
from ghostspec.keras.weights import reference_layer, to_keras
from ghostspec.plan import pipeline
from ghostspec.plan.ir import Classifier, Head, Plan


@keras.saving.register_keras_serializable(package=PACKAGE)
class GhostNetImageConverter(ImageConverter):
    """Resize and normalise images as the spec says (see `for_backbone`)."""

    backbone_cls = GhostNetBackbone

    @classmethod
    def for_backbone(cls, backbone: GhostNetBackbone, **kwargs: Any) -> GhostNetImageConverter:
        """The converter of a backbone's spec: its input size (no resizing for any size), and
        scale and offset that turn [0, 255] pixels into `(x / 255 - mean) / std`."""
        plan: Plan = backbone.plan
        h, w, _ = plan.input_shape
        size = None if h is None or w is None else (h, w)
        scale = [1.0 / (255.0 * s) for s in plan.std]
        offset = [-m / s for m, s in zip(plan.mean, plan.std, strict=True)]
        return cls(
            image_size=size,
            scale=scale,
            offset=offset,
            data_format=backbone.data_format,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class GhostNetImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """keras-hub's image classifier preprocessor with a `GhostNetImageConverter`."""

    backbone_cls = GhostNetBackbone
    image_converter_cls = GhostNetImageConverter

    @classmethod
    def for_backbone(cls, backbone: GhostNetBackbone) -> GhostNetImageClassifierPreprocessor:
        return cls(image_converter=GhostNetImageConverter.for_backbone(backbone))


def head_plan(backbone: GhostNetBackbone, num_classes: int, activation: str | None) -> Plan:
    """The plan of the backbone's spec as a classifier with `num_classes` outputs: its head and
    classifier nodes are what the task adds on the backbone."""
    overrides = [
        "head.features=null",
        "head.include_top=true",
        f"head.classes={int(num_classes)}",
        f"head.classifier_activation={'softmax' if activation == 'softmax' else 'linear'}",
    ]
    spec = load_spec(backbone.spec, overrides, data_format=backbone.data_format)
    if spec.head.pooling is None:
        spec = load_spec(backbone.spec, [*overrides, "head.pooling=avg"])
    return pipeline.plan(spec)


def head_nodes(plan: Plan) -> list[Head | Classifier]:
    return [node for node in plan.nodes if isinstance(node, Head | Classifier)]


@keras.saving.register_keras_serializable(package=PACKAGE)
class GhostNetImageClassifier(ImageClassifier):
    """A GhostNet classifier in keras-hub's form: `backbone` (a `GhostNetBackbone`), the spec's
    head with `num_classes` outputs, and an optional preprocessor.

    Args:
        backbone: a `GhostNetBackbone`.
        num_classes: the number of classes.
        preprocessor: None, or a `GhostNetImageClassifierPreprocessor`
            (`GhostNetImageClassifierPreprocessor.for_backbone(backbone)`).
        activation: None (logits, as the reference) or "softmax".
        head_dtype: the head's dtype policy; default: the backbone's.
    """

    backbone_cls = GhostNetBackbone
    preprocessor_cls = GhostNetImageClassifierPreprocessor

    def __init__(
        self,
        backbone: GhostNetBackbone,
        num_classes: int,
        preprocessor: Any = None,
        activation: str | None = None,
        head_dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        if activation not in (None, "linear", "softmax"):
            raise ValueError(f"activation must be None or 'softmax', not {activation!r}")
        head_dtype = head_dtype or backbone.dtype_policy
        plan = head_plan(backbone, num_classes, activation)

        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        inputs = self.backbone.input
        x = self.backbone(inputs)
        with keras_defaults(head_dtype, backbone.data_format):
            for node in head_nodes(plan):
                x = blocks.head(x, node) if isinstance(node, Head) else blocks.classifier(x, node)
        Task.__init__(self, inputs=inputs, outputs=x, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.activation = activation
        self.head_plan = plan

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = Task.get_config(self)  # ImageClassifier's pooling, dropout: none
        config.update({"num_classes": self.num_classes, "activation": self.activation})
        return config

    def load_head_weights(self, state: Mapping[str, np.ndarray]) -> None:
        """Assign the head's tensors (`conv_head`, `classifier`) of a reference state dict; the
        backbone loads the rest (`GhostNetBackbone(..., weights=)`)."""
        for node in head_nodes(self.head_plan):
            for layer in node.layers():
                target = reference_layer(self, layer.name)
                for tensor in layer.tensors():
                    kind = tensor.name.rsplit(".", 1)[1]
                    attribute, value = to_keras(layer, kind, np.asarray(state[tensor.name]))
                    variable = getattr(target, attribute)
                    variable.assign(value.astype(variable.dtype))
