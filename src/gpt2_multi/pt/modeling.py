"""GPT-2 in PyTorch: HF-compatible modules, parameter names, arguments, outputs and losses.

Reading order (the section banners are the same in the three stacks' ``modeling.py``): the activation
table, ``Conv1D`` (GPT-2's linear layer), attention (:func:`attention_bias`, :func:`attention_core`,
:func:`write_cache`, ``GPT2Attention``), ``GPT2MLP``, ``GPT2Block``, the body (the shared base class, then
``GPT2Model``), the losses, then the heads; each head is its projection and its loss.

Notation in shapes: B batch, C choices, T new tokens, P cached (past) tokens, S = P + T keys,
E = n_embd, H = n_head, D = head_dim = E / H, V = vocab_size, L = num_labels.

Parameter names equal HF's (``transformer.h.0.attn.c_attn.weight`` ...), so a ``state_dict``
moves between this package and HF transformers unchanged. Numerics follow HF GPT-2:
pre-LN blocks, ``Conv1D`` weights stored (in, out), masked scores set to the dtype's minimum,
``head_mask`` multiplying the attention probabilities, ``token_type_ids`` embedded with ``wte``.

Every path that attends (this module's ``forward``, the decode steps of :mod:`gpt2_multi.pt.generation`,
eager and compiled) runs ``GPT2Block.forward``, hence :func:`attention_core` and :func:`write_cache`: the
attention math and the cache write exist once.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from gpt2_multi import validation
from gpt2_multi.checkpoint.layout import multiple_choice_summary_size
from gpt2_multi.config import GPT2Config, infer_problem_type
from gpt2_multi.generation import GenerationConfig
from gpt2_multi.pt.cache import DynamicCache, LayerSlot, is_cache, write_cache
from gpt2_multi.pt.generation import GenerationMixin
from gpt2_multi.pt.outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    GPT2DoubleHeadsModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutputWithPast,
    TokenClassifierOutput,
)

logger = logging.getLogger("gpt2_multi.pt")
_warned: set[str] = set()

KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


# ---------------------------------------------------------------------------------- activations
from gpt2_multi.pt.activations import ACT2FN as ACT2FN  # noqa: E402  (re-exported; the table is its own module)
from gpt2_multi.pt.activations import linear as _linear  # noqa: E402


# ---------------------------------------------------------------------------------- Conv1D
class Conv1D(nn.Module):
    """GPT-2's linear layer: ``y = x @ weight + bias`` with ``weight`` stored (in_features, out_features).

    Args follow HF: ``Conv1D(nf, nx)`` maps ``nx`` inputs to ``nf`` outputs. Input (..., nx) -> (..., nf).
    """

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        if not self.weight.is_meta:  # usable on its own; models re-initialise with their config
            nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if _emulated_half(flat):
            out = torch.addmm(self.bias.float(), flat.float(), self.weight.float()).to(flat.dtype)
        elif flat.shape[0] > 1 and _onednn_ok(flat, self.weight, self.bias):  # (out, in) as a view: no copy
            out = torch.ops.mkldnn._linear_pointwise(flat, self.weight.t(), self.bias, "none", [], "")
        else:
            out = torch.addmm(self.bias, flat, self.weight)
        return out.view(*x.shape[:-1], self.nf)

    def extra_repr(self) -> str:
        return f"nf={self.nf}, nx={self.nx}"


# float32 products on CPU go through oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``, what
# Inductor's CPU freezing pass calls) where MKL's sgemm / sgemv use one core of two: on a 2-core EPYC, x @ W
# for 8 to 1024 rows of GPT-2 small's block weights (in, out) 1.3-1.4x, the LM head's x @ wte.T (a (V, E)
# weight) about 2x for 1 to 128 rows (benchmarks/README.md, issue 15). A block weight with one row stays with
# MKL (oneDNN reads the (in, out) weight against its grain there). bfloat16 already goes through oneDNN's
# matmul. Eager inference only: the op has no autograd formula, and the compiled step (``torch.compile``) keeps
# torch's products, which Inductor plans itself. Set False to use torch's own products everywhere.
ONEDNN_LINEAR = hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available()


def _onednn_ok(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Eager float32 inference on CPU with at least one row: the op has no autograd formula (nothing may need a
    gradient, the bias included), is not traced into TorchScript, and Inductor lowers it only for frozen weights."""
    return (ONEDNN_LINEAR and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.numel() > 0
            and not (torch.is_grad_enabled()
                     and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)))
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def _has_kernel(check: str) -> bool:
    probe = getattr(torch.ops.mkldnn, check, None)
    try:
        return bool(probe()) if probe is not None else True
    except RuntimeError:
        return True


# Half-precision products on a CPU without bfloat16 / float16 instructions (AVX-512 BF16, AVX-512 FP16, AMX):
# oneDNN has no kernel there, and torch falls back to a reference loop at about 1 GFLOP/s (150x slower than
# float32 on a 2-core AVX2 EPYC; benchmarks/README.md, issue 15). The linear layers then compute in float32 and
# round once, which is what the native kernels do (float32 accumulation, one rounding): the same numbers.
_NATIVE_HALF = {torch.bfloat16: _has_kernel("_is_mkldnn_bf16_supported"),
                torch.float16: _has_kernel("_is_mkldnn_fp16_supported")}


def _emulated_half(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and not _NATIVE_HALF.get(x.dtype, True)


class LMHead(nn.Linear):
    """The LM head, an ``nn.Linear`` (E -> V, no bias) as HF's: on CPU without autograd its float32 product goes
    through oneDNN (see :data:`ONEDNN_LINEAR`), a half-precision one without hardware support in float32 (see
    :func:`_emulated_half`); otherwise ``nn.Linear``'s own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _emulated_half(x):
            bias = None if self.bias is None else self.bias.float()
            return F.linear(x.float(), self.weight.float(), bias).to(x.dtype)
        if not _onednn_ok(x, self.weight, self.bias):
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], out.shape[-1])


def _sliced_conv1d(layer: Conv1D, index: torch.Tensor, dim: int) -> Conv1D:
    """A new Conv1D with the inputs (``dim=0``) or outputs (``dim=1``) of ``layer`` at ``index``."""
    weight = layer.weight.detach().index_select(dim, index).clone()
    bias = layer.bias.detach().clone() if dim == 0 else layer.bias.detach()[index].clone()
    out = Conv1D(weight.shape[1], weight.shape[0]).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    out.weight.requires_grad_(layer.weight.requires_grad)
    out.bias.requires_grad_(layer.bias.requires_grad)
    return out


# ---------------------------------------------------------------------------------- attention
def attention_bias(allowed: torch.Tensor, config: Any, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" mask (B|1, 1, T, S) -> the additive bias :func:`attention_core` takes: 0 where
    allowed, else the minimum of the dtype the scores are computed in (float32 with
    ``config.reorder_and_upcast_attn``, else ``dtype``)."""
    dtype = torch.float32 if config.reorder_and_upcast_attn else dtype
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=allowed.device), torch.finfo(dtype).min)


