"""``generate()`` for the TensorFlow models (HF's TF contract): greedy, sampling and beam search.

Everything framework-free (prompt checks, pad / eos defaults, mask inference, lengths, expansion, the
static :class:`~gpt2_multi.generation.Settings`, beam bookkeeping) is :func:`gpt2_multi.generation.prepare`
and :class:`~gpt2_multi.generation.BeamSearch`; this module holds the TensorFlow work.

Shapes: N = rows (prompts x return sequences), T = prompt length, Pb = T rounded up to a bucket of
:attr:`TFGenerationMixin.prompt_bucket` (left-padded), M = new tokens at most, L = Pb + M (static cache
length), V = vocab, H = heads, D = head_dim.

Reference and fast paths:

* the **reference** is the model's own forward (``model(...)`` with HF's growing ``past_key_values``);
  beam search runs on it, eagerly, and the tests hold the decode step equal to it.
* the **fast** path (greedy and sampling, the default) is one ``tf.function(jit_compile=True)`` per
  :class:`~gpt2_multi.generation.Settings`: a prefill of the bucketed prompt, then a ``tf.while_loop`` that
  feeds one token per step through :func:`_forward_static`, the model's own blocks (``TFGPT2Block.call``)
  on a static key/value cache, one array ``(n_layer, 2, N, H, L, D)`` written in place by
  :func:`~gpt2_multi.tf.modeling.write_cache`, attention by :func:`~gpt2_multi.tf.modeling.attention_core`
  with an additive bias ``(N, 1, T, L)`` that is causal and the padding mask. A new prompt length within the
  bucket reuses the compiled program. ``jit_compile=False`` runs the very same loop eagerly.
* with a ``streamer``, the loop runs in Python over two XLA-compiled functions (the prefill, and one step:
  feed a token, choose the next), so each token can be handed to the streamer as it is chosen.

Sampling with ``seed=`` draws from the shared counter-based stream (:mod:`gpt2_multi.generation.sampling`),
written here in ``uint32`` ops: the same uniforms eagerly and under XLA, and the same as every backend's.
Positions follow the attention mask (``cumsum - 1``), so a left-padded row decodes exactly as the prompt alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from gpt2_multi import outputs as _shared
from gpt2_multi.generation import (
    BeamSearch,
    GenerationConfig,
    Plan,
    Settings,
    position_ids_from_mask,
    prepare,
    resolve_prompt,
    sampling,
)
from gpt2_multi.tf.inputs import shape_list

__all__ = [
    "TFGenerationMixin",
    "TFGreedySearchDecoderOnlyOutput",
    "TFSampleDecoderOnlyOutput",
    "TFBeamSearchDecoderOnlyOutput",
    "process_logits",
    "sample_tokens",
    "uniforms",
]


# ------------------------------------------------------------------------------------ outputs
@dataclass(repr=False, eq=False)
class TFGreedySearchDecoderOnlyOutput(_shared.ModelOutput):
    """``sequences (B * num_return_sequences, P + n)``; ``scores``: n tensors ``(B, V)`` of processed scores."""

    sequences: Any = None
    scores: Any = None


@dataclass(repr=False, eq=False)
class TFSampleDecoderOnlyOutput(_shared.ModelOutput):
    """As :class:`TFGreedySearchDecoderOnlyOutput`, for sampling (scores after temperature / top-k / top-p)."""

    sequences: Any = None
    scores: Any = None


@dataclass(repr=False, eq=False)
class TFBeamSearchDecoderOnlyOutput(_shared.ModelOutput):
    """``sequences (B * num_return_sequences, P + n)``, ``sequences_scores (B * num_return_sequences,)`` (length
    penalised), ``scores``: n tensors ``(B * num_beams, V)`` of processed log-probabilities, ``beam_indices``."""

    sequences: Any = None
    sequences_scores: Any = None
    scores: Any = None
    beam_indices: Any = None


# ------------------------------------------------------------------------------------ logits processors
def _seen_tokens(sequences, valid, vocab_size):
    """``(N, S)`` ids and a ``(N, S)`` bool mask -> ``(N, V)`` int32 count of each id among the valid positions."""
    n, s = tf.shape(sequences)[0], tf.shape(sequences)[1]
    in_vocab = (sequences >= 0) & (sequences < vocab_size)
    ids = tf.where(in_vocab, sequences, 0)
    rows = tf.broadcast_to(tf.range(n)[:, None], [n, s])
    index = tf.reshape(tf.stack([rows, ids], axis=-1), [-1, 2])
    updates = tf.reshape(tf.cast(valid & in_vocab, tf.int32), [-1])
    return tf.tensor_scatter_nd_add(tf.zeros([n, vocab_size], tf.int32), index, updates)


def _repetition_penalty(scores, sequences, start, cur_len, new_so_far, settings):
    cols = tf.range(tf.shape(sequences)[1])[None, :]
    valid = tf.broadcast_to((cols >= start) & (cols < cur_len), tf.shape(sequences))
    seen = _seen_tokens(sequences, valid, tf.shape(scores)[-1]) > 0
    penalty = settings.repetition_penalty
    return tf.where(seen, tf.where(scores < 0, scores * penalty, scores / penalty), scores)


def _no_repeat_ngram(scores, sequences, start, cur_len, new_so_far, settings):
    n = settings.no_repeat_ngram_size
    total = sequences.shape[1] if sequences.shape[1] is not None else tf.shape(sequences)[1]
    if isinstance(total, int) and total < n:
        return scores
    width = total - n + 1  # windows starting at i = 0 .. S - n
    starts = tf.range(width)
    window_ok = (starts >= start) & (starts + n - 1 < cur_len)  # the whole n-gram is real tokens
    match = tf.broadcast_to(window_ok[None, :], [tf.shape(sequences)[0], width])
    for j in range(n - 1):  # the window's first n-1 tokens equal the last n-1 tokens
        prefix_j = tf.gather(sequences, tf.maximum(cur_len - (n - 1) + j, 0), axis=1)[:, None]
        match = match & (sequences[:, j:j + width] == prefix_j)
    banned = _seen_tokens(sequences[:, n - 1:n - 1 + width], match, tf.shape(scores)[-1]) > 0
    return tf.where(banned, -np.inf, scores)


def _min_new_tokens(scores, sequences, start, cur_len, new_so_far, settings):
    is_eos = tf.reduce_any(tf.equal(tf.range(tf.shape(scores)[-1])[:, None], tf.constant(settings.eos, tf.int32)[None, :]), axis=1)
    return tf.where(is_eos[None, :] & (new_so_far < settings.min_new), -np.inf, scores)


def _temperature(scores, sequences, start, cur_len, new_so_far, settings):
    return scores / settings.temperature


def _top_k(scores, sequences, start, cur_len, new_so_far, settings):
    kth = tf.math.top_k(scores, k=settings.top_k, sorted=True).values[:, -1:]
    return tf.where(scores < kth, -np.inf, scores)


def _top_p(scores, sequences, start, cur_len, new_so_far, settings):
    order = tf.argsort(scores, axis=-1, direction="ASCENDING", stable=True)
    sorted_scores = tf.gather(scores, order, batch_dims=1)
    cumulative = tf.cumsum(tf.nn.softmax(sorted_scores, axis=-1), axis=-1)
    remove = cumulative <= 1.0 - settings.top_p
    vocab = tf.shape(scores)[-1]
    remove = remove & ~tf.one_hot(vocab - 1, vocab, on_value=True, off_value=False, dtype=tf.bool)[None, :]  # keep the best
    inverse = tf.argsort(order, axis=-1, stable=True)
    return tf.where(tf.gather(remove, inverse, batch_dims=1), -np.inf, scores)


#: each named step of :data:`gpt2_multi.generation.PROCESSORS`, as traceable array ops on
#: ``(scores (N, V), sequences (N, S), start, cur_len, new_so_far, settings)``
_PROCESSOR_OPS = {
    "repetition_penalty": _repetition_penalty,
    "no_repeat_ngram": _no_repeat_ngram,
    "min_new_tokens": _min_new_tokens,
    "temperature": _temperature,
    "top_k": _top_k,
    "top_p": _top_p,
}


def process_logits(scores, sequences, cur_len, new_so_far, settings: Settings, start=0):
    """The logits processors :attr:`Settings.processors` lists, in that order, in TensorFlow (graph- and XLA-safe).

    Args:
        scores: ``(N, V)`` float32 next-token scores.
        sequences: ``(N, S)`` int token buffer; the tokens so far are columns ``[start, cur_len)``
            (``start`` skips the bucket padding generate adds; the caller's own left padding counts, as in HF).
        cur_len, new_so_far: scalars (ints or int32 tensors); ``new_so_far`` counts the generated tokens.
        settings: the static :class:`~gpt2_multi.generation.Settings` (its ``min_new`` and ``eos`` too).

    Equals :func:`gpt2_multi.generation.reference_process_logits` (the tests hold it so).
    """
    scores = tf.cast(scores, tf.float32)
    sequences = tf.cast(sequences, tf.int32)
    for name in settings.processors:
        scores = _PROCESSOR_OPS[name](scores, sequences, start, cur_len, new_so_far, settings)
    return scores


# ------------------------------------------------------------------------------------ the seeded stream
def _u32(value: int) -> tf.Tensor:
    return tf.constant(value, tf.uint32)


def _mix32(x: tf.Tensor) -> tf.Tensor:
    """lowbias32 on uint32 (wrap-around multiplication): :func:`gpt2_multi.generation.sampling.mix32`."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))
    x = x * _u32(sampling.MIX_MUL_1)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(15)))
    x = x * _u32(sampling.MIX_MUL_2)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))


