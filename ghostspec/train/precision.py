"""Mixed precision: build the training model under a Keras dtype policy, save it in float32.

Keras' dtype policy is process-wide, so it is set only for the duration of the build and put back
after: the model keeps the policy it was built with, and nothing else in the process changes.
Variables stay float32 under the mixed policies (Keras keeps variable and compute dtypes apart),
BatchNorm computes its statistics in float32, and the logits are cast to float32 before the loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

from ghostspec.diagnostics import Diagnostic, SpecError

Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]


def check_precision(precision: Precision, gpus: int, file: str = "recipe") -> None:
    """mixed_float16 needs a GPU: on a CPU TensorFlow runs float16 convolutions emulated, far
    slower than float32 and without the loss-scaling benefit, so refuse it with the options."""
    if precision == "mixed_float16" and gpus == 0:
        raise SpecError(
            [
                Diagnostic(
                    file=file,
                    path="precision",
                    message="mixed_float16 needs a GPU, and this machine has none "
                    "(TensorFlow's CPU kernels compute float16 slowly, in emulation)",
                    hint="use --hp precision=mixed_bfloat16 (bfloat16 runs on CPUs) or "
                    "--hp precision=float32",
                )
            ]
        )


@contextlib.contextmanager
def policy(precision: Precision) -> Iterator[None]:
    """Keras' global dtype policy set to `precision` inside the block only."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def float32_logits(model: Any) -> Any:
    """The model with its output cast to float32 (the loss and softmax need the range);
    the model itself when it already computes in float32."""
    import keras

    if model.outputs[0].dtype == "float32":
        return model
    logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(
        model.outputs[0]
    )
    return keras.Model(model.inputs, logits, name=model.name)
