"""GPT-2 in Flax Linen: activations, Conv1D, attention, MLP, block, body, losses, the six heads, and HF-style wrappers.

Read top to bottom: the activation table (:mod:`gpt2_multi.flax.activations`), ``FlaxConv1D`` (HF's transposed
dense), the attention section (:func:`attention_core`, :func:`write_cache`, ``FlaxGPT2Attention``), ``FlaxGPT2MLP``,
``FlaxGPT2Block``, the body (``FlaxGPT2PreTrainedModel``, the base of the wrappers users call, then the Linen body
``FlaxGPT2Module``), the losses, each head module (its projection and its loss), and last the wrapper classes
(``FlaxGPT2LMHeadModel`` ...), which hold ``params`` (a plain pytree), validate concrete inputs, and run one
jitted function per static flag set.

Two paths attend, and both call the one :func:`attention_core` and the one :func:`write_cache`: the modules'
``__call__`` (the reference, HF's Flax contract: a ``cache`` collection ``cached_key`` / ``cached_value``
(B, max_length, H, D) and ``cache_index``), and the modules' ``decode_step`` methods, the fast path of the
compiled ``generate`` loop, which run the same submodules on a cache laid out as one (n_layer, 2, N, H, L, D)
array (no transpose of the cache per step; XLA updates it in place). Tests hold them equal to the full forward.

Shapes: B batch, T new tokens, S key length (T, or the cache's max_length with a cache), E n_embd,
H n_head, D head_dim, V vocab_size, C choices (double heads).

The parameter tree mirrors HF's Flax GPT-2 (``transformer/h/0/attn/c_attn/kernel`` ...; Conv1D kernels
stored (out, in), Dense kernels (in, out)), so HF's ``flax_model.msgpack`` and the shared name map
(``gpt2_multi.checkpoint.layout.pt_to_flax_path``) address it directly. The modules carry no sharding
annotations: :mod:`gpt2_multi.flax.sharding` maps parameter paths to logical axes (a regex table).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gpt2_multi import validation
from gpt2_multi.checkpoint import layout
from gpt2_multi.config import GPT2Config, infer_problem_type
from gpt2_multi.flax import loading
from gpt2_multi.flax.generation import FlaxGenerationMixin
from gpt2_multi.flax.outputs import (
    FlaxBaseModelOutputWithPastAndCrossAttentions,
    FlaxCausalLMOutputWithCrossAttentions,
    FlaxGPT2DoubleHeadsModelOutput,
    FlaxQuestionAnsweringModelOutput,
    FlaxSequenceClassifierOutputWithPast,
    FlaxTokenClassifierOutput,
)
from gpt2_multi.flax.sharding import param_logical_axes
from gpt2_multi.validation import InputError

Dtype = Any
Array = jax.Array

# ---------------------------------------------------------------------------------- activations
from gpt2_multi.flax.activations import ACT2FN as ACT2FN  # noqa: E402  (re-exported; the table is its own module)
from gpt2_multi.flax.activations import as_stored, get_activation  # noqa: E402


# ---------------------------------------------------------------------------------- Conv1D
def _init(config: GPT2Config, leaf: str) -> Callable:
    """The initialiser of a ``kernel`` / ``embedding`` (HF's normal draw), a LayerNorm ``scale`` (ones) or a ``bias`` (zeros)."""
    if leaf in ("kernel", "embedding"):
        return nn.initializers.normal(stddev=config.initializer_range)
    return nn.initializers.ones if leaf == "scale" else nn.initializers.zeros


class FlaxConv1D(nn.Module):
    """HF's Conv1D: a dense layer whose kernel is stored (features, in_features); ``y = x @ kernel.T + bias``."""

    features: int
    config: GPT2Config
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", _init(self.config, "kernel"), (self.features, x.shape[-1]), self.param_dtype)
        bias = self.param("bias", _init(self.config, "bias"), (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return matmul_transposed(x, kernel, bias)


def matmul_transposed(x: Array, kernel: Array, bias: Array | None = None) -> Array:
    """``x @ kernel.T + bias`` for ``x`` (..., in), ``kernel`` (out, in), ``bias`` (out,): every Conv1D.

    In half precision (bfloat16, float16) the product is accumulated in float32, the bias added in float32, and
    the sum rounded once, as ``torch.addmm`` does (and the TensorFlow stack): the stacks round at the same points.

    In half precision one row (a batch-1 decode step) goes as a 2-D ``(1, in) @ (in, out)`` product: XLA on CPU
    then emits a fused matrix-vector loop that streams the kernel once, as stored. The same product with extra
    unit dims is a GEMM, for which XLA's CPU backend first converts a bfloat16 kernel to a float32 copy on every
    call (about 25x slower at GPT-2 small widths). In float32 the einsum is the fast form (the 2-D product of the
    transposed kernel ran 3x slower on an AVX2 EPYC); more rows always use it (``benchmarks/README.md``, issue 15).
    """
    half = x.dtype in (jnp.bfloat16, jnp.float16)
    accumulate = jnp.float32 if half else None
    if half and math.prod(x.shape[:-1]) == 1:
        y = jnp.dot(x.reshape(1, x.shape[-1]), kernel.T, preferred_element_type=accumulate)
        y = y.reshape(*x.shape[:-1], kernel.shape[0])
    else:
        y = jnp.einsum("...i,oi->...o", x, kernel, preferred_element_type=accumulate)
    if bias is not None:
        y = y + (bias.astype(jnp.float32) if half else bias)
    return y.astype(x.dtype) if half else y


def _dense(config: GPT2Config, features: int, name: str, dtype: Dtype, param_dtype: Dtype, use_bias: bool = True) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, name=name,
                    kernel_init=_init(config, "kernel"), bias_init=_init(config, "bias"))


class _LayerNorm(nn.LayerNorm):
    """Flax's LayerNorm (statistics in float32) of its input as stored (:func:`as_stored`): in half precision
    the residual sum it normalises is rounded first, as in the other stacks. Same parameters."""

    def __call__(self, x: Array, *args, **kwargs) -> Array:
        return super().__call__(as_stored(x), *args, **kwargs)


def _layer_norm(config: GPT2Config, name: str, dtype: Dtype, param_dtype: Dtype) -> nn.LayerNorm:
    return _LayerNorm(epsilon=config.layer_norm_epsilon, dtype=dtype, param_dtype=param_dtype, name=name,
                      scale_init=_init(config, "scale"), bias_init=_init(config, "bias"))


# ---------------------------------------------------------------------------------- attention
def attention_bias(offset: Array | int, length: int, key_length: int, attention_mask: Array | None = None) -> Array:
    """The additive mask of ``length`` queries at cache positions ``offset + arange(length)`` over ``key_length`` keys.

    0 where a query may attend (the key is not after it, and ``attention_mask`` (B, key_length), 1 = token,
    0 = padding, marks it a token), float32's minimum elsewhere. Returns (B or 1, 1, length, key_length) float32;
    :func:`attention_core` adds it in the scores' dtype.
    """
    min_value = jnp.finfo(jnp.float32).min
    queries = offset + jnp.arange(length)
    bias = jnp.where(queries[:, None] >= jnp.arange(key_length)[None, :], 0.0, min_value)[None, None]
    if attention_mask is not None:
        bias = jnp.maximum(bias + padding_bias(attention_mask), min_value)  # min + min would be -inf
    return bias


def padding_bias(attention_mask: Array) -> Array:
    """The additive mask of ``attention_mask`` (B, S) alone (1 = attend, 0 = not), no causality: (B, 1, 1, S)
    float32, 0 or float32's minimum. Cross-attention's mask over the encoder states (HF inverts it the same way)."""
    return (1.0 - attention_mask.astype(jnp.float32))[:, None, None, :] * jnp.finfo(jnp.float32).min


def attention_core(
    query: Array,
    key: Array,
    value: Array,
    bias: Array | None,
    config: GPT2Config,
    layer_idx: int,
    *,
    dropout: Callable[[Array], Array] | None = None,
    head_mask: Array | None = None,
    output_probs: bool = False,
) -> tuple[Array, Array | None]:
    """GPT-2's attention on split heads, the one copy every path calls: ``softmax(scale * q k^T + bias) v``.

    ``query`` (B, H, T, D); ``key`` / ``value`` (B, H, S, D); ``bias`` additive, broadcastable to (B, H, T, S)
    (:func:`attention_bias`), or None. The scale is ``1 / sqrt(D)`` with ``scale_attn_weights`` times
    ``1 / (layer_idx + 1)`` with ``scale_attn_by_inverse_layer_idx``. With ``reorder_and_upcast_attn`` the
    product, the mask and the softmax are float32 and the scale is folded into the query first (HF's order);
    otherwise the scores keep the query's dtype and are divided afterwards, except in half precision (bfloat16,
    float16), where they are float32 from the product to the softmax, as in PyTorch's fused kernel and in the
    other stacks: the probabilities are rounded once, to ``value``'s dtype. Masked scores are the scores
    dtype's minimum. ``dropout`` (a function) and then ``head_mask`` (H,) act on the probabilities.

    Returns ``(out (B, H, T, D), probs (B, H, T, S) if output_probs else None)``.
    """
    d = query.shape[-1]
    if config.reorder_and_upcast_attn:
        scale = 1.0
        if config.scale_attn_weights:
            scale /= math.sqrt(d)
        if config.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        scores = jnp.einsum("bhqd,bhkd->bhqk", query.astype(jnp.float32) * scale, key.astype(jnp.float32))
    else:
        half = query.dtype in (jnp.bfloat16, jnp.float16)  # half precision: the scores in float32
        scores = jnp.einsum("bhqd,bhkd->bhqk", query, key, preferred_element_type=jnp.float32 if half else None)
        if config.scale_attn_weights:
            scores = scores / jnp.asarray(math.sqrt(d), scores.dtype)
        if config.scale_attn_by_inverse_layer_idx:
            scores = scores / jnp.asarray(layer_idx + 1, scores.dtype)
    if bias is not None:
        scores = jnp.maximum(scores + bias.astype(scores.dtype), jnp.finfo(scores.dtype).min)
    probs = as_stored(jax.nn.softmax(scores, axis=-1).astype(value.dtype))  # rounded before a head mask scales it
    if dropout is not None:
        probs = dropout(probs)
    if head_mask is not None:
        probs = probs * head_mask.astype(probs.dtype)[None, :, None, None]
    out = jnp.einsum("bhqk,bhkd->bhqd", probs, value)
    return out, (probs if output_probs else None)


def write_cache(cache: Any, key: Array, value: Array, index: Array | int, layer: int | None = None) -> tuple:
    """Write this step's ``key`` / ``value`` (B, H, T, D) at cache positions ``index .. index + T - 1``: the one
    cache write of the stack, an explicit slice update (``dynamic_update_slice``, in place under XLA).

    * ``layer`` None, the module's ``cache`` collection (HF's format): ``cache`` is the pair
      ``(cached_key, cached_value)``, each (B, max_length, H, D).
    * ``layer`` an int, the fast path's layout: ``cache`` is every layer's keys and values in one array
      (n_layer, 2, B, H, L, D); layer ``layer``'s entries are written.

    Returns ``(cache, keys, values)``: the updated cache and the (B, H, S, D) keys and values to attend to
    (all S = max_length positions; :func:`attention_bias` hides the ones not written yet).
    """
    if layer is None:
        cached_key, cached_value = cache
        start = (0, index, 0, 0)
        cached_key = _write_slice(cached_key, key.transpose(0, 2, 1, 3), start)
        cached_value = _write_slice(cached_value, value.transpose(0, 2, 1, 3), start)
        return (cached_key, cached_value), cached_key.transpose(0, 2, 1, 3), cached_value.transpose(0, 2, 1, 3)
    cache = _write_slice(cache, jnp.stack([key, value])[None], (layer, 0, 0, 0, index, 0))
    return cache, cache[layer, 0], cache[layer, 1]


def _write_slice(buffer: Array, update: Array, start: tuple) -> Array:
    """``dynamic_update_slice`` of ``update`` (cast to the buffer's dtype) into ``buffer`` at ``start``.

    A half-precision buffer is written as 16-bit integers, the same bits: XLA's CPU backend runs a bfloat16
    slice write in float32, converting the whole buffer there and back at every layer and step (the write is
    then no longer in place; measured in ``benchmarks/README.md``, issue 15). As the TensorFlow stack does.
    """
    update = update.astype(buffer.dtype)
    if buffer.dtype not in (jnp.bfloat16, jnp.float16):
        return jax.lax.dynamic_update_slice(buffer, update, start)
    bits = jax.lax.dynamic_update_slice(jax.lax.bitcast_convert_type(buffer, jnp.uint16),
                                        jax.lax.bitcast_convert_type(update, jnp.uint16), start)
    return jax.lax.bitcast_convert_type(bits, buffer.dtype)


class FlaxGPT2Attention(nn.Module):
    """Causal self-attention of block ``layer_idx``: ``c_attn``, :func:`attention_core`, ``c_proj``.

    Input (B, T, E); output (B, T, E) and, with ``output_attentions``, the probabilities (B, H, T, S).
    ``layer_head_mask`` (H,) multiplies the probabilities.

    With a ``cache`` collection (from ``init_cache``), the new keys/values are written at ``cache_index``
    into ``cached_key`` / ``cached_value`` (B, max_length, H, D) and the queries attend to the whole
    cache (S = max_length), causally by cache position. :meth:`decode_step` is the fast path's variant.

    With ``is_cross_attention`` (the block's ``crossattention``): queries from ``q_attn`` on the input, keys
    and values from ``c_attn`` (E -> 2E) on ``encoder_hidden_states`` (B, S_enc, E), not causal;
    ``attention_mask`` is then the encoder mask (B, S_enc). It never touches the cache: the keys and
    values are recomputed from the encoder states at every call (as HF's Flax GPT-2; HF PyTorch caches
    them, with the same numbers). Same :func:`attention_core`; probabilities (B, H, T, S_enc).
    """

    config: GPT2Config
    layer_idx: int = 0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    is_cross_attention: bool = False

    def setup(self) -> None:
        e = self.config.n_embd
        if self.is_cross_attention:
            self.c_attn = FlaxConv1D(2 * e, self.config, self.dtype, self.param_dtype)
            self.q_attn = FlaxConv1D(e, self.config, self.dtype, self.param_dtype)
        else:
            self.c_attn = FlaxConv1D(3 * e, self.config, self.dtype, self.param_dtype)
        self.c_proj = FlaxConv1D(e, self.config, self.dtype, self.param_dtype)
        self.attn_dropout = nn.Dropout(rate=self.config.attn_pdrop)
        self.resid_dropout = nn.Dropout(rate=self.config.resid_pdrop)

    def _split_heads(self, hidden_states: Array) -> tuple[Array, Array, Array]:
        """(B, T, E) -> ``c_attn`` -> query, key, value, each (B, H, T, D)."""
        b, t, _ = hidden_states.shape
        qkv = self.c_attn(hidden_states).reshape(b, t, 3, self.config.n_head, self.config.head_dim)
        return tuple(qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))

    def _cross_heads(self, hidden_states: Array, encoder_hidden_states: Array) -> tuple[Array, Array, Array]:
        """Cross-attention: ``q_attn`` on (B, T, E) -> query (B, H, T, D); ``c_attn`` on the encoder states
        (B, S_enc, E) -> key, value, each (B, H, S_enc, D)."""
        h, d = self.config.n_head, self.config.head_dim
        b, t, _ = hidden_states.shape
        query = self.q_attn(hidden_states).reshape(b, t, h, d).transpose(0, 2, 1, 3)
        s = encoder_hidden_states.shape[1]
        kv = self.c_attn(encoder_hidden_states).reshape(b, s, 2, h, d)
        return query, kv[:, :, 0].transpose(0, 2, 1, 3), kv[:, :, 1].transpose(0, 2, 1, 3)

    def _merge_heads(self, out: Array, deterministic: bool) -> Array:
        """(B, H, T, D) -> (B, T, E) -> ``c_proj`` -> residual dropout."""
        b, h, t, d = out.shape
        out = self.c_proj(out.transpose(0, 2, 1, 3).reshape(b, t, h * d))
        return self.resid_dropout(out, deterministic=deterministic)

    @nn.compact
    def _concatenate_to_cache(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        """Write key/value (B, H, T, D) into the cache collection at cache_index; return the whole cache as
        (B, H, max_length, D) and the new queries' offset. At ``init_cache`` time, create it (HF's format)."""
        is_initialized = self.has_variable("cache", "cached_key")
        b, h, t, d = key.shape
        cached_key = self.variable("cache", "cached_key", jnp.zeros, (b, t, h, d), key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, (b, t, h, d), value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        offset = cache_index.value
        if is_initialized:
            (cached_key.value, cached_value.value), key, value = write_cache(
                (cached_key.value, cached_value.value), key, value, offset)
            cache_index.value = offset + t
        return key, value, offset

    def __call__(
        self,
        hidden_states: Array,
        attention_mask: Array | None = None,
        layer_head_mask: Array | None = None,
        deterministic: bool = True,
        init_cache: bool = False,
        output_attentions: bool = False,
        encoder_hidden_states: Array | None = None,
    ) -> tuple[Array, ...]:
        if self.is_cross_attention:
            if encoder_hidden_states is None:
                raise InputError("cross-attention needs encoder_hidden_states")
            query, key, value = self._cross_heads(hidden_states, encoder_hidden_states)
            bias = None if attention_mask is None else padding_bias(attention_mask)
        else:
            query, key, value = self._split_heads(hidden_states)
            offset = 0
            if self.has_variable("cache", "cached_key") or init_cache:
                key, value, offset = self._concatenate_to_cache(key, value)
            bias = attention_bias(offset, query.shape[2], key.shape[2], attention_mask)
        out, probs = attention_core(query, key, value, bias, self.config, self.layer_idx,
                                    dropout=lambda p: self.attn_dropout(p, deterministic=deterministic),
                                    head_mask=layer_head_mask, output_probs=output_attentions)
        out = self._merge_heads(out, deterministic)
        return (out, probs) if output_attentions else (out,)

    def decode_step(self, hidden_states: Array, kv: Array, bias: Array, index: Array) -> tuple[Array, Array]:
        """The fast path: (N, T, E) whose keys/values go to cache positions ``index ..`` of ``kv``
        (n_layer, 2, N, H, L, D); ``bias`` (N or 1, 1, T, L) from :func:`attention_bias`. No dropout.
        Returns (N, T, E) and the updated ``kv``."""
        query, key, value = self._split_heads(hidden_states)
        kv, key, value = write_cache(kv, key, value, index, layer=self.layer_idx)
        out, _ = attention_core(query, key, value, bias, self.config, self.layer_idx)
        return self._merge_heads(out, True), kv


# ---------------------------------------------------------------------------------- MLP
class FlaxGPT2MLP(nn.Module):
    """(B, T, E) -> c_fc (n_inner) -> activation -> c_proj (E) -> dropout."""

    config: GPT2Config
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self) -> None:
        self.c_fc = FlaxConv1D(self.config.inner_dim, self.config, self.dtype, self.param_dtype)
        self.c_proj = FlaxConv1D(self.config.n_embd, self.config, self.dtype, self.param_dtype)
        self.act = get_activation(self.config.activation_function)
        self.dropout = nn.Dropout(rate=self.config.resid_pdrop)

    def __call__(self, hidden_states: Array, deterministic: bool = True) -> Array:
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))), deterministic=deterministic)


