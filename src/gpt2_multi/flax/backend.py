"""Flax's entry in the backend registry (:mod:`gpt2_multi.backends`): numpy in, numpy out.

Flax has a cache only through ``init_cache(batch, max_length)``: a static ``cache`` collection with
``cached_key`` / ``cached_value`` (B, max_length, H, D). A cached call needs explicit ``position_ids`` and
an attention mask of length ``max_length``, exactly as HF's Flax generation passes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import gpt2_multi.flax as stack
from gpt2_multi.backends import Step, call_flags, collect_outputs
from gpt2_multi.flax.loading import cache_to_bhsd as _cache_to_bhsd

if TYPE_CHECKING:
    from gpt2_multi.backends import KV


def load(path: Path, architecture: str, dtype: str = "float32") -> Any:
    import jax.numpy as jnp

    kwargs = {"dtype": jnp.bfloat16} if dtype == "bfloat16" else {}
    return getattr(stack, "Flax" + architecture).from_pretrained(str(path), **kwargs)


def to_numpy(t: Any) -> np.ndarray:
    array = np.asarray(t)
    return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16" else array


def cache_to_bhsd(past: Any, length: int) -> KV:
    return _cache_to_bhsd(past, length)


def forward(model: Any, inputs: dict[str, np.ndarray], flags: dict[str, bool],
            past_chunks: list[np.ndarray]) -> dict[str, np.ndarray]:
    if not past_chunks and not flags.get("use_cache", False):
        return collect_outputs(model(**inputs, **call_flags(flags)), None, to_numpy)
    # A static cache as long as the whole sequence, explicit positions, and a mask of that length (the
    # call's own mask when there is no past).
    inputs = dict(inputs)
    final = inputs["input_ids"] if "input_ids" in inputs else inputs["inputs_embeds"][..., 0]
    lead, length = final.shape[:-1], final.shape[-1]
    total = sum(c.shape[-1] for c in past_chunks) + length
    cache = model.init_cache(int(np.prod(lead)), total)
    mask = inputs.pop("attention_mask", None)
    if mask is None or past_chunks:
        mask = np.ones((*lead, total), dtype=np.int32)
    filled = 0
    for chunk in past_chunks:
        positions = np.broadcast_to(np.arange(filled, filled + chunk.shape[-1]), chunk.shape)
        cache = model(chunk, attention_mask=mask, position_ids=positions, past_key_values=cache).past_key_values
        filled += chunk.shape[-1]
    if "position_ids" not in inputs:
        inputs["position_ids"] = np.broadcast_to(np.arange(filled, filled + length), final.shape)
    out = model(**inputs, attention_mask=mask, past_key_values=cache, **call_flags(flags))
    return collect_outputs(out, cache_to_bhsd(out.past_key_values, total), to_numpy)


def step(model: Any, input_ids: np.ndarray, state: Any, max_length: int | None = None) -> tuple[Step, Any]:
    """One cached LM call; ``state`` is (cache, filled, max_length), None for the first call."""
    batch, length = input_ids.shape
    if state is None:
        max_length = max_length or model.config.n_positions
        cache, filled = model.init_cache(batch, max_length), 0
    else:
        cache, filled, max_length = state
    mask = np.zeros((batch, max_length), dtype=np.int32)
    mask[:, : filled + length] = 1
    positions = np.broadcast_to(np.arange(filled, filled + length), (batch, length))
    out = model(input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache)
    filled += length
    step_ = Step(to_numpy(out.logits), cache_to_bhsd(out.past_key_values, filled))
    return step_, (out.past_key_values, filled, max_length)


def generate(model: Any, input_ids: np.ndarray, attention_mask: np.ndarray | None, **kwargs) -> Any:
    return model.generate(input_ids, attention_mask=attention_mask, **kwargs)
