"""What an exported artifact needs to be used on its own: its class names and preprocessing.

A TFLite or ONNX file holds only the network, so `ghostspec export` writes ghostspec's facts about
the model next to it: inside an ONNX file (its `metadata_props`, key `ghostspec`), and for TFLite,
whose format has no room for them without rewriting the flatbuffer, in a sidecar `<file>.json`
beside it, written atomically after the artifact and tied to it by the artifact's SHA-256, so a
sidecar left over from another export is noticed instead of trusted. `ghostspec predict` and
`evaluate` read them back here (`read_metadata`), and load and run the artifacts (`load_artifact`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import PathLike, check_output, read_regular_file, write_text

ONNX_KEY = "ghostspec"  # the metadata_props key of an ONNX artifact
SIDECAR_SUFFIX = ".json"
MAX_ARTIFACT_BYTES = 4 << 30  # far above any GhostNet; a file beyond it is not one of ours
MAX_SIDECAR_BYTES = 16 << 20
ARTIFACT_SUFFIXES = (".tflite", ".onnx")

Floats = tuple[Annotated[float, Field(allow_inf_nan=False)], ...]


class ArtifactMetadata(BaseModel):
    """ghostspec's facts about an exported model; the same fields inside ONNX and in a sidecar."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    format: Literal["tflite", "onnx"]
    quantize: Literal["none", "fp16", "int8"] = "none"
    classes: tuple[str, ...] | None = None
    mean: Floats
    std: tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...]
    crop_pct: Annotated[float, Field(gt=0, le=1)]
    input_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]
    channels: Annotated[int, Field(ge=1)]
    outputs: Literal["logits", "probabilities"] = "logits"
    sha256: str | None = None  # the artifact's digest (sidecars only: ONNX carries itself)

    def to_json(self) -> str:
        return json.dumps({"ghostspec_artifact": 1, **self.model_dump(mode="json")}, indent=2)


@dataclass(frozen=True)
class Artifact:
    """A loaded TFLite or ONNX artifact: a function of float32 batches, its metadata and shape."""

    path: Path
    run: Callable[[np.ndarray], np.ndarray]
    metadata: ArtifactMetadata
    input_shape: tuple[int, int, int]  # H, W, C
    outputs: int | None  # class scores per image, None when the output is not [N, classes]