# ---------------------------------------------------------------------------------- block
class FlaxGPT2Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, [``x + crossattention(ln_cross_attn(x), encoder)``],
    then ``x + mlp(ln_2(x))``. (B, T, E) -> (B, T, E).

    Returns ``(x,)``, or with ``output_attentions`` ``(x, self-attention probs, cross-attention probs or None)``.
    The cross-attention layers exist with ``config.add_cross_attention`` and run when encoder states are given.
    """

    config: GPT2Config
    layer_idx: int = 0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self) -> None:
        self.ln_1 = _layer_norm(self.config, "ln_1", self.dtype, self.param_dtype)
        self.attn = FlaxGPT2Attention(self.config, self.layer_idx, self.dtype, self.param_dtype)
        self.ln_2 = _layer_norm(self.config, "ln_2", self.dtype, self.param_dtype)
        self.mlp = FlaxGPT2MLP(self.config, self.dtype, self.param_dtype)
        if self.config.add_cross_attention:
            self.crossattention = FlaxGPT2Attention(self.config, self.layer_idx, self.dtype, self.param_dtype,
                                                    is_cross_attention=True)
            self.ln_cross_attn = _layer_norm(self.config, "ln_cross_attn", self.dtype, self.param_dtype)

    def __call__(self, hidden_states, attention_mask=None, layer_head_mask=None, deterministic=True,
                 init_cache=False, output_attentions=False, encoder_hidden_states=None, encoder_attention_mask=None):
        attn = self.attn(self.ln_1(hidden_states), attention_mask, layer_head_mask, deterministic, init_cache, output_attentions)
        hidden_states = hidden_states + attn[0]
        cross_probs = None
        if encoder_hidden_states is not None:
            if not self.config.add_cross_attention:
                raise InputError(validation.NO_CROSS_ATTENTION)
            cross = self.crossattention(self.ln_cross_attn(hidden_states), encoder_attention_mask, layer_head_mask,
                                        deterministic, False, output_attentions, encoder_hidden_states=encoder_hidden_states)
            hidden_states = hidden_states + cross[0]
            cross_probs = cross[1] if output_attentions else None
        elif self.config.add_cross_attention and self.is_initializing():
            # Create the cross-attention parameters whatever the head (HF builds them from the config, so every
            # head's checkpoint holds them); the result is discarded.
            self.crossattention(self.ln_cross_attn(hidden_states), encoder_hidden_states=hidden_states)
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states), deterministic=deterministic)
        return (hidden_states, attn[1], cross_probs) if output_attentions else (hidden_states,)

    def decode_step(self, hidden_states: Array, kv: Array, bias: Array, index: Array) -> tuple[Array, Array]:
        """:meth:`__call__` on the fast path's cache (see :meth:`FlaxGPT2Attention.decode_step`), same sublayers."""
        attn, kv = self.attn.decode_step(self.ln_1(hidden_states), kv, bias, index)
        hidden_states = hidden_states + attn
        return hidden_states + self.mlp(self.ln_2(hidden_states)), kv


