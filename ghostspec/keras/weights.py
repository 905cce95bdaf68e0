"""Reference state dicts (timm / Huawei GhostNet, PyTorch layouts) in and out of Keras models.

The mapping is driven by the plan: `Plan.tensors()` lists every tensor the network owns with its
PyTorch name and shape, and each plan layer's reference name, made legal on every backend
(`layer_name`: dots become dashes), is its Keras layer's name. Loading checks
the whole file against that list first and assigns nothing unless everything fits; all problems
are reported together as one SpecError.

Importing this module is cheap: numpy and safetensors load with it, Keras and PyTorch only when a
function needs them.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.files import read_regular_file
from ghostspec.keras.torchfile import (
    PickledObject,
    TorchFileError,
    Unsupported,
    is_zip,
    read_torch_zip,
)
from ghostspec.plan.ir import HALVES, BatchNorm, Layer, Linear, Plan, layer_name, reference_name

if TYPE_CHECKING:
    import keras

StateDict = dict[str, np.ndarray]

TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt", ".bin", ".ckpt")
IGNORED_SUFFIXES = (".num_batches_tracked",)
WEIGHTS_LIMIT = 2 << 30  # GhostNet 1.0x is 21 MB; a width-4.0 large model stays under 1 GB
WRAPPER_KEYS = ("state_dict", "model")
LISTED_TENSORS = 5  # tensors named one by one for the same problem; more are counted
BN_VARIABLES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def _error(file: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(file=file, message=message, hint=hint)])


# ---------------------------------------------------------------------------------------- reading


def read_state_dict(path: str | Path) -> StateDict:
    """Read a state dict from .safetensors, .npz or a PyTorch .pth/.pt/.bin file.

    Checkpoint wrappers are undone: a top-level "state_dict" or "model" entry, and the "module."
    prefix DataParallel adds. PyTorch's zip format is read without PyTorch and without running
    anything from the file (`ghostspec.keras.torchfile`); only the legacy format needs torch. Raises
    SpecError for missing, unreadable, oversized or unknown files and for content that is not a
    mapping of names to dense tensors.
    """
    file = str(path)
    name = Path(path).name.lower()
    if not name.endswith((".safetensors", ".npz", *TORCH_SUFFIXES)):
        raise _error(
            file,
            f"unknown weights format {Path(path).suffix!r}",
            "use .safetensors, .npz, or a PyTorch .pth/.pt/.bin file",
        )
    data = read_regular_file(path, WEIGHTS_LIMIT, "weights file")
    try:
        if name.endswith(".safetensors"):
            from safetensors.numpy import load

            raw: Any = load(data)
        elif name.endswith(".npz"):
            raw = _read_npz(data, file)
        else:
            raw = _read_torch(data, file)
    except SpecError:
        raise
    except Exception as exc:  # any reader failure is a bad input file, not a ghostspec fault
        raise _error(file, f"cannot read weights: {_one_line(str(exc))}") from None
    return unwrap(raw, file)


def _read_npz(data: bytes, file: str) -> Mapping[str, Any]:
    if data.startswith(b"\x93NUMPY"):
        raise _error(
            file,
            "holds a single array (numpy.save's .npy format), not named tensors",
            "save the state dict with numpy.savez(path, **state)",
        )
    if not is_zip(data):
        raise _error(file, "is not an .npz archive (a zip of named arrays)")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # declared sizes, before numpy reads
        if sum(info.file_size for info in archive.infolist()) > WEIGHTS_LIMIT:
            raise _error(file, f"its arrays unpack to more than {WEIGHTS_LIMIT:,} bytes")
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _read_torch(data: bytes, file: str) -> Any:
    if is_zip(data):
        try:
            return read_torch_zip(data, WEIGHTS_LIMIT)
        except PickledObject as err:
            raise _pickled(file, err.qualified) from None
        except TorchFileError as err:
            raise _error(file, f"cannot read the PyTorch file: {err}") from None
    if not data.startswith(b"\x80"):  # the legacy format is a pickle: protocol 2 and later
        what = (
            "is empty" if not data else "is not a PyTorch file (neither a zip archive nor a pickle)"
        )
        raise _error(
            file,
            f"{what}; it may be truncated or damaged",
            "save the weights with torch.save(model.state_dict(), path) or as .safetensors",
        )
    try:
        import torch
    except ImportError:
        raise _error(
            file,
            "this PyTorch file is in the legacy format (PyTorch before 1.6), which ghostspec "
            "reads only with PyTorch installed",
            "pip install torch, or re-save it with a current PyTorch or as .safetensors",
        ) from None
    import pickle

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's refusal names the global it met
        found = re.search(r"GLOBAL ([\w.]+)", _one_line(str(err)))
        raise _pickled(file, found.group(1) if found else None) from None


def _pickled(file: str, qualified: str | None) -> SpecError:
    what = f" ({qualified})" if qualified else ""
    return _error(
        file,
        f"the file holds pickled Python objects{what}, and ghostspec reads only tensors",
        "save the weights alone: torch.save(model.state_dict(), path)",
    )


def _one_line(text: str) -> str:
    """A library's message without ANSI colour codes and line breaks."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).split())


