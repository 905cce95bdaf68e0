"""Deployment artifacts: SavedModel, TFLite (fp32, fp16, int8) and ONNX, each checked for parity.

Every export runs the artifact on a fixed random batch and compares it to the Keras model. fp32
artifacts must agree within 1e-4 (max absolute difference) or the export fails and leaves nothing
behind; fp16 and int8 report max difference, cosine similarity and top-1 agreement.

Calibration images for int8 are preprocessed the way the reference's ImageNet evaluation does
(`ghostspec.data.images.eval_preprocess`, which evaluate and training's validation split use too):
RGB in [0, 1], shorter side resized to floor(H / crop_pct) (crop_pct 0.875), centre crop H x W,
then (x - mean) / std with the spec's `input.mean` and `input.std`. Which images calibrate is
`deploy.calibration.calibration_images`'s choice (a folder of images, or the train split of an
image folder). `random:N` draws N standard-normal batches instead (a smoke run: it exercises the
pipeline, not the accuracy). Run folders and int8 accuracy: `ghostspec.deploy.source`,
`ghostspec.deploy.quantized`. A TFLite or ONNX artifact carries what running it on images needs
(class names, preprocessing, input size: `ghostspec.deploy.artifact`), inside the ONNX file and
beside the TFLite file as `<file>.json`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ghostspec.data import images
from ghostspec.deploy import artifact as artifacts
from ghostspec.deploy.calibration import (
    DEFAULT_SOURCE,
    CalibrationImages,
    calibration_images,
    parse_calibration,
)
from ghostspec.deploy.tflite import (
    INPUT_NAME,
    run_tflite,
    run_tflite_named,
)
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import (
    atomic_directory,
    atomic_path,
    check_output,
    check_output_folder,
    scratch_environment_tempdir,
    write_error,
)
from ghostspec.needs import require_tensorflow
from ghostspec.plan.fuse import fuse_plan
from ghostspec.plan.ir import IMAGENET_MEAN, IMAGENET_STD, Plan, reference_name
from ghostspec.plan.memory import (
    USABLE_FRACTION,
    ExportMemory,
    Footprint,
    available_bytes,
    export_memory,
    format_bytes,
    plan_footprint,
)

Format = Literal["savedmodel", "tflite", "onnx"]
Quantize = Literal["none", "fp16", "int8"]
FP32_TOLERANCE = 1e-4
IMAGE_SUFFIXES = set(images.IMAGE_SUFFIXES)
PARITY_SEED = 1234


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
    parity: Parity  # a backbone's: the worst over its outputs
    outputs: tuple[tuple[str, Parity], ...] = ()  # a backbone's outputs, each with its parity


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


def output_names(model: Any) -> list[str] | None:
    """The output names of a model with several outputs (a backbone's feature maps), in order;
    None for one output. Exported signatures name their outputs so."""
    return list(model.output_names) if len(model.outputs) > 1 else None


def _serving(model: Any) -> Callable[[Any], Any]:
    """What an artifact computes: the model in inference mode, its outputs by name if several."""
    names = output_names(model)
    if names is None:
        return lambda x: model(x, training=False)
    return lambda x: dict(zip(names, model(x, training=False), strict=True))


def _arrays(result: Any) -> list[np.ndarray]:
    """A model's result as a list of arrays, one per output."""
    if isinstance(result, list | tuple):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


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
        yield rng.standard_normal((1, *shape), dtype=np.float32)


def calibration_batches(
    source: str | CalibrationImages, shape: tuple[int, int, int], preprocessing: Preprocessing
) -> Iterator[np.ndarray]:
    """Representative inputs for int8: images chosen by `calibration_images` (a folder, or
    already chosen), or `random:N`. The source and every image are checked when this is called,
    before the first batch is drawn."""
    if isinstance(source, CalibrationImages):
        return _image_batches(list(source.files), shape, preprocessing)
    parsed = parse_calibration(source)
    if parsed.random is not None:
        return _random_batches(parsed.random, shape)
    chosen = calibration_images(Path(source))
    return _image_batches(list(chosen.files), shape, preprocessing)


def _image_batches(
    files: list[Path], shape: tuple[int, int, int], preprocessing: Preprocessing
) -> Iterator[np.ndarray]:
    step = _progress(len(files))
    for path in files:
        step()
        yield load_image(path, shape, preprocessing)[None]


def load_image(path: Path, shape: tuple[int, int, int], pre: Preprocessing) -> np.ndarray:
    """One image through the checks and the evaluation preprocessing (ghostspec.data.images)."""
    h, w, c = shape
    return images.load_eval_image(
        path, size=(h, w), channels=c, mean=pre.mean, std=pre.std, crop_pct=pre.crop_pct
    )


def _tflite_bytes(
    model: Any,
    shape: tuple[int, ...],
    quantize: Quantize,
    calibration: str | CalibrationImages | None,
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
    calibration: str | CalibrationImages | None,
    preprocessing: Preprocessing,
) -> bytes:
    import tensorflow as tf

    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        source = calibration or DEFAULT_SOURCE
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
        with scratch_environment_tempdir():  # onnxruntime leaves $TMPDIR/.ses as it loads
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
    fn = tf.function(_serving(model))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    return proto.SerializeToString()


def _run_onnx(
    content: bytes, batch: np.ndarray, names: list[str] | None, chunk: int
) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    wanted = names or [session.get_outputs()[0].name]
    step = fixed if isinstance(fixed, int) else chunk
    return _in_chunks(lambda x: session.run(wanted, {name: x}), batch, step)


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
        fn=_serving(model),
        input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)],
    )
    with contextlib.redirect_stdout(sys.stderr):
        archive.write_out(str(directory), verbose=False)


