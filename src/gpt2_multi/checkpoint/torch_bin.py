"""``pytorch_model.bin``: read with ``torch.load(weights_only=True)``, never a full unpickle.

Needs PyTorch; only this module imports it, and only when a ``.bin`` is read or written.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np

from gpt2_multi.checkpoint.errors import CheckpointError
from gpt2_multi.checkpoint.pages import mark_file_backed, release
from gpt2_multi.io_utils import atomic_path


def _torch():
    try:
        import torch
    except ImportError:
        from gpt2_multi import backends

        raise ImportError(
            f"reading or writing pytorch_model.bin needs PyTorch: {backends.get('pt').install_hint()} "
            "(or convert the checkpoint to safetensors on a machine that has it)"
        ) from None
    return torch


def _to_numpy(torch, tensor, mapped: bool = False) -> np.ndarray:
    """A numpy view of ``tensor``; ``mapped``: its memory is ``torch.load(mmap=True)``'s private file map, whose
    pages ``pages.release`` may then drop once a conversion has written them."""
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        array = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    else:
        array = tensor.numpy()
    if mapped:
        mark_file_backed(array)
    return array


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``pytorch_model.bin`` state_dict into numpy arrays (memory-mapped when the file allows)."""
    torch = _torch()
    path = Path(path)
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            mapped = True
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
            mapped = False
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds objects other than tensors, which are not loaded (weights_only=True): {err}".splitlines()[0]
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state_dict (found {type(state).__name__})")
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        out[name] = _to_numpy(torch, value.detach().cpu(), mapped)
    return out


def _to_torch(torch, array: np.ndarray):
    """A CPU tensor sharing ``array``'s memory (``array`` is contiguous; bfloat16 through an int16 view)."""
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    with warnings.catch_warnings():  # a read-only memory map is only read by torch.save
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], *, stream=None) -> None:
    """Write one state_dict file HF's ``from_pretrained`` reads, atomically.

    ``torch.save`` needs the whole dict at once: the tensors are ``torch.from_numpy`` views of the
    sources where they need no conversion (no copy; a memory-mapped source is read while it is written),
    else converted copies (``stream``: cast, or a layout's transpose) held until the file is written, whose sources'
    pages are dropped as soon as each copy is made (when ``stream.release``). ``save_checkpoint``'s ``max_shard_size`` bounds that to
    one shard.
    """
    from gpt2_multi.checkpoint.streaming import WriteStream

    torch = _torch()
    stream = stream or WriteStream()
    sources = {name: np.asarray(value) for name, value in tensors.items()}
    state = {}
    for name, array in sources.items():
        converted = stream.whole(array)
        if stream.release and not np.may_share_memory(converted, array):
            release(array)  # a converted copy is what gets written: the source's pages can go now, not after the shard
        state[name] = _to_torch(torch, converted)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    del state
    for array in sources.values():
        stream.done(array)
