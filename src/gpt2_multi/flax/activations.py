"""The Flax activation table: one ``jax.numpy`` function per name of :data:`gpt2_multi.activations.ACTIVATIONS`.

The formulas are listed in :mod:`gpt2_multi.activations`; ``tests/test_flax_modeling.py`` checks each one
against a float64 numpy version and that this table names exactly the shared list.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from gpt2_multi.activations import ACTIVATIONS, HalfInFloat32

Array = jax.Array
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x: Array) -> Array:
    return 0.5 * x * (1.0 + jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def _gelu_fast(x: Array) -> Array:
    return 0.5 * x * (1.0 + jnp.tanh(0.7978845608 * x * (1.0 + 0.044715 * x * x)))


def _gelu_exact(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=False)


ACT2FN: dict[str, Callable[[Array], Array]] = {
    "gelu": _gelu_exact,
    "gelu_python": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "gelu_accurate": _gelu_tanh,
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, negative_slope=0.01),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda x: x,
}
assert tuple(ACT2FN) == ACTIVATIONS, "the Flax activation table must list exactly gpt2_multi.activations.ACTIVATIONS"


def as_stored(x: Array) -> Array:
    """``x`` itself, rounded to its dtype even inside a compiled program: where a bfloat16 / float16 value feeds
    a float32 computation (a LayerNorm, an activation), XLA may otherwise pass on the float32 value it computed
    before rounding (its default ``xla_allow_excess_precision``), which the other stacks round. Other dtypes
    are returned as they are."""
    if x.dtype in (jnp.bfloat16, jnp.float16):
        info = jnp.finfo(x.dtype)
        return jax.lax.reduce_precision(x, exponent_bits=info.nexp, mantissa_bits=info.nmant)
    return x


class _HalfInFloat32(HalfInFloat32):
    """:class:`gpt2_multi.activations.HalfInFloat32` in jax ops; the input is taken as stored
    (:func:`as_stored`) before the float32 computation."""

    @staticmethod
    def is_half(x: Array) -> bool:
        return x.dtype in (jnp.bfloat16, jnp.float16)

    @staticmethod
    def to_float32(x: Array) -> Array:
        return as_stored(x).astype(jnp.float32)

    @staticmethod
    def round_to(y: Array, dtype) -> Array:
        return y.astype(dtype)


ACT2FN = {name: _HalfInFloat32(fn) for name, fn in ACT2FN.items()}


def get_activation(name: str) -> Callable[[Array], Array]:
    """The function for ``name``; a ValueError listing the choices for an unknown one."""
    try:
        return ACT2FN[name]
    except KeyError:
        raise ValueError(f"activation {name!r} is not supported; choose one of {', '.join(ACT2FN)}") from None


__all__ = ["ACT2FN", "as_stored", "get_activation"]
