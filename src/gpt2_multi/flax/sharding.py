"""Partitioning: the logical axis of every parameter and the rules that map logical axes onto a mesh.

Every parameter of the Flax modules carries logical axis names (``nn.with_logical_partitioning``);
the names come from :data:`PARAM_AXES` below, the one table, so that a plain ``params``
pytree (what ``from_pretrained`` returns) can be partitioned from its paths alone.

Logical axes::

    batch      the batch dimension of activations and inputs
    vocab      the vocabulary (wte rows, lm_head columns)
    positions  the position table (wpe rows)
    embed      the hidden size n_embd
    qkv        the fused query/key/value output of c_attn (3 * n_embd)
    heads      the concatenated head outputs entering attn.c_proj (n_embd)
    mlp        the MLP width (n_inner)
    labels     a head's output classes

Rules are data: a tuple of ``(logical name, mesh axis or None)`` pairs, as
``flax.linen.logical_to_mesh_sharding`` takes them. Two are provided for a mesh with
axes ``("data", "model")``:

* :data:`DATA_PARALLEL_RULES`: parameters replicated, the batch split over ``data``;
* :data:`TENSOR_PARALLEL_RULES`: also split vocab / qkv / heads / mlp over ``model``
  (Megatron-style: c_attn and c_fc column-parallel, the two c_proj row-parallel).

The mesh's axes must be ``AxisType.Auto`` (XLA propagates shardings through the model; recent
``jax.make_mesh`` defaults to ``Explicit`` axes, which this model does not annotate): build it with
:func:`make_mesh`.

Example (8 devices as 4 x 2)::

    mesh = make_mesh((4, 2), ("data", "model"))
    params = shard_params(model.params, mesh, TENSOR_PARALLEL_RULES)
    batch = shard_batch(input_ids, mesh)
    logits = model(batch, params=params).logits
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# (parent module, leaf) -> logical axes of the parameter, in HF Flax's storage layout
# (Conv1D kernels are (out, in); Dense kernels are (in, out)).
PARAM_AXES: dict[tuple[str, str], tuple[str, ...]] = {
    ("wte", "embedding"): ("vocab", "embed"),
    ("wpe", "embedding"): ("positions", "embed"),
    ("ln_1", "scale"): ("embed",), ("ln_1", "bias"): ("embed",),
    ("ln_2", "scale"): ("embed",), ("ln_2", "bias"): ("embed",),
    ("ln_f", "scale"): ("embed",), ("ln_f", "bias"): ("embed",),
    ("c_attn", "kernel"): ("qkv", "embed"), ("c_attn", "bias"): ("qkv",),
    ("attn.c_proj", "kernel"): ("embed", "heads"), ("attn.c_proj", "bias"): ("embed",),
    ("c_fc", "kernel"): ("mlp", "embed"), ("c_fc", "bias"): ("mlp",),
    ("mlp.c_proj", "kernel"): ("embed", "mlp"), ("mlp.c_proj", "bias"): ("embed",),
    # cross-attention (add_cross_attention): q_attn is column-parallel like c_attn, its c_proj row-parallel
    ("q_attn", "kernel"): ("qkv", "embed"), ("q_attn", "bias"): ("qkv",),
    ("crossattention.c_proj", "kernel"): ("embed", "heads"), ("crossattention.c_proj", "bias"): ("embed",),
    ("ln_cross_attn", "scale"): ("embed",), ("ln_cross_attn", "bias"): ("embed",),
    ("lm_head", "kernel"): ("embed", "vocab"),
    ("summary", "kernel"): ("embed", "labels"), ("summary", "bias"): ("labels",),
    ("score", "kernel"): ("embed", "labels"),
    ("classifier", "kernel"): ("embed", "labels"), ("classifier", "bias"): ("labels",),
    ("qa_outputs", "kernel"): ("embed", "labels"), ("qa_outputs", "bias"): ("labels",),
}

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


def axes_for(parent: str, leaf: str) -> tuple[str, ...]:
    """Logical axes of parameter ``leaf`` of module ``parent`` (``"attn.c_proj"`` / ``"mlp.c_proj"`` for the two c_proj)."""
    try:
        return PARAM_AXES[(parent, leaf)]
    except KeyError:
        raise KeyError(f"no logical axes for parameter {parent}/{leaf}; add it to gpt2_multi.flax.sharding.PARAM_AXES") from None


def _path_names(path: Sequence[Any]) -> list[str]:
    out = []
    for entry in path:
        key = getattr(entry, "key", getattr(entry, "name", entry))
        out.append(str(key))
    return out


def param_logical_axes(params: Mapping) -> Any:
    """A pytree like ``params`` whose leaves are ``PartitionSpec`` of logical axis names."""

    def spec(path, leaf):
        names = _path_names(path)
        parent, name = names[-2], names[-1]
        if parent == "c_proj":
            parent = f"{names[-3]}.c_proj"
        axes = axes_for(parent, name)
        if len(axes) != leaf.ndim:
            raise ValueError(f"parameter {'/'.join(names)} has {leaf.ndim} dims but its logical axes are {axes}")
        return PartitionSpec(*axes)

    return jax.tree_util.tree_map_with_path(spec, params)


def param_shardings(params: Mapping, mesh: Mesh, rules: Rules = TENSOR_PARALLEL_RULES) -> Any:
    """A pytree of ``NamedSharding`` for ``params`` on ``mesh`` under ``rules``."""
    _check_rules(rules, mesh)
    return nn.logical_to_mesh_sharding(param_logical_axes(params), mesh, rules)


def shard_params(params: Mapping, mesh: Mesh, rules: Rules = TENSOR_PARALLEL_RULES) -> Any:
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
                    f"cannot shard {'/'.join(_path_names(path))} {tuple(leaf.shape)}: dimension {dim} "
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
    "param_logical_axes", "param_shardings", "shard_batch", "shard_params",
]
