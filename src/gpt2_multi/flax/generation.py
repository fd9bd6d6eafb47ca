"""``generate()`` for the Flax LM classes: greedy, sampling and beam search, HF's Flax contract.

``FlaxGenerationMixin`` is a base of :class:`FlaxGPT2LMHeadModel` and :class:`FlaxGPT2DoubleHeadsModel`
(the double-heads model generates with its LM logits)::

    out = model.generate(input_ids, attention_mask=mask, max_new_tokens=20)   # -> out.sequences (B, T + 20)
    out = model.generate(ids, do_sample=True, top_k=50, seed=0)               # the shared seeded stream
    out = model.generate(ids, do_sample=True, prng_key=jax.random.PRNGKey(0))  # jax.random
    out = model.generate(ids, num_beams=4, length_penalty=1.0, early_stopping=True)

Everything framework-free (prompt checks, pad / eos / mask inference, lengths, the expansion for beams and
``num_return_sequences``, the static :class:`~gpt2_multi.generation.Settings`) is
:func:`gpt2_multi.generation.prepare`; this module holds what must be traced.

The fast path (default, ``jit=True``) is one ``jax.jit``-ed program per :class:`Settings`: the prompt and then
one token per row per ``lax.while_loop`` step go through :meth:`FlaxGPT2LMHeadModule.decode_step` (the model's
own submodules, its attention core and cache write) on a cache laid out as one (n_layer, 2, N, H, L, D) array,
which XLA updates in place; tokens are chosen on device and the loop stops when every row has produced an eos
(or at ``max_length = T + max_new``). The compiled programs are kept in a module-level table: a second call
with the same settings does not recompile. The reference path (``jit=False`` / ``trace=False``) is a Python
loop over the model's own public ``__call__`` with HF's ``past_key_values`` cache collection; tests hold the
two equal. Positions come from the attention mask (``cumsum - 1``) and the mask is extended with ones over
the new positions, so a left-padded row generates exactly what it generates alone.

Sampling: with ``seed=N`` the draws come from the counter-based stream of
:mod:`gpt2_multi.generation.sampling` (Gumbel-max over the processed scores; for beam sampling Gumbel top-k
over each prompt's (num_beams * V) candidates), the same tokens in every backend; with ``prng_key=`` (or
neither: ``PRNGKey(0)``) from ``jax.random``.

Logits processors, in the order :attr:`Settings.processors` lists (the numpy reference is
:func:`gpt2_multi.generation.reference_process_logits`). Beam search is HF's (PyTorch, v4.57) vectorised
algorithm, kept in the graph (``_beam_step``); ``tests/test_flax_generation.py`` holds it equal to the shared
:class:`gpt2_multi.generation.BeamSearch`. ``return_dict_in_generate`` is accepted and ignored: as in HF's
Flax, the result is always an output object.

``streamer=`` (HF's contract: ``put`` of the prompt (N, T), of each new token (N,), then ``end()``, also after
an error; not with beam search) is fed from inside the compiled loop by ``jax.experimental.io_callback``,
compiled in only when a streamer is given.

Output (HF's Flax classes): ``FlaxGreedySearchOutput`` / ``FlaxSampleOutput`` / ``FlaxBeamSearchOutput``
with ``sequences`` (B * num_return_sequences, T + max_new): every row has the full length, positions
after a row's eos hold ``pad_token_id`` (as in HF's Flax generate). With ``output_scores=True`` also
``scores``: a tuple with one (B * num_return_sequences, V) array of processed scores per step taken
(for beam search (B * num_beams, V) processed log-probabilities, and ``sequences_scores`` (B * num_return_sequences,)).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from gpt2_multi.generation import GenerationConfig, Settings, prepare, resolve_prompt
from gpt2_multi.generation.sampling import MIX_MUL_1, MIX_MUL_2, STEP_SALT
from gpt2_multi.outputs import ModelOutput
from gpt2_multi.validation import InputError

Array = jax.Array
_NEG = -1.0e9  # HF's beam-search "impossible" score


# ------------------------------------------------------------------------------------------ outputs
@dataclass(repr=False, eq=False)
class FlaxGreedySearchOutput(ModelOutput):
    """``sequences`` (N, max_length); ``scores``: with output_scores, a tuple of (N, V) per step."""

    sequences: Any = None
    scores: Any = None


@dataclass(repr=False, eq=False)
class FlaxSampleOutput(ModelOutput):
    """``sequences`` (N, max_length); ``scores``: with output_scores, a tuple of (N, V) per step."""

    sequences: Any = None
    scores: Any = None


@dataclass(repr=False, eq=False)
class FlaxBeamSearchOutput(ModelOutput):
    """``sequences`` (B * num_return_sequences, max_length); ``sequences_scores`` their final beam scores;
    ``scores``: with output_scores, a tuple of (B * num_beams, V) processed log-probabilities per step."""

    sequences: Any = None
    scores: Any = None
    sequences_scores: Any = None


# ------------------------------------------------------------------------------------------ the seeded stream
def _mix32(x: Array) -> Array:
    """lowbias32 on uint32 (multiplication wraps mod 2**32, as the stream's definition asks)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(MIX_MUL_1)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(MIX_MUL_2)
    return x ^ (x >> 16)


def stream_uniforms(seed_words: Array, step: Array | int, rows: int, cols: int) -> Array:
    """(rows, cols) float32 uniforms in (0, 1) of :mod:`gpt2_multi.generation.sampling`'s stream, bit for bit.

    ``seed_words`` (2,) uint32: the seed's low and high words; ``step`` the generated-token counter (traced or
    not). Integer ops only, up to the exact float conversion, so eager and jitted calls agree exactly.
    """
    words = jnp.asarray(seed_words, jnp.uint32)
    salted = words[1] ^ (jnp.asarray(step).astype(jnp.uint32) + jnp.uint32(STEP_SALT))
    key = _mix32(_mix32(words[0]) ^ _mix32(salted))
    counter = jnp.arange(rows, dtype=jnp.uint32)[:, None] * jnp.uint32(cols) + jnp.arange(cols, dtype=jnp.uint32)[None, :]
    bits = _mix32(_mix32(counter) ^ key)
    return ((bits >> 8).astype(jnp.float32) + 0.5) * (2.0**-24)


def _gumbel(seed_words: Array, step: Array | int, rows: int, cols: int) -> Array:
    return -jnp.log(-jnp.log(stream_uniforms(seed_words, step, rows, cols)))


# ------------------------------------------------------------------------------------------ logits processors
# Each named step of gpt2_multi.generation.PROCESSORS as traceable array ops on scores (N, V) float32, with
# ``sequences`` (N, L) a static buffer whose first ``cur_len`` positions are the tokens so far (prompt, padding
# included, as HF sees them).
def _repetition_penalty(scores, sequences, cur_len, prompt_len, s):
    n, v = scores.shape
    valid = jnp.broadcast_to(jnp.arange(sequences.shape[1])[None, :] < cur_len, sequences.shape)
    seen = jnp.zeros((n, v), jnp.int32).at[jnp.arange(n)[:, None], sequences].add(valid.astype(jnp.int32)) > 0
    penalised = jnp.where(scores < 0, scores * s.repetition_penalty, scores / s.repetition_penalty)
    return jnp.where(seen, penalised, scores)


def _no_repeat_ngram(scores, sequences, cur_len, prompt_len, s):
    n, v = scores.shape
    ng, length = s.no_repeat_ngram_size, sequences.shape[1]
    if length < ng:
        return scores
    # every n-gram start i whose first n-1 tokens equal the last n-1 tokens bans its n-th token
    starts = length - ng + 1
    match = jnp.arange(starts)[None, :] + ng - 1 < cur_len  # the whole n-gram is filled
    for j in range(ng - 1):
        last_j = jax.lax.dynamic_slice_in_dim(sequences, cur_len - ng + 1 + j, 1, axis=1)  # (N, 1)
        match = match & (sequences[:, j:j + starts] == last_j)
    banned_tokens = sequences[:, ng - 1:ng - 1 + starts]
    banned = jnp.zeros((n, v), jnp.int32).at[jnp.arange(n)[:, None], banned_tokens].add(match.astype(jnp.int32)) > 0
    return jnp.where(banned, -jnp.inf, scores)


def _min_new_tokens(scores, sequences, cur_len, prompt_len, s):
    eos_cols = jnp.zeros((scores.shape[1],), bool).at[jnp.array(s.eos)].set(True, mode="drop")
    too_short = (cur_len - prompt_len) < s.min_new
    return jnp.where(too_short & eos_cols[None, :], -jnp.inf, scores)


def _temperature(scores, sequences, cur_len, prompt_len, s):
    return scores / s.temperature


def _top_k(scores, sequences, cur_len, prompt_len, s):
    k = min(s.top_k, scores.shape[1])
    kth = jax.lax.top_k(scores, k)[0][:, -1:]
    return jnp.where(scores < kth, -jnp.inf, scores)


def _top_p(scores, sequences, cur_len, prompt_len, s):
    order = jnp.argsort(scores, axis=-1)  # ascending, as HF's top-p
    sorted_scores = jnp.take_along_axis(scores, order, axis=-1)
    cumulative = jnp.cumsum(jax.nn.softmax(sorted_scores, axis=-1), axis=-1)
    remove = (cumulative <= 1 - s.top_p).at[:, -1].set(False)  # keep at least one token
    sorted_scores = jnp.where(remove, -jnp.inf, sorted_scores)
    return jnp.zeros_like(scores).at[jnp.arange(scores.shape[0])[:, None], order].set(sorted_scores)


_PROCESSOR_FNS: dict[str, Callable] = {
    "repetition_penalty": _repetition_penalty, "no_repeat_ngram": _no_repeat_ngram, "min_new_tokens": _min_new_tokens,
    "temperature": _temperature, "top_k": _top_k, "top_p": _top_p,
}


def process_logits(scores: Array, sequences: Array, cur_len: Array | int, prompt_len: int, s: Settings) -> Array:
    """The active processors of ``s`` (:attr:`Settings.processors`, in that order) on next-token ``scores``
    (N, V) float32; ``sequences`` (N, L) holds the tokens so far in its first ``cur_len`` positions.
    Works traced and eagerly."""
    for name in s.processors:
        scores = _PROCESSOR_FNS[name](scores, sequences, cur_len, prompt_len, s)
    return scores


# ------------------------------------------------------------------------------------------ streaming
_STREAMS: dict[int, list] = {}  # id -> [streamer, the exception its put raised]; ids are traced, streamers not
_stream_ids = itertools.count()


def _stream_put(stream_id: np.ndarray, tokens: np.ndarray) -> None:
    """The host side of the compiled loop's ``io_callback``: one (N,) token array to the call's streamer."""
    entry = _STREAMS[int(stream_id)]
    try:
        entry[0].put(np.asarray(tokens))
    except BaseException as err:  # re-raised as itself by generate (XLA wraps it)
        entry[1] = err
        raise


# ------------------------------------------------------------------------------------------ greedy / sampling
def _choose_next(st: dict, logits: Array, prompt_len: int, s: Settings, stream: tuple = ()) -> dict:
    """Pick the token at position ``cur`` from ``logits`` (N, V), mark finished rows, advance ``cur``.

    ``stream``: ``(stream_id,)`` to hand the token to the call's streamer from inside the compiled loop."""
    cur = st["cur"]
    scores = process_logits(logits.astype(jnp.float32), st["seqs"], cur, prompt_len, s)
    st = dict(st)
    if not s.do_sample:
        token = jnp.argmax(scores, axis=-1)
    elif s.seeded:  # Gumbel-max on the shared stream: row r of the expanded batch, column = token id
        token = jnp.argmax(scores + _gumbel(st["key"], cur - prompt_len, *scores.shape), axis=-1)
    else:
        key, sub = jax.random.split(st["key"])
        token = jax.random.categorical(sub, scores, axis=-1)
        st["key"] = key
    token = jnp.where(st["finished"], s.pad, token).astype(jnp.int32)  # finished rows get padding
    if s.eos:
        st["finished"] = st["finished"] | jnp.isin(token, jnp.array(s.eos, jnp.int32))
    st["seqs"] = jax.lax.dynamic_update_slice(st["seqs"], token[:, None], (0, cur))
    if s.output_scores:
        st["scores"] = jax.lax.dynamic_update_slice(st["scores"], scores[None], (cur - prompt_len, 0, 0))
    if stream:
        io_callback(_stream_put, None, stream[0], token, ordered=True)
    st["cur"] = cur + 1
    return st


def _initial_state(input_ids: Array, attention_mask: Array, key: Array, vocab: int, s: Settings) -> tuple:
    """The extended mask (N, T + max_new), prompt positions (N, T) and the decode state at ``cur = T``."""
    n, t = input_ids.shape
    length = t + s.max_new
    ext_mask = jnp.ones((n, length), jnp.int32).at[:, :t].set(attention_mask)  # HF: ones over the new positions
    positions = jnp.where(attention_mask == 0, 1, jnp.cumsum(attention_mask, axis=-1) - 1).astype(jnp.int32)
    seqs = jnp.full((n, length), s.pad, jnp.int32).at[:, :t].set(input_ids)
    st = {"cur": jnp.array(t, jnp.int32), "seqs": seqs, "finished": jnp.zeros((n,), bool), "key": key,
          "next_pos": positions[:, -1] + 1}
    if s.output_scores:
        st["scores"] = jnp.zeros((s.max_new, n, vocab), jnp.float32)
    return ext_mask, positions, st


def _through_barrier(params: dict, rows: int) -> bool:
    """Whether a decode loop carries the weights through an optimization barrier.

    XLA's loop-invariant code motion hoists what the step does to the weights out of the loop: for bfloat16
    weights, a float32 (and a transposed) copy of every one, which each step then reads at twice the bytes
    (and which doubles the memory while generating). With one row per step the matrix products are fused
    matrix-vector loops that read a bfloat16 weight as it is, so there the weights are carried through the
    loop behind an optimization barrier, which XLA cannot see through. With more rows the products are
    GEMMs, which XLA's CPU backend runs in float32 only, and float32 weights are read through hoisted
    transposed copies: in both cases the weights stay loop invariants (the hoisted copy is the fast one;
    measured in ``benchmarks/speed.py``, issue 15 in ``benchmarks/README.md``).
    """
    return rows == 1 and any(leaf.dtype != jnp.float32 for leaf in jax.tree_util.tree_leaves(params))


def _decode(step: Callable, params: dict, kv: Array, input_ids: Array, attention_mask: Array, key: Array,
            vocab: int, s: Settings, stream: tuple) -> dict:
    """Prefill + ``lax.while_loop`` of single-token steps (traced inside ``jax.jit``)."""
    n, t = input_ids.shape
    length = t + s.max_new
    ext_mask, positions, st = _initial_state(input_ids, attention_mask, key, vocab, s)
    logits, kv = step(params, kv, input_ids, positions, ext_mask, 0)
    st = _choose_next(st, logits, t, s, stream)
    st["kv"] = kv
    barrier = _through_barrier(params, n)
    if barrier:
        st["params"] = params

    def cond(st):
        return (st["cur"] < length) & ~jnp.all(st["finished"])

    def body(st):
        index = st["cur"] - 1  # the last token's position in the cache
        last = jax.lax.dynamic_slice_in_dim(st["seqs"], index, 1, axis=1)  # (N, 1)
        weights = jax.lax.optimization_barrier(st["params"]) if barrier else params
        logits, kv = step(weights, st["kv"], last, st["next_pos"][:, None], ext_mask, index)
        st = dict(st, kv=kv, next_pos=st["next_pos"] + 1)
        if barrier:
            st["params"] = weights
        return _choose_next(st, logits, t, s, stream)

    st = jax.lax.while_loop(cond, body, st)
    del st["kv"]
    st.pop("params", None)
    return st


# ------------------------------------------------------------------------------------------ beam search
def _beam_init(input_ids: Array, attention_mask: Array, key: Array, vocab: int, s: Settings) -> tuple:
    """Inputs already expanded to (B * num_beams, T). Returns the extended mask, positions and the beam state."""
    nb = s.num_beams
    ext_mask, positions, st = _initial_state(input_ids, attention_mask, key, vocab, s)
    n, length = st["seqs"].shape
    b = n // nb
    running = st["seqs"].reshape(b, nb, length)
    st.update(
        running=running, finished_seqs=running,
        running_scores=jnp.zeros((b, nb), jnp.float32).at[:, 1:].set(_NEG),
        beam_scores=jnp.full((b, nb), _NEG, jnp.float32),
        is_finished=jnp.zeros((b, nb), bool),
        heuristic=jnp.ones((b, 1), bool),
        done=jnp.array(False),
    )
    del st["seqs"], st["finished"]
    return ext_mask, positions, st


def _beam_update(st: dict, logits: Array, prompt_len: int, s: Settings) -> tuple[dict, Array]:
    """One beam-search step from the running beams' ``logits`` (B * nb, V): log-softmax, the processors, the
    running scores added, and ``s.beam_candidates`` candidates per prompt (top-k, or Gumbel top-k when
    sampling); then :func:`_beam_step`. Returns the new state and the (B * nb,) source rows (cache reorder)."""
    nb = s.num_beams
    cur = st["cur"]
    b, _, length = st["running"].shape
    v = logits.shape[-1]
    st = dict(st)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    log_probs = process_logits(log_probs, st["running"].reshape(b * nb, length), cur, prompt_len, s)
    if s.output_scores:
        st["scores"] = jax.lax.dynamic_update_slice(st["scores"], log_probs[None], (cur - prompt_len, 0, 0))
    acc = (log_probs.reshape(b, nb, v) + st["running_scores"][:, :, None]).reshape(b, nb * v)

    keep = s.beam_candidates
    if s.do_sample:  # sampling without replacement from softmax(acc): the top of acc + Gumbel noise
        if s.seeded:  # the shared stream: row = prompt, column = flat candidate beam * V + token
            noise = _gumbel(st["key"], cur - prompt_len, b, nb * v)
        else:
            key, sub = jax.random.split(st["key"])
            st["key"] = key
            noise = jax.random.gumbel(sub, acc.shape)
        _, top_idx = jax.lax.top_k(acc + noise, keep)
        top_logp = jnp.take_along_axis(acc, top_idx, axis=1)
    else:
        top_logp, top_idx = jax.lax.top_k(acc, keep)
    return _beam_step(st, top_logp, top_idx, v, prompt_len, s)


def _length_penalties(s: Settings) -> np.ndarray:
    """float32 ``n ** length_penalty`` for n = 1 .. max_new, computed as the shared BeamSearch does (in float64)."""
    return np.array([n ** s.length_penalty for n in range(1, s.max_new + 1)], dtype=np.float32)


def _beam_step(st: dict, top_logp: Array, top_idx: Array, vocab: int, prompt_len: int, s: Settings) -> tuple[dict, Array]:
    """HF's beam bookkeeping in the graph (the same semantics as :meth:`gpt2_multi.generation.BeamSearch.step`).

    ``top_logp`` / ``top_idx`` (B, keep): the candidates' summed log-probabilities and flat ids
    ``beam * vocab + token``, in candidate order. Ties go to the lower index (``lax.top_k`` is stable).
    """
    nb = s.num_beams
    cur = st["cur"]
    b, _, length = st["running"].shape
    keep = top_idx.shape[1]
    penalties = jnp.asarray(_length_penalties(s))
    st = dict(st)
    src_beam = top_idx // vocab
    tokens = (top_idx % vocab).astype(jnp.int32)
    top_seqs = jnp.take_along_axis(st["running"], src_beam[:, :, None], axis=1)
    top_seqs = jax.lax.dynamic_update_slice(top_seqs, tokens[:, :, None], (0, 0, cur))
    hits = jnp.broadcast_to(cur + 1 >= length, tokens.shape)  # the last position, or an eos
    if s.eos:
        hits = hits | jnp.isin(tokens, jnp.array(s.eos, jnp.int32))

    # the best num_beams continuations that did not stop keep running
    running_logp = top_logp + hits.astype(jnp.float32) * _NEG
    _, nxt = jax.lax.top_k(running_logp, nb)
    st["running"] = jnp.take_along_axis(top_seqs, nxt[:, :, None], axis=1)
    st["running_scores"] = jnp.take_along_axis(running_logp, nxt, axis=1)
    source_rows = (jnp.take_along_axis(src_beam, nxt, axis=1) + jnp.arange(b)[:, None] * nb).reshape(-1)

    # continuations in the top num_beams that stopped compete with the finished hypotheses
    just_finished = hits & (jnp.arange(keep) < nb)[None, :]
    final_logp = top_logp / penalties[cur - prompt_len]  # (cur + 1 - prompt_len) ** length_penalty
    if s.early_stopping is True:
        final_logp = final_logp + jnp.all(st["is_finished"], axis=-1, keepdims=True).astype(jnp.float32) * _NEG
    final_logp = final_logp + (~st["heuristic"]).astype(jnp.float32) * _NEG
    final_logp = final_logp + (~just_finished).astype(jnp.float32) * _NEG
    merged_scores = jnp.concatenate([st["beam_scores"], final_logp], axis=1)
    _, best = jax.lax.top_k(merged_scores, nb)
    st["finished_seqs"] = jnp.take_along_axis(jnp.concatenate([st["finished_seqs"], top_seqs], axis=1), best[:, :, None], axis=1)
    st["beam_scores"] = jnp.take_along_axis(merged_scores, best, axis=1)
    st["is_finished"] = jnp.take_along_axis(jnp.concatenate([st["is_finished"], just_finished], axis=1), best, axis=1)

    cur = cur + 1
    st["cur"] = cur
    # HF's early-stop heuristic: can the best running beam still beat the worst finished one?
    if s.early_stopping == "never" and s.length_penalty > 0.0:
        best_len_penalty = penalties[s.max_new - 1]  # judged at the maximum length
    else:
        best_len_penalty = penalties[cur - prompt_len - 1]
    best_running = st["running_scores"][:, :1] / best_len_penalty
    worst_finished = jnp.where(st["is_finished"], jnp.min(st["beam_scores"], axis=1, keepdims=True), _NEG)
    st["heuristic"] = st["heuristic"] & jnp.any(best_running > worst_finished, axis=-1, keepdims=True)
    unfinished = jnp.any(st["heuristic"]) & ~(jnp.all(st["is_finished"]) & (s.early_stopping is True)) & ~jnp.all(hits)
    st["done"] = ~unfinished | (cur >= length)
    return st, source_rows


_jitted_beam_update = jax.jit(_beam_update, static_argnums=(2, 3))
_jitted_beam_step = jax.jit(_beam_step, static_argnums=(3, 4, 5))
_jitted_choose_next = jax.jit(_choose_next, static_argnums=(2, 3))


def _reorder_tree(cache: Any, rows: Array) -> Any:
    """The model's cache collection with its rows taken from ``rows`` (the eager path's beam reorder)."""
    return jax.tree_util.tree_map(lambda x: x[rows] if x.ndim > 0 else x, cache)


def _reorder(kv: Array, rows: Array) -> Array:
    """The cache (n_layer, 2, N, H, L, D) with its rows taken from ``rows`` (N,) (beams follow their parents)."""
    return kv[:, :, rows]


def _beam_decode(step: Callable, params: dict, kv: Array, input_ids: Array, attention_mask: Array, key: Array,
                 vocab: int, s: Settings, stream: tuple) -> dict:
    t = input_ids.shape[1]
    ext_mask, positions, st = _beam_init(input_ids, attention_mask, key, vocab, s)
    logits, kv = step(params, kv, input_ids, positions, ext_mask, 0)
    st, rows = _beam_update(st, logits, t, s)
    st["kv"] = _reorder(kv, rows)
    st["next_pos"] = st["next_pos"][rows]  # positions are per row: reordered with the beams

    def cond(st):
        return ~st["done"]

    def body(st):
        b, nb, _ = st["running"].shape
        index = st["cur"] - 1
        last = jax.lax.dynamic_slice_in_dim(st["running"].reshape(b * nb, -1), index, 1, axis=1)  # (N, 1)
        logits, kv = step(params, st["kv"], last, st["next_pos"][:, None], ext_mask, index)
        st = dict(st, next_pos=st["next_pos"] + 1)
        st, rows = _beam_update(st, logits, t, s)
        st["kv"] = _reorder(kv, rows)
        st["next_pos"] = st["next_pos"][rows]
        return st

    st = jax.lax.while_loop(cond, body, st)
    del st["kv"]
    return st


# ------------------------------------------------------------------------------------------ the decode step
def decode_step(module: Any, params: dict, kv: Array, tokens: Array, positions: Array, attention_mask: Array,
                index: Array | int) -> tuple[Array, Array]:
    """One call of the fast path: ``module`` (a :class:`FlaxGPT2LMHeadModule`)'s own ``decode_step`` on ``params``.

    ``tokens`` / ``positions`` (N, T) go to cache positions ``index .. index + T - 1`` of ``kv``
    (n_layer, 2, N, H, L, D) (the prompt with ``index = 0``, then one token per step); ``attention_mask``
    (N, L) 1 = token. Returns the next-token logits (N, V) and the updated cache.
    """
    return module.apply({"params": params}, tokens, positions, attention_mask, kv, index, method=type(module).decode_step)


# ------------------------------------------------------------------------------------------ the compiled programs
_COMPILED: dict[tuple, Callable] = {}


def _compiled(model: Any, s: Settings, streaming: bool = False) -> Callable:
    """The jitted ``(params, input_ids, attention_mask, key[, stream_id]) -> final state`` for ``s``, built once
    per setting; ``streaming`` compiles the streamer callback in (and takes the stream id)."""
    key = (model.config.to_json_string(use_diff=False), jnp.dtype(model.dtype).name, jnp.dtype(model.param_dtype).name,
           streaming, s)
    fn = _COMPILED.get(key)
    if fn is None:
        cfg, dtype = model.config, jnp.dtype(model.dtype)
        module = model.lm_module()

        def run(params, input_ids, attention_mask, prng_key, *stream):
            params = {k: params[k] for k in ("transformer", "lm_head") if k in params}  # double heads: LM part
            n, t = input_ids.shape
            kv = jnp.zeros((cfg.n_layer, 2, n, cfg.n_head, t + s.max_new, cfg.head_dim), dtype)

            def step(params, kv, tokens, positions, mask, index):
                return decode_step(module, params, kv, tokens, positions, mask, index)

            decode = _beam_decode if s.num_beams > 1 else _decode
            return decode(step, params, kv, input_ids, attention_mask, prng_key, cfg.vocab_size, s, stream)

        fn = jax.jit(run)
        _COMPILED[key] = fn
    return fn


# ------------------------------------------------------------------------------------------ the mixin
class FlaxGenerationMixin:
    """``generate()`` for the Flax LM classes (see the module docstring)."""

    @property
    def generation_config(self) -> GenerationConfig:
        """The default decoding settings: the checkpoint's generation_config.json, else the config's token ids."""
        if getattr(self, "_generation_config", None) is None:
            self._generation_config = GenerationConfig.from_model_config(self.config)
        return self._generation_config

    @generation_config.setter
    def generation_config(self, value: GenerationConfig | None) -> None:
        if value is not None and not isinstance(value, GenerationConfig):
            raise TypeError(f"generation_config must be a GenerationConfig, got {type(value).__name__}")
        self._generation_config = value

    def generate(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        generation_config: GenerationConfig | None = None,
        prng_key: Any = None,
        params: dict | None = None,
        *,
        jit: bool = True,
        trace: bool | None = None,
        seed: int | None = None,
        streamer: Any = None,
        inputs: Any = None,
        **kwargs: Any,
    ):
        """Generate continuations of ``input_ids`` (B, T) (left-padded, with ``attention_mask`` (B, T) of 1/0).

        Args:
            input_ids: int (B, T) prompts (``inputs=`` is HF's other name); pad on the left and mark the
                padding in ``attention_mask``.
            attention_mask: (B, T) 1 for tokens, 0 for (left) padding; default: inferred from ``pad_token_id``
                when it occurs in the prompt and is not an eos id (HF's rule), else all ones.
            generation_config: base settings (default ``self.generation_config``); ``kwargs`` override them
                (HF's names: max_new_tokens, max_length, min_new_tokens, min_length, do_sample, temperature,
                top_k, top_p, num_beams, length_penalty, early_stopping, repetition_penalty,
                no_repeat_ngram_size, eos_token_id (int or list), pad_token_id, num_return_sequences,
                output_scores, return_dict_in_generate). An unknown keyword raises ``TypeError``.
            prng_key: ``jax.random.PRNGKey`` (or an int seed) for sampling with ``jax.random``; default ``PRNGKey(0)``.
            params: parameters to use instead of ``self.params``.
            jit: ``True`` (default) runs the compiled while-loop; ``False`` steps the model eagerly in Python.
            trace: HF's name for ``jit`` (``trace=False`` debugs the loop in Python); it wins when given.
            seed: an int in [0, 2**64): sample from the shared counter-based stream, the same tokens as the
                other backends (not together with ``prng_key``).
            streamer: gets ``put(prompt (N, T))``, ``put(tokens (N,))`` per step and ``end()`` (HF's contract;
                a :class:`gpt2_multi.streamers.TextStreamer` ...). Not with beam search.

        Returns:
            ``FlaxGreedySearchOutput`` / ``FlaxSampleOutput`` / ``FlaxBeamSearchOutput`` with ``sequences``
            (B * num_return_sequences, T + max_new) (padding after eos), and ``scores`` with output_scores.
        """
        if trace is not None:
            jit = bool(trace)
        input_ids = resolve_prompt(input_ids, inputs)
        for name, value in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            if isinstance(value, jax.core.Tracer):
                raise InputError(f"generate() needs a concrete {name} (it compiles its own loop); call it outside jax.jit")
        if seed is not None and prng_key is not None:
            raise TypeError("pass seed= (the shared stream) or prng_key= (jax.random), not both")
        base = generation_config if generation_config is not None else self.generation_config
        plan = prepare(self.config, base, kwargs, input_ids, attention_mask, seed=seed)
        s = plan.settings
        if streamer is not None and s.num_beams > 1:
            raise ValueError("a streamer cannot be used with beam search (the beams change their past): set num_beams=1")
        params = self._params_or(params)
        if params is None:
            raise ValueError("this model has no params: pass params=... or load it with from_pretrained")
        key = jnp.asarray(np.array(plan.seed, np.uint32)) if s.seeded else _as_key(prng_key)

        if streamer is None:
            st = self._run(plan, params, key, jit, None)
        else:
            stream_id = next(_stream_ids) % 2**31
            _STREAMS[stream_id] = [streamer, None]
            try:
                streamer.put(plan.input_ids.astype(np.int64))
                st = self._run(plan, params, key, jit, stream_id)
            except Exception:
                error = _STREAMS[stream_id][1]
                if error is not None:  # the streamer's own exception, not XLA's wrapper of it
                    raise error from None
                raise
            finally:
                _STREAMS.pop(stream_id, None)
                streamer.end()
        return _make_output(st, s, plan.prompt_length, plan.batch_size)

    # ------------------------------------------------------------------ helpers
    def _run(self, plan: Any, params: dict, key: Array, jit: bool, stream_id: int | None) -> dict:
        """The fast (compiled) or the reference (eager) path on ``plan``; the final state, computed."""
        s = plan.settings
        if not jit:
            return self._eager_decode(params, plan, key, stream_id)
        streaming = stream_id is not None
        extra = (jnp.int32(stream_id),) if streaming else ()
        st = _compiled(self, s, streaming)(params, jnp.asarray(plan.input_ids), jnp.asarray(plan.attention_mask), key,
                                           *extra)
        if streaming:  # every put has run before end()
            jax.block_until_ready(st)
            jax.effects_barrier()
        return st

    def _eager_decode(self, params: dict, plan: Any, key: Array, stream_id: int | None) -> dict:
        """The reference path: a Python loop over the model's public ``__call__`` with its cache."""
        s = plan.settings
        ids, mask = plan.input_ids, plan.attention_mask
        n, t = ids.shape
        length = t + s.max_new
        vocab = self.config.vocab_size
        double = self.architecture == "GPT2DoubleHeadsModel"

        def call(tokens, ext_mask, positions, cache):
            if double:  # (N, 1 choice, T)
                out = self(tokens[:, None], attention_mask=ext_mask[:, None], position_ids=positions[:, None],
                           past_key_values=cache, params=params)
                return out.logits[:, 0, -1], out.past_key_values
            out = self(tokens, attention_mask=ext_mask, position_ids=positions, past_key_values=cache, params=params,
                       logits_to_keep=1)  # the head on the last position only (the prompt's too)
            return out.logits[:, -1], out.past_key_values

        # the per-step bookkeeping is compiled (op-by-op dispatch would dominate); the loop and the model
        # calls are plain Python over the public API
        cache = self.init_cache(n, length)
        if s.num_beams > 1:
            ext_mask, positions, st = _beam_init(jnp.asarray(ids), jnp.asarray(mask), key, vocab, s)
            logits, cache = call(ids, ext_mask, positions, cache)
            st, rows = _jitted_beam_update(st, logits, t, s)
            cache, st["next_pos"] = _reorder_tree(cache, rows), st["next_pos"][rows]
            while not bool(st["done"]):
                last = st["running"].reshape(n, -1)[:, int(st["cur"]) - 1:int(st["cur"])]
                logits, cache = call(last, ext_mask, st["next_pos"][:, None], cache)
                st["next_pos"] = st["next_pos"] + 1
                st, rows = _jitted_beam_update(st, logits, t, s)
                cache, st["next_pos"] = _reorder_tree(cache, rows), st["next_pos"][rows]
            return st

        def choose(st, logits):
            st = _jitted_choose_next(st, logits, t, s)
            if stream_id is not None:
                cur = int(st["cur"]) - 1
                _stream_put(np.int32(stream_id), np.asarray(st["seqs"][:, cur]))
            return st

        ext_mask, positions, st = _initial_state(jnp.asarray(ids), jnp.asarray(mask), key, vocab, s)
        logits, cache = call(ids, ext_mask, positions, cache)
        st = choose(st, logits)
        while int(st["cur"]) < length and not bool(jnp.all(st["finished"])):
            cur = int(st["cur"])
            logits, cache = call(st["seqs"][:, cur - 1:cur], ext_mask, st["next_pos"][:, None], cache)
            st["next_pos"] = st["next_pos"] + 1
            st = choose(st, logits)
        return st


def _as_key(prng_key: Any) -> Array:
    if prng_key is None:
        return jax.random.PRNGKey(0)
    if isinstance(prng_key, (int, np.integer)) and not isinstance(prng_key, bool):
        return jax.random.PRNGKey(int(prng_key))
    key = jnp.asarray(prng_key) if not isinstance(prng_key, jax.Array) else prng_key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):  # a new-style typed key
        return key
    if key.shape != (2,) or key.dtype != jnp.uint32:
        raise InputError(f"prng_key must be jax.random.PRNGKey(seed) (shape (2,) uint32) or an int, got {key.dtype}{tuple(key.shape)}")
    return key


def _make_output(st: dict, s: Settings, prompt_len: int, batch: int):
    steps = int(st["cur"]) - prompt_len
    scores = None
    if s.output_scores:
        scores = tuple(st["scores"][i] for i in range(steps))
    if s.num_beams > 1:
        nrs = s.num_return_sequences
        seqs = st["finished_seqs"][:, :nrs].reshape(batch * nrs, -1)
        return FlaxBeamSearchOutput(sequences=seqs, scores=scores,
                                    sequences_scores=st["beam_scores"][:, :nrs].reshape(-1))
    cls = FlaxSampleOutput if s.do_sample else FlaxGreedySearchOutput
    return cls(sequences=st["seqs"], scores=scores)


__all__ = ["FlaxBeamSearchOutput", "FlaxGenerationMixin", "FlaxGreedySearchOutput", "FlaxSampleOutput", "decode_step",
           "process_logits", "stream_uniforms"]