def attention_core(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    bias: torch.Tensor | None,
    config: Any,
    layer_idx: int,
    *,
    is_causal: bool = False,
    head_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    output_probs: bool = False,
    fused: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """GPT-2's scaled dot-product attention, the one place its three flags are applied.

    Args:
        query: (B, H, T, D); key, value: (B, H, S, D).
        bias: additive mask (B|1, 1, T, S) from :func:`attention_bias`, or None (every key allowed).
        config: anything with ``scale_attn_weights`` (divide the scores by sqrt(D)),
            ``scale_attn_by_inverse_layer_idx`` (also by ``layer_idx + 1``) and ``reorder_and_upcast_attn``
            (scores and softmax in float32 whatever the dtype; the output is cast back).
        is_causal: the mask is exactly the causal one (query i sees keys <= i + S - T); ``bias`` may then be
            None, and with T == S the fused kernel's own causal masking is used.
        head_mask: (1|B, H, 1, 1) multiplier of the probabilities; dropout_p: dropout on the probabilities.
        output_probs: also return the probabilities (B, H, T, S).
        fused: allow ``F.scaled_dot_product_attention``; it runs unless probabilities or a head mask are
            asked for. Otherwise the explicit path (HF's eager numerics: the division by sqrt(D) and by the
            layer index in the scores' dtype, or one float32 product with both when upcasting). In half
            precision (bfloat16, float16) the scores are float32 from the product to the softmax, as in the
            fused kernel and in the TensorFlow and Flax stacks: the probabilities are rounded once, to
            ``value``'s dtype (HF's eager path also rounds the product and the quotient).

    Returns:
        (output (B, H, T, D) in ``value``'s dtype, probabilities or None).
    """
    dtype = value.dtype
    t, s, d = query.shape[-2], key.shape[-2], query.shape[-1]
    upcast = config.reorder_and_upcast_attn
    scale = 1.0 / math.sqrt(d) if config.scale_attn_weights else 1.0
    if config.scale_attn_by_inverse_layer_idx:
        scale /= float(layer_idx + 1)
    causal_kernel = is_causal and t == s  # SDPA's is_causal aligns the diagonal at the top-left: only for T == S
    if is_causal and bias is None and not (fused and causal_kernel and head_mask is None and not output_probs):
        allowed = torch.ones(t, s, dtype=torch.bool, device=query.device).tril(diagonal=s - t)[None, None]
        bias = attention_bias(allowed, config, dtype)

    if fused and head_mask is None and not output_probs:
        if upcast:
            query, key, value = query.float(), key.float(), value.float()
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=None if causal_kernel else bias, dropout_p=dropout_p,
            is_causal=causal_kernel, scale=scale,
        )
        return (out.to(dtype) if upcast else out), None

    if upcast:
        with torch.autocast(query.device.type, enabled=False):
            scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    else:
        if query.dtype in (torch.bfloat16, torch.float16):  # half precision: the scores in float32, as SDPA's
            with torch.autocast(query.device.type, enabled=False):
                scores = torch.matmul(query.float(), key.float().transpose(-1, -2))
        else:
            scores = torch.matmul(query, key.transpose(-1, -2))
        if config.scale_attn_weights:
            scores = scores / math.sqrt(d)
        if config.scale_attn_by_inverse_layer_idx:
            scores = scores / float(layer_idx + 1)
    if bias is not None:
        if bias.dtype in (torch.bfloat16, torch.float16) and scores.dtype == torch.float32:
            # a half-precision mask on float32 scores: its minimum becomes float32's
            bias = bias.float().masked_fill(bias == torch.finfo(bias.dtype).min, torch.finfo(torch.float32).min)
        scores = scores + bias
    probs = torch.softmax(scores, dim=-1).to(dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, dropout_p)
    if head_mask is not None:
        probs = probs * head_mask
    return torch.matmul(probs, value), (probs if output_probs else None)


class GPT2Attention(nn.Module):
    """Multi-head attention of a GPT-2 block (causal self-attention, or cross-attention to an encoder).

    Projections, then :func:`write_cache` and :func:`attention_core` (which honours
    ``scale_attn_weights``, ``scale_attn_by_inverse_layer_idx`` and ``reorder_and_upcast_attn``).

    Self-attention parameters: ``c_attn`` Conv1D E -> 3E (q, k, v), ``c_proj`` E -> E.
    Cross-attention: ``q_attn`` E -> E on the decoder states, ``c_attn`` E -> 2E (k, v) on the encoder states.
    """

    def __init__(self, config: GPT2Config, is_cross_attention: bool = False, layer_idx: int = 0) -> None:
        super().__init__()
        self.config = config
        self.embed_dim = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = config.head_dim
        self.layer_idx = layer_idx
        self.is_cross_attention = is_cross_attention
        # Heads pruned from this layer (HF's original numbering): a checkpoint of a pruned model is built pruned.
        self.pruned_heads: set[int] = set() if is_cross_attention else set(config.pruned_heads.get(layer_idx, ()))
        self.num_heads = config.n_head - len(self.pruned_heads)
        self.split_size = self.num_heads * self.head_dim  # the width of q, k and v: n_embd unless pruned
        if is_cross_attention:
            self.c_attn = Conv1D(2 * self.embed_dim, self.embed_dim)
            self.q_attn = Conv1D(self.embed_dim, self.embed_dim)
        else:
            self.c_attn = Conv1D(3 * self.split_size, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.split_size)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, E) -> (B, H, T, D)
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, T, D) -> (B, T, H * D)
        x = x.transpose(1, 2).contiguous()
        return x.view(*x.shape[:-2], self.split_size)

    def prune_heads(self, heads: Iterable[int]) -> None:
        """Remove self-attention heads (HF's original numbering; heads already pruned are skipped): the
        q, k, v columns of ``c_attn`` and the rows of ``c_proj`` that belong to them go."""
        if self.is_cross_attention:
            raise ValueError("heads are pruned from self-attention only (as in HF)")
        heads = set(heads) - self.pruned_heads
        if not heads:
            return
        current = [h for h in range(self.config.n_head) if h not in self.pruned_heads]
        keep = [i for i, h in enumerate(current) if h not in heads]
        if not keep:
            raise ValueError(f"pruning heads {sorted(heads)} would leave layer {self.layer_idx} with no head")
        d = self.head_dim
        device = self.c_attn.weight.device
        columns = torch.tensor([i * d + j for i in keep for j in range(d)], device=device)
        qkv = torch.cat([columns + k * self.split_size for k in range(3)])
        self.c_attn = _sliced_conv1d(self.c_attn, qkv, dim=1)
        self.c_proj = _sliced_conv1d(self.c_proj, columns, dim=0)
        self.num_heads = len(keep)
        self.split_size = self.num_heads * d
        self.pruned_heads |= heads

    def forward(
        self,
        hidden_states: torch.Tensor,
        layer_past: tuple[torch.Tensor, torch.Tensor] | None = None,
        bias: torch.Tensor | None = None,
        is_causal: bool = False,
        head_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        use_sdpa: bool = True,
        cache_index: int | torch.Tensor | None = None,
        cache_length: int | None = None,
    ):
        """hidden_states (B, T, E); layer_past (k, v) each (B, H, P, D), or with ``cache_index`` the layer's
        preallocated buffers (see :func:`write_cache`); bias: additive (B|1, 1, T, S) from
        :func:`attention_bias` or None; is_causal: the mask is the plain causal one; head_mask (1, H, 1, 1)
        or None. Returns (output (B, T, E), present (k, v) or None, probs or None).
        """
        if self.is_cross_attention:
            if encoder_hidden_states is None:
                raise ValueError("cross-attention needs encoder_hidden_states")
            query = self.q_attn(hidden_states)
            key, value = self.c_attn(encoder_hidden_states).split(self.embed_dim, dim=2)
        else:
            query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        query, key, value = self._split_heads(query), self._split_heads(key), self._split_heads(value)
        key, value = write_cache(layer_past, key, value, cache_index, cache_length)
        present = (key, value) if use_cache else None
        out, probs = attention_core(
            query, key, value, bias, self.config, self.layer_idx, is_causal=is_causal, head_mask=head_mask,
            dropout_p=self.attn_dropout.p if self.training else 0.0, output_probs=output_attentions, fused=use_sdpa,
        )
        out = self.resid_dropout(self.c_proj(self._merge_heads(out)))
        return out, present, probs


