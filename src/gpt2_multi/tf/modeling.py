"""GPT-2 in Keras 3 on TensorFlow: activations, Conv1D, attention, MLP, block, the body, losses and the six heads.

Shapes use B = batch, T = new tokens, P = cached tokens, S = P + T, E = n_embd,
H = n_head, D = head_dim, V = vocab_size, C = choices (multiple choice).

Variables are named like HF's TF classes (``transformer/h_._0/attn/c_attn/weight``,
``transformer/wte/embeddings``, ``ln_1/gamma``), so a variable's path maps to its
HF PyTorch name through :mod:`gpt2_multi.checkpoint.layout`. Every weight is created
by a :class:`~gpt2_multi.tf.loading.PretrainedOr` initialiser that knows its PyTorch name: inside
``from_pretrained`` it takes the checkpoint's array (no random init, no extra copy),
otherwise it draws HF's initial values.

Attention is :func:`attention_core` and the key/value cache is written by :func:`write_cache`, for the
forward and for generation's static-cache decode step alike (``gpt2_multi.tf.generation``).
HF's TF input styles (dict / list / keywords) are unpacked by :mod:`gpt2_multi.tf.inputs`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from gpt2_multi import validation
from gpt2_multi.checkpoint import layout
from gpt2_multi.config import GPT2Config, infer_problem_type
from gpt2_multi.tf import loading
from gpt2_multi.tf.activations import ACT2FN
from gpt2_multi.tf.generation import TFGenerationMixin, row_kernel
from gpt2_multi.tf.inputs import (
    CALL_ORDER,
    CALL_ORDER_CROSS,
    call_arguments,
    concrete,
    flatten_tokens,
    is_input_container,
    shape_list,
    static_shape,
    to_tensor,
    unpack_inputs,
)
from gpt2_multi.tf.outputs import (
    TFBaseModelOutputWithPastAndCrossAttentions,
    TFCausalLMOutputWithCrossAttentions,
    TFGPT2DoubleHeadsModelOutput,
    TFQuestionAnsweringModelOutput,
    TFSequenceClassifierOutputWithPast,
    TFTokenClassifierOutput,
)


def _normal(std: float) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=std)


# ---------------------------------------------------------------------------------- activations
# ACT2FN (imported above, re-exported) is gpt2_multi.tf.activations' table: one function for every name in
# gpt2_multi.activations.ACTIVATIONS. The MLP and the multiple-choice summary look their activation up in it.

# ---------------------------------------------------------------------------------- Conv1D
#: ``x (1, in)`` against ``kernel (out, in)``: both contracted on their dimension 1
_CONTRACT_LAST = xla.DotDimensionNumbers(lhs_contracting_dimensions=[1], rhs_contracting_dimensions=[1])


def row_product(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """``x (1, in) @ kernel (out, in).T`` in float32 (half-precision operands, float32 accumulation): the one
    product XLA streams from a half-precision kernel as stored."""
    return xla.dot_general(x, kernel, _CONTRACT_LAST, preferred_element_type=tf.float32)


class TFConv1D(keras.layers.Layer):
    """GPT-2's "Conv1D": a dense layer with weight ``(nx, nf)`` and bias ``(1, nf)`` (HF TF layout).

    ``(..., nx) -> (..., nf)``.
    """

    def __init__(self, nf: int, nx: int, pt_name: str, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.nf, self.nx, self.pt_name, self.initializer_range = nf, nx, pt_name, initializer_range

    def build(self, input_shape=None):
        if self.built:
            return
        self.weight = self.add_weight(
            name="weight", shape=(self.nx, self.nf),
            initializer=loading.PretrainedOr(self.pt_name + ".weight", _normal(self.initializer_range)),
        )
        self.bias = self.add_weight(name="bias", shape=(1, self.nf), initializer=loading.PretrainedOr(self.pt_name + ".bias", "zeros"))
        self.built = True

    def call(self, x):
        shape = shape_list(x)
        flat = tf.reshape(x, [-1, self.nx])
        if flat.dtype in (tf.bfloat16, tf.float16):
            # half precision: accumulated and biased in float32, rounded once (as torch.addmm and the Flax stack)
            f32 = tf.float32
            transposed = row_kernel(self) if flat.shape[0] == 1 else None
            if transposed is not None:
                out = row_product(flat, transposed)
            else:
                out = tf.matmul(tf.cast(flat, f32), tf.cast(self.weight, f32))
            flat = tf.cast(out + tf.cast(self.bias, f32), x.dtype)
        else:
            flat = tf.matmul(flat, self.weight) + self.bias
        return tf.reshape(flat, shape[:-1] + [self.nf])


def _layer_norm(config: GPT2Config, pt_name: str, name: str, dtype: Any = None) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(
        epsilon=config.layer_norm_epsilon, name=name, dtype=dtype,
        gamma_initializer=loading.PretrainedOr(pt_name + ".weight", "ones"),
        beta_initializer=loading.PretrainedOr(pt_name + ".bias", "zeros"),
    )


def _dense(units: int, pt_name: str, std: float, name: str, use_bias: bool = True, dtype: Any = None) -> keras.layers.Dense:
    """An ``nn.Linear`` head: Keras kernel ``(in, out)`` = PyTorch weight transposed (layout does it)."""
    return keras.layers.Dense(
        units, use_bias=use_bias, name=name, dtype=dtype,
        kernel_initializer=loading.PretrainedOr(pt_name + ".weight", _normal(std)),
        bias_initializer=loading.PretrainedOr(pt_name + ".bias", "zeros"),
    )


# ---------------------------------------------------------------------------------- attention
def causal_mask(query_length, key_length, offset) -> tf.Tensor:
    """``(T, S)`` bool: query ``i`` (at cache column ``offset + i``) may see key ``j`` iff ``j <= offset + i``.

    The forward has ``offset = P`` (the past's length, S = P + T); the static-cache decode step has
    ``offset`` = the column its tokens are written at, S = the cache's whole length.
    """
    return tf.range(key_length)[None, :] <= offset + tf.range(query_length)[:, None]


def additive_bias(allowed: tf.Tensor, dtype: Any) -> tf.Tensor:
    """Which keys each query may attend to (bool, or 1 / 0) -> the additive ``bias`` of :func:`attention_core`,
    same shape: 0 where allowed, the dtype's minimum where not."""
    dtype = tf.as_dtype(dtype)
    return tf.where(tf.cast(allowed, tf.bool), tf.zeros([], dtype), tf.constant(dtype.min, dtype))


def attention_core(query, key, value, bias, config: GPT2Config, layer_idx: int, *, head_mask=None, dropout=None,
                   training: bool = False, output_probs: bool = False):
    """GPT-2's attention, the one place its math is written: ``softmax(scale * q k^T + bias) v``.

    Args:
        query: ``(B, H, T, D)``; key, value: ``(B, H, S, D)``.
        bias: additive, broadcastable to ``(B, H, T, S)`` (0 = attend, the dtype's minimum = masked: causality
            and padding, see :func:`causal_mask` / :func:`additive_bias`), or None (every key).
        config: its ``scale_attn_weights`` divides the scores by ``sqrt(D)``, ``scale_attn_by_inverse_layer_idx``
            by ``layer_idx + 1``; with ``reorder_and_upcast_attn`` the scale is folded into the query and the
            product and softmax are float32 (HF's order), else the scores keep the inputs' dtype, except in half
            precision (bfloat16, float16), where they are float32 from the product to the softmax, as in
            PyTorch's fused kernel and in the other stacks: the probabilities are rounded once, to ``value``'s dtype.
        head_mask: ``(1, H, 1, 1)`` multiplies the probabilities; dropout: a Keras ``Dropout`` on them.

    Returns ``(output (B, H, T, D), probabilities (B, H, T, S) when output_probs else None)``. Masked scores
    are clamped at the dtype's minimum, so a fully masked row (left padding) stays finite.
    """
    if config.reorder_and_upcast_attn:
        scale = 1.0
        if config.scale_attn_weights:
            scale /= math.sqrt(config.head_dim)
        if config.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        scores = tf.matmul(tf.cast(query, tf.float32) * scale, tf.cast(key, tf.float32), transpose_b=True)
    else:
        if query.dtype in (tf.bfloat16, tf.float16):  # half precision: the scores in float32
            query, key = tf.cast(query, tf.float32), tf.cast(key, tf.float32)
        scores = tf.matmul(query, key, transpose_b=True)
        if config.scale_attn_weights:
            scores = scores / tf.cast(math.sqrt(config.head_dim), scores.dtype)
        if config.scale_attn_by_inverse_layer_idx:
            scores = scores / tf.cast(layer_idx + 1, scores.dtype)
    if bias is not None:
        if bias.dtype in (tf.bfloat16, tf.float16) and scores.dtype == tf.float32:
            # a half-precision mask on float32 scores: its minimum becomes float32's
            lowest = tf.constant(scores.dtype.min, scores.dtype)
            bias = tf.where(bias == bias.dtype.min, lowest, tf.cast(bias, scores.dtype))
        scores = tf.maximum(scores + tf.cast(bias, scores.dtype), scores.dtype.min)
    probs = tf.cast(tf.nn.softmax(scores, axis=-1), value.dtype)
    if dropout is not None:
        probs = dropout(probs, training=training)
    if head_mask is not None:
        probs = probs * tf.cast(head_mask, probs.dtype)
    if value.dtype in (tf.bfloat16, tf.float16):
        # half precision: TensorFlow's CPU BatchMatMul rounds partial sums; accumulated in float32 and rounded once
        # instead, as PyTorch's kernels and XLA do
        out = tf.cast(tf.matmul(tf.cast(probs, tf.float32), tf.cast(value, tf.float32)), value.dtype)
    else:
        out = tf.matmul(probs, value)
    return out, (probs if output_probs else None)


def write_cache(cache, key, value, index=None, layer: int | None = None):
    """Add this step's ``key`` / ``value`` ``(B, H, T, D)`` to a cache: the one cache write of the stack.

    * ``index`` None, HF's growing cache (the forward's ``past_key_values``): ``cache`` is the layer's past
      ``(2, B, H, P, D)`` or None; the new cache is ``(2, B, H, P + T, D)``, the past then the new entries.
    * ``index`` an int32 scalar, generation's static cache: ``cache`` is every layer's keys and values in one
      preallocated array ``(n_layer, 2, B, H, L, D)``; layer ``layer``'s entries are written in place at
      columns ``[index, index + T)`` (an explicit slice write: XLA's ``dynamic_update_slice``). All L columns
      are then attended to, the bias hiding the ones not written yet.

    Returns ``(cache, keys, values)``: the updated cache and the ``(B, H, S, D)`` keys and values to attend to.
    """
    if index is None:
        if cache is not None:
            past_key, past_value = tf.unstack(tf.cast(cache, key.dtype), num=2, axis=0)
            key = tf.concat([past_key, key], axis=-2)
            value = tf.concat([past_value, value], axis=-2)
        return tf.stack([key, value], axis=0), key, value
    update = tf.cast(tf.stack([key, value])[None], cache.dtype)
    start = tf.stack([layer, 0, 0, 0, index, 0])
    if cache.dtype in (tf.bfloat16, tf.float16):
        # written as 16-bit integers, the same bits: XLA's CPU backend runs a half-precision slice write in
        # float32, converting the whole cache there and back for every layer and step (the write is then no
        # longer in place: 2 x the cache's bytes per layer per step; measured in benchmarks/README.md, issue 15)
        bits = xla.dynamic_update_slice(tf.bitcast(cache, tf.uint16), tf.bitcast(update, tf.uint16), start)
        cache = tf.bitcast(bits, cache.dtype)
    else:
        cache = xla.dynamic_update_slice(cache, update, start)
    return cache, cache[layer, 0], cache[layer, 1]


class TFGPT2Attention(keras.layers.Layer):
    """Multi-head self-attention with a key/value cache (or, with ``is_cross_attention``, attention over
    encoder states: ``q_attn`` on ``x``, keys and values from ``c_attn`` on the encoder, no cache).

    ``call(x (B, T, E), layer_past, attention_bias (B|1, 1, T|1, S) | None, head_mask (1, H, 1, 1) | None,
    encoder_hidden_states (B, S_enc, E) | None, cache_index)`` ->
    ``(output (B, T, E), present | None, weights (B, H, T, S) | None)``.

    ``attention_bias`` is the whole mask, additive (causality included: the body builds it once for all
    layers). The cache is written by :func:`write_cache`: without ``cache_index`` ``layer_past`` is HF's
    ``(2, B, H, P, D)`` past and ``present`` ``(2, B, H, S, D)``; with it, generation's static cache
    ``(n_layer, 2, B, H, L, D)`` written at column ``cache_index`` and returned as ``present``. The math is
    :func:`attention_core`.
    """

    def __init__(self, config: GPT2Config, layer_idx: int, pt_name: str, is_cross_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.n_head, self.head_dim, self.embed_dim = config.n_head, config.head_dim, config.n_embd
        self.layer_idx = layer_idx
        self.is_cross_attention = is_cross_attention
        std = config.initializer_range
        if is_cross_attention:
            self.c_attn = TFConv1D(2 * self.embed_dim, self.embed_dim, pt_name + ".c_attn", std, name="c_attn", dtype=self.dtype_policy)
            self.q_attn = TFConv1D(self.embed_dim, self.embed_dim, pt_name + ".q_attn", std, name="q_attn", dtype=self.dtype_policy)
        else:
            self.c_attn = TFConv1D(3 * self.embed_dim, self.embed_dim, pt_name + ".c_attn", std, name="c_attn", dtype=self.dtype_policy)
        self.c_proj = TFConv1D(self.embed_dim, self.embed_dim, pt_name + ".c_proj", std / math.sqrt(2 * config.n_layer), name="c_proj", dtype=self.dtype_policy)
        self.attn_dropout = keras.layers.Dropout(config.attn_pdrop, dtype=self.dtype_policy)
        self.resid_dropout = keras.layers.Dropout(config.resid_pdrop, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        if self.built:
            return
        self.c_attn.build((None, self.embed_dim))
        if self.is_cross_attention:
            self.q_attn.build((None, self.embed_dim))
        self.c_proj.build((None, self.embed_dim))
        self.built = True

    def _split_heads(self, x):  # (B, T, E) -> (B, H, T, D)
        b, t = shape_list(x)[:2]
        return tf.transpose(tf.reshape(x, [b, t, self.n_head, self.head_dim]), [0, 2, 1, 3])

    def _merge_heads(self, x):  # (B, H, T, D) -> (B, T, E)
        b, _, t, _ = shape_list(x)
        return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, t, self.embed_dim])

    def call(self, x, layer_past=None, attention_bias=None, head_mask=None, encoder_hidden_states=None,
             use_cache=False, output_attentions=False, training=False, cache_index=None):
        present = None
        if self.is_cross_attention:
            q = self.q_attn(x)
            k, v = tf.split(self.c_attn(tf.cast(encoder_hidden_states, x.dtype)), 2, axis=2)
            q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        else:
            q, k, v = tf.split(self.c_attn(x), 3, axis=2)
            q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
            cache, k, v = write_cache(layer_past, k, v, cache_index, self.layer_idx)
            present = cache if (use_cache or cache_index is not None) else None
        out, probs = attention_core(q, k, v, attention_bias, self.config, self.layer_idx, head_mask=head_mask,
                                    dropout=self.attn_dropout, training=training, output_probs=output_attentions)
        out = self.resid_dropout(self.c_proj(self._merge_heads(out)), training=training)
        return out, present, probs


# ---------------------------------------------------------------------------------- MLP
class TFGPT2MLP(keras.layers.Layer):
    """``(B, T, E) -> (B, T, E)``: c_fc to ``inner_dim``, activation, c_proj back, dropout."""

    def __init__(self, config: GPT2Config, pt_name: str, **kwargs):
        super().__init__(**kwargs)
        e, inner, std = config.n_embd, config.inner_dim, config.initializer_range
        self.n_embd, self.inner = e, inner
        self.c_fc = TFConv1D(inner, e, pt_name + ".c_fc", std, name="c_fc", dtype=self.dtype_policy)
        self.c_proj = TFConv1D(e, inner, pt_name + ".c_proj", std / math.sqrt(2 * config.n_layer), name="c_proj", dtype=self.dtype_policy)
        self.act = ACT2FN[config.activation_function]
        self.dropout = keras.layers.Dropout(config.resid_pdrop, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        if self.built:
            return
        self.c_fc.build((None, self.n_embd))
        self.c_proj.build((None, self.inner))
        self.built = True

    def call(self, x, training=False):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))), training=training)


