"""Deployment artifacts: SavedModel, TFLite (fp32, fp16, int8) and ONNX, each checked for parity.

Every export runs the artifact on a fixed random batch and compares it to the Keras model. fp32
artifacts must agree within 1e-4 (max absolute difference) or the export fails and leaves nothing
behind; fp16 and int8 report max difference, cosine similarity and top-1 agreement.

Calibration images for int8 are preprocessed the way the reference's ImageNet evaluation does
(`ghostspec.images.eval_preprocess`, which evaluate and training's validation split use too):
RGB in [0, 1], shorter side resized to floor(H / crop_pct) (crop_pct 0.875), centre crop H x W,
then (x - mean) / std with the spec's `input.mean` and `input.std`. `random:N` draws N
standard-normal batches instead (a smoke run: it exercises the pipeline, not the accuracy).
"""

from __future__ import annotations

import contextlib
import errno
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ghostspec import images
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import (
    atomic_directory,
    atomic_path,
    check_output,
    check_output_folder,
    write_error,
)
from ghostspec.plan import IMAGENET_MEAN, IMAGENET_STD

Format = Literal["savedmodel", "tflite", "onnx"]
Quantize = Literal["none", "fp16", "int8"]
FP32_TOLERANCE = 1e-4
IMAGE_SUFFIXES = set(images.IMAGE_SUFFIXES)
PARITY_SEED = 1234
INPUT_NAME = "input"


class ExportFault(Exception):
    """An artifact that does not reproduce the model: a fault, exit 1, and no artifact left."""


@dataclass(frozen=True)
class Parity:
    """How closely an artifact reproduces the Keras model on the fixed random batch."""

    max_abs_diff: float
    cosine: float
    top1_agreement: float | None

    def line(self) -> str:
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.0%}"
        return f"max |diff| {self.max_abs_diff:.2e}, cosine {self.cosine:.6f}{top1}"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: Format
    quantize: Quantize
    size_bytes: int
    parity: Parity


@dataclass(frozen=True)
class Preprocessing:
    """How calibration images become model input; defaults are the reference's ImageNet ones."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = images.DEFAULT_CROP_PCT


def compare(reference: np.ndarray, output: np.ndarray) -> Parity:
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    out = output.reshape(len(output), -1).astype(np.float64)
    diff = float(np.max(np.abs(ref - out)))
    denom = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = float(np.mean(np.sum(ref * out, axis=1) / np.maximum(denom, 1e-30)))
    top1 = None
    if reference.ndim == 2 and reference.shape[1] > 1:
        top1 = float(np.mean(np.argmax(ref, axis=1) == np.argmax(out, axis=1)))
    return Parity(diff, cosine, top1)


def tflite_interpreter(content: bytes, threads: int | None = None) -> Any:
    """The one place that picks the TFLite interpreter: LiteRT when installed, else tf.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the environment
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_content=content, num_threads=threads)


