"""PyTorch checkpoints (`torch.save`'s zip format) read without PyTorch and without running code.

A `.pth` file made by `torch.save` since PyTorch 1.6 is a zip archive: `<name>/data.pkl` is a
pickle (protocol 2) of the saved object, in which every tensor is a call to
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and every storage a
persistent id `('storage', torch.FloatStorage, key, location, numel)` whose bytes are the member
`<name>/data/<key>`. The unpickler here resolves only those names, to functions of its own that
build numpy arrays; any other global (a module, a class, a function from the file) is refused
before it is looked up, so nothing from the file ever runs. Member sizes are checked before they
are read.

Quantized, sparse and other special tensors come back as `Unsupported` markers, so the caller can
name the tensor that holds one. No numpy dtype holds bfloat16: such tensors become float32, which
holds every bfloat16 value exactly.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

PICKLE_LIMIT = 64 << 20  # data.pkl of a large checkpoint is well under 1 MiB

# torch storage class name -> (numpy dtype, element size); bfloat16 is read as uint16 bits
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
}
ITEM_SIZES = {"bf16": 2, "qint8": 1, "quint8": 1, "qint32": 4}
SPECIAL_TENSORS = {
    "_rebuild_qtensor": "a quantized tensor",
    "_rebuild_sparse_tensor": "a sparse tensor",
    "_rebuild_sparse_csr_tensor": "a sparse tensor",
    "_rebuild_nested_tensor": "a nested tensor",
    "_rebuild_meta_tensor_no_storage": "a tensor without data (device 'meta')",
    "_rebuild_wrapper_subclass": "a tensor subclass",
    "_rebuild_device_tensor_from_numpy": "a tensor of a non-CPU device",
    "_rebuild_xla_tensor": "a tensor of an XLA device",
    "_rebuild_mtia_tensor": "a tensor of an MTIA device",
}


class TorchFileError(Exception):
    """The file is not a tensor checkpoint ghostspec can read; the message says why."""


class PickledObject(TorchFileError):
    """The pickle names a Python global other than the tensor machinery."""

    def __init__(self, module: str, name: str) -> None:
        self.qualified = f"{module}.{name}"
        super().__init__(self.qualified)


@dataclass(frozen=True)
class Unsupported:
    """A tensor ghostspec cannot use (quantized, sparse, ...): `kind` says which."""

    kind: str


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def code(self) -> str:
        return STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _Storage:
    code: str
    data: bytes
    numel: int


@dataclass(frozen=True)
class _Constant:
    """A torch constant the pickle refers to by name (a dtype, layout or quantization scheme)."""

    name: str


class _Dict(dict[Any, Any]):
    """Stands in for collections.OrderedDict. A state dict carries a `_metadata` attribute
    (BUILD state); it is dropped."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise TorchFileError("malformed pickle: a dict's state is not a mapping")


