"""Write files in `torch.save`'s zip format with the standard library, for tests without torch.

The layout is PyTorch's: a zip archive with `<prefix>/data.pkl` (pickle protocol 2), one member
`<prefix>/data/<key>` of raw little-endian bytes per storage, `<prefix>/byteorder` and
`<prefix>/version`. The pickle is written opcode by opcode, as torch's pickler emits it: a tensor
is `torch._utils._rebuild_tensor_v2((storage pid), offset, size, stride, False, OrderedDict())`
with the persistent id `('storage', torch.<Type>Storage, key, 'cpu', numel)`. `Global` and `Call`
let a test write what torch would write for other objects (a pickled module, a quantized tensor)
or what an attacker would (a call of os.system), without needing any of them to exist here.
"""

from __future__ import annotations

import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STORAGES = {
    "float64": "DoubleStorage",
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}


@dataclass(frozen=True)
class Global:
    """`module.name` as pickle's GLOBAL opcode names it."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """`function(*args)`: GLOBAL, the argument tuple, REDUCE."""

    function: Global
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Tensor:
    """A tensor with an explicit storage type (e.g. QInt8Storage, BFloat16Storage) and raw data;
    plain numpy arrays are written as the matching float/int storage."""

    storage: str
    data: bytes
    shape: tuple[int, ...]
    rebuild: Global = Global("torch._utils", "_rebuild_tensor_v2")
    extra: tuple[Any, ...] = ()


@dataclass
class _Writer:
    storages: list[bytes] = field(default_factory=list)
    out: bytearray = field(default_factory=bytearray)

    def emit(self, value: Any) -> None:
        out = self.out
        if value is None:
            out += b"N"
        elif value is True or value is False:
            out += b"\x88" if value else b"\x89"
        elif isinstance(value, int):
            if -(2**31) <= value < 2**31:
                out += b"J" + struct.pack("<i", value)
            else:
                raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
                out += b"\x8a" + bytes([len(raw)]) + raw
        elif isinstance(value, float):
            out += b"G" + struct.pack(">d", value)
        elif isinstance(value, str):
            raw = value.encode("utf-8")
            out += b"X" + struct.pack("<I", len(raw)) + raw
        elif isinstance(value, tuple):
            out += b"("
            for item in value:
                self.emit(item)
            out += b"t"
        elif isinstance(value, list):
            out += b"]("
            for item in value:
                self.emit(item)
            out += b"e"
        elif isinstance(value, OrderedDict):
            self.emit(Global("collections", "OrderedDict"))
            out += b")R("
            for key, item in value.items():
                self.emit(key)
                self.emit(item)
            out += b"u"
            out += b"}"  # the state: a state dict's _metadata attribute, as torch saves it
            self.emit("_metadata")
            self.emit(Call(Global("collections", "OrderedDict"), ()))
            out += b"sb"
        elif isinstance(value, dict):
            out += b"}("
            for key, item in value.items():
                self.emit(key)
                self.emit(item)
            out += b"u"
        elif isinstance(value, Global):
            out += f"c{value.module}\n{value.name}\n".encode()
        elif isinstance(value, Call):
            self.emit(value.function)
            self.emit(value.args)
            out += b"R"
        elif isinstance(value, np.ndarray):
            array = value.copy(order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
            self.emit(
                Tensor(
                    STORAGES[str(array.dtype)],
                    array.astype(array.dtype.newbyteorder("<")).tobytes(),
                    array.shape,
                )
            )
        elif isinstance(value, Tensor):
            key = str(len(self.storages))
            self.storages.append(value.data)
            size = int(np.prod(value.shape))
            stride = tuple(int(np.prod(value.shape[i + 1 :])) for i in range(len(value.shape)))
            self.emit(value.rebuild)
            out += b"(("
            self.emit("storage")
            self.emit(Global("torch", value.storage))
            self.emit(key)
            self.emit("cpu")
            self.emit(size)
            out += b"tQ"  # the persistent id tuple, BINPERSID
            self.emit(0)
            self.emit(tuple(value.shape))
            self.emit(stride)
            for item in (*value.extra, False, Call(Global("collections", "OrderedDict"), ())):
                self.emit(item)
            out += b"tR"
        else:
            raise TypeError(f"cannot write {type(value).__name__}")


def torch_save(value: Any, path: Path, prefix: str = "archive") -> Path:
    """Write `value` as `torch.save(value, path)` would (zip format); returns `path`."""
    writer = _Writer()
    writer.out += b"\x80\x02"
    writer.emit(value)
    writer.out += b"."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", bytes(writer.out))
        archive.writestr(f"{prefix}/byteorder", "little")
        for key, data in enumerate(writer.storages):
            archive.writestr(f"{prefix}/data/{key}", data)
        archive.writestr(f"{prefix}/version", "3\n")
    return path


def state_dict(arrays: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
    """What `module.state_dict()` returns: an OrderedDict (saved with a `_metadata` attribute)."""
    return OrderedDict(arrays)