# ---------------------------------------------------------------------------------- MLP
class GPT2MLP(nn.Module):
    """Feed-forward: ``c_fc`` E -> inner, activation, ``c_proj`` inner -> E, dropout. (B, T, E) -> (B, T, E)."""

    def __init__(self, inner_dim: int, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(inner_dim, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner_dim)
        self.act = ACT2FN[config.activation_function]
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


# ---------------------------------------------------------------------------------- block
class GPT2Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), [+ crossattention(ln_cross_attn(x))], + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config, layer_idx: int = 0) -> None:
        super().__init__()
        eps = config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=eps)
        self.attn = GPT2Attention(config, layer_idx=layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=eps)
        if config.add_cross_attention:
            self.crossattention = GPT2Attention(config, is_cross_attention=True, layer_idx=layer_idx)
            self.ln_cross_attn = nn.LayerNorm(config.n_embd, eps=eps)
        self.mlp = GPT2MLP(config.inner_dim, config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        layer_past=None,
        bias=None,
        is_causal=False,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_bias=None,
        use_cache=False,
        output_attentions=False,
        use_sdpa=True,
        cache_index=None,
        cache_length=None,
    ):
        """(B, T, E) -> ((B, T, E), present, self-attention probs, cross-attention probs).

        Arguments as :meth:`GPT2Attention.forward`; ``encoder_bias`` is the cross-attention's additive mask.
        """
        attn_out, present, attn_probs = self.attn(
            self.ln_1(hidden_states), layer_past, bias, is_causal, head_mask, use_cache=use_cache,
            output_attentions=output_attentions, use_sdpa=use_sdpa, cache_index=cache_index, cache_length=cache_length,
        )
        hidden_states = hidden_states + attn_out
        cross_probs = None
        if encoder_hidden_states is not None:
            cross_out, _, cross_probs = self.crossattention(
                self.ln_cross_attn(hidden_states), None, encoder_bias, False, head_mask,
                encoder_hidden_states=encoder_hidden_states, output_attentions=output_attentions, use_sdpa=use_sdpa,
            )
            hidden_states = hidden_states + cross_out
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, present, attn_probs, cross_probs


# ---------------------------------------------------------------------------------- body
def _check_ids(ids: torch.Tensor, limit: int, name: str) -> None:
    """Raise the shared InputError if an id is outside [0, limit); the fast check stays on the device."""
    validation.check_integer_ids(name, not (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool), ids.dtype)
    if ids.numel() and bool(((ids < 0) | (ids >= limit)).any()):
        validation.check_input_ids(ids.detach().cpu().numpy(), limit, name)


def _tokens_shape(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> tuple[int, ...] | None:
    """The shape of the input's tokens: ``input_ids``' or ``inputs_embeds``' without its last (n_embd) dim (None
    without either: the body then raises the shared error)."""
    if input_ids is not None:
        return tuple(input_ids.shape)
    return None if inputs_embeds is None else tuple(inputs_embeds.shape[:-1])


def _check_labels(labels: torch.Tensor, num_classes: int, name: str, ignore_index: int | None = -100,
                  tokens_shape: tuple[int, ...] | None = None) -> None:
    """Label values in range (the shared check); token-level labels (``tokens_shape``) shaped like the input."""
    if tokens_shape is not None:
        validation.check_labels_shape(tuple(labels.shape), tokens_shape)
    if labels.is_floating_point() or not labels.numel():
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        validation.check_labels(labels.detach().cpu().numpy(), num_classes, name, ignore_index)


def _checking() -> bool:
    """Value checks need the values on the host; skip them while torch.compile traces."""
    return not torch.compiler.is_compiling()


def _resized_rows(old: torch.Tensor, new_rows: int, mean_resizing: bool, std: float) -> torch.Tensor:
    """A (new_rows, E) copy of ``old`` (N, E): kept rows copied, new rows drawn as HF does.

    ``mean_resizing``: new rows from a normal around the old rows' mean with 1e-9 times their
    covariance (the mean itself if that covariance is not positive definite); otherwise N(0, std).
    """
    n, e = old.shape
    out = torch.empty(new_rows, e, dtype=old.dtype, device=old.device)
    keep = min(n, new_rows)
    out[:keep] = old[:keep]
    added = new_rows - n
    if added > 0:
        if mean_resizing:
            data = old.detach().float()
            mean = data.mean(0)
            centered = data - mean
            cov = centered.T @ centered / n
            try:
                dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=1e-9 * cov)
                rows = dist.sample((added,))
            except (ValueError, RuntimeError):  # not positive definite
                rows = mean.expand(added, e)
            out[n:] = rows.to(old.dtype)
        else:
            out[n:].normal_(mean=0.0, std=std)
    return out


