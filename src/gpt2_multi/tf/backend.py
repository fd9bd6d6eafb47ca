"""TensorFlow's entry in the backend registry (:mod:`gpt2_multi.backends`): numpy in, numpy out.

Caches are one tensor (2, B, H, S, D) per layer: ``[0]`` is the key, ``[1]`` the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

import gpt2_multi.tf as stack
from gpt2_multi.backends import Step, call_kwargs, collect_outputs

if TYPE_CHECKING:
    from gpt2_multi.backends import KV


def load(path: Path, architecture: str, dtype: str = "float32") -> keras.Model:
    kwargs = {"dtype": "bfloat16"} if dtype == "bfloat16" else {}
    return getattr(stack, "TF" + architecture).from_pretrained(str(path), **kwargs)


def to_numpy(t: Any) -> np.ndarray:
    array = np.asarray(t)
    return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16" else array


def cache_to_bhsd(past: Any, length: int | None = None) -> KV:
    return [(to_numpy(layer[0])[:, :, :length], to_numpy(layer[1])[:, :, :length]) for layer in past]


def forward(model: keras.Model, inputs: dict[str, np.ndarray], flags: dict[str, bool],
            past_chunks: list[np.ndarray]) -> dict[str, np.ndarray]:
    past = None
    for chunk in past_chunks:
        past = model(input_ids=chunk, past_key_values=past, use_cache=True, training=False).past_key_values
    out = model(**inputs, **call_kwargs(flags, past), training=False)
    kv = cache_to_bhsd(out.past_key_values) if getattr(out, "past_key_values", None) is not None else None
    return collect_outputs(out, kv, to_numpy)


def step(model: keras.Model, input_ids: np.ndarray, state: Any, max_length: int | None = None) -> tuple[Step, Any]:
    out = model(input_ids=input_ids, past_key_values=state, use_cache=True, training=False)
    return Step(to_numpy(out.logits), cache_to_bhsd(out.past_key_values)), out.past_key_values


def generate(model: keras.Model, input_ids: np.ndarray, attention_mask: np.ndarray | None, **kwargs) -> Any:
    return model.generate(input_ids, attention_mask=attention_mask, **kwargs)
