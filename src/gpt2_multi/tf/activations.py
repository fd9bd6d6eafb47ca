"""The TensorFlow activation table: one function for every name in :data:`gpt2_multi.activations.ACTIVATIONS`.

The formulas are listed in :mod:`gpt2_multi.activations`; each entry maps ``(...) -> (...)`` elementwise.
"""

from __future__ import annotations

import math

import tensorflow as tf

from gpt2_multi.activations import ACTIVATIONS, HalfInFloat32

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + tf.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def _gelu_fast(x):
    return 0.5 * x * (1.0 + tf.tanh(0.7978845608 * x * (1.0 + 0.044715 * x * x)))


ACT2FN = {
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "gelu_python": lambda x: tf.nn.gelu(x, approximate=False),
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "gelu_accurate": _gelu_tanh,
    "quick_gelu": lambda x: x * tf.sigmoid(1.702 * x),
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
    "leaky_relu": lambda x: tf.nn.leaky_relu(x, alpha=0.01),
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "mish": lambda x: x * tf.tanh(tf.nn.softplus(x)),
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
    "linear": lambda x: x,
}
assert tuple(ACT2FN) == ACTIVATIONS, "ACT2FN must implement exactly gpt2_multi.activations.ACTIVATIONS"


class _HalfInFloat32(HalfInFloat32):
    """:class:`gpt2_multi.activations.HalfInFloat32` in TensorFlow ops."""

    @staticmethod
    def is_half(x) -> bool:
        return x.dtype in (tf.bfloat16, tf.float16)

    @staticmethod
    def to_float32(x):
        return tf.cast(x, tf.float32)

    @staticmethod
    def round_to(y, dtype):
        return tf.cast(y, dtype)


ACT2FN = {name: _HalfInFloat32(fn) for name, fn in ACT2FN.items()}

__all__ = ["ACT2FN"]