def uniforms(seed, step, rows, cols) -> tf.Tensor:
    """``(rows, cols)`` float32 uniforms of the shared stream: bit for bit :func:`gpt2_multi.generation.sampling.uniforms`.

    ``seed``: the seed's ``(low, high)`` 32-bit words, a ``(2,)`` uint32 tensor (:func:`sampling.seed_words`);
    ``step``: the generated tokens so far (int scalar); ``rows`` / ``cols`` ints or int32 scalars.
    """
    seed = tf.cast(seed, tf.uint32)
    salted = tf.bitwise.bitwise_xor(seed[1], tf.cast(step, tf.uint32) + _u32(sampling.STEP_SALT))
    key = _mix32(tf.bitwise.bitwise_xor(_mix32(seed[0]), _mix32(salted)))
    counter = (tf.cast(tf.range(rows), tf.uint32)[:, None] * tf.cast(cols, tf.uint32)
               + tf.cast(tf.range(cols), tf.uint32)[None, :])
    bits = _mix32(tf.bitwise.bitwise_xor(_mix32(counter), key))
    return (tf.cast(tf.bitwise.right_shift(bits, _u32(8)), tf.float32) + 0.5) * (2.0 ** -24)


def _noisy(scores, seed, step):
    """``scores (R, C)`` plus the stream's Gumbel noise ``-log(-log(u))`` for this step."""
    shape = tf.shape(scores)
    return scores - tf.math.log(-tf.math.log(uniforms(seed, step, shape[0], shape[1])))