# ---------------------------------------------------------------------------------- block
class TFGPT2Block(keras.layers.Layer):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, [``x + crossattention(ln_cross_attn(x), encoder)``],
    then ``x + mlp(ln_2(x))``. Returns ``(x, present, self-attention weights, cross-attention weights)``.

    The forward and generation's static-cache decode step both run this ``call`` (the latter with
    ``cache_index``, see :class:`TFGPT2Attention`)."""

    def __init__(self, config: GPT2Config, layer_idx: int, pt_name: str, **kwargs):
        super().__init__(**kwargs)
        self.n_embd = config.n_embd
        self.ln_1 = _layer_norm(config, pt_name + ".ln_1", "ln_1", self.dtype_policy)
        self.attn = TFGPT2Attention(config, layer_idx, pt_name + ".attn", name="attn", dtype=self.dtype_policy)
        self.crossattention = self.ln_cross_attn = None
        if config.add_cross_attention:
            self.crossattention = TFGPT2Attention(config, layer_idx, pt_name + ".crossattention", is_cross_attention=True,
                                                  name="crossattention", dtype=self.dtype_policy)
            self.ln_cross_attn = _layer_norm(config, pt_name + ".ln_cross_attn", "ln_cross_attn", self.dtype_policy)
        self.ln_2 = _layer_norm(config, pt_name + ".ln_2", "ln_2", self.dtype_policy)
        self.mlp = TFGPT2MLP(config, pt_name + ".mlp", name="mlp", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        if self.built:
            return
        for layer in (self.ln_1, self.attn, self.crossattention, self.ln_cross_attn, self.ln_2, self.mlp):
            if layer is not None:
                layer.build((None, None, self.n_embd))
        self.built = True

    def call(self, x, layer_past=None, attention_bias=None, head_mask=None, encoder_hidden_states=None,
             encoder_bias=None, use_cache=False, output_attentions=False, training=False, cache_index=None):
        attn_out, present, weights = self.attn(
            self.ln_1(x), layer_past=layer_past, attention_bias=attention_bias, head_mask=head_mask,
            use_cache=use_cache, output_attentions=output_attentions, training=training, cache_index=cache_index,
        )
        x = x + attn_out
        cross_weights = None
        if encoder_hidden_states is not None:
            cross_out, _, cross_weights = self.crossattention(
                self.ln_cross_attn(x), attention_bias=encoder_bias, head_mask=head_mask,
                encoder_hidden_states=encoder_hidden_states, output_attentions=output_attentions, training=training,
            )
            x = x + cross_out
        x = x + self.mlp(self.ln_2(x), training=training)
        return x, present, weights, cross_weights


# ---------------------------------------------------------------------------------- body
def _static(size: Any) -> int | None:
    """A size known now (an int), or None where it is dynamic (a tensor inside tf.function)."""
    return size if isinstance(size, int) else None


class TFGPT2PreTrainedModel(keras.Model):
    """Base of the six models: config, input unpacking, loss for ``fit``, (de)serialisation, loading.

    ``call`` accepts HF's TF input styles: keyword arguments; a dict as the first argument (its keys are
    argument names; what ``model.fit`` passes); or a list/tuple in the order of :attr:`call_order`.
    Values may be numpy arrays or tensors.
    """

    architecture = "GPT2Model"
    config_class = GPT2Config
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    call_order: tuple[str, ...] = CALL_ORDER + ("labels",)

    @classmethod
    def can_generate(cls) -> bool:
        """Whether ``generate()`` works: True for the LM and double-heads classes, False for the others (HF's rule)."""
        return issubclass(cls, TFGenerationMixin)

    def __init__(self, config: GPT2Config | dict, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = GPT2Config.from_dict(config)
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config (or its dict), got {type(config).__name__}")
        validation.check_unpruned(config, "TensorFlow")
        self.config = config
        # HF's TF contract lets the first argument be a dict, a list of inputs or a nested list of ids.
        self._allow_non_tensor_positional_args = True
        self.transformer = TFGPT2MainLayer(config, name="transformer", dtype=self.dtype_policy)

    # -- building: all shapes follow from the config, so the model is built at construction --
    def build(self, input_shape=None):
        if self.built:
            return
        self.transformer.build(None)
        self._build_head()
        self.built = True

    def _build_head(self) -> None:
        pass

    # -- serialisation --
    def get_config(self) -> dict:
        base = {"name": self.name, "trainable": self.trainable, "dtype": keras.dtype_policies.serialize(self.dtype_policy)}
        return {**base, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config: Any, custom_objects=None, **kwargs):
        """Keras' ``from_config`` of :meth:`get_config`'s dict, and HF's forms too: a :class:`GPT2Config`, or a flat
        dict of config fields (what HF's TF ``get_config`` returns), with ``kwargs`` as config overrides."""
        if isinstance(config, GPT2Config):
            return cls(config.copy(**kwargs) if kwargs else config)
        config = dict(config)
        if "config" not in config:  # HF's flat form
            return cls(GPT2Config.from_dict(config, **kwargs))
        model_config = config.pop("config")
        if "dtype" in config and isinstance(config["dtype"], dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(GPT2Config.from_dict(model_config), **config)

    def get_build_config(self):  # built in __init__, nothing to replay
        return None

    def build_from_config(self, config):
        self.build(None)

    _serving_rank = 2  # input_ids (B, T); the multiple-choice model takes (B, C, T)

    def _serving_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec([None] * self._serving_rank, tf.int32, name="input_ids")

    def _serve(self, *inputs):
        """What a SavedModel serves: the outputs as a dict of tensors, without the cache (a signature
        cannot return its tuple of per-layer tensors)."""
        out = self(*inputs, use_cache=False, return_dict=True, training=False)
        return dict(out.items())

    @property
    def _default_save_signature(self):
        """SavedModel's default signature (``tf.saved_model.save``): int32 ``input_ids`` of any batch and
        length -> a dict of the output tensors (no cache)."""
        return tf.function(self._serve, input_signature=[self._serving_spec()])

    def export(self, filepath, format: str = "tf_saved_model", verbose: bool | None = None, input_signature=None, **kwargs):
        """Keras' ``model.export``. For ``"tf_saved_model"`` (the default) a SavedModel with a ``serve``
        endpoint (also its ``serving_default`` signature) returning the output tensors by name, without the
        cache. By default it takes int32 ``input_ids`` of any batch and length; ``input_signature`` may name
        more inputs as ``[{"input_ids": spec, "attention_mask": spec, ...}]`` (a dict of ``tf.TensorSpec`` by
        input name), or give ``[spec]`` for ``input_ids`` alone. Other formats go to Keras unchanged.
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)
        if input_signature is not None and (not isinstance(input_signature, (list, tuple)) or len(input_signature) != 1):
            raise ValueError(
                "input_signature must be [spec] (input_ids) or [{name: spec, ...}] naming each input, e.g. "
                "[{'input_ids': spec, 'attention_mask': spec}]; a list of several specs would be read in HF's call "
                "order, where past_key_values comes second"
            )
        from keras.export import ExportArchive

        archive = ExportArchive()
        archive.track(self)
        archive.add_endpoint("serve", self._serve, input_signature or [self._serving_spec()], **kwargs)
        archive.write_out(filepath, verbose=True if verbose is None else bool(verbose))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a checkpoint (safetensors, pytorch_model.bin, tf_model.h5 or flax_model.msgpack); see :func:`loading.from_pretrained`."""
        return loading.from_pretrained(cls, pretrained_model_name_or_path, **kwargs)

    def save_pretrained(self, save_directory, format: str = "safetensors", **kwargs):
        """Write ``config.json`` and the weights through the shared checkpoint layer (default safetensors);
        ``saved_model=True`` (and ``version=``) also writes a SavedModel, as HF (see :func:`loading.save_pretrained`)."""
        return loading.save_pretrained(self, save_directory, format=format, **kwargs)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays under HF PyTorch names (canonical: body under ``transformer.``)."""
        return loading.state_dict(self)

    def get_input_embeddings(self) -> keras.layers.Embedding:
        """The word embedding layer (``transformer.wte``), a ``keras.layers.Embedding`` as in HF's TF GPT-2."""
        return self.transformer.wte

    def set_input_embeddings(self, value: Any) -> None:
        """Give the word embedding ``value``'s weights: a ``keras.layers.Embedding``, a variable or an array (V, E).

        The values are copied into this model's own ``wte`` (resized first when V differs, as
        :meth:`resize_token_embeddings`), so the variable keeps its name and the checkpoint layout stays HF's;
        a tied LM head follows.
        """
        weights = value.embeddings if isinstance(value, keras.layers.Embedding) else value
        array = np.asarray(keras.ops.convert_to_numpy(weights))
        if array.ndim != 2 or array.shape[1] != self.config.n_embd:
            raise ValueError(f"set_input_embeddings needs (vocab, n_embd={self.config.n_embd}) weights, got shape {array.shape}")
        if array.shape[0] != self.config.vocab_size:
            self.resize_token_embeddings(int(array.shape[0]))
        self.transformer.wte.embeddings.assign(array.astype(keras.backend.standardize_dtype(self.transformer.wte.embeddings.dtype)))

    @property
    def dummy_inputs(self) -> dict[str, tf.Tensor]:
        """HF's TF ``dummy_inputs``: small token ids to build or trace the model with (``(B, C, T)`` for double heads)."""
        ids = tf.constant([[7, 6, 0, 0, 1], [1, 2, 3, 0, 0], [0, 0, 0, 4, 5]], tf.int32) % self.config.vocab_size
        if self._serving_rank == 3:
            ids = tf.stack([ids[:2], ids[1:]])  # (2 examples, 2 choices, 5 tokens)
        return {"input_ids": ids}

    def get_output_embeddings(self):
        """The LM projection: the untied ``lm_head`` Dense layer, else the (tied) word embedding; None without an LM head."""
        if not hasattr(self, "project"):
            return None
        return getattr(self, "lm_head", None) or self.transformer.wte

    def resize_token_embeddings(self, new_num_tokens: int | None = None) -> keras.layers.Embedding:
        """Give the vocabulary ``new_num_tokens`` rows (HF's method), in place; return the word embedding.

        Existing rows are kept, new rows drawn from N(0, initializer_range); an untied ``lm_head`` is
        resized the same way and ``config.vocab_size`` is updated. Compile (again) after resizing.
        """
        wte = self.transformer.wte
        if new_num_tokens is None or new_num_tokens == self.config.vocab_size:
            return wte
        if not isinstance(new_num_tokens, int) or new_num_tokens < 1:
            raise ValueError(f"new_num_tokens must be a positive int, got {new_num_tokens!r}")
        std = self.config.initializer_range
        _replace_variable(wte, "_embeddings", _resized(wte.embeddings, new_num_tokens, 0, std))
        wte.input_dim = new_num_tokens
        lm_head = getattr(self, "lm_head", None)
        if lm_head is not None:
            _replace_variable(lm_head, "_kernel", _resized(lm_head.kernel, new_num_tokens, 1, std))
            lm_head.units = new_num_tokens
        self.config.vocab_size = new_num_tokens
        return wte

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.weights))

    # -- inputs (HF's TF styles, see gpt2_multi.tf.inputs) --
    def __call__(self, *args, **kwargs):
        # Spread a dict / list of inputs into keyword arguments before Keras inspects them (Keras rejects
        # containers that mix tensors with Python values, which HF's TF contract allows).
        if args and is_input_container(args[0]):
            if len(args) > 1:
                raise validation.InputError("pass further inputs as keywords when the first argument is a dict or list of inputs")
            training = kwargs.pop("training", None)
            merged = self._unpack(args[0], kwargs)
            if training is not None:
                merged["training"] = training
            return super().__call__(**merged)
        return super().__call__(*args, **kwargs)

    def _unpack(self, first: Any, kwargs: dict) -> dict:
        return unpack_inputs(first, kwargs, self.call_order, type(self).__name__)

    def _body(self, args: dict, training: bool):
        return self.transformer(
            input_ids=args.get("input_ids"), past_key_values=args.get("past_key_values"),
            attention_mask=args.get("attention_mask"), token_type_ids=args.get("token_type_ids"),
            position_ids=args.get("position_ids"), head_mask=args.get("head_mask"),
            inputs_embeds=args.get("inputs_embeds"), encoder_hidden_states=args.get("encoder_hidden_states"),
            encoder_attention_mask=args.get("encoder_attention_mask"), use_cache=args.get("use_cache"),
            output_attentions=args.get("output_attentions"), output_hidden_states=args.get("output_hidden_states"),
            training=training,
        )

    def _finish(self, args: dict, output):
        return_dict = args.get("return_dict")
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        return output if return_dict else output.to_tuple()

    # -- training: fit() uses the model's own loss when the inputs carry labels --
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        own = y_pred.get("loss") if isinstance(y_pred, dict) else None
        if own is None or self._compile_loss is not None:
            if isinstance(y_pred, dict):
                y_pred = y_pred[self._main_output_key()]
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        total = tf.cast(own, tf.float32)
        for extra in self.losses:
            total = total + tf.cast(tf.reduce_sum(extra), tf.float32)
        # Keras sums gradients over replicas: each replica's mean counts 1 / replicas.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return total / replicas if replicas > 1 else total

    def _main_output_key(self) -> str:
        return "logits"

    def predict_step(self, data):
        """``model.predict``: a plain dict of the outputs, which Keras concatenates over batches.

        ``past_key_values`` (batch axis 1) and the scalar losses cannot be concatenated and are left out.
        """
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        inputs = dict(x) if isinstance(x, dict) else {"input_ids": x}
        inputs.update(use_cache=False, return_dict=True)
        out = self(**inputs, training=False)
        return {k: v for k, v in out.items() if k not in ("past_key_values", "loss", "mc_loss")}


def _resized(variable, size: int, axis: int, std: float) -> np.ndarray:
    """The values of ``variable`` cut or extended (new entries ~ N(0, std)) to ``size`` along ``axis``."""
    old = keras.ops.convert_to_numpy(variable)
    shape = list(old.shape)
    shape[axis] = size
    new = np.asarray(keras.ops.convert_to_numpy(_normal(std)(tuple(shape), dtype=variable.dtype)))
    keep = min(size, old.shape[axis])
    index = (slice(None),) * axis + (slice(0, keep),)
    new[index] = old[index]
    return new


def _replace_variable(layer: keras.layers.Layer, attr: str, value: np.ndarray) -> None:
    """Swap ``layer.<attr>`` for a new variable of another shape, at the same path (keeps HF TF names)."""
    old = getattr(layer, attr)
    layer._untrack_variable(old)
    scope, leaf = old.path.rsplit("/", 1)
    locked = layer._tracker.locked
    layer._tracker.unlock()
    try:
        with contextlib.ExitStack() as stack:
            for part in scope.split("/"):
                stack.enter_context(keras.name_scope(part))
            new = layer.add_weight(name=leaf, shape=value.shape, dtype=old.dtype, trainable=old.trainable,
                                   initializer=lambda shape, dtype: tf.constant(value, dtype=dtype))
    finally:
        if locked:
            layer._tracker.lock()
    object.__setattr__(layer, attr, new)


class TFGPT2MainLayer(keras.layers.Layer):
    """The GPT-2 body (HF's ``transformer``): embeddings, ``n_layer`` blocks, final layer norm.

    Inputs of any leading shape ``(..., T)`` are flattened to ``(N, T)`` (multiple choice: N = B * C)
    and outputs reshaped back to ``(..., T, E)``; ``past_key_values`` stay flat: ``(2, N, H, S, D)``.
    The causal mask and the padding mask become one additive bias ``(1 | N, 1, T, S)`` shared by the blocks.
    """

    @staticmethod
    def static_cache_bias(key_valid: tf.Tensor, write_at: Any, query_length: int, dtype: Any) -> tf.Tensor:
        """The compiled decode loop's bias over its fixed-size cache: ``(N, L)`` bool keys that exist ->
        ``(N, 1, T, L)``, key ``j`` visible to query ``i`` iff it exists and ``j <= write_at + i``."""
        allowed = key_valid[:, None, None, :] & causal_mask(query_length, tf.shape(key_valid)[1], write_at)[None, None]
        return additive_bias(allowed, dtype)

    def __init__(self, config: GPT2Config, pt_name: str = layout.BASE_MODEL_PREFIX, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        std = config.initializer_range
        self.wte = keras.layers.Embedding(
            config.vocab_size, config.n_embd, name="wte", dtype=self.dtype_policy,
            embeddings_initializer=loading.PretrainedOr(pt_name + ".wte.weight", _normal(std))
        )
        self.wpe = keras.layers.Embedding(
            config.n_positions, config.n_embd, name="wpe", dtype=self.dtype_policy,
            embeddings_initializer=loading.PretrainedOr(pt_name + ".wpe.weight", _normal(std))
        )
        self.drop = keras.layers.Dropout(config.embd_pdrop, dtype=self.dtype_policy)
        self.h = [TFGPT2Block(config, i, f"{pt_name}.h.{i}", name=f"h_._{i}", dtype=self.dtype_policy) for i in range(config.n_layer)]
        self.ln_f = _layer_norm(config, pt_name + ".ln_f", "ln_f", self.dtype_policy)

    def build(self, input_shape=None):
        if self.built:
            return
        self.wte.build((None, None))
        self.wpe.build((None, None))
        for block in self.h:
            block.build((None, None, self.config.n_embd))
        self.ln_f.build((None, None, self.config.n_embd))
        self.built = True

    # -- input checks (values only when eager; static shapes always) --
    def _check(self, input_ids, past_length, seq_length, batch, attention_mask, position_ids, token_type_ids, head_mask,
               past_key_values):
        cfg = self.config
        expected = (_static(batch), cfg.n_head, _static(past_length), cfg.head_dim)
        for i, layer_past in enumerate(past_key_values):
            if layer_past is None:
                continue
            shape = static_shape(layer_past)
            if len(shape) != 5 or shape[0] not in (None, 2):
                raise validation.InputError(f"past_key_values[{i}] has shape {shape} but must be (2, batch, n_head, "
                                            "past_length, head_dim): its key and value stacked, as HF's TF cache")
            validation.check_cache_shape(i, "key", shape[1:], expected, "(batch, n_head, past_length, head_dim)")
        ids = concrete(input_ids)
        if ids is not None:
            validation.check_input_ids(ids, cfg.vocab_size)
        tt = concrete(token_type_ids)
        if tt is not None:
            validation.check_input_ids(tt, cfg.vocab_size, name="token_type_ids")
        if isinstance(seq_length, int) and isinstance(past_length, int):
            validation.check_sequence_length(past_length, seq_length, cfg.n_positions)
        pos = concrete(position_ids)
        if pos is not None:
            validation.check_position_ids(pos, cfg.n_positions)
        if attention_mask is not None:
            shape = static_shape(attention_mask)
            if all(d is not None for d in shape) and isinstance(batch, int) and isinstance(seq_length, int) \
                    and isinstance(past_length, int):
                validation.check_attention_mask(shape, batch, past_length, seq_length)
        if head_mask is not None:
            validation.check_head_mask(static_shape(head_mask), cfg.n_layer, cfg.n_head)

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, encoder_hidden_states=None,
             encoder_attention_mask=None, use_cache=None, output_attentions=None, output_hidden_states=None,
             training=False):
        cfg = self.config
        validation.check_exactly_one(input_ids, inputs_embeds)
        validation.check_cross_attention(encoder_hidden_states, cfg.add_cross_attention)
        if input_ids is not None:
            input_ids = to_tensor(input_ids)
            validation.check_integer_ids("input_ids", input_ids.dtype.is_integer, input_ids.dtype.name)
            if input_ids.shape.rank is not None:
                validation.check_input_rank(static_shape(input_ids))
            input_shape = shape_list(input_ids)
            tokens_shape = static_shape(input_ids)
        else:
            inputs_embeds = to_tensor(inputs_embeds, self.compute_dtype)
            if inputs_embeds.shape.rank is not None:
                validation.check_embeds_shape(static_shape(inputs_embeds), cfg.n_embd)
            input_shape = shape_list(inputs_embeds)[:-1]
            tokens_shape = static_shape(inputs_embeds)[:-1]
        seq_length = input_shape[-1]

        if past_key_values is None:
            past_length = 0
            past_key_values = (None,) * cfg.n_layer
        else:
            past_key_values = tuple(to_tensor(p) for p in past_key_values)
            validation.check_cache_layers(len(past_key_values), cfg.n_layer)
            past_length = shape_list(past_key_values[0])[-2]

        # Flatten (..., T) to (N, T): the multiple-choice layout.
        if input_ids is not None:
            input_ids = tf.reshape(input_ids, [-1, seq_length])
            batch = shape_list(input_ids)[0]
        else:
            inputs_embeds = tf.reshape(inputs_embeds, [-1, seq_length, cfg.n_embd])
            batch = shape_list(inputs_embeds)[0]
        if attention_mask is not None:
            attention_mask = to_tensor(attention_mask)
            if attention_mask.shape.rank is not None and attention_mask.shape.rank > 2:
                attention_mask = tf.reshape(attention_mask, [-1, shape_list(attention_mask)[-1]])
        position_ids = flatten_tokens("position_ids", position_ids, seq_length, tokens_shape)
        token_type_ids = flatten_tokens("token_type_ids", token_type_ids, seq_length, tokens_shape)
        if head_mask is not None:
            head_mask = to_tensor(head_mask)
        self._check(input_ids, past_length, seq_length, batch, attention_mask, position_ids, token_type_ids, head_mask,
                    past_key_values)

        use_cache = cfg.use_cache if use_cache is None else use_cache
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states

        if position_ids is None:
            position_ids = tf.expand_dims(tf.range(past_length, past_length + seq_length), 0)
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        hidden = inputs_embeds + tf.cast(self.wpe(position_ids), inputs_embeds.dtype)
        if token_type_ids is not None:
            hidden = hidden + tf.cast(self.wte(token_type_ids), hidden.dtype)
        hidden = self.drop(hidden, training=training)

        # One additive bias for every layer: causal (query i sees keys j <= P + i) and, with a (N, S) 1 / 0
        # mask, not the padding: (1 | N, 1, T, S), 0 where attended, the dtype's minimum where not.
        allowed = causal_mask(seq_length, past_length + seq_length, past_length)[None, None]
        if attention_mask is not None:
            allowed = allowed & tf.cast(attention_mask, tf.bool)[:, None, None, :]
        attention_bias = additive_bias(allowed, hidden.dtype)

        # Encoder states (B, S_enc, E) and their (B, S_enc) mask -> (B, 1, 1, S_enc) bias; no mask: attend to all.
        encoder_bias = None
        if encoder_hidden_states is not None:
            encoder_hidden_states = to_tensor(encoder_hidden_states, hidden.dtype)
            if encoder_attention_mask is not None:
                encoder_bias = additive_bias(to_tensor(encoder_attention_mask)[:, None, None, :], hidden.dtype)

        # head_mask (H,) or (L, H) -> per layer (1, H, 1, 1).
        layer_head_masks = [None] * cfg.n_layer
        if head_mask is not None:
            hm = tf.cast(head_mask, hidden.dtype)
            hm = tf.broadcast_to(hm, [cfg.n_layer, cfg.n_head]) if hm.shape.rank == 1 else hm
            layer_head_masks = [tf.reshape(hm[i], [1, cfg.n_head, 1, 1]) for i in range(cfg.n_layer)]

        output_shape = input_shape + [cfg.n_embd]
        presents, all_attentions, all_cross, all_hidden = (), (), (), ()
        for block, layer_past, layer_head_mask in zip(self.h, past_key_values, layer_head_masks):
            if output_hidden_states:
                all_hidden += (tf.reshape(hidden, output_shape),)
            hidden, present, weights, cross_weights = block(
                hidden, layer_past=layer_past, attention_bias=attention_bias, head_mask=layer_head_mask,
                encoder_hidden_states=encoder_hidden_states, encoder_bias=encoder_bias,
                use_cache=use_cache, output_attentions=output_attentions, training=training,
            )
            if use_cache:
                presents += (present,)
            if output_attentions:
                all_attentions += (weights,)
                if encoder_hidden_states is not None:
                    all_cross += (cross_weights,)
        hidden = tf.reshape(self.ln_f(hidden), output_shape)
        if output_hidden_states:
            all_hidden += (hidden,)
        if output_attentions:
            attn_shape = input_shape[:-1] + [-1] + shape_list(all_attentions[0])[-2:]
            all_attentions = tuple(tf.reshape(a, attn_shape) for a in all_attentions)
        return TFBaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden,
            past_key_values=presents if use_cache else None,
            hidden_states=all_hidden if output_hidden_states else None,
            attentions=all_attentions if output_attentions else None,
            cross_attentions=all_cross if (output_attentions and encoder_hidden_states is not None) else None,
        )


