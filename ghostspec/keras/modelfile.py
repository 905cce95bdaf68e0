"""The .keras model file: the one place ghostspec reads or writes one.

Reading is for untrusted files. A .keras file is a zip archive (config.json, metadata.json,
model.weights.h5) and Keras rebuilds the model from the classes and functions config.json names,
so before Keras sees the file it must be a regular file and a zip archive whose members declare
sizes within bounds (nothing is decompressed first), and config.json may name only Keras' own
classes and functions and ghostspec's registered layers: no Lambda, no foreign class, no
function from another module. Keras then loads it in safe mode, with ghostspec's layers passed
as custom objects. Every failure is one SpecError line naming the file and the reason.

ghostspec's own facts about a model (class names, normalisation, input size, the spec it was
built from) travel in the same archive as an extra member, `ghostspec.json`, which Keras ignores.

Importing this module does not import TensorFlow or Keras; loading and saving do.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import PathLike, atomic_path, check_output, open_regular_file, scratch_tempdir

if TYPE_CHECKING:
    import keras

SUFFIX = ".keras"
METADATA_MEMBER = "ghostspec.json"
CONFIG_MEMBER = "config.json"
KERAS_MEMBERS = frozenset({"metadata.json", CONFIG_MEMBER, "model.weights.h5", "model.weights.npz"})
MiB = 1 << 20
MAX_FILE_BYTES = 16 << 30  # far above any GhostNet with optimizer state
MAX_MEMBERS = 1000
# What a member may declare it decompresses to; checked before a byte is decompressed.
MEMBER_LIMITS = {CONFIG_MEMBER: 64 * MiB, "metadata.json": MiB, METADATA_MEMBER: 8 * MiB}
MAX_EXPANSION = 100  # Keras stores members uncompressed; a real member never expands 100-fold
# Layers that run Python code or load other files when they are built or called.
CODE_LAYERS = frozenset({"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"})
# Keras modules whose functions a config may name (activations, losses, ...), never others.
FUNCTION_MODULES = ("activations", "losses", "metrics", "initializers", "regularizers")
HINT = "use a .keras file written by `ghostspec build` (or by ghostspec's training)"
# The registered names ghostspec gives Keras, known here without importing Keras so a bad file is
# refused at once: the backend's layer, and the schedule and optimizers that `ghostspec train`
# registers (a run's last.keras names them). A test keeps this equal to both rooms' tables.
GHOSTSPEC_LAYERS = frozenset(
    {
        "ghostspec>LegacyNearestUpsample",
        "ghostspec>DepthwiseConv2D",
        "ghostspec>WarmupSchedule",
        "ghostspec>L2SGD",
        "ghostspec>TFRMSprop",
    }
)

Floats = tuple[Annotated[float, Field(allow_inf_nan=False)], ...]


class ValidationSplit(BaseModel):
    """Which images of its image folder a trained model was validated on, where that split was
    drawn (a plain DIR/<class>/* folder, or train/ without val/): the held-out `fraction` and
    the `seed` draw it again, and `digest` (sha-256 of the split's file list, labels included)
    tells whether a folder gives the same images (`ghostspec.data.splits`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    layout: Literal["split", "flat"]
    fraction: Annotated[float, Field(gt=0, lt=1)]
    seed: Annotated[int, Field(ge=0)]
    images: Annotated[int, Field(ge=0)]
    digest: Annotated[str, Field(pattern="^[0-9a-f]{64}$")]


class ModelMetadata(BaseModel):
    """What ghostspec knows about a model beyond Keras' config; stored as `ghostspec.json`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    classes: tuple[str, ...] | None = None
    mean: Floats | None = None
    std: tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...] | None = None
    input_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None
    crop_pct: Annotated[float, Field(gt=0, le=1)] | None = None
    spec: str | None = None
    validation: ValidationSplit | None = None  # a trained model's drawn validation split

    def to_json(self) -> str:
        return json.dumps({"ghostspec_metadata": 1, **self.model_dump(mode="json")}, indent=2)

    @classmethod
    def from_json(cls, text: bytes | str, file: str = METADATA_MEMBER) -> ModelMetadata:
        """Parse a `ghostspec.json` member. Raises SpecError naming `file`."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return cls.model_validate(data)
        except (ValueError, RecursionError, ValidationError) as err:
            reason = _short(err.errors()[0]["msg"]) if isinstance(err, ValidationError) else ""
            message = f"its {METADATA_MEMBER} is not valid ghostspec metadata"
            raise _error(file, f"{message} ({reason})" if reason else message) from None


@dataclass(frozen=True)
class LoadedModel:
    """A model read from a .keras file, with ghostspec's metadata where the file has it."""

    model: keras.Model
    metadata: ModelMetadata | None
    path: Path


def _error(file: str, message: str, hint: str | None = HINT) -> SpecError:
    return SpecError([Diagnostic(file=file, message=message.strip(), hint=hint)])


def _short(text: str, limit: int = 160) -> str:
    """The first line of a library's message, without the config dumps Keras appends."""
    if "Exception encountered:" in text:
        text = text.rsplit("Exception encountered:", 1)[1]
    for cut in ("\n", " config=", " Full object config", " Received: "):
        text = text.split(cut, 1)[0]
    text = text.strip().rstrip(".:")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------- reading


def load_model_file(path: PathLike, *, compile: bool = True) -> LoadedModel:
    """Read a .keras file: checked as an untrusted archive first, then loaded by Keras in safe
    mode with ghostspec's layers registered. Only image models (one input, batch x H x W x C)
    are accepted. Raises SpecError with one readable line."""
    path = Path(path)
    name = str(path)
    if path.suffix.lower() != SUFFIX:
        raise _error(name, f"is not a Keras model file (the name must end in {SUFFIX})")
    with open_regular_file(path, MAX_FILE_BYTES, "model file", HINT) as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
            raise _error(
                name,
                "is not a Keras model file (not a zip archive); it may be truncated or damaged",
            ) from None
        with archive:
            _check_members(name, archive)
            config = _read_member(name, archive, CONFIG_MEMBER)
            _check_config(name, config)
            metadata = None
            if METADATA_MEMBER in archive.namelist():
                text = _read_member(name, archive, METADATA_MEMBER)
                metadata = ModelMetadata.from_json(text, name)
            with _keras_view(name, handle, archive) as keras_file:
                model = _keras_load(name, keras_file, compile)
    image_input_shape(model, name)
    return LoadedModel(model=model, metadata=metadata, path=path)


def read_model_metadata(path: PathLike) -> ModelMetadata | None:
    """The ghostspec metadata of a .keras file without loading the model (no Keras import):
    None when the file has none. The archive is checked as `load_model_file` checks it."""
    name = str(path)
    with open_regular_file(path, MAX_FILE_BYTES, "model file", HINT) as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
            raise _error(
                name,
                "is not a Keras model file (not a zip archive); it may be truncated or damaged",
            ) from None
        with archive:
            _check_members(name, archive)
            if METADATA_MEMBER not in archive.namelist():
                return None
            return ModelMetadata.from_json(_read_member(name, archive, METADATA_MEMBER), name)


def _check_members(name: str, archive: zipfile.ZipFile) -> None:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _error(name, f"holds {len(infos):,} archive members; a Keras model holds three")
    names = {info.filename for info in infos}
    if CONFIG_MEMBER not in names:
        raise _error(name, f"is a zip archive but not a Keras model file (no {CONFIG_MEMBER})")
    if not names & {"model.weights.h5", "model.weights.npz"}:
        raise _error(name, "is a Keras archive without weights (no model.weights.h5)")
    for info in infos:
        limit = MEMBER_LIMITS.get(info.filename)
        declared = info.file_size
        if limit is not None and declared > limit:
            raise _error(
                name,
                f"its {info.filename} declares {declared:,} bytes; at most {limit:,} are read",
            )
        if declared > MiB and declared > MAX_EXPANSION * max(info.compress_size, 1):
            raise _error(
                name,
                f"its {info.filename} declares {declared:,} bytes but stores only "
                f"{info.compress_size:,}: a decompression bomb, not a model",
            )


def _read_member(name: str, archive: zipfile.ZipFile, member: str) -> bytes:
    try:
        return archive.read(member)  # sizes checked in _check_members; a lie fails the CRC
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise _error(
            name, f"its {member} cannot be read ({_short(str(err))}); it is damaged"
        ) from None


def _keras_module(module: object) -> bool:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def _config_problem(config: Any) -> str | None:
    """Why config.json may not be handed to Keras: it names code or a foreign class."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        stack.extend(item.values())
        kind = item.get("class_name")
        if not isinstance(kind, str):
            continue
        module, registered = item.get("module"), item.get("registered_name")
        if kind == "__lambda__":
            return "it holds Python code (a lambda); ghostspec never runs code from a model file"
        if kind in CODE_LAYERS:
            return (
                f"it holds a {kind} layer, which runs Python code or loads other files; "
                "ghostspec does not load such layers"
            )
        if module is None or kind.startswith("__"):
            continue  # Keras' own markers (tensors, arrays) and plain names it resolves itself
        if isinstance(registered, str) and registered in GHOSTSPEC_LAYERS:
            continue
        if kind == "function":
            function = f"{module}.{item.get('config')}"
            if _keras_module(module) and any(
                part in FUNCTION_MODULES for part in module.split(".")
            ):
                continue
            return (
                f"its config names the function {function!r}; ghostspec loads only Keras' "
                "activations, losses and the like, and cannot load it"
            )
        if _keras_module(module):
            continue
        label = registered if isinstance(registered, str) else kind
        return (
            f"it uses the custom class {label!r} (module {module!r}), which is neither Keras' "
            "nor ghostspec's; ghostspec cannot load it"
        )
    return None


def _check_config(name: str, raw: bytes) -> None:
    try:
        config = json.loads(raw)
    except RecursionError:
        raise _error(name, f"its {CONFIG_MEMBER} is nested too deeply to read") from None
    except ValueError:
        raise _error(name, f"its {CONFIG_MEMBER} is not valid JSON; the file is damaged") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise _error(name, f"its {CONFIG_MEMBER} does not describe a Keras model")
    problem = _config_problem(config)
    if problem:
        raise _error(name, f"cannot be loaded: {problem}")


@contextlib.contextmanager
def _keras_view(name: str, handle: IO[bytes], archive: zipfile.ZipFile) -> Iterator[IO[bytes]]:
    """The archive as Keras should see it: only its own members. Keras extracts every member
    to a temporary folder when it finds more than its three, so then an in-memory copy of those
    three (uncompressed, as Keras writes them) is handed over instead."""
    if {info.filename for info in archive.infolist()} <= KERAS_MEMBERS:
        handle.seek(0)
        yield handle
        return
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as copy:
            for info in archive.infolist():
                if info.filename in KERAS_MEMBERS:
                    big = info.file_size >= 1 << 31
                    with (
                        archive.open(info) as src,
                        copy.open(info.filename, "w", force_zip64=big) as dst,
                    ):
                        shutil.copyfileobj(src, dst, MiB)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise _error(name, f"cannot be read ({_short(str(err))}); it is damaged") from None
    buffer.seek(0)
    yield buffer


def _keras_load(name: str, handle: IO[bytes], compile: bool) -> keras.Model:
    import keras
    from keras.src.saving import saving_lib, serialization_lib

    from ghostspec.keras.layers import known_objects

    try:
        # The scope keeps safe mode on even if this process enabled unsafe deserialization.
        with serialization_lib.SafeModeScope(safe_mode=True):
            model = saving_lib.load_model(
                handle, custom_objects=known_objects(), compile=compile, safe_mode=True
            )
    except SpecError:
        raise
    except Exception as err:  # Keras raises many types for a bad archive
        raise _error(name, f"cannot be loaded: {_short(str(err)) or type(err).__name__}") from None
    if not isinstance(model, keras.Model):
        raise _error(name, f"holds a {type(model).__name__}, not a Keras model")
    return model


def image_input_shape(model: Any, file: str) -> tuple[int | None, int | None, int]:
    """(H, W, C) of an image model's one input (H and W None when any size is accepted), in
    either layout (a model built channels-first takes (N, C, H, W)), or a SpecError: ghostspec
    exports, evaluates and trains image classifiers only."""
    inputs = list(getattr(model, "inputs", None) or [])
    if len(inputs) != 1:
        raise _error(
            file,
            f"the model has {len(inputs)} inputs; ghostspec works with models that take one "
            "image batch",
            None,
        )
    shape = tuple(inputs[0].shape)
    first = len(shape) == 4 and _channels_first(model)
    if first:
        shape = (shape[0], shape[2], shape[3], shape[1])
    if len(shape) != 4 or shape[3] is None:
        shown = "(" + ", ".join("None" if v is None else str(v) for v in shape) + ")"
        raise _error(
            file,
            f"the model's input has shape {shown}, which is not an image batch (batch, height, "
            "width, channels); ghostspec works with image models only",
            None,
        )
    h, w, c = shape[1], shape[2], shape[3]
    return (None if h is None else int(h), None if w is None else int(w), int(c))


# Layers that pass their input on with no weights of their own: looking back from a model's
# output through them finds the layer that made its values.
_PASS_THROUGH = frozenset(
    {"Flatten", "Reshape", "Activation", "Softmax", "ReLU", "Dropout", "Identity", "InputLayer"}
)
_POOLING = frozenset({"GlobalAveragePooling2D", "GlobalMaxPooling2D"})


def pooled_output(model: Any) -> str | None:
    """The name of the global pooling layer whose values are the model's output (a backbone's
    pooled features: no classifier after the pooling), or None. Looks back from the output
    through layers without weights (flatten, activations, dropout); a Dense layer, or a 1x1
    convolution after the pooling (Keras' MobileNetV3 classifier), is a classifier."""
    try:
        history = model.outputs[0]._keras_history
        layer = history.operation if hasattr(history, "operation") else history[0]
    except (AttributeError, IndexError, TypeError):
        return None
    for _ in range(64):
        kind = type(layer).__name__
        if kind in _POOLING:
            return str(layer.name)
        if kind not in _PASS_THROUGH or layer.weights:
            return None
        try:
            history = layer.input._keras_history
            layer = history.operation if hasattr(history, "operation") else history[0]
        except (AttributeError, IndexError, TypeError, ValueError):
            return None
    return None


def _channels_first(model: Any) -> bool:
    """Whether the model's convolutions read (N, C, H, W); False for a model without any."""
    for layer in getattr(model, "layers", ()):
        data_format = getattr(layer, "data_format", None)
        if data_format is not None and hasattr(layer, "kernel_size"):
            return bool(data_format == "channels_first")
    return False


# ---------------------------------------------------------------------------------- writing


@contextlib.contextmanager
def _optimizer_left_out(model: Any, leave_out: bool) -> Iterator[None]:
    optimizer = getattr(model, "optimizer", None)
    if not leave_out or optimizer is None:
        yield
        return
    model.optimizer = None
    try:
        yield
    finally:
        model.optimizer = optimizer


def save_model_file(
    model: Any,
    target: PathLike,
    metadata: ModelMetadata | None = None,
    *,
    include_optimizer: bool = True,
    inputs: Iterable[PathLike | None] = (),
) -> Path:
    """Write `model` to the .keras file `target` atomically, with `metadata` as the archive
    member ghostspec.json. `inputs`: files the command read, which the output may not replace.
    Keras' temporary files go to a scratch folder beside the target that is always removed.
    Raises SpecError for a bad target or a failed write (full disk, permissions)."""
    path = check_output(target, inputs=inputs, suffixes=(SUFFIX,), what="model file")
    with atomic_path(path, inputs=inputs) as temp, scratch_tempdir(path):
        with _optimizer_left_out(model, not include_optimizer):
            model.save(temp)
        if metadata is not None:
            with zipfile.ZipFile(temp, "a") as archive:
                archive.writestr(METADATA_MEMBER, metadata.to_json())
    return path