def _run_savedmodel(
    directory: Path, batch: np.ndarray, names: list[str] | None, chunk: int
) -> list[np.ndarray]:
    import tensorflow as tf

    fn = tf.saved_model.load(str(directory)).signatures["serving_default"]

    def run(x: np.ndarray) -> list[np.ndarray]:
        out = fn(**{INPUT_NAME: tf.constant(x)})
        if names is None:
            return [next(iter(out.values())).numpy()]
        return [out[name].numpy() for name in names]

    return _in_chunks(run, batch, chunk)


SUFFIXES: dict[str, tuple[str, ...]] = {"tflite": (".tflite",), "onnx": (".onnx",)}


def check_artifact_path(
    to: Format, output: Path, inputs: tuple[Path | str | None, ...] = ()
) -> Path:
    """Check where an artifact will go before any work (see `ghostspec.files`): a SavedModel
    folder may replace only a previous SavedModel or an empty folder; a file must have its
    format's suffix. Neither may be one of `inputs`. Raises SpecError."""
    if to == "savedmodel":
        return check_output_folder(output, inputs=inputs)
    path = check_output(output, inputs=inputs, suffixes=SUFFIXES[to], what=f"{to} file")
    if to == "tflite":  # its metadata goes beside it
        artifacts.check_sidecar_target(path, inputs)
    return path


def parity_batch(shape: tuple[int, int, int], size: int) -> np.ndarray:
    """The fixed random inputs of the parity check, drawn as float32 (no float64 copy)."""
    rng = np.random.default_rng(PARITY_SEED)
    return rng.standard_normal((size, *shape), dtype=np.float32)


DEFAULT_SIZE = (224, 224)


def export_size(
    requested: tuple[int, int] | None, static: tuple[int, int] | None, *, fixed: bool, source: str
) -> tuple[tuple[int, int], str]:
    """The input size to export at, and a note for the summary line.

    A spec builds at any size, so `requested` (--input-size) wins over the spec's own (`static`)
    and 224x224 is the default of a dynamic spec. A saved model whose input size is `fixed` can
    only be exported at that size."""
    if fixed and static is not None:
        if requested is not None and tuple(requested) != static:
            raise SpecError(
                [
                    Diagnostic(
                        file="--input-size",
                        message=f"{requested[0]}x{requested[1]}: the model in {source} takes "
                        f"{static[0]}x{static[1]} inputs only (its input size is fixed)",
                        hint="drop --input-size, or export the spec it was built from, which "
                        "builds at any size",
                    )
                ]
            )
        return static, ""
    if requested is not None:
        return (int(requested[0]), int(requested[1])), ""
    if static is not None:
        return static, ""
    h, w = DEFAULT_SIZE
    return DEFAULT_SIZE, f" (the model accepts any size; exported at {h}x{w})"


