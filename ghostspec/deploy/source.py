"""What model is this? The one answer for evaluate, export, predict and profile.

`resolve` takes a run folder (its best.keras and class list), a .keras file (with ghostspec's
metadata: `ghostspec.keras.modelfile.ModelMetadata`), a spec with weights, or a .tflite or .onnx
file exported by ghostspec (with the metadata export writes: `ghostspec.deploy.artifact`), and
returns one value, a `ResolvedModel`: a function of float32 batches, the class names, the
evaluation preprocessing (mean, std, crop_pct), the input size, and whether the outputs are
already probabilities. Callers never look at the file kind again.

Export also needs the Keras model itself and its deploy form: `saved_source` and `load_saved`
give it from a run folder or a .keras file; the spec in the metadata lets every BatchNorm and
every GhostNetV3 branch set be folded into its conv (`ghostspec.keras.fusion.fuse`). A file
without a spec in its metadata is exported as it is. TensorFlow is imported only when a model
is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ghostspec.diagnostics import Diagnostic, SpecError

if TYPE_CHECKING:
    from ghostspec.deploy.export import Preprocessing
    from ghostspec.keras.modelfile import ModelMetadata

MODEL_FILE = "best.keras"  # the model of a run folder (the best validation top-1)
RUN_HINT = (
    "pass a run folder written by `ghostspec train` (runs/<name>-<n>), a .keras file or a spec"
)
DEFAULT_SIZE = 224  # for a model that accepts any input size and carries no metadata
Kind = Literal["run", "keras", "spec", "tflite", "onnx"]
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SavedSource:
    """A saved model to export: the .keras file, and the run folder it is the best model of."""

    path: Path
    run: Path | None = None


@dataclass(frozen=True)
class SavedModel:
    """A loaded model ready to export: `model` the form to export, `reference` the model as
    saved (the parity reference), and what the metadata says about its inputs and classes."""

    model: Any
    reference: Any
    name: str
    preprocessing: Preprocessing
    static: tuple[int, int] | None
    classes: tuple[str, ...] | None
    fused: bool


def _error(file: str | Path, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=str(file), message=message, hint=hint)])


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to run on images, whatever it was given as: `run` maps float32 batches
    [N, H, W, C] (after `preprocessing` at `input_size`) to outputs [N, outputs]."""

    kind: Kind
    path: Path  # what was given: the run folder, the .keras, spec, .tflite or .onnx file
    name: str
    run: Runner
    classes: tuple[str, ...] | None  # None when the model knows no class names
    preprocessing: Preprocessing
    input_size: tuple[int, int]  # the size images are fed at
    static: tuple[int, int] | None  # the model's own fixed size, None when it takes any
    channels: int
    outputs: int | None  # the class scores per image; None when the output is not [N, classes]
    probabilities: bool  # the model ends in softmax: its outputs are probabilities already
    model: Any = None  # the keras.Model (run, keras and spec sources)
    quantize: str = "none"  # an artifact's quantization

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.preprocessing.mean)

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.preprocessing.std)

    @property
    def crop_pct(self) -> float:
        return float(self.preprocessing.crop_pct)


def saved_source(source: str) -> SavedSource | None:
    """The saved model `source` names (a run folder or a .keras file), None for a spec. A folder
    must be a run folder, with its best.keras; checked here, before anything is loaded."""
    path = Path(source)
    if path.is_dir():
        best = path / MODEL_FILE
        if not best.is_file():
            raise _error(path, f"is not a run folder: it has no {MODEL_FILE}", RUN_HINT)
        return SavedSource(best, path)
    if source.lower().endswith(".keras"):
        return SavedSource(path)
    return None


def default_stem(saved: SavedSource) -> str | None:
    """The name a run folder's artifact gets by default (the run folder's name); None for a
    .keras file, whose artifact is named after its model once it is loaded."""
    return None if saved.run is None else saved.run.resolve().name


def _classes_txt(run: Path | None) -> tuple[str, ...] | None:
    """A run folder's class list (classes.json, or classes.txt of earlier runs), for a
    best.keras whose metadata names no classes."""
    from ghostspec.data.classnames import class_names_file, read_class_names

    if run is None or class_names_file(run) is None:
        return None
    return read_class_names(run) or None


