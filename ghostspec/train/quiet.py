"""Importing TensorFlow without its start-up chatter.

TensorFlow's C++ runtime writes informational lines (oneDNN notes, "could not find cuda drivers",
"failed call to cuInit") straight to file descriptor 2 while it loads and first looks for
devices, before any logging setting applies. For a command a person watches, those lines are
noise: while TensorFlow loads, descriptor 2 goes to a temporary file, and afterwards only lines
that are not known start-up notes are passed on, so real errors still show.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

# The C++ runtime's informational and start-up lines (glog/absl format: I/W/E + date).
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} "
    r"|E\d{4} .*(cuInit|cuda|CUDA|TensorRT|cuDNN|cuFFT|cuBLAS)"
    r"|.*Unable to register cu(DNN|FFT|BLAS) factory)"
)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Capture descriptor 2 inside the block; pass on only the lines that are not noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedded interpreter)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line and not NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def import_tensorflow() -> Any:
    """TensorFlow, imported (and its devices listed) without start-up noise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    already = "tensorflow" in sys.modules
    with quiet_stderr() if not already else contextlib.nullcontext():
        import tensorflow as tf

        tf.config.list_logical_devices()  # device discovery prints its notes now, not later
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return tf
