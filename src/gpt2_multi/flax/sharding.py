"""Partitioning as data: regexes over parameter paths give logical axes, and rules map logical axes onto a mesh.

The modules carry no sharding annotations. :data:`PARAM_AXES` is the one table: pairs of
``(regex, logical axes)`` matched (``re.search``, first match wins) against each parameter's path in the
params pytree joined with ``/`` (``transformer/h/0/mlp/c_fc/kernel``), in the style of EasyLM's
``match_partition_rules``. A plain ``params`` pytree (what ``from_pretrained`` returns, or an optimizer
state shaped like it) is partitioned from its paths alone; a path no regex matches raises with the path.

Logical axes::

    batch      the batch dimension of activations and inputs
    vocab      the vocabulary (wte rows, lm_head columns)
    positions  the position table (wpe rows)
    embed      the hidden size n_embd
    qkv        the fused query/key/value output of c_attn (3 * n_embd)
    heads      the concatenated head outputs entering attn.c_proj (n_embd)
    mlp        the MLP width (n_inner)
    labels     a head's output classes

Rules are data too: a tuple of ``(logical name, mesh axis or None)`` pairs, as
``flax.linen.logical_to_mesh_sharding`` takes them. Two are provided for a mesh with
axes ``("data", "model")``:

* :data:`DATA_PARALLEL_RULES`: parameters replicated, the batch split over ``data``;
* :data:`TENSOR_PARALLEL_RULES`: also split vocab / qkv / heads / mlp over ``model``
  (Megatron-style: c_attn and c_fc column-parallel, the two c_proj row-parallel), the batch over ``data``.

The mesh's axes must be ``AxisType.Auto`` (XLA propagates shardings through the model; recent
``jax.make_mesh`` defaults to ``Explicit`` axes, which this model does not annotate): build it with
:func:`make_mesh`.

Example (8 devices as 4 x 2; :mod:`gpt2_multi.flax.checkpointing` saves and restores the result)::

    mesh = make_mesh((4, 2), ("data", "model"))
    params = shard_params(model.params, mesh, TENSOR_PARALLEL_RULES)
    batch = shard_batch(input_ids, mesh)
    logits = model(batch, params=params).logits
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# (regex over the "/"-joined path, logical axes of the parameter), in HF Flax's storage layout
# (Conv1D kernels are (out, in); Dense kernels and embeddings are (in, out) / (rows, features)).
PARAM_AXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"(^|/)wte/embedding$", ("vocab", "embed")),
    (r"(^|/)wpe/embedding$", ("positions", "embed")),
    (r"(^|/)ln_(1|2|f|cross_attn)/(scale|bias)$", ("embed",)),
    # c_attn and cross-attention's q_attn are column-parallel, the c_proj after them row-parallel
    (r"(^|/)(c_attn|q_attn)/kernel$", ("qkv", "embed")),
    (r"(^|/)(c_attn|q_attn)/bias$", ("qkv",)),
    (r"(^|/)(attn|crossattention)/c_proj/kernel$", ("embed", "heads")),
    (r"(^|/)c_fc/kernel$", ("mlp", "embed")),
    (r"(^|/)c_fc/bias$", ("mlp",)),
    (r"(^|/)mlp/c_proj/kernel$", ("embed", "mlp")),
    (r"(^|/)c_proj/bias$", ("embed",)),
    (r"(^|/)lm_head/kernel$", ("embed", "vocab")),
    (r"(^|/)(summary|score|classifier|qa_outputs)/kernel$", ("embed", "labels")),
    (r"(^|/)(summary|score|classifier|qa_outputs)/bias$", ("labels",)),
)

DATA_PARALLEL_RULES: Rules = (
    ("batch", "data"),
    ("vocab", None), ("positions", None), ("embed", None), ("qkv", None),
    ("heads", None), ("mlp", None), ("labels", None),
)

TENSOR_PARALLEL_RULES: Rules = (
    ("batch", "data"),
    ("vocab", "model"), ("positions", None), ("embed", None), ("qkv", "model"),
    ("heads", "model"), ("mlp", "model"), ("labels", None),
)


def make_mesh(shape: Sequence[int], axis_names: Sequence[str] = ("data", "model"), devices: Sequence[Any] | None = None) -> Mesh:
    """A device mesh with ``Auto`` axes (the kind :func:`shard_params` needs), e.g. ``make_mesh((4, 2))``."""
    shape, axis_names = tuple(shape), tuple(axis_names)
    if len(shape) != len(axis_names):
        raise ValueError(f"mesh shape {shape} and axis names {axis_names} differ in length")
    needed = int(np.prod(shape))
    available = list(devices) if devices is not None else jax.devices()
    if needed > len(available):
        raise ValueError(f"a {shape} mesh needs {needed} devices but {len(available)} are available "
                         "(on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax)")
    return jax.make_mesh(shape, axis_names, axis_types=(AxisType.Auto,) * len(shape), devices=available[:needed])


def axes_for(path: str) -> tuple[str, ...]:
    """Logical axes of the parameter at ``path`` (``"transformer/h/0/attn/c_attn/kernel"``): the first match in
    :data:`PARAM_AXES`."""
    for pattern, axes in PARAM_AXES:
        if re.search(pattern, path):
            return axes
    raise KeyError(f"no logical axes for parameter {path}; add a regex for it to gpt2_multi.flax.sharding.PARAM_AXES")


def path_string(path: Sequence[Any]) -> str:
    """A ``jax.tree_util`` key path as ``"/"``-joined names (dict keys, attribute names, sequence indices)."""
    names = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                names.append(str(getattr(entry, attr)))
                break
        else:
            names.append(str(entry))
    return "/".join(names)


def param_logical_axes(params: Any) -> Any:
    """A pytree like ``params`` whose leaves are ``PartitionSpec`` of logical axis names (from :data:`PARAM_AXES`).

    ``params`` may hold arrays or ``jax.ShapeDtypeStruct`` (``model.params_shape_tree()``), and may be any tree
    whose array leaves sit under parameter paths: an optax state or a whole ``TrainState`` (``mu/transformer/...``
    matches like ``transformer/...``). Scalars (step counts) are replicated.
    """

    def spec(path, leaf):
        if len(leaf.shape) == 0:  # a scalar (an optimizer's step count): replicated
            return PartitionSpec()
        name = path_string(path)
        axes = axes_for(name)
        if len(axes) != len(leaf.shape):
            raise ValueError(f"parameter {name} has {len(leaf.shape)} dims {tuple(leaf.shape)} but its logical axes are {axes}")
        return PartitionSpec(*axes)

    return jax.tree_util.tree_map_with_path(spec, params)


def param_shardings(params: Any, mesh: Mesh, rules: Rules = TENSOR_PARALLEL_RULES) -> Any:
    """A pytree of ``NamedSharding`` for ``params`` (arrays or ``ShapeDtypeStruct``) on ``mesh`` under ``rules``:
    the ``out_shardings`` / ``in_shardings`` of a jitted step, or the target of a sharded restore."""
    _check_rules(rules, mesh)
    return nn.logical_to_mesh_sharding(param_logical_axes(params), mesh, rules)


def shard_params(params: Any, mesh: Mesh, rules: Rules = TENSOR_PARALLEL_RULES) -> Any:
    """Place every parameter on ``mesh`` as ``rules`` say (``jax.device_put``); returns the new pytree.

    A logical axis whose mesh axis does not divide the dimension raises with the
    parameter's path, the dimension and the mesh axis size.
    """
    shardings = param_shardings(params, mesh, rules)

    def put(path, leaf, sharding):
        for dim, axis in zip(leaf.shape, sharding.spec):
            if axis is None:
                continue
            size = 1
            for a in axis if isinstance(axis, tuple) else (axis,):
                size *= mesh.shape[a]
            if dim % size:
                raise ValueError(
                    f"cannot shard {path_string(path)} {tuple(leaf.shape)}: dimension {dim} "
                    f"is not divisible by mesh axis {axis!r} of size {size}"
                )
        return jax.device_put(leaf, sharding)

    return jax.tree_util.tree_map_with_path(put, params, shardings)


def batch_sharding(mesh: Mesh, ndim: int = 2, rules: Rules = TENSOR_PARALLEL_RULES) -> NamedSharding:
    """Sharding of an input of ``ndim`` dims whose first dim is the batch."""
    mesh_axis = dict(rules).get("batch")
    return NamedSharding(mesh, PartitionSpec(mesh_axis, *([None] * (ndim - 1))))


def shard_batch(array: Any, mesh: Mesh, rules: Rules = TENSOR_PARALLEL_RULES) -> jax.Array:
    """Split an input (batch first) over the mesh axis the rules give ``batch``."""
    return jax.device_put(array, batch_sharding(mesh, getattr(array, "ndim", 2), rules))


def _check_rules(rules: Rules, mesh: Mesh) -> None:
    explicit = [name for name, kind in zip(mesh.axis_names, getattr(mesh, "axis_types", ())) if kind != AxisType.Auto]
    if explicit:
        raise ValueError(f"mesh axes {explicit} are not AxisType.Auto; build the mesh with "
                         "gpt2_multi.flax.sharding.make_mesh (or jax.make_mesh(..., axis_types=(AxisType.Auto,) * n))")
    for logical, axis in rules:
        for a in axis if isinstance(axis, tuple) else ((axis,) if axis is not None else ()):
            if a not in mesh.axis_names:
                raise ValueError(f"rule ({logical!r}, {axis!r}) names mesh axis {a!r}, but the mesh has axes {mesh.axis_names}")


__all__ = [
    "DATA_PARALLEL_RULES", "PARAM_AXES", "TENSOR_PARALLEL_RULES", "Rules", "axes_for", "batch_sharding", "make_mesh",
    "param_logical_axes", "param_shardings", "path_string", "shard_batch", "shard_params",
]