def unwrap(raw: Any, file: str = "<state dict>") -> StateDict:
    """The tensors of a checkpoint as numpy arrays, without wrapper keys or a "module." prefix.

    Raises SpecError, naming every entry at fault, unless `raw` is a mapping of string names to
    dense tensors; entries that are not tensors (an epoch number, a list) are left out.
    """
    if not isinstance(raw, Mapping):
        array = _to_numpy(raw)
        if isinstance(array, np.ndarray):
            what = f"a single tensor of shape {list(array.shape)}"
        elif isinstance(array, Unsupported):
            what = array.kind
        else:
            what = f"a {type(raw).__name__}"
        raise _error(
            file,
            f"holds {what}, not a state dict (a mapping of tensor names to tensors)",
            "save the weights with torch.save(model.state_dict(), path) or as .safetensors",
        )
    for key in WRAPPER_KEYS:
        inner = raw.get(key)
        if isinstance(inner, Mapping):
            raw = inner
            break
    out: StateDict = {}
    problems: list[Diagnostic] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            message = f"the key {key!r} is not a string; a state dict maps tensor names to tensors"
            problems.append(Diagnostic(file, message))
            continue
        array = _to_numpy(value)
        if isinstance(array, Unsupported):
            message = f"tensor {key!r} is {array.kind}; ghostspec loads dense tensors only"
            problems.append(Diagnostic(file, message, hint="save the float (unconverted) weights"))
        elif array is not None:
            out[key.removeprefix("module.")] = array
    if problems:
        raise SpecError(problems)
    if out and all(re.fullmatch(r"arr_\d+", key) for key in out):
        raise _error(
            file,
            f"its {len(out)} array(s) have no names (arr_0, ...)",
            "save the state dict with numpy.savez(path, **state) so each tensor keeps its name",
        )
    return out


def _to_numpy(value: Any) -> np.ndarray | Unsupported | None:
    """numpy arrays pass; torch tensors convert (bfloat16/half via float32), quantized and sparse
    ones become Unsupported; anything else is not a tensor (None)."""
    if isinstance(value, np.ndarray | Unsupported):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        if getattr(value, "is_quantized", False):
            return Unsupported("a quantized tensor")
        if str(getattr(value, "layout", "torch.strided")) != "torch.strided":
            return Unsupported(f"a {value.layout} tensor")
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        return cast(np.ndarray, tensor.numpy())  # duck-typed torch tensor: numpy() is Any
    return None


# --------------------------------------------------------------------------------------- layouts


