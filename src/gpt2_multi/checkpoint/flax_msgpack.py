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
from gpt2_multi.io_utils import atomic_write_bytes

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


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``flax_model.msgpack`` into ``{PyTorch name: array}`` (the architecture's own prefix style)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        tree = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except CheckpointError:
        raise
    except Exception as err:  # msgpack raises several unrelated types for corrupt input
        raise CheckpointError(f"{path} is corrupt or truncated ({type(err).__name__}: {err})") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path} is not a Flax parameter tree (top level is {type(tree).__name__})")
    if set(tree) == {"params"} and isinstance(tree["params"], dict):
        tree = tree["params"]
    out: dict[str, np.ndarray] = {}
    for flax_path, value in _flatten(tree).items():
        name = layout.flax_path_to_pt(flax_path)
        out[name] = layout.flax_to_pt_array(name, value)
    return out


def _pack_array(array: np.ndarray) -> msgpack.ExtType:
    array = np.ascontiguousarray(array)
    payload = msgpack.packb((list(array.shape), array.dtype.name, array.tobytes()), use_bin_type=True)
    return msgpack.ExtType(_EXT_NDARRAY, payload)


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], architecture: str) -> None:
    """Write ``tensors`` (PyTorch names) as HF's ``flax_model.msgpack`` for ``architecture``, atomically."""
    names = layout.to_architecture_names(layout.canonical_names(tensors), architecture)
    tree: dict = {}
    for name, value in names.items():
        flax_path = layout.pt_to_flax_path(name)
        node = tree
        for part in flax_path[:-1]:
            node = node.setdefault(part, {})
        node[flax_path[-1]] = _pack_array(layout.pt_to_flax_array(name, np.asarray(value)))
    atomic_write_bytes(path, msgpack.packb(tree, use_bin_type=True))
