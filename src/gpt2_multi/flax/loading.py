"""Weights in and out of the Flax stack, through the shared checkpoint layer (no file format is parsed here).

Loading: ``load_checkpoint`` (any format) -> ``match_state_dict`` (HF semantics, numpy under HF PyTorch
names) -> ``layout.pt_to_flax_path`` / ``pt_to_flax_array`` (the one name map) -> one ``jax.device_put``
per tensor. The module is never randomly initialised first: only head parameters the checkpoint lacks
are drawn (HF's initialiser: normal(initializer_range) kernels, zero biases). For memory-mapped
safetensors each tensor's file pages are released as soon as it is on the device, so loading peaks
near the size of the weights instead of twice it.

Saving: the params pytree -> HF PyTorch names -> ``save_checkpoint`` (safetensors + config.json by default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from gpt2_multi.checkpoint import (
    LoadReport,
    layout,
    load_checkpoint,
    match_state_dict,
    safetensors_io,
    save_checkpoint,
)
from gpt2_multi.checkpoint.errors import CheckpointError
from gpt2_multi.checkpoint.pages import row_blocks
from gpt2_multi.config import GPT2Config
from gpt2_multi.generation import GenerationConfig

if TYPE_CHECKING:
    from gpt2_multi.flax.modeling import FlaxGPT2PreTrainedModel


# ------------------------------------------------------------------------------------------ params <-> tensors
def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if path[-1] in node:
        raise CheckpointError(f"two tensors map to the same Flax parameter {'/'.join(path)}")
    node[path[-1]] = value


def _flatten(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) or hasattr(value, "items"):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


CHUNK_BYTES = 16 * 2**20
_ALIGN = 64  # XLA's CPU client adopts (does not copy) host buffers aligned to 64 bytes


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    offset = (-raw.ctypes.data) % _ALIGN
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def _to_flax_layout(name: str, source: np.ndarray, dtype: np.dtype, release: bool) -> np.ndarray:
    """``layout.pt_to_flax_array`` into a fresh array of ``dtype``; big tensors go in row blocks.

    Converting a large tensor block by block, releasing each block's memory-mapped pages as soon as
    it is copied, keeps the source and the converted copy from being resident at the same time. The
    result is 64-byte aligned so that ``jax.device_put`` on CPU adopts it instead of copying it again.
    """
    if source.ndim != 2 or source.nbytes <= CHUNK_BYTES:
        converted = layout.pt_to_flax_array(name, source)
        array = _aligned_empty(converted.shape, dtype)
        array[...] = converted
    else:
        transposed = layout.flax_transposed(name)
        array = _aligned_empty(source.shape[::-1] if transposed else source.shape, dtype)
        for start, stop, rows in row_blocks(source, CHUNK_BYTES, release_pages=release):
            block = layout.pt_to_flax_array(name, rows)
            if transposed:
                array[:, start:stop] = block
            else:
                array[start:stop] = block
    if release:
        safetensors_io.release(source)
    return array


def initial_value(path: tuple[str, ...], shape: tuple[int, ...], dtype: Any, config: GPT2Config,
                  rng: np.random.Generator) -> np.ndarray:
    """HF's initialisation of one parameter: normal(0, initializer_range) kernels and embeddings, zero biases, unit scales."""
    leaf = path[-1]
    if leaf in ("kernel", "embedding"):
        value = rng.standard_normal(shape, dtype=np.float32) * np.float32(config.initializer_range)
    elif leaf == "scale":
        value = np.ones(shape, np.float32)
    else:
        value = np.zeros(shape, np.float32)
    return value.astype(dtype)


def initial_params(shape_tree: dict, config: GPT2Config, *, seed: int = 0, param_dtype: Any = jnp.float32) -> dict:
    """Random parameters for every leaf of ``shape_tree`` (host-side numpy: no XLA compilation)."""
    rng = np.random.default_rng(seed)
    params: dict = {}
    for path, leaf in sorted(_flatten(shape_tree).items()):
        _set(params, path, jax.device_put(initial_value(path, tuple(leaf.shape), param_dtype, config, rng)))
    return params


def params_from_state_dict(
    tensors: dict[str, np.ndarray],
    shape_tree: dict,
    *,
    param_dtype: Any = jnp.float32,
    config: GPT2Config,
    missing_keys: list[str] | tuple[str, ...] = (),
    seed: int = 0,
    release: bool = False,
) -> dict:
    """Build the params pytree from numpy arrays under the architecture's HF PyTorch names.

    ``shape_tree`` is the expected structure (``model.params_shape_tree()``); every leaf must be
    covered by ``tensors`` or by ``missing_keys`` (initialised here), else :class:`CheckpointError`.
    Each tensor is converted (transposed where HF's Flax layout differs, cast to ``param_dtype``) and
    put on the device once. ``release=True`` drops each memory-mapped source's pages once converted;
    pass it only for arrays nobody has written to or will read again (``from_pretrained`` does).
    """
    expected = _flatten(shape_tree)
    params: dict = {}
    for name in list(tensors):
        source = tensors[name]
        path = layout.pt_to_flax_path(name)
        if path not in expected:
            raise CheckpointError(f"tensor {name!r} maps to Flax path {'/'.join(path)}, which this model does not have")
        array = _to_flax_layout(name, source, np.dtype(param_dtype), release)
        if tuple(array.shape) != tuple(expected[path].shape):
            raise CheckpointError(f"{name!r} has shape {array.shape} in Flax layout, the model expects {expected[path].shape}")
        _set(params, path, jax.device_put(array))
        del array
    rng = np.random.default_rng(seed)
    for name in missing_keys:
        path = layout.pt_to_flax_path(name)
        if path not in expected:
            raise CheckpointError(f"missing key {name!r} maps to {'/'.join(path)}, which this model does not have")
        _set(params, path, jax.device_put(initial_value(path, expected[path].shape, param_dtype, config, rng)))
    absent = [p for p in expected if _get(params, p) is None]
    if absent:
        raise CheckpointError("the checkpoint leaves these parameters unset: " + ", ".join("/".join(p) for p in absent))
    return params


