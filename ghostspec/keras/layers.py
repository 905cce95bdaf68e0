"""The one custom layer, for a case standard layers cannot express.

Why it exists: GhostNetV2's attention gate is upsampled with PyTorch's legacy nearest rule,
src = min(floor(dst * in / out), in - 1). With static sizes the indices are constants and a plain
gather does it; with a dynamic input size (height or width null in the spec) they depend on the
run-time shape, which no Keras layer computes with this rule. The layer is registered as
serializable, so a dynamic-size GhostNetV2 `.keras` file loads once ghostspec is imported.
"""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "ghostspec"  # the prefix of every registered name ghostspec gives Keras


@keras.saving.register_keras_serializable(package=PACKAGE)
class LegacyNearestUpsample(keras.layers.Layer):
    """Resize `inputs[0]` to the spatial size of `inputs[1]` by PyTorch's legacy nearest rule.
    `data_format`: the tensors' layout; files written before it existed are channels-last."""

    def __init__(self, data_format: str = "channels_last", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be channels_last or channels_first: {data_format}")
        self.data_format = data_format

    @property
    def _spatial_axes(self) -> tuple[int, int]:
        return (2, 3) if self.data_format == "channels_first" else (1, 2)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        return {**config, "data_format": self.data_format}

    def call(self, inputs: list[Any]) -> Any:
        source, like = inputs
        ops = keras.ops
        for axis in self._spatial_axes:
            size_in = ops.shape(source)[axis]
            size_out = ops.shape(like)[axis]
            index = ops.arange(size_out, dtype="int32") * size_in // size_out
            index = ops.minimum(index, size_in - 1)
            source = ops.take(source, index, axis=axis)
        return source

    def compute_output_shape(self, input_shapes: list[Any]) -> tuple[Any, ...]:
        source, like = input_shapes
        shape = list(source)
        for axis in self._spatial_axes:
            shape[axis] = like[axis]
        return tuple(shape)


# The classes of the backend that Keras must know to load a model file, by registered name. The
# training room's optimizers and schedule register themselves with Keras when it is imported; the
# model loader takes those from Keras' registry (see modelfile), so the backend knows no training.
CUSTOM_OBJECTS: dict[str, type] = {
    keras.saving.get_registered_name(LegacyNearestUpsample): LegacyNearestUpsample,
}


def known_objects() -> dict[str, type]:
    """The backend's classes and every ghostspec class registered with Keras so far."""
    registered = {
        name: cls
        for name, cls in keras.saving.get_custom_objects().items()
        if name.startswith(f"{PACKAGE}>") and isinstance(cls, type)
    }
    return {**registered, **CUSTOM_OBJECTS}