def plan_memory(
    plan: Plan, *, fuse: bool, to: Format, batch: int | None, quantize: Quantize
) -> ExportMemory:
    """The parity check's size for exporting `plan` (at a fixed input size), from the plan alone:
    run before anything is built. Raises SpecError with the estimate if it cannot fit."""
    reference = plan_footprint(plan)
    artifact = plan_footprint(fuse_plan(plan, batch_norm=True)) if fuse else reference
    h, w, _ = plan.input_shape
    assert h is not None and w is not None
    return fitting_memory(reference, artifact, (h, w), to=to, batch=batch, quantize=quantize)


def model_footprint(model: Any, image: tuple[int, int, int]) -> Footprint:
    """The footprint of a Keras model at `image` (H, W, C), from the shapes Keras infers
    symbolically for every layer (nothing is run or allocated). For models without a plan
    (a .keras file); ghostspec's layer names group a block's tensors, other models' layers are
    taken a few at a time."""
    import keras

    layers, outputs = [], []
    for layer in model.layers:
        try:
            outputs.append(layer.output)
        except (AttributeError, ValueError):  # a layer used twice has no single output
            continue
        layers.append(layer)
    probe = keras.Model(model.inputs, outputs)
    try:
        shapes = probe.compute_output_spec(keras.KerasTensor((1, *image)))
    except ValueError as err:  # a layer that cannot take this size (a pool of a 1x1 map)
        reason = " ".join(str(err).split()).split(" Received:")[0].rstrip(".")
        raise SpecError(
            [
                Diagnostic(
                    file="--input-size",
                    message=f"{image[0]}x{image[1]}: the model cannot run at this size "
                    f"({reason[:160]})",
                    hint="use a larger --input-size",
                )
            ]
        ) from None
    sizes = [math.prod(int(d or 1) for d in spec.shape[1:]) for spec in keras.tree.flatten(shapes)]
    groups: list[int] = []
    last = None
    for layer, size in zip(layers, sizes, strict=False):
        name = re.match(r"blocks\.\d+\.\d+|[^.]+", reference_name(layer.name))
        key = name.group(0) if name else layer.name
        if key == last:
            groups[-1] += size
        else:
            groups.append(size)
        last = key
    window = max(sum(sizes[i : i + 4]) for i in range(max(1, len(sizes) - 3)))
    pairs = max(a + b for a, b in zip([0, *groups], groups, strict=False))
    return Footprint(math.prod(image), sum(sizes), max(window, pairs), int(model.count_params()))


def fitting_memory(
    reference: Footprint,
    artifact: Footprint,
    size: tuple[int, int],
    *,
    to: Format,
    batch: int | None,
    quantize: Quantize,
) -> ExportMemory:
    """export_memory with the refusal, as a SpecError naming the flag to change."""
    available = available_bytes()
    budget = None if available is None else int(available * USABLE_FRACTION)
    memory, fits = export_memory(
        reference, artifact, batch=batch, to=to, quantize=quantize, available=budget
    )
    if fits:
        return memory
    assert available is not None
    flag = "--batch" if (batch or 1) > 1 else "--input-size"
    batch_text = f" and batch {batch}" if batch else ""
    raise SpecError(
        [
            Diagnostic(
                file=flag,
                message=f"exporting at {size[0]}x{size[1]}{batch_text} needs about "
                f"{format_bytes(memory.bytes)} of memory (a parity check of {memory.samples} "
                f"sample(s) included), and {format_bytes(available)} is available (an export "
                f"takes at most {USABLE_FRACTION:.0%} of it)",
                hint="use a smaller --input-size or --batch: activations grow with H x W x batch",
            )
        ]
    )


