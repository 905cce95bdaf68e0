"""Top-k classes of images: what people run after training (`ghostspec predict`).

The model is whatever `ghostspec.deploy.source.resolve` says it is (a run folder, a .keras file,
or a .tflite or .onnx exported by ghostspec), so it brings its own class names and evaluation
preprocessing. The images go through the one evaluation pipeline (`data.pipeline.eval_dataset`,
that is `data.images.eval_preprocess`) in batches, so predict's top-1 on a labelled split is
evaluate's. Probabilities are the softmax of the outputs, or the outputs themselves for a model
ending in softmax. Unreadable images are named and skipped, never fatal unless all are.

The room is `predictor`, not `predict`: the package face's `ghostspec.predict` function would be
shadowed by a submodule of the same name as soon as it was imported.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ghostspec.data.images import IMAGE_SUFFIXES, check_files
from ghostspec.data.pipeline import Checked, Sample, eval_dataset
from ghostspec.deploy.source import MODEL_FILE, ResolvedModel, resolve
from ghostspec.diagnostics import Diagnostic, SpecError

log = logging.getLogger("ghostspec.predictor")

Format = Literal["table", "json", "csv"]
FORMAT_SUFFIXES: dict[str, str] = {"table": ".txt", "json": ".json", "csv": ".csv"}
MODEL_SUFFIXES = (".keras", ".tflite", ".onnx")
MODEL_HINT = "pass a run folder (runs/<name>-<n>), a .keras file, or a .tflite or .onnx file"
GLOB_CHARACTERS = "*?["
DEFAULT_TOP_K = 5
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class Guess:
    """One of an image's top-k classes."""

    name: str
    index: int
    probability: float


@dataclass(frozen=True)
class ImagePrediction:
    """An image and its top-k classes, most probable first; one record of the json output."""

    image: str
    top: tuple[Guess, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "top": [
                {"class": g.name, "index": g.index, "probability": g.probability} for g in self.top
            ],
        }


@dataclass(frozen=True)
class Images:
    """The image files the arguments name, in order, the folders walked for them, and the
    arguments that named nothing usable."""

    files: tuple[Path, ...]
    folders: tuple[Path, ...]
    problems: tuple[Diagnostic, ...]


@dataclass(frozen=True)
class Predictions:
    """The records of every readable image, the files skipped (why, by path) and the time."""

    model: str
    records: tuple[ImagePrediction, ...]
    skipped: tuple[Diagnostic, ...]
    seconds: float

    @property
    def rate(self) -> float:
        """Images per second over decoding, preprocessing and the model."""
        return len(self.records) / self.seconds if self.seconds > 0 else 0.0


