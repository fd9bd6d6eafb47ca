"""``flax_model.msgpack``: Flax's serialisation format, read and written with ``msgpack`` only (no JAX).

Flax stores a nested dict of parameters; each array is a msgpack extension of
type 1 whose payload is itself msgpack of ``(shape, dtype name, raw bytes)``.
Paths and transposes are mapped by :mod:`gpt2_multi.checkpoint.layout`.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import numpy as np

from gpt2_multi.checkpoint import layout
from gpt2_multi.checkpoint.errors import CheckpointError
from gpt2_multi.io_utils import atomic_path

_EXT_NDARRAY = 1
_EXT_NATIVE_COMPLEX = 2
_EXT_NPSCALAR = 3


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _ext_hook(code: int, data: bytes):
    if code == _EXT_NDARRAY:
        shape, dtype_name, buffer = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buffer, dtype=_dtype(dtype_name)).reshape(shape)
    if code == _EXT_NPSCALAR:
        shape, dtype_name, buffer = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buffer, dtype=_dtype(dtype_name)).reshape(shape)[()]
    raise CheckpointError(f"unsupported msgpack extension type {code} in a Flax checkpoint")


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], np.ndarray]:
    out: dict[tuple[str, ...], np.ndarray] = {}
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        elif isinstance(value, np.ndarray):
            out[path] = value
        else:
            raise CheckpointError(f"Flax checkpoint entry {'/'.join(path)} is a {type(value).__name__}, not an array")
    return out


# ------------------------------------------------------------------------------------------ reading
class _Truncated(Exception):
    pass


class _Reader:
    """A msgpack reader over a memory map that returns arrays as views into it (no copy of any tensor).

    It understands what Flax writes (nested maps of string keys, arrays as extension type 1, numpy scalars as
    type 3) and every other msgpack type well enough to report it by name.
    """

    def __init__(self, buffer: np.ndarray):
        self.buffer = buffer
        self.data = memoryview(buffer) if buffer.size else memoryview(b"")
        self.pos = 0

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.data):
            raise _Truncated
        self.pos = start + n
        return start

    def uint(self, n: int) -> int:
        start = self.take(n)
        return int.from_bytes(self.data[start:start + n], "big")

    def value(self):
        tag = self.data[self.take(1)]
        if tag <= 0x7F:
            return tag
        if tag >= 0xE0:
            return tag - 0x100
        if 0x80 <= tag <= 0x8F:
            return self.map(tag & 0x0F)
        if 0x90 <= tag <= 0x9F:
            return [self.value() for _ in range(tag & 0x0F)]
        if 0xA0 <= tag <= 0xBF:
            return self.str(tag & 0x1F)
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if tag in simple:
            return simple[tag]
        if tag in (0xC4, 0xC5, 0xC6):  # bin 8/16/32: a view
            n = self.uint(1 << (tag - 0xC4))
            start = self.take(n)
            return self.buffer[start:start + n]
        if tag in (0xC7, 0xC8, 0xC9):  # ext 8/16/32
            n = self.uint(1 << (tag - 0xC7))
            return self.ext(n)
        if tag in (0xCA, 0xCB):
            n = 4 if tag == 0xCA else 8
            start = self.take(n)
            return float(np.frombuffer(self.data[start:start + n], ">f4" if n == 4 else ">f8")[0])
        if 0xCC <= tag <= 0xCF:
            return self.uint(1 << (tag - 0xCC))
        if 0xD0 <= tag <= 0xD3:
            n = 1 << (tag - 0xD0)
            start = self.take(n)
            return int.from_bytes(self.data[start:start + n], "big", signed=True)
        if 0xD4 <= tag <= 0xD8:  # fixext 1/2/4/8/16
            return self.ext(1 << (tag - 0xD4))
        if tag in (0xD9, 0xDA, 0xDB):
            return self.str(self.uint(1 << (tag - 0xD9)))
        if tag in (0xDC, 0xDD):
            return [self.value() for _ in range(self.uint(2 if tag == 0xDC else 4))]
        if tag in (0xDE, 0xDF):
            return self.map(self.uint(2 if tag == 0xDE else 4))
        raise CheckpointError(f"byte 0x{tag:02x} at offset {self.pos - 1} is not msgpack")

    def str(self, n: int) -> str:
        start = self.take(n)
        return bytes(self.data[start:start + n]).decode("utf-8")

    def map(self, n: int) -> dict:
        out = {}
        for _ in range(n):
            key = self.value()
            if not isinstance(key, str):
                raise CheckpointError(f"a map key at offset {self.pos} is a {type(key).__name__}, not a parameter name")
            out[key] = self.value()
        return out

    def ext(self, n: int):
        code = self.data[self.take(1)]
        end = self.pos + n
        if end > len(self.data):
            raise _Truncated
        if code not in (_EXT_NDARRAY, _EXT_NPSCALAR):
            raise CheckpointError(f"unsupported msgpack extension type {code} in a Flax checkpoint")
        payload = self.value()
        if self.pos != end or not (isinstance(payload, list) and len(payload) == 3):
            raise CheckpointError(f"malformed array at offset {end - n}: expected (shape, dtype, bytes)")
        shape, dtype_name, raw = payload
        try:
            dtype = _dtype(dtype_name)
            shape = tuple(int(d) for d in shape)
            if any(d < 0 for d in shape):
                raise ValueError(f"negative dimension in shape {shape}")
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"malformed array header at offset {end - n}: {err}") from None
        if not isinstance(raw, np.ndarray) or raw.nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise CheckpointError(f"array at offset {end - n}: {shape} {dtype} does not match its {len(raw)} data bytes")
        array = raw.view(dtype).reshape(shape) if raw.nbytes else np.zeros(shape, dtype)
        return array[()] if code == _EXT_NPSCALAR else array


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``flax_model.msgpack`` into ``{PyTorch name: array}`` (the architecture's own prefix style).

    The file is memory-mapped copy-on-write and every array is a view into it, in PyTorch layout
    (HF Flax's transposed kernels come back as transposed views, not copies): reading costs no
    memory until a tensor is used, and each tensor's bytes are read once. The views are not
    necessarily aligned to their item size (msgpack packs them back to back).
    """
    path = Path(path)
    size = path.stat().st_size
    buffer = np.memmap(path, dtype=np.uint8, mode="c") if size else np.zeros(0, np.uint8)
    reader = _Reader(buffer)
    try:
        tree = reader.value()
    except _Truncated:
        raise CheckpointError(f"{path} is corrupt or truncated (a value runs past the end of its {size} bytes)") from None
    except (UnicodeDecodeError, CheckpointError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err})") from None
    except RecursionError:
        raise CheckpointError(f"{path} is corrupt: its maps and arrays nest deeper than any parameter tree") from None
    if reader.pos != size:
        raise CheckpointError(f"{path} is corrupt: {size - reader.pos} bytes follow the parameter tree")
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path} is not a Flax parameter tree (top level is {type(tree).__name__})")
    if set(tree) == {"params"} and isinstance(tree["params"], dict):
        tree = tree["params"]
    out: dict[str, np.ndarray] = {}
    for flax_path, value in _flatten(tree).items():
        name = layout.flax_path_to_pt(flax_path)
        out[name] = layout.flax_to_pt_array(name, value, contiguous=False)
    return out


