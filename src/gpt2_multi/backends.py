"""A small, uniform driver over the three stacks, for the CLI demo and parity checks.

Each backend is loaded lazily: asking whether it is installed imports nothing, and
running one imports only its framework. Every driver returns numpy: logits
``(B, T, V)`` and the KV cache as a list over layers of ``(key, value)``, each
``(B, H, S, D)`` (the layout the conformance suite compares).

The adapters from each framework's native cache layout to ``(B, H, S, D)``:

* PyTorch: ``past_key_values`` is already a tuple of ``(k, v)`` per layer, ``(B, H, S, D)``.
* TensorFlow: one tensor ``(2, B, H, S, D)`` per layer; index 0 is the key, 1 the value.
* Flax: the ``cache`` collection holds ``cached_key``/``cached_value`` ``(B, max_length, H, D)``
  and ``cache_index``; the filled part ``[:, :S]`` is transposed to ``(B, H, S, D)``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKENDS = ("pt", "tf", "flax")
FRAMEWORK_MODULES = {"pt": ("torch",), "tf": ("tensorflow", "keras"), "flax": ("jax", "flax")}
EXTRAS = {"pt": "torch", "tf": "tf", "flax": "flax"}
LABELS = {"pt": "PyTorch", "tf": "TensorFlow/Keras", "flax": "JAX/Flax"}

KV = list[tuple[np.ndarray, np.ndarray]]


def framework_installed(backend: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in FRAMEWORK_MODULES[backend])


def installed_backends() -> list[str]:
    return [b for b in BACKENDS if framework_installed(b)]


def stack_available(backend: str) -> bool:
    """True when the framework is installed and the stack's LM model can be imported."""
    if not framework_installed(backend):
        return False
    try:
        _lm_class(backend)
    except (ImportError, AttributeError):
        return False
    return True


def _lm_class(backend: str):
    if backend == "pt":
        from gpt2_multi.pt import GPT2LMHeadModel

        return GPT2LMHeadModel
    if backend == "tf":
        from gpt2_multi.tf import TFGPT2LMHeadModel

        return TFGPT2LMHeadModel
    if backend == "flax":
        from gpt2_multi.flax import FlaxGPT2LMHeadModel

        return FlaxGPT2LMHeadModel
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


@dataclass
class Generated:
    sequences: np.ndarray
    sequences_scores: np.ndarray | None = None


@dataclass
class Step:
    logits: np.ndarray
    kv: KV


class Driver:
    """Load an LM checkpoint in one backend and run cached forward steps on numpy ids."""

    def __init__(self, backend: str, path: str | Path):
        self.backend = backend
        self.model = _lm_class(backend).from_pretrained(str(path))
        self.config = self.model.config

    def forward(self, input_ids: np.ndarray, state=None, max_length: int | None = None) -> tuple[Step, object]:
        """Run ``input_ids`` (B, T) after ``state`` (None for the first call); return the step and the new state."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        if self.backend == "pt":
            return self._forward_pt(input_ids, state)
        if self.backend == "tf":
            return self._forward_tf(input_ids, state)
        return self._forward_flax(input_ids, state, max_length)

    def _forward_pt(self, ids, state):
        import torch

        with torch.no_grad():
            out = self.model(input_ids=torch.from_numpy(ids), past_key_values=state, use_cache=True)
        kv = [(k.numpy(), v.numpy()) for k, v in out.past_key_values]
        return Step(out.logits.float().numpy(), kv), out.past_key_values

    def _forward_tf(self, ids, state):
        out = self.model(input_ids=ids, past_key_values=state, use_cache=True, training=False)
        kv = [(np.asarray(layer[0]), np.asarray(layer[1])) for layer in out.past_key_values]
        return Step(np.asarray(out.logits, dtype=np.float32), kv), out.past_key_values

    def _forward_flax(self, ids, state, max_length):
        from gpt2_multi.flax import cache_to_bhsd

        batch, length = ids.shape
        if state is None:
            max_length = max_length or self.config.n_positions
            cache, filled = self.model.init_cache(batch, max_length), 0
        else:
            cache, filled, max_length = state
        mask = np.zeros((batch, max_length), dtype=np.int32)
        mask[:, : filled + length] = 1
        positions = np.broadcast_to(np.arange(filled, filled + length), (batch, length))
        out = self.model(ids, attention_mask=mask, position_ids=positions, past_key_values=cache)
        new_filled = filled + length
        kv = cache_to_bhsd(out.past_key_values, new_filled)
        return Step(np.asarray(out.logits, dtype=np.float32), kv), (out.past_key_values, new_filled, max_length)

    def generate(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None, **kwargs) -> Generated:
        """The backend's own ``model.generate`` on numpy prompts (B, T); numpy results.

        ``kwargs`` go to ``generate`` unchanged (``max_new_tokens``, ``do_sample``, ``seed``, ``num_beams``,
        ``streamer`` ...). ``sequences`` is (rows, T + new) int64 as the backend returned it (Flax pads every
        row to the full length; PyTorch and TensorFlow stop at the longest row).
        """
        ids = np.asarray(input_ids, dtype=np.int64)
        mask = None if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        if self.backend == "pt":
            import torch

            out = self.model.generate(torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask),
                                      return_dict_in_generate=True, **kwargs)
        else:
            out = self.model.generate(ids, attention_mask=mask, return_dict_in_generate=True, **kwargs)
        scores = getattr(out, "sequences_scores", None)
        return Generated(np.asarray(out.sequences).astype(np.int64),
                         None if scores is None else np.asarray(scores, dtype=np.float32))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0
