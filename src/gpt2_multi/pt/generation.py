"""``generate()`` for the PyTorch stack: the array work of HF's decoding contract on top of :mod:`gpt2_multi.generation`.

What is decided before any tensor work (prompt checks, pad / eos / mask inference, lengths, the
expansion for beams and return sequences, the fill token, the processor order) is the shared
:func:`gpt2_multi.generation.prepare`; beam bookkeeping is the shared :class:`~gpt2_multi.generation.BeamSearch`;
the ``seed=`` stream is :mod:`gpt2_multi.generation.sampling`. This module holds what runs in torch:
the logits processors, the sampling draws, the two KV caches, the decode step and the loops.

Shapes: B prompts, N = B * num_return_sequences (or B * num_beams) rows, T prompt length
(left padding included), S = T + max_new_tokens cache slots, V vocabulary, L layers, H heads, D head_dim.

Three decode paths, the same tokens (the tests hold them equal, and each equal to the full forward):

* reference, ``cache_implementation="dynamic"`` (:class:`GrowingDecoder`): the model's ``forward`` with the
  :class:`~gpt2_multi.pt.cache.DynamicCache` it returns; ``use_cache=False`` recomputes the whole sequence each step.
* fast, the default (``cache_implementation=None``, :class:`StaticDecoder`): a preallocated
  :class:`~gpt2_multi.pt.cache.StaticCache` written in place, and :func:`decode_step`, which runs the model's own
  blocks (``GPT2Block.forward``, hence the one ``attention_core`` of :mod:`gpt2_multi.pt.modeling` and the one
  ``write_cache`` of :mod:`gpt2_multi.pt.cache`) without the forward's input
  validation, with one mask for all layers and attention over the filled part of the cache. This is what
  ``model.generate(...)`` runs.
* ``compile=True`` or ``cache_implementation="static"`` (HF's name): the same, with each block step under
  ``torch.compile`` with fixed shapes. The block module is an argument of the compiled function, whose
  parameters Dynamo lifts to graph inputs, so one graph serves every layer (compile time of one block, not
  twelve; ``scale_attn_by_inverse_layer_idx`` makes the layer index a constant: one graph per layer). The
  cache covers ``S`` rounded up to a multiple of 64 (prompts of nearby lengths reuse the graph), the write
  position is a tensor and every not-yet-written slot is masked with the dtype's minimum. On CPU it is not
  faster than the default path (decoding is bound by reading the weights); it is there for ``torch.compile`` users.

Sampling: ``seed=N`` draws from the shared counter-based stream (Gumbel-max over the processed scores; the
same tokens as the numpy reference and the other stacks); ``generator=`` draws with ``torch.multinomial`` from
that ``torch.Generator``; neither: ``torch.multinomial`` on PyTorch's global RNG (``torch.manual_seed``), as HF.

Left padding: positions come from the attention mask (cumsum - 1, HF's convention) and the
padded keys stay masked for the whole decode, so a left-padded batch gives each prompt's tokens alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from gpt2_multi.generation import (
    BeamSearch,
    GenerationConfig,
    Plan,
    Settings,
    prepare,
    resolve_prompt,
    sampling,
)
from gpt2_multi.outputs import ModelOutput
from gpt2_multi.pt.cache import StaticCache

CACHE_IMPLEMENTATIONS = (None, "dynamic", "static")
_STATIC_BUCKET = 64  # compiled static caches are sized in multiples of this many slots
# Graphs of the compiled block step kept before Dynamo falls back to eager (its default is 8): one per
# distinct config / shape / dtype seen in the process, and one per layer with scale_attn_by_inverse_layer_idx.
_RECOMPILE_LIMIT = 64


# --------------------------------------------------------------------------------------- outputs
@dataclass(repr=False, eq=False)
class GenerateDecoderOnlyOutput(ModelOutput):
    """Greedy / sampling output with ``return_dict_in_generate=True``.

    ``sequences`` (N, T + new); ``scores``: one (N, V) float32 tensor per generated token, the processed
    scores the token was chosen from (``output_scores``); ``logits``: the raw logits per step (``output_logits``);
    ``past_key_values``: per layer ``(key, value)`` each (N, H, S', D), S' = tokens fed to the model.
    Unlike HF's, it has no ``attentions`` / ``hidden_states`` (``generate`` rejects ``output_attentions`` and
    ``output_hidden_states``, as the TF and Flax stacks do): run the model on ``sequences`` to get them.
    """

    sequences: Any = None
    scores: Any = None
    logits: Any = None
    past_key_values: Any = None


@dataclass(repr=False, eq=False)
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """Beam search output: ``sequences`` (B * num_return_sequences, T + new), ``sequences_scores`` (same rows,)
    the length-penalised sum of log-probabilities, ``scores`` one (B * num_beams, V) processed log-prob tensor per
    step, ``beam_indices`` (rows, new) the beam each token came from (-1 after the end). No ``attentions`` /
    ``hidden_states``, as in :class:`GenerateDecoderOnlyOutput`."""

    sequences: Any = None
    sequences_scores: Any = None
    scores: Any = None
    logits: Any = None
    beam_indices: Any = None
    past_key_values: Any = None


# --------------------------------------------------------------------------------------- processors
def repetition_penalty(scores: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Every token already in ``input_ids`` (N, S): logit / penalty if positive, * penalty if negative."""
    seen = torch.gather(scores, 1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, input_ids, seen)


