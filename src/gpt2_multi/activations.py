"""The activation table: every ``activation_function`` a GPT-2 config may name.

This module is the one place that lists the names; it imports nothing. Each stack implements
every name here in its own table, ``ACT2FN`` in ``gpt2_multi.pt.activations``,
``gpt2_multi.tf.activations`` and ``gpt2_multi.flax.activations``. Each table asserts when it
is imported that it names exactly :data:`ACTIVATIONS` (no backend misses or adds one), and one
contract test (``tests/contract/test_activations.py``) checks every entry of every backend's
table against the formulas below.

In half precision (bfloat16, float16) every entry is computed in float32 and rounded once to the input's
dtype, in every stack (as PyTorch's own kernels, ``F.gelu``, ``F.silu`` ..., compute): the formulas written
out in framework ops would otherwise round differently in each framework (TensorFlow and JAX round the
constants and every intermediate to bfloat16, PyTorch every intermediate but not the constants). Other
dtypes are computed as they come.

The formulas, for reference (x is the pre-activation):

==================== ===========================================================
name                 formula
==================== ===========================================================
gelu                 x * Phi(x), exact erf form
gelu_python          same as ``gelu`` (HF's pure-Python spelling)
gelu_new             0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (GPT-2's)
gelu_pytorch_tanh    same as ``gelu_new``
gelu_fast            0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x^2)))
gelu_accurate        same as ``gelu_new`` (HF's AccurateGELU has the same formula)
quick_gelu           x * sigmoid(1.702 x)
relu                 max(x, 0)
relu6                min(max(x, 0), 6)
leaky_relu           x if x > 0 else 0.01 x
silu / swish         x * sigmoid(x)
mish                 x * tanh(softplus(x))
tanh                 tanh(x)
sigmoid              1 / (1 + exp(-x))
linear               x
==================== ===========================================================
"""

from __future__ import annotations

ACTIVATIONS: tuple[str, ...] = (
    "gelu",
    "gelu_python",
    "gelu_new",
    "gelu_pytorch_tanh",
    "gelu_fast",
    "gelu_accurate",
    "quick_gelu",
    "relu",
    "relu6",
    "leaky_relu",
    "silu",
    "swish",
    "mish",
    "tanh",
    "sigmoid",
    "linear",
)


class HalfInFloat32:
    """An activation ``fn`` that computes a half-precision input in float32 and rounds once to its dtype (the
    rule above); any other dtype goes to ``fn`` unchanged. Each stack subclasses it with its array operations:
    :meth:`is_half`, :meth:`to_float32` and :meth:`round_to`. A class, not a closure, so a model holding one
    pickles."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "act")

    def __call__(self, x):
        if self.is_half(x):
            return self.round_to(self.fn(self.to_float32(x)), x.dtype)
        return self.fn(x)

    def __repr__(self) -> str:
        return f"{self.__name__} (half precision in float32)"

    @staticmethod
    def is_half(x) -> bool:  # pragma: no cover - each stack's subclass says
        raise NotImplementedError

    @staticmethod
    def to_float32(x):  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def round_to(y, dtype):  # pragma: no cover
        raise NotImplementedError