class FlaxGPT2BlockCollection(nn.Module):
    """The ``n_layer`` blocks, named ``"0"`` .. ``"n_layer-1"``; ``remat`` recomputes each block in the backward pass."""

    config: GPT2Config
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: bool = False

    def setup(self) -> None:
        # static: deterministic, init_cache, output_attentions (argnum 0 is self)
        block = nn.remat(FlaxGPT2Block, static_argnums=(4, 5, 6)) if self.remat else FlaxGPT2Block
        self.blocks = [block(self.config, i, self.dtype, self.param_dtype, name=str(i)) for i in range(self.config.n_layer)]

    def __call__(self, hidden_states, attention_mask=None, head_mask=None, deterministic=True, init_cache=False,
                 output_attentions=False, output_hidden_states=False, encoder_hidden_states=None,
                 encoder_attention_mask=None):
        """Returns ``(hidden_states, all_hidden, all_attn, all_cross)``; ``all_cross`` is filled only with
        ``output_attentions`` and encoder states."""
        all_hidden: tuple[Array, ...] = ()
        all_attn: tuple[Array, ...] = ()
        all_cross: tuple[Array, ...] = ()
        for i, block in enumerate(self.blocks):
            if output_hidden_states:
                all_hidden += (hidden_states,)
            layer_head_mask = None if head_mask is None else head_mask[i]
            out = block(hidden_states, attention_mask, layer_head_mask, deterministic, init_cache, output_attentions,
                        encoder_hidden_states, encoder_attention_mask)
            hidden_states = out[0]
            if output_attentions:
                all_attn += (out[1],)
                if encoder_hidden_states is not None:
                    all_cross += (out[2],)
        return hidden_states, all_hidden, all_attn, all_cross

    def decode_step(self, hidden_states: Array, kv: Array, bias: Array, index: Array) -> tuple[Array, Array]:
        for block in self.blocks:
            hidden_states, kv = block.decode_step(hidden_states, kv, bias, index)
        return hidden_states, kv


# ---------------------------------------------------------------------------------- body
_INT_INPUTS = ("input_ids", "position_ids", "token_type_ids", "mc_token_ids", "mc_labels", "start_positions", "end_positions")


def _is_concrete(x: Any) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


# (module class, config, dtype, param_dtype, remat) + static flags -> jitted forward; see _jitted_apply.
_JIT_CACHE: dict[tuple, Callable] = {}
# (config, dtype, param_dtype, batch, max_length) -> the cache collection's shapes; see init_cache.
_CACHE_SHAPES: dict[tuple, Any] = {}


NO_PARAMS = ("this model was created with _do_init=False, so it keeps no params: `model.params` can be neither read "
             "nor set (as in HF). Keep the params from from_pretrained(..., _do_init=False) or init_weights() outside "
             "the model and pass params=... to every call, save_pretrained and generate")


def _fill_mask_and_positions(inputs: dict[str, Any]) -> dict[str, Any]:
    """An all-ones ``attention_mask`` and ``arange`` ``position_ids`` where a cacheless call gives none, as HF's
    Flax models fill them: the same numbers (a mask of ones adds -0.0 to the bias), and one compiled program
    for calls with and without them instead of one for each combination."""
    reference = inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"][..., 0]
    shape = tuple(reference.shape)
    if inputs["attention_mask"] is None:
        inputs["attention_mask"] = np.ones(shape, np.int32)
    if inputs["position_ids"] is None:
        inputs["position_ids"] = np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)
    return inputs


