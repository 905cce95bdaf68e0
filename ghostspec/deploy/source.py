"""What `ghostspec export` exports when it is given a saved model: a run folder (its best.keras)
or a .keras file, with what the file's metadata says.

The metadata (`ghostspec.keras.modelfile.ModelMetadata`, written by `ghostspec train`) gives the
calibration preprocessing (mean, std, crop_pct), the class names, and the spec the model was
built from, which lets the deploy form be made as for a spec: every BatchNorm and every
GhostNetV3 branch set folded into its conv (`ghostspec.keras.fusion.fuse`). A file without a spec in
its metadata is exported as it is. TensorFlow is imported only when the model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostspec.diagnostics import Diagnostic, SpecError

if TYPE_CHECKING:
    from ghostspec.deploy.export import Preprocessing
    from ghostspec.keras.modelfile import ModelMetadata

MODEL_FILE = "best.keras"  # the model of a run folder (the best validation top-1)
RUN_HINT = (
    "pass a run folder written by `ghostspec train` (runs/<name>-<n>), a .keras file or a spec"
)


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
    """Load the model (ghostspec.keras.modelfile), take its preprocessing and classes from its
    metadata, and with `fuse` make its deploy form from the spec in the metadata."""
    from ghostspec.deploy.export import Preprocessing
    from ghostspec.keras.modelfile import image_input_shape, load_model_file

    loaded = load_model_file(saved.path, compile=False)
    model, meta = loaded.model, loaded.metadata
    h, w, _ = image_input_shape(model, str(saved.path))
    static = None if h is None or w is None else (h, w)
    defaults = Preprocessing()
    pre = Preprocessing(
        mean=tuple((meta and meta.mean) or defaults.mean),
        std=tuple((meta and meta.std) or defaults.std),
        crop_pct=float((meta and meta.crop_pct) or defaults.crop_pct),
    )
    deploy = model
    if fuse and meta is not None and meta.spec:
        deploy = _deploy_form(model, meta, static, saved.path)
    elif fuse and any("_rpr_" in layer.name for layer in model.layers):
        raise _error(
            saved.path,
            "this GhostNetV3 model has training branches, and fusing them needs the spec it was "
            "built from, which its metadata does not carry",
            "export the spec with --weights, or pass --no-fuse",
        )
    name = default_stem(saved) or model.name
    classes = (meta and meta.classes) or _classes_txt(saved.run)
    return SavedModel(deploy, model, name, pre, static, classes, deploy is not model)


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