class GPT2PreTrainedModel(nn.Module):
    """Shared by every GPT-2 model: HF's weight init, embeddings access, loading and saving.

    Args:
        config: a :class:`~gpt2_multi.config.GPT2Config`.
        attn_implementation: ``"sdpa"`` (default: fused attention unless weights or a head mask
            are requested) or ``"eager"`` (always the explicit path).
    """

    config_class = GPT2Config
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    architecture = "GPT2Model"  # the HF PyTorch class name, used by the checkpoint layer
    supports_gradient_checkpointing = True

    @classmethod
    def can_generate(cls) -> bool:
        """Whether ``generate()`` works: True for the LM and double-heads classes, False for the others (HF's rule)."""
        return issubclass(cls, GenerationMixin)

    def __init__(self, config: GPT2Config, *, attn_implementation: str | None = None) -> None:
        super().__init__()
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a gpt2_multi.GPT2Config, got {type(config).__name__}")
        impl = attn_implementation or getattr(config, "_attn_implementation", None) or "sdpa"
        if impl not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation={impl!r} is not supported; choose one of {', '.join(ATTN_IMPLEMENTATIONS)}")
        config._attn_implementation = impl
        self.config = config

    # ---------------------------------------------------------------- init
    def _init_weights(self, module: nn.Module) -> None:
        """HF's init: N(0, initializer_range) weights, zero biases, unit layer norms, and the
        residual projections ``c_proj`` N(0, initializer_range / sqrt(2 n_layer))."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, Conv1D)):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()
        if isinstance(module, (GPT2Attention, GPT2MLP)):  # children come first in Module.apply
            module.c_proj.weight.data.normal_(mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))

    def post_init(self) -> None:
        """Initialise every weight (HF's scheme) and tie the output embedding to ``wte``.

        A model built on the ``meta`` device (``from_pretrained``) has no storage to initialise: its
        weights come from the checkpoint, and the loader initialises only the missing ones.
        """
        if not any(p.is_meta for p in self.parameters()):
            self.apply(self._init_weights)
        self.tie_weights()
        if getattr(self.config, "gradient_checkpointing", False):  # HF's legacy switch, honoured as HF does
            from gpt2_multi.pt.loading import enable_legacy_checkpointing

            enable_legacy_checkpointing(self)

    # ---------------------------------------------------------------- head pruning (deprecated, as in HF)
    def prune_heads(self, heads_to_prune: dict[int, Iterable[int]]) -> None:
        """Remove attention heads: ``{layer: [head, ...]}`` in HF's original numbering (deprecated).

        The union with what was pruned before is recorded in ``config.pruned_heads``, so a saved pruned
        model loads pruned. PyTorch only, as in HF (its TF and Flax classes cannot prune); pruned models
        decode with the dynamic cache (``cache_implementation="static"`` and ``compile=True`` need every
        layer to have ``n_head`` heads).
        """
        warnings.warn(
            "prune_heads is deprecated: HF transformers 4.x has it, v5 removes it; mask heads with head_mask instead",
            FutureWarning, stacklevel=2,
        )
        if not isinstance(heads_to_prune, dict):
            raise TypeError(f"heads_to_prune must be a dict of layer -> heads, got {type(heads_to_prune).__name__}")
        merged = {layer: set(heads) for layer, heads in self.config.pruned_heads.items()}
        for layer, heads in heads_to_prune.items():
            merged.setdefault(int(layer), set()).update(int(h) for h in heads)
        proposed = self.config.copy(pruned_heads={layer: sorted(heads) for layer, heads in merged.items()})
        for layer, heads in heads_to_prune.items():
            self.base_model.h[int(layer)].attn.prune_heads(heads)
        self.config.pruned_heads = proposed.pruned_heads  # checked by copy(): layers, heads, one head kept

    # ---------------------------------------------------------------- embeddings
    @property
    def base_model(self) -> GPT2Model:
        return getattr(self, self.base_model_prefix, self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.base_model.wte = value

    def get_output_embeddings(self) -> nn.Linear | None:
        return getattr(self, "lm_head", None)

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def tie_weights(self) -> None:
        """Make ``lm_head.weight`` the same Parameter as ``wte.weight`` when ``config.tie_word_embeddings``."""
        head = self.get_output_embeddings()
        if head is not None and self.config.tie_word_embeddings:
            head.weight = self.get_input_embeddings().weight

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Change the vocabulary size to ``new_num_tokens`` (rounded up to ``pad_to_multiple_of``).

        Existing rows are kept; new rows follow HF (see ``mean_resizing``). The LM head follows:
        tied, it stays the same Parameter as ``wte``; untied, it is resized the same way.
        ``config.vocab_size`` is updated. Returns the (new) input embedding.
        """
        old = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return old
        n = old.weight.shape[0] if new_num_tokens is None else int(new_num_tokens)
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
            n = math.ceil(n / pad_to_multiple_of) * pad_to_multiple_of
        if n < 1:
            raise ValueError(f"new_num_tokens must be positive, got {new_num_tokens!r}")
        std = self.config.initializer_range
        with torch.no_grad():
            new = nn.Embedding(n, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
            new.weight.copy_(_resized_rows(old.weight, n, mean_resizing, std))
            new.weight.requires_grad_(old.weight.requires_grad)
            self.set_input_embeddings(new)
            head = self.get_output_embeddings()
            if head is not None and not self.config.tie_word_embeddings:
                new_head = LMHead(head.in_features, n, bias=head.bias is not None,
                                     device=head.weight.device, dtype=head.weight.dtype)
                new_head.weight.copy_(_resized_rows(head.weight, n, mean_resizing, std))
                if head.bias is not None:
                    new_head.bias.zero_()
                    new_head.bias[: min(n, head.bias.shape[0])] = head.bias[:n]
                self.set_output_embeddings(new_head)
        self.config.vocab_size = n
        self.tie_weights()
        return self.get_input_embeddings()

    # ---------------------------------------------------------------- misc
    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of (distinct) parameters; a tied LM head is counted once."""
        skip = set()
        if exclude_embeddings:
            skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(p.numel() for p in self.parameters() if id(p) not in skip and (p.requires_grad or not only_trainable))

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_attn_implementation(self, name: str) -> None:
        if name not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation={name!r} is not supported; choose one of {', '.join(ATTN_IMPLEMENTATIONS)}")
        self.config._attn_implementation = name

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each block's activations in the backward pass (``torch.utils.checkpoint``).

        ``gradient_checkpointing_kwargs`` go to ``torch.utils.checkpoint.checkpoint``
        (default ``use_reentrant=False``). While training, ``use_cache`` is turned off with a warning.
        """
        kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        self.base_model.gradient_checkpointing = True
        self.base_model._checkpoint_kwargs = kwargs

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(self.base_model.gradient_checkpointing)

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """Load a checkpoint in any format the shared checkpoint layer reads.

        See :func:`gpt2_multi.pt.loading.from_pretrained` for the arguments
        (``config``, ``torch_dtype``, ``output_loading_info``, ``ignore_mismatched_sizes``, ``format``, overrides).
        """
        from gpt2_multi.pt.loading import from_pretrained

        return from_pretrained(cls, name_or_path, **kwargs)

    def save_pretrained(self, save_directory, **kwargs):
        """Write ``config.json`` and ``model.safetensors`` (see :func:`gpt2_multi.pt.loading.save_pretrained`)."""
        from gpt2_multi.pt.loading import save_pretrained

        return save_pretrained(self, save_directory, **kwargs)


class GPT2Model(GPT2PreTrainedModel):
    """The GPT-2 body: token and position embeddings, ``n_layer`` blocks, final layer norm ``ln_f``."""

    architecture = "GPT2Model"

    def __init__(self, config: GPT2Config, *, attn_implementation: str | None = None) -> None:
        super().__init__(config, attn_implementation=attn_implementation)
        self.embed_dim = config.n_embd
        # Uninitialised storage: post_init() initialises it once (and building on the meta device stays cheap).
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, _weight=torch.empty(config.vocab_size, config.n_embd))
        self.wpe = nn.Embedding(config.n_positions, config.n_embd, _weight=torch.empty(config.n_positions, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(config, layer_idx=i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False
        self._checkpoint_kwargs: dict[str, Any] = {"use_reentrant": False}
        self.post_init()

    def embed(self, input_ids: torch.Tensor | None, position_ids: torch.Tensor, inputs_embeds: torch.Tensor | None = None,
              token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token (or ``inputs_embeds``) + position (+ token type) embeddings, then dropout: (B, T) -> (B, T, E)."""
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        hidden_states = inputs_embeds + self.wpe(position_ids).to(inputs_embeds.device)
        if token_type_ids is not None:
            hidden_states = hidden_states + self.wte(token_type_ids)
        return self.drop(hidden_states)

    def attention_bias(self, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """:func:`attention_bias` with this model's config: bool (B|1, 1, T, S) -> the additive mask of the blocks."""
        return attention_bias(allowed, self.config, dtype)

    def _layer_head_masks(self, head_mask: torch.Tensor | None) -> list[torch.Tensor | None]:
        """(H,) or (L, H) -> one (1, H, 1, 1) multiplier per layer (or None everywhere)."""
        n_layer, n_head = self.config.n_layer, self.config.n_head
        if head_mask is None:
            return [None] * n_layer
        if _checking():
            validation.check_head_mask(tuple(head_mask.shape), n_layer, n_head)
        head_mask = head_mask.to(dtype=self.wte.weight.dtype)
        if head_mask.dim() == 1:
            head_mask = head_mask.expand(n_layer, n_head)
        masks = []
        for i, block in enumerate(self.h):
            kept = [h for h in range(n_head) if h not in block.attn.pruned_heads]
            row = head_mask[i] if len(kept) == n_head else head_mask[i, kept]  # a pruned layer: its heads' entries
            masks.append(row.view(1, len(kept), 1, 1))
        return masks

    def _check_inputs(self, input_ids, inputs_embeds, token_type_ids, position_ids, past_key_values, batch, seq, past_length):
        cfg = self.config
        if input_ids is not None:
            _check_ids(input_ids, cfg.vocab_size, "input_ids")
        if token_type_ids is not None:
            _check_ids(token_type_ids, cfg.vocab_size, "token_type_ids")
        if past_key_values is not None and len(past_key_values):
            validation.check_cache_layers(len(past_key_values), cfg.n_layer)
            for i, layer in enumerate(past_key_values):
                if len(layer) != 2:
                    raise validation.InputError(f"past_key_values[{i}] must be a (key, value) pair, got {len(layer)} entries")
                expected = (batch, self.h[i].attn.num_heads, past_length, cfg.head_dim)
                for name, t in zip(("key", "value"), layer):
                    validation.check_cache_shape(i, name, tuple(t.shape), expected, "(batch, n_head, past_length, head_dim)")
        if position_ids is None:
            validation.check_sequence_length(past_length, seq, cfg.n_positions)
        else:
            if position_ids.numel() and bool(((position_ids < 0) | (position_ids >= cfg.n_positions)).any()):
                validation.check_position_ids(position_ids.detach().cpu().numpy(), cfg.n_positions)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        *,
        cache_position: torch.Tensor | None = None,
    ):
        """Run the body.

        Args:
            input_ids: (B, T) token ids in [0, V) (any leading shape, e.g. (B, C, T), is flattened to (-1, T)).
            past_key_values: per layer ``(key, value)``, each (B, H, P, D), from a previous call with ``use_cache``.
            attention_mask: (B, P + T), 1 for tokens to attend to, 0 for padding; covers cached and new tokens.
            token_type_ids: (B, T) ids embedded with ``wte`` and added (HF GPT-2 semantics).
            position_ids: (B, T) or (1, T); default ``P + arange(T)`` (or ``cache_position``).
            head_mask: (H,) or (L, H); multiplies the attention probabilities (1 keeps a head, 0 drops it).
            inputs_embeds: (B, T, E) instead of ``input_ids``.
            encoder_hidden_states: (B, S_enc, E) for cross-attention (needs ``config.add_cross_attention``).
            encoder_attention_mask: (B, S_enc), 1 for encoder positions to attend to.
            use_cache, output_attentions, output_hidden_states, return_dict: default to the config's.

        Returns:
            :class:`BaseModelOutputWithPastAndCrossAttentions` (or its ``to_tuple()`` when ``return_dict=False``):
            ``last_hidden_state`` (B, T, E) after ``ln_f``; ``past_key_values`` per layer (k, v) each (B, H, P + T, D);
            ``hidden_states`` L + 1 tensors; ``attentions`` L tensors (B, H, T, P + T); ``cross_attentions``.
        """
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        use_cache = cfg.use_cache if use_cache is None else use_cache
        return_dict = cfg.use_return_dict if return_dict is None else return_dict

        validation.check_exactly_one(input_ids, inputs_embeds)
        if _checking():  # the shapes, before anything is flattened
            if input_ids is not None:
                validation.check_input_rank(tuple(input_ids.shape))
            else:
                validation.check_embeds_shape(tuple(inputs_embeds.shape), cfg.n_embd)
            for name, value in (("token_type_ids", token_type_ids), ("position_ids", position_ids)):
                if value is not None and (input_ids is not None or inputs_embeds is not None):
                    validation.check_token_shape(name, tuple(value.shape), _tokens_shape(input_ids, inputs_embeds))
        if input_ids is not None:
            input_shape = input_ids.shape
            input_ids = input_ids.reshape(-1, input_shape[-1])
            batch, seq = input_ids.shape
            device = input_ids.device
        else:
            input_shape = inputs_embeds.shape[:-1]
            inputs_embeds = inputs_embeds.reshape(-1, input_shape[-1], inputs_embeds.shape[-1])
            batch, seq = inputs_embeds.shape[:2]
            device = inputs_embeds.device
        # the cache: a legacy tuple (returned as a tuple), or a cache object (updated in place and returned); with
        # none, a DynamicCache when use_cache (HF 4.57's default)
        cache = past_key_values if past_key_values is not None and is_cache(past_key_values) else None
        if past_key_values is None and use_cache and not (self.gradient_checkpointing and self.training):
            cache = DynamicCache()
        if cache is not None:
            past_length = cache.get_seq_length()
            legacy = cache.to_legacy_cache() if past_length and hasattr(cache, "to_legacy_cache") else None
        else:
            past_length = 0 if past_key_values is None else past_key_values[0][0].shape[-2]
            legacy = past_key_values
        if token_type_ids is not None:
            token_type_ids = token_type_ids.reshape(-1, seq) if token_type_ids.numel() == batch * seq else token_type_ids
        if attention_mask is not None and attention_mask.dim() > 2 and attention_mask.shape[:-1] == input_shape[:-1]:
            attention_mask = attention_mask.reshape(batch, -1)  # (B, C, T) multiple-choice inputs
        if _checking():
            self._check_inputs(input_ids, inputs_embeds, token_type_ids, position_ids, legacy, batch, seq, past_length)
            if attention_mask is not None:
                validation.check_attention_mask(tuple(attention_mask.shape), batch, past_length, seq)
            validation.check_cross_attention(encoder_hidden_states, cfg.add_cross_attention)

        # Embeddings.
        if cache_position is None:
            cache_position = torch.arange(past_length, past_length + seq, device=device)
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)
        else:
            position_ids = position_ids.reshape(-1, seq)
        hidden_states = self.embed(input_ids, position_ids, inputs_embeds, token_type_ids)

        # Masks: the additive bias (B|1, 1, T, P + T) of the causal and padding masks, built once for every
        # layer; none for the plain causal case, which the fused kernel masks itself.
        head_masks = self._layer_head_masks(head_mask)
        use_sdpa = cfg._attn_implementation == "sdpa" and not output_attentions and head_mask is None
        is_causal = attention_mask is None
        bias = None
        if not (is_causal and past_length == 0 and use_sdpa):
            allowed = torch.ones(seq, past_length + seq, dtype=torch.bool, device=device).tril(diagonal=past_length)[None, None]
            if attention_mask is not None:
                allowed = allowed & attention_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
            bias = self.attention_bias(allowed, hidden_states.dtype)
        encoder_bias = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            m = encoder_attention_mask.to(device=device, dtype=torch.bool)
            encoder_bias = self.attention_bias(m[:, None, None, :] if m.dim() == 2 else m[:, None, :, :], hidden_states.dtype)

        checkpointing = self.gradient_checkpointing and self.training
        if checkpointing and use_cache:
            _warn_once("`use_cache=True` is incompatible with gradient checkpointing. Setting `use_cache=False`.")
            use_cache = False

        presents = () if use_cache else None
        all_hidden = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        # cross_attentions exist when there was something to attend to (TF and Flax agree; HF PT 4.57 raises
        # IndexError for add_cross_attention models called without encoder states and output_attentions)
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        for i, block in enumerate(self.h):
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if cache is not None:
                layer_past = LayerSlot(cache, i, {"cache_position": cache_position})
            else:
                layer_past = None if past_key_values is None else past_key_values[i]
            args = (hidden_states, layer_past, bias, is_causal, head_masks[i], encoder_hidden_states,
                    encoder_bias, use_cache, output_attentions, use_sdpa)
            if checkpointing:
                hidden_states, present, attn, cross = torch.utils.checkpoint.checkpoint(block, *args, **self._checkpoint_kwargs)
            else:
                hidden_states, present, attn, cross = block(*args)
            if use_cache:
                presents += (present,)
            if output_attentions:
                all_attentions += (attn,)
                if all_cross is not None:
                    all_cross += (cross,)

        hidden_states = self.ln_f(hidden_states)
        hidden_states = hidden_states.view((-1,) + tuple(input_shape[1:]) + (hidden_states.shape[-1],))
        if output_hidden_states:
            all_hidden += (hidden_states,)
        if cache is not None:
            presents = cache if use_cache else None
        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states, past_key_values=presents, hidden_states=all_hidden,
            attentions=all_attentions, cross_attentions=all_cross,
        )
        return out if return_dict else out.to_tuple()


# ---------------------------------------------------------------------------------- losses
def _causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts labels[t + 1]; -100 is ignored; mean over the rest."""
    labels = labels.to(logits.device)
    shift_logits = logits[..., :-1, :].float()
    shift_labels = labels[..., 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (..., C) logits against (...) class ids (-100 ignored), in float32."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.to(logits.device).reshape(-1))


def _problem_type(config: GPT2Config, num_labels: int, labels: torch.Tensor) -> str:
    """``config.problem_type``, else inferred for this call by HF's rule (the config is left as it is)."""
    return infer_problem_type(config.problem_type, num_labels, labels.dtype in (torch.long, torch.int))


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int, problem_type: str) -> torch.Tensor:
    """Sequence classification: pooled logits (B, L); MSE for regression, cross-entropy for single-label,
    BCE-with-logits for multi-label (HF's three problem types)."""
    labels = labels.to(logits.device)
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze().float(), labels.squeeze().float())
        return F.mse_loss(logits.float(), labels.float())
    if problem_type == "single_label_classification":
        if _checking():
            _check_labels(labels, num_labels, "labels")
        return _cross_entropy(logits, labels)
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def _question_answering_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
                             end_positions: torch.Tensor) -> torch.Tensor:
    """Mean of the start and end cross-entropies over (B, T) logits; positions outside [0, T] are clamped
    to T, which is ignored (HF's rule)."""
    if start_positions.dim() > 1:
        start_positions = start_positions.squeeze(-1)
    if end_positions.dim() > 1:
        end_positions = end_positions.squeeze(-1)
    ignored = start_logits.shape[1]
    start_positions = start_positions.to(start_logits.device).clamp(0, ignored)
    end_positions = end_positions.to(end_logits.device).clamp(0, ignored)
    return (F.cross_entropy(start_logits.float(), start_positions, ignore_index=ignored)
            + F.cross_entropy(end_logits.float(), end_positions, ignore_index=ignored)) / 2