def export(
    model: Any,
    to: Format,
    output: Path,
    *,
    input_size: tuple[int, int],
    batch: int | None,
    quantize: Quantize = "none",
    calibration: str | CalibrationImages | None = None,
    preprocessing: Preprocessing | None = None,
    reference_model: Any = None,
    memory: ExportMemory | None = None,
    classes: tuple[str, ...] | None = None,
    name: str | None = None,
) -> ExportResult:
    """Write one artifact of `model` atomically and check it against `reference_model` (default:
    `model`; the CLI passes the model as built when it exports the deploy form, so the check
    covers the fusion too). `memory` sizes the parity check (`plan_memory`); without it the
    models' own shapes do, and an export that cannot fit in the memory available is refused
    (SpecError) before anything is allocated. TFLite and ONNX carry `classes`, `name` and the
    preprocessing (`ghostspec.deploy.artifact`). Raises ExportFault."""
    require_tensorflow(f"export to {to}")
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
    if isinstance(calibration, str):
        parse_calibration(calibration)
    check_artifact_path(to, output)
    checked = model if reference_model is None else reference_model
    if memory is None:
        footprint = model_footprint(checked, image)
        artifact = footprint if checked is model else model_footprint(model, image)
        memory = fitting_memory(
            footprint, artifact, input_size, to=to, batch=batch, quantize=quantize
        )
    samples = parity_batch(image, memory.samples)
    reference = _in_chunks(_inference(checked, memory.graph), samples, memory.chunk)
    names = output_names(model)
    if to == "savedmodel":
        with atomic_directory(output) as directory:
            _savedmodel(model, (batch, *image), directory, output)
            run = _run_savedmodel(directory, samples, names, batch or memory.chunk)
            result, per = _check(reference, run, names)
            _require(result, quantize, per)
        size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
        return ExportResult(output, to, quantize, size, result, per)
    meta = artifacts.artifact_metadata(model, to, quantize, image, pre, classes, name)
    if to == "tflite":
        content = _tflite_bytes(model, (batch or 1, *image), quantize, calibration, pre)
        outputs = (
            [run_tflite(content, samples)]
            if names is None
            else run_tflite_named(content, samples, names)
        )
    else:
        content = artifacts.onnx_with_metadata(_onnx_bytes(model, (batch, *image)), meta)
        outputs = _run_onnx(content, samples, names, batch or memory.chunk)
    result, per = _check(reference, outputs, names)
    _require(result, quantize, per)
    with atomic_path(output) as temp:
        temp.write_bytes(content)
    if to == "tflite":
        artifacts.write_sidecar(output, meta, content)
    return ExportResult(output, to, quantize, len(content), result, per)


def _check(
    reference: list[np.ndarray], outputs: list[np.ndarray], names: list[str] | None
) -> tuple[Parity, tuple[tuple[str, Parity], ...]]:
    """Parity of one output, or of each named output and the worst of them."""
    if names is None:
        return compare(reference[0], outputs[0]), ()
    per = tuple(
        (name, compare(ref, out)) for name, ref, out in zip(names, reference, outputs, strict=True)
    )
    worst = Parity(
        max(p.max_abs_diff for _, p in per), min(p.cosine for _, p in per), top1_agreement=None
    )
    return worst, per


def _inference(model: Any, graph: bool) -> Callable[[np.ndarray], Any]:
    """`model` in inference mode: eager, or traced once into a graph, which frees every layer's
    output after its last use instead of holding all of them to the end of the call."""
    if not graph:
        return lambda x: model(x, training=False)
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def _in_chunks(fn: Callable[[np.ndarray], Any], batch: np.ndarray, chunk: int) -> list[np.ndarray]:
    """`fn` over `batch` `chunk` samples at a time (memory grows with the chunk, not the batch);
    one array per output."""
    parts = [_arrays(fn(batch[i : i + chunk])) for i in range(0, len(batch), chunk)]
    return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]


def _require(
    result: Parity, quantize: Quantize, outputs: tuple[tuple[str, Parity], ...] = ()
) -> None:
    if quantize == "none" and not result.max_abs_diff <= FP32_TOLERANCE:
        worst = [name for name, p in outputs if not p.max_abs_diff <= FP32_TOLERANCE]
        where = f" in {', '.join(worst)}" if worst else ""
        raise ExportFault(
            f"the exported model differs from the Keras model by {result.max_abs_diff:.2e}"
            f"{where} (max |diff|; the limit for fp32 is {FP32_TOLERANCE:g}); nothing was written"
        )