def _get(tree: dict, path: tuple[str, ...]) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def params_to_state_dict(params: dict) -> dict[str, np.ndarray]:
    """The params pytree as numpy arrays under HF PyTorch names (the architecture's own prefix style)."""
    out: dict[str, np.ndarray] = {}
    for path, value in _flatten(params).items():
        name = layout.flax_path_to_pt(path)
        out[name] = layout.flax_to_pt_array(name, np.asarray(value))
    return out


# ------------------------------------------------------------------------------------------ from / save pretrained
def from_pretrained(
    cls: type[FlaxGPT2PreTrainedModel],
    name_or_path: str | os.PathLike,
    *,
    config: GPT2Config | None = None,
    format: str | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    remat: bool = False,
    ignore_mismatched_sizes: bool = False,
    output_loading_info: bool = False,
    seed: int = 0,
    _do_init: bool = True,
    **config_overrides: Any,
):
    """Load ``cls`` from a directory / weights file / cached hub name in any format (safetensors, pt-bin, tf, flax).

    Returns the model, or ``(model, loading_info)`` with ``output_loading_info`` (HF's dict:
    missing_keys, unexpected_keys, mismatched_keys, error_msgs). As in HF, ``_do_init=False`` returns
    ``(model, params)`` with the params kept outside the model (reading ``model.params`` raises ValueError).
    """
    ckpt = load_checkpoint(name_or_path, format=format, config=config)
    model_config = ckpt.config.copy(**config_overrides) if config_overrides else ckpt.config
    tensors, report = match_state_dict(ckpt.tensors, model_config, cls.architecture,
                                       ignore_mismatched_sizes=ignore_mismatched_sizes)
    model = cls(model_config, dtype=dtype, param_dtype=param_dtype, remat=remat, _do_init=False)
    params = params_from_state_dict(tensors, model.params_shape_tree(), param_dtype=param_dtype,
                                    config=model_config, missing_keys=report.missing_keys, seed=seed, release=True)
    model.loading_report = report
    if hasattr(model, "generation_config"):  # the LM classes: the checkpoint's generation_config.json
        model.generation_config = GenerationConfig.for_model(model_config, ckpt.directory)
    if not _do_init:  # HF's contract: the params live outside the model (model.params raises)
        return (model, params, report.as_dict()) if output_loading_info else (model, params)
    model._is_initialized = True
    model.params = params
    if output_loading_info:
        return model, report.as_dict()
    return model


def save_pretrained(
    model: FlaxGPT2PreTrainedModel,
    save_directory: str | os.PathLike,
    params: dict | None = None,
    *,
    format: str = "safetensors",
    max_shard_size: int | str = "5GB",
) -> list[Path]:
    """Write config.json and the weights (default ``model.safetensors``, HF PyTorch names) into ``save_directory``,
    and ``generation_config.json`` for the models that can generate (as HF)."""
    params = model._params_or(params)
    if params is None:
        raise ValueError("the model has no params to save")
    return save_checkpoint(save_directory, params_to_state_dict(params), model.config, format=format,
                           architecture=model.architecture, max_shard_size=max_shard_size,
                           generation_config=getattr(model, "generation_config", None))


# ------------------------------------------------------------------------------------------ cache adapter
def cache_to_bhsd(cache: dict, length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``length`` cached positions of every layer as HF PyTorch's ``(key, value)`` in (B, H, S, D).

    ``cache`` is a cache collection (``init_cache`` or an output's ``past_key_values``, with or without
    the ``transformer`` level); Flax stores ``cached_key`` as (B, max_length, H, D).
    """
    body = cache.get("transformer", cache)
    blocks = body["h"]
    out = []
    for i in range(len(blocks)):
        attn = blocks[str(i)]["attn"]
        key = np.asarray(attn["cached_key"])[:, :length].transpose(0, 2, 1, 3)
        value = np.asarray(attn["cached_value"])[:, :length].transpose(0, 2, 1, 3)
        out.append((key, value))
    return out


__all__ = ["LoadReport", "cache_to_bhsd", "from_pretrained", "initial_params", "initial_value", "params_from_state_dict", "params_to_state_dict", "save_pretrained"]