# ---------------------------------------------------------------------------------- heads
def _flag(value, default):
    return default if value is None else value


class GPT2LMHeadModel(GPT2PreTrainedModel, GenerationMixin):
    """GPT-2 with the language-model head ``lm_head`` (E -> V, no bias, tied to ``wte`` by default)."""

    architecture = "GPT2LMHeadModel"

    def __init__(self, config: GPT2Config, *, attn_implementation: str | None = None) -> None:
        super().__init__(config, attn_implementation=attn_implementation)
        self.transformer = GPT2Model(config)
        self.lm_head = LMHead(config.n_embd, config.vocab_size, bias=False)
        self.generation_config = GenerationConfig.from_model_config(config)
        self.post_init()

    def forward(
        self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None, position_ids=None,
        head_mask=None, inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
        use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, *,
        cache_position=None, logits_to_keep: int | torch.Tensor = 0,
    ):
        """Arguments as :meth:`GPT2Model.forward`, plus:

        labels: (B, T) target ids (usually ``input_ids``); shifted inside, -100 ignored.
        logits_to_keep: HF's: an int ``k`` applies the head to the last ``k`` positions only (0, the default, or
            ``k >= T``: all), a 1-D index tensor (K,) to those positions; with ``labels`` it must keep all T.

        Returns :class:`CausalLMOutputWithCrossAttentions`: ``loss`` (), ``logits`` (B, K, V) (K = T by default),
        and the body's extras.
        """
        return_dict = _flag(return_dict, self.config.use_return_dict)
        if _checking():
            tokens_shape = _tokens_shape(input_ids, inputs_embeds)
            if labels is not None:
                _check_labels(labels, self.config.vocab_size, "labels", tokens_shape=tokens_shape)
            keep = logits_to_keep
            if isinstance(keep, torch.Tensor):  # numpy for the shared check (bfloat16 has no numpy dtype)
                keep = (keep.float() if keep.is_floating_point() else keep).detach().cpu().numpy()
            validation.check_logits_to_keep(keep, tokens_shape[-1] if tokens_shape else None, labels is not None)
        out = self.transformer(
            input_ids, past_key_values, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            encoder_hidden_states, encoder_attention_mask, use_cache, output_attentions, output_hidden_states,
            return_dict=True, cache_position=cache_position,
        )
        hidden = out.last_hidden_state
        if getattr(logits_to_keep, "ndim", 0):  # an index tensor (or array) of positions
            keep = torch.as_tensor(logits_to_keep, device=hidden.device)
        else:  # a count (a Python or numpy int): the last ones; 0 is slice(0, None), every position
            keep = slice(-int(logits_to_keep), None)
        logits = self.lm_head(hidden[..., keep, :])
        loss = _causal_lm_loss(logits, labels) if labels is not None else None
        result = CausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions, cross_attentions=out.cross_attentions,
        )
        return result if return_dict else result.to_tuple()