def run_tflite(content: bytes, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run a TFLite model sample by sample at its own batch size, (de)quantizing int8 I/O."""
    interpreter = tflite_interpreter(content, threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    n = int(inp["shape"][0])
    results = []
    for start in range(0, len(batch), n):
        x = batch[start : start + n]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(np.array(y, dtype=np.float32))
    return np.concatenate(results)


def _progress(total: int) -> Callable[[], None]:
    """A calibration progress bar on stderr (rich), advanced once per sample."""
    from rich.progress import Progress

    progress = Progress(transient=True, console=None)
    task = progress.add_task("calibrating int8", total=total)
    progress.start()

    def step() -> None:
        progress.advance(task)
        if progress.finished:
            progress.stop()

    return step


def _random_batches(n: int, shape: tuple[int, int, int]) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(0)
    step = _progress(n)
    for _ in range(n):
        step()
        yield rng.standard_normal((1, *shape)).astype(np.float32)


def calibration_batches(
    source: str, shape: tuple[int, int, int], preprocessing: Preprocessing
) -> Iterator[np.ndarray]:
    """Representative inputs for int8: a folder of images or `random:N`. The source and every
    image are checked when this is called, before the first batch is drawn."""
    if source.startswith("random:"):
        count = source.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            message = f"{source!r}: N must be a positive count"
            raise SpecError([Diagnostic(file="--calibration", message=message)])
        return _random_batches(int(count), shape)
    folder = Path(source)
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
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        message = "no images (.jpg, .png, .bmp, .gif) in it"
        raise SpecError([Diagnostic(file=source, message=message)])
    _, problems = images.check_files(files)  # every unusable file named, before converting
    if problems:
        raise SpecError([Diagnostic(file=d.file, message=d.message, hint=d.hint) for d in problems])
    return _image_batches(files, shape, preprocessing)


def _image_batches(
    files: list[Path], shape: tuple[int, int, int], preprocessing: Preprocessing
) -> Iterator[np.ndarray]:
    step = _progress(len(files))
    for path in files:
        step()
        yield load_image(path, shape, preprocessing)[None]


def load_image(path: Path, shape: tuple[int, int, int], pre: Preprocessing) -> np.ndarray:
    """One image through the checks and the evaluation preprocessing (ghostspec.images)."""
    h, w, c = shape
    return images.load_eval_image(
        path, size=(h, w), channels=c, mean=pre.mean, std=pre.std, crop_pct=pre.crop_pct
    )


def _tflite_bytes(
    model: Any,
    shape: tuple[int, ...],
    quantize: Quantize,
    calibration: str | None,
    preprocessing: Preprocessing,
) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="ghostspec-") as scratch:
        # Through a SavedModel: the converter then freezes the variables into constants.
        _savedmodel(model, shape, Path(scratch) / "model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(scratch) / "model"))
        return _convert(converter, shape, quantize, calibration, preprocessing)


def _convert(
    converter: Any,
    shape: tuple[int, ...],
    quantize: Quantize,
    calibration: str | None,
    preprocessing: Preprocessing,
) -> bytes:
    import tensorflow as tf

    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        source = calibration or "random:100"
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [x]
            for x in calibration_batches(source, shape[1:], preprocessing)  # type: ignore[arg-type]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _onnx_bytes(model: Any, shape: tuple[int | None, ...]) -> bytes:
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx
    except ImportError:
        raise SpecError(
            [
                Diagnostic(
                    file="--to onnx",
                    message="ONNX export needs tf2onnx and onnxruntime, which are not installed",
                    hint="install the extra: pip install 'ghostspec[onnx]'",
                )
            ]
        ) from None
    import tensorflow as tf

    spec = (tf.TensorSpec(shape, tf.float32, name=INPUT_NAME),)
    fn = tf.function(lambda x: model(x, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    return proto.SerializeToString()


def _run_onnx(content: bytes, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed != len(batch):
        parts = range(0, len(batch), fixed)
        return np.concatenate([session.run(None, {name: batch[i : i + fixed]})[0] for i in parts])
    return session.run(None, {name: batch})[0]


# TensorFlow reports a failed write as an op error; these reasons are the OS's, so they become
# the same message as any other failed write (ghostspec.files.write_error).
WRITE_FAILURES = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Permission denied": errno.EACCES,
    "Read-only file system": errno.EROFS,
    "Operation not permitted": errno.EPERM,
}


def _savedmodel(
    model: Any, shape: tuple[int | None, ...], directory: Path, shown: Path | str | None = None
) -> None:
    """Write a SavedModel to `directory`; a failed write is a SpecError naming `shown`."""
    import tensorflow as tf

    try:
        _write_savedmodel(model, shape, directory)
    except tf.errors.OpError as err:
        reason = next((r for r in WRITE_FAILURES if r in str(err.message)), None)
        if reason is None:
            raise
        target = shown or f"{directory} (a temporary folder; set TMPDIR to move it)"
        raise write_error(target, OSError(WRITE_FAILURES[reason], reason)) from None


def _write_savedmodel(model: Any, shape: tuple[int | None, ...], directory: Path) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)],
    )
    with contextlib.redirect_stdout(sys.stderr):
        archive.write_out(str(directory), verbose=False)


def _run_savedmodel(directory: Path, batch: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))
    fn = loaded.signatures["serving_default"]
    out = fn(**{INPUT_NAME: tf.constant(batch)})
    return next(iter(out.values())).numpy()


SUFFIXES: dict[str, tuple[str, ...]] = {"tflite": (".tflite",), "onnx": (".onnx",)}


def check_artifact_path(
    to: Format, output: Path, inputs: tuple[Path | str | None, ...] = ()
) -> Path:
    """Check where an artifact will go before any work (see `ghostspec.files`): a SavedModel
    folder may replace only a previous SavedModel or an empty folder; a file must have its
    format's suffix. Neither may be one of `inputs`. Raises SpecError."""
    if to == "savedmodel":
        return check_output_folder(output, inputs=inputs)
    return check_output(output, inputs=inputs, suffixes=SUFFIXES[to], what=f"{to} file")


def parity_batch(shape: tuple[int, int, int], size: int) -> np.ndarray:
    return np.random.default_rng(PARITY_SEED).standard_normal((size, *shape)).astype(np.float32)


def export(
    model: Any,
    to: Format,
    output: Path,
    *,
    input_size: tuple[int, int],
    batch: int | None,
    quantize: Quantize = "none",
    calibration: str | None = None,
    preprocessing: Preprocessing | None = None,
    reference_model: Any = None,
) -> ExportResult:
    """Write one artifact of `model` atomically and check it against `reference_model` (default:
    `model`; the CLI passes the model as built when it exports the deploy form, so the check
    covers the fusion too). Raises ExportFault."""
    pre = preprocessing or Preprocessing()
    channels = int(model.inputs[0].shape[-1])
    image = (input_size[0], input_size[1], channels)
    if quantize != "none" and to != "tflite":
        raise SpecError(
            [
                Diagnostic(
                    file="--quantize",
                    message=f"{quantize} quantization is for TFLite only",
                    hint="use --to tflite, or --quantize none",
                )
            ]
        )
    check_artifact_path(to, output)
    samples = parity_batch(image, max(batch or 1, 8))
    checked = model if reference_model is None else reference_model
    reference = np.asarray(checked(samples, training=False))
    if to == "savedmodel":
        with atomic_directory(output) as directory:
            _savedmodel(model, (batch, *image), directory, output)
            result = compare(reference, _run_savedmodel(directory, samples))
            _require(result, quantize)
        size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
        return ExportResult(output, to, quantize, size, result)
    if to == "tflite":
        content = _tflite_bytes(model, (batch or 1, *image), quantize, calibration, pre)
        result = compare(reference, run_tflite(content, samples))
    else:
        content = _onnx_bytes(model, (batch, *image))
        result = compare(reference, _run_onnx(content, samples))
    _require(result, quantize)
    with atomic_path(output) as temp:
        temp.write_bytes(content)
    return ExportResult(output, to, quantize, len(content), result)


def _require(result: Parity, quantize: Quantize) -> None:
    if quantize == "none" and not result.max_abs_diff <= FP32_TOLERANCE:
        raise ExportFault(
            f"the exported model differs from the Keras model by {result.max_abs_diff:.2e} "
            f"(max |diff|; the limit for fp32 is {FP32_TOLERANCE:g}); nothing was written"
        )
