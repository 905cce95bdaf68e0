"""TensorFlow is optional; what needs it says so in one line.

ghostspec builds, fuses, loads weights and reads and writes `.keras` files on every Keras
backend, so a JAX or PyTorch install needs no TensorFlow. A few things are TensorFlow's own: the
TFLite and SavedModel converters (and ONNX through tf2onnx), tf.distribute and the tf.data input
pipeline. Each calls `require_tensorflow` at its entry, so without TensorFlow the user gets one
line naming the extra to install (a SpecError: exit 2), not an ImportError from deep inside.
"""

from __future__ import annotations

from ghostspec.diagnostics import Diagnostic, SpecError

EXTRA = "pip install 'ghostspec[tensorflow]'"


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported (it is imported when it can: the caller needs it)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def require_tensorflow(what: str) -> None:
    """Raise SpecError, one line, unless TensorFlow can be imported. `what`: the feature, as
    the user named it (`TFLite export`, `the tf.data input pipeline`, ...)."""
    if not tensorflow_available():
        message = f"{what} needs TensorFlow, which is not installed: {EXTRA}"
        raise SpecError([Diagnostic(file="ghostspec", message=message)])
