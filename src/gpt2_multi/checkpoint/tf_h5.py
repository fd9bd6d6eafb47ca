"""``tf_model.h5``: HF's TensorFlow checkpoints (Keras 2 ``save_weights`` layout), through h5py only.

Layout written by HF's ``TFGPT2*`` classes::

    attrs: layer_names = [top-level layer names, e.g. "transformer", "score"]
    /<layer>/  attrs: weight_names = ["<model scope>/<layer>/.../<leaf>:0", ...]
    /<layer>/<model scope>/<layer>/.../<leaf>:0   the dataset

Names are mapped to HF PyTorch names by :mod:`gpt2_multi.checkpoint.layout`; no
TensorFlow is needed to read or write. Reading memory-maps each dataset that is stored
contiguously and uncompressed (as Keras and HF write them), copy-on-write as for safetensors,
so a load does not hold a second copy of the weights; other datasets are read through h5py.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from gpt2_multi.checkpoint import layout
from gpt2_multi.checkpoint.errors import CheckpointError
from gpt2_multi.io_utils import atomic_path


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read HF's ``tf_model.h5`` into ``{canonical PyTorch name: array}`` (body under ``transformer.``)."""
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise CheckpointError(f"{path} is not a readable HDF5 file (corrupt or truncated): {err}") from None
    out: dict[str, np.ndarray] = {}
    with handle:
        if "layer_names" not in handle.attrs:
            raise CheckpointError(f"{path} is HDF5 but not a Keras weights file: no 'layer_names' attribute")
        for layer in handle.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else str(layer)
            group = handle[layer]
            for weight in group.attrs.get("weight_names", []):
                weight = weight.decode() if isinstance(weight, bytes) else str(weight)
                try:
                    data = _mapped_or_read(path, group[weight])
                except (KeyError, OSError) as err:
                    raise CheckpointError(f"{path}: weight {weight!r} listed but unreadable: {err}") from None
                scoped = weight.split("/", 1)
                if len(scoped) != 2:
                    raise CheckpointError(f"{path}: weight name {weight!r} has no model scope")
                pt_name = layout.tf_to_pt_name(scoped[1])
                out[pt_name] = layout.tf_to_pt_array(pt_name, data, contiguous=False)  # a view: no copy
    return out


def _mapped_or_read(path: Path, dataset: h5py.Dataset) -> np.ndarray:
    """A copy-on-write memory map of ``dataset``'s bytes when it is one contiguous uncompressed block, else a read."""
    dtype = dataset.dtype
    if dtype.byteorder not in ("=", "|", "<" if np.little_endian else ">"):  # foreign byte order: read, make native
        return np.asarray(dataset).astype(dtype.newbyteorder("="))
    plain = dataset.chunks is None and dataset.compression is None and dtype.kind in "fiub" and not dtype.fields
    offset = dataset.id.get_offset() if plain else None
    if offset is None or dataset.size == 0 or dataset.external:
        return np.asarray(dataset)
    end = offset + dataset.size * dtype.itemsize
    if end > path.stat().st_size:  # mapping past the end of the file would crash on first touch
        raise CheckpointError(f"{path} is truncated: dataset {dataset.name!r} ends at byte {end} of {path.stat().st_size}")
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=dataset.shape)


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], architecture: str, *, stream=None) -> None:
    """Write ``tensors`` (PyTorch names, any style) as HF's ``tf_model.h5`` for ``architecture``, atomically.

    A tied ``lm_head.weight`` should already be dropped by the caller (HF's TF models always tie it).
    bfloat16 is widened to float32: Keras 2 h5 files have no bfloat16. Written dataset by dataset, each in
    row blocks converted just before they are written (``stream``, a
    :class:`gpt2_multi.checkpoint.streaming.WriteStream`); transposes are views until then.
    """
    from gpt2_multi.checkpoint.streaming import WriteStream

    stream = stream or WriteStream()
    architecture = layout.normalize_architecture(architecture)
    scope = layout.TF_MODEL_SCOPES[architecture]
    groups: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for name, value in layout.canonical_names(tensors).items():
        tf_name = layout.pt_to_tf_name(name)
        top = tf_name.split("/", 1)[0]
        source = np.asarray(value)
        groups.setdefault(top, []).append((f"{scope}/{tf_name}", source, layout.pt_to_tf_array(name, source, contiguous=False)))
    # Every dataset starts on a 64-byte boundary, so the memory maps that loading makes from it are aligned as
    # HF's and Keras' own files are: PyTorch's kernels take other code paths on misaligned views (1 ulp apart).
    with atomic_path(path) as tmp, h5py.File(tmp, "w", alignment_threshold=1, alignment_interval=64) as handle:
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["layer_names"] = np.array([k.encode() for k in sorted(groups)], dtype=object)
        for top in sorted(groups):
            group = handle.create_group(top)
            group.attrs["weight_names"] = np.array([n.encode() for n, _, _ in groups[top]], dtype=object)
            for name, source, value in groups[top]:
                dtype = stream.out_dtype(value.dtype)
                if dtype.name == "bfloat16":
                    dtype = np.dtype(np.float32)
                dataset = group.create_dataset(name, shape=value.shape, dtype=dtype)
                nbytes = 0
                for start, block in stream.blocks(value):
                    block = block.astype(dtype, copy=False)
                    nbytes += block.nbytes
                    if block.size == 0:
                        continue
                    if value.ndim == 0:
                        dataset[()] = block
                    else:
                        dataset[start:start + block.shape[0]] = block
                stream.done(source, nbytes)
