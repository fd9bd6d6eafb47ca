"""What the contract tests share: one param per registered backend, tiny checkpoints that every backend loads,
numpy <-> framework tensors through the registry, a cached-decoding driver, and a float64 numpy GPT-2.

Nothing here names a backend: a stack is reached through :mod:`gpt2_multi.backends` only
(``get(b).model_class(...)``, ``get(b).ops``, ``get(b).tensor_module``).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpt2_multi.backends import BACKENDS, get, stack_available
from gpt2_multi.checkpoint import layout, save_checkpoint
from gpt2_multi.conformance.cases import HEADS, random_tensors
from tiny import tiny_config

INSTALLED = [b for b in BACKENDS if stack_available(b)]


class DiffersFromTheContract(AssertionError):
    """A stack does something other than the contract says. A test raises it only after every other check has
    passed, and a known difference is marked ``xfail(strict=True, raises=DiffersFromTheContract, reason=...)``:
    any other failure still fails, and a fixed stack turns the mark into an XPASS failure."""


def backend_param(backend: str, *values: Any, id: str | None = None, marks=()) -> Any:
    """A pytest param for ``backend`` (and ``values``), skipped with a reason when its stack does not import."""
    skip = pytest.mark.skipif(not stack_available(backend), reason=f"the {backend} stack is not installed")
    return pytest.param(backend, *values, id=id, marks=[skip, *marks])


#: one param per registered backend
BACKEND_PARAMS = [backend_param(b, id=b) for b in BACKENDS]

#: the ways a stack computes attention that each forward contract holds for: keyword arguments of
#: ``from_pretrained`` per variant (PyTorch's SDPA default and its eager path; one path elsewhere)
LOAD_VARIANTS: dict[str, dict[str, Any]] = {"pt": {"attn_implementation": "eager"}}


def variant_params() -> list:
    """(backend, from_pretrained kwargs) params: every backend's default, and PyTorch's eager attention."""
    params = []
    for b in BACKENDS:
        params.append(backend_param(b, {}, id=b))
        if b in LOAD_VARIANTS:
            kwargs = LOAD_VARIANTS[b]
            params.append(backend_param(b, kwargs, id=f"{b}-" + "-".join(str(v) for v in kwargs.values())))
    return params


#: the heads (fixture names, as :data:`gpt2_multi.conformance.cases.HEADS`) whose HF outputs carry a cache
CACHE_HEADS = ("base", "lm", "double", "seqcls")


# ------------------------------------------------------------------------------------------ checkpoints
def contract_config(**overrides):
    """:func:`tiny.tiny_config` with what every head needs: 3 labels and a pad id (0) for the last-token rule."""
    return tiny_config(**{"num_labels": 3, "pad_token_id": 0, **overrides})


def write_checkpoint(directory: Path, head: str, seed: int = 0, **overrides) -> Path:
    """Seeded weights (layer norms and biases away from 1 / 0) for ``head`` as safetensors + config.json."""
    config = contract_config(**overrides)
    save_checkpoint(directory, random_tensors(config, HEADS[head], seed), config, architecture=HEADS[head])
    return directory


def load(backend: str, path: Path, head: str, **kwargs) -> Any:
    """The backend's model for ``head`` from ``path`` (``kwargs`` to its ``from_pretrained``)."""
    if not kwargs:
        return get(backend).ops.load(Path(path), HEADS[head])
    return get(backend).model_class(HEADS[head]).from_pretrained(str(path), **kwargs)


class Models:
    """Loaded models, each loaded once: ``models(backend, path, head, **from_pretrained kwargs)``."""

    def __init__(self):
        self._loaded: dict = {}

    def __call__(self, backend: str, path: Path, head: str, **kwargs) -> Any:
        key = (backend, str(path), head, tuple(sorted(kwargs.items())))
        if key not in self._loaded:
            self._loaded[key] = load(backend, path, head, **kwargs)
        return self._loaded[key]