class FlaxGPT2PreTrainedModel:
    """HF-style Flax model: a Linen ``module`` plus its ``params`` (a plain pytree), callable like HF's Flax models.

    ``model(input_ids, attention_mask=None, position_ids=None, params=None, past_key_values=None,
    dropout_rng=None, train=False, output_attentions=None, output_hidden_states=None, return_dict=None,
    token_type_ids=None, head_mask=None, inputs_embeds=None, <head inputs and labels>)``

    Concrete inputs are validated before the jitted call (JAX would clamp an out-of-range id silently).
    The call runs one ``jax.jit``-ed function per static setting (train, output flags, cache or not).

    Caching follows HF's Flax models: ``cache = model.init_cache(B, max_length)``, then calls with
    ``past_key_values=cache``, explicit ``position_ids`` and an ``attention_mask`` (B, max_length);
    the output's ``past_key_values`` is the updated cache to pass to the next call.

    The body and the LM head also take ``encoder_hidden_states`` (B, S_enc, E) and ``encoder_attention_mask``
    (B, S_enc) (keywords; ``config.add_cross_attention``), as HF's; with ``output_attentions`` the output's
    ``cross_attentions`` are (B, H, T, S_enc) per layer. The cache holds self-attention only: pass the
    encoder states again at every cached call (their keys and values are recomputed).

    Args:
        config: the model's :class:`GPT2Config`.
        params: a parameter pytree; ``None`` initialises randomly (``seed``) unless ``_do_init=False``.
        dtype: computation dtype (``jnp.bfloat16`` for mixed precision); param_dtype: storage dtype.
        remat: recompute each block in the backward pass (``nn.remat``), trading compute for memory.
    """

    module_class: ClassVar[type[nn.Module]]
    architecture: ClassVar[str]
    head_inputs: ClassVar[tuple[str, ...]] = ()
    encoder_inputs: ClassVar[tuple[str, ...]] = ()  # the cross-attention inputs, on the classes HF gives them
    base_model_prefix = "transformer"
    config_class = GPT2Config
    main_input_name = "input_ids"

    @classmethod
    def can_generate(cls) -> bool:
        """Whether ``generate()`` works: True for the LM and double-heads classes, False for the others (HF's rule)."""
        return issubclass(cls, FlaxGenerationMixin)

    def __init__(self, config: GPT2Config, params: Any = None, *, input_shape: tuple[int, ...] = (1, 1), seed: int = 0,
                 dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32, remat: bool = False, _do_init: bool = True):
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}")
        validation.check_unpruned(config, "Flax")
        self.config = config
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.remat = remat
        self.module = self.module_class(config=config, dtype=dtype, param_dtype=param_dtype, remat=remat)
        self._input_shape = tuple(input_shape)
        self._jitted_keys: set[tuple] = set()  # the static settings this model has been called with
        self._is_initialized = _do_init
        if params is None and _do_init:
            params = self.init_weights(seed, self._input_shape)
        self._params = params

    @property
    def params(self) -> Any:
        """The parameter pytree. With ``_do_init=False`` (HF's way of keeping params outside the model) it does not
        exist: reading or setting it raises ValueError, and every call takes ``params=`` instead."""
        if not self._is_initialized:
            raise ValueError(NO_PARAMS)
        return self._params

    @params.setter
    def params(self, value: Any) -> None:
        if not self._is_initialized:
            raise ValueError(NO_PARAMS)
        self._params = value

    def _params_or(self, params: Any) -> Any:
        """``params`` when given, else the model's own (the ValueError of :attr:`params` when it keeps none)."""
        return params if params is not None else self.params

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, name_or_path: Any, **kwargs: Any):
        """Load from a directory, weights file or cached hub name, in any format; see :func:`loading.from_pretrained`.

        Keywords: config, format, dtype, param_dtype, remat, ignore_mismatched_sizes, output_loading_info,
        seed, and config overrides (e.g. ``num_labels=5``). Parameters are never randomly initialised first.
        """
        return loading.from_pretrained(cls, name_or_path, **kwargs)

    def save_pretrained(self, save_directory: Any, params: Any = None, **kwargs: Any):
        """Write ``config.json`` + ``model.safetensors`` (HF PyTorch names; ``format=`` for another)."""
        return loading.save_pretrained(self, save_directory, params, **kwargs)

    def __repr__(self) -> str:
        size = f"{self.num_parameters() / 1e6:.1f}M parameters" if self._params is not None else "no params"
        return (f"{type(self).__name__}(n_layer={self.config.n_layer}, n_embd={self.config.n_embd}, "
                f"n_head={self.config.n_head}, vocab_size={self.config.vocab_size}, {size}, "
                f"dtype={jnp.dtype(self.dtype).name}, param_dtype={jnp.dtype(self.param_dtype).name}, remat={self.remat})")

    def enable_gradient_checkpointing(self) -> None:
        """Rebuild the module with ``nn.remat`` blocks (HF's name for ``remat=True``); params are unchanged."""
        self.remat = True
        self.module = self.module_class(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype, remat=True)

    # ------------------------------------------------------------------ parameters
    def _dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, Array]:
        return {"input_ids": jnp.zeros(input_shape, jnp.int32), "attention_mask": jnp.ones(input_shape, jnp.int32)}

    def init_weights(self, rng: Array | int, input_shape: tuple[int, ...] = (1, 1)) -> dict:
        """Random parameters as HF initialises them: normal(0, initializer_range) kernels and embeddings,
        zero biases, unit layer-norm scales. Drawn on the host from ``rng`` (a PRNG key or an int seed),
        so no XLA program is compiled. ``self.module.init`` gives the Linen initialisers' own draw.
        """
        if isinstance(rng, int):
            seed = rng
        else:
            seed = int(np.asarray(jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng).ravel()[-1])
        return loading.initial_params(self.params_shape_tree(input_shape), self.config, seed=seed, param_dtype=self.param_dtype)

    def params_shape_tree(self, input_shape: tuple[int, ...] | None = None) -> dict:
        """``jax.ShapeDtypeStruct`` of every parameter, computed without allocating any."""
        shape = self._input_shape if input_shape is None else tuple(input_shape)
        abstract = jax.eval_shape(lambda: self.module.init(jax.random.PRNGKey(0), **self._dummy_inputs(shape)))
        return nn.meta.unbox(abstract["params"])

    def logical_axes(self) -> dict:
        """``PartitionSpec`` of logical axis names for every parameter (the path regexes of :mod:`gpt2_multi.flax.sharding`)."""
        return param_logical_axes(self.params_shape_tree())

    def num_parameters(self, params: Any = None) -> int:
        return int(sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(self._params_or(params))))

    def _cast(self, params: Any, dtype: Dtype, mask: Any = None) -> Any:
        def cast(x, m=True):
            return x.astype(dtype) if m and jnp.issubdtype(x.dtype, jnp.floating) else x

        params = self._params_or(params)
        if mask is None:
            return jax.tree_util.tree_map(cast, params)
        return jax.tree_util.tree_map(cast, params, mask)

    def to_bf16(self, params: Any = None, mask: Any = None) -> Any:
        """Return ``params`` (default ``self.params``) with floating leaves cast to bfloat16 (``mask`` selects leaves)."""
        return self._cast(params, jnp.bfloat16, mask)

    def to_fp16(self, params: Any = None, mask: Any = None) -> Any:
        return self._cast(params, jnp.float16, mask)

    def to_fp32(self, params: Any = None, mask: Any = None) -> Any:
        return self._cast(params, jnp.float32, mask)

    def lm_module(self) -> nn.Module:
        """The body and LM projection as one module (what ``generate``'s compiled loop applies; for DoubleHeads the
        LM part of its params), in this model's dtypes."""
        return FlaxGPT2LMHeadModule(self.config, self.dtype, self.param_dtype)

    # ------------------------------------------------------------------ cache
    def init_cache(self, batch_size: int, max_length: int) -> dict:
        """A zero ``cache`` collection for ``batch_size`` rows and ``max_length`` positions.

        Per layer: ``cached_key`` / ``cached_value`` (B, max_length, H, D) in ``dtype`` and ``cache_index`` ().
        No parameter is initialised (shapes come from ``jax.eval_shape``).
        """
        if not isinstance(batch_size, int) or batch_size < 1 or not isinstance(max_length, int) or max_length < 1:
            raise InputError(f"init_cache needs a positive batch_size and max_length, got {batch_size!r}, {max_length!r}")
        validation.check_cache_room(max_length, self.config.n_positions)
        key = (self.config.to_json_string(use_diff=False), jnp.dtype(self.dtype).name, jnp.dtype(self.param_dtype).name,
               batch_size, max_length)
        if key not in _CACHE_SHAPES:  # tracing the init costs ~0.1 s: once per config and shape
            body = FlaxGPT2Module(self.config, self.dtype, self.param_dtype)
            ids = jnp.zeros((batch_size, max_length), jnp.int32)
            _CACHE_SHAPES[key] = jax.eval_shape(lambda: body.init(jax.random.PRNGKey(0), ids, init_cache=True))["cache"]
        cache = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), _CACHE_SHAPES[key])
        return cache if self.architecture == "GPT2Model" else {self.base_model_prefix: cache}

    # ------------------------------------------------------------------ call
    def _jitted_apply(self, train: bool, output_attentions: bool, output_hidden_states: bool, has_cache: bool,
                      static: tuple[tuple[str, int], ...] = ()) -> Callable:
        """The jitted forward for one static setting, shared by every model with the same module and config.

        Models loaded twice (or from two formats) reuse the same compiled code instead of recompiling.
        ``static``: (name, int) head inputs that shape the program (``logits_to_keep``), passed to the module as
        Python values and part of the key.
        """
        module_key = (type(self.module), self.config.to_json_string(use_diff=False), jnp.dtype(self.dtype).name,
                      jnp.dtype(self.param_dtype).name, self.remat)
        key = (train, output_attentions, output_hidden_states, has_cache) + ((static,) if static else ())
        self._jitted_keys.add(key)
        cache_key = (module_key, key)
        if cache_key not in _JIT_CACHE:
            module = self.module

            def apply(params, inputs, cache, dropout_rng):
                variables = {"params": params}
                if has_cache:
                    variables["cache"] = cache
                rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
                result = module.apply(variables, **inputs, **dict(static), deterministic=not train,
                                      output_attentions=output_attentions,
                                      output_hidden_states=output_hidden_states, return_dict=True, rngs=rngs,
                                      mutable=["cache"] if has_cache else False)
                if has_cache:
                    out, mutated = result
                    return out, mutated["cache"]
                return result, None

            # setdefault: models run on threads (the conformance runner) share one jitted function per key
            return _JIT_CACHE.setdefault(cache_key, jax.jit(apply))
        return _JIT_CACHE[cache_key]

    def __call__(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        params: Any = None,
        past_key_values: dict | None = None,
        dropout_rng: Array | None = None,
        train: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        token_type_ids: Any = None,
        head_mask: Any = None,
        inputs_embeds: Any = None,
        **head_inputs: Any,
    ):
        cfg = self.config
        unknown = set(head_inputs) - set(self.head_inputs) - set(self.encoder_inputs)
        if unknown:
            hint = (" (Flax models cache through past_key_values=model.init_cache(batch, max_length), as HF's do)"
                    if "use_cache" in unknown else "")
            names = ", ".join(repr(name) for name in sorted(unknown))
            what = "an unexpected keyword argument" if len(unknown) == 1 else "unexpected keyword arguments"
            raise TypeError(f"{type(self).__name__}.__call__() got {what} {names} "
                            f"(its head inputs are {', '.join(self.head_inputs) or 'none'}){hint}")
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = cfg.use_return_dict if return_dict is None else return_dict
        params = self._params_or(params)
        if params is None:
            raise ValueError("this model has no params: pass params=... or create it with _do_init=True / from_pretrained")
        if train and dropout_rng is None:
            raise InputError("train=True applies dropout and needs dropout_rng=jax.random.PRNGKey(...)")

        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                  "token_type_ids": token_type_ids, "head_mask": head_mask, "inputs_embeds": inputs_embeds, **head_inputs}
        has_cache = past_key_values is not None
        if has_cache and not isinstance(past_key_values, dict):
            raise InputError("past_key_values must be the cache dict from init_cache (or a previous call's past_key_values)")
        inputs = self._validate(inputs, past_key_values)
        if not has_cache:
            inputs = _fill_mask_and_positions(inputs)
        inputs = {k: v for k, v in inputs.items() if v is not None}
        # a Python int left by the head's checks (logits_to_keep) shapes the program: static, part of its key
        static = tuple((k, inputs.pop(k)) for k in [k for k, v in inputs.items() if isinstance(v, int)])

        fn = self._jitted_apply(bool(train), bool(output_attentions), bool(output_hidden_states), has_cache, static)
        out, new_cache = fn(params, inputs, past_key_values, dropout_rng)
        if has_cache:
            names = [f.name for f in dataclasses.fields(out)]
            if "past_key_values" in names:  # rebuilt so that the tuple order is HF's (past after the logits)
                out = type(out)(**{n: getattr(out, n) for n in names if n != "past_key_values"}, past_key_values=new_cache)
            else:  # heads whose HF output has no past field (token classification, QA) append it
                out["past_key_values"] = new_cache
        if not return_dict:
            return out.to_tuple()
        return out

    # ------------------------------------------------------------------ validation
    def _validate(self, inputs: dict[str, Any], cache: dict | None) -> dict[str, Any]:
        """Check concrete inputs (shapes and value ranges) and convert them to jnp arrays of the right dtype."""
        cfg = self.config
        validation.check_exactly_one(inputs["input_ids"], inputs["inputs_embeds"])
        out: dict[str, Any] = {}
        for name, value in inputs.items():
            if value is None:
                out[name] = None
            elif isinstance(value, jax.core.Tracer):
                out[name] = value
            elif name in _INT_INPUTS or (name == "labels" and np.issubdtype(np.asarray(value).dtype, np.integer)):
                arr = np.asarray(value)
                if arr.size:
                    validation.check_integer_ids(name, np.issubdtype(arr.dtype, np.integer), arr.dtype)
                out[name] = arr.astype(np.int32)
            else:
                out[name] = np.asarray(value)

        ids, embeds = out["input_ids"], out["inputs_embeds"]
        if ids is not None:
            input_shape = tuple(ids.shape)
            validation.check_input_rank(input_shape)
            if _is_concrete(inputs["input_ids"]):
                validation.check_input_ids(inputs["input_ids"], cfg.vocab_size)
        else:
            validation.check_embeds_shape(tuple(embeds.shape), cfg.n_embd)
            input_shape = tuple(embeds.shape[:-1])
            if not isinstance(embeds, jax.core.Tracer):
                out["inputs_embeds"] = embeds.astype(np.float32) if embeds.dtype == np.float64 else embeds
        t = input_shape[-1]
        lead = input_shape[:-1]

        past_length, max_length = 0, None
        if cache is not None:
            body = cache if self.architecture == "GPT2Model" else cache.get(self.base_model_prefix, {})
            layers = body.get("h", {}) if isinstance(body, dict) else {}
            if layers and all(str(k).isdigit() for k in layers):
                validation.check_cache_layers(len(layers), cfg.n_layer)
            if sorted(layers, key=str) != sorted((str(i) for i in range(cfg.n_layer)), key=str):
                raise InputError(f"past_key_values does not fit this {type(self).__name__} ({cfg.n_layer} layers"
                                 + ("" if self.architecture == "GPT2Model" else ", under 'transformer'")
                                 + "); pass the dict returned by this model's init_cache or a previous call")
            index = _first_cache_index(cache)
            max_length = _cache_max_length(cache)
            past_length = int(np.asarray(index)) if _is_concrete(index) else 0
            if inputs["position_ids"] is None:
                raise InputError("position_ids are required with past_key_values: pass the absolute positions of the new "
                                 f"tokens, e.g. {past_length} + arange({t})")
            if past_length + t > max_length:
                raise InputError(f"the cache holds {past_length} of max_length={max_length} positions and cannot take {t} "
                                 f"more; create it with init_cache(batch_size, max_length>={past_length + t})")
            validation.check_cache_shape(0, "key", tuple(_cache_leaf(cache).shape),
                                         (int(np.prod(lead)), max_length, cfg.n_head, cfg.head_dim),
                                         "(batch, max_length, n_head, head_dim), as init_cache made it")
        validation.check_sequence_length(past_length, t, cfg.n_positions)

        mask = out["attention_mask"]
        if mask is not None:
            s = max_length if cache is not None else t
            if tuple(mask.shape) != (*lead, s):
                if cache is not None:
                    validation.check_static_cache_mask(mask.shape, (*lead, s))
                if len(lead) == 1:
                    validation.check_attention_mask(mask.shape, lead[0], 0, t)
                validation.check_same_shape("attention_mask", mask.shape, (*lead, s), "the input's shape")
        for name in ("token_type_ids", "position_ids"):
            value = out[name]
            if value is None:
                continue
            validation.check_token_shape(name, value.shape, input_shape)
        if _is_concrete(inputs["position_ids"]):
            validation.check_position_ids(out["position_ids"], cfg.n_positions)
        if _is_concrete(inputs["token_type_ids"]):
            validation.check_input_ids(out["token_type_ids"], cfg.vocab_size, name="token_type_ids")
        if out["head_mask"] is not None:
            validation.check_head_mask(out["head_mask"].shape, cfg.n_layer, cfg.n_head)
        self._validate_encoder(out, inputs, lead)
        self._validate_head(out, inputs, input_shape)
        # Device arrays stay on their devices (a sharded batch keeps its sharding); only the dtype is fixed.
        for name, value in inputs.items():
            if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer) and out[name] is not None:
                out[name] = value if value.dtype == out[name].dtype else value.astype(out[name].dtype)
        return out

    def _validate_head(self, out: dict[str, Any], raw: dict[str, Any], input_shape: tuple[int, ...]) -> None:
        """Head-specific checks (labels ranges and shapes); the base model has none."""

    def _validate_encoder(self, out: dict[str, Any], raw: dict[str, Any], lead: tuple[int, ...]) -> None:
        """encoder_hidden_states (B, S_enc, E) need cross-attention layers; encoder_attention_mask is (B, S_enc)."""
        enc = out.get("encoder_hidden_states")
        if enc is None:
            if "encoder_attention_mask" in out:
                out["encoder_attention_mask"] = None  # HF ignores the mask without the states
            return
        validation.check_cross_attention(enc, self.config.add_cross_attention)
        batch = int(np.prod(lead))
        if enc.ndim != 3 or enc.shape[0] != batch or enc.shape[-1] != self.config.n_embd:
            raise InputError(f"encoder_hidden_states has shape {tuple(enc.shape)} but must be ({batch}, encoder_length, "
                             f"{self.config.n_embd}) (batch, encoder_length, n_embd)")
        if not isinstance(enc, jax.core.Tracer) and enc.dtype == np.float64:
            out["encoder_hidden_states"] = enc.astype(np.float32)
        mask = out.get("encoder_attention_mask")
        if mask is not None:
            validation.check_same_shape("encoder_attention_mask", mask.shape, enc.shape[:2], "the encoder states' (batch, encoder_length)")


