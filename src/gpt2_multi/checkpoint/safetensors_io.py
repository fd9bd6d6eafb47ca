"""safetensors read/write without a framework: memory-mapped reads, atomic (and sharded) writes.

The format: an 8-byte little-endian header length N, N bytes of JSON mapping each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
relative to the end of the header) plus an optional ``__metadata__`` map of
strings, then the raw little-endian data.

Reads memory-map the file once, copy-on-write (``mode="c"``), and return numpy views into
it: a checkpoint is never copied on load, pages are shared with the OS cache, the arrays
can back trainable parameters directly, and a write to them makes a private page and
never reaches the file.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from gpt2_multi.checkpoint.errors import CheckpointError
from gpt2_multi.checkpoint.pages import mark_file_backed, release  # noqa: F401 - public here since the first loaders
from gpt2_multi.checkpoint.streaming import WriteStream
from gpt2_multi.io_utils import atomic_path

try:  # bfloat16 and friends as numpy dtypes; shipped with JAX and TensorFlow, a core dependency here
    import ml_dtypes

    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a declared dependency
    _BF16 = None

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
if _BF16 is not None:
    _DTYPES["BF16"] = _BF16
_NAMES = {v: k for k, v in _DTYPES.items()}

MAX_HEADER = 100 * 1024 * 1024


def dtype_name(dtype: np.dtype) -> str:
    try:
        return _NAMES[np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).byteorder == ">" else np.dtype(dtype)]
    except KeyError:
        raise CheckpointError(f"safetensors cannot store dtype {np.dtype(dtype)}") from None


def read_header(path: Path) -> tuple[int, dict]:
    """Return (data start offset, header dict). Raises CheckpointError on a malformed file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path} is not a safetensors file: {size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{path} is truncated or not a safetensors file: header length {n} but the file has {size} bytes")
        try:
            header = json.loads(handle.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path} has a corrupt safetensors header: {err}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt safetensors header: not a JSON object")
    return 8 + n, header


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Memory-map ``path`` (copy-on-write) and return ``{name: array view}``, validating every entry."""
    path = Path(path)
    start, header = read_header(path)
    data_len = path.stat().st_size - start
    tensors: dict[str, np.ndarray] = {}
    buffer = np.memmap(path, dtype=np.uint8, mode="c", offset=start, shape=(data_len,)) if data_len else np.zeros(0, np.uint8)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except KeyError as err:
            if isinstance(info, dict) and info.get("dtype") == "BF16":
                raise CheckpointError(f"{path}: tensor {name!r} is bfloat16 and ml_dtypes is not installed") from None
            raise CheckpointError(f"{path}: tensor {name!r} has a corrupt header entry {info!r} ({err})") from None
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a corrupt header entry {info!r}") from None
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= begin <= end or end - begin != nbytes:
            raise CheckpointError(f"{path}: tensor {name!r} with shape {shape} {info['dtype']} needs {nbytes} bytes, header gives {begin}..{end}")
        if end > data_len:
            raise CheckpointError(f"{path} is truncated: tensor {name!r} ends at byte {end} of the data, which has {data_len} bytes")
        tensors[name] = buffer[begin:end].view(dtype).reshape(shape)
    return tensors


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None, *,
         stream=None) -> None:
    """Write ``tensors`` to ``path`` atomically (temp file + rename), in name order, 8-byte aligned header.

    The header is planned from shapes and dtypes alone; then each tensor is written in row blocks
    (``stream``: a :class:`gpt2_multi.checkpoint.streaming.WriteStream` that may cast them and release
    their sources), so no tensor is copied whole unless it must be converted.
    """

    stream = stream or WriteStream()
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    names = sorted(tensors)
    tensors = {name: np.asarray(tensors[name]) for name in names}
    for name in names:
        array = tensors[name]
        nbytes = stream.out_nbytes(array)
        header[name] = {"dtype": dtype_name(stream.out_dtype(array.dtype)), "shape": list(array.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        for name in names:
            array = tensors[name]
            for _, block in stream.blocks(array):
                if block.nbytes:  # a zero-copy byte view of the data
                    handle.write(block.reshape(-1).view(np.uint8).data)
            stream.done(array)