@keras.saving.register_keras_serializable(package="gpt2_multi")
class TFGPT2Model(TFGPT2PreTrainedModel):
    """The bare GPT-2 body.

    ``call(input_ids (B, T) int, past_key_values (L x (2, B, H, P, D)), attention_mask (B, P + T),
    token_type_ids (B, T), position_ids (B, T), head_mask (H,) | (L, H), inputs_embeds (B, T, E),
    encoder_hidden_states (B, S_enc, E), encoder_attention_mask (B, S_enc), use_cache, output_attentions,
    output_hidden_states, return_dict, training)`` -> :class:`TFBaseModelOutputWithPastAndCrossAttentions`
    with ``last_hidden_state (B, T, E)``. Encoder states need ``config.add_cross_attention``.
    """

    architecture = "GPT2Model"
    call_order = CALL_ORDER_CROSS

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.build(None)

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, encoder_hidden_states=None,
             encoder_attention_mask=None, use_cache=None, output_attentions=None, output_hidden_states=None,
             return_dict=None, training=False):
        args = self._unpack(input_ids, call_arguments(locals()))
        return self._finish(args, self._body(args, training))

    def _main_output_key(self) -> str:
        return "last_hidden_state"


# ---------------------------------------------------------------------------------- losses
def _cross_entropy(logits: tf.Tensor, labels: tf.Tensor, ignore_index: int | tf.Tensor = -100) -> tf.Tensor:
    """``logits (..., classes)``, ``labels (...)``: PyTorch's ``CrossEntropyLoss(ignore_index)``: mean over the labels that are not ignored (0/0 -> nan)."""
    num_classes = tf.shape(logits)[-1]
    logits = tf.reshape(tf.cast(logits, tf.float32), [-1, num_classes])
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    keep = tf.not_equal(labels, tf.cast(ignore_index, tf.int32))
    safe = tf.where(keep, labels, tf.zeros_like(labels))
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    keep_f = tf.cast(keep, tf.float32)
    return tf.reduce_sum(per_token * keep_f) / tf.reduce_sum(keep_f)