def _first_cache_index(cache: dict) -> Any:
    leaves = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(cache) if str(path[-1]).find("cache_index") >= 0]
    if not leaves:
        raise InputError("past_key_values has no cache_index: pass the dict returned by init_cache")
    return leaves[0]


def _cache_leaf(cache: dict) -> Any:
    leaves = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(cache) if str(path[-1]).find("cached_key") >= 0]
    if not leaves:
        raise InputError("past_key_values has no cached_key: pass the dict returned by init_cache")
    return leaves[0]


def _cache_max_length(cache: dict) -> int:
    return int(_cache_leaf(cache).shape[1])


class FlaxGPT2Module(nn.Module):
    """The GPT-2 body (HF's ``GPT2Model``): embeddings, blocks, final layer norm.

    Inputs: ``input_ids`` (..., T) int or ``inputs_embeds`` (..., T, E); leading dims are flattened
    (the double-heads model passes (B, C, T)) and restored on the outputs. ``attention_mask`` (..., S)
    of 1/0 where S is T, or max_length with a cache. ``position_ids`` (..., T) default to
    ``cache_index + arange(T)``. ``token_type_ids`` (..., T) are embedded with ``wte``. ``head_mask``
    (H,) or (n_layer, H). ``encoder_hidden_states`` (B, S_enc, E) and ``encoder_attention_mask`` (B, S_enc)
    feed the cross-attention layers (``config.add_cross_attention``; keywords, after ``return_dict``).
    """

    config: GPT2Config
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: bool = False

    def setup(self) -> None:
        cfg = self.config
        self.wte = nn.Embed(cfg.vocab_size, cfg.n_embd, embedding_init=_init(cfg, "embedding"),
                            dtype=self.dtype, param_dtype=self.param_dtype)
        self.wpe = nn.Embed(cfg.n_positions, cfg.n_embd, embedding_init=_init(cfg, "embedding"),
                            dtype=self.dtype, param_dtype=self.param_dtype)
        self.dropout = nn.Dropout(rate=cfg.embd_pdrop)
        self.h = FlaxGPT2BlockCollection(cfg, self.dtype, self.param_dtype, self.remat)
        self.ln_f = _layer_norm(cfg, "ln_f", self.dtype, self.param_dtype)

    def attend(self, hidden_states: Array) -> Array:
        """Tied LM logits: ``hidden_states @ wte.T``, (..., E) -> (..., V)."""
        return self.wte.attend(hidden_states)

    def _cache_index(self) -> Array | None:
        cache = self.variables.get("cache")
        if not cache:
            return None
        return cache["h"]["0"]["attn"]["cache_index"]

    def __call__(
        self,
        input_ids: Array | None = None,
        attention_mask: Array | None = None,
        position_ids: Array | None = None,
        token_type_ids: Array | None = None,
        head_mask: Array | None = None,
        inputs_embeds: Array | None = None,
        deterministic: bool = True,
        init_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        encoder_hidden_states: Array | None = None,
        encoder_attention_mask: Array | None = None,
    ):
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids and inputs_embeds")
        validation.check_cross_attention(encoder_hidden_states, cfg.add_cross_attention)
        input_shape = tuple(input_ids.shape) if input_ids is not None else tuple(inputs_embeds.shape[:-1])
        t = input_shape[-1]
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids.reshape(-1, t).astype("i4"))
        else:
            inputs_embeds = inputs_embeds.reshape(-1, t, cfg.n_embd).astype(self.dtype)
        b = inputs_embeds.shape[0]

        if position_ids is None:
            start = self._cache_index() if not init_cache else None
            start = 0 if start is None else start
            position_ids = start + jnp.arange(t, dtype=jnp.int32)[None, :]
        position_ids = position_ids.reshape(-1, t)
        hidden_states = inputs_embeds + self.wpe(position_ids.astype("i4"))
        if token_type_ids is not None:
            hidden_states = hidden_states + self.wte(token_type_ids.reshape(-1, t).astype("i4"))
        hidden_states = self.dropout(hidden_states, deterministic=deterministic)

        if attention_mask is not None:
            attention_mask = attention_mask.reshape(b, -1)
        if head_mask is not None:
            head_mask = jnp.broadcast_to(jnp.asarray(head_mask), (cfg.n_layer, cfg.n_head))

        if encoder_hidden_states is not None:
            encoder_hidden_states = jnp.asarray(encoder_hidden_states).astype(self.dtype)
        else:
            encoder_attention_mask = None  # HF ignores an encoder mask without encoder states
        hidden_states, all_hidden, all_attn, all_cross = self.h(
            hidden_states, attention_mask, head_mask, deterministic, init_cache, output_attentions, output_hidden_states,
            encoder_hidden_states, encoder_attention_mask,
        )
        hidden_states = self.ln_f(hidden_states)
        output_shape = (*input_shape, cfg.n_embd)
        hidden_states = hidden_states.reshape(output_shape)
        if output_hidden_states:  # HF PyTorch's layout: the blocks' inputs flat (N, T, E), only the output reshaped
            all_hidden = (*all_hidden, hidden_states)

        out = FlaxBaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            hidden_states=all_hidden if output_hidden_states else None,
            attentions=all_attn if output_attentions else None,
            cross_attentions=all_cross if output_attentions and encoder_hidden_states is not None else None,
        )
        return out if return_dict else out.to_tuple()

    def decode_step(self, input_ids: Array, position_ids: Array, attention_mask: Array, kv: Array,
                    index: Array) -> tuple[Array, Array]:
        """The fast path of :meth:`__call__` with a cache (the compiled ``generate`` loop), on the same submodules.

        ``input_ids`` / ``position_ids`` (N, T): tokens whose keys/values go to positions ``index .. index + T - 1``
        of ``kv`` (n_layer, 2, N, H, L, D); ``attention_mask`` (N, L) of 1 (token) / 0 (padding) over the whole
        cache. The mask is built once for all layers. No dropout. Returns the final hidden states (N, T, E)
        (after ``ln_f``) and the updated ``kv``.
        """
        hidden_states = self.wte(input_ids.astype("i4")) + self.wpe(position_ids.astype("i4"))
        bias = attention_bias(index, input_ids.shape[1], kv.shape[4], attention_mask)
        hidden_states, kv = self.h.decode_step(hidden_states, kv, bias, index)
        return self.ln_f(hidden_states), kv


