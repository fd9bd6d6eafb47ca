"""A documented optax training step for any Flax GPT-2 head.

The step is the usual JAX recipe: the loss is the head's own ``loss`` output (so the same step trains
the LM, classification, token-classification, QA and double-heads models), its gradient comes from
``jax.value_and_grad``, optax turns the gradient into an update, and the whole step is one
``jax.jit``-ed function. Dropout is on (``deterministic=False``) with a fresh key per step.

Example::

    import optax
    from gpt2_multi.flax import FlaxGPT2LMHeadModel
    from gpt2_multi.flax.training import create_train_state, train_step

    model = FlaxGPT2LMHeadModel.from_pretrained("path/to/checkpoint")
    state = create_train_state(model, optax.adamw(3e-4))
    rng = jax.random.PRNGKey(0)
    for batch in batches:  # dicts: input_ids (B, T), attention_mask (B, T), labels (B, T)
        rng, step_rng = jax.random.split(rng)
        state, loss = train_step(state, batch, step_rng)
    model.params = state.params

Batches are dicts of arrays named like the module's arguments (``input_ids``, ``attention_mask``,
``labels``, ``mc_labels``, ``start_positions`` ...). Use ``model.module`` built with ``remat=True``
(``from_pretrained(..., remat=True)``) to trade compute for activation memory, and
:func:`gpt2_multi.flax.sharding.shard_params` / ``shard_batch`` to run the same step on a mesh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

TrainState = train_state.TrainState


def create_train_state(model: Any, optimizer: optax.GradientTransformation, params: Any = None) -> TrainState:
    """A ``TrainState`` holding the model's Linen ``apply``, its params and ``optimizer``'s state."""
    params = model.params if params is None else params
    if params is None:
        raise ValueError("the model has no params; load or initialise them first")
    return TrainState.create(apply_fn=model.module.apply, params=params, tx=optimizer)


def loss_fn(params: Any, apply_fn: Any, batch: Mapping[str, jax.Array], dropout_rng: jax.Array, train: bool = True) -> jax.Array:
    """The head's loss on ``batch`` (which must hold the head's labels). LM and double heads add ``mc_loss``."""
    out = apply_fn({"params": params}, **batch, deterministic=not train, rngs={"dropout": dropout_rng})
    if out.loss is None and getattr(out, "mc_loss", None) is None:
        raise ValueError("the batch has no labels, so the model returned no loss; add labels (or the head's targets)")
    loss = out.loss if out.loss is not None else 0.0
    if getattr(out, "mc_loss", None) is not None:
        loss = loss + out.mc_loss
    return jnp.asarray(loss, jnp.float32)


@jax.jit
def train_step(state: TrainState, batch: Mapping[str, jax.Array], dropout_rng: jax.Array) -> tuple[TrainState, jax.Array]:
    """One optimisation step: ``(state, batch, dropout_rng) -> (new_state, loss before the update)``."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, state.apply_fn, batch, dropout_rng)
    return state.apply_gradients(grads=grads), loss


@jax.jit
def eval_step(state: TrainState, batch: Mapping[str, jax.Array]) -> jax.Array:
    """The loss without dropout and without an update."""
    return loss_fn(state.params, state.apply_fn, batch, jax.random.PRNGKey(0), train=False)


__all__ = ["TrainState", "create_train_state", "eval_step", "loss_fn", "train_step"]
