"""PyTorch's entry in the backend registry (:mod:`gpt2_multi.backends`): numpy in, numpy out.

Caches are already HF's tuple of ``(key, value)`` per layer, each (B, H, S, D).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import gpt2_multi.pt as stack
from gpt2_multi.backends import Step, call_kwargs, collect_outputs

if TYPE_CHECKING:
    from gpt2_multi.backends import KV


def load(path: Path, architecture: str, dtype: str = "float32") -> torch.nn.Module:
    kwargs = {"torch_dtype": torch.bfloat16} if dtype == "bfloat16" else {}
    return getattr(stack, architecture).from_pretrained(str(path), **kwargs).eval()


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.float() if t.is_floating_point() else t).numpy()


def cache_to_bhsd(past: Any, length: int | None = None) -> KV:
    return [(to_numpy(k)[:, :, :length], to_numpy(v)[:, :, :length]) for k, v in past]


def _tensor(model: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(x))
    return t.to(model.dtype) if t.is_floating_point() else t


def forward(model: torch.nn.Module, inputs: dict[str, np.ndarray], flags: dict[str, bool],
            past_chunks: list[np.ndarray]) -> dict[str, np.ndarray]:
    past = None
    with torch.no_grad():
        for chunk in past_chunks:
            past = model(input_ids=_tensor(model, chunk), past_key_values=past, use_cache=True).past_key_values
        out = model(**{k: _tensor(model, v) for k, v in inputs.items()}, **call_kwargs(flags, past))
    kv = cache_to_bhsd(out.past_key_values) if getattr(out, "past_key_values", None) is not None else None
    return collect_outputs(out, kv, to_numpy)


def step(model: torch.nn.Module, input_ids: np.ndarray, state: Any, max_length: int | None = None) -> tuple[Step, Any]:
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(input_ids), past_key_values=state, use_cache=True)
    return Step(to_numpy(out.logits), cache_to_bhsd(out.past_key_values)), out.past_key_values


def generate(model: torch.nn.Module, input_ids: np.ndarray, attention_mask: np.ndarray | None, **kwargs) -> Any:
    mask = None if attention_mask is None else torch.from_numpy(attention_mask)
    return model.generate(torch.from_numpy(input_ids), attention_mask=mask, **kwargs)
