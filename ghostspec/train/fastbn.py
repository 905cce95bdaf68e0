"""BatchNorm in training mode as TensorFlow's fused kernel: the same function, faster.

Keras 3's BatchNormalization computes the batch statistics and the normalisation from separate
ops (moments, then x * scale + offset), and autodiff differentiates each of them: on this
project's 2-core machine that is about a quarter of a GhostNet training step. TensorFlow's
FusedBatchNormV3 does the forward pass in one op and the backward pass in one more (oneDNN on a
CPU, cuDNN on a GPU). `fuse_batch_norm_for_training` gives the training model's BatchNorm layers
that call for `training=True`; everything else (inference, the variables, the layer's class and
config, so every saved file) stays Keras' own.

The function is Keras': y = gamma * (x - mean) / sqrt(var + epsilon) + beta with the biased
batch variance, and moving = momentum * moving + (1 - momentum) * batch statistic with the biased
variance too (the fused op reports the unbiased one, which is converted back). It agrees with
Keras' ops within float32 rounding (tests/test_train.py checks outputs, gradients and statistics).
The raw op is called with the layer's own epsilon (TensorFlow's Python wrapper would raise it to
1.001e-5); layers with a smaller epsilon, a mask, or input that is not 4-D keep Keras' ops.
The speed-up is TensorFlow's kernel, so it applies on the TensorFlow backend only.
"""

from __future__ import annotations

import types
from typing import Any

import keras

MIN_EPSILON = 1e-5  # cuDNN's smallest; the CPU kernel has no limit


def _eligible(layer: Any) -> bool:
    return (
        type(layer) is keras.layers.BatchNormalization
        and layer.axis in (-1, 3)
        and layer.center
        and layer.scale
        and not getattr(layer, "synchronized", False)
        and not getattr(layer, "renorm", False)
        and layer.epsilon >= MIN_EPSILON
    )


def _fused_call(self: Any, inputs: Any, training: Any = None, mask: Any = None) -> Any:
    import tensorflow as tf

    keras_call = keras.layers.BatchNormalization.call
    if not training or not self.trainable or mask is not None or len(inputs.shape) != 4:
        return keras_call(self, inputs, training=training, mask=mask)
    x = tf.cast(inputs, tf.float32)
    empty = tf.constant([], tf.float32)
    y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=tf.cast(self.gamma, tf.float32),
        offset=tf.cast(self.beta, tf.float32),
        mean=empty,
        variance=empty,
        epsilon=self.epsilon,
        exponential_avg_factor=1.0,
        data_format="NHWC",
        is_training=True,
    )
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    variance = variance * tf.math.divide_no_nan(count - 1.0, count)  # unbiased -> biased
    momentum = self.momentum
    self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
    self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(y, self.compute_dtype)


def fuse_batch_norm_for_training(model: keras.Model) -> int:
    """Give every eligible BatchNorm layer of `model` the fused training call; how many.

    TensorFlow only: on JAX and PyTorch the layers keep Keras' ops, which those backends
    compile (XLA) or run on their own kernels; nothing is changed and 0 is returned."""
    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in model.layers:
        if _eligible(layer):
            layer.call = types.MethodType(_fused_call, layer)
            count += 1
    return count
