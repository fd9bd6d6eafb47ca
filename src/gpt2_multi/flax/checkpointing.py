"""Save and restore sharded training state (params, optax state, a whole ``TrainState``) with Orbax.

Each array is written from the shards its devices hold (``orbax.checkpoint.StandardCheckpointer``), and read
back straight into the layout the caller asks for: sharded on a mesh as the rules of
:mod:`gpt2_multi.flax.sharding` say (the same or another mesh shape), or whole on one device. Needs the
``orbax-checkpoint`` package (imported here only, never by ``gpt2_multi.flax``).

Example::

    from gpt2_multi.flax.checkpointing import restore_state, save_state

    save_state("ckpt/step-100", state)                         # a TrainState of sharded arrays
    like = jax.eval_shape(lambda: create_train_state(model, tx))  # the structure, no memory
    state = restore_state("ckpt/step-100", like, mesh, TENSOR_PARALLEL_RULES)   # sharded again
    host = restore_state("ckpt/step-100", like)                 # or unsharded, on one device
"""

from __future__ import annotations

import os
from typing import Any

import jax
from jax.sharding import Mesh, SingleDeviceSharding

from gpt2_multi.flax.sharding import TENSOR_PARALLEL_RULES, Rules, param_shardings

try:
    import orbax.checkpoint as ocp
except ImportError as err:  # pragma: no cover - exercised without orbax
    raise ImportError(f"gpt2_multi.flax.checkpointing needs Orbax ({err}); install it with: pip install orbax-checkpoint") from err


def save_state(directory: str | os.PathLike, tree: Any, *, force: bool = False) -> None:
    """Write ``tree`` (a pytree of ``jax.Array``, sharded or not) to ``directory``; returns when it is on disk.

    ``directory`` must not exist unless ``force`` (which replaces it).
    """
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.abspath(directory), tree, force=force)
        checkpointer.wait_until_finished()


def restore_state(directory: str | os.PathLike, like: Any, mesh: Mesh | None = None,
                  rules: Rules = TENSOR_PARALLEL_RULES) -> Any:
    """Read the tree saved in ``directory``, shaped like ``like`` (arrays or ``jax.ShapeDtypeStruct``, e.g.
    ``jax.eval_shape`` of the state's constructor; static fields such as a ``TrainState``'s ``apply_fn`` come
    from it).

    With ``mesh``, every array is placed as :func:`gpt2_multi.flax.sharding.param_shardings` gives under
    ``rules`` (scalars replicated); without, every array is whole on the first device.
    """
    if mesh is not None:
        shardings = param_shardings(like, mesh, rules)
    else:
        device = SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree_util.tree_map(lambda _: device, like)
    target = jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), like, shardings)
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(os.path.abspath(directory), target)


__all__ = ["restore_state", "save_state"]
