"""Which images a split holds: the validation split a trained model records, drawn again for
evaluation, and the classes a split leaves out.

A run validated on a split drawn from its image folder (a plain `DIR/<class>/*` folder, or
`train/` without `val/`) records the held-out fraction, the seed and a digest of the file list in
its model files (`keras.modelfile.ValidationSplit`). Evaluating that model on the same folder
draws the same split again, so it is scored on exactly the images it was validated on and on
none it trained on; the digest says whether the folder still gives those images.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ghostspec.data.pipeline import DEFAULT_VAL_SPLIT, ImageFolder, Sample, discover
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.keras.modelfile import ValidationSplit

log = logging.getLogger("ghostspec.data.splits")


def digest(folder: ImageFolder, split: str = "val") -> str:
    """sha-256 of a split's file list: each file's path relative to the folder (as the OS's
    bytes, so any name works) and its class name, in split order."""
    h = hashlib.sha256()
    for sample in folder.splits.get(split, ()):
        relative = os.fsencode(sample.path.relative_to(folder.root))
        h.update(relative + b"\0" + folder.classes[sample.label].encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()


def drawn_fraction(folder: ImageFolder, val_split: float | None) -> float | None:
    """The share held out as val when the folder's val split is drawn, else None (a val/)."""
    if folder.layout == "flat":
        return DEFAULT_VAL_SPLIT if val_split is None else val_split
    return val_split  # train/ without val/ is split only with --val-split


def validation_record(
    folder: ImageFolder, val_split: float | None, seed: int
) -> ValidationSplit | None:
    """What a trained model records about its validation split, when that split was drawn."""
    fraction = drawn_fraction(folder, val_split)
    if fraction is None:
        return None
    return ValidationSplit(
        layout="flat" if folder.layout == "flat" else "split",
        fraction=fraction,
        seed=seed,
        images=len(folder.splits.get("val", ())),
        digest=digest(folder),
    )


@dataclass(frozen=True)
class Chosen:
    """The folder with the split to score, and a line saying how it was chosen (or None)."""

    folder: ImageFolder
    note: str | None = None


def split_for_model(
    root: str | Path,
    record: ValidationSplit | None,
    *,
    val_split: float | None,
    seed: int | None,
    model: str,
) -> Chosen:
    """The image folder `root` with the validation split to score `model` on.

    A model that records a drawn validation split gets that split again when `root` gives the
    same images (the digest agrees): by default, and refused with another --val-split or
    --seed, which would score images it trained on. Other folders split as asked."""
    asked = discover(root, val_split=val_split, seed=0 if seed is None else seed)
    if record is None or (asked.layout == "split" and (asked.root / "val").is_dir()):
        return Chosen(asked)
    theirs = discover(root, val_split=record.fraction, seed=record.seed)
    if digest(theirs) != record.digest:
        if val_split is None and seed is None:
            note = (
                f"note: {model} was validated on a {record.fraction:g} share of its image folder "
                f"held out with seed {record.seed}; {root} does not give those "
                f"{record.images} images (another folder, or it has changed), so this split may "
                "hold images the model trained on"
            )
            return Chosen(asked, note)
        return Chosen(asked)
    differs = [
        f"{flag} {given:g}"
        for flag, given, own in (
            ("--val-split", val_split, record.fraction),
            ("--seed", seed, record.seed),
        )
        if given is not None and given != own
    ]
    if differs:
        raise SpecError(
            [
                Diagnostic(
                    file=str(root),
                    message=f"{model} was validated on this folder's {record.fraction:g} share "
                    f"held out with seed {record.seed}; {' and '.join(differs)} would draw "
                    "another split, which holds images the model trained on",
                    hint="drop --val-split and --seed: evaluate uses the model's own split",
                )
            ]
        )
    note = (
        f"the model's own validation split: {record.images} images, the {record.fraction:g} "
        f"share held out with seed {record.seed}"
    )
    return Chosen(theirs, note)


def coverage_warnings(
    classes: Sequence[str], train: Sequence[Sample], val: Sequence[Sample], where: str | Path
) -> list[Diagnostic]:
    """One warning per class the training split has no usable image of (the network cannot
    learn it) and per class the validation split has none of (its accuracy is never measured).
    `train` and `val` are the samples that passed the image checks."""
    problems = []
    trained = {s.label for s in train}
    validated = {s.label for s in val}
    for label, name in enumerate(classes):
        if label not in trained:
            problems.append(
                Diagnostic(
                    file=str(where),
                    message=f"class {name!r} has no usable training image: the network cannot "
                    "learn it",
                    hint="add readable images of it to the training split, or remove the class",
                    severity="warning",
                )
            )
        if label not in validated:
            problems.append(
                Diagnostic(
                    file=str(where),
                    message=f"class {name!r} has no usable validation image: its accuracy is "
                    "not measured, and val_top1 leaves it out",
                    hint="add images of it to val/ (or give it at least 2 images, so that "
                    "--val-split can hold one out)",
                    severity="warning",
                )
            )
    return problems


def report_coverage(problems: Sequence[Diagnostic]) -> None:
    for problem in problems:
        log.warning("%s", problem.render())