def load_saved(saved: SavedSource, *, fuse: bool) -> SavedModel:
    """Load the model (ghostspec.keras.modelfile) and what `resolve` says of it, and with `fuse`
    make its deploy form from the spec in the metadata."""
    from ghostspec.keras.modelfile import load_model_file

    loaded = load_model_file(saved.path, compile=False)
    model, meta = loaded.model, loaded.metadata
    resolved = _from_keras(saved, model, meta)
    deploy = model
    if fuse and meta is not None and meta.spec:
        deploy = _deploy_form(model, meta, resolved.static, saved.path)
    elif fuse and any("_rpr_" in layer.name for layer in model.layers):
        raise _error(
            saved.path,
            "this GhostNetV3 model has training branches, and fusing them needs the spec it was "
            "built from, which its metadata does not carry",
            "export the spec with --weights, or pass --no-fuse",
        )
    return SavedModel(
        deploy,
        model,
        resolved.name,
        resolved.preprocessing,
        resolved.static,
        resolved.classes,
        deploy is not model,
    )


def _deploy_form(
    model: Any, meta: ModelMetadata, static: tuple[int, int] | None, path: Path
) -> Any:
    """The model with its BatchNorms and GhostNetV3 branches folded, from the metadata's spec.
    A spec that does not describe the model is refused (exit 2) rather than fused wrongly."""
    from ghostspec.keras.fusion import fuse
    from ghostspec.keras.modelfile import METADATA_MEMBER
    from ghostspec.plan import pipeline

    label = f"{path} ({METADATA_MEMBER} spec)"
    spec = pipeline.load(label, text=meta.spec)
    plan = pipeline.plan(spec, input_size=static)
    hint = "pass --no-fuse to export the model as it is"
    if plan.params + plan.buffers != int(model.count_params()):
        raise _error(
            path,
            f"the spec in its metadata has {plan.params + plan.buffers:,} weights and the model "
            f"{int(model.count_params()):,}: it does not describe this model, so it cannot be "
            "fused by it",
            hint,
        )
    try:
        return fuse(model, plan, batch_norm=True)
    except (ValueError, KeyError) as err:
        raise _error(
            path, f"the spec in its metadata does not match the model's layers ({err})", hint
        ) from None


# ------------------------------------------------------------------------ the one resolver


def resolve(
    source: str | Path, *, weights: str | Path | None = None, overrides: Sequence[str] = ()
) -> ResolvedModel:
    """What model `source` is: a run folder, a .keras file, a .tflite or .onnx artifact
    exported by ghostspec, or a spec (a file or a registered name) with `weights`. Raises
    SpecError with one line for anything else, before any framework loads where it can."""
    path = Path(source)
    suffix = path.suffix.lower()
    saved = saved_source(str(source))
    if saved is not None or suffix in (".tflite", ".onnx"):
        if weights or overrides:
            raise _error(
                source,
                "--weights and --set apply to specs, not to a saved model or run folder",
                "drop them, or use the spec with --weights",
            )
        if saved is None:
            return _from_artifact(path)
        from ghostspec.keras.modelfile import load_model_file

        loaded = load_model_file(saved.path, compile=False)
        return _from_keras(saved, loaded.model, loaded.metadata)
    return _from_spec(source, weights, overrides)