def to_keras(layer: Layer, kind: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """(Keras variable attribute, value) for one reference tensor of `layer`."""
    if isinstance(layer, BatchNorm):
        return BN_VARIABLES[kind], array
    if kind == "bias":
        return "bias", array
    if isinstance(layer, Linear):
        return "kernel", array.T
    if layer.depthwise:  # [C*m, 1, kh, kw] -> [kh, kw, C, m]
        c, m = layer.cin, layer.depth_multiplier
        return "kernel", array.reshape(c, m, *layer.kernel_hw).transpose(2, 3, 0, 1)
    return "kernel", array.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def conv_to_reference(kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    """A Keras kernel in PyTorch layout: HWIO -> OIHW, or [kh, kw, C, m] -> [C*m, 1, kh, kw]."""
    if depthwise:
        kh, kw, c, m = kernel.shape
        return kernel.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    return kernel.transpose(3, 2, 0, 1)


# --------------------------------------------------------------------------------------- loading


def reference_layer(model: Any, name: str) -> Any:
    """The layer of `model` for the reference module `name`: named by `layer_name`, or by the
    dotted name itself in a `.keras` file written before layer names were legal everywhere."""
    try:
        return model.get_layer(layer_name(name))
    except ValueError:
        return model.get_layer(name)


def _plan_layers(plan: Plan) -> Iterator[Layer]:
    for node in plan.nodes:
        yield from node.layers()


def check_state_dict(
    plan: Plan, state: Mapping[str, np.ndarray], file: str, skip: Collection[str] = ()
) -> list[Diagnostic]:
    """Every missing, unexpected, mis-shaped, non-float and non-finite tensor of `state`, leaving
    out the tensors named in `skip`."""
    expected = {t.name: t.shape for t in plan.tensors() if t.name not in skip}
    given = {k: v for k, v in state.items() if not k.endswith(IGNORED_SUFFIXES) and k not in skip}
    fit: list[str] = []  # names and shapes: one spec/checkpoint mismatch explains them all
    values: list[str] = []
    kinds: dict[str, list[str]] = {}  # non-float dtype -> the tensors holding it
    for name, shape in expected.items():
        if name not in given:
            fit.append(f"missing tensor {name!r} (expected shape {list(shape)})")
            continue
        array = given[name]
        if tuple(array.shape) != shape:
            fit.append(
                f"tensor {name!r} has shape {list(array.shape)}, the model needs {list(shape)}"
            )
        elif array.dtype.kind != "f":
            kinds.setdefault(_dtype_name(array.dtype), []).append(name)
        else:
            nan = int(np.count_nonzero(np.isnan(array)))
            inf = int(np.count_nonzero(np.isinf(array)))
            if nan or inf:
                values.append(
                    f"tensor {name!r} has {nan:,} NaN and {inf:,} infinite values, so the model "
                    "would compute NaN"
                )
    floats = "ghostspec loads floating-point weights only (float16, bfloat16, float32, float64)"
    dtypes: list[str] = []
    for kind, names in kinds.items():  # a whole int8 checkpoint is one line, not hundreds
        if len(names) > LISTED_TENSORS:
            shown = ", ".join(repr(n) for n in names[:3])
            dtypes.append(f"{len(names)} tensors hold {kind} values ({shown} and more); {floats}")
        else:
            dtypes.extend(f"tensor {n!r} holds {kind} values; {floats}" for n in names)
    values = dtypes + values
    for name in given:
        if name not in expected:
            fit.append(f"unexpected tensor {name!r} (shape {list(given[name].shape)})")
    fit_hint = (
        "does the spec match the checkpoint (width, head.classes, input channels, blocks, "
        "ghost.attention, ghost.branches)?"
    )
    value_hint = "export the float weights of a trained model; these cannot be used as they are"
    return [
        Diagnostic(file, message, hint=fit_hint if i == 0 else None)
        for i, message in enumerate(fit)
    ] + [
        Diagnostic(file, message, hint=value_hint if i == 0 else None)
        for i, message in enumerate(values)
    ]


def omitted_tensors(plan: Plan, state: Mapping[str, np.ndarray]) -> list[str]:
    """The tensors of `state` that belong to modules a feature extractor leaves out (the blocks
    after its last tap, the last 1x1 conv, conv_head, classifier): a classifier checkpoint's
    head, which a backbone skips."""
    prefixes = tuple(f"{name}." for name in plan.omitted)
    return sorted(k for k in state if prefixes and k.startswith(prefixes))


def _dtype_name(dtype: np.dtype) -> str:
    kinds = {"U": "text", "S": "bytes", "O": "Python object", "V": "raw"}
    return kinds.get(dtype.kind, str(dtype))


def load_weights(
    model: keras.Model,
    plan: Plan,
    weights: str | Path | Mapping[str, np.ndarray],
    *,
    skip: Collection[str] = (),
) -> tuple[str, ...]:
    """Assign a reference state dict (a file or a mapping) to a model built from `plan`.

    Nothing is assigned unless every tensor fits: otherwise one SpecError lists every missing,
    unexpected, mis-shaped, non-float and non-finite tensor. `num_batches_tracked` buffers are
    ignored. Tensors named in `skip` are neither required nor assigned: their variables keep their
    initial values (fine-tuning re-initialises a classifier whose class count differs). A feature
    extractor skips the head of a classifier checkpoint (`omitted_tensors`), with a logged note;
    those skipped names are returned.
    """
    if isinstance(weights, Mapping):
        file, state = "<state dict>", unwrap(weights)
    else:
        file, state = str(weights), read_state_dict(weights)
    skipped = omitted_tensors(plan, state)
    if skipped:
        state = {k: v for k, v in state.items() if k not in set(skipped)}
    problems = check_state_dict(plan, state, file, skip)
    if problems:
        raise SpecError(problems)
    assignments = []
    kept = set()
    for layer in _plan_layers(plan):
        target = reference_layer(model, layer.name)
        for tensor in layer.tensors():
            kind = tensor.name.rsplit(".", 1)[1]
            if tensor.name in skip:
                attribute, _ = to_keras(layer, kind, np.zeros(tensor.shape))
                kept.add(id(getattr(target, attribute)))
                continue
            attribute, value = to_keras(layer, kind, state[tensor.name])
            variable = getattr(target, attribute)
            value = value.astype(variable.dtype, copy=False)
            if tuple(value.shape) != tuple(variable.shape):
                raise RuntimeError(f"{tensor.name} maps to {variable.path} of another shape")
            assignments.append((variable, value))
    covered = kept | {id(variable) for variable, _ in assignments}
    left = [v.path for v in model.weights if id(v) not in covered]
    if left:
        raise RuntimeError(f"model weights the plan does not describe: {left}")
    previous = [variable.numpy() for variable, _ in assignments]
    try:
        for variable, value in assignments:
            variable.assign(value.astype(variable.dtype, copy=False))
    except BaseException:  # all or nothing, even if the framework fails half-way
        for (variable, _), old in zip(assignments, previous, strict=True):
            variable.assign(old)
        raise
    if skipped:
        logging.getLogger("ghostspec").info(skipped_note(file, skipped))
    return tuple(skipped)


def skipped_note(file: str, skipped: Sequence[str]) -> str:
    """One line saying which of a checkpoint's modules a feature extractor did not load."""
    modules: list[str] = []
    for name in skipped:
        parts = name.split(".")
        module = ".".join(parts[:3]) if parts[0] == "blocks" else parts[0]
        if module not in modules:
            modules.append(module)
    shown = ", ".join(modules[:6]) + (", ..." if len(modules) > 6 else "")
    return (
        f"{file}: skipped {len(skipped)} tensors of modules this feature extractor does not "
        f"have ({shown})"
    )


# ------------------------------------------------------------------------------------- exporting


def export_state_dict(model: keras.Model, source: Any = None) -> StateDict:
    """The model's weights as a reference-layout state dict (PyTorch names, shapes, layouts).

    Names come from the layer names, which spell the reference module names with dashes (or
    dots, in files written before 0.2). `source` (a spec or plan) is accepted for symmetry with
    `build` and not needed. `num_batches_tracked` is left out;
    PyTorch's BatchNorm fills it in on load.
    """
    del source
    from keras import layers

    halves = tuple(f".{h}" for h in HALVES)
    if any(reference_name(layer.name).endswith(halves) for layer in model.layers):
        raise _error(
            model.name,
            "this is a deploy model (BatchNorm folded into the convs, ghost halves split), which "
            "has no reference-layout state dict",
            "export the weights of the model you passed to ghostspec.fuse(..., batch_norm=True)",
        )
    out: StateDict = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        name = reference_name(layer.name)
        if isinstance(layer, layers.BatchNormalization):
            for kind, attribute in BN_VARIABLES.items():
                out[f"{name}.{kind}"] = _numpy(getattr(layer, attribute))
        elif isinstance(layer, layers.Dense):
            out[f"{name}.weight"] = _numpy(layer.kernel).T.copy()
            out[f"{name}.bias"] = _numpy(layer.bias)
        elif isinstance(layer, layers.DepthwiseConv2D | layers.Conv2D):
            depthwise = isinstance(layer, layers.DepthwiseConv2D)
            out[f"{name}.weight"] = conv_to_reference(_numpy(layer.kernel), depthwise).copy()
            if layer.use_bias:
                out[f"{name}.bias"] = _numpy(layer.bias)
        else:
            raise TypeError(f"cannot export layer {name!r} of type {type(layer).__name__}")
    return out


def _numpy(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy())
