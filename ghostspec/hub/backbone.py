"""GhostNet as a keras-hub `FeaturePyramidBackbone`, so keras-hub's detectors and segmenters can
stand on it.

The network is the compiler's: a spec (a file, a registered name, or the resolved text a config
carries) is lowered to a Plan with `head.features` taps and built by the backend's own builder
(`ghostspec.keras.model.build_model`); nothing here knows a block. What keras-hub adds is its
conventions: `image_shape` and `data_format` arguments, a `dtype` policy for every layer, a
config that rebuilds the model, and `pyramid_outputs` P1..P5 (the taps of the levels; taps
`last` by default, so P5 of GhostNet 1.0x is blocks.8.3). The model's output is the trunk's last
map (the last 1x1 conv, `blocks.N.0`), what a classifier head pools.

The config carries the resolved spec as text (every default written out, as a run's spec.yaml),
so a saved model or preset rebuilds without the file it came from; that text goes back through
the one spec loader, like any document.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras_hub.models import FeaturePyramidBackbone

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.keras.model import build_model
from ghostspec.keras.weights import load_weights
from ghostspec.language.fmt import resolved_spec_text
from ghostspec.language.spec import Spec
from ghostspec.plan import pipeline
from ghostspec.plan.features import resolve
from ghostspec.plan.ir import Plan

PACKAGE = "ghostspec"  # the registered-name prefix, as ghostspec.keras.layers registers with
CONFIG_LABEL = "<GhostNetBackbone config>"  # how diagnostics name a spec read from a config
NOTE = "resolved by ghostspec.hub: every default written out"
PYRAMID_LEVELS = (1, 2, 3, 4, 5)  # P1..P5: strides 2 to 32


def _error(message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file="GhostNetBackbone", message=message, hint=hint)])


def _channels_last(shape: Sequence[int | None], data_format: str) -> list[int | None]:
    """`image_shape` as the spec writes it (height, width, channels)."""
    if len(shape) != 3:
        raise _error(f"image_shape must have 3 entries, not {tuple(shape)!r}")
    values = list(shape)
    return values[1:] + values[:1] if data_format == "channels_first" else values


def _image_shape(spec: Spec, data_format: str) -> tuple[int | None, ...]:
    h, w, c = spec.input.shape
    return (c, h, w) if data_format == "channels_first" else (h, w, c)


def load_spec(
    spec: str | Path,
    overrides: Sequence[str] = (),
    image_shape: Sequence[int | None] | None = None,
    data_format: str = "channels_last",
) -> Spec:
    """The Spec of a file, a registered name or a resolved spec text (a config's), with the
    overrides and `image_shape` applied. Raises SpecError."""
    extra = list(overrides)
    if image_shape is not None:
        extra.append(f"input.shape={json.dumps(_channels_last(image_shape, data_format))}")
    if isinstance(spec, str) and "\n" in spec:  # a document, never a path
        return pipeline.load(CONFIG_LABEL, extra, text=spec)
    return pipeline.load(spec, extra)


def backbone_plan(spec: Spec) -> Plan:
    """The plan of `spec` as a pyramid: its `head.features` (by default every level from 1 to
    5 the network has) plus the trunk's last map, the last 1x1 conv `blocks.N` (output last)."""
    trunk = f"blocks.{len(spec.stages)}"
    entries: list[int | str] = list(spec.head.features or ())
    if not entries:
        nodes = pipeline.plan(spec).nodes
        taps, _, _ = resolve(list(PYRAMID_LEVELS), spec.head.taps, nodes)
        entries = [tap.level for tap in taps]
    if trunk not in entries and f"{trunk}.0" not in entries:
        entries.append(trunk)
    elif entries[-1] not in (trunk, f"{trunk}.0"):
        raise _error(
            f"head.features lists {trunk}, the trunk's last map, before other maps",
            f"list {trunk} last, or leave it out: the backbone adds it",
        )
    head = spec.head.model_copy(update={"features": entries, "include_top": False})
    return pipeline.plan(spec.model_copy(update={"head": head}))


def pyramid_levels(plan: Plan) -> dict[str, int]:
    """`P<level>` -> the index of the plan's output that stands for it (level entries only; the
    trunk's map is the model's output, not a pyramid level)."""
    levels: dict[str, int] = {}
    for index, tap in enumerate(plan.features[:-1]):
        key = f"P{tap.level}"
        if key in levels:
            raise _error(
                f"head.features taps two maps at level {tap.level} (stride {tap.reduction}); a "
                "pyramid has one map per level",
                "list each level once",
            )
        levels[key] = index
    return levels


@contextlib.contextmanager
def keras_defaults(dtype: Any, data_format: str) -> Iterator[None]:
    """Keras' default dtype policy and image data format for the layers built inside: the
    backend's builder creates its layers with Keras' defaults, as keras-hub's own backbones pass
    `dtype` and `data_format` to every layer."""
    policy, layout = keras.config.dtype_policy(), keras.config.image_data_format()
    try:
        if dtype is not None:
            keras.config.set_dtype_policy(keras.dtype_policies.get(dtype))
        keras.config.set_image_data_format(data_format)
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_image_data_format(layout)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GhostNetBackbone(FeaturePyramidBackbone):
    """A GhostNet (any ghostspec spec) as a keras-hub backbone with a P1..P5 feature pyramid.

    Args:
        spec: a spec file, a registered name (`ghostnet_100`) or a resolved spec text.
        overrides: `--set`-style overrides (`["width=0.5"]`), applied to the spec.
        image_shape: the input shape in `data_format`'s order; None: the spec's.
        data_format: "channels_last" or "channels_first"; None: Keras' setting.
        weights: a reference state dict (timm / Huawei layout; a file or a mapping) to load;
            a classifier's checkpoint loads with its head skipped.
        dtype: the dtype policy of every layer (e.g. "mixed_float16").
    """

    def __init__(
        self,
        spec: str | Path = "ghostnet_100",
        overrides: Sequence[str] = (),
        image_shape: Sequence[int | None] | None = None,
        data_format: str | None = None,
        weights: str | Path | Mapping[str, np.ndarray] | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        from keras_hub.src.utils.keras_utils import standardize_data_format

        data_format = standardize_data_format(data_format)
        resolved = load_spec(spec, overrides, image_shape, data_format)
        plan = backbone_plan(resolved)
        levels = pyramid_levels(plan)
        with keras_defaults(dtype, data_format):
            graph = build_model(plan, data_format)
        outputs = list(graph.outputs)
        super().__init__(inputs=graph.inputs[0], outputs=outputs[-1], dtype=dtype, **kwargs)
        if weights is not None:
            load_weights(self, plan, weights)

        # === Config ===
        self.spec = resolved_spec_text(resolved, NOTE)
        self.image_shape = _image_shape(resolved, data_format)
        self.data_format = data_format
        self.plan = plan
        self.pyramid_outputs = {key: outputs[index] for key, index in levels.items()}

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            {
                "spec": self.spec,
                "image_shape": self.image_shape,
                "data_format": self.data_format,
            }
        )
        return config