class GPT2SequenceSummary(nn.Module):
    """HF's ``SequenceSummary`` as GPT-2 configures it: pick one vector per sequence, then
    first dropout, ``summary`` projection, activation, last dropout.

    ``summary_type``: ``cls_index`` (the hidden state at ``cls_index``, default the last token),
    ``last`` / ``first`` (``hidden[:, -1]`` / ``hidden[:, 0]``) or ``mean`` (over dim 1), exactly as HF indexes.
    HF's quirk, kept: on (B, C, T, E) those three pool dim 1, the choices, so they give (B, T, out), not (B, C, out).
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.summary_type = config.summary_type
        if self.summary_type == "attn":
            raise NotImplementedError("summary_type='attn' is not implemented (nor is it in HF)")
        self.summary: nn.Module = nn.Identity()
        if config.summary_use_proj:
            self.summary = nn.Linear(config.n_embd, multiple_choice_summary_size(config))
        name = config.summary_activation
        self.activation = ACT2FN[name] if name else _linear
        first = config.summary_first_dropout
        last = getattr(config, "summary_last_dropout", 0.0) or 0.0
        self.first_dropout = nn.Dropout(first) if first > 0 else nn.Identity()
        self.last_dropout = nn.Dropout(last) if last > 0 else nn.Identity()

    def forward(self, hidden_states: torch.Tensor, cls_index: torch.Tensor | None = None) -> torch.Tensor:
        """hidden_states (B, C, T, E), cls_index (B, C) -> (B, C, out) for ``cls_index``."""
        if self.summary_type == "last":
            output = hidden_states[:, -1]
        elif self.summary_type == "first":
            output = hidden_states[:, 0]
        elif self.summary_type == "mean":
            output = hidden_states.mean(dim=1)
        else:
            if cls_index is None:
                cls_index = torch.full_like(hidden_states[..., :1, :], hidden_states.shape[-2] - 1, dtype=torch.long)
            else:
                cls_index = cls_index.to(hidden_states.device).long()[..., None, None]
                cls_index = cls_index.expand(*cls_index.shape[:-1], hidden_states.shape[-1])
            output = hidden_states.gather(-2, cls_index).squeeze(-2)
        output = self.first_dropout(output)
        output = self.summary(output)
        output = self.activation(output)
        return self.last_dropout(output)


class GPT2DoubleHeadsModel(GPT2PreTrainedModel, GenerationMixin):
    """GPT-2 with the LM head and a multiple-choice head (``multiple_choice_head``, a sequence summary).

    Inputs are (B, C, T): C choices per example. HF sets ``config.num_labels = 1`` for this model; so does this class.
    """

    architecture = "GPT2DoubleHeadsModel"

    def __init__(self, config: GPT2Config, *, attn_implementation: str | None = None) -> None:
        super().__init__(config, attn_implementation=attn_implementation)
        config.num_labels = 1
        validation.warn_summary_pooling(config)
        self.transformer = GPT2Model(config)
        self.lm_head = LMHead(config.n_embd, config.vocab_size, bias=False)
        self.multiple_choice_head = GPT2SequenceSummary(config)
        self.generation_config = GenerationConfig.from_model_config(config)
        self.post_init()

    def forward(
        self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None, position_ids=None,
        head_mask=None, inputs_embeds=None, mc_token_ids=None, labels=None, mc_labels=None, use_cache=None,
        output_attentions=None, output_hidden_states=None, return_dict=None, *, cache_position=None,
    ):
        """Arguments as :meth:`GPT2Model.forward` with (B, C, T) inputs, plus:

        mc_token_ids: (B, C) index of the token whose hidden state scores each choice (default: the last).
        labels: (B, C, T) LM targets (shifted inside, -100 ignored). mc_labels: (B,) the right choice in [0, C).

        Returns :class:`GPT2DoubleHeadsModelOutput`: ``loss`` (LM), ``mc_loss``, ``logits`` (B, C, T, V), ``mc_logits`` (B, C).
        """
        return_dict = _flag(return_dict, self.config.use_return_dict)
        if _checking():
            if labels is not None:
                _check_labels(labels, self.config.vocab_size, "labels", tokens_shape=_tokens_shape(input_ids, inputs_embeds))
            if mc_token_ids is not None:
                seq = (input_ids if input_ids is not None else inputs_embeds[..., 0]).shape[-1]
                _check_labels(mc_token_ids, seq, "mc_token_ids", ignore_index=None)
        out = self.transformer(
            input_ids, past_key_values, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=True, cache_position=cache_position,
        )
        hidden = out.last_hidden_state
        lm_logits = self.lm_head(hidden)
        mc_logits = self.multiple_choice_head(hidden, mc_token_ids).squeeze(-1)
        mc_loss = None
        if mc_labels is not None:
            if _checking():
                _check_labels(mc_labels, mc_logits.shape[-1], "mc_labels")
            mc_loss = _cross_entropy(mc_logits, mc_labels)
        lm_loss = _causal_lm_loss(lm_logits, labels) if labels is not None else None
        result = GPT2DoubleHeadsModelOutput(
            loss=lm_loss, mc_loss=mc_loss, logits=lm_logits, mc_logits=mc_logits,
            past_key_values=out.past_key_values, hidden_states=out.hidden_states, attentions=out.attentions,
        )
        return result if return_dict else result.to_tuple()


class GPT2ForSequenceClassification(GPT2PreTrainedModel):
    """GPT-2 with ``score`` (E -> L, no bias) read at each sequence's last non-pad token.

    The last non-pad token is the rightmost position whose id is not ``config.pad_token_id``
    (right or left padding both work). Without a pad id only a batch of one is accepted (HF's rule);
    with ``inputs_embeds`` the last position is used (a warning says so).
    """

    architecture = "GPT2ForSequenceClassification"

    def __init__(self, config: GPT2Config, *, attn_implementation: str | None = None) -> None:
        super().__init__(config, attn_implementation=attn_implementation)
        self.num_labels = config.num_labels
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        self.post_init()

    def forward(
        self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None, position_ids=None,
        head_mask=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
        output_hidden_states=None, return_dict=None,
    ):
        """Arguments as :meth:`GPT2Model.forward`, plus ``labels``: (B,) class ids for single-label,
        (B, L) 0/1 floats for multi-label, (B,) or (B, L) floats for regression (``config.problem_type``,
        inferred for each call by HF's rule when None; unlike HF, the config is not changed).

        Returns :class:`SequenceClassifierOutputWithPast`: ``loss`` (), ``logits`` (B, L) pooled at the last non-pad token.
        """
        cfg = self.config
        return_dict = _flag(return_dict, cfg.use_return_dict)
        out = self.transformer(
            input_ids, past_key_values, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.score(out.last_hidden_state)  # (B, T, L)
        batch = logits.shape[0]
        validation.check_pad_token_for_batch(batch, cfg.pad_token_id)
        if cfg.pad_token_id is None:
            last = torch.full((batch,), -1, dtype=torch.long, device=logits.device)
        elif input_ids is not None:
            non_pad = (input_ids != cfg.pad_token_id).to(logits.device, torch.int32)
            positions = torch.arange(input_ids.shape[-1], device=logits.device, dtype=torch.int32)
            last = (positions * non_pad).argmax(-1)
        else:
            last = torch.full((batch,), -1, dtype=torch.long, device=logits.device)
            _warn_once(f"{type(self).__name__} will not detect padding tokens in `inputs_embeds`. Results may be "
                       "unexpected if using padding tokens in conjunction with `inputs_embeds.`")
        pooled = logits[torch.arange(batch, device=logits.device), last]

        loss = None
        if labels is not None:
            loss = _classification_loss(pooled, labels, self.num_labels, _problem_type(cfg, self.num_labels, labels))
        result = SequenceClassifierOutputWithPast(
            loss=loss, logits=pooled, past_key_values=out.past_key_values,
            hidden_states=out.hidden_states, attentions=out.attentions,
        )
        return result if return_dict else result.to_tuple()


class GPT2ForTokenClassification(GPT2PreTrainedModel):
    """GPT-2 with dropout and ``classifier`` (E -> L, with bias) on every token."""

    architecture = "GPT2ForTokenClassification"

    def __init__(self, config: GPT2Config, *, attn_implementation: str | None = None) -> None:
        super().__init__(config, attn_implementation=attn_implementation)
        self.num_labels = config.num_labels
        self.transformer = GPT2Model(config)
        rate = getattr(config, "classifier_dropout", None)
        if rate is None:
            rate = getattr(config, "hidden_dropout", None)
        self.dropout = nn.Dropout(0.1 if rate is None else rate)
        self.classifier = nn.Linear(config.n_embd, config.num_labels)
        self.post_init()

    def forward(
        self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None, position_ids=None,
        head_mask=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
        output_hidden_states=None, return_dict=None,
    ):
        """Arguments as :meth:`GPT2Model.forward`, plus ``labels`` (B, T) in [0, L) or -100 (ignored).

        Returns :class:`TokenClassifierOutput`: ``loss`` () (mean over labelled tokens), ``logits`` (B, T, L).
        """
        return_dict = _flag(return_dict, self.config.use_return_dict)
        if labels is not None and _checking():
            _check_labels(labels, self.num_labels, "labels")  # any shape of B * T labels, as HF's view(-1)
        out = self.transformer(
            input_ids, past_key_values, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = _cross_entropy(logits, labels)
        result = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        return result if return_dict else result.to_tuple()


class GPT2ForQuestionAnswering(GPT2PreTrainedModel):
    """GPT-2 with ``qa_outputs`` (E -> 2, with bias): span start and end scores for every token."""

    architecture = "GPT2ForQuestionAnswering"

    def __init__(self, config: GPT2Config, *, attn_implementation: str | None = None) -> None:
        super().__init__(config, attn_implementation=attn_implementation)
        self.num_labels = config.num_labels
        self.transformer = GPT2Model(config)
        self.qa_outputs = nn.Linear(config.n_embd, 2)
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
        inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
        output_hidden_states=None, return_dict=None,
    ):
        """Arguments as :meth:`GPT2Model.forward`, plus ``start_positions`` / ``end_positions`` (B,):
        positions outside [0, T] are clamped to T, which is ignored (HF's rule).

        Returns :class:`QuestionAnsweringModelOutput`: ``loss`` () the mean of the start and end
        cross-entropies; ``start_logits`` and ``end_logits`` (B, T).
        """
        return_dict = _flag(return_dict, self.config.use_return_dict)
        out = self.transformer(
            input_ids, None, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            use_cache=False, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.qa_outputs(out.last_hidden_state)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = _question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        result = QuestionAnsweringModelOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits,
            hidden_states=out.hidden_states, attentions=out.attentions,
        )
        return result if return_dict else result.to_tuple()


# ---------------------------------------------------------------------------------- wrappers
# None in PyTorch: the classes above are HF's public ones (TF and Flax wrap their modules here).
MODEL_CLASSES = {
    cls.architecture: cls
    for cls in (GPT2Model, GPT2LMHeadModel, GPT2DoubleHeadsModel, GPT2ForSequenceClassification,
                GPT2ForTokenClassification, GPT2ForQuestionAnswering)
}
