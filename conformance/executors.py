"""One executor per backend: load a checkpoint, run a :class:`~conformance.cases.Case`, return numpy outputs.

Outputs are keyed like the golden fixtures: ``logits``, ``last_hidden_state``, ``loss``,
``mc_loss``, ``mc_logits``, ``start_logits``, ``end_logits``, ``hidden_states.{i}``,
``attentions.{i}`` and ``past.{layer}.key`` / ``past.{layer}.value`` in ``(B, H, S, D)``.

The cache adapters (each backend's layout -> ``(B, H, S, D)``):

* PyTorch: a tuple of ``(key, value)`` per layer, already ``(B, H, S, D)``.
* TensorFlow: one ``(2, B, H, S, D)`` tensor per layer: ``[0]`` is the key, ``[1]`` the value.
* Flax: the ``cache`` collection from ``init_cache(batch, max_length)``; ``cached_key`` /
  ``cached_value`` are ``(B, max_length, H, D)``: the filled part ``[:, :S]`` is transposed
  (:func:`gpt2_multi.flax.cache_to_bhsd`). Flax needs explicit ``position_ids`` and a mask of
  length ``max_length`` with a cache, so cached cases run with both, exactly as HF's Flax generation does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpt2_multi import backends as _backends
from gpt2_multi.conformance.cases import Case

OUTPUT_KEYS = ("loss", "mc_loss", "logits", "mc_logits", "last_hidden_state", "start_logits", "end_logits")
FLAG_NAMES = ("output_attentions", "output_hidden_states")


def available_backends() -> list[str]:
    return [b for b in _backends.BACKENDS if _backends.stack_available(b)]


def _collect(out, kv: list[tuple[np.ndarray, np.ndarray]] | None, to_numpy) -> dict[str, np.ndarray]:
    """Numpy outputs under the fixture keys.

    Multiple-choice inputs (B, C, T): frameworks differ in whether per-layer hidden states and attentions
    keep the choice axis (HF's TF model reshapes them to (B, C, ...), HF's PyTorch model keeps
    (B * C, ...) except for the last hidden state). They are compared flattened to (B * C, ...).
    """
    result = {}
    for key in OUTPUT_KEYS:
        value = getattr(out, key, None)
        if value is not None:
            result[key] = to_numpy(value)
    for key in ("hidden_states", "attentions"):
        values = getattr(out, key, None)
        if values is not None:
            for i, v in enumerate(values):
                array = to_numpy(v)
                core = 2 if key == "hidden_states" else 3  # (T, E) or (H, T, S)
                result[f"{key}.{i}"] = array.reshape(-1, *array.shape[-core:])
    for layer, (k, v) in enumerate(kv or []):
        result[f"past.{layer}.key"] = np.asarray(k)
        result[f"past.{layer}.value"] = np.asarray(v)
    return result


def _flags(case: Case) -> dict[str, bool]:
    return {k: case.flags.get(k, False) for k in FLAG_NAMES}


def _call_kwargs(case: Case, past) -> dict:
    """Flags and cache arguments for the final call: only what the case sets (HF's QA head takes no cache)."""
    kwargs: dict = dict(_flags(case))
    if "use_cache" in case.flags or past is not None:
        kwargs["use_cache"] = case.flags.get("use_cache", False) or past is not None
    if past is not None:
        kwargs["past_key_values"] = past
    return kwargs


class TorchExecutor:
    name = "pt"

    def load(self, path: Path, architecture: str, dtype: str = "float32"):
        import torch

        import gpt2_multi.pt as stack

        kwargs = {"torch_dtype": torch.bfloat16} if dtype == "bfloat16" else {}
        return getattr(stack, architecture).from_pretrained(str(path), **kwargs).eval()

    def run(self, model, case: Case) -> dict[str, np.ndarray]:
        import torch

        def tensor(x):
            t = torch.from_numpy(np.asarray(x))
            return t.to(model.dtype) if t.is_floating_point() else t

        past = None
        with torch.no_grad():
            for chunk in case.past_chunks:
                past = model(input_ids=tensor(chunk), past_key_values=past, use_cache=True).past_key_values
            out = model(**{k: tensor(v) for k, v in case.inputs.items()}, **_call_kwargs(case, past))
        kv = None
        if getattr(out, "past_key_values", None) is not None:
            kv = [(k.float().numpy(), v.float().numpy()) for k, v in out.past_key_values]
        return _collect(out, kv, lambda t: t.float().numpy())


class TFExecutor:
    name = "tf"

    def load(self, path: Path, architecture: str, dtype: str = "float32"):
        import gpt2_multi.tf as stack

        kwargs = {"dtype": "bfloat16"} if dtype == "bfloat16" else {}
        return getattr(stack, "TF" + architecture).from_pretrained(str(path), **kwargs)

    def run(self, model, case: Case) -> dict[str, np.ndarray]:
        past = None
        for chunk in case.past_chunks:
            past = model(input_ids=chunk, past_key_values=past, use_cache=True, training=False).past_key_values
        out = model(**case.inputs, **_call_kwargs(case, past), training=False)
        kv = None
        if getattr(out, "past_key_values", None) is not None:
            kv = [(np.asarray(layer[0]), np.asarray(layer[1])) for layer in out.past_key_values]
        return _collect(out, kv, lambda t: np.asarray(t, dtype=np.float32))


class FlaxExecutor:
    name = "flax"

    def load(self, path: Path, architecture: str, dtype: str = "float32"):
        import jax.numpy as jnp

        import gpt2_multi.flax as stack

        kwargs = {"dtype": jnp.bfloat16} if dtype == "bfloat16" else {}
        return getattr(stack, "Flax" + architecture).from_pretrained(str(path), **kwargs)

    def run(self, model, case: Case) -> dict[str, np.ndarray]:
        from gpt2_multi.flax import cache_to_bhsd

        to_numpy = lambda t: np.asarray(t, dtype=np.float32)  # noqa: E731
        if not case.past_chunks and not case.flags.get("use_cache", False):
            return _collect(model(**case.inputs, **_flags(case)), None, to_numpy)
        # Flax has a cache only through init_cache: a static cache as long as the whole sequence, explicit
        # positions, and a mask of that length (the case's own mask when it has no past), as HF's Flax generate.
        inputs = dict(case.inputs)
        final = inputs["input_ids"] if "input_ids" in inputs else inputs["inputs_embeds"][..., 0]
        lead, length = final.shape[:-1], final.shape[-1]
        total = sum(c.shape[-1] for c in case.past_chunks) + length
        cache = model.init_cache(int(np.prod(lead)), total)
        mask = inputs.pop("attention_mask", None)
        if mask is None or case.past_chunks:
            mask = np.ones((*lead, total), dtype=np.int32)
        filled = 0
        for chunk in case.past_chunks:
            positions = np.broadcast_to(np.arange(filled, filled + chunk.shape[-1]), chunk.shape)
            cache = model(chunk, attention_mask=mask, position_ids=positions, past_key_values=cache).past_key_values
            filled += chunk.shape[-1]
        if "position_ids" not in inputs:
            inputs["position_ids"] = np.broadcast_to(np.arange(filled, filled + length), final.shape)
        out = model(**inputs, attention_mask=mask, past_key_values=cache, **_flags(case))
        return _collect(out, cache_to_bhsd(out.past_key_values, total), to_numpy)


EXECUTORS = {"pt": TorchExecutor(), "tf": TFExecutor(), "flax": FlaxExecutor()}