def sample_tokens(scores, seed, step) -> tf.Tensor:
    """Gumbel-max over processed ``scores (N, V)``: one int32 token per row, drawn from ``softmax(scores)``;
    a -inf score is never drawn. Equals :func:`gpt2_multi.generation.sampling.reference_sample`."""
    return tf.argmax(_noisy(tf.cast(scores, tf.float32), seed, step), axis=-1, output_type=tf.int32)


def _sample_without_replacement(scores, seed, step, k):
    """Gumbel top-``k`` over ``scores (B, K * V)``: ``(scores, flat indices)`` of ``k`` distinct candidates per
    row, in the order of their noisy scores (beam sampling; the reference is
    :func:`~gpt2_multi.generation.sampling.reference_sample_without_replacement`)."""
    index = tf.math.top_k(_noisy(scores, seed, step), k=k, sorted=True).indices
    return tf.gather(scores, index, batch_dims=1), index


# ------------------------------------------------------------------------------------ the static-cache decode step
def _forward_static(model, ids, positions, kv, write_at, bias):
    """Tokens ``ids (N, T)`` at ``positions (N, T)``, their keys and values written into the cache ``kv`` at
    column ``write_at``. Returns ``(logits of the last token (N, V) float32, updated kv)``.

    ``kv``: every layer's keys and values in one array ``(n_layer, 2, N, H, L, D)``; ``bias (N, 1, T, L)``
    additive. The model's own layers: its embeddings, each ``TFGPT2Block.call`` (so its LayerNorms, Conv1Ds,
    MLP, ``write_cache`` and ``attention_core``), ``ln_f`` and the LM projection.

    One array rather than a tuple of per-layer caches is a speed choice: XLA then updates it in place. With
    per-layer caches that are both attended to and carried by the loop, XLA's fusion copied each cache
    twice per step (48 full-cache copies per token for GPT-2 small).
    """
    body = model.transformer
    x = body.wte(ids)
    x = x + tf.cast(body.wpe(positions), x.dtype)
    for block in body.h:
        x, kv, _, _ = block.call(x, layer_past=kv, attention_bias=bias, cache_index=write_at)
    return tf.cast(model.project(body.ln_f(x[:, -1, :])), tf.float32), kv


