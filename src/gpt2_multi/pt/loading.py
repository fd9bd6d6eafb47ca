"""``from_pretrained`` / ``save_pretrained`` for the PyTorch stack: a thin adapter over the shared checkpoint layer.

Weights flow: file -> :func:`gpt2_multi.checkpoint.load_checkpoint` (numpy, HF PyTorch names)
-> :func:`gpt2_multi.checkpoint.match_state_dict` (HF's loading semantics, a ``LoadReport``)
-> torch tensors -> ``load_state_dict(assign=True)`` into a model built on the ``meta`` device.

The model is never randomly initialised before loading: only the weights the checkpoint lacks
(a new head) are materialised and initialised. Tensors are made without copying where the
numpy array allows: a writable array (``pytorch_model.bin`` read with ``mmap``, converted TF/Flax
arrays) is shared; a read-only safetensors memory map is re-mapped copy-on-write (private), so the
parameters are writable, pages are read from the file on first touch and copied only when
written. Loading a checkpoint therefore keeps one copy of the weights (see
``benchmarks/pt_load_memory.py``). A dtype conversion (``torch_dtype``) makes one converted copy, in row
blocks whose file pages are dropped as they are converted: a bfloat16 load of a float32 checkpoint peaks
near the bfloat16 weights (``benchmarks/xl_memory.py``).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gpt2_multi import hub
from gpt2_multi.checkpoint import (
    Checkpoint,
    LoadReport,
    layout,
    load_checkpoint,
    match_state_dict,
    safetensors_io,
    save_checkpoint,
)
from gpt2_multi.checkpoint.pages import row_blocks
from gpt2_multi.config import ATTRIBUTE_MAP, COMMON_DEFAULTS, MODEL_DEFAULTS, GPT2Config
from gpt2_multi.generation import GenerationConfig

logger = logging.getLogger("gpt2_multi.pt")

_DTYPES = {
    "float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64, "double": torch.float64,
}
_CONFIG_KEYS = set(MODEL_DEFAULTS) | set(COMMON_DEFAULTS) | set(ATTRIBUTE_MAP) | {"num_labels", "id2label", "label2id", "n_ctx"}


# ------------------------------------------------------------------------------------------ dtypes
def resolve_dtype(torch_dtype: Any, config: GPT2Config, tensors: dict[str, np.ndarray]) -> torch.dtype:
    """``None`` -> float32 (HF's default); ``"auto"`` -> the config's ``torch_dtype``/``dtype``, else the
    checkpoint's float dtype; a ``torch.dtype`` or its name as given."""
    if torch_dtype is None:
        return torch.float32
    if isinstance(torch_dtype, torch.dtype):
        if not torch_dtype.is_floating_point:
            raise ValueError(f"torch_dtype must be a floating dtype, got {torch_dtype}")
        return torch_dtype
    if torch_dtype == "auto":
        for key in ("torch_dtype", "dtype"):
            value = getattr(config, key, None)
            if isinstance(value, str) and value in _DTYPES:
                return _DTYPES[value]
        for array in tensors.values():
            if array.dtype.name == "bfloat16":
                return torch.bfloat16
            if np.issubdtype(array.dtype, np.floating):
                return _DTYPES[array.dtype.name]
        return torch.float32
    if isinstance(torch_dtype, str):
        name = torch_dtype.removeprefix("torch.")
        if name in _DTYPES:
            return _DTYPES[name]
    raise ValueError(f"torch_dtype={torch_dtype!r} is not understood; use torch.float32/float16/bfloat16, their names, or 'auto'")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ------------------------------------------------------------------------------------------ numpy -> torch
BLOCK_BYTES = 16 * 2**20


def to_tensor(array: np.ndarray, dtype: torch.dtype, *, release: bool = False) -> torch.Tensor:
    """A CPU tensor of ``dtype`` holding ``array``; shares memory with it when no conversion is needed.

    The shared checkpoint layer maps safetensors copy-on-write, so such arrays are writable and back the
    parameters directly (one copy of the weights; training never writes to the file). Otherwise the
    tensor is a converted copy; ``release=True`` then drops ``array``'s memory-mapped pages as they are
    converted (only for a source nobody else uses: ``from_pretrained``'s own checkpoint arrays).
    """
    is_bf16 = array.dtype.name == "bfloat16"
    source_dtype = torch.bfloat16 if is_bf16 else torch.from_numpy(np.zeros(0, array.dtype)).dtype
    if source_dtype == dtype and array.flags.writeable and array.flags.c_contiguous and array.flags.aligned:
        tensor = torch.from_numpy(array.view(np.int16) if is_bf16 else array)
        return tensor.view(torch.bfloat16) if is_bf16 else tensor
    # A copy (another dtype, a transposed view of a TF/Flax file, read-only or misaligned memory), made in row
    # blocks: each block's memory-mapped source pages are dropped once converted, so a reduced-precision load
    # peaks near the converted weights, not the converted weights plus the file (see ``release``).
    out = torch.empty(array.shape, dtype=dtype)
    flat_rows = out.reshape(-1, *array.shape[1:]) if array.ndim else out.reshape(1)
    source = array if array.ndim else array.reshape(1)
    with warnings.catch_warnings():  # the read-only source is only read: copy_() copies
        warnings.simplefilter("ignore", UserWarning)
        for start, stop, block in row_blocks(source, BLOCK_BYTES, release_pages=release):
            part = torch.from_numpy(np.ascontiguousarray(block.view(np.int16) if is_bf16 else block))
            flat_rows[start:stop].copy_(part.view(torch.bfloat16) if is_bf16 else part)
    if release:
        safetensors_io.release(array)
    return out


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU numpy array of a tensor (bfloat16 as ``ml_dtypes.bfloat16``)."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


# ------------------------------------------------------------------------------------------ loading
def _resolve_config(config: Any, overrides: dict[str, Any]) -> GPT2Config | None:
    if config is not None and not isinstance(config, GPT2Config):
        if isinstance(config, (str, os.PathLike)):
            config = GPT2Config.from_pretrained(config)
        else:
            raise TypeError(f"config must be a GPT2Config or a path, got {type(config).__name__}")
    unknown = sorted(k for k in overrides if k not in _CONFIG_KEYS and (config is None or not hasattr(config, k)))
    if unknown:
        raise TypeError(
            f"from_pretrained() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}: "
            "they are neither loading options nor GPT2Config fields")
    return config


def from_pretrained(
    cls: type,
    name_or_path: str | os.PathLike | None,
    *,
    config: GPT2Config | str | os.PathLike | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
    torch_dtype: Any = None,
    dtype: Any = None,
    output_loading_info: bool = False,
    ignore_mismatched_sizes: bool = False,
    format: str | None = None,
    attn_implementation: str | None = None,
    **config_overrides: Any,
):
    """Build ``cls`` from a checkpoint, HF-style.

    Args:
        name_or_path: a directory with ``config.json`` and weights (safetensors, sharded safetensors,
            ``pytorch_model.bin``, ``tf_model.h5`` or ``flax_model.msgpack``), a weights file, or a hub
            name in the local HF cache.
            ``None`` with ``state_dict=`` and ``config=``: build the model from those alone, as HF does.
        config: a :class:`GPT2Config` (or a path to one) to use instead of the checkpoint's.
        state_dict: weights to load instead of the checkpoint's (any naming style a checkpoint may use);
            the config still comes from ``name_or_path`` unless ``config`` is given.
        torch_dtype / dtype: parameter dtype: ``torch.float32`` (default), ``torch.bfloat16``, ``"auto"``, ...
        output_loading_info: also return ``{"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"}``.
        ignore_mismatched_sizes: re-initialise head weights whose shape differs instead of raising.
        format: force a checkpoint format (``safetensors``, ``pt-bin``, ``tf``, ``flax``).
        attn_implementation: ``"sdpa"`` or ``"eager"``.
        **config_overrides: config fields to change (``num_labels=5``, ``attn_pdrop=0.0``, ...).

    Returns the model in eval mode (and the loading info when asked). Weights the checkpoint lacks
    (a new head) are initialised with the model's own init and reported, as HF does.
    """
    if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
        raise ValueError("pass torch_dtype or dtype, not both")
    _refuse_meta_context(cls)
    _legacy_checkpointing = config_overrides.pop("gradient_checkpointing", None)
    config = _resolve_config(config, config_overrides)
    if state_dict is not None:
        ckpt = _checkpoint_from_state_dict(name_or_path, config, state_dict)
    elif name_or_path is None:
        raise ValueError("from_pretrained(None, ...) builds a model from state_dict= and config=; pass both, "
                         "or a checkpoint directory or model name")
    else:
        ckpt = load_checkpoint(name_or_path, format=format, config=config)
    cfg = ckpt.config.copy(**config_overrides) if config_overrides else ckpt.config
    target = resolve_dtype(torch_dtype if torch_dtype is not None else dtype, cfg, ckpt.tensors)
    tensors, report = match_state_dict(ckpt.tensors, cfg, cls.architecture, ignore_mismatched_sizes=ignore_mismatched_sizes)
    source, directory = ckpt.source, ckpt.directory
    del ckpt  # the tensors (and the file map behind them) now live only as long as the model needs them

    with torch.device("meta"):
        model = cls(cfg, attn_implementation=attn_implementation)
    model.to(target)
    state = {}
    own = state_dict is None  # arrays this call read from a file: their mapped pages may be dropped once copied
    for name in list(tensors):  # one at a time, each source dropped once it is converted
        state[name] = to_tensor(tensors.pop(name), target, release=own)
    del tensors  # the tensors keep what they use alive
    model.load_state_dict(state, strict=False, assign=True)
    del state
    model.tie_weights()
    _init_missing(model, report)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # pragma: no cover - match_state_dict guarantees the body; heads are initialised above
        raise RuntimeError(f"internal error: parameters left uninitialised after loading: {', '.join(leftover)}")
    _log_report(report, cls.__name__, source)
    if hasattr(model, "generation_config"):  # the checkpoint's generation_config.json, for generate()
        model.generation_config = GenerationConfig.for_model(model.config, directory)
    model.eval()
    if _legacy_checkpointing:
        enable_legacy_checkpointing(model)
    if output_loading_info:
        return model, report.as_dict()
    return model


def _refuse_meta_context(cls: type) -> None:
    """HF refuses to load under ``with torch.device("meta")``: the weights would be dropped silently."""
    if torch.empty(0).device.type == "meta":
        raise RuntimeError(f"{cls.__name__}.from_pretrained cannot run inside a torch.device('meta') context: the "
                           "loaded weights would have nowhere to go. Build the model there with "
                           f"{cls.__name__}(config) instead, or load outside the context")


def _checkpoint_from_state_dict(name_or_path: Any, config: GPT2Config | None, state_dict: dict[str, Any]) -> Checkpoint:
    if config is None:
        if name_or_path is None:
            raise ValueError("from_pretrained(None, state_dict=...) needs config= (a GPT2Config or a path to one)")
        config = GPT2Config.from_pretrained(name_or_path)
    tensors = {k: to_numpy(v.detach()) if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in state_dict.items()}
    source = hub.resolve(name_or_path) if name_or_path is not None else None
    return Checkpoint(config, layout.canonical_names(tensors), source=source, format="state_dict")


def enable_legacy_checkpointing(model: nn.Module) -> None:
    """HF's pre-4.x switch ``config.gradient_checkpointing=True``: honoured with a deprecation warning, as HF does,
    and removed from the config (``gradient_checkpointing_enable()`` is the way now)."""
    warnings.warn("config.gradient_checkpointing=True is deprecated (as in HF transformers); gradient checkpointing "
                  "is on. Call model.gradient_checkpointing_enable() instead", FutureWarning, stacklevel=3)
    if hasattr(model.config, "gradient_checkpointing"):
        delattr(model.config, "gradient_checkpointing")
    model.gradient_checkpointing_enable()


def _init_missing(model: nn.Module, report: LoadReport) -> None:
    """Materialise and initialise (the model's own init) every module that owns a missing weight."""
    done: set[str] = set()
    for name in report.missing_keys:
        module_name = name.rpartition(".")[0]
        if module_name in done:
            continue
        done.add(module_name)
        module = model.get_submodule(module_name)
        for pname, param in list(module.named_parameters(recurse=False)):
            if param.is_meta:
                setattr(module, pname, nn.Parameter(torch.empty_like(param, device="cpu"), requires_grad=param.requires_grad))
        with torch.no_grad():
            model._init_weights(module)
    model.tie_weights()


def _log_report(report: LoadReport, class_name: str, source: Path | None) -> None:
    if report.unexpected_keys:
        logger.warning("Some weights of the checkpoint at %s were not used when initialising %s: %s",
                       source, class_name, ", ".join(report.unexpected_keys))
    if report.missing_keys:
        logger.warning("Some weights of %s were not initialised from the checkpoint at %s and are newly initialised: %s. "
                       "You should probably train this model on a downstream task before using it.",
                       class_name, source, ", ".join(report.missing_keys))


# ------------------------------------------------------------------------------------------ saving
def save_pretrained(
    model: nn.Module,
    save_directory: str | os.PathLike,
    *,
    safe_serialization: bool = True,
    max_shard_size: int | str = "5GB",
    state_dict: dict[str, torch.Tensor] | None = None,
) -> list[Path]:
    """Write ``config.json`` and ``model.safetensors`` (``pytorch_model.bin`` with ``safe_serialization=False``),
    and ``generation_config.json`` for the models that can generate.

    A tied ``lm_head`` is not written (HF does the same); the config records the parameter dtype.
    Files are written atomically; a checkpoint above ``max_shard_size`` is sharded with an index.
    Returns the paths written.
    """
    state = model.state_dict() if state_dict is None else state_dict
    tensors = {name: to_numpy(t) for name, t in state.items()}
    dtype_name = _dtype_name(model.dtype)
    config = model.config.copy(torch_dtype=dtype_name, dtype=dtype_name)
    return save_checkpoint(
        save_directory, tensors, config, format="safetensors" if safe_serialization else "pt-bin",
        architecture=model.architecture, max_shard_size=max_shard_size,
        generation_config=getattr(model, "generation_config", None),
    )