def _error(file: PathLike, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


def artifact_metadata(
    model: Any,
    to: str,
    quantize: str,
    image: tuple[int, int, int],
    pre: Any,
    classes: tuple[str, ...] | None,
    name: str | None,
) -> ArtifactMetadata:
    """What an artifact of `model` (at `image`: H, W, C) needs to be run on images by itself;
    `pre` is export's Preprocessing (mean, std, crop_pct), untyped here to keep deploy/export
    the only one of the two that imports the other."""
    from ghostspec.data.scoring import is_probability_model

    return ArtifactMetadata.model_validate(
        {
            "name": name or str(model.name),
            "format": to,
            "quantize": quantize,
            "classes": classes,
            "mean": tuple(pre.mean)[: image[2]],
            "std": tuple(pre.std)[: image[2]],
            "crop_pct": pre.crop_pct,
            "input_size": (image[0], image[1]),
            "channels": image[2],
            "outputs": "probabilities" if is_probability_model(model) else "logits",
        }
    )


def sidecar_path(artifact: PathLike) -> Path:
    """Where a TFLite artifact's metadata lives: `model.tflite` -> `model.tflite.json`."""
    path = Path(artifact)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def check_sidecar_target(artifact: PathLike, inputs: tuple[PathLike | None, ...] = ()) -> Path:
    """The sidecar's path, checked like any output before the export starts."""
    return check_output(
        sidecar_path(artifact), inputs=inputs, suffixes=(SIDECAR_SUFFIX,), what="metadata file"
    )


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def onnx_with_metadata(content: bytes, metadata: ArtifactMetadata) -> bytes:
    """The ONNX model `content` with `metadata` in its metadata_props (the network unchanged)."""
    import onnx

    proto = onnx.load_from_string(content)
    kept = [p for p in proto.metadata_props if p.key != ONNX_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_KEY, metadata.to_json()
    return bytes(proto.SerializeToString())


def write_sidecar(artifact: PathLike, metadata: ArtifactMetadata, content: bytes) -> Path:
    """Write `<artifact>.json` atomically, stamped with the artifact's digest."""
    target = sidecar_path(artifact)
    stamped = metadata.model_copy(update={"sha256": digest(content)})
    write_text(target, stamped.to_json() + "\n")
    return target


def _parse(text: str | bytes, file: PathLike) -> ArtifactMetadata:
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or "ghostspec_artifact" not in data:
            raise ValueError("not ghostspec's artifact metadata")
        return ArtifactMetadata.model_validate(data)
    except (ValueError, RecursionError, ValidationError) as err:
        reason = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
        raise _error(
            file,
            f"is not valid ghostspec artifact metadata ({reason[:160]})",
            "export the model again with `ghostspec export`, which writes it",
        ) from None


def _missing(path: Path, kind: str) -> SpecError:
    source = "MODEL.keras|RUN_DIR"
    where = (
        f"beside it as {sidecar_path(path).name}"
        if kind == "tflite"
        else "inside the file (and reads a sidecar .json beside it)"
    )
    return _error(
        path,
        "carries no ghostspec metadata (class names and preprocessing), so its input cannot be "
        "prepared",
        f"export it again with `ghostspec export {source} --to {kind}`, which writes them "
        f"{where}; or predict with the run folder or .keras file it came from",
    )


def read_metadata(path: Path, content: bytes, embedded: str | None) -> ArtifactMetadata:
    """The metadata of the artifact `path` (bytes `content`): `embedded` (ONNX's own), else its
    sidecar, which must describe these very bytes. SpecError saying what to do when absent."""
    kind = "onnx" if path.suffix.lower() == ".onnx" else "tflite"
    if embedded is not None:
        return _parse(embedded, f"{path} (its {ONNX_KEY} metadata)")
    side = sidecar_path(path)
    if not side.exists():
        raise _missing(path, kind)
    meta = _parse(read_regular_file(side, MAX_SIDECAR_BYTES, "metadata file"), side)
    if meta.sha256 is not None and meta.sha256 != digest(content):
        raise _error(
            side,
            f"describes another export than {path.name} (the file's SHA-256 differs), so its "
            "class names may not be this model's",
            f"export the model again to {path}, which rewrites both files",
        )
    return meta


# --------------------------------------------------------------------------------- loading


def load_artifact(path: Path, threads: int | None = None) -> Artifact:
    """Load a .tflite or .onnx file exported by ghostspec, with its metadata. Raises SpecError
    for a file that is not such an artifact, with one line saying why."""
    content = read_regular_file(path, MAX_ARTIFACT_BYTES, "model file")
    if path.suffix.lower() == ".onnx":
        run, shape, outputs, embedded = _onnx(path, content, threads)
    else:
        run, shape, outputs, embedded = _tflite(path, content, threads)
    meta = read_metadata(path, content, embedded)
    if meta.format != path.suffix.lower()[1:]:
        raise _error(path, f"its metadata describes a {meta.format} file, not this one")
    h, w, c = shape
    if (h, w, c) != (*meta.input_size, meta.channels):
        raise _error(
            path,
            f"takes {h}x{w}x{c} inputs but its metadata says "
            f"{meta.input_size[0]}x{meta.input_size[1]}x{meta.channels}: they do not belong "
            "together",
            "export the model again, which rewrites both",
        )
    return Artifact(path, run, meta, shape, outputs)


def _image_shape(path: Path, shape: Any) -> tuple[int, int, int]:
    dims = list(shape)
    if len(dims) != 4 or not all(isinstance(d, int | np.integer) and d > 0 for d in dims[1:]):
        raise _error(
            path,
            f"its input has shape {tuple(dims)}, not an image batch of a fixed size (N, H, W, C)",
            "export the model with ghostspec (a fixed --input-size)",
        )
    return int(dims[1]), int(dims[2]), int(dims[3])


def _classes(shape: Any) -> int | None:
    dims = list(shape)
    last = dims[-1] if dims else None
    return int(last) if len(dims) == 2 and isinstance(last, int | np.integer) else None


def _tflite(
    path: Path, content: bytes, threads: int | None
) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int, int], int | None, None]:
    from ghostspec.deploy.tflite import tflite_interpreter, tflite_runner

    try:
        interpreter = tflite_interpreter(content, threads)  # allocated
    except (ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise _error(path, f"is not a TFLite model ghostspec can load ({reason})") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1:
        raise _error(path, f"has {len(inputs)} inputs; ghostspec runs models of one image batch")
    shape = _image_shape(path, inputs[0]["shape"])
    classes = _classes(outputs[0]["shape"]) if len(outputs) == 1 else None
    del interpreter
    return tflite_runner(content, threads), shape, classes, None


def _onnx(
    path: Path, content: bytes, threads: int | None
) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int, int], int | None, str | None]:
    from ghostspec.files import scratch_environment_tempdir

    try:
        with scratch_environment_tempdir():  # onnxruntime leaves $TMPDIR/.ses as it loads
            import onnxruntime as ort
    except ImportError:
        raise _error(
            path,
            "running ONNX models needs onnxruntime, which is not installed",
            "install the extra: pip install 'ghostspec[onnx]'",
        ) from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for a bad model
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise _error(path, f"is not an ONNX model ghostspec can load ({reason})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise _error(path, f"has {len(inputs)} inputs; ghostspec runs models of one image batch")
    shape = _image_shape(path, inputs[0].shape)
    classes = _classes(outputs[0].shape) if len(outputs) == 1 else None
    fixed = inputs[0].shape[0]
    name, out = inputs[0].name, outputs[0].name
    embedded = session.get_modelmeta().custom_metadata_map.get(ONNX_KEY)

    def run(batch: np.ndarray) -> np.ndarray:
        step = fixed if isinstance(fixed, int) and fixed > 0 else max(len(batch), 1)
        parts = []
        for start in range(0, len(batch), step):
            x = np.ascontiguousarray(batch[start : start + step], np.float32)
            short = step - len(x)
            if short:  # a fixed batch size: the last chunk padded, the padding dropped
                x = np.concatenate([x, np.zeros((short, *x.shape[1:]), np.float32)])
            parts.append(np.asarray(session.run([out], {name: x})[0], np.float32)[: step - short])
        return np.concatenate(parts)

    return run, shape, classes, embedded