# ------------------------------------------------------------------------------------ greedy / sampling
# The loop state: (t, token, sequences, unfinished, scores, kv): the index of the last chosen token, that
# token (N,), the (N, L) buffer (bucket padding, prompt, new tokens, pad), (N,) bool rows still running, the
# processed scores (M, N, V) (or a (1, N, V) placeholder) and the cache. The constants: (key_valid (N, L),
# n_real (N,) the position of the first new token, offset (bucket padding columns), seed (2,) uint32).

def _choose(settings: Settings, t, logits, sequences, unfinished, scores_buf, offset, seed):
    """Process ``logits (N, V)``, pick token ``t`` of each row (argmax, or the seeded stream), write it."""
    pb = tf.shape(sequences)[1] - settings.max_new
    scores = process_logits(logits, sequences, pb + t, t, settings, start=offset)
    if settings.do_sample:
        token = sample_tokens(scores, seed, t)
    else:
        token = tf.argmax(scores, axis=-1, output_type=tf.int32)
    token = tf.where(unfinished, token, settings.pad)
    sequences = xla.dynamic_update_slice(sequences, token[:, None], tf.stack([0, pb + t]))
    if settings.eos:
        unfinished = unfinished & ~tf.reduce_any(tf.equal(token[:, None], tf.constant(settings.eos, tf.int32)[None, :]), axis=1)
    if settings.output_scores:
        scores_buf = xla.dynamic_update_slice(scores_buf, scores[None], tf.stack([t, 0, 0]))
    return token, sequences, unfinished, scores_buf


def _start(model, settings: Settings, ids, mask, offset, seed):
    """Prefill the bucketed prompt ``ids``, ``mask`` ``(N, Pb)`` and choose the first token: ``(state, constants)``."""
    model._generate_traces = getattr(model, "_generate_traces", 0) + (0 if tf.executing_eagerly() else 1)
    cfg = model.config
    dtype = tf.as_dtype(model.transformer.compute_dtype)
    n, pb = shape_list(ids)
    max_new = settings.max_new
    ids = tf.cast(ids, tf.int32)
    mask = tf.cast(mask, tf.int32)
    key_valid = tf.concat([mask > 0, tf.ones([n, max_new], tf.bool)], axis=1)  # (N, L): constant all along
    sequences = tf.concat([ids, tf.fill([n, max_new], tf.constant(settings.pad, tf.int32))], axis=1)
    positions = tf.where(mask == 0, 1, tf.cumsum(mask, axis=1) - 1)
    n_real = tf.reduce_sum(mask, axis=1)
    kv = tf.zeros([cfg.n_layer, 2, n, cfg.n_head, pb + max_new, cfg.head_dim], dtype)
    bias = model.transformer.static_cache_bias(key_valid, 0, pb, dtype)
    logits, kv = _forward_static(model, ids, positions, kv, tf.constant(0, tf.int32), bias)
    scores_buf = tf.zeros([max_new if settings.output_scores else 1, n, cfg.vocab_size], tf.float32)
    t = tf.constant(0, tf.int32)
    token, sequences, unfinished, scores_buf = _choose(settings, t, logits, sequences, tf.ones([n], tf.bool),
                                                       scores_buf, offset, seed)
    return (t, token, sequences, unfinished, scores_buf, kv), (key_valid, n_real, offset, seed)


