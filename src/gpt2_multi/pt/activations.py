"""The PyTorch activation table: one function for every name in :data:`gpt2_multi.activations.ACTIVATIONS`.

The formulas are listed in :mod:`gpt2_multi.activations`; each entry maps a tensor elementwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gpt2_multi.activations import ACTIVATIONS, HalfInFloat32


def _gelu_python(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _gelu_pytorch_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def linear(x: torch.Tensor) -> torch.Tensor:
    """The identity (``activation_function="linear"``, and a summary without an activation)."""
    return x


ACT2FN = {
    "gelu": F.gelu,
    "gelu_python": _gelu_python,
    "gelu_new": _gelu_new,
    "gelu_pytorch_tanh": _gelu_pytorch_tanh,
    "gelu_fast": _gelu_fast,
    "gelu_accurate": _gelu_new,  # HF's AccurateGELU is the same tanh formula
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "relu6": F.relu6,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": linear,
}
assert set(ACT2FN) == set(ACTIVATIONS), "ACT2FN must implement exactly gpt2_multi.activations.ACTIVATIONS"


class _HalfInFloat32(HalfInFloat32):
    """:class:`gpt2_multi.activations.HalfInFloat32` in torch ops."""

    @staticmethod
    def is_half(x: torch.Tensor) -> bool:
        return x.dtype in (torch.bfloat16, torch.float16)

    @staticmethod
    def to_float32(x: torch.Tensor) -> torch.Tensor:
        return x.float()

    @staticmethod
    def round_to(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return y.to(dtype)


ACT2FN = {name: _HalfInFloat32(fn) for name, fn in ACT2FN.items()}

__all__ = ["ACT2FN", "linear"]