def _causal_lm_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Next-token loss: logits at t predict labels at t + 1 (labels are the input ids; -100 is ignored)."""
    return _cross_entropy(logits[..., :-1, :], labels[..., 1:])


def _check_labels(labels: tf.Tensor, num_classes: int, name: str = "labels", logits: tf.Tensor | None = None) -> None:
    """Label values in range (the shared check); token-level labels (given their ``logits``) shaped like the input."""
    if logits is not None and labels.shape.rank is not None:
        validation.check_labels_shape(static_shape(labels), static_shape(logits)[:-1])
    value = concrete(labels)
    if value is not None:
        validation.check_labels(value, num_classes, name=name)


def _classification_loss(logits: tf.Tensor, labels: tf.Tensor, num_labels: int, problem_type: str | None) -> tf.Tensor:
    """Sequence classification, by ``problem_type`` (inferred as HF does when None): regression (MSE),
    single-label (cross-entropy) or multi-label (binary cross-entropy with logits). ``logits (B, num_labels)``."""
    problem = infer_problem_type(problem_type, num_labels, labels.dtype.is_integer)
    logits = tf.cast(logits, tf.float32)
    if problem == "regression":
        target = tf.cast(labels, tf.float32)
        if num_labels == 1:  # HF: MSE(logits.squeeze(), labels.squeeze())
            logits, target = tf.squeeze(logits), tf.squeeze(target)
        return tf.reduce_mean(tf.square(logits - target))
    if problem == "single_label_classification":
        _check_labels(labels, num_labels)
        return _cross_entropy(logits, labels)
    target = tf.cast(labels, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))


def _question_answering_loss(start_logits: tf.Tensor, end_logits: tf.Tensor, start_positions: tf.Tensor,
                             end_positions: tf.Tensor) -> tf.Tensor:
    """Span loss: the mean of the start and end cross-entropies over ``(B, T)`` logits; positions outside the
    sequence are clamped to T and ignored (HF)."""
    seq = shape_list(start_logits)[-1]

    def positions(x):
        return tf.clip_by_value(tf.cast(tf.reshape(x, [-1]), tf.int32), 0, seq)

    start = _cross_entropy(start_logits, positions(start_positions), ignore_index=seq)
    end = _cross_entropy(end_logits, positions(end_positions), ignore_index=seq)
    return (start + end) / 2.0


# ---------------------------------------------------------------------------------- heads
def _kept_positions(hidden: tf.Tensor, logits_to_keep: Any, has_labels: bool) -> tf.Tensor:
    """HF's ``logits_to_keep`` on ``hidden (..., T, E)``: an int ``k`` keeps the last k positions (0: all), a 1-D
    index array those positions (negative ones from the end), after the shared check (values when eager)."""
    seq = static_shape(hidden)[-2]
    if isinstance(logits_to_keep, (int, np.integer)) or not hasattr(logits_to_keep, "shape"):  # a count, or refused
        validation.check_logits_to_keep(logits_to_keep, seq, has_labels)
        k = int(logits_to_keep)
        return hidden[..., -k:, :] if k else hidden
    index = to_tensor(logits_to_keep)
    if index.shape.rank is not None:
        value = concrete(index)
        validation.check_logits_to_keep(index if value is None else np.asarray(value), seq, has_labels)
    index = tf.cast(index, tf.int32)
    return tf.gather(hidden, tf.where(index < 0, index + tf.shape(hidden)[-2], index), axis=hidden.shape.rank - 2)


class TFGPT2SequenceSummary(keras.layers.Layer):
    """HF's ``SequenceSummary`` (the DoubleHeads multiple-choice head).

    ``(..., T, E)`` hidden states and ``cls_index (...)`` -> ``(..., num_classes)``: pick a token
    (``summary_type``: last, first, mean or cls_index), dropout, optional projection, activation, dropout.
    As HF (PyTorch and TF), last / first / mean index dim 1 (``hidden[:, -1]``, ``hidden[:, 0]``, the mean
    over dim 1): on the (B, C, T, E) multiple-choice states that is the choices axis, giving (B, T, ...).
    """

    def __init__(self, config: GPT2Config, pt_name: str, **kwargs):
        super().__init__(**kwargs)
        self.summary_type = config.summary_type
        if self.summary_type == "attn":
            raise NotImplementedError("summary_type='attn' is not implemented (HF does not implement it either)")
        self.n_embd = config.n_embd
        self.summary = None
        if config.summary_use_proj:
            n = layout.multiple_choice_summary_size(config)
            self.summary = _dense(n, pt_name + ".summary", config.initializer_range, "summary", dtype=self.dtype_policy)
        act = config.summary_activation
        self.activation = (lambda x: x) if not act else (tf.tanh if act == "tanh" else ACT2FN[act])
        self.first_dropout = keras.layers.Dropout(config.summary_first_dropout, dtype=self.dtype_policy)
        self.last_dropout = keras.layers.Dropout(getattr(config, "summary_last_dropout", 0.0) or 0.0, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        if self.built:
            return
        if self.summary is not None:
            self.summary.build((None, self.n_embd))
        self.built = True

    def call(self, hidden_states, cls_index=None, training=False):
        if self.summary_type == "last":  # dim 1, as HF (the choices axis of (B, C, T, E))
            out = hidden_states[:, -1]
        elif self.summary_type == "first":
            out = hidden_states[:, 0]
        elif self.summary_type == "mean":
            out = tf.reduce_mean(hidden_states, axis=1)
        else:  # cls_index
            lead = shape_list(hidden_states)[:-2]
            if cls_index is None:
                cls_index = tf.fill(lead, shape_list(hidden_states)[-2] - 1)
            cls_index = tf.cast(tf.reshape(to_tensor(cls_index), lead), tf.int32)
            value, seq = concrete(cls_index), hidden_states.shape[-2]
            if value is not None and seq is not None:
                validation.check_labels(value, seq, name="mc_token_ids", ignore_index=None)
            out = tf.gather(hidden_states, cls_index, axis=-2, batch_dims=len(lead))
        out = self.first_dropout(out, training=training)
        if self.summary is not None:
            out = self.summary(out)
        return self.last_dropout(self.activation(out), training=training)


TFSequenceSummary = TFGPT2SequenceSummary  # the name this package exported before (HF's TF helper's name)


@keras.saving.register_keras_serializable(package="gpt2_multi")
class TFGPT2LMHeadModel(TFGenerationMixin, TFGPT2PreTrainedModel):
    """GPT-2 with the language-modelling head (tied to ``wte`` unless ``tie_word_embeddings=False``).

    ``call(..., labels (B, T) int, logits_to_keep=0)``: inputs as :class:`TFGPT2Model`; ``labels`` are the input
    ids (shifted inside; -100 ignored). -> :class:`TFCausalLMOutputWithCrossAttentions` with
    ``logits (B, T, V)`` and ``loss`` (scalar mean over the labelled tokens).

    ``logits_to_keep`` (HF's PyTorch argument; HF's TF class lacks it): an int ``k`` projects only the last ``k``
    positions (0, the default, or ``k >= T``: all), a 1-D int index array (K,) those positions: logits (B, K, V).
    """

    architecture = "GPT2LMHeadModel"
    call_order = CALL_ORDER_CROSS + ("labels", "logits_to_keep")

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.lm_head = None
        if not self.config.tie_word_embeddings:
            self.lm_head = _dense(self.config.vocab_size, "lm_head", self.config.initializer_range, "lm_head", use_bias=False, dtype=self.dtype_policy)
        self.build(None)

    def _build_head(self):
        if self.lm_head is not None:
            self.lm_head.build((None, self.config.n_embd))

    def project(self, hidden: tf.Tensor) -> tf.Tensor:
        """``(..., E) -> (..., V)``: hidden states to vocabulary logits."""
        if hidden.dtype in (tf.bfloat16, tf.float16):
            # half precision: accumulated in float32 and rounded once, as every linear layer of the three stacks
            transposed = row_kernel(self) if hidden.shape.rank == 2 and hidden.shape[0] == 1 else None
            if transposed is not None:  # see generation.row_kernels
                return tf.cast(row_product(hidden, transposed), hidden.dtype)
            f32 = tf.float32
            if self.lm_head is not None:  # its Dense has no bias
                kernel, axis = tf.cast(self.lm_head.kernel, hidden.dtype), 0  # (E, V), rounded as Keras' autocast
            else:
                kernel, axis = tf.cast(self.transformer.wte.embeddings, hidden.dtype), 1  # (V, E)
            out = tf.tensordot(tf.cast(hidden, f32), tf.cast(kernel, f32), axes=[[hidden.shape.rank - 1], [axis]])
            return tf.cast(out, hidden.dtype)
        if self.lm_head is not None:
            return self.lm_head(hidden)
        table = tf.cast(self.transformer.wte.embeddings, hidden.dtype)
        # tensordot is one (N, E) x (E, V) matmul each way; the gradient of einsum("...e,ve->...v") materialised a
        # (..., V, E)-sized intermediate (14 GB peak RSS and 17 s for one backward of 8 x 64 tokens at GPT-2's vocabulary)
        return tf.tensordot(hidden, table, axes=[[hidden.shape.rank - 1], [1]])

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, encoder_hidden_states=None,
             encoder_attention_mask=None, use_cache=None, output_attentions=None, output_hidden_states=None,
             return_dict=None, labels=None, logits_to_keep=0, training=False):
        args = self._unpack(input_ids, call_arguments(locals()))
        body = self._body(args, training)
        hidden = _kept_positions(body.last_hidden_state, args.get("logits_to_keep", 0), args.get("labels") is not None)
        logits = self.project(hidden)
        loss = None
        if args.get("labels") is not None:
            labels = to_tensor(args["labels"])
            _check_labels(labels, self.config.vocab_size, logits=logits)
            loss = _causal_lm_loss(logits, labels)
        return self._finish(args, TFCausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=body.past_key_values,
            hidden_states=body.hidden_states, attentions=body.attentions, cross_attentions=body.cross_attentions))


@keras.saving.register_keras_serializable(package="gpt2_multi")
class TFGPT2DoubleHeadsModel(TFGenerationMixin, TFGPT2PreTrainedModel):
    """GPT-2 with the LM head and a multiple-choice head.

    ``call(input_ids (B, C, T), ..., mc_token_ids (B, C), labels (B, C, T), mc_labels (B,))`` ->
    :class:`TFGPT2DoubleHeadsModelOutput`: ``logits (B, C, T, V)``, ``mc_logits (B, C)``, ``loss`` (LM,
    shifted, -100 ignored) and ``mc_loss`` (cross-entropy over the choices), both batch means.
    ``past_key_values`` are flat over B * C.
    """

    architecture = "GPT2DoubleHeadsModel"
    _serving_rank = 3
    call_order = CALL_ORDER[:7] + ("mc_token_ids",) + CALL_ORDER[7:] + ("labels", "mc_labels")

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.lm_head = None
        if not self.config.tie_word_embeddings:
            self.lm_head = _dense(self.config.vocab_size, "lm_head", self.config.initializer_range, "lm_head", use_bias=False, dtype=self.dtype_policy)
        validation.warn_summary_pooling(self.config)
        self.multiple_choice_head = TFGPT2SequenceSummary(self.config, "multiple_choice_head", name="multiple_choice_head", dtype=self.dtype_policy)
        self.build(None)

    def _build_head(self):
        if self.lm_head is not None:
            self.lm_head.build((None, self.config.n_embd))
        self.multiple_choice_head.build(None)

    project = TFGPT2LMHeadModel.project

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, mc_token_ids=None, use_cache=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, labels=None, mc_labels=None,
             training=False):
        args = self._unpack(input_ids, call_arguments(locals()))
        body = self._body(args, training)
        hidden = body.last_hidden_state
        logits = self.project(hidden)
        mc_logits = self.multiple_choice_head(hidden, args.get("mc_token_ids"), training=training)
        if mc_logits.shape[-1] == 1:  # HF PyTorch's squeeze(-1): a no-op unless the last dim is 1
            mc_logits = tf.squeeze(mc_logits, -1)
        loss = mc_loss = None
        if args.get("labels") is not None:
            labels = to_tensor(args["labels"])
            _check_labels(labels, self.config.vocab_size, logits=logits)
            loss = _causal_lm_loss(logits, labels)
        if args.get("mc_labels") is not None:
            mc_labels = to_tensor(args["mc_labels"])
            if mc_logits.shape[-1] is not None:
                _check_labels(mc_labels, int(mc_logits.shape[-1]), "mc_labels")
            mc_loss = _cross_entropy(mc_logits, mc_labels)
        return self._finish(args, TFGPT2DoubleHeadsModelOutput(
            loss=loss, mc_loss=mc_loss, logits=logits, mc_logits=mc_logits, past_key_values=body.past_key_values,
            hidden_states=body.hidden_states, attentions=body.attentions))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # fit(): the LM loss plus the multiple-choice loss, as HF's PyTorch docs suggest for training.
        if isinstance(y_pred, dict) and y_pred.get("mc_loss") is not None and self._compile_loss is None:
            total = y_pred["mc_loss"] if y_pred.get("loss") is None else y_pred["loss"] + y_pred["mc_loss"]
            y_pred = TFGPT2DoubleHeadsModelOutput(loss=total, logits=y_pred["logits"])
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


@keras.saving.register_keras_serializable(package="gpt2_multi")
class TFGPT2ForSequenceClassification(TFGPT2PreTrainedModel):
    """GPT-2 with a linear ``score`` head read at each row's last non-padding token.

    ``call(..., labels (B,))`` -> :class:`TFSequenceClassifierOutputWithPast` with ``logits (B, num_labels)``.
    The pooled token is the rightmost one that is not ``config.pad_token_id`` (the last token when
    ``pad_token_id`` is None, which then needs batch size 1, or when only ``inputs_embeds`` are given).
    Loss by ``config.problem_type`` (inferred as in HF when None): regression (MSE),
    single-label (cross-entropy) or multi-label (binary cross-entropy with logits).
    """

    architecture = "GPT2ForSequenceClassification"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.num_labels = self.config.num_labels
        self.score = _dense(self.num_labels, "score", self.config.initializer_range, "score", use_bias=False, dtype=self.dtype_policy)
        self.build(None)

    def _build_head(self):
        self.score.build((None, self.config.n_embd))

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, use_cache=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, labels=None, training=False):
        args = self._unpack(input_ids, call_arguments(locals()))
        body = self._body(args, training)
        logits = self.score(body.last_hidden_state)  # (B, T, num_labels)
        batch, seq = shape_list(logits)[:2]
        pad = self.config.pad_token_id
        ids = args.get("input_ids")
        if pad is None:
            validation.check_pad_token_for_batch(batch if isinstance(batch, int) else None, pad)
            last = tf.fill([batch], seq - 1)
        elif ids is not None:
            ids = tf.reshape(to_tensor(ids), [batch, seq])
            not_pad = tf.cast(tf.not_equal(ids, tf.cast(pad, ids.dtype)), tf.int32)
            last = tf.argmax(tf.range(seq)[None, :] * not_pad, axis=-1, output_type=tf.int32)
        else:
            last = tf.fill([batch], seq - 1)
        pooled = tf.gather(logits, last, axis=1, batch_dims=1)  # (B, num_labels)
        loss = None
        if args.get("labels") is not None:
            loss = _classification_loss(pooled, to_tensor(args["labels"]), self.num_labels, self.config.problem_type)
        return self._finish(args, TFSequenceClassifierOutputWithPast(
            loss=loss, logits=pooled, past_key_values=body.past_key_values,
            hidden_states=body.hidden_states, attentions=body.attentions))


@keras.saving.register_keras_serializable(package="gpt2_multi")
class TFGPT2ForTokenClassification(TFGPT2PreTrainedModel):
    """GPT-2 with dropout and a linear ``classifier`` on every token.

    ``call(..., labels (B, T))`` -> :class:`TFTokenClassifierOutput`: ``logits (B, T, num_labels)``,
    ``loss`` (cross-entropy mean over labels that are not -100). Dropout is ``config.classifier_dropout``
    if set, else 0.1 (HF).
    """

    architecture = "GPT2ForTokenClassification"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.num_labels = self.config.num_labels
        rate = getattr(self.config, "classifier_dropout", None)
        if rate is None:
            rate = getattr(self.config, "hidden_dropout", None)
        self.dropout = keras.layers.Dropout(0.1 if rate is None else rate, dtype=self.dtype_policy)
        self.classifier = _dense(self.num_labels, "classifier", self.config.initializer_range, "classifier", dtype=self.dtype_policy)
        self.build(None)

    def _build_head(self):
        self.classifier.build((None, self.config.n_embd))

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, use_cache=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, labels=None, training=False):
        args = self._unpack(input_ids, call_arguments(locals()))
        args.setdefault("use_cache", False)  # HF's token-classification output has no cache
        body = self._body(args, training)
        logits = self.classifier(self.dropout(body.last_hidden_state, training=training))
        loss = None
        if args.get("labels") is not None:
            labels = to_tensor(args["labels"])
            _check_labels(labels, self.num_labels)  # any shape of B * T labels, as HF
            loss = _cross_entropy(logits, labels)
        return self._finish(args, TFTokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=body.hidden_states, attentions=body.attentions))


@keras.saving.register_keras_serializable(package="gpt2_multi")
class TFGPT2ForQuestionAnswering(TFGPT2PreTrainedModel):
    """GPT-2 with a span head ``qa_outputs`` (E -> 2).

    ``call(..., start_positions (B,), end_positions (B,))`` -> :class:`TFQuestionAnsweringModelOutput`:
    ``start_logits (B, T)``, ``end_logits (B, T)`` and ``loss`` = mean of the two cross-entropies;
    positions outside the sequence are clamped to T and ignored (HF).
    """

    architecture = "GPT2ForQuestionAnswering"
    call_order = CALL_ORDER + ("start_positions", "end_positions")

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.qa_outputs = _dense(2, "qa_outputs", self.config.initializer_range, "qa_outputs", dtype=self.dtype_policy)
        self.build(None)

    def _build_head(self):
        self.qa_outputs.build((None, self.config.n_embd))

    def call(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
             position_ids=None, head_mask=None, inputs_embeds=None, use_cache=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, start_positions=None, end_positions=None,
             training=False):
        args = self._unpack(input_ids, call_arguments(locals()))
        args.setdefault("use_cache", False)  # HF's QA model returns no cache
        body = self._body(args, training)
        logits = self.qa_outputs(body.last_hidden_state)
        start_logits, end_logits = tf.unstack(logits, num=2, axis=-1)
        loss = None
        if args.get("start_positions") is not None and args.get("end_positions") is not None:
            loss = _question_answering_loss(start_logits, end_logits, to_tensor(args["start_positions"]),
                                            to_tensor(args["end_positions"]))
        return self._finish(args, TFQuestionAnsweringModelOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits,
            hidden_states=body.hidden_states, attentions=body.attentions))

    def _main_output_key(self) -> str:
        return "start_logits"


# ---------------------------------------------------------------------------------- wrappers
# None: the Keras models above are the public classes (no HF-style wrapper around a module, as Flax has).