def parameters(backend: str, model: Any) -> dict[str, np.ndarray]:
    """The model's parameters as numpy arrays under canonical HF PyTorch names (body under ``transformer.``),
    a tied ``lm_head.weight`` left out (it is the word embedding).

    The registry has no state-dict entry: PyTorch and Keras models have ``state_dict()`` under HF PyTorch names;
    a Flax model's ``params`` tree goes through its stack's ``loading.params_to_state_dict``.
    """
    if hasattr(model, "state_dict"):
        state = model.state_dict()
    else:
        state = importlib.import_module(f"{get(backend).package}.loading").params_to_state_dict(model.params)
    out = layout.canonical_names({name: np.asarray(get(backend).ops.to_numpy(v)) for name, v in state.items()})
    if model.config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


# ------------------------------------------------------------------------------------------ tensors
def tensor(backend: str, value: Any) -> Any:
    """``value`` (a numpy array) as the backend's tensor, dtype kept (JAX without x64 keeps 32 bits)."""
    b = get(backend)
    return getattr(importlib.import_module(b.tensor_module), b.int_tensor[0])(np.asarray(value))


def call(backend: str, model: Any, **kwargs) -> Any:
    """Call ``model`` with numpy keyword arguments as the backend's tensors (other values as they are)."""
    args = {k: tensor(backend, v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    return model(**args)


def numpy(backend: str, value: Any) -> np.ndarray:
    """A backend tensor (or an array already) as numpy, float32 for floating point."""
    if isinstance(value, np.ndarray):  # the stacks' cache adapters return numpy (PyTorch's to_numpy takes tensors only)
        return value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
    return get(backend).ops.to_numpy(value)


def has_static_cache(model: Any) -> bool:
    """Flax-style caching: a cache made by ``init_cache(batch, max_length)``, explicit positions and a mask over
    every one of its ``max_length`` positions on every call (HF's Flax API); else HF's growing cache."""
    return hasattr(model, "init_cache")


def prefill(backend: str, model: Any, input_ids: np.ndarray, max_length: int) -> Any:
    """The cache after ``input_ids`` (no mask, positions from 0), with room for ``max_length`` positions."""
    if has_static_cache(model):
        b, t = input_ids.shape
        mask = np.zeros((b, max_length), np.int32)
        mask[:, :t] = 1
        return call(backend, model, input_ids=input_ids, attention_mask=mask,
                    position_ids=np.broadcast_to(np.arange(t), (b, t)).copy(),
                    past_key_values=model.init_cache(b, max_length)).past_key_values
    return call(backend, model, input_ids=input_ids, use_cache=True).past_key_values


def decode(backend: str, model: Any, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray,
           splits: list[int]) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Generation-style cached calls: ``input_ids[:, a:b]`` for consecutive ``splits``, each call with the mask over
    the cached and new tokens (HF's PyTorch / TensorFlow API; the static cache gets the mask over all its positions,
    zero after the new tokens) and explicit positions. Returns each call's logits and the final cache (B, H, S, D)."""
    b, total = input_ids.shape
    ops = get(backend).ops
    static = has_static_cache(model)
    past = model.init_cache(b, total) if static else None
    logits, start = [], 0
    for end in [*splits, total]:
        if static:
            mask = np.zeros((b, total), attention_mask.dtype)
            mask[:, :end] = attention_mask[:, :end]
            kwargs = {"past_key_values": past}
        else:
            mask = attention_mask[:, :end]
            kwargs = {"past_key_values": past, "use_cache": True}
        out = call(backend, model, input_ids=input_ids[:, start:end], attention_mask=mask,
                   position_ids=position_ids[:, start:end], **kwargs)
        logits.append(numpy(backend, out.logits))
        past, start = out.past_key_values, end
    return logits, ops.cache_to_bhsd(past, total)


def left_padded(rows: list[np.ndarray], pad: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prompts of different lengths as one left-padded batch: (input_ids, attention_mask, position_ids)."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    return ids, mask, np.clip(np.cumsum(mask, axis=1) - 1, 0, None)


# ------------------------------------------------------------------------------------------ numpy GPT-2
def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _tanh_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


#: every activation from its formula (gpt2_multi/activations.py's table), float64
REFERENCE_ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "gelu_python": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "gelu_new": _tanh_gelu,
    "gelu_pytorch_tanh": _tanh_gelu,
    "gelu_fast": lambda x: 0.5 * x * (1 + np.tanh(0.7978845608 * x * (1 + 0.044715 * x * x))),
    "gelu_accurate": _tanh_gelu,
    "quick_gelu": lambda x: x * _sigmoid(1.702 * x),
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "tanh": lambda x: (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x)),
    "sigmoid": _sigmoid,
    "linear": lambda x: x,
}


def _layer_norm(x: np.ndarray, sd: dict, name: str, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * sd[name + ".weight"] + sd[name + ".bias"]


def _attend(q, k, v, allowed, scale: float) -> np.ndarray:
    s = (q @ np.swapaxes(k, -1, -2)) * scale
    s = np.where(allowed, s, -1e300)
    w = np.exp(s - s.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)) @ v


def reference_gpt2(tensors: dict[str, np.ndarray], config, input_ids: np.ndarray,
                   attention_mask: np.ndarray | None = None) -> np.ndarray:
    """GPT-2's body in float64 from the formulas, on HF PyTorch-named weights: the last hidden state (B, T, E).

    Written from the paper and HF's code, not from any stack: Conv1D weights are (in, out); attention scores are
    divided by sqrt(head_dim) (``scale_attn_weights``) and by layer + 1 (``scale_attn_by_inverse_layer_idx``);
    ``reorder_and_upcast_attn`` changes only the precision, so nothing here.
    """
    sd = {k.removeprefix("transformer."): np.asarray(v, np.float64) for k, v in tensors.items()}
    b, t = input_ids.shape
    e, nh = config.n_embd, config.n_head
    d = e // nh
    eps = config.layer_norm_epsilon
    act = REFERENCE_ACTIVATIONS[config.activation_function]

    def heads(z):
        return z.reshape(b, t, nh, d).transpose(0, 2, 1, 3)

    x = sd["wte.weight"][input_ids] + sd["wpe.weight"][np.arange(t)][None]
    allowed = np.tril(np.ones((t, t), bool))[None, None]
    if attention_mask is not None:
        allowed = allowed & attention_mask.astype(bool)[:, None, None, :]
    for i in range(config.n_layer):
        p = f"h.{i}."
        qkv = _layer_norm(x, sd, p + "ln_1", eps) @ sd[p + "attn.c_attn.weight"] + sd[p + "attn.c_attn.bias"]
        q, k, v = (heads(z) for z in np.split(qkv, 3, axis=-1))
        scale = (1 / math.sqrt(d) if config.scale_attn_weights else 1.0)
        scale /= (i + 1) if config.scale_attn_by_inverse_layer_idx else 1
        o = _attend(q, k, v, allowed, scale).transpose(0, 2, 1, 3).reshape(b, t, e)
        x = x + o @ sd[p + "attn.c_proj.weight"] + sd[p + "attn.c_proj.bias"]
        m = act(_layer_norm(x, sd, p + "ln_2", eps) @ sd[p + "mlp.c_fc.weight"] + sd[p + "mlp.c_fc.bias"])
        x = x + m @ sd[p + "mlp.c_proj.weight"] + sd[p + "mlp.c_proj.bias"]
    return _layer_norm(x, sd, "ln_f", eps)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny tensors: one PyTorch intra-op thread is faster on a shared machine (a module turns it on by importing
    this fixture); nothing happens without PyTorch."""
    if not stack_available("pt"):
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
