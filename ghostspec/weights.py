"""Reference state dicts (timm / Huawei GhostNet, PyTorch layouts) in and out of Keras models.

The mapping is driven by the plan: `Plan.tensors()` lists every tensor the network owns with its
PyTorch name and shape, and each plan layer's name is also its Keras layer's name. Loading checks
the whole file against that list first and assigns nothing unless everything fits; all problems
are reported together as one SpecError.

Importing this module is cheap: numpy and safetensors load with it, Keras and PyTorch only when a
function needs them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.plan import HALVES, BatchNorm, Layer, Linear, Plan

if TYPE_CHECKING:
    import keras

StateDict = dict[str, np.ndarray]

TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt", ".bin", ".ckpt")
IGNORED_SUFFIXES = (".num_batches_tracked",)
WRAPPER_KEYS = ("state_dict", "model")
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
    """Read a state dict from .safetensors, .npz or (with PyTorch installed) .pth/.pt/.bin.

    Checkpoint wrappers are undone: a top-level "state_dict" or "model" entry, and the "module."
    prefix DataParallel adds. Raises SpecError for missing, unreadable or unknown files.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise _error(file, "no such weights file")
    name = path.name.lower()
    try:
        if name.endswith(".safetensors"):
            from safetensors.numpy import load_file

            raw: Mapping[str, Any] = load_file(path)
        elif name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                raw = {key: archive[key] for key in archive.files}
        elif name.endswith(TORCH_SUFFIXES):
            raw = _read_torch(path)
        else:
            raise _error(
                file,
                f"unknown weights format {path.suffix!r}",
                "use .safetensors, .npz, or a PyTorch .pth/.pt/.bin file",
            )
    except SpecError:
        raise
    except Exception as exc:  # any reader failure is a bad input file, not a ghostspec fault
        raise _error(file, f"cannot read weights: {exc}") from None
    return unwrap(raw)


def _read_torch(path: Path) -> Mapping[str, Any]:
    try:
        import torch
    except ImportError:
        raise _error(
            str(path),
            "reading PyTorch checkpoints needs PyTorch, which is not installed",
            "pip install torch (or convert the file to .safetensors)",
        ) from None
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap(raw: Mapping[str, Any]) -> StateDict:
    """The tensors of a checkpoint as numpy arrays, without wrapper keys or a "module." prefix."""
    for key in WRAPPER_KEYS:
        inner = raw.get(key)
        if isinstance(inner, Mapping):
            raw = inner
            break
    out: StateDict = {}
    for key, value in raw.items():
        array = _to_numpy(value)
        if array is not None:
            out[key.removeprefix("module.")] = array
    return out


def _to_numpy(value: Any) -> np.ndarray | None:
    """numpy arrays pass; torch tensors convert (bfloat16/half via float32); others are dropped."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        return tensor.numpy()
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


def _plan_layers(plan: Plan) -> Iterator[Layer]:
    for node in plan.nodes:
        yield from node.layers()


def check_state_dict(
    plan: Plan, state: Mapping[str, np.ndarray], file: str, skip: Collection[str] = ()
) -> list[Diagnostic]:
    """Every missing, unexpected and mis-shaped tensor of `state` against the plan, leaving out
    the tensors named in `skip`."""
    expected = {t.name: t.shape for t in plan.tensors() if t.name not in skip}
    given = {k: v for k, v in state.items() if not k.endswith(IGNORED_SUFFIXES) and k not in skip}
    messages: list[str] = []
    for name, shape in expected.items():
        if name not in given:
            messages.append(f"missing tensor {name!r} (expected shape {list(shape)})")
        elif tuple(given[name].shape) != shape:
            messages.append(
                f"tensor {name!r} has shape {list(given[name].shape)}, "
                f"the model needs {list(shape)}"
            )
    for name in given:
        if name not in expected:
            messages.append(f"unexpected tensor {name!r} (shape {list(given[name].shape)})")
    # one hint, on the first problem: there may be hundreds with a single cause
    hint = (
        "does the spec match the checkpoint (width, head.classes, input channels, blocks, "
        "ghost.attention, ghost.branches)?"
    )
    return [
        Diagnostic(file, message, hint=hint if i == 0 else None)
        for i, message in enumerate(messages)
    ]


def load_weights(
    model: keras.Model,
    plan: Plan,
    weights: str | Path | Mapping[str, np.ndarray],
    *,
    skip: Collection[str] = (),
) -> None:
    """Assign a reference state dict (a file or a mapping) to a model built from `plan`.

    Nothing is assigned unless every tensor fits: otherwise one SpecError lists every missing,
    unexpected and mis-shaped tensor. `num_batches_tracked` buffers are ignored. Tensors named
    in `skip` are neither required nor assigned: their variables keep their initial values
    (fine-tuning re-initialises a classifier whose class count differs).
    """
    if isinstance(weights, Mapping):
        file, state = "<state dict>", unwrap(weights)
    else:
        file, state = str(weights), read_state_dict(weights)
    problems = check_state_dict(plan, state, file, skip)
    if problems:
        raise SpecError(problems)
    assignments = []
    kept = set()
    for layer in _plan_layers(plan):
        target = model.get_layer(layer.name)
        for tensor in layer.tensors():
            kind = tensor.name.rsplit(".", 1)[1]
            if tensor.name in skip:
                attribute, _ = to_keras(layer, kind, np.zeros(tensor.shape))
                kept.add(id(getattr(target, attribute)))
                continue
            attribute, value = to_keras(layer, kind, state[tensor.name])
            assignments.append((getattr(target, attribute), value))
    covered = kept | {id(variable) for variable, _ in assignments}
    left = [v.path for v in model.weights if id(v) not in covered]
    if left:
        raise RuntimeError(f"model weights the plan does not describe: {left}")
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype, copy=False))


# ------------------------------------------------------------------------------------- exporting


def export_state_dict(model: keras.Model, source: Any = None) -> StateDict:
    """The model's weights as a reference-layout state dict (PyTorch names, shapes, layouts).

    Names come from the layer names, which are the reference module names. `source` (a spec or
    plan) is accepted for symmetry with `build` and not needed. `num_batches_tracked` is left out;
    PyTorch's BatchNorm fills it in on load.
    """
    del source
    from keras import layers

    if any(layer.name.endswith(tuple(f".{h}" for h in HALVES)) for layer in model.layers):
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
        name = layer.name
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