# ---------------------------------------------------------------------------------- losses
def _cross_entropy(logits: Array, labels: Array, ignore_index: int | None = -100) -> Array:
    """Mean cross-entropy of logits (..., C) against class ids (...) over the entries whose label is not
    ``ignore_index`` (PyTorch's semantics), in float32. With every entry ignored the mean is NaN, as in PyTorch."""
    logits = logits.reshape(-1, logits.shape[-1]).astype(jnp.float32)
    labels = labels.reshape(-1).astype(jnp.int32)
    valid = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe = jnp.where(valid, labels, 0)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, safe[:, None], axis=-1)[:, 0]
    return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.sum(valid)


def _causal_lm_loss(logits: Array, labels: Array) -> Array:
    """Next-token loss: logits (..., T, V) predict labels (..., T) shifted by one; -100 is ignored."""
    return _cross_entropy(logits[..., :-1, :], labels[..., 1:])


def _problem_type(config: GPT2Config, labels_dtype: Any) -> str:
    """``config.problem_type``, else inferred for this call by HF's rule (the config is left as it is)."""
    return infer_problem_type(config.problem_type, config.num_labels, bool(jnp.issubdtype(labels_dtype, jnp.integer)))


def _classification_loss(logits: Array, labels: Array, num_labels: int, problem_type: str) -> Array:
    """Sequence classification, pooled logits (B, num_labels), by HF's three problem types: mean squared error
    (regression), cross-entropy (single-label), binary cross-entropy with logits (multi-label, the stable form)."""
    if problem_type == "single_label_classification":
        return _cross_entropy(logits, labels)
    p, y = logits.astype(jnp.float32), labels.astype(jnp.float32)
    if problem_type == "regression":
        if num_labels == 1:
            p, y = p.reshape(-1), y.reshape(-1)
        return jnp.mean((p - y) ** 2)
    return jnp.mean(jnp.maximum(p, 0) - p * y + jnp.log1p(jnp.exp(-jnp.abs(p))))


def _question_answering_loss(start_logits: Array, end_logits: Array, start_positions: Array, end_positions: Array) -> Array:
    """Span loss over (B, T) logits: positions clamped to [0, T], T ignored (HF's rule); the mean of start and end."""
    t = start_logits.shape[-1]
    start = jnp.clip(start_positions.reshape(-1), 0, t)
    end = jnp.clip(end_positions.reshape(-1), 0, t)
    return (_cross_entropy(start_logits, start, ignore_index=t) + _cross_entropy(end_logits, end, ignore_index=t)) / 2


# ---------------------------------------------------------------------------------- heads
def _lm_logits(module: nn.Module, hidden_states: Array) -> Array:
    if module.config.tie_word_embeddings:
        return module.transformer.attend(hidden_states)
    return module.lm_head(hidden_states)


class FlaxGPT2HeadModule(nn.Module):
    """What every head module shares: the four fields and the body, ``transformer``; a head adds its own
    layers in :meth:`setup_head`."""

    config: GPT2Config
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: bool = False

    def setup(self) -> None:
        self.transformer = FlaxGPT2Module(self.config, self.dtype, self.param_dtype, self.remat)
        self.setup_head()

    def setup_head(self) -> None:
        pass


