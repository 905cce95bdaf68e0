"""Two custom layers, for what standard layers cannot express or run fast enough.

LegacyNearestUpsample: GhostNetV2's attention gate is upsampled with PyTorch's legacy nearest rule,
src = min(floor(dst * in / out), in - 1). With static sizes the indices are constants and a plain
gather does it; with a dynamic input size (height or width null in the spec) they depend on the
run-time shape, which no Keras layer computes with this rule. The layer is registered as
serializable, so a dynamic-size GhostNetV2 `.keras` file loads once ghostspec is imported.

DepthwiseConv2D (registered as ghostspec>DepthwiseConv2D): Keras' layer, which on JAX computes
the depthwise convolution as a sum of shifted, scaled copies of its input, one per kernel tap.
XLA's CPU grouped convolution runs GhostNet's depthwise convs about 19x slower than these fused
multiply-adds (a 3x3 over 32x56x56x72: 407 ms against 22 ms), and GhostNet is made of them. It
keeps Keras' class name because weight files are keyed by it (`depthwise_conv2d_7/vars`), so
`.weights.h5` files pass between models built on any backend; models built on TensorFlow and
PyTorch keep the standard layer.
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D that JAX computes tap by tap (see the module docstring); other backends,
    and dilated kernels, run the standard kernel."""

    def call(self, inputs: Any) -> Any:
        if keras.backend.backend() != "jax" or tuple(self.dilation_rate) != (1, 1):
            return super().call(inputs)
        ops = keras.ops
        last = self.data_format == "channels_last"
        axes = (1, 2) if last else (2, 3)
        channels = int(inputs.shape[3 if last else 1])
        sizes = [int(inputs.shape[a]) for a in axes]  # static while JAX traces
        kernel = ops.convert_to_tensor(self.kernel)  # (kh, kw, channels, multiplier)
        multiplier = self.depth_multiplier
        if multiplier > 1:  # output channel c * multiplier + k reads input channel c
            inputs = ops.repeat(inputs, multiplier, axis=axes[-1] + 1 if last else 1)
        kernel = ops.reshape(kernel, (*self.kernel_size, channels * multiplier))
        counts = []
        pads = [(0, 0)] * 4
        for n, (size, k, s) in enumerate(zip(sizes, self.kernel_size, self.strides, strict=True)):
            if self.padding == "same":  # Keras' rule: the odd pixel goes after
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                pads[axes[n]] = (total // 2, total - total // 2)
            else:
                out = (size - k) // s + 1
            counts.append(out)
        if any(p != (0, 0) for p in pads):
            inputs = ops.pad(inputs, pads)
        (kh, kw), (sh, sw), (oh, ow) = self.kernel_size, self.strides, counts
        outputs = None
        for i in range(kh):
            for j in range(kw):
                rows = slice(i, i + sh * (oh - 1) + 1, sh)
                cols = slice(j, j + sw * (ow - 1) + 1, sw)
                tap = kernel[i, j]
                if last:
                    term = inputs[:, rows, cols, :] * tap
                else:
                    term = inputs[:, :, rows, cols] * ops.reshape(tap, (-1, 1, 1))
                outputs = term if outputs is None else outputs + term
        if self.use_bias:
            shape = (1, 1, 1, -1) if last else (1, -1, 1, 1)
            outputs = outputs + ops.reshape(self.bias, shape)
        return outputs if self.activation is None else self.activation(outputs)


# The classes of the backend that Keras must know to load a model file, by registered name. The
# training room's optimizers and schedule register themselves with Keras when it is imported; the
# model loader takes those from Keras' registry (see modelfile), so the backend knows no training.
CUSTOM_OBJECTS: dict[str, type] = {
    keras.saving.get_registered_name(LegacyNearestUpsample): LegacyNearestUpsample,
    keras.saving.get_registered_name(DepthwiseConv2D): DepthwiseConv2D,
}


def known_objects() -> dict[str, type]:
    """The backend's classes and every ghostspec class registered with Keras so far."""
    registered = {
        name: cls
        for name, cls in keras.saving.get_custom_objects().items()
        if name.startswith(f"{PACKAGE}>") and isinstance(cls, type)
    }
    return {**registered, **CUSTOM_OBJECTS}