def _advance(model, settings: Settings, state, constants):
    """One step: feed the last chosen token through the model, choose the next. Returns the new state."""
    t, token, sequences, unfinished, scores_buf, kv = state
    key_valid, n_real, offset, seed = constants
    write_at = tf.shape(sequences)[1] - settings.max_new + t
    logits, kv = _forward_static(model, token[:, None], (n_real + t)[:, None], kv, write_at,
                                 model.transformer.static_cache_bias(key_valid, write_at, 1, kv.dtype))
    token, sequences, unfinished, scores_buf = _choose(settings, t + 1, logits, sequences, unfinished, scores_buf,
                                                       offset, seed)
    return t + 1, token, sequences, unfinished, scores_buf, kv


#: kernels stored transposed, ``(out, in)``, that the products of one row read instead of their layer's own
#: ``(in, out)`` one: set by :func:`row_kernels` for generation's batch-1 half-precision decode step.
_ROW_KERNELS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("gpt2_multi_tf_row_kernels", default=None)


@contextlib.contextmanager
def row_kernels(layers: list, kernels: list):
    """While tracing a step, ``layers[i]`` (a :class:`~gpt2_multi.tf.modeling.TFConv1D`, or a model for its LM head) computes one-row
    half-precision products from ``kernels[i]``, its kernel transposed to ``(out, in)``.

    Why: XLA on CPU runs ``(1, in) @ W`` in bfloat16 as a fused matrix-vector loop that reads ``W`` as stored,
    but only along contiguous rows, i.e. from an ``(out, in)`` kernel (Flax's layout); from HF TF's ``(in, out)``
    it reads strided columns (10x slower), and without this the decode loop hoisted float32 copies of every
    weight out of the loop (measured in ``benchmarks/README.md``, issue 15). The numbers are the same products:
    float32 accumulation, rounded once (``modeling.row_product``).
    """
    token = _ROW_KERNELS.set({id(layer): kernel for layer, kernel in zip(layers, kernels)})
    try:
        yield
    finally:
        _ROW_KERNELS.reset(token)


def row_kernel(layer) -> tf.Tensor | None:
    """The transposed kernel :func:`row_kernels` set for ``layer``, or None (read by the model's layers)."""
    table = _ROW_KERNELS.get()
    return None if table is None else table.get(id(layer))


def _row_kernels(model, rows: int) -> tuple[list, list]:
    """``(layers, kernels)`` for :func:`row_kernels`: every Conv1D of the step and the
    LM head, each kernel transposed to ``(out, in)`` in the compute dtype, when the step multiplies one row in
    half precision (batch-1 bfloat16 / float16 decode); ``([], [])`` otherwise. Made once per ``generate``
    call: a transposed copy of the weights lives while generating."""
    dtype = tf.as_dtype(model.transformer.compute_dtype)
    if rows != 1 or dtype not in (tf.bfloat16, tf.float16):
        return [], []
    layers, kernels = [], []
    for block in model.transformer.h:
        for conv in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            layers.append(conv)
            kernels.append(tf.transpose(tf.cast(conv.weight, dtype)))
    layers.append(model)  # its project(): the tied table is (V, E) already, a separate head's kernel is (E, V)
    if model.lm_head is not None:
        kernels.append(tf.transpose(tf.cast(model.lm_head.kernel, dtype)))
    else:
        kernels.append(tf.cast(model.transformer.wte.embeddings, dtype))
    return layers, kernels