class FlaxGPT2LMHeadModule(FlaxGPT2HeadModule):
    """Body + LM head (tied to ``wte`` when ``tie_word_embeddings``). logits (B, T, V); loss with ``labels`` (B, T).

    ``logits_to_keep``: a Python int ``k`` applies the head to the last ``k`` positions only (0: all), an int
    array (K,) to those positions (negative ones from the end): logits (B, K, V).
    """

    def setup_head(self) -> None:
        if not self.config.tie_word_embeddings:
            self.lm_head = _dense(self.config, self.config.vocab_size, "lm_head", self.dtype, self.param_dtype, use_bias=False)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, token_type_ids=None, head_mask=None,
                 inputs_embeds=None, labels=None, deterministic=True, init_cache=False, output_attentions=False,
                 output_hidden_states=False, return_dict=True, encoder_hidden_states=None, encoder_attention_mask=None,
                 logits_to_keep=0):
        body = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, head_mask, inputs_embeds,
                                deterministic, init_cache, output_attentions, output_hidden_states, True,
                                encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask)
        hidden = body.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden = hidden[..., -logits_to_keep:, :] if logits_to_keep else hidden
        else:
            hidden = hidden[..., logits_to_keep, :]
        logits = _lm_logits(self, hidden)
        loss = _causal_lm_loss(logits, labels) if labels is not None else None
        out = FlaxCausalLMOutputWithCrossAttentions(loss=loss, logits=logits, hidden_states=body.hidden_states,
                                                    attentions=body.attentions, cross_attentions=body.cross_attentions)
        return out if return_dict else out.to_tuple()

    def decode_step(self, input_ids: Array, position_ids: Array, attention_mask: Array, kv: Array,
                    index: Array) -> tuple[Array, Array]:
        """The fast path (:meth:`FlaxGPT2Module.decode_step`) and the LM head on the last position: returns the
        next-token logits (N, V) and the updated ``kv`` (n_layer, 2, N, H, L, D)."""
        hidden_states, kv = self.transformer.decode_step(input_ids, position_ids, attention_mask, kv, index)
        return _lm_logits(self, hidden_states[:, -1]), kv


class FlaxGPT2SequenceSummary(nn.Module):
    """HF's SequenceSummary: pool the hidden states by ``summary_type``, then dropout, projection, activation.

    ``cls_index`` pools (B, C, T, E) to (B, C, E) at ``cls_index`` (B, C) (None: the last token). As HF does
    (its quirk, kept), ``last`` / ``first`` / ``mean`` index dim 1, the choices axis: (B, C, T, E) -> (B, T, E).
    """

    config: GPT2Config
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        if cfg.summary_type == "attn":
            raise NotImplementedError("summary_type='attn' is not implemented (nor is it in HF transformers)")
        if cfg.summary_use_proj:
            n = 1 if cfg.summary_proj_to_labels else cfg.n_embd  # HF forces num_labels = 1 for the double heads
            self.summary = _dense(cfg, n, "summary", self.dtype, self.param_dtype)
        act = cfg.summary_activation
        self.activation = (lambda x: x) if not act else (jnp.tanh if act == "tanh" else get_activation(act))
        self.first_dropout = nn.Dropout(rate=cfg.summary_first_dropout)
        self.last_dropout = nn.Dropout(rate=float(getattr(cfg, "summary_last_dropout", 0.0) or 0.0))

    def __call__(self, hidden_states: Array, cls_index: Array | None = None, deterministic: bool = True) -> Array:
        kind = self.config.summary_type
        if kind == "last":  # dim 1, as HF: the choices axis of (B, C, T, E)
            pooled = hidden_states[:, -1]
        elif kind == "first":
            pooled = hidden_states[:, 0]
        elif kind == "mean":
            pooled = hidden_states.mean(axis=1)
        else:  # cls_index
            if cls_index is None:
                cls_index = jnp.full(hidden_states.shape[:-2], hidden_states.shape[-2] - 1, dtype=jnp.int32)
            idx = cls_index.astype(jnp.int32)[..., None, None]
            pooled = jnp.take_along_axis(hidden_states, idx, axis=-2)[..., 0, :]
        pooled = self.first_dropout(pooled, deterministic=deterministic)
        if self.config.summary_use_proj:
            pooled = self.summary(pooled)
        pooled = self.activation(pooled)
        return self.last_dropout(pooled, deterministic=deterministic)


class FlaxGPT2DoubleHeadsModule(FlaxGPT2HeadModule):
    """Body + LM head + multiple-choice head. Inputs (B, C, T); logits (B, C, T, V), mc_logits (B, C)
    (``summary_type`` cls_index; see :func:`_mc_logits_shape` for the others, HF's shapes).

    ``mc_token_ids`` (B, C) picks the token each choice is classified from (default the last);
    ``labels`` (B, C, T) give the LM loss (``loss``), ``mc_labels`` (B,) the choice loss (``mc_loss``).
    """

    def setup_head(self) -> None:
        if not self.config.tie_word_embeddings:
            self.lm_head = _dense(self.config, self.config.vocab_size, "lm_head", self.dtype, self.param_dtype, use_bias=False)
        self.multiple_choice_head = FlaxGPT2SequenceSummary(self.config, self.dtype, self.param_dtype)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, token_type_ids=None, head_mask=None,
                 inputs_embeds=None, mc_token_ids=None, labels=None, mc_labels=None, deterministic=True,
                 init_cache=False, output_attentions=False, output_hidden_states=False, return_dict=True):
        body = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, head_mask, inputs_embeds,
                                deterministic, init_cache, output_attentions, output_hidden_states, True)
        hidden = body.last_hidden_state
        logits = _lm_logits(self, hidden)
        mc_logits = self.multiple_choice_head(hidden, mc_token_ids, deterministic)
        if mc_logits.shape[-1] == 1:
            mc_logits = mc_logits[..., 0]
        loss = _causal_lm_loss(logits, labels) if labels is not None else None
        mc_loss = _cross_entropy(mc_logits, mc_labels) if mc_labels is not None else None
        out = FlaxGPT2DoubleHeadsModelOutput(loss=loss, mc_loss=mc_loss, logits=logits, mc_logits=mc_logits,
                                             hidden_states=body.hidden_states, attentions=body.attentions)
        return out if return_dict else out.to_tuple()


class FlaxGPT2ForSequenceClassificationModule(FlaxGPT2HeadModule):
    """Body + ``score`` (no bias), pooled at each row's last non-pad token. logits (B, num_labels); loss with labels (B,)."""

    def setup_head(self) -> None:
        self.score = _dense(self.config, self.config.num_labels, "score", self.dtype, self.param_dtype, use_bias=False)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, token_type_ids=None, head_mask=None,
                 inputs_embeds=None, labels=None, deterministic=True, init_cache=False, output_attentions=False,
                 output_hidden_states=False, return_dict=True):
        cfg = self.config
        body = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, head_mask, inputs_embeds,
                                deterministic, init_cache, output_attentions, output_hidden_states, True)
        logits = self.score(body.last_hidden_state)  # (B, T, num_labels)
        b, t = logits.shape[:2]
        validation.check_pad_token_for_batch(b, cfg.pad_token_id)
        if cfg.pad_token_id is None or input_ids is None:
            last = jnp.full((b,), t - 1, dtype=jnp.int32)  # HF: the last position when padding cannot be detected
        else:
            # the rightmost token that is not padding (works for left and right padding)
            not_pad = (input_ids != cfg.pad_token_id).astype(jnp.int32)
            last = jnp.argmax(jnp.arange(t, dtype=jnp.int32)[None, :] * not_pad, axis=-1)
        pooled = logits[jnp.arange(b), last]
        loss = None
        if labels is not None:
            loss = _classification_loss(pooled, labels, cfg.num_labels, _problem_type(cfg, labels.dtype))
        out = FlaxSequenceClassifierOutputWithPast(loss=loss, logits=pooled, hidden_states=body.hidden_states,
                                                   attentions=body.attentions)
        return out if return_dict else out.to_tuple()


def _classifier_dropout(config: GPT2Config) -> float:
    for name in ("classifier_dropout", "hidden_dropout"):
        value = getattr(config, name, None)
        if value is not None:
            return float(value)
    return 0.1


class FlaxGPT2ForTokenClassificationModule(FlaxGPT2HeadModule):
    """Body + dropout + ``classifier``. logits (B, T, num_labels); loss with labels (B, T) (-100 ignored)."""

    def setup_head(self) -> None:
        self.dropout = nn.Dropout(rate=_classifier_dropout(self.config))
        self.classifier = _dense(self.config, self.config.num_labels, "classifier", self.dtype, self.param_dtype)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, token_type_ids=None, head_mask=None,
                 inputs_embeds=None, labels=None, deterministic=True, init_cache=False, output_attentions=False,
                 output_hidden_states=False, return_dict=True):
        body = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, head_mask, inputs_embeds,
                                deterministic, init_cache, output_attentions, output_hidden_states, True)
        logits = self.classifier(self.dropout(body.last_hidden_state, deterministic=deterministic))
        loss = _cross_entropy(logits, labels) if labels is not None else None
        out = FlaxTokenClassifierOutput(loss=loss, logits=logits, hidden_states=body.hidden_states, attentions=body.attentions)
        return out if return_dict else out.to_tuple()