# ------------------------------------------------------------------------------------------ writing
def _ext_header(length: int) -> bytes:
    """The msgpack header of an extension of type 1 with ``length`` payload bytes (as ``msgpack.packb`` writes it)."""
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if length in fixed:
        return bytes([fixed[length], _EXT_NDARRAY])
    if length < 2**8:
        return bytes([0xC7, length, _EXT_NDARRAY])
    if length < 2**16:
        return b"\xc8" + length.to_bytes(2, "big") + bytes([_EXT_NDARRAY])
    return b"\xc9" + length.to_bytes(4, "big") + bytes([_EXT_NDARRAY])


def _bin_header(length: int) -> bytes:
    if length < 2**8:
        return bytes([0xC4, length])
    if length < 2**16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def array_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """Every byte of an array's msgpack encoding before its raw data (ext header + ``(shape, dtype, bin)`` head)."""
    packer = msgpack.Packer(use_bin_type=True)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    head = b"\x93" + packer.pack(list(shape)) + packer.pack(np.dtype(dtype).name) + _bin_header(nbytes)
    return _ext_header(len(head) + nbytes) + head


def _pack_array(array: np.ndarray) -> msgpack.ExtType:
    array = np.ascontiguousarray(array)
    payload = msgpack.packb((list(array.shape), array.dtype.name, array.tobytes()), use_bin_type=True)
    return msgpack.ExtType(_EXT_NDARRAY, payload)


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], architecture: str, *, stream=None) -> None:
    """Write ``tensors`` (PyTorch names) as HF's ``flax_model.msgpack`` for ``architecture``, atomically.

    Streams: the nested map's headers and keys are written as the tree is walked, and each array as its
    extension header followed by its bytes in row blocks converted just before they are written (``stream``,
    a :class:`gpt2_multi.checkpoint.streaming.WriteStream`: transpose to Flax layout, cast), so neither the
    file nor a converted checkpoint is ever built in memory. The bytes are exactly ``msgpack.packb`` of the
    nested dict of ``ExtType`` arrays (what Flax's ``serialization.to_bytes`` writes; HF's loader reads it).
    """
    from gpt2_multi.checkpoint.streaming import WriteStream

    stream = stream or WriteStream()
    names = layout.to_architecture_names(layout.canonical_names(tensors), architecture)
    tree: dict = {}
    for name in names:
        flax_path = layout.pt_to_flax_path(name)
        node = tree
        for part in flax_path[:-1]:
            node = node.setdefault(part, {})
        node[flax_path[-1]] = name
    packer = msgpack.Packer(use_bin_type=True)

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        def write_array(name: str) -> None:
            source = np.asarray(names[name])
            array = layout.pt_to_flax_array(name, source, contiguous=False)
            handle.write(array_header(array.shape, stream.out_dtype(array.dtype)))
            for _, block in stream.blocks(array):
                if block.nbytes:
                    handle.write(block.reshape(-1).view(np.uint8).data)
            stream.done(source)

        def walk(node: dict) -> None:
            handle.write(packer.pack_map_header(len(node)))
            for key, value in node.items():
                handle.write(packer.pack(key))
                if isinstance(value, dict):
                    walk(value)
                else:
                    write_array(value)

        walk(tree)