def _decode(model, settings: Settings, ids, mask, offset, seed, compiled: bool = False):
    """The whole greedy / sampling loop. Returns ``(sequences (N, Pb + M), tokens generated, scores)``.

    A batch-1 half-precision loop carries the transposed kernels of :func:`_row_kernels` as loop state and,
    ``compiled``, behind an optimization barrier: XLA's loop-invariant code motion would otherwise hoist a
    float32 copy of each (read at twice the bytes every step); as in the Flax stack's decode loop.
    """
    state, constants = _start(model, settings, ids, mask, offset, seed)
    layers, kernels = _row_kernels(model, shape_list(ids)[0])

    def cond(t, token, sequences, unfinished, *rest):
        return (t < settings.max_new - 1) & tf.reduce_any(unfinished)

    def body(*carried):
        state, weights = carried[:6], list(carried[6:])
        if weights and compiled:
            weights = list(xla.optimization_barrier(*weights))
        with row_kernels(layers, weights):
            return _advance(model, settings, state, constants) + tuple(weights)

    out = tf.while_loop(cond, body, state + tuple(kernels), maximum_iterations=settings.max_new)
    t, _, sequences, _, scores_buf = out[:5]
    return sequences, t + 1, scores_buf


# ------------------------------------------------------------------------------------ the mixin
def _numpy(x: Any) -> Any:
    return x.numpy() if isinstance(x, (tf.Tensor, tf.Variable)) else x


def _seed_int(seed: Any) -> int | None:
    """``seed=``: an int in [0, 2**64); HF-TF's pair ``(a, b)`` (each in [0, 2**32)) is ``a + (b << 32)``."""
    seed = _numpy(seed)
    if seed is None or isinstance(seed, (bool, int, np.integer)):
        return seed
    pair = np.asarray(seed)
    if pair.ndim == 0:
        return pair.item()
    if pair.shape == (1,):
        return pair[0].item()
    if pair.shape != (2,) or not np.issubdtype(pair.dtype, np.integer) or not ((0 <= pair) & (pair < 2**32)).all():
        raise ValueError(f"seed must be an int, or a pair (a, b) of ints in [0, 2**32) meaning a + (b << 32); got {seed!r}")
    return int(pair[0]) + (int(pair[1]) << 32)


