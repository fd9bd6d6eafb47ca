"""``generate()`` for the TensorFlow models (HF's TF contract): greedy, sampling and beam search.

Shapes: B = batch, P = prompt length, Pb = P rounded up to a bucket of :attr:`prompt_bucket`
(left-padded), N = new tokens, L = Pb + N (static cache length), V = vocab, H = heads, D = head_dim.

Greedy and sampling run by default as one ``tf.function(jit_compile=True)``: a prefill of the
bucketed prompt, then a ``tf.while_loop`` that feeds one token per step through the blocks with a
static key/value cache, one array ``(n_layer, 2, B, H, L, D)``, written in place with XLA's
``dynamic_update_slice``.
Attention uses the model's own :meth:`TFGPT2Attention._attn` (so every attention flag of the config
holds) with an additive bias ``(B, 1, T, L)`` that is both causal and the padding mask. Because the
prompt is padded to a bucket, a new prompt length within the bucket reuses the compiled program.
``jit_compile=False`` runs the very same loop eagerly (``tf.while_loop`` is a Python loop there).

Positions follow the attention mask (``cumsum - 1``), so a left-padded row decodes exactly as the
prompt alone. Beam search follows HF's vectorised beam search (4.4x-4.57) eagerly, with the model's
concatenating cache; its bookkeeping is numpy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from gpt2_multi import outputs as _shared
from gpt2_multi import validation
from gpt2_multi.generation import GenerationConfig, position_ids_from_mask

logger = logging.getLogger(__name__)

__all__ = [
    "TFGenerationMixin",
    "TFGreedySearchDecoderOnlyOutput",
    "TFSampleDecoderOnlyOutput",
    "TFBeamSearchDecoderOnlyOutput",
    "process_logits",
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
@dataclass(frozen=True)
class _Settings:
    """The static (trace-time) part of a GenerationConfig: what changes the program, not its inputs."""

    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    eos: tuple[int, ...]
    pad: int
    output_scores: bool

    @classmethod
    def of(cls, config: GenerationConfig, pad: int) -> _Settings:
        return cls(bool(config.do_sample), float(config.temperature), int(config.top_k), float(config.top_p),
                   float(config.repetition_penalty), int(config.no_repeat_ngram_size), tuple(config.eos_token_ids),
                   int(pad), bool(config.output_scores))


def _seen_tokens(sequences, valid, vocab_size):
    """``(B, S)`` ids and a ``(B, S)`` bool mask -> ``(B, V)`` int32 count of each id among the valid positions."""
    b, s = tf.shape(sequences)[0], tf.shape(sequences)[1]
    in_vocab = (sequences >= 0) & (sequences < vocab_size)
    ids = tf.where(in_vocab, sequences, 0)
    rows = tf.broadcast_to(tf.range(b)[:, None], [b, s])
    index = tf.reshape(tf.stack([rows, ids], axis=-1), [-1, 2])
    updates = tf.reshape(tf.cast(valid & in_vocab, tf.int32), [-1])
    return tf.tensor_scatter_nd_add(tf.zeros([b, vocab_size], tf.int32), index, updates)


def process_logits(scores, sequences, cur_len, new_so_far, min_new, settings: _Settings, start=0):
    """HF's logits processors in HF's order, in TensorFlow (graph- and XLA-safe).

    Args:
        scores: ``(B, V)`` float32 next-token scores.
        sequences: ``(B, S)`` int token buffer; the tokens so far are columns ``[start, cur_len)``
            (``start`` skips the bucket padding generate adds; the caller's own left padding counts, as in HF).
        cur_len, new_so_far, min_new: scalars (ints or int32 tensors).
        settings: the static settings (:class:`_Settings`).

    Order: repetition penalty, no-repeat n-gram, min new tokens (eos -> -inf); when sampling, then
    temperature, top-k, top-p. Equals :func:`gpt2_multi.generation.reference_process_logits`.
    """
    scores = tf.cast(scores, tf.float32)
    sequences = tf.cast(sequences, tf.int32)
    vocab_size = scores.shape[-1] if scores.shape[-1] is not None else tf.shape(scores)[-1]
    neg_inf = tf.constant(-np.inf, tf.float32)
    cols = tf.range(tf.shape(sequences)[1])[None, :]
    valid = (cols >= start) & (cols < cur_len)

    if settings.repetition_penalty != 1.0:
        seen = _seen_tokens(sequences, tf.broadcast_to(valid, tf.shape(sequences)), vocab_size) > 0
        penalty = settings.repetition_penalty
        scores = tf.where(seen, tf.where(scores < 0, scores * penalty, scores / penalty), scores)

    n = settings.no_repeat_ngram_size
    total = sequences.shape[1] if sequences.shape[1] is not None else tf.shape(sequences)[1]
    if n > 0 and not (isinstance(total, int) and total < n):
        width = total - n + 1  # windows starting at i = 0 .. S - n
        starts = tf.range(width)
        window_ok = (starts >= start) & (starts + n - 1 < cur_len)  # the whole n-gram is real tokens
        match = tf.broadcast_to(window_ok[None, :], [tf.shape(sequences)[0], width])
        for j in range(n - 1):  # the window's first n-1 tokens equal the last n-1 tokens
            prefix_j = tf.gather(sequences, tf.maximum(cur_len - (n - 1) + j, 0), axis=1)[:, None]
            match = match & (sequences[:, j:j + width] == prefix_j)
        banned = _seen_tokens(sequences[:, n - 1:n - 1 + width], match, vocab_size) > 0
        scores = tf.where(banned, neg_inf, scores)

    eos = [e for e in settings.eos if 0 <= e < (vocab_size if isinstance(vocab_size, int) else 1 << 62)]
    if eos:
        is_eos = tf.reduce_any(tf.equal(tf.range(vocab_size)[:, None], tf.constant(eos, tf.int32)[None, :]), axis=1)
        scores = tf.where(is_eos[None, :] & (new_so_far < min_new), neg_inf, scores)

    if settings.do_sample:
        if settings.temperature != 1.0:
            scores = scores / settings.temperature
        k = settings.top_k
        if isinstance(vocab_size, int):
            k = min(k, vocab_size)
        if k > 0 and (not isinstance(vocab_size, int) or k < vocab_size):
            kth = tf.math.top_k(scores, k=k, sorted=True).values[:, -1:]
            scores = tf.where(scores < kth, neg_inf, scores)
        if settings.top_p < 1.0:
            order = tf.argsort(scores, axis=-1, direction="ASCENDING", stable=True)
            sorted_scores = tf.gather(scores, order, batch_dims=1)
            cumulative = tf.cumsum(tf.nn.softmax(sorted_scores, axis=-1), axis=-1)
            remove = cumulative <= 1.0 - settings.top_p
            keep_last = tf.one_hot(tf.shape(scores)[-1] - 1, tf.shape(scores)[-1], on_value=True, off_value=False,
                                   dtype=tf.bool)
            remove = remove & ~keep_last[None, :]
            inverse = tf.argsort(order, axis=-1, stable=True)
            scores = tf.where(tf.gather(remove, inverse, batch_dims=1), neg_inf, scores)
    return scores


# ------------------------------------------------------------------------------------ the static-cache forward
def _forward_static(model, ids, positions, kv, write_at, bias):
    """Tokens ``ids (B, T)`` at ``positions (B, T)``, written into the cache ``kv`` at column ``write_at``.

    ``kv``: every layer's keys and values in one array ``(n_layer, 2, B, H, L, D)``; ``bias (B, 1, T, L)``
    additive (0 / dtype min). Returns ``(hidden of the last token (B, E), updated kv)``. Numerics are the
    model's: its layers and its :meth:`TFGPT2Attention._attn`.

    One array rather than a tuple of per-layer caches is a speed choice: XLA then updates it in place. With
    per-layer caches that are both attended to and carried by the loop, XLA's fusion copied each cache
    twice per step (48 full-cache copies per token for GPT-2 small).
    """
    body = model.transformer
    x = body.wte(ids)
    x = x + tf.cast(body.wpe(positions), x.dtype)
    for i, block in enumerate(body.h):
        attn = block.attn
        q, k, v = tf.split(attn.c_attn(block.ln_1(x)), 3, axis=2)
        q, k, v = attn._split_heads(q), attn._split_heads(k), attn._split_heads(v)
        kv = xla.dynamic_update_slice(kv, tf.cast(tf.stack([k, v])[None], kv.dtype), tf.stack([i, 0, 0, 0, write_at, 0]))
        out, _ = attn._attn(q, kv[i, 0], kv[i, 1], bias, None, False)
        x = x + attn.c_proj(attn._merge_heads(out))
        x = x + block.mlp(block.ln_2(x))
    return body.ln_f(x[:, -1, :]), kv


_MASK32 = 0xFFFFFFFF


def _hash32(x):
    """A 32-bit integer mix (Wellons' "lowbias32") on int64 holding uint32 values: the same bits eagerly and in XLA."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = (x * 0x7FEB352D) & _MASK32
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = (x * 0x846CA68B) & _MASK32
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _sample(scores, seed, step):
    """One token per row from ``softmax(scores)`` (B, V) by Gumbel-max; -inf scores are never drawn.

    The uniforms come from a counter-based hash of (seed, step, row, column) computed with integer ops, so eager
    and XLA runs draw the same numbers (TF's stateless RNG kernels differ between the two).
    """
    seed = tf.cast(seed, tf.int64) & _MASK32
    key = _hash32(tf.bitwise.bitwise_xor(_hash32(seed[0]), (seed[1] + tf.cast(step, tf.int64)) & _MASK32))
    b, v = tf.shape(scores, out_type=tf.int64)[0], tf.shape(scores, out_type=tf.int64)[1]
    counter = (tf.range(b, dtype=tf.int64)[:, None] * v + tf.range(v, dtype=tf.int64)[None, :]) & _MASK32
    bits = _hash32(tf.bitwise.bitwise_xor(_hash32(counter), key))
    u = (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * (2.0 ** -24)  # in (0, 1)
    return tf.cast(tf.argmax(scores - tf.math.log(-tf.math.log(u)), axis=-1), tf.int32)


def _bias(key_valid, write_at, t, dtype):
    """``(B, L)`` bool keys that exist -> ``(B, 1, t, L)`` additive bias: key j visible to query i iff j <= write_at + i."""
    length = tf.shape(key_valid)[1]
    causal = tf.range(length)[None, :] <= write_at + tf.range(t)[:, None]  # (t, L)
    visible = key_valid[:, None, None, :] & causal[None, None, :, :]
    return tf.where(visible, tf.zeros([], dtype), tf.constant(dtype.min, dtype))


def _decode(model, settings: _Settings, max_new: int, ids, mask, offset, min_new, seed):
    """The greedy / sampling loop. ``ids``, ``mask`` ``(B, Pb)``; returns ``(sequences (B, Pb + max_new), steps, scores)``."""
    model._generate_traces = getattr(model, "_generate_traces", 0) + (0 if tf.executing_eagerly() else 1)
    cfg = model.config
    dtype = tf.as_dtype(model.transformer.compute_dtype)
    batch, pb = ids.shape[0], ids.shape[1]
    if batch is None or pb is None:
        batch, pb = tf.shape(ids)[0], tf.shape(ids)[1]
    length = pb + max_new
    ids = tf.cast(ids, tf.int32)
    mask = tf.cast(mask, tf.int32)
    vocab = cfg.vocab_size

    key_valid = tf.concat([mask > 0, tf.ones([batch, max_new], tf.bool)], axis=1)  # (B, L): constant all along
    sequences = tf.concat([ids, tf.fill([batch, max_new], tf.constant(settings.pad, tf.int32))], axis=1)
    positions = tf.cumsum(mask, axis=1) - 1
    positions = tf.where(mask == 0, 1, positions)
    n_real = tf.reduce_sum(mask, axis=1)  # (B,) the position of the first new token

    kv = tf.zeros([cfg.n_layer, 2, batch, cfg.n_head, length, cfg.head_dim], dtype)
    hidden, kv = _forward_static(model, ids, positions, kv, tf.constant(0, tf.int32), _bias(key_valid, 0, pb, dtype))
    logits = tf.cast(model.project(hidden), tf.float32)

    eos = tf.constant(list(settings.eos) or [-1], tf.int32)
    seed = tf.cast(seed, tf.int32)
    scores_buf = tf.zeros([max_new if settings.output_scores else 1, batch, vocab], tf.float32)

    def select(t, logits, sequences, unfinished, scores_buf):
        scores = process_logits(logits, sequences, pb + t, t, min_new, settings, start=offset)
        if settings.do_sample:
            token = _sample(scores, seed, t)
        else:
            token = tf.cast(tf.argmax(scores, axis=-1), tf.int32)
        token = tf.where(unfinished, token, settings.pad)
        sequences = xla.dynamic_update_slice(sequences, token[:, None], tf.stack([0, pb + t]))
        if settings.eos:
            unfinished = unfinished & ~tf.reduce_any(tf.equal(token[:, None], eos[None, :]), axis=1)
        if settings.output_scores:
            scores_buf = xla.dynamic_update_slice(scores_buf, scores[None], tf.stack([t, 0, 0]))
        return token, sequences, unfinished, scores_buf

    def cond(t, logits, sequences, unfinished, scores_buf, kv):
        return (t < max_new - 1) & tf.reduce_any(unfinished)

    def body(t, logits, sequences, unfinished, scores_buf, kv):
        token, sequences, unfinished, scores_buf = select(t, logits, sequences, unfinished, scores_buf)
        write_at = pb + t
        hidden, kv = _forward_static(model, token[:, None], (n_real + t)[:, None], kv, write_at,
                                     _bias(key_valid, write_at, 1, dtype))
        logits = tf.cast(model.project(hidden), tf.float32)
        return t + 1, logits, sequences, unfinished, scores_buf, kv

    state = (tf.constant(0, tf.int32), logits, sequences, tf.ones([batch], tf.bool), scores_buf, kv)
    t, logits, sequences, unfinished, scores_buf, _ = tf.while_loop(cond, body, state, maximum_iterations=max_new)
    # The last token needs no forward pass; it exists only if some row was still running.
    any_running = tf.reduce_any(unfinished)
    _, sequences, _, scores_buf = select(t, logits, sequences, unfinished, scores_buf)
    steps = t + tf.cast(any_running, tf.int32)
    return sequences, steps, scores_buf


# ------------------------------------------------------------------------------------ the mixin
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
                 seed=None, jit_compile: bool = True, **kwargs):
        """Generate token ids after ``input_ids`` (HF's TF ``generate`` contract).

        Args:
            input_ids: ``(B, P)`` int prompt ids (left-padded for a batch of different lengths); also accepted
                as ``inputs=``, HF's TF name.
            attention_mask: ``(B, P)`` 1 for tokens, 0 for padding; inferred from ``pad_token_id`` when omitted.
            generation_config: a :class:`GenerationConfig` (default: the model's, from generation_config.json).
            seed: sampling seed, an int or a pair of ints (stateless RNG: the same seed gives the same tokens);
                None draws one from TensorFlow's global generator (``tf.random.set_seed`` makes it reproducible).
            jit_compile: run greedy / sampling as one XLA program (default) or eagerly; both give the same tokens.
            **kwargs: any :class:`GenerationConfig` field (``max_new_tokens``, ``do_sample``, ``top_k``,
                ``num_beams``, ``eos_token_id``, ``return_dict_in_generate``, ``output_scores`` ...); anything else
                raises TypeError.

        Returns:
            ``tf.Tensor`` int32 ``(B * num_return_sequences, P + n)``: the prompt (with its padding) then the new
            tokens, rows that finished early padded with ``pad_token_id``; ``n <= max_new_tokens`` (generation stops
            when every row is finished). With ``return_dict_in_generate=True`` an output with ``.sequences`` (and
            ``.scores``, a tuple of n ``(B, V)`` processed scores, when ``output_scores=True``).
        """
        if "inputs" in kwargs:  # HF's TF generate names its first argument `inputs`
            if input_ids is not None:
                raise TypeError("pass the prompt as input_ids or as inputs, not both")
            input_ids = kwargs.pop("inputs")
        if input_ids is None:
            raise validation.InputError("generate() needs input_ids (B, P): a prompt of at least one token")
        config = (generation_config or self._generation_defaults()).copy(**kwargs)
        ids = np.asarray(input_ids.numpy() if isinstance(input_ids, tf.Tensor) else input_ids)
        if ids.ndim == 1:
            ids = ids[None, :]
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise validation.InputError(f"input_ids must have shape (batch, prompt_length) with a non-empty prompt, got {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise validation.InputError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
        ids = ids.astype(np.int32)
        validation.check_input_ids(ids, self.config.vocab_size)
        batch, prompt_len = ids.shape
        eos = config.eos_token_ids
        pad = config.pad_token_id
        if pad is None and eos:
            logger.warning("Setting pad_token_id to eos_token_id:%d for open-end generation.", eos[0])
            pad = eos[0]
        config.pad_token_id = pad
        if attention_mask is None:
            can_infer = pad is not None and bool((ids == pad).any()) and pad not in eos
            mask = (ids != pad).astype(np.int32) if can_infer else np.ones_like(ids)
        else:
            mask = np.asarray(attention_mask.numpy() if isinstance(attention_mask, tf.Tensor) else attention_mask).astype(np.int32)
            if mask.shape != ids.shape:
                raise validation.InputError(f"attention_mask has shape {mask.shape} but input_ids has shape {ids.shape}")
        min_new, max_new = config.new_tokens(prompt_len, self.config.n_positions)

        if config.num_beams > 1:
            return self._beam_search(ids, mask, config, min_new, max_new, seed)

        if config.num_return_sequences > 1:  # HF: repeat_interleave, each prompt's copies adjacent
            ids = np.repeat(ids, config.num_return_sequences, axis=0)
            mask = np.repeat(mask, config.num_return_sequences, axis=0)
        bucket = max(int(self.prompt_bucket), 1)
        padded_len = -(-prompt_len // bucket) * bucket
        offset = padded_len - prompt_len
        fill = pad if pad is not None else 0
        ids_b = np.concatenate([np.full((ids.shape[0], offset), fill, np.int32), ids], axis=1)
        mask_b = np.concatenate([np.zeros((ids.shape[0], offset), np.int32), mask], axis=1)
        settings = _Settings.of(config, fill)
        seed_pair = self._seed_pair(seed) if config.do_sample else np.zeros(2, np.int32)
        run = self._decoder(settings, max_new, jit_compile)
        sequences, steps, scores = run(tf.constant(ids_b), tf.constant(mask_b), tf.constant(offset, tf.int32),
                                       tf.constant(min_new, tf.int32), tf.constant(seed_pair, tf.int32))
        steps = int(steps)
        out = sequences[:, offset:padded_len + steps]
        if not config.return_dict_in_generate:
            return out
        score_tuple = tuple(scores[i] for i in range(steps)) if config.output_scores else None
        cls = TFSampleDecoderOnlyOutput if config.do_sample else TFGreedySearchDecoderOnlyOutput
        return cls(sequences=out, scores=score_tuple)

    # -- helpers --
    @staticmethod
    def _seed_pair(seed) -> np.ndarray:
        if seed is None:
            return tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int32).numpy()
        pair = np.asarray(seed, dtype=np.int64).reshape(-1)
        if pair.size == 1:
            pair = np.array([pair[0], 0])
        if pair.size != 2:
            raise ValueError(f"seed must be an int or a pair of ints, got {seed!r}")
        return (pair % (2**31 - 1)).astype(np.int32)

    def _decoder(self, settings: _Settings, max_new: int, jit_compile: bool):
        """The decode loop for these static settings: a cached ``tf.function(jit_compile=True)`` or the eager function."""
        def run(ids, mask, offset, min_new, seed):
            return _decode(self, settings, max_new, ids, mask, offset, min_new, seed)

        if not jit_compile:
            return run
        cache = self.__dict__.setdefault("_generate_functions", {})
        key = (settings, max_new)
        if key not in cache:
            # autograph=False: the loop is an explicit tf.while_loop and nothing else needs converting; AutoGraph's
            # source transformation of these functions was a quarter of the first call's compile time.
            cache[key] = tf.function(run, jit_compile=True, autograph=False)
        return cache[key]

    # -- beam search (eager, HF's vectorised algorithm) --
    def _beam_logits(self, ids, mask, past):
        """One forward: ``ids (N, T)`` new tokens, ``mask (N, past + T)`` -> ``(last logits (N, V) float32, past)``."""
        positions = position_ids_from_mask(mask)[:, -ids.shape[1]:]
        out = self.transformer(tf.constant(ids), past_key_values=past, attention_mask=tf.constant(mask),
                               position_ids=tf.constant(positions.astype(np.int32)), use_cache=True, training=False)
        logits = self.project(out.last_hidden_state[:, -1, :])
        return tf.cast(logits, tf.float32), out.past_key_values

    def _beam_search(self, ids, mask, config: GenerationConfig, min_new: int, max_new: int, seed):
        nb, nrs = config.num_beams, config.num_return_sequences
        batch, prompt_len = ids.shape
        vocab = self.config.vocab_size
        max_length = prompt_len + max_new
        eos = config.eos_token_ids
        pad = config.pad_token_id
        settings = _Settings.of(config, pad if pad is not None else 0)
        length_penalty, early_stopping = config.length_penalty, config.early_stopping
        beams_to_keep = max(2, 1 + len(eos)) * nb
        top_num_beam_mask = np.arange(beams_to_keep) < nb
        fill = (pad or eos[0]) if eos else -1  # HF's `pad_token_id or eos_token_id[0] if eos_token_id is not None else -1`
        rng = np.random.default_rng(self._seed_pair(seed) if config.do_sample else 0)

        running = np.full((batch, nb, max_length), fill, np.int64)
        running[:, :, :prompt_len] = ids[:, None, :]
        sequences = running.copy()
        running_scores = np.zeros((batch, nb), np.float32)
        running_scores[:, 1:] = -1e9
        beam_scores = np.full((batch, nb), -1e9, np.float32)
        finished = np.zeros((batch, nb), bool)
        improvable = np.ones((batch, 1), bool)
        running_idx = np.full((batch, nb, max_new), -1, np.int64)
        beam_indices = running_idx.copy()
        flat_mask = np.repeat(mask, nb, axis=0)
        all_scores = []
        past, cur_len = None, prompt_len

        def gather(x, idx):  # x (B, K, ...), idx (B, K') -> (B, K', ...)
            return np.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)

        while True:
            flat = running[:, :, :cur_len].reshape(batch * nb, cur_len)
            new = flat if past is None else flat[:, -1:]
            logits, past = self._beam_logits(new.astype(np.int32), flat_mask, past)
            log_probs = tf.nn.log_softmax(logits, axis=-1)
            log_probs = process_logits(log_probs, tf.constant(flat, tf.int32), cur_len, cur_len - prompt_len, min_new, settings).numpy()
            if config.output_scores:
                all_scores.append(tf.constant(log_probs))
            acc = (log_probs.reshape(batch, nb, vocab) + running_scores[:, :, None]).reshape(batch, nb * vocab)

            if config.do_sample:  # sample beams_to_keep continuations without replacement (Gumbel top-k)
                with np.errstate(divide="ignore", invalid="ignore"):
                    gumbel = acc - np.log(-np.log(rng.uniform(size=acc.shape)))
                topk = np.argsort(-gumbel, axis=1, kind="stable")[:, :beams_to_keep]
            else:
                topk = np.argsort(-acc, axis=1, kind="stable")[:, :beams_to_keep]
            topk_scores = np.take_along_axis(acc, topk, axis=1)
            beam_of = topk // vocab
            topk_running_idx = gather(running_idx, beam_of)
            topk_running = gather(running, beam_of)
            token = topk % vocab
            topk_running[:, :, cur_len] = token
            topk_running_idx[:, :, cur_len - prompt_len] = beam_of + np.arange(batch)[:, None] * nb

            hits = np.isin(token, eos) | (cur_len + 1 >= max_length)

            still = topk_scores + hits.astype(np.float32) * -1.0e9
            nxt = np.argsort(-still, axis=1, kind="stable")[:, :nb]
            running = gather(topk_running, nxt)
            running_scores = np.take_along_axis(still, nxt, axis=1)
            running_idx = gather(topk_running_idx, nxt)

            just_done = hits & top_num_beam_mask[None, :]
            done_scores = topk_scores / float(cur_len + 1 - prompt_len) ** length_penalty
            full = finished.all(axis=1, keepdims=True) & (early_stopping is True)
            done_scores = done_scores + full * -1.0e9 + (~improvable) * -1.0e9 + (~just_done) * -1.0e9
            merged_scores = np.concatenate([beam_scores, done_scores.astype(np.float32)], axis=1)
            best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :nb]
            sequences = gather(np.concatenate([sequences, topk_running], axis=1), best)
            beam_scores = np.take_along_axis(merged_scores, best, axis=1)
            beam_indices = gather(np.concatenate([beam_indices, topk_running_idx], axis=1), best)
            finished = np.take_along_axis(np.concatenate([finished, just_done], axis=1), best, axis=1)

            reorder = running_idx[:, :, cur_len - prompt_len].reshape(-1)
            past = tuple(tf.gather(p, reorder, axis=1) for p in past)
            flat_mask = np.concatenate([flat_mask, np.ones((batch * nb, 1), flat_mask.dtype)], axis=1)
            cur_len += 1

            if early_stopping == "never" and length_penalty > 0.0:
                best_len = max_length - prompt_len
            else:
                best_len = cur_len - prompt_len
            best_running = running_scores[:, :1] / float(best_len) ** length_penalty
            worst_done = np.where(finished, beam_scores.min(axis=1, keepdims=True), -1.0e9)
            improvable = improvable & np.any(best_running > worst_done, axis=-1, keepdims=True)
            go_on = improvable.any() and not (finished.all() and early_stopping is True) and not hits.all()
            if not go_on:
                break

        sequences = sequences[:, :nrs].reshape(batch * nrs, -1)
        seq_scores = beam_scores[:, :nrs].reshape(-1)
        beam_indices = beam_indices[:, :nrs].reshape(batch * nrs, -1)
        generated = int((beam_indices + 1 != 0).sum(axis=1).max())
        out = tf.constant(sequences[:, :prompt_len + generated].astype(np.int32))
        if not config.return_dict_in_generate:
            return out
        return TFBeamSearchDecoderOnlyOutput(
            sequences=out, sequences_scores=tf.constant(seq_scores) if config.output_scores else None,
            scores=tuple(all_scores) if config.output_scores else None,
            beam_indices=tf.constant(beam_indices[:, :generated].astype(np.int32)))
