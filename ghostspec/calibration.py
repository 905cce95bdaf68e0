"""The `--calibration` argument of int8 export, read once, before any model is built.

`random:N` draws N standard-normal samples (a smoke run of the int8 pipeline, not a calibration
worth deploying), `DIR` names a folder of images. The converter calibrates one sample at a time
at about CALIBRATION_SECONDS_PER_MPIXEL seconds per million input pixels (GhostNet 1.0x on two
cores: 22 ms a sample at 96x96, 75 ms at 224x224), so a count is capped and a long run announced
before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ghostspec.diagnostics import Diagnostic, SpecError

RANDOM_PREFIX = "random:"
RANDOM_LIMIT = 10_000
DEFAULT_SOURCE = "random:100"
CALIBRATION_SECONDS_PER_MPIXEL = 1.5
ANNOUNCE_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class Calibration:
    """Either `random` samples or the images in `folder`."""

    text: str
    random: int | None = None
    folder: Path | None = None


def parse_calibration(text: str) -> Calibration:
    """`random:N` (1 <= N <= RANDOM_LIMIT, ASCII digits only) or a folder path. Raises SpecError
    naming `--calibration`; whether the folder exists and holds images is checked when it is read.
    """
    if not text.startswith(RANDOM_PREFIX):
        return Calibration(text, folder=Path(text))
    count = text[len(RANDOM_PREFIX) :]
    # str.isdigit() accepts superscripts and other digits that int() refuses: ASCII only
    if not (count.isascii() and count.isdigit()) or int(count) < 1:
        raise _refuse(
            f"{text!r}: N must be a positive whole number written with the digits 0-9",
            "for example random:100",
        )
    n = int(count)
    if n > RANDOM_LIMIT:
        raise _refuse(
            f"{text!r}: at most {RANDOM_LIMIT:,} random samples (random data only exercises the "
            "int8 pipeline; more samples do not make it calibrate better)",
            "use random:100, or a folder of real images for a calibration worth deploying",
        )
    return Calibration(text, random=n)


def calibration_seconds(samples: int, size: tuple[int, int]) -> float:
    """About how long the converter takes to calibrate on `samples` inputs of `size` (H, W)."""
    return samples * size[0] * size[1] / 1e6 * CALIBRATION_SECONDS_PER_MPIXEL


def calibration_notice(samples: int, size: tuple[int, int]) -> str | None:
    """A line announcing a long calibration up front, or None when it is short."""
    seconds = calibration_seconds(samples, size)
    if seconds < ANNOUNCE_AFTER_SECONDS:
        return None
    minutes = seconds / 60
    took = f"{minutes:.0f} minutes" if minutes >= 2 else f"{seconds:.0f} seconds"
    return (
        f"ghostspec: int8 calibration on {samples:,} samples at {size[0]}x{size[1]} takes about "
        f"{took}; a smaller random:N or --input-size is faster"
    )


def _refuse(message: str, hint: str) -> SpecError:
    return SpecError([Diagnostic(file="--calibration", message=message, hint=hint)])
