"""The `--calibration` argument of int8 export, read once, before any model is built.

`random:N` draws N standard-normal samples (a smoke run of the int8 pipeline, not a calibration
worth deploying), `DIR` names a folder of images or an image folder in the training layouts
(`calibration_images`: its train split, a bounded seeded draw). The converter calibrates one
sample at a time at about CALIBRATION_SECONDS_PER_MPIXEL seconds per million input pixels
(GhostNet 1.0x on two cores: 22 ms a sample at 96x96, 75 ms at 224x224), so a count is capped and
a long run announced before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


DEFAULT_SAMPLES = 200  # images drawn from a calibration folder; the converter's usual count


@dataclass(frozen=True)
class CalibrationImages:
    """The image files int8 calibration reads, chosen and checked before any model is built:
    `files` (at most the requested count, in folder order), drawn from `available` images."""

    source: str
    files: tuple[Path, ...]
    available: int
    labelled: bool  # the folder is an image folder of classes (DIR/train/<class>, DIR/<class>)


def calibration_images(
    folder: Path,
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    val_split: float | None = None,
) -> CalibrationImages:
    """The calibration images of a folder: its own image files (a flat folder of images), or
    the train split of an image folder in the training layouts (`ghostspec.data.pipeline.discover`:
    DIR/train/<class>/..., or DIR/<class>/... split by `val_split`). At most `samples` of them,
    chosen with `seed`; every chosen file is checked (an unusable one is an error: calibrating on
    fewer images than asked is not what was asked). Raises SpecError naming the folder."""
    from ghostspec.data import images
    from ghostspec.data.pipeline import discover

    source = str(folder)
    if not folder.is_dir():
        raise SpecError(
            [
                Diagnostic(
                    file=source,
                    message="calibration source is neither a folder nor random:N",
                    hint="pass a folder of images, or random:100 for a smoke run",
                )
            ]
        )
    suffixes = set(images.IMAGE_SUFFIXES)
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        message = f"cannot list the folder: {err.strerror}"
        raise SpecError([Diagnostic(file=source, message=message)]) from None
    own = [p for p in entries if p.suffix.lower() in suffixes and not p.name.startswith(".")]
    labelled = not own
    if own:
        files = own
    else:
        if not any(p.is_dir() and not p.name.startswith(".") for p in entries):
            raise SpecError(
                [
                    Diagnostic(
                        file=source,
                        message="no images (.jpg, .png, .bmp, .gif) in it, and no class folders",
                        hint="pass a folder of images, or an image folder DIR/train/<class>/...",
                    )
                ]
            )
        found = discover(folder, val_split=val_split, seed=seed)
        files = [s.path for s in found.splits["train"]]
    chosen = files
    if len(files) > samples:
        picked = np.random.default_rng(seed).choice(len(files), samples, replace=False)
        chosen = [files[i] for i in sorted(int(i) for i in picked)]
    _, problems = images.check_files(chosen)  # every unusable file named, before converting
    if problems:
        raise SpecError([Diagnostic(file=d.file, message=d.message, hint=d.hint) for d in problems])
    return CalibrationImages(source, tuple(chosen), len(files), labelled)