def no_repeat_ngram(scores: torch.Tensor, input_ids: torch.Tensor, n: int) -> torch.Tensor:
    """Ban (-inf) every token that would complete an n-gram already present in the row (array ops, no host sync)."""
    length = input_ids.shape[1]
    if length < n:  # no complete n-gram yet
        return scores
    windows = input_ids.unfold(1, n, 1)  # (N, W, n), W = length - n + 1
    if n > 1:
        match = (windows[:, :, :-1] == input_ids[:, None, length - n + 1:]).all(dim=-1)  # the prefix repeats
    else:
        match = torch.ones(windows.shape[:2], dtype=torch.bool, device=scores.device)
    ban = torch.where(match, -math.inf, math.inf).to(scores.dtype)
    return scores.scatter_reduce(1, windows[:, :, -1], ban, reduce="amin", include_self=True)


def top_k_filter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest scores of each row (ties with the k-th kept), -inf elsewhere."""
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]
    return scores.masked_fill(scores < kth, -math.inf)


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter: drop the least likely tokens whose cumulative probability is <= 1 - top_p (keep >= 1)."""
    sorted_scores, order = torch.sort(scores, dim=-1, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= 1 - top_p
    remove[:, -1] = False
    return scores.masked_fill(remove.scatter(1, order, remove), -math.inf)


class LogitsProcessor:
    """The processors of :attr:`Settings.processors`, run in that order (HF's); built once per ``generate`` call.

    ``__call__(input_ids (N, S), scores (N, V) float32) -> (N, V)``, ``input_ids`` everything so far (the
    prompt with its padding, then the new tokens). Equal to :func:`gpt2_multi.generation.reference_process_logits`.
    """

    def __init__(self, settings: Settings, prompt_length: int) -> None:
        self.settings, self.prompt_length = settings, prompt_length
        self.steps = [getattr(self, "_" + name) for name in settings.processors]
        self._eos: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        return bool(self.steps)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            scores = step(input_ids, scores)
        return scores

    def _repetition_penalty(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return repetition_penalty(scores, ids, self.settings.repetition_penalty)

    def _no_repeat_ngram(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return no_repeat_ngram(scores, ids, self.settings.no_repeat_ngram_size)

    def _min_new_tokens(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] - self.prompt_length >= self.settings.min_new:
            return scores
        if self._eos is None or self._eos.device != scores.device:
            self._eos = torch.tensor(self.settings.eos, dtype=torch.long, device=scores.device)
        return scores.index_fill(1, self._eos, -math.inf)

    def _temperature(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.settings.temperature

    def _top_k(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return top_k_filter(scores, self.settings.top_k)

    def _top_p(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return top_p_filter(scores, self.settings.top_p)


# --------------------------------------------------------------------------------------- sampling
def _mul32(x: Any, m: int) -> Any:
    """(x * m) mod 2**32 for x in [0, 2**32) (int64 tensors or Python ints), exactly: 16-bit halves keep the
    products below 2**49, so nothing overflows int64."""
    return (((((x >> 16) * m) & 0xFFFF) << 16) + (x & 0xFFFF) * m) & sampling.MASK32


def _mix32(x: Any) -> Any:
    """lowbias32 (:func:`gpt2_multi.generation.sampling.mix32`) on int64 tensors or Python ints holding uint32 values."""
    x = x ^ (x >> 16)
    x = _mul32(x, sampling.MIX_MUL_1)
    x = x ^ (x >> 15)
    x = _mul32(x, sampling.MIX_MUL_2)
    return x ^ (x >> 16)


def _step_key(seed: int, step: int) -> int:
    """The stream's per-step key (a Python int, computed on the host: no device work, no sync)."""
    lo, hi = sampling.seed_words(seed)
    return _mix32(_mix32(lo) ^ _mix32(hi ^ ((int(step) + sampling.STEP_SALT) & sampling.MASK32)))


def _counter_hash(rows: int, cols: int, device: Any = None) -> torch.Tensor:
    """(rows, cols) int64: mix32 of each draw's counter ``r * cols + c`` (the part that does not depend on the step)."""
    counter = torch.arange(rows * cols, dtype=torch.int64, device=device).view(rows, cols) & sampling.MASK32
    return _mix32(counter)


def _uniforms_from(counter_hash: torch.Tensor, key: int) -> torch.Tensor:
    bits = _mix32(counter_hash ^ key)
    return ((bits >> 8).to(torch.float32) + 0.5) * (2.0 ** -24)


def uniforms(seed: int, step: int, rows: int, cols: int, device: Any = None) -> torch.Tensor:
    """(rows, cols) float32 uniforms of the shared stream, bit for bit :func:`gpt2_multi.generation.sampling.uniforms`."""
    return _uniforms_from(_counter_hash(rows, cols, device), _step_key(seed, step))


class Sampler:
    """The draws of ``do_sample``: the shared counter stream (``seed``), a ``torch.Generator``, or the global RNG."""

    def __init__(self, seed: tuple[int, int] | None, generator: torch.Generator | None) -> None:
        self.seed = None if seed is None else seed[0] + (seed[1] << 32)
        self.generator = generator
        self._hash: torch.Tensor | None = None

    def gumbel(self, step: int, rows: int, cols: int, device: Any) -> torch.Tensor:
        """(rows, cols) Gumbel noise ``-log(-log(u))`` of the seeded stream at ``step``."""
        if self._hash is None or self._hash.shape != (rows, cols) or self._hash.device != torch.device(device):
            self._hash = _counter_hash(rows, cols, device)
        u = _uniforms_from(self._hash, _step_key(self.seed, step))
        return -torch.log(-torch.log(u))

    def tokens(self, scores: torch.Tensor, step: int) -> torch.Tensor:
        """One token per row of the processed ``scores`` (N, V): Gumbel-max, or ``torch.multinomial``."""
        if self.seed is not None:
            return (scores + self.gumbel(step, *scores.shape, scores.device)).argmax(dim=-1)
        return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self.generator).squeeze(1)

    def candidates(self, total: torch.Tensor, step: int, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam sampling: ``keep`` distinct flat candidates per prompt of ``total`` (B, K * V) and their scores:
        Gumbel top-k (row = prompt, column = flat candidate) or ``torch.multinomial`` without replacement (HF)."""
        if self.seed is not None:
            index = torch.topk(total + self.gumbel(step, *total.shape, total.device), keep, dim=1).indices
        else:
            index = torch.multinomial(torch.softmax(total, dim=-1), keep, generator=self.generator)
        return torch.gather(total, 1, index), index


# --------------------------------------------------------------------------------------- caches
def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """(N, T) 0/1 mask -> positions cumsum - 1, padding set to 1 (HF's convention; see gpt2_multi.generation)."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


class GrowingDecoder:
    """The reference path: decodes through the model's own ``forward`` (``model.transformer``) with the
    DynamicCache it returns. With ``use_cache=False`` each step recomputes the whole sequence (HF's behaviour)."""

    def __init__(self, model: torch.nn.Module, use_cache: bool = True) -> None:
        self.model, self.use_cache = model, use_cache

    def _logits(self, ids, mask, positions, past):
        body = self.model.transformer
        out = body(ids, past, mask if self.padded else None, position_ids=positions, use_cache=self.use_cache,
                   return_dict=True)
        return self.model.lm_head(out.last_hidden_state[:, -1]).float(), out.past_key_values

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """input_ids, mask (N, T) -> next-token logits (N, V) float32."""
        self.padded = not bool(mask.all())
        self.mask, self.ids = mask, input_ids
        self.next_position = mask.sum(-1, keepdim=True)
        logits, self.past = self._logits(input_ids, mask, position_ids_from_mask(mask), None)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N,) -> logits (N, V) for the token after them."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        if self.use_cache:
            logits, self.past = self._logits(tokens[:, None], self.mask, self.next_position, self.past)
        else:
            self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
            logits, _ = self._logits(self.ids, self.mask, position_ids_from_mask(self.mask), None)
        self.next_position = self.next_position + 1
        return logits

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (beam search)."""
        self.mask, self.ids, self.next_position = self.mask[index], self.ids[index], self.next_position[index]
        if self.use_cache:
            self.past.reorder_cache(index)  # the model's DynamicCache (HF's reorder)

    def key_values(self):
        return self.past if self.use_cache else None


def block_step(block, hidden, keys, values, bias, index, length, is_causal=False, use_sdpa=True) -> torch.Tensor:
    """One block on a preallocated cache: ``GPT2Block.forward`` writing keys / values (N, H, S, D) at ``index``
    and attending to the first ``length`` slots (None: all). What :func:`decode_step` runs per layer, and what
    ``compile=True`` compiles (the block is an argument: one graph for every layer)."""
    # .forward: the block's own code without the module-call overhead (KerasHub's call_cached calls .call() too)
    return block.forward(hidden, (keys, values), bias, is_causal, use_sdpa=use_sdpa, cache_index=index,
                         cache_length=length)[0]


_COMPILED: dict[str, Any] = {}


def compiled_block_step():
    """:func:`block_step` under ``torch.compile`` (fixed shapes), compiled on first use and shared by every model."""
    step = _COMPILED.get("block_step")
    if step is None:
        step = _COMPILED["block_step"] = torch.compile(block_step, dynamic=False)
    return step


def decode_step(model, tokens, positions, bias, keys, values, index, length, step=block_step) -> torch.Tensor:
    """Tokens through the model's own modules on a preallocated cache; the logits after the last one.

    tokens, positions (N, T') (T' = T for the prefill, 1 per decode step); bias: additive (N, 1, T', length or S)
    or None (no padding: causal for the prefill, nothing to mask for one token); keys / values (L, N, H, S, D)
    written in place at ``index`` (an int, or a (T',) long tensor); attention reads the first ``length`` slots
    (None: all). ``step``: :func:`block_step` or its compiled form. Returns logits (N, V) float32.
    """
    body = model.transformer
    hidden = body.embed(tokens, positions)
    is_causal = bias is None and tokens.shape[1] > 1
    use_sdpa = model.config._attn_implementation == "sdpa"
    for i, block in enumerate(body.h):
        hidden = step(block, hidden, keys[i], values[i], bias, index, length, is_causal, use_sdpa)
    return model.lm_head(body.ln_f(hidden[:, -1])).float()


class StaticDecoder:
    """The fast path: a preallocated cache (L, N, H, S, D) for keys and values, written in place by the blocks.

    The prefill and each step run :func:`decode_step` (attention over the filled slots). ``compiled``: each
    decode step's blocks run :func:`compiled_block_step`, every shape fixed (attention over all S slots, the
    unwritten ones masked).
    """

    def __init__(self, model: torch.nn.Module, rows: int, slots: int, compiled: bool = False) -> None:
        cfg = model.config
        self.model, self.slots, self.compiled = model, slots, compiled
        self.dtype = model.dtype
        self.cache = StaticCache(cfg, max_batch_size=rows, max_cache_len=slots, device=model.device,
                                 dtype=self.dtype)  # (L, N, H, S, D) buffers
        self.keys, self.values = self.cache.key_buffer, self.cache.value_buffer

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, t = input_ids.shape
        body = self.model.transformer
        self.padded = not bool(mask.all())
        valid = mask.bool()[:, None, None, :]
        prompt_bias = None
        if self.padded:
            causal = torch.ones(t, t, dtype=torch.bool, device=mask.device).tril()[None, None]
            prompt_bias = body.attention_bias(causal & valid, self.dtype)
        allowed = torch.zeros(n, 1, 1, self.slots, dtype=torch.bool, device=mask.device)
        allowed[..., :t] = valid
        self.additive = body.attention_bias(allowed, self.dtype)  # (N, 1, 1, S), unwritten slots masked
        logits = decode_step(self.model, input_ids, position_ids_from_mask(mask), prompt_bias, self.keys, self.values, 0, t)
        self.length = t
        self.write = torch.tensor([t], device=input_ids.device)  # the compiled step's write position, on the device
        self.next_position = mask.sum(-1, keepdim=True)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        slot = self.length
        if slot >= self.slots:
            raise RuntimeError(f"static cache full ({self.slots} slots)")  # pragma: no cover - sized by generate
        self.additive[..., slot] = 0
        if self.compiled:
            with torch._dynamo.config.patch(recompile_limit=max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)):
                logits = decode_step(self.model, tokens[:, None], self.next_position, self.additive, self.keys,
                                     self.values, self.write, None, step=compiled_block_step())
            self.write += 1
        else:
            bias = self.additive[..., :slot + 1] if self.padded else None
            logits = decode_step(self.model, tokens[:, None], self.next_position, bias, self.keys, self.values,
                                 slot, slot + 1)
        self.length += 1
        self.next_position = self.next_position + 1
        return logits

    def reorder(self, index: torch.Tensor) -> None:
        self.keys.copy_(self.keys.index_select(1, index))
        self.values.copy_(self.values.index_select(1, index))
        self.additive.copy_(self.additive.index_select(0, index))
        self.next_position = self.next_position[index]

    def key_values(self) -> StaticCache:
        """The cache as HF's generate returns it: a Cache object (its filled slots are the tokens fed)."""
        self.cache.filled = [self.length] * len(self.cache.layers)
        self.cache._refresh()
        return self.cache


# --------------------------------------------------------------------------------------- decoding loops
def _greedy_or_sample(cache, plan: Plan, input_ids, mask, processor, sampler, want_scores, want_logits, streamer=None):
    """Greedy (argmax) or sampling over the processed scores. Returns (sequences, scores, logits)."""
    s = plan.settings
    n, t = input_ids.shape
    device = input_ids.device
    sequences = torch.empty(n, t + s.max_new, dtype=torch.long, device=device)
    sequences[:, :t] = input_ids
    eos_ids = torch.tensor(s.eos, dtype=torch.long, device=device) if s.eos else None
    unfinished = torch.ones(n, dtype=torch.bool, device=device)
    scores_out, logits_out = [], []
    logits = cache.prefill(input_ids, mask)
    length = t
    for step in range(s.max_new):
        if step:
            logits = cache.step(sequences[:, length - 1])
        scores = processor(sequences[:, :length], logits)
        if want_scores:
            scores_out.append(scores)
        if want_logits:
            logits_out.append(logits)
        tokens = sampler.tokens(scores, step) if s.do_sample else scores.argmax(dim=-1)
        if eos_ids is not None:
            tokens = torch.where(unfinished, tokens, s.pad)
        sequences[:, length] = tokens
        length += 1
        if streamer is not None:
            streamer.put(tokens.cpu())
        if eos_ids is not None:
            unfinished &= ~torch.isin(tokens, eos_ids)
            if not bool(unfinished.any()):
                break
    return sequences[:, :length], tuple(scores_out), tuple(logits_out)


def _beam_search(cache, plan: Plan, input_ids, mask, processor, sampler, want_scores, want_logits):
    """Beam search (HF 4.57): the array work here, the bookkeeping in the shared :class:`BeamSearch`.

    input_ids, mask (B * K, T), each prompt repeated K = num_beams times. One host round trip per step
    (the candidates to the bookkeeping, the reorder rows back). Returns (sequences (B * R, T + new),
    sequences_scores, beam_indices, scores, logits).
    """
    s = plan.settings
    device = input_ids.device
    vocab = cache.model.config.vocab_size
    b, k = plan.batch_size, s.num_beams
    beams = BeamSearch(plan, vocab)
    scores_out, logits_out = [], []
    logits = cache.prefill(input_ids, mask)
    step = 0
    while True:
        if step:
            logits = cache.step(torch.from_numpy(beams.last_tokens()).to(device))
        log_probs = processor(torch.from_numpy(beams.sequences()).to(device), torch.log_softmax(logits, dim=-1))
        if want_scores:
            scores_out.append(log_probs)
        if want_logits:
            logits_out.append(logits)
        running = torch.from_numpy(beams.running_scores).to(device)
        total = (log_probs.view(b, k, vocab) + running[:, :, None]).view(b, k * vocab)
        if s.do_sample:
            cand_scores, index = sampler.candidates(total, step, s.beam_candidates)
        else:
            cand_scores, index = torch.topk(total, s.beam_candidates, dim=1)
        rows = beams.step(cand_scores.cpu().numpy(), index.cpu().numpy())
        cache.reorder(torch.from_numpy(rows).to(device))
        if beams.done:
            break
        step += 1
    sequences, seq_scores, beam_indices = beams.finalize()
    return (torch.from_numpy(sequences).to(device), torch.from_numpy(seq_scores).to(device),
            torch.from_numpy(beam_indices).to(device), tuple(scores_out), tuple(logits_out))


# --------------------------------------------------------------------------------------- the mixin
def _to_numpy(value: Any) -> Any:
    """A torch tensor -> numpy (for :func:`prepare`); anything else as given."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype not in (torch.float16, torch.float32, torch.float64):
            value = value.float()  # bfloat16 has no numpy dtype; prepare only needs to see it is not an id
        return value.numpy()
    return value


class GenerationMixin:
    """``generate()`` for GPT-2 models with an LM head (``GPT2LMHeadModel``, ``GPT2DoubleHeadsModel``)."""

    generation_config: GenerationConfig

    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        *,
        compile: bool = False,
        cache_implementation: str | None = None,
        output_logits: bool = False,
        streamer: Any = None,
        **kwargs: Any,
    ):
        """Continue the prompts, HF's ``generate`` contract.

        Args:
            input_ids: (B, T) prompt ids (a 1-D prompt is one row); batch prompts of different lengths with
                left padding. ``inputs=`` is accepted as HF's other name for it.
            attention_mask: (B, T), 1 for prompt tokens, 0 for (left) padding. Default: ones, or
                ``input_ids != pad_token_id`` when the pad id occurs and is not an eos id (HF's rule).
            generation_config: the base settings (default ``self.generation_config``, read from the
                checkpoint's generation_config.json); keyword arguments override it.
            generator: sampling draws ``torch.multinomial`` from this ``torch.Generator``.
            seed: an int in [0, 2**64): sampling draws from the shared counter-based stream
                (:mod:`gpt2_multi.generation.sampling`), the same tokens in every backend and decode path.
                Neither: ``torch.multinomial`` on PyTorch's global RNG (``torch.manual_seed``), as HF.
            compile: run the decode step under ``torch.compile`` with a static cache (same tokens as eager).
            cache_implementation: ``None`` (default: preallocated cache, eager), ``"dynamic"`` (the model's
                ``forward`` with a growing cache) or ``"static"`` (same as ``compile=True``).
            output_logits: with ``return_dict_in_generate``, also return the raw logits of each step.
            streamer: a :class:`gpt2_multi.streamers.TextStreamer` (or anything with ``put`` / ``end``): gets the
                prompt (N, T), then each new token (N,) as it is chosen, then ``end()`` (also after an error).
                Not with beam search; the text streamers take one sequence (N = 1).
            **kwargs: any :class:`GenerationConfig` field: ``max_new_tokens`` (wins over ``max_length``),
                ``max_length``, ``min_new_tokens``, ``min_length``, ``do_sample``, ``temperature``, ``top_k``,
                ``top_p``, ``num_beams``, ``length_penalty``, ``early_stopping`` (True / False / "never"),
                ``repetition_penalty``, ``no_repeat_ngram_size``, ``eos_token_id`` (int or list),
                ``pad_token_id``, ``num_return_sequences``, ``output_scores``, ``return_dict_in_generate``,
                ``use_cache``. Anything else raises ``TypeError`` naming it, ``output_attentions`` and
                ``output_hidden_states`` included (generate returns neither, in any stack).

        Returns:
            a LongTensor (B * num_return_sequences, T + new) of prompt and new tokens: rows that reached an
            eos are padded with ``pad_token_id`` afterwards, and generation stops early when every row has ended;
            or, with ``return_dict_in_generate=True``, a :class:`GenerateDecoderOnlyOutput`
            (:class:`GenerateBeamDecoderOnlyOutput` for beam search) with ``.sequences`` and ``.scores``.
            Decoding runs under ``torch.inference_mode()``; the returned ids are ordinary tensors (usable as
            labels in training), the scores and cache are inference tensors (read them, or ``.clone()`` them).
        """
        input_ids = resolve_prompt(input_ids, kwargs.pop("inputs", None))
        if cache_implementation not in CACHE_IMPLEMENTATIONS:
            raise ValueError(f"cache_implementation={cache_implementation!r}; choose None, 'dynamic' or 'static'")
        if seed is not None and generator is not None:
            raise ValueError("pass seed or generator, not both")
        base = generation_config if generation_config is not None else getattr(self, "generation_config", None)
        plan = prepare(self.config, base, kwargs, _to_numpy(input_ids), _to_numpy(attention_mask), seed=seed)
        s, config = plan.settings, plan.config
        if streamer is not None and s.num_beams > 1:
            raise ValueError("a streamer cannot be used with beam search (the beams change their past): set num_beams=1")

        compiled = compile or cache_implementation == "static"
        if self.config.pruned_heads:  # layers of different widths: only the growing cache holds them
            if compiled:
                raise ValueError(
                    "this model's heads are pruned (config.pruned_heads), so its layers differ in width and the static "
                    "cache cannot hold them: use cache_implementation='dynamic' (the default for pruned models)"
                )
            cache_implementation = "dynamic"
        if compiled and self.training:
            raise ValueError("compile=True runs the blocks without dropout: call model.eval() first")
        if not config.use_cache or cache_implementation == "dynamic":
            if compiled:
                raise ValueError("compile=True needs the static cache: use_cache=True and cache_implementation 'static' or None")
            cache = GrowingDecoder(self, use_cache=config.use_cache)
        else:
            slots = plan.total_length
            if compiled:
                slots = min(max(self.config.n_positions, slots), math.ceil(slots / _STATIC_BUCKET) * _STATIC_BUCKET)
            cache = StaticDecoder(self, plan.rows, slots, compiled=compiled)

        device = self.device
        ids = torch.from_numpy(plan.input_ids).to(device=device, dtype=torch.long)
        mask = torch.from_numpy(plan.attention_mask).to(device=device, dtype=torch.long)
        processor = LogitsProcessor(s, plan.prompt_length)
        sampler = Sampler(plan.seed if s.seeded else None, generator)
        want_scores = config.return_dict_in_generate and s.output_scores
        want_logits = config.return_dict_in_generate and output_logits
        with torch.inference_mode():
            if s.num_beams > 1:
                sequences, seq_scores, beam_indices, scores, logits = _beam_search(
                    cache, plan, ids, mask, processor, sampler, want_scores, want_logits)
            else:
                if streamer is not None:
                    streamer.put(ids.cpu())
                try:
                    sequences, scores, logits = _greedy_or_sample(
                        cache, plan, ids, mask, processor, sampler, want_scores, want_logits, streamer)
                finally:  # also on an error, so that a reader of the stream is not left waiting
                    if streamer is not None:
                        streamer.end()
        # A normal tensor, not an inference tensor: the ids may go into a training step (labels, RL losses).
        sequences = sequences.clone()
        if not config.return_dict_in_generate:
            return sequences
        if s.num_beams > 1:
            return GenerateBeamDecoderOnlyOutput(
                sequences=sequences, sequences_scores=seq_scores if s.output_scores else None,
                scores=scores or None, logits=logits or None, beam_indices=beam_indices,
                past_key_values=cache.key_values())
        return GenerateDecoderOnlyOutput(sequences=sequences, scores=scores or None, logits=logits or None,
                                         past_key_values=cache.key_values())


__all__ = [
    "CACHE_IMPLEMENTATIONS",
    "GenerateBeamDecoderOnlyOutput",
    "GenerateDecoderOnlyOutput",
    "GenerationMixin",
    "LogitsProcessor",
    "Sampler",
    "block_step",
    "compiled_block_step",
    "decode_step",
    "uniforms",
]
