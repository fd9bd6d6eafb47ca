"""``generate()`` for the Flax LM classes: greedy, sampling and beam search, HF's Flax contract.

``FlaxGenerationMixin`` is a base of :class:`FlaxGPT2LMHeadModel` and :class:`FlaxGPT2DoubleHeadsModel`
(the double-heads model generates with its LM logits)::

    out = model.generate(input_ids, attention_mask=mask, max_new_tokens=20)   # -> out.sequences (B, T + 20)
    out = model.generate(ids, do_sample=True, top_k=50, prng_key=jax.random.PRNGKey(0))
    out = model.generate(ids, num_beams=4, length_penalty=1.0, early_stopping=True)

How it runs. The whole decode is one ``jax.jit``-ed function: a prefill of the (left-padded) prompt
through the model into its static cache of ``max_length = T + max_new`` positions, then a
``lax.while_loop`` of :func:`decode_step` (the model's layers on one token per row, with the cache
re-laid out as one (n_layer, 2, N, H, L, D) array so attention needs no transpose of it) that stops
when every row has produced an eos (or at ``max_length``); tokens are chosen on device. Positions come from the attention mask (``cumsum - 1``), and the mask is
extended with ones over the new positions, so a left-padded row generates exactly what it generates
alone. The compiled function is kept per static setting (shapes, do_sample, num_beams, processor
settings, ...) in a module-level table: a second call with the same settings does not recompile.

``generate(..., jit=False)`` is the eager reference: a Python loop over the model's own public
``__call__`` with ``past_key_values`` (what a user would write by hand). It gives the same tokens.

Logits processors, in HF's order (the numpy reference is
:func:`gpt2_multi.generation.reference_process_logits`): repetition penalty, no-repeat n-gram,
min new tokens (eos -> -inf), and, when sampling, temperature, top-k, top-p.

Beam search is HF's (PyTorch, v4.57) vectorised algorithm: ``length_penalty``, ``early_stopping``
True / False / "never", and its early-stop heuristic; ``do_sample=True`` with beams samples the candidates
without replacement (Gumbel top-k). ``return_dict_in_generate`` is accepted and ignored: as in HF's Flax,
the result is always an output object.

Output (HF's Flax classes): ``FlaxGreedySearchOutput`` / ``FlaxSampleOutput`` / ``FlaxBeamSearchOutput``
with ``sequences`` (B * num_return_sequences, T + max_new): every row has the full length, positions
after a row's eos hold ``pad_token_id`` (as in HF's Flax generate). With ``output_scores=True`` also
``scores``: a tuple with one (B * num_return_sequences, V) array of processed scores per step taken
(for beam search (B * num_beams, V) processed log-probabilities, and ``sequences_scores`` (B * num_return_sequences,)).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gpt2_multi import validation
from gpt2_multi.generation import GenerationConfig
from gpt2_multi.outputs import ModelOutput
from gpt2_multi.validation import InputError

logger = logging.getLogger(__name__)

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


# ------------------------------------------------------------------------------------------ static settings
@dataclass(frozen=True)
class _Settings:
    """Everything that shapes the compiled program (hashable: a key of the compiled-function table)."""

    max_new: int
    min_new: int
    do_sample: bool
    num_beams: int
    num_return_sequences: int
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    eos: tuple[int, ...]
    pad: int
    length_penalty: float
    early_stopping: Any  # True / False / "never"
    output_scores: bool


# ------------------------------------------------------------------------------------------ logits processors
def process_logits(scores: Array, sequences: Array, cur_len: Array | int, prompt_len: int, s: _Settings) -> Array:
    """HF's processors on next-token ``scores`` (N, V) float32, in HF's order.

    ``sequences`` (N, L) is a static buffer whose first ``cur_len`` positions are the tokens so far
    (prompt, padding included, as HF sees them); the rest is ignored. Works traced and eagerly.
    """
    n, v = scores.shape
    length = sequences.shape[1]
    valid = jnp.arange(length)[None, :] < cur_len  # (1, L): the filled part of the buffer
    rows = jnp.arange(n)[:, None]
    if s.repetition_penalty != 1.0:
        seen = jnp.zeros((n, v), jnp.int32).at[rows, sequences].add(jnp.broadcast_to(valid, sequences.shape).astype(jnp.int32)) > 0
        penalised = jnp.where(scores < 0, scores * s.repetition_penalty, scores / s.repetition_penalty)
        scores = jnp.where(seen, penalised, scores)
    ng = s.no_repeat_ngram_size
    if ng > 0 and length >= ng:
        # every n-gram start i whose first n-1 tokens equal the last n-1 tokens bans its n-th token
        starts = length - ng + 1
        match = jnp.arange(starts)[None, :] + ng - 1 < cur_len  # the whole n-gram is filled
        for j in range(ng - 1):
            last_j = jax.lax.dynamic_slice_in_dim(sequences, cur_len - ng + 1 + j, 1, axis=1)  # (N, 1)
            match = match & (sequences[:, j:j + starts] == last_j)
        banned_tokens = sequences[:, ng - 1:ng - 1 + starts]
        banned = jnp.zeros((n, v), jnp.int32).at[rows, banned_tokens].add(match.astype(jnp.int32)) > 0
        scores = jnp.where(banned, -jnp.inf, scores)
    if s.eos and s.min_new > 0:
        eos_cols = jnp.zeros((v,), bool).at[jnp.array(s.eos)].set(True, mode="drop")
        too_short = (cur_len - prompt_len) < s.min_new
        scores = jnp.where(too_short & eos_cols[None, :], -jnp.inf, scores)
    if s.do_sample:
        if s.temperature != 1.0:
            scores = scores / s.temperature
        k = min(s.top_k, v)
        if 0 < k < v:
            kth = jax.lax.top_k(scores, k)[0][:, -1:]
            scores = jnp.where(scores < kth, -jnp.inf, scores)
        if s.top_p < 1.0:
            order = jnp.argsort(scores, axis=-1)  # ascending, as HF's top-p
            sorted_scores = jnp.take_along_axis(scores, order, axis=-1)
            cumulative = jnp.cumsum(jax.nn.softmax(sorted_scores, axis=-1), axis=-1)
            remove = (cumulative <= 1 - s.top_p).at[:, -1].set(False)  # keep at least one token
            sorted_scores = jnp.where(remove, -jnp.inf, sorted_scores)
            scores = jnp.zeros_like(scores).at[rows, order].set(sorted_scores)
    return scores


# ------------------------------------------------------------------------------------------ greedy / sampling
def _choose_next(st: dict, logits: Array, prompt_len: int, s: _Settings) -> dict:
    """Pick the token at position ``cur`` from ``logits`` (N, V), mark finished rows, advance ``cur``."""
    cur = st["cur"]
    scores = process_logits(logits.astype(jnp.float32), st["seqs"], cur, prompt_len, s)
    st = dict(st)
    if s.do_sample:
        key, sub = jax.random.split(st["key"])
        token = jax.random.categorical(sub, scores, axis=-1)
        st["key"] = key
    else:
        token = jnp.argmax(scores, axis=-1)
    token = jnp.where(st["finished"], s.pad, token).astype(jnp.int32)  # finished rows get padding
    if s.eos:
        st["finished"] = st["finished"] | jnp.isin(token, jnp.array(s.eos, jnp.int32))
    st["seqs"] = jax.lax.dynamic_update_slice(st["seqs"], token[:, None], (0, cur))
    if s.output_scores:
        st["scores"] = jax.lax.dynamic_update_slice(st["scores"], scores[None], (cur - prompt_len, 0, 0))
    st["cur"] = cur + 1
    return st


def _initial_state(input_ids: Array, attention_mask: Array, key: Array, vocab: int, s: _Settings) -> tuple:
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


def _decode(prefill: Callable, step: Callable, input_ids: Array, attention_mask: Array, key: Array, vocab: int,
            s: _Settings) -> dict:
    """Prefill + ``lax.while_loop`` of single-token steps (traced inside ``jax.jit``)."""
    n, t = input_ids.shape
    length = t + s.max_new
    ext_mask, positions, st = _initial_state(input_ids, attention_mask, key, vocab, s)
    logits, kv = prefill(input_ids, ext_mask, positions)
    st = _choose_next(st, logits, t, s)
    st["kv"] = kv
    valid = ext_mask == 1  # (N, L) keys that are not padding; causality is added per step

    def cond(st):
        return (st["cur"] < length) & ~jnp.all(st["finished"])

    def body(st):
        index = st["cur"] - 1  # the last token's position in the cache
        last = jax.lax.dynamic_index_in_dim(st["seqs"], index, axis=1, keepdims=False)  # (N,)
        logits, kv = step(st["kv"], last, st["next_pos"], valid, index)
        st = dict(st, kv=kv, next_pos=st["next_pos"] + 1)
        return _choose_next(st, logits, t, s)

    st = jax.lax.while_loop(cond, body, st)
    del st["kv"]
    return st


# ------------------------------------------------------------------------------------------ beam search
def _beam_init(input_ids: Array, attention_mask: Array, key: Array, vocab: int, s: _Settings) -> tuple:
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


def _beam_update(st: dict, logits: Array, prompt_len: int, s: _Settings) -> tuple[dict, Array]:
    """One beam-search step from the running beams' ``logits`` (B * nb, V), HF's vectorised algorithm.

    Returns the new state and the flat indices (B * nb,) of the source row of each new running beam
    (to reorder the cache).
    """
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

    keep = max(2, 1 + len(s.eos)) * nb
    if s.do_sample:  # sampling without replacement from softmax(acc): top-k of acc + Gumbel noise
        key, sub = jax.random.split(st["key"])
        st["key"] = key
        _, top_idx = jax.lax.top_k(acc + jax.random.gumbel(sub, acc.shape), keep)
        top_logp = jnp.take_along_axis(acc, top_idx, axis=1)
    else:
        top_logp, top_idx = jax.lax.top_k(acc, keep)
    src_beam = top_idx // v
    tokens = (top_idx % v).astype(jnp.int32)
    top_seqs = jnp.take_along_axis(st["running"], src_beam[:, :, None], axis=1)
    top_seqs = jax.lax.dynamic_update_slice(top_seqs, tokens[:, :, None], (0, 0, cur))
    hits = cur + 1 >= length  # max length, then eos
    hits = jnp.broadcast_to(hits, tokens.shape)
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
    final_logp = top_logp / (jnp.asarray(cur + 1 - prompt_len, jnp.float32) ** s.length_penalty)
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
        best_len = jnp.asarray(length - prompt_len, jnp.float32)
    else:
        best_len = jnp.asarray(cur - prompt_len, jnp.float32)
    best_running = st["running_scores"][:, :1] / best_len ** s.length_penalty
    worst_finished = jnp.where(st["is_finished"], jnp.min(st["beam_scores"], axis=1, keepdims=True), _NEG)
    st["heuristic"] = st["heuristic"] & jnp.any(best_running > worst_finished, axis=-1, keepdims=True)
    unfinished = jnp.any(st["heuristic"]) & ~(jnp.all(st["is_finished"]) & (s.early_stopping is True)) & ~jnp.all(hits)
    st["done"] = ~unfinished | (cur >= length)
    return st, source_rows


_jitted_beam_update = jax.jit(_beam_update, static_argnums=(2, 3))
_jitted_choose_next = jax.jit(_choose_next, static_argnums=(2, 3))


def _reorder_tree(cache: Any, rows: Array) -> Any:
    """The model's cache collection with its rows taken from ``rows`` (the eager path's beam reorder)."""
    return jax.tree_util.tree_map(lambda x: x[rows] if x.ndim > 0 else x, cache)


def _reorder(kv: Array, rows: Array) -> Array:
    """The cache (n_layer, 2, N, H, L, D) with its rows taken from ``rows`` (N,) (beams follow their parents)."""
    return kv[:, :, rows]


def _beam_decode(prefill: Callable, step: Callable, input_ids: Array, attention_mask: Array, key: Array, vocab: int,
                 s: _Settings) -> dict:
    t = input_ids.shape[1]
    ext_mask, positions, st = _beam_init(input_ids, attention_mask, key, vocab, s)
    logits, kv = prefill(input_ids, ext_mask, positions)
    st, rows = _beam_update(st, logits, t, s)
    st["kv"] = _reorder(kv, rows)
    st["next_pos"] = st["next_pos"][rows]  # positions are per row: reordered with the beams
    valid = ext_mask == 1

    def cond(st):
        return ~st["done"]

    def body(st):
        b, nb, _ = st["running"].shape
        index = st["cur"] - 1
        last = jax.lax.dynamic_index_in_dim(st["running"].reshape(b * nb, -1), index, axis=1, keepdims=False)
        logits, kv = step(st["kv"], last, st["next_pos"], valid, index)
        st = dict(st, next_pos=st["next_pos"] + 1)
        st, rows = _beam_update(st, logits, t, s)
        st["kv"] = _reorder(kv, rows)
        st["next_pos"] = st["next_pos"][rows]
        return st

    st = jax.lax.while_loop(cond, body, st)
    del st["kv"]
    return st


# ------------------------------------------------------------------------------------------ the decode step
def decode_step(cfg: Any, dtype: Any, param_dtype: Any, params: dict, kv: Array, tokens: Array, positions: Array,
                valid: Array, index: Array) -> tuple[Array, Array]:
    """One token per row through the LM: ``tokens`` (N,) at ``positions`` (N,), written at cache ``index``.

    The same computation as the model's cached ``__call__`` (its layer modules are applied to the same
    params; the attention is FlaxGPT2Attention's, with every config flag), laid out for decoding:
    the cache ``kv`` is one array (n_layer, 2, N, H, L, D) so that the score and value products need no
    transpose of the cache, and the mask ``valid`` (N, L) (1 = not padding) is combined with causality
    once per step, not per layer. Returns the next-token logits (N, V) and the updated cache.
    """
    import flax.linen as nn

    from gpt2_multi.flax.modeling import FlaxConv1D, FlaxGPT2MLP, attention_scores

    h, d, e = cfg.n_head, cfg.head_dim, cfg.n_embd
    n = tokens.shape[0]
    body = params["transformer"]
    ln = nn.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=dtype, param_dtype=param_dtype)
    c_attn = FlaxConv1D(3 * e, cfg, "c_attn", dtype, param_dtype)
    c_proj = FlaxConv1D(e, cfg, "attn.c_proj", dtype, param_dtype)
    mlp = FlaxGPT2MLP(cfg, dtype, param_dtype)
    wte = body["wte"]["embedding"]
    x = (jnp.take(wte, tokens, axis=0).astype(dtype) + jnp.take(body["wpe"]["embedding"], positions, axis=0).astype(dtype))
    min_value = jnp.finfo(jnp.float32 if cfg.reorder_and_upcast_attn else x.dtype).min  # the scores' dtype
    visible = valid & (jnp.arange(valid.shape[1])[None, :] <= index)  # (N, L): filled, causal, not padding
    visible = visible[:, None, :]
    for i in range(cfg.n_layer):
        p = body["h"][str(i)]
        qkv = c_attn.apply({"params": p["attn"]["c_attn"]}, ln.apply({"params": p["ln_1"]}, x))
        q, k, v = (a.reshape(n, h, d) for a in jnp.split(qkv, 3, axis=-1))
        new = jnp.stack([k, v])[None, :, :, :, None, :].astype(kv.dtype)  # (1, 2, N, H, 1, D)
        kv = jax.lax.dynamic_update_slice(kv, new, (i, 0, 0, 0, index, 0))
        keys, values = kv[i, 0], kv[i, 1]  # (N, H, L, D)
        scores = attention_scores("nhd,nhkd->nhk", q, keys, cfg, i)
        scores = jnp.where(visible, scores, min_value)
        probs = jax.nn.softmax(scores, axis=-1).astype(values.dtype)
        attn = jnp.einsum("nhk,nhkd->nhd", probs, values).reshape(n, e)
        x = x + c_proj.apply({"params": p["attn"]["c_proj"]}, attn)
        x = x + mlp.apply({"params": p["mlp"]}, ln.apply({"params": p["ln_2"]}, x))
    x = ln.apply({"params": body["ln_f"]}, x)
    if cfg.tie_word_embeddings:
        x, table = nn.dtypes.promote_dtype(x, wte, dtype=dtype)
        logits = jnp.dot(x, table.T)
    else:
        logits = nn.Dense(cfg.vocab_size, use_bias=False, dtype=dtype, param_dtype=param_dtype).apply(
            {"params": params["lm_head"]}, x)
    return logits, kv


# ------------------------------------------------------------------------------------------ the compiled programs
_COMPILED: dict[tuple, Callable] = {}


def _compiled(model: Any, s: _Settings) -> Callable:
    """The jitted ``(params, input_ids, attention_mask, key) -> final state`` for ``s``, built once per setting."""
    key = (model.config.to_json_string(use_diff=False), jnp.dtype(model.dtype).name, jnp.dtype(model.param_dtype).name, s)
    fn = _COMPILED.get(key)
    if fn is None:
        from gpt2_multi.flax.modeling import FlaxGPT2LMHeadModule

        cfg, dtype, param_dtype = model.config, model.dtype, model.param_dtype
        module = FlaxGPT2LMHeadModule(cfg, dtype, param_dtype)

        def run(params, input_ids, attention_mask, prng_key):
            params = {k: params[k] for k in ("transformer", "lm_head") if k in params}  # double heads: LM part
            n, t = input_ids.shape

            def prefill(ids, mask, positions):
                """The prompt through the model itself, into its cache; returned in the decode layout."""
                cache = _zero_cache(cfg, dtype, param_dtype, n, t + s.max_new)
                out, variables = module.apply({"params": params, "cache": cache}, ids, attention_mask=mask,
                                              position_ids=positions, mutable=["cache"])
                layers = variables["cache"]["transformer"]["h"]
                kv = jnp.stack([jnp.stack([layers[str(i)]["attn"]["cached_key"], layers[str(i)]["attn"]["cached_value"]])
                                for i in range(cfg.n_layer)])  # (n_layer, 2, N, L, H, D)
                return out.logits[:, -1], kv.transpose(0, 1, 2, 4, 3, 5)  # -> (n_layer, 2, N, H, L, D)

            def step(kv, tokens, positions, valid, index):
                return decode_step(cfg, dtype, param_dtype, params, kv, tokens, positions, valid, index)

            decode = _beam_decode if s.num_beams > 1 else _decode
            return decode(prefill, step, input_ids, attention_mask, prng_key, cfg.vocab_size, s)

        fn = jax.jit(run)
        _COMPILED[key] = fn
    return fn


def _zero_cache(cfg: Any, dtype: Any, param_dtype: Any, batch: int, length: int) -> dict:
    from gpt2_multi.flax.modeling import FlaxGPT2Module

    body = FlaxGPT2Module(cfg, dtype, param_dtype)
    ids = jnp.zeros((batch, length), jnp.int32)
    abstract = jax.eval_shape(lambda: body.init(jax.random.PRNGKey(0), ids, init_cache=True))
    return {"transformer": jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), abstract["cache"])}


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
        input_ids: Any,
        attention_mask: Any = None,
        generation_config: GenerationConfig | None = None,
        prng_key: Any = None,
        params: dict | None = None,
        *,
        jit: bool = True,
        trace: bool | None = None,
        **kwargs: Any,
    ):
        """Generate continuations of ``input_ids`` (B, T) (left-padded, with ``attention_mask`` (B, T) of 1/0).

        Args:
            input_ids: int (B, T) prompts; pad on the left and mark the padding in ``attention_mask``.
            attention_mask: (B, T) 1 for tokens, 0 for (left) padding; default all ones.
            generation_config: base settings (default ``self.generation_config``); ``kwargs`` override them
                (HF's names: max_new_tokens, max_length, min_new_tokens, min_length, do_sample, temperature,
                top_k, top_p, num_beams, length_penalty, early_stopping, repetition_penalty,
                no_repeat_ngram_size, eos_token_id (int or list), pad_token_id, num_return_sequences,
                output_scores, return_dict_in_generate). An unknown keyword raises ``TypeError``.
            prng_key: ``jax.random.PRNGKey`` (or an int seed) for sampling; default ``PRNGKey(0)``.
            params: parameters to use instead of ``self.params``.
            jit: ``True`` (default) runs the compiled while-loop; ``False`` steps the model eagerly in Python.
            trace: HF's name for ``jit`` (``trace=False`` debugs the loop in Python); it wins when given.

        Returns:
            ``FlaxGreedySearchOutput`` / ``FlaxSampleOutput`` / ``FlaxBeamSearchOutput`` with ``sequences``
            (B * num_return_sequences, T + max_new) (padding after eos), and ``scores`` with output_scores.
        """
        base = generation_config if generation_config is not None else self.generation_config
        if not isinstance(base, GenerationConfig):
            raise TypeError(f"generation_config must be a GenerationConfig, got {type(base).__name__}")
        gen = base.copy(**kwargs)  # TypeError naming unknown keywords; ValueError on bad values
        if trace is not None:
            jit = bool(trace)
        params = self.params if params is None else params
        if params is None:
            raise ValueError("this model has no params: pass params=... or load it with from_pretrained")
        ids, mask = self._generation_inputs(input_ids, attention_mask)
        b, t = ids.shape
        min_new, max_new = gen.new_tokens(t, self.config.n_positions)

        eos = tuple(gen.eos_token_ids)
        pad = gen.pad_token_id
        if pad is None:
            if eos:
                logger.warning("Setting pad_token_id to eos_token_id:%s for open-end generation.", eos[0])
                pad = eos[0]
            else:
                pad = 0
        if gen.num_beams > 1 and gen.num_return_sequences > gen.num_beams:
            raise ValueError(f"num_return_sequences ({gen.num_return_sequences}) must be <= num_beams ({gen.num_beams})")
        if gen.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {gen.early_stopping!r}")
        s = _Settings(
            max_new=int(max_new), min_new=int(min_new), do_sample=bool(gen.do_sample), num_beams=int(gen.num_beams),
            num_return_sequences=int(gen.num_return_sequences), temperature=float(gen.temperature), top_k=int(gen.top_k),
            top_p=float(gen.top_p), repetition_penalty=float(gen.repetition_penalty),
            no_repeat_ngram_size=int(gen.no_repeat_ngram_size), eos=eos, pad=int(pad),
            length_penalty=float(gen.length_penalty), early_stopping=gen.early_stopping,
            output_scores=bool(gen.output_scores),
        )
        key = _as_key(prng_key)
        # one row per returned sequence (sampling) or per beam, each prompt repeated in place (repeat_interleave)
        expand = s.num_beams if s.num_beams > 1 else s.num_return_sequences
        ids, mask = np.repeat(ids, expand, axis=0), np.repeat(mask, expand, axis=0)

        if jit:
            st = _compiled(self, s)(params, jnp.asarray(ids), jnp.asarray(mask), key)
        else:
            st = self._eager_decode(params, ids, mask, key, s)
        return _make_output(st, s, t, b)

    # ------------------------------------------------------------------ helpers
    def _generation_inputs(self, input_ids: Any, attention_mask: Any) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(input_ids, jax.core.Tracer):
            raise InputError("generate() needs concrete input_ids (it compiles its own loop); call it outside jax.jit")
        ids = np.asarray(input_ids)
        if ids.ndim != 2:
            raise InputError(f"input_ids has shape {tuple(ids.shape)} but generate() needs (batch, sequence)")
        if ids.size == 0 or ids.shape[1] == 0:
            raise InputError("generate() needs a non-empty prompt (input_ids of shape (batch, >=1))")
        if not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"input_ids must hold integers, got dtype {ids.dtype}")
        validation.check_input_ids(ids, self.config.vocab_size)
        if attention_mask is None:
            mask = np.ones(ids.shape, np.int32)
        else:
            mask = np.asarray(attention_mask)
            validation.check_same_shape("attention_mask", mask.shape, ids.shape, "input_ids' (batch, sequence) shape")
            if not np.isin(mask, (0, 1)).all():
                raise InputError("attention_mask must hold only 0 (padding) and 1 (token)")
            if (mask.sum(axis=1) == 0).any():
                raise InputError("attention_mask has a row with no token: every prompt needs at least one")
        return ids.astype(np.int32), mask.astype(np.int32)

    def _eager_decode(self, params: dict, ids: np.ndarray, mask: np.ndarray, key: Array, s: _Settings) -> dict:
        """The reference path: a Python loop over the model's public ``__call__`` with its cache."""
        n, t = ids.shape
        length = t + s.max_new
        double = self.architecture == "GPT2DoubleHeadsModel"

        def call(tokens, ext_mask, positions, cache):
            if double:  # (N, 1 choice, T)
                out = self(tokens[:, None], attention_mask=ext_mask[:, None], position_ids=positions[:, None],
                           past_key_values=cache, params=params)
                return out.logits[:, 0, -1], out.past_key_values
            out = self(tokens, attention_mask=ext_mask, position_ids=positions, past_key_values=cache, params=params)
            return out.logits[:, -1], out.past_key_values

        # the per-step bookkeeping is compiled (op-by-op dispatch would dominate); the loop and the model
        # calls are plain Python over the public API
        beam_update, choose_next = _jitted_beam_update, _jitted_choose_next
        cache = self.init_cache(n, length)
        if s.num_beams > 1:
            ext_mask, positions, st = _beam_init(jnp.asarray(ids), jnp.asarray(mask), key, self.config.vocab_size, s)
            logits, cache = call(ids, ext_mask, positions, cache)
            st, rows = beam_update(st, logits, t, s)
            cache, st["next_pos"] = _reorder_tree(cache, rows), st["next_pos"][rows]
            while not bool(st["done"]):
                last = st["running"].reshape(n, -1)[:, int(st["cur"]) - 1:int(st["cur"])]
                logits, cache = call(last, ext_mask, st["next_pos"][:, None], cache)
                st["next_pos"] = st["next_pos"] + 1
                st, rows = beam_update(st, logits, t, s)
                cache, st["next_pos"] = _reorder_tree(cache, rows), st["next_pos"][rows]
            return st
        ext_mask, positions, st = _initial_state(jnp.asarray(ids), jnp.asarray(mask), key, self.config.vocab_size, s)
        logits, cache = call(ids, ext_mask, positions, cache)
        st = choose_next(st, logits, t, s)
        while int(st["cur"]) < length and not bool(jnp.all(st["finished"])):
            cur = int(st["cur"])
            logits, cache = call(st["seqs"][:, cur - 1:cur], ext_mask, st["next_pos"][:, None], cache)
            st["next_pos"] = st["next_pos"] + 1
            st = choose_next(st, logits, t, s)
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


def _make_output(st: dict, s: _Settings, prompt_len: int, batch: int):
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
           "process_logits"]