class FlaxGPT2ForQuestionAnsweringModule(FlaxGPT2HeadModule):
    """Body + ``qa_outputs`` (E -> 2). start_logits / end_logits (B, T); loss with start/end_positions (B,).

    As in HF, positions are clamped to [0, T] and T is ignored; the loss is the mean of the two.
    """

    def setup_head(self) -> None:
        self.qa_outputs = _dense(self.config, 2, "qa_outputs", self.dtype, self.param_dtype)

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, token_type_ids=None, head_mask=None,
                 inputs_embeds=None, start_positions=None, end_positions=None, deterministic=True, init_cache=False,
                 output_attentions=False, output_hidden_states=False, return_dict=True):
        body = self.transformer(input_ids, attention_mask, position_ids, token_type_ids, head_mask, inputs_embeds,
                                deterministic, init_cache, output_attentions, output_hidden_states, True)
        logits = self.qa_outputs(body.last_hidden_state)
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = _question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        out = FlaxQuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                               hidden_states=body.hidden_states, attentions=body.attentions)
        return out if return_dict else out.to_tuple()


# ---------------------------------------------------------------------------------- wrappers
def _check_labels_shape(out: dict[str, Any], name: str, expected: tuple[int, ...], what: str) -> None:
    value = out.get(name)
    if value is not None:
        validation.check_same_shape(name, value.shape, expected, what)


class FlaxGPT2Model(FlaxGPT2PreTrainedModel):
    """The bare GPT-2 body. Output: ``last_hidden_state`` (B, T, E), optional hidden_states / attentions / past."""

    module_class = FlaxGPT2Module
    architecture = "GPT2Model"
    encoder_inputs = ("encoder_hidden_states", "encoder_attention_mask")


class FlaxGPT2LMHeadModel(FlaxGenerationMixin, FlaxGPT2PreTrainedModel):
    """GPT-2 with the language-model head. ``labels`` (B, T) (-100 ignored) give ``loss``; logits (B, T, V).

    ``logits_to_keep=`` (HF's PyTorch argument; HF's Flax class lacks it): an int ``k`` projects only the last ``k``
    positions (0, the default, or ``k >= T``: all), a 1-D int index array (K,) those positions: logits (B, K, V).
    The int is static (one compiled program per value); the array may be traced.
    """

    module_class = FlaxGPT2LMHeadModule
    architecture = "GPT2LMHeadModel"
    head_inputs = ("labels", "logits_to_keep")
    encoder_inputs = ("encoder_hidden_states", "encoder_attention_mask")

    def _validate_head(self, out, raw, input_shape):
        _check_labels_shape(out, "labels", input_shape, "one label per input token")
        if _is_concrete(raw.get("labels")):
            validation.check_labels(out["labels"], self.config.vocab_size)
        keep = raw.get("logits_to_keep")
        if keep is not None:  # an int stays a Python int (static); 0 or >= T keeps all, the default program
            t = input_shape[-1]
            count = isinstance(keep, (int, np.integer))
            value = np.asarray(keep) if not count and _is_concrete(keep) and hasattr(keep, "shape") else keep
            validation.check_logits_to_keep(value, t, out.get("labels") is not None)
            if count:
                out["logits_to_keep"] = int(keep) if 0 < keep < t else None
            else:
                out["logits_to_keep"] = value.astype(np.int32) if isinstance(value, np.ndarray) else keep.astype(jnp.int32)


def _mc_logits_shape(config: GPT2Config, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """HF's mc_logits shape for inputs (B, C, T): cls_index pools each choice, (B, C); last / first / mean pool
    dim 1 (HF's quirk), (B, T); then the projection's width, squeezed when it is 1 (the usual ``num_labels=1``)."""
    if config.summary_type == "cls_index":
        pooled = tuple(input_shape[:-1])
    else:
        pooled = (input_shape[0], *input_shape[2:])
    width = layout.multiple_choice_summary_size(config) if config.summary_use_proj else config.n_embd
    return pooled if width == 1 else (*pooled, width)


class FlaxGPT2DoubleHeadsModel(FlaxGenerationMixin, FlaxGPT2PreTrainedModel):
    """GPT-2 with LM and multiple-choice heads; inputs (B, C, T), ``mc_token_ids`` (B, C), ``labels``, ``mc_labels`` (B,).

    ``summary_type`` last / first / mean pool dim 1 of (B, C, T, E), the choices, exactly as HF does (logged once).
    """

    module_class = FlaxGPT2DoubleHeadsModule
    architecture = "GPT2DoubleHeadsModel"
    head_inputs = ("mc_token_ids", "labels", "mc_labels")

    def __init__(self, config: GPT2Config, *args: Any, **kwargs: Any):
        if isinstance(config, GPT2Config):
            validation.warn_summary_pooling(config)
        super().__init__(config, *args, **kwargs)

    def _dummy_inputs(self, input_shape):
        shape = tuple(input_shape) if len(input_shape) == 3 else (1, 1, *tuple(input_shape)[-1:])
        return {"input_ids": jnp.zeros(shape, jnp.int32), "mc_token_ids": jnp.zeros(shape[:-1], jnp.int32)}

    def _validate_head(self, out, raw, input_shape):
        _check_labels_shape(out, "labels", input_shape, "one label per input token")
        _check_labels_shape(out, "mc_token_ids", input_shape[:-1], "one token index per choice")
        _check_labels_shape(out, "mc_labels", input_shape[:-2], "one choice per example")
        if _is_concrete(raw.get("labels")):
            validation.check_labels(out["labels"], self.config.vocab_size)
        if _is_concrete(raw.get("mc_token_ids")):
            validation.check_labels(out["mc_token_ids"], input_shape[-1], name="mc_token_ids", ignore_index=None)
        if out.get("mc_labels") is not None and len(input_shape) >= 3:
            # HF's loss: cross-entropy of mc_logits.view(-1, K) against mc_labels.view(-1)
            mc_shape = _mc_logits_shape(self.config, input_shape)
            rows = int(np.prod(mc_shape[:-1]))
            if rows != int(np.prod(out["mc_labels"].shape)):
                raise InputError(
                    f"mc_labels has shape {tuple(out['mc_labels'].shape)} but mc_logits is {mc_shape} "
                    f"(summary_type={self.config.summary_type!r}, summary_use_proj={self.config.summary_use_proj}, "
                    f"summary_proj_to_labels={self.config.summary_proj_to_labels}): HF's loss needs one label per row "
                    f"of mc_logits.view(-1, {mc_shape[-1]}), {rows} of them")
            if _is_concrete(raw.get("mc_labels")):
                validation.check_labels(out["mc_labels"], mc_shape[-1], name="mc_labels")


class FlaxGPT2ForSequenceClassification(FlaxGPT2PreTrainedModel):
    """GPT-2 with a classification head on the last non-pad token; logits (B, num_labels); ``labels`` (B,)."""

    module_class = FlaxGPT2ForSequenceClassificationModule
    architecture = "GPT2ForSequenceClassification"
    head_inputs = ("labels",)

    def _validate_head(self, out, raw, input_shape):
        labels = out.get("labels")
        validation.check_pad_token_for_batch(input_shape[0] if len(input_shape) > 1 else 1, self.config.pad_token_id)
        if labels is None:
            return
        problem = _problem_type(self.config, labels.dtype)
        if problem == "single_label_classification":
            _check_labels_shape(out, "labels", input_shape[:1], "one class per sequence")
            if _is_concrete(raw.get("labels")):
                validation.check_labels(labels, self.config.num_labels, ignore_index=-100)
        elif problem == "multi_label_classification":
            _check_labels_shape(out, "labels", (input_shape[0], self.config.num_labels), "one 0/1 target per label")
            if not isinstance(labels, jax.core.Tracer):
                out["labels"] = labels.astype(np.float32)
        elif not isinstance(labels, jax.core.Tracer):
            out["labels"] = labels.astype(np.float32)


class FlaxGPT2ForTokenClassification(FlaxGPT2PreTrainedModel):
    """GPT-2 with a per-token classifier; logits (B, T, num_labels); ``labels`` (B, T) (-100 ignored)."""

    module_class = FlaxGPT2ForTokenClassificationModule
    architecture = "GPT2ForTokenClassification"
    head_inputs = ("labels",)

    def _validate_head(self, out, raw, input_shape):
        _check_labels_shape(out, "labels", input_shape, "one class per token")
        if _is_concrete(raw.get("labels")):
            validation.check_labels(out["labels"], self.config.num_labels)


class FlaxGPT2ForQuestionAnswering(FlaxGPT2PreTrainedModel):
    """GPT-2 with a span head; start_logits / end_logits (B, T); ``start_positions`` / ``end_positions`` (B,)."""

    module_class = FlaxGPT2ForQuestionAnsweringModule
    architecture = "GPT2ForQuestionAnswering"
    head_inputs = ("start_positions", "end_positions")

    def _validate_head(self, out, raw, input_shape):
        # HF computes the loss only when both are given (one alone is ignored); so does the module
        _check_labels_shape(out, "start_positions", input_shape[:1], "one start index per sequence")
        _check_labels_shape(out, "end_positions", input_shape[:1], "one end index per sequence")


MODEL_CLASSES: dict[str, type[FlaxGPT2PreTrainedModel]] = {
    cls.architecture: cls
    for cls in (FlaxGPT2Model, FlaxGPT2LMHeadModel, FlaxGPT2DoubleHeadsModel, FlaxGPT2ForSequenceClassification,
                FlaxGPT2ForTokenClassification, FlaxGPT2ForQuestionAnswering)
}
