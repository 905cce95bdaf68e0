"""A quiet terminal for the commands that load TensorFlow.

TensorFlow's C++ runtime writes start-up lines straight to file descriptor 2 (the absl preamble,
"Could not find cuda drivers", "failed call to cuInit", oneDNN and CPU-feature notes, TFLite's
XNNPACK line), some of them before TF_CPP_MIN_LOG_LEVEL takes effect. To a user they read as
failures. While a command runs, `quiet_tensorflow` sends descriptor 2 through a small filter
process that drops exactly those lines and passes every other line on as it arrives, so a genuine
TensorFlow error still reaches the user, even when TensorFlow aborts the process (the filter
outlives it and drains the pipe). Python's own sys.stderr keeps writing to the terminal directly,
and Python warnings and log records from TensorFlow and Keras are silenced at the same time.

`--verbose` (or GHOSTSPEC_VERBOSE=1) turns all of this off. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator

VERBOSE_ENV = "GHOSTSPEC_VERBOSE"
LIBRARY_LOGGERS = ("tensorflow", "absl", "keras", "tf2onnx", "h5py")
LIBRARY_MODULES = r"(tensorflow|tf_keras|keras|tf2onnx|absl|h5py|onnx|google\.protobuf)(\.|$)"

# Lines TensorFlow prints on every start on a machine without a GPU, and the TFLite converter's
# routine notes; nothing else is dropped.
# absl INFO/WARNING lines are dropped whole (TF_CPP_MIN_LOG_LEVEL=2 hides them once absl is set
# up; these come before); of the ERROR lines only the known CUDA probes are.
NOISE = (
    rb"^[IW]\d{4} \S+\s+\d+ \S+:\d+\] "
    rb"|^WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|^To enable the following instructions: .* rebuild TensorFlow"
    rb"|^INFO: Created TensorFlow Lite .*delegate"
    rb"|^fully_quantize: \d+, inference_type: \d+, "  # the int8 quantizer's settings
    rb"|^E\d{4} \S+\s+\d+ \S+:\d+\] (?:failed call to cuInit|Unable to register cu\w+ factory"
    rb"|computation placer already registered|Could not find cuda drivers)"
)

# The filter: its own interpreter, so a crash of the command cannot lose what TensorFlow wrote
# last. It ignores Ctrl-C (the command handles that) and ends when the pipe closes.
FILTER_PROGRAM = f"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile({NOISE!r})
out = sys.stdout.buffer
try:
    for line in sys.stdin.buffer:
        if not noise.search(line):
            out.write(line)
            out.flush()
except (BrokenPipeError, OSError):
    pass
"""


def verbose_requested(flag: bool = False) -> bool:
    """--verbose, or GHOSTSPEC_VERBOSE set to anything but empty, 0, false or no."""
    value = os.environ.get(VERBOSE_ENV, "").strip().lower()
    return flag or value not in ("", "0", "false", "no", "off")


def is_noise(line: bytes) -> bool:
    """Whether the filter drops this line of descriptor 2."""
    return re.search(NOISE, line) is not None


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """For the duration: TensorFlow's start-up lines filtered out of descriptor 2, its C++ log
    level at errors (unless the user set TF_CPP_MIN_LOG_LEVEL), and Python warnings and log
    records from TensorFlow and Keras silenced. Errors still pass."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _filtered_descriptor_2():
            warnings.filterwarnings("ignore", module=LIBRARY_MODULES)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _filtered_descriptor_2() -> Iterator[None]:
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield  # no usable descriptor 2: nothing to filter
        return
    try:
        read_end, write_end = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", FILTER_PROGRAM],
            stdin=read_end,
            stdout=terminal,
            stderr=terminal,
            close_fds=True,
        )
    except OSError:
        os.close(terminal)
        yield  # the filter cannot start: better noisy than broken
        return
    os.close(read_end)
    python_stderr = sys.stderr
    direct = _stream_on(terminal, python_stderr)
    os.dup2(write_end, 2)
    os.close(write_end)
    if direct is not None:
        sys.stderr = direct
    try:
        yield
    finally:
        if direct is not None:
            with contextlib.suppress(Exception):
                direct.close()  # flushes; leaves the descriptor to the close below
        sys.stderr = python_stderr
        os.dup2(terminal, 2)  # closes the pipe's last write end here: the filter drains, ends
        os.close(terminal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


def _stream_on(fd: int, like: object) -> io.TextIOWrapper | None:
    """A text stream on `fd` with the encoding of `like`, when `like` is the stream of
    descriptor 2 (under test harnesses sys.stderr is something else: leave it be)."""
    try:
        if like.fileno() != 2:  # type: ignore[attr-defined]
            return None
    except (AttributeError, OSError, ValueError):
        return None
    return open(
        fd,
        "w",
        encoding=getattr(like, "encoding", None) or "utf-8",
        errors=getattr(like, "errors", None) or "backslashreplace",
        buffering=1,
        closefd=False,
    )