class TFGenerationMixin:
    """``generate()`` for :class:`TFGPT2LMHeadModel` and :class:`TFGPT2DoubleHeadsModel` (uses their LM logits)."""

    #: prompts are left-padded to a multiple of this many tokens, so the compiled loop is reused
    prompt_bucket: int = 32
    generation_config: GenerationConfig | None = None

    def _generation_defaults(self) -> GenerationConfig:
        if self.generation_config is None:
            self.generation_config = GenerationConfig.from_model_config(self.config)
        return self.generation_config

    def generate(self, input_ids=None, attention_mask=None, generation_config: GenerationConfig | None = None,
                 seed=None, jit_compile: bool = True, streamer=None, **kwargs):
        """Generate token ids after ``input_ids`` (HF's TF ``generate`` contract).

        Args:
            input_ids: ``(B, P)`` int prompt ids (left-padded for a batch of different lengths); also accepted
                as ``inputs=``, HF's TF name.
            attention_mask: ``(B, P)`` 1 for tokens, 0 for padding; inferred from ``pad_token_id`` when omitted.
            generation_config: a :class:`GenerationConfig` (default: the model's, from generation_config.json).
            seed: sampling seed, an int in [0, 2**64) (the shared counter-based stream: the same tokens in every
                backend, eagerly and compiled), or HF-TF's pair ``(a, b)`` of ints in [0, 2**32), taken as
                ``a + (b << 32)``. None draws one from TensorFlow's global generator (``tf.random.set_seed``
                makes it reproducible).
            jit_compile: run greedy / sampling as XLA programs (default) or eagerly; both give the same tokens.
            streamer: anything with ``put`` / ``end`` (:mod:`gpt2_multi.streamers`): gets the prompt ``(N, P)``,
                then each new token ``(N,)``, then ``end()`` (also after an error). Not with beam search.
            **kwargs: any :class:`GenerationConfig` field (``max_new_tokens``, ``do_sample``, ``top_k``,
                ``num_beams``, ``eos_token_id``, ``return_dict_in_generate``, ``output_scores`` ...); anything else
                raises TypeError.

        Returns:
            ``tf.Tensor`` int32 ``(B * num_return_sequences, P + n)``: the prompt (with its padding) then the new
            tokens, rows that finished early padded with ``pad_token_id``; ``n <= max_new_tokens`` (generation stops
            when every row is finished). With ``return_dict_in_generate=True`` an output with ``.sequences`` (and
            ``.scores``, a tuple of n ``(B, V)`` processed scores, when ``output_scores=True``).
        """
        input_ids = resolve_prompt(input_ids, kwargs.pop("inputs", None))
        plan = prepare(self.config, generation_config or self._generation_defaults(), kwargs, _numpy(input_ids),
                       _numpy(attention_mask), seed=_seed_int(seed))
        settings = plan.settings
        if settings.do_sample and plan.seed is None:  # draw the seed from TF's global generator
            words = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int32).numpy()
            plan.seed = sampling.seed_words(int(words[0]) + (int(words[1]) << 32))
            plan.settings = settings = dataclasses.replace(settings, seeded=True)
        if settings.num_beams > 1:
            if streamer is not None:
                raise ValueError("a streamer cannot be used with beam search (the beams change their past): set num_beams=1")
            return self._beam_search(plan)

        bucket = max(int(self.prompt_bucket), 1)
        padded_len = -(-plan.prompt_length // bucket) * bucket
        offset = padded_len - plan.prompt_length
        # bucket padding: masked, skipped by the processors and cut from the output; any id in the vocabulary does
        ids = np.concatenate([np.zeros((plan.rows, offset), np.int32), plan.input_ids], axis=1)
        mask = np.concatenate([np.zeros((plan.rows, offset), np.int32), plan.attention_mask], axis=1)
        inputs = (tf.constant(ids), tf.constant(mask), tf.constant(offset, tf.int32),
                  tf.constant(np.array(plan.seed or (0, 0), np.uint32)))
        if streamer is None:
            sequences, steps, scores = self._decoder(settings, jit_compile)(*inputs)
        else:
            streamer.put(tf.constant(plan.input_ids))
            try:
                sequences, steps, scores = self._stream(settings, jit_compile, inputs, streamer)
            finally:  # also on an error, so that a reader of the stream is not left waiting
                streamer.end()
        steps = int(steps)
        out = sequences[:, offset:padded_len + steps]
        if not plan.config.return_dict_in_generate:
            return out
        score_tuple = tuple(scores[i] for i in range(steps)) if settings.output_scores else None
        cls = TFSampleDecoderOnlyOutput if settings.do_sample else TFGreedySearchDecoderOnlyOutput
        return cls(sequences=out, scores=score_tuple)

    # -- greedy / sampling --
    def _compiled(self, key: tuple, fn):
        """``fn`` as a cached ``tf.function(jit_compile=True)``, one per ``key`` (the Settings and the function)."""
        cache = self.__dict__.setdefault("_generate_functions", {})
        if key not in cache:
            # autograph=False: the loop is an explicit tf.while_loop and nothing else needs converting; AutoGraph's
            # source transformation of these functions was a quarter of the first call's compile time.
            cache[key] = tf.function(fn, jit_compile=True, autograph=False)
        return cache[key]

    def _decoder(self, settings: Settings, jit_compile: bool):
        """The decode loop for these settings: a cached XLA program, or the eager function."""
        def run(ids, mask, offset, seed):
            return _decode(self, settings, ids, mask, offset, seed, compiled=jit_compile)

        return self._compiled((settings, "decode"), run) if jit_compile else run

    def _stream(self, settings: Settings, jit_compile: bool, inputs, streamer):
        """The loop in Python over the prefill and one step (each an XLA program with ``jit_compile``), handing
        each chosen token ``(N,)`` to the streamer. Returns what :func:`_decode` returns."""
        layers, kernels = _row_kernels(self, shape_list(inputs[0])[0])

        def start(ids, mask, offset, seed):
            return _start(self, settings, ids, mask, offset, seed)

        def advance(state, constants, weights):
            with row_kernels(layers, weights):
                return _advance(self, settings, state, constants)

        if jit_compile:
            # keyed by whether the step reads transposed kernels: the traced closure holds its layer table
            start = self._compiled((settings, "start"), start)
            advance = self._compiled((settings, "advance", bool(layers)), advance)
        state, constants = start(*inputs)
        streamer.put(state[1])
        while int(state[0]) < settings.max_new - 1 and bool(tf.reduce_any(state[3])):
            state = advance(state, constants, kernels)
            streamer.put(state[1])
        return state[2], state[0] + 1, state[4]

    # -- beam search (eager, on the model's forward; HF's bookkeeping in gpt2_multi.generation.BeamSearch) --
    def _beam_logits(self, ids, mask, past):
        """One forward: ``ids (N, T)`` new tokens, ``mask (N, past + T)`` -> ``(last logits (N, V) float32, past)``."""
        positions = position_ids_from_mask(mask)[:, -ids.shape[1]:]
        out = self.transformer(tf.constant(ids, tf.int32), past_key_values=past, attention_mask=tf.constant(mask),
                               position_ids=tf.constant(positions.astype(np.int32)), use_cache=True, training=False)
        logits = self.project(out.last_hidden_state[:, -1, :])
        return tf.cast(logits, tf.float32), out.past_key_values

    def _beam_search(self, plan: Plan):
        settings = plan.settings
        vocab = self.config.vocab_size
        b, k, keep = plan.batch_size, settings.num_beams, settings.beam_candidates
        beams = BeamSearch(plan, vocab)
        seed = tf.constant(np.array(plan.seed or (0, 0), np.uint32))
        mask, new, past = plan.attention_mask, plan.input_ids, None
        all_scores = []
        while True:
            logits, past = self._beam_logits(new, mask, past)
            sequences = beams.sequences()
            cur = sequences.shape[1]
            log_probs = process_logits(tf.nn.log_softmax(logits, axis=-1), tf.constant(sequences, tf.int32), cur,
                                       cur - plan.prompt_length, settings)
            if settings.output_scores:
                all_scores.append(log_probs)
            total = tf.reshape(tf.reshape(log_probs, [b, k, vocab]) + beams.running_scores[:, :, None], [b, k * vocab])
            if settings.do_sample:  # keep candidates drawn without replacement (Gumbel top-k, the seeded stream)
                scores, index = _sample_without_replacement(total, seed, cur - plan.prompt_length, keep)
            else:
                scores, index = tf.math.top_k(total, k=keep, sorted=True)
            rows = beams.step(scores.numpy(), index.numpy())
            if beams.done:
                break
            past = tuple(tf.gather(p, rows, axis=1) for p in past)
            mask = np.concatenate([mask, np.ones((mask.shape[0], 1), mask.dtype)], axis=1)
            new = beams.last_tokens()[:, None]
        sequences, sequences_scores, beam_indices = beams.finalize()
        out = tf.constant(sequences.astype(np.int32))
        if not plan.config.return_dict_in_generate:
            return out
        return TFBeamSearchDecoderOnlyOutput(
            sequences=out, sequences_scores=tf.constant(sequences_scores) if settings.output_scores else None,
            scores=tuple(all_scores) if settings.output_scores else None,
            beam_indices=tf.constant(beam_indices.astype(np.int32)))