def _error(file: str | Path, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


def _warning(file: str | Path, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(file=str(file), message=message, hint=hint, severity="warning")


# the images -----------------------------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _walk(folder: Path, problems: list[Diagnostic]) -> list[Path]:
    """Image files under `folder`, depth first in sorted order (the same on every machine),
    hidden files and folders left out, symbolic links to folders not followed."""
    found: list[Path] = []

    def failed(err: OSError) -> None:
        problems.append(_warning(err.filename or folder, f"cannot list: {err.strerror}"))

    for top, dirs, names in os.walk(folder, onerror=failed):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(top) / n for n in sorted(names) if _is_image_name(n))
    return found


def collect_images(arguments: Sequence[str | Path]) -> Images:
    """The files that image arguments name: a file as given, a folder walked, a glob expanded
    (sorted). A file given by name is tried whatever its suffix; in folders only image suffixes
    count. SpecError when the arguments name no file at all."""
    files: list[Path] = []
    folders: list[Path] = []
    problems: list[Diagnostic] = []
    for argument in arguments:
        text = str(argument)
        path = Path(text)
        if path.is_dir():
            folders.append(path)
            found = _walk(path, problems)
            if not found:
                problems.append(_warning(path, f"holds no images ({', '.join(IMAGE_SUFFIXES)})"))
            files.extend(found)
        elif path.exists() or path.is_symlink():
            files.append(path)
        elif any(c in text for c in GLOB_CHARACTERS):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                problems.append(_warning(text, "matches no file", "check the pattern"))
            for match in map(Path, matches):
                if match.is_dir():
                    folders.append(match)
                    files.extend(_walk(match, problems))
                elif _is_image_name(match.name):
                    files.append(match)
        else:
            problems.append(_warning(text, "no such file or folder", "check the path"))
    unique = tuple(dict.fromkeys(Path(os.path.normpath(p)) for p in files))
    if not unique:
        errors = [Diagnostic(file=d.file, message=d.message, hint=d.hint) for d in problems]
        raise SpecError(errors or [_error("IMAGE", "no images given").diagnostics[0]])
    return Images(unique, tuple(folders), tuple(problems))


# the model ------------------------------------------------------------------------------------


def check_model_argument(model: str | Path) -> Path:
    """Refuse what cannot be a trained model (a spec, a folder that is not a run) before any
    framework loads."""
    path = Path(model)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise _error(path, f"is not a run folder: it has no {MODEL_FILE}", MODEL_HINT)
        return path
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise _error(path, "is not a trained model ghostspec can run", MODEL_HINT)
    if not path.exists():
        raise _error(path, "no such model file", "check the path")
    return path


def model_inputs(model: str | Path) -> tuple[Path, ...]:
    """The files a model argument reads (an output may replace none of them)."""
    from ghostspec.deploy.artifact import sidecar_path

    path = Path(model)
    if path.is_dir():
        return (path / MODEL_FILE, path / "classes.json", path / "classes.txt")
    return (path, sidecar_path(path))


def load_model(model: str | Path, top_k: int | None = None) -> tuple[ResolvedModel, int]:
    """The model, checked to end in class scores with at least `top_k` classes, and the k to
    use (`top_k`, or DEFAULT_TOP_K capped by the classes when it is None)."""
    check_model_argument(model)
    resolved = resolve(model)
    if resolved.outputs is None:
        raise _error(
            model,
            "the model does not end in class scores (it is a backbone), so it predicts no classes",
            "predict with a classifier (a spec with include_top: true, trained)",
        )
    if top_k is None:
        return resolved, min(DEFAULT_TOP_K, resolved.outputs)
    if top_k > resolved.outputs:
        raise _error(
            "--top-k",
            f"{top_k} is more than the model's {resolved.outputs} classes",
            f"use --top-k {resolved.outputs} or less",
        )
    return resolved, top_k


# predicting -----------------------------------------------------------------------------------


def probabilities(outputs: np.ndarray, already: bool) -> np.ndarray:
    """Softmax of the outputs in float64; a softmax model's own outputs only renormalised (an
    int8 model's dequantized probabilities do not quite sum to one)."""
    out = np.asarray(outputs, np.float64)
    if already:
        total = out.sum(axis=1, keepdims=True)
        shares: np.ndarray = np.divide(out, total, out=np.zeros_like(out), where=total > 0)
        return shares
    exp = np.exp(out - out.max(axis=1, keepdims=True))
    softmax: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return softmax


def top_classes(probs: np.ndarray, k: int, names: Sequence[str]) -> list[tuple[Guess, ...]]:
    """The k most probable classes of each row; ties go to the lower index, as argmax's do."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        tuple(Guess(names[int(i)], int(i), float(row[int(i)])) for i in picks)
        for row, picks in zip(probs, order, strict=True)
    ]


def predict_images(
    model: ResolvedModel,
    images: Images,
    *,
    top_k: int = DEFAULT_TOP_K,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> Predictions:
    """Run `model` over the images in batches: top-k records in the order of `images.files`,
    and every file that could not be read or decoded as a warning. `progress` is told how many
    images each batch settled. SpecError when not one image could be read."""
    if batch < 1:
        raise _error("--batch", f"{batch} is not a positive batch size", "e.g. --batch 32")
    assert model.outputs is not None
    names = model.classes or tuple(str(i) for i in range(model.outputs))
    infos, unreadable = check_files(list(images.files))
    kept = [(i, info) for i, info in enumerate(infos) if info is not None]
    skipped = list(unreadable)
    if progress is not None and unreadable:
        progress(len(unreadable))
    records: dict[int, ImagePrediction] = {}
    start = time.perf_counter()
    if kept:
        checked = Checked(
            tuple(Sample(images.files[i], i) for i, _ in kept),
            tuple(info for _, info in kept),
            tuple(unreadable),
        )
        dataset = eval_dataset(
            checked,
            size=model.input_size,
            channels=model.channels,
            mean=model.mean,
            std=model.std,
            crop_pct=model.crop_pct,
            batch=batch,
            cache=False,  # stream: the first batch comes at once, memory stays flat
        )
        for x, index in dataset:
            probs = probabilities(model.run(x.numpy()), model.probabilities)
            for i, top in zip(
                index.numpy().tolist(), top_classes(probs, top_k, names), strict=True
            ):
                records[i] = ImagePrediction(os.fsdecode(images.files[i]), top)
            if progress is not None:
                progress(len(probs))
    seconds = time.perf_counter() - start
    failed = [i for i, _ in kept if i not in records]
    skipped += [
        _warning(images.files[i], "cannot be decoded: the image data is damaged", "replace it")
        for i in failed
    ]
    if progress is not None and failed:
        progress(len(failed))
    if not records:  # every file named with its reason, as errors
        errors = [Diagnostic(file=d.file, message=d.message, hint=d.hint) for d in skipped]
        if len(errors) > 1:
            errors.append(
                Diagnostic(
                    file="IMAGE",
                    message=f"none of the {len(errors)} images could be read",
                    hint="pass JPEG, PNG, BMP or GIF images",
                )
            )
        raise SpecError(errors)
    ordered = tuple(records[i] for i in sorted(records))
    return Predictions(model.name, ordered, tuple(skipped), seconds)


def predict(
    model: str | Path,
    images: str | Path | Iterable[str | Path],
    *,
    top_k: int | None = None,
    batch: int = DEFAULT_BATCH,
) -> Predictions:
    """Top-k classes of image files, folders or globs with a run folder, .keras, .tflite or
    .onnx model (`top_k` None: 5, or every class of a model with fewer). Unreadable files are
    logged as warnings and skipped."""
    if top_k is not None and top_k < 1:
        raise _error("--top-k", f"{top_k} is not a positive count", "e.g. --top-k 5")
    arguments = [images] if isinstance(images, str | Path) else list(images)
    found = collect_images(arguments)
    resolved, k = load_model(model, top_k)
    result = predict_images(resolved, found, top_k=k, batch=batch)
    for problem in (*found.problems, *result.skipped):
        log.warning("%s", problem.render())
    return result


# output ---------------------------------------------------------------------------------------


def output_format(requested: str | None, output: str | Path | None) -> Format:
    """--format, else what -o's suffix says (.json, .csv), else the table."""
    if requested is not None:
        return requested  # type: ignore[return-value]
    suffix = Path(output).suffix.lower() if output is not None else ""
    return "json" if suffix == ".json" else "csv" if suffix == ".csv" else "table"


def shown(text: str) -> str:
    """A name as one printable line: control characters (a newline in a folder name) escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


def render_table(result: Predictions) -> str:
    """One row per image: the image, then its classes with probabilities, best first."""
    rows = [
        [shown(r.image), *(f"{shown(g.name)} {g.probability:.1%}" for g in r.top)]
        for r in result.records
    ]
    k = max(len(r.top) for r in result.records)
    header = ["image", *(f"top-{i + 1}" for i in range(k))]
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    title = "  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))
    return "\n".join(line.rstrip() for line in [title, *lines])


def render_json(result: Predictions) -> str:
    return json.dumps([r.to_json() for r in result.records], indent=2)


def render_csv(result: Predictions) -> str:
    """One row per image and rank: image, rank, class, index, probability."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "rank", "class", "index", "probability"])
    for record in result.records:
        for rank, guess in enumerate(record.top, 1):
            writer.writerow([record.image, rank, guess.name, guess.index, guess.probability])
    return buffer.getvalue().rstrip("\n")


RENDERERS: dict[str, Callable[[Predictions], str]] = {
    "table": render_table,
    "json": render_json,
    "csv": render_csv,
}
