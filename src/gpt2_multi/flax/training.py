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
import numpy as np
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


# ------------------------------------------------------------------------------ gpt2-multi train's Trainer
class Trainer:
    """``gpt2-multi train`` in Flax (the driver is :mod:`gpt2_multi.training.run`): an optax AdamW
    (``inject_hyperparams``, so each step's learning rate is an input, not a recompilation) and one
    ``jax.jit``-ed step. Dropout draws from ``fold_in(PRNGKey(seed), step)``."""

    def __init__(self, path: Any, hyper: Any, seed: int = 0) -> None:
        from gpt2_multi.checkpoint import layout
        from gpt2_multi.flax import FlaxGPT2LMHeadModel
        from gpt2_multi.training import decays

        self.model = FlaxGPT2LMHeadModel.from_pretrained(path)
        self.names = jax.tree_util.tree_map_with_path(
            lambda path, _: layout.flax_path_to_pt(tuple(str(k.key) for k in path)), self.model.params)
        tx = optax.inject_hyperparams(optax.adamw)(
            learning_rate=hyper.lr, b1=hyper.betas[0], b2=hyper.betas[1], eps=hyper.eps, eps_root=0.0,
            weight_decay=hyper.weight_decay, mask=jax.tree_util.tree_map(decays, self.names))
        self.state = TrainState.create(apply_fn=self.model.module.apply, params=self.model.params, tx=tx)
        self.key = jax.random.PRNGKey(seed)

        def step(state: TrainState, ids: jax.Array, lr: jax.Array, rng: jax.Array) -> tuple[TrainState, jax.Array]:
            state = state.replace(opt_state=optax.tree_utils.tree_set(state.opt_state, learning_rate=lr))
            loss, grads = jax.value_and_grad(loss_fn)(state.params, state.apply_fn, {"input_ids": ids, "labels": ids}, rng)
            return state.apply_gradients(grads=grads), loss

        self._step = jax.jit(step, donate_argnums=0)
        self._eval = jax.jit(lambda params, ids: loss_fn(params, self.state.apply_fn, {"input_ids": ids, "labels": ids},
                                                         self.key, train=False))

    def fit(self, loop: Any) -> None:
        for step in range(loop.start, loop.stop):
            rng = jax.random.fold_in(self.key, step)
            lr = jnp.asarray(loop.learning_rate(step), jnp.float32)
            self.state, loss = self._step(self.state, jnp.asarray(loop.batch(step)), lr, rng)
            if not loop.step_done(step, float(loss)):
                break

    def eval_loss(self, input_ids: np.ndarray) -> float:
        return float(self._eval(self.state.params, jnp.asarray(input_ids)))

    # -- state in the shared layout
    def weights(self) -> dict[str, np.ndarray]:
        from gpt2_multi.flax.loading import params_to_state_dict

        return {k: np.array(v, np.float32) for k, v in params_to_state_dict(self.state.params).items()}

    def optimizer_state(self) -> Any:
        from gpt2_multi.flax.loading import params_to_state_dict
        from gpt2_multi.training.run import OptimizerState

        adam = _adam_state(self.state.opt_state)
        return OptimizerState(int(adam.count), {k: np.array(v, np.float32) for k, v in params_to_state_dict(adam.mu).items()},
                              {k: np.array(v, np.float32) for k, v in params_to_state_dict(adam.nu).items()})

    def load_optimizer_state(self, state: Any) -> None:
        from gpt2_multi.flax.loading import params_from_state_dict

        shapes = jax.tree_util.tree_map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), self.state.params)
        mu = params_from_state_dict(state.exp_avg, shapes, config=self.model.config)
        nu = params_from_state_dict(state.exp_avg_sq, shapes, config=self.model.config)
        def count() -> jax.Array:  # a buffer of its own each (the jitted step donates its inputs)
            return jnp.asarray(state.step, jnp.int32)

        opt = jax.tree_util.tree_map(lambda node: node._replace(count=count(), mu=mu, nu=nu) if _is_adam(node) else node,
                                     self.state.opt_state, is_leaf=_is_adam)
        opt = opt._replace(count=count())  # Adam's bias correction and inject_hyperparams' step count
        self.state = self.state.replace(opt_state=opt, step=state.step)


def _is_adam(node: Any) -> bool:
    return isinstance(node, optax.ScaleByAdamState)


def _adam_state(opt_state: Any) -> optax.ScaleByAdamState:
    found = [n for n in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_adam) if _is_adam(n)]
    if len(found) != 1:
        raise RuntimeError(f"expected one Adam state in the optimizer state, found {len(found)}")
    return found[0]


__all__ = ["TrainState", "Trainer", "create_train_state", "eval_step", "loss_fn", "train_step"]
