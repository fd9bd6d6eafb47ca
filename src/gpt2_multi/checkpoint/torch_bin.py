"""``pytorch_model.bin``: read with ``torch.load(weights_only=True)``, never a full unpickle.

Needs PyTorch; only this module imports it, and only when a ``.bin`` is read or written.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from gpt2_multi.checkpoint.errors import CheckpointError
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


def _to_numpy(torch, tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``pytorch_model.bin`` state_dict into numpy arrays (memory-mapped when the file allows)."""
    torch = _torch()
    path = Path(path)
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
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
        out[name] = _to_numpy(torch, value.detach().cpu())
    return out


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray]) -> None:
    """Write a state_dict HF's ``from_pretrained`` reads, atomically."""
    torch = _torch()
    state = {}
    for name, value in tensors.items():
        array = np.asarray(value)
        if array.dtype.name == "bfloat16":
            state[name] = torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
        else:
            state[name] = torch.from_numpy(np.array(array, copy=True))
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