def _defaults(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The spec language's defaults: ImageNet's mean and std for RGB, else 0 and 1."""
    from ghostspec.plan.ir import IMAGENET_MEAN, IMAGENET_STD

    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.0,) * channels, (1.0,) * channels


def _output_count(model: Any) -> int | None:
    """The class scores per image, None for any other output: several outputs, feature maps,
    or a backbone's pooled features (`keras.modelfile.pooled_output`)."""
    from ghostspec.keras.modelfile import pooled_output

    if len(model.outputs) != 1:
        return None
    shape = model.outputs[0].shape
    if len(shape) != 2 or shape[-1] is None or pooled_output(model) is not None:
        return None
    return int(shape[-1])


def keras_runner(model: Any) -> Runner:
    """A Keras model in inference mode, as a function of float32 batches: traced once on
    TensorFlow, called as it is on the other backends."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda x: np.asarray(
            keras.ops.convert_to_numpy(model(x, training=False)), np.float32
        )
    import tensorflow as tf

    step = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: np.asarray(step(x), np.float32)


def _from_keras(saved: SavedSource, model: Any, meta: ModelMetadata | None) -> ResolvedModel:
    from ghostspec.data.images import DEFAULT_CROP_PCT
    from ghostspec.data.scoring import is_probability_model
    from ghostspec.deploy.export import Preprocessing
    from ghostspec.keras.modelfile import image_input_shape

    h, w, channels = image_input_shape(model, str(saved.path))
    static = None if h is None or w is None else (h, w)
    mean, std = _defaults(channels)
    pre = Preprocessing(
        mean=tuple((meta and meta.mean) or mean),
        std=tuple((meta and meta.std) or std),
        crop_pct=float((meta and meta.crop_pct) or DEFAULT_CROP_PCT),
    )
    # a fixed-size model is fed its own size; one that takes any size, the size it was
    # trained at (its metadata), else the usual 224
    size = static or (meta and meta.input_size) or (DEFAULT_SIZE, DEFAULT_SIZE)
    return ResolvedModel(
        kind="keras" if saved.run is None else "run",
        path=saved.path if saved.run is None else saved.run,
        name=default_stem(saved) or model.name,
        run=keras_runner(model),
        classes=(meta and meta.classes) or _classes_txt(saved.run),
        preprocessing=pre,
        input_size=(int(size[0]), int(size[1])),
        static=static,
        channels=channels,
        outputs=_output_count(model),
        probabilities=is_probability_model(model),
        model=model,
    )


def _from_artifact(path: Path) -> ResolvedModel:
    from ghostspec.deploy.artifact import load_artifact
    from ghostspec.deploy.export import Preprocessing

    artifact = load_artifact(path)
    meta = artifact.metadata
    if meta.classes is not None and artifact.outputs not in (None, len(meta.classes)):
        raise _error(
            path,
            f"the model has {artifact.outputs} outputs but its metadata names "
            f"{len(meta.classes)} classes",
            "export the model again, which rewrites both",
        )
    h, w, channels = artifact.input_shape
    return ResolvedModel(
        kind="onnx" if path.suffix.lower() == ".onnx" else "tflite",
        path=path,
        name=meta.name,
        run=artifact.run,
        classes=meta.classes,
        preprocessing=Preprocessing(mean=meta.mean, std=meta.std, crop_pct=meta.crop_pct),
        input_size=(h, w),
        static=(h, w),
        channels=channels,
        outputs=artifact.outputs,
        probabilities=meta.outputs == "probabilities",
        quantize=meta.quantize,
    )


def _from_spec(
    source: str | Path, weights: str | Path | None, overrides: Sequence[str]
) -> ResolvedModel:
    from ghostspec.data.images import DEFAULT_CROP_PCT
    from ghostspec.data.scoring import is_probability_model
    from ghostspec.deploy.export import Preprocessing
    from ghostspec.keras.build import build
    from ghostspec.plan import pipeline

    plan = pipeline.plan(str(source), list(overrides))
    if weights is None:
        raise _error(
            source,
            "a spec alone is an untrained model; its outputs measure nothing",
            "pass --weights PATH, a .keras file or a run folder",
        )
    model = build(plan, weights=weights)
    h, w, channels = plan.input_shape
    static = None if h is None or w is None else (h, w)
    return ResolvedModel(
        kind="spec",
        path=Path(source),
        name=plan.name,
        run=keras_runner(model),
        classes=None,
        preprocessing=Preprocessing(mean=plan.mean, std=plan.std, crop_pct=DEFAULT_CROP_PCT),
        input_size=static or (DEFAULT_SIZE, DEFAULT_SIZE),
        static=static,
        channels=channels,
        outputs=_output_count(model),
        probabilities=is_probability_model(model),
        model=model,
    )