class _Unpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, numbers, strings and tensors; refuses every other global."""

    def __init__(
        self, pkl: bytes, storage: Callable[[str, _StorageType, int], _Storage], budget: int
    ) -> None:
        super().__init__(io.BytesIO(pkl), encoding="utf-8")
        self._storage = storage
        self._budget = budget  # bytes the rebuilt tensors may take in all

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return _Dict
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 writes bytes
            return _encode
        if module == "torch._utils":
            if name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                return self._rebuild_tensor
            if name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
                return _rebuild_parameter
            if name in SPECIAL_TENSORS:
                return _special(SPECIAL_TENSORS[name])
        if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
            return _special("a tensor subclass")
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("torch", "Size"):
            return tuple
        if (module, name) == ("torch.serialization", "_get_layout"):
            return _Constant
        if module == "torch" and _is_constant(name):
            return _Constant(name)
        raise PickledObject(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
            and pid[4] >= 0
        ):
            raise TorchFileError("malformed pickle: a storage reference is not torch's")
        return self._storage(pid[2], pid[1], pid[4])

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> Any:
        if not isinstance(storage, _Storage):
            raise TorchFileError("malformed pickle: a tensor without a storage")
        if storage.code in ("qint8", "quint8", "qint32"):
            return Unsupported("a quantized tensor")
        if not (_ints(size) and _ints(stride) and len(size) == len(stride) and _int(offset)):
            raise TorchFileError("malformed pickle: a tensor's size or stride is not integers")
        count = math.prod(size)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if count and last >= storage.numel:
            raise TorchFileError("a tensor reaches past the end of its storage")
        if count > storage.numel:  # overlapping views could multiply a small file's size
            raise TorchFileError("a tensor has more elements than its storage")
        code = storage.code
        self._budget -= count * (4 if code == "bf16" else item_size(code))
        if self._budget < 0:
            raise TorchFileError("its tensors together are larger than the size limit")
        flat = np.frombuffer(storage.data, dtype="<u2" if code == "bf16" else "<" + code)
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:] if count else flat[:0],
            shape=tuple(size),
            strides=tuple(s * item for s in stride),
            writeable=False,
        )
        array = np.array(view)  # a contiguous copy: the storage may be shared
        if code == "bf16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="), copy=False)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8"):
        raise TorchFileError("malformed pickle: a bytes value that is not torch's")
    return text.encode(encoding)


def _special(kind: str) -> Callable[..., Unsupported]:
    def rebuild(*_: Any) -> Unsupported:
        return Unsupported(kind)

    return rebuild


def _is_constant(name: str) -> bool:
    """torch dtypes, layouts and quantization schemes, which pickle as `torch.<name>`."""
    dtypes = {"float", "double", "half", "bfloat16", "uint8", "int8", "int16", "int32", "int64"}
    return (
        name in dtypes
        or name.startswith(("float", "int", "uint", "complex", "qint", "quint", "per_"))
        or name in ("strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "bool")
    ) and name.isidentifier()


def item_size(code: str) -> int:
    return ITEM_SIZES[code] if code in ITEM_SIZES else np.dtype(code).itemsize


def _int(value: Any) -> bool:
    return type(value) is int and value >= 0


def _ints(value: Any) -> bool:
    return isinstance(value, tuple | list) and all(_int(v) for v in value)


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def read_torch_zip(data: bytes, limit: int) -> Any:
    """The object a zip-format `torch.save` file holds, tensors as numpy arrays.

    Raises TorchFileError (PickledObject for a pickled module, class or function)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = {info.filename: info for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise TorchFileError(f"not a readable zip archive ({err})") from None
    if sum(info.file_size for info in members.values()) > limit:
        raise TorchFileError(f"its members unpack to more than the limit of {limit:,} bytes")
    pickles = [name for name in members if name.endswith("/data.pkl") and name.count("/") == 1]
    if not pickles:
        if any(name.endswith("/constants.pkl") for name in members):
            raise TorchFileError("it is a TorchScript program (torch.jit.save), not a state dict")
        raise TorchFileError("it is a zip archive without data.pkl, so not a torch.save file")
    prefix = pickles[0][: -len("data.pkl")]
    pkl_info = members[pickles[0]]
    if pkl_info.file_size > PICKLE_LIMIT:
        raise TorchFileError(f"data.pkl is {pkl_info.file_size:,} bytes; the limit is 64 MiB")
    order = members.get(f"{prefix}byteorder")
    if order is not None and (order.file_size > 16 or archive.read(order).strip() != b"little"):
        raise TorchFileError("it was written on a big-endian machine, which ghostspec cannot read")
    loaded: dict[str, _Storage] = {}

    def storage(key: str, kind: _StorageType, numel: int) -> _Storage:
        if key not in loaded:
            info = members.get(f"{prefix}data/{key}")
            if info is None:
                raise TorchFileError(f"the storage data/{key} is missing from the archive")
            expected = numel * item_size(kind.code)
            if info.file_size != expected:
                raise TorchFileError(
                    f"the storage data/{key} is {info.file_size:,} bytes; its tensors need "
                    f"{expected:,}"
                )
            loaded[key] = _Storage(kind.code, archive.read(info), numel)
        found = loaded[key]
        if found.code != kind.code:
            raise TorchFileError(f"the storage data/{key} is used with two element types")
        return found

    try:
        return _Unpickler(archive.read(pkl_info), storage, 2 * limit).load()
    except TorchFileError:
        raise
    except zipfile.BadZipFile as err:
        raise TorchFileError(f"a damaged archive member ({err})") from None
    except Exception as err:  # whatever a malformed pickle provokes is the file's fault
        raise TorchFileError(f"malformed pickle ({type(err).__name__}: {err})") from None
