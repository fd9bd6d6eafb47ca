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
from gpt2_multi.backends import REPEATED_INPUTS, Step, call_flags, collect_outputs
from gpt2_multi.flax.loading import cache_to_bhsd as _cache_to_bhsd

if TYPE_CHECKING:
    from gpt2_multi.backends import KV


def load(path: Path, architecture: str, dtype: str = "float32") -> Any:
    import jax.numpy as jnp

    # bfloat16 parameters too, as PyTorch's torch_dtype and Keras' dtype give: with float32 ones (Flax's mixed
    # precision) the LayerNorms would scale by unrounded weights and differ from the other stacks
    kwargs = {"dtype": jnp.bfloat16, "param_dtype": jnp.bfloat16} if dtype == "bfloat16" else {}
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
    # A static cache as long as the whole sequence, explicit positions, and one mask over every position
    # (the inputs' own, which already covers chunks and final call, or all ones) for every call.
    inputs = dict(inputs)
    final = inputs["input_ids"] if "input_ids" in inputs else inputs["inputs_embeds"][..., 0]
    lead, length = final.shape[:-1], final.shape[-1]
    total = sum(c.shape[-1] for c in past_chunks) + length
    cache = model.init_cache(int(np.prod(lead)), total)
    mask = inputs.pop("attention_mask", None)
    if mask is None:
        mask = np.ones((*lead, total), dtype=np.int32)
    repeated = {k: inputs[k] for k in REPEATED_INPUTS if k in inputs}
    filled = 0
    for chunk in past_chunks:
        positions = np.broadcast_to(np.arange(filled, filled + chunk.shape[-1]), chunk.shape)
        cache = model(chunk, attention_mask=mask, position_ids=positions, past_key_values=cache,
                      **repeated).past_key_values
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


# --- training
def _value_and_grad(model: Any, inputs: dict[str, np.ndarray], checkpointing: bool) -> tuple[dict[str, float], Any]:
    """Losses and the gradient pytree (like ``model.params``) of :func:`gpt2_multi.training.objective`.

    ``checkpointing=True`` is the training path with HF's ``enable_gradient_checkpointing()`` (``nn.remat``
    blocks) and ``train=True`` (dropout, zero in the conformance configs); otherwise ``train=False``. The
    model's module is restored afterwards.
    """
    import jax

    from gpt2_multi.training import objective, reported_losses

    def loss_fn(params):
        out = model(**inputs, params=params, train=checkpointing,
                    dropout_rng=jax.random.PRNGKey(0) if checkpointing else None)
        loss, mc_loss = out.loss, getattr(out, "mc_loss", None)
        return objective(loss, mc_loss), (loss, mc_loss)

    saved = model.module, model.remat
    try:
        if checkpointing and not model.remat:
            model.enable_gradient_checkpointing()
        (_, (loss, mc_loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(model.params)
    finally:
        model.module, model.remat = saved
    return reported_losses(loss, mc_loss), grads


def _state_dict(tree: Any) -> dict[str, np.ndarray]:
    from gpt2_multi.flax.loading import params_to_state_dict

    return {name: to_numpy(value).astype(np.float32, copy=True) for name, value in params_to_state_dict(tree).items()}


def loss_and_grads(model: Any, inputs: dict[str, np.ndarray],
                   checkpointing: bool = False) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Losses and the gradient of their sum (:mod:`gpt2_multi.training`) per HF PyTorch name, in PyTorch's layout."""
    losses, grads = _value_and_grad(model, inputs, checkpointing)
    return losses, _state_dict(grads)


def adamw_step(model: Any, inputs: dict[str, np.ndarray], hyper: Any) -> dict[str, np.ndarray]:
    """One ``optax.adamw`` step on the loss of ``inputs`` (decay masked by :func:`gpt2_multi.training.decays`):
    ``model.params`` become the new parameters, which are returned (HF PyTorch names and layout)."""
    import jax
    import optax

    from gpt2_multi.checkpoint import layout
    from gpt2_multi.training import decays

    _, grads = _value_and_grad(model, inputs, False)
    names = jax.tree_util.tree_map_with_path(
        lambda path, _: layout.flax_path_to_pt(tuple(str(k.key) for k in path)), model.params)
    key = (hyper, jax.tree_util.tree_structure(model.params), tuple(jax.tree_util.tree_leaves(names)))
    if key not in _ADAMW_STEPS:  # one compiled update per hyper-parameters and parameter tree
        mask = jax.tree_util.tree_map(decays, names)
        tx = optax.adamw(hyper.lr, b1=hyper.betas[0], b2=hyper.betas[1], eps=hyper.eps, eps_root=0.0,
                         weight_decay=hyper.weight_decay, mask=mask)

        def step(params, grads):
            updates, _ = tx.update(grads, tx.init(params), params)
            return optax.apply_updates(params, updates)

        _ADAMW_STEPS[key] = jax.jit(step)
    model.params = _ADAMW_STEPS[key](model.params, grads)
    return _state_dict(model.params)


_ADAMW_STEPS: dict[tuple, Any] = {}
