"""``generate()`` for the PyTorch stack: HF's decoding contract on top of :mod:`gpt2_multi.generation`.

Reading order: the output classes, the logits processors (HF's order, equal to
:func:`gpt2_multi.generation.reference_process_logits`), the two KV caches (a growing
"dynamic" cache that runs the model's own ``forward``, and a preallocated "static" cache
with a hand-written decode step), greedy / sampling, beam search, then the
:class:`GenerationMixin` that ``GPT2LMHeadModel`` and ``GPT2DoubleHeadsModel`` inherit.

Shapes: B prompts, N = B * num_return_sequences (or B * num_beams) rows, T prompt length
(left padding included), S = T + max_new_tokens cache slots, V vocabulary, L layers, H heads, D head_dim.

Three decode paths, the same tokens:

* default (``cache_implementation=None``): the preallocated cache, one decode step per token
  written with the model's own modules (no per-step input validation, one mask for all layers,
  SDPA over the filled part of the cache). This is what ``model.generate(...)`` runs.
* ``cache_implementation="dynamic"``: the model's ``forward`` with a growing tuple cache
  (HF's ``DynamicCache`` semantics); the reference the fast path is tested against.
  ``use_cache=False`` recomputes the whole sequence each step.
* ``compile=True`` or ``cache_implementation="static"`` (HF's name): the block step under
  ``torch.compile`` with fixed shapes, the weights passed as tensors so that one compiled graph
  serves every layer (compile time of one block, not twelve): the cache covers ``S`` rounded up to
  a multiple of 64 (prompts of nearby lengths reuse the graph), the write position is a tensor and
  every not-yet-written slot is masked with the dtype's minimum. On CPU it is not faster than the
  default path (decoding is bound by reading the weights); it is there for ``torch.compile`` users.

Left padding: positions come from the attention mask (cumsum - 1, HF's convention) and the
padded keys stay masked for the whole decode, so a left-padded batch gives each prompt's tokens alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from gpt2_multi import validation
from gpt2_multi.generation import GenerationConfig
from gpt2_multi.outputs import ModelOutput

logger = logging.getLogger("gpt2_multi.pt")

CACHE_IMPLEMENTATIONS = (None, "dynamic", "static")
_STATIC_BUCKET = 64  # compiled static caches are sized in multiples of this many slots
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


# --------------------------------------------------------------------------------------- outputs
@dataclass(repr=False, eq=False)
class GenerateDecoderOnlyOutput(ModelOutput):
    """Greedy / sampling output with ``return_dict_in_generate=True``.

    ``sequences`` (N, T + new); ``scores``: one (N, V) float32 tensor per generated token, the processed
    scores the token was chosen from (``output_scores``); ``logits``: the raw logits per step (``output_logits``);
    ``past_key_values``: per layer ``(key, value)`` each (N, H, S', D), S' = tokens fed to the model.
    """

    sequences: Any = None
    scores: Any = None
    logits: Any = None
    attentions: Any = None
    hidden_states: Any = None
    past_key_values: Any = None


@dataclass(repr=False, eq=False)
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """Beam search output: ``sequences`` (B * num_return_sequences, T + new), ``sequences_scores`` (same rows,)
    the length-penalised sum of log-probabilities, ``scores`` one (B * num_beams, V) processed log-prob tensor per
    step, ``beam_indices`` (rows, new) the beam each token came from (-1 after the end)."""

    sequences: Any = None
    sequences_scores: Any = None
    scores: Any = None
    logits: Any = None
    beam_indices: Any = None
    attentions: Any = None
    hidden_states: Any = None
    past_key_values: Any = None


# --------------------------------------------------------------------------------------- processors
def repetition_penalty(scores: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Every token already in ``input_ids`` (N, S): logit / penalty if positive, * penalty if negative."""
    seen = torch.gather(scores, 1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, input_ids, seen)


def no_repeat_ngram(scores: torch.Tensor, input_ids: torch.Tensor, n: int) -> torch.Tensor:
    """Ban every token that would complete an n-gram already present in the row."""
    length = input_ids.shape[1]
    if length + 1 < n:
        return scores
    scores = scores.clone()
    for row, seq in enumerate(input_ids.tolist()):
        prefix = seq[length - n + 1:] if n > 1 else []
        banned = {seq[i + n - 1] for i in range(length - n + 1) if seq[i:i + n - 1] == prefix}
        if banned:
            scores[row, list(banned)] = -math.inf
    return scores


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
    """The processors a :class:`GenerationConfig` asks for, in HF's order; built once per ``generate`` call.

    ``__call__(input_ids (N, S), scores (N, V) float32) -> (N, V)``: repetition penalty, no-repeat
    n-gram, min new tokens (eos -> -inf), then for sampling temperature, top-k and top-p.
    """

    def __init__(self, config: GenerationConfig, prompt_length: int, min_new: int, vocab_size: int) -> None:
        self.config = config
        self.prompt_length = prompt_length
        self.min_new = min_new
        self.eos = [e for e in config.eos_token_ids if e < vocab_size]  # an eos outside the vocab never occurs
        sample = config.do_sample
        self.top_k = min(config.top_k, vocab_size) if sample and config.top_k and config.top_k < vocab_size else 0
        self.temperature = config.temperature if sample and config.temperature != 1.0 else None
        self.top_p = config.top_p if sample and config.top_p < 1.0 else None
        self.active = bool(
            config.repetition_penalty != 1.0 or config.no_repeat_ngram_size or (min_new and self.eos)
            or self.top_k or self.temperature or self.top_p
        )

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return scores
        cfg = self.config
        if cfg.repetition_penalty != 1.0:
            scores = repetition_penalty(scores, input_ids, cfg.repetition_penalty)
        if cfg.no_repeat_ngram_size:
            scores = no_repeat_ngram(scores, input_ids, cfg.no_repeat_ngram_size)
        if self.eos and input_ids.shape[1] - self.prompt_length < self.min_new:
            scores = scores.clone()
            scores[:, self.eos] = -math.inf
        if self.temperature is not None:
            scores = scores / self.temperature
        if self.top_k:
            scores = top_k_filter(scores, self.top_k)
        if self.top_p is not None:
            scores = top_p_filter(scores, self.top_p)
        return scores


# --------------------------------------------------------------------------------------- caches
def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """(N, T) 0/1 mask -> positions cumsum - 1, padding set to 1 (HF's convention; see gpt2_multi.generation)."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


class DynamicCache:
    """Decodes through the model's own ``forward`` (``model.transformer``) with a growing tuple cache.

    With ``use_cache=False`` each step recomputes the whole sequence (HF's behaviour).
    """

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
            self.past = tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in self.past)

    def key_values(self):
        return self.past if self.use_cache else None


def decode_step(model, tokens, positions, write, mask, keys, values, kv_len: int) -> torch.Tensor:
    """One token per row through the model's modules with a preallocated cache.

    tokens, positions (N, 1); ``write``: the cache slot of this token (an int, or a (1,) long tensor);
    mask: additive (N, 1, 1, kv_len) or None (nothing to mask); keys / values
    (L, N, H, S, D), written in place; attention reads slots ``[0, kv_len)``. Returns logits (N, V) float32.
    Numerics are those of ``GPT2Attention._sdpa`` (same scaling, upcasting and masking).
    """
    body = model.transformer
    hidden = body.wte(tokens) + body.wpe(positions)
    n, e = tokens.shape[0], hidden.shape[-1]
    for i, block in enumerate(body.h):
        attn = block.attn
        q, k, v = attn.c_attn(block.ln_1(hidden)).split(e, dim=2)
        q, k, v = (t.view(n, 1, attn.num_heads, attn.head_dim).transpose(1, 2) for t in (q, k, v))
        if isinstance(write, int):
            keys[i, :, :, write:write + 1] = k
            values[i, :, :, write:write + 1] = v
        else:
            keys[i].index_copy_(2, write, k)
            values[i].index_copy_(2, write, v)
        k_all, v_all = keys[i, :, :, :kv_len], values[i, :, :, :kv_len]
        if attn.reorder_and_upcast_attn:
            q, k_all, v_all = q.float(), k_all.float(), v_all.float()
        out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, scale=attn.scaling).to(hidden.dtype)
        hidden = hidden + attn.resid_dropout(attn.c_proj(out.transpose(1, 2).reshape(n, 1, e)))
        hidden = hidden + block.mlp(block.ln_2(hidden))
    return model.lm_head(body.ln_f(hidden))[:, -1].float()


class StaticCache:
    """A preallocated cache (L, N, H, S, D) for keys and values, written in place.

    The prefill runs the model's ``forward`` and copies its keys/values in; each step runs
    :func:`decode_step` (attention over the filled slots). ``compiled``: :func:`compiled_decode_step`, every
    shape fixed (attention over all S slots, the unwritten ones masked).
    """

    def __init__(self, model: torch.nn.Module, rows: int, slots: int, compiled: bool = False) -> None:
        cfg = model.config
        dtype = model.dtype
        self.model, self.slots, self.compiled = model, slots, compiled
        shape = (cfg.n_layer, rows, cfg.n_head, slots, cfg.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=model.device)
        self.values = torch.zeros(shape, dtype=dtype, device=model.device)
        self.mask_dtype = torch.float32 if cfg.reorder_and_upcast_attn else dtype

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, t = input_ids.shape
        self.padded = not bool(mask.all())
        out = self.model.transformer(input_ids, None, mask if self.padded else None,
                                     position_ids=position_ids_from_mask(mask), use_cache=True, return_dict=True)
        for i, (k, v) in enumerate(out.past_key_values):
            self.keys[i, :, :, :t] = k
            self.values[i, :, :, :t] = v
        allowed = torch.zeros(n, self.slots, dtype=torch.bool, device=mask.device)
        allowed[:, :t] = mask.bool()
        minimum = torch.finfo(self.mask_dtype).min
        self.additive = torch.zeros(n, 1, 1, self.slots, dtype=self.mask_dtype, device=mask.device)
        self.additive.masked_fill_(~allowed[:, None, None, :], minimum)
        self.length = t
        self.next_position = mask.sum(-1, keepdim=True)
        return self.model.lm_head(out.last_hidden_state[:, -1]).float()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        slot = self.length
        if slot >= self.slots:
            raise RuntimeError(f"static cache full ({self.slots} slots)")  # pragma: no cover - sized by generate
        self.additive[..., slot] = 0
        if self.compiled:
            write = torch.tensor([slot], device=tokens.device)
            tokens = tokens.contiguous().view(-1, 1)  # a column of `sequences` has its stride: keep guards stable
            logits = compiled_decode_step(self.model, tokens, self.next_position, write, self.additive,
                                          self.keys, self.values)
        else:
            mask = self.additive[..., :slot + 1] if self.padded else None
            logits = decode_step(self.model, tokens[:, None], self.next_position, slot, mask,
                                 self.keys, self.values, slot + 1)
        self.length += 1
        self.next_position = self.next_position + 1
        return logits

    def reorder(self, index: torch.Tensor) -> None:
        self.keys.copy_(self.keys.index_select(1, index))
        self.values.copy_(self.values.index_select(1, index))
        self.additive.copy_(self.additive.index_select(0, index))
        self.next_position = self.next_position[index]

    def key_values(self):
        return tuple((self.keys[i, :, :, :self.length], self.values[i, :, :, :self.length])
                     for i in range(self.keys.shape[0]))


def layer_step(hidden, write, mask, keys, values, ln_1_w, ln_1_b, c_attn_w, c_attn_b, c_proj_w, c_proj_b,
               ln_2_w, ln_2_b, c_fc_w, c_fc_b, mlp_proj_w, mlp_proj_b, *, heads, eps, scale, act, upcast):
    """One block for one token per row, on plain tensors (what ``torch.compile`` compiles).

    The weights are arguments, not modules, so one compiled graph serves every layer (same shapes):
    compiling costs one block, not ``n_layer``. hidden (N, 1, E); keys / values (N, H, S, D) of this layer,
    written at slot ``write`` ((1,) long); mask additive (N, 1, 1, S). Same numerics as :func:`decode_step`
    in eval mode (no dropout).
    """
    n, _, e = hidden.shape
    d = e // heads
    x = F.layer_norm(hidden, (e,), ln_1_w, ln_1_b, eps)
    q, k, v = torch.addmm(c_attn_b, x.view(n, e), c_attn_w).split(e, dim=1)
    q, k, v = (t.view(n, heads, 1, d) for t in (q, k, v))
    keys.index_copy_(2, write, k)
    values.index_copy_(2, write, v)
    k_all, v_all = keys, values
    if upcast:
        q, k_all, v_all = q.float(), k_all.float(), v_all.float()
    out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, scale=scale).to(hidden.dtype)
    hidden = hidden + torch.addmm(c_proj_b, out.view(n, e), c_proj_w).view(n, 1, e)
    x = F.layer_norm(hidden, (e,), ln_2_w, ln_2_b, eps)
    x = act(torch.addmm(c_fc_b, x.view(n, e), c_fc_w))
    return hidden + torch.addmm(mlp_proj_b, x, mlp_proj_w).view(n, 1, e)


_COMPILED: dict[str, Any] = {}


def compiled_decode_step(model, tokens, positions, write, mask, keys, values) -> torch.Tensor:
    """:func:`decode_step` with each block run by the compiled :func:`layer_step` (fixed shapes, all S slots)."""
    layer = _COMPILED.get("layer_step")
    if layer is None:
        layer = _COMPILED["layer_step"] = torch.compile(layer_step, dynamic=False)
    body = model.transformer
    cfg = model.config
    hidden = body.wte(tokens) + body.wpe(positions)
    for i, block in enumerate(body.h):
        attn, mlp = block.attn, block.mlp
        hidden = layer(
            hidden, write, mask, keys[i], values[i], block.ln_1.weight, block.ln_1.bias, attn.c_attn.weight,
            attn.c_attn.bias, attn.c_proj.weight, attn.c_proj.bias, block.ln_2.weight, block.ln_2.bias,
            mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias,
            heads=cfg.n_head, eps=cfg.layer_norm_epsilon, scale=attn.scaling, act=mlp.act,
            upcast=cfg.reorder_and_upcast_attn,
        )
    return model.lm_head(body.ln_f(hidden))[:, -1].float()


# --------------------------------------------------------------------------------------- decoding loops
def _greedy_or_sample(cache, input_ids, mask, config, processor, max_new, pad, eos, generator, want_scores, want_logits,
                      streamer=None):
    """Greedy (argmax) or multinomial sampling over the processed scores. Returns (sequences, scores, logits)."""
    n, t = input_ids.shape
    sequences = torch.empty(n, t + max_new, dtype=torch.long, device=input_ids.device)
    sequences[:, :t] = input_ids
    eos_ids = torch.tensor(eos, dtype=torch.long, device=input_ids.device) if eos else None
    unfinished = torch.ones(n, dtype=torch.bool, device=input_ids.device)
    scores_out, logits_out = [], []
    logits = cache.prefill(input_ids, mask)
    length = t
    for step in range(max_new):
        if step:
            logits = cache.step(sequences[:, length - 1])
        scores = processor(sequences[:, :length], logits)
        if want_scores:
            scores_out.append(scores)
        if want_logits:
            logits_out.append(logits)
        if config.do_sample:
            probs = torch.softmax(scores, dim=-1)
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            tokens = scores.argmax(dim=-1)
        if eos_ids is not None:
            tokens = torch.where(unfinished, tokens, pad)
        sequences[:, length] = tokens
        length += 1
        if streamer is not None:
            streamer.put(tokens.cpu())
        if eos_ids is not None:
            unfinished &= ~torch.isin(tokens, eos_ids)
            if not bool(unfinished.any()):
                break
    return sequences[:, :length], tuple(scores_out), tuple(logits_out)


def _beam_search(cache, input_ids, mask, config, processor, max_new, fill, eos, generator, want_scores, want_logits):
    """HF's beam search (transformers 4.57 semantics, ``early_stopping`` True / False / "never").

    input_ids, mask (B * K, T), each prompt repeated K = num_beams times. Keeps K running beams and the
    K best finished hypotheses per prompt; a hypothesis' score is its summed log-probability divided by
    (new tokens) ** length_penalty. Returns (sequences (B * R, T + new), sequences_scores, beam_indices, scores, logits).
    """
    k = config.num_beams
    rows, t = input_ids.shape
    b = rows // k
    total = t + max_new
    device = input_ids.device
    vocab = cache.model.config.vocab_size
    keep = max(2, 1 + len(eos)) * k  # candidates per prompt: enough that K survive even if K of them end
    is_top = torch.arange(keep, device=device) < k
    eos_ids = torch.tensor(eos, dtype=torch.long, device=device)
    lp, early = config.length_penalty, config.early_stopping

    running = torch.full((b, k, total), fill, dtype=torch.long, device=device)
    running[:, :, :t] = input_ids.view(b, k, t)
    finished = running.clone()
    running_scores = torch.zeros(b, k, device=device)
    running_scores[:, 1:] = -1e9  # only the first beam's continuations at the first step
    finished_scores = torch.full((b, k), -1e9, device=device)
    finished_flag = torch.zeros(b, k, dtype=torch.bool, device=device)
    improvable = torch.ones(b, 1, dtype=torch.bool, device=device)
    running_beams = torch.full((b, k, max_new), -1, dtype=torch.long, device=device)
    finished_beams = running_beams.clone()
    offsets = torch.arange(b, device=device)[:, None] * k
    scores_out, logits_out = [], []

    def gather(tensor, index):  # tensor (b, m, ...) rows picked by index (b, j)
        while index.dim() < tensor.dim():
            index = index.unsqueeze(-1)
        return torch.take_along_dim(tensor, index, dim=1)

    cur = t
    logits = cache.prefill(input_ids, mask)
    while True:
        flat = running[:, :, :cur].reshape(rows, cur)
        if cur > t:
            logits = cache.step(flat[:, -1])
        log_probs = processor(flat, torch.log_softmax(logits, dim=-1))
        if want_scores:
            scores_out.append(log_probs)
        if want_logits:
            logits_out.append(logits)
        total_lp = (log_probs.view(b, k, vocab) + running_scores[:, :, None]).view(b, k * vocab)
        if config.do_sample:
            picked = torch.multinomial(torch.softmax(total_lp, dim=-1), keep, generator=generator)
            cand_lp = torch.gather(total_lp, 1, picked)
        else:
            cand_lp, picked = torch.topk(total_lp, keep, dim=1)
        source = picked // vocab
        tokens = picked % vocab
        cand = gather(running, source)
        cand[:, :, cur] = tokens
        cand_beams = gather(running_beams, source)
        cand_beams[:, :, cur - t] = source + offsets
        ends = torch.isin(tokens, eos_ids) | (cur + 1 >= total)

        # the K best candidates that did not end keep running
        alive_lp = cand_lp + ends.float() * -1e9
        best = torch.topk(alive_lp, k, dim=1).indices
        running, running_scores, running_beams = gather(cand, best), gather(alive_lp, best), gather(cand_beams, best)

        # candidates among the top K that ended compete with the finished hypotheses
        just_ended = ends & is_top[None, :]
        final_lp = cand_lp / ((cur + 1 - t) ** lp)
        final_lp = final_lp + (finished_flag.all(-1, keepdim=True) & (early is True)).float() * -1e9
        final_lp = final_lp + (~improvable).float() * -1e9
        final_lp = final_lp + (~just_ended).float() * -1e9
        merged_scores = torch.cat([finished_scores, final_lp], dim=1)
        top = torch.topk(merged_scores, k, dim=1).indices
        finished = gather(torch.cat([finished, cand], dim=1), top)
        finished_scores = gather(merged_scores, top)
        finished_beams = gather(torch.cat([finished_beams, cand_beams], dim=1), top)
        finished_flag = gather(torch.cat([finished_flag, just_ended], dim=1), top)

        cache.reorder(running_beams[:, :, cur - t].reshape(rows))
        cur += 1
        # can a running beam still beat the worst finished one?
        best_length = (total - t) if (early == "never" and lp > 0.0) else (cur - t)
        best_possible = running_scores[:, :1] / (best_length ** lp)
        worst = torch.where(finished_flag, finished_scores.min(dim=1, keepdim=True).values, -1e9)
        improvable = improvable & (best_possible > worst).any(dim=-1, keepdim=True)
        open_beams = not (bool(finished_flag.all()) and early is True)
        if not (bool(improvable.any()) and open_beams and not bool(ends.all())):
            break

    r = config.num_return_sequences
    sequences = finished[:, :r].reshape(b * r, total)
    seq_scores = finished_scores[:, :r].reshape(b * r)
    beam_indices = finished_beams[:, :r].reshape(b * r, max_new)
    generated = int((beam_indices >= 0).sum(dim=1).max())
    return sequences[:, :t + generated], seq_scores, beam_indices[:, :generated], tuple(scores_out), tuple(logits_out)


# --------------------------------------------------------------------------------------- the mixin
def _check_prompt(input_ids: Any, attention_mask: Any, vocab_size: int) -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}")
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise validation.InputError(f"input_ids must be (batch, prompt_length) with prompt_length >= 1, got shape {tuple(input_ids.shape)}")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise validation.InputError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if bool(((input_ids < 0) | (input_ids >= vocab_size)).any()):
        validation.check_input_ids(input_ids.cpu().numpy(), vocab_size)
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor):
            raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
        if tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise validation.InputError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has {tuple(input_ids.shape)}")


class GenerationMixin:
    """``generate()`` for GPT-2 models with an LM head (``GPT2LMHeadModel``, ``GPT2DoubleHeadsModel``)."""

    generation_config: GenerationConfig

    def can_generate(self) -> bool:
        return True

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
            input_ids: (B, T) prompt ids; batch prompts of different lengths with left padding.
            attention_mask: (B, T), 1 for prompt tokens, 0 for (left) padding. Default: ones, or
                ``input_ids != pad_token_id`` when the pad id occurs and is not an eos id (HF's rule).
            generation_config: the base settings (default ``self.generation_config``, read from the
                checkpoint's generation_config.json); keyword arguments override it.
            generator / seed: the random stream for sampling (a ``torch.Generator``, or a seed for a new one);
                neither: PyTorch's global RNG (``torch.manual_seed``), as HF.
            compile: run the decode step under ``torch.compile`` with a static cache (same tokens as eager).
            cache_implementation: ``None`` (default: preallocated cache, eager), ``"dynamic"`` (the model's
                ``forward`` with a growing cache) or ``"static"`` (same as ``compile=True``).
            output_logits: with ``return_dict_in_generate``, also return the raw logits of each step.
            streamer: a :class:`gpt2_multi.streamers.TextStreamer` (or anything with ``put`` / ``end``): gets the
                prompt (B, T), then each new token (B,) as it is chosen, then ``end()`` (also after an error).
                Not with beam search; the text streamers take one sequence (B = 1).
            **kwargs: any :class:`GenerationConfig` field: ``max_new_tokens`` (wins over ``max_length``),
                ``max_length``, ``min_new_tokens``, ``min_length``, ``do_sample``, ``temperature``, ``top_k``,
                ``top_p``, ``num_beams``, ``length_penalty``, ``early_stopping`` (True / False / "never"),
                ``repetition_penalty``, ``no_repeat_ngram_size``, ``eos_token_id`` (int or list),
                ``pad_token_id``, ``num_return_sequences``, ``output_scores``, ``return_dict_in_generate``,
                ``use_cache``. Anything else raises ``TypeError`` naming it.

        Returns:
            a LongTensor (B * num_return_sequences, T + new) of prompt and new tokens: rows that reached an
            eos are padded with ``pad_token_id`` afterwards, and generation stops early when every row has ended;
            or, with ``return_dict_in_generate=True``, a :class:`GenerateDecoderOnlyOutput`
            (:class:`GenerateBeamDecoderOnlyOutput` for beam search) with ``.sequences`` and ``.scores``.
            Decoding runs under ``torch.inference_mode()``; the returned ids are ordinary tensors (usable as
            labels in training), the scores and cache are inference tensors (read them, or ``.clone()`` them).
        """
        if "inputs" in kwargs:  # HF's name for the prompt
            if input_ids is not None:
                raise TypeError("pass the prompt as input_ids or as inputs, not both")
            input_ids = kwargs.pop("inputs")
        if input_ids is None:
            raise validation.InputError("generate() needs input_ids (B, T): a prompt of at least one token")
        if cache_implementation not in CACHE_IMPLEMENTATIONS:
            raise ValueError(f"cache_implementation={cache_implementation!r}; choose None, 'dynamic' or 'static'")
        if seed is not None and generator is not None:
            raise ValueError("pass seed or generator, not both")
        base = generation_config if generation_config is not None else getattr(self, "generation_config", None)
        if base is None:
            base = GenerationConfig.from_model_config(self.config)
        config = base.copy(**kwargs)  # TypeError naming unknown arguments; validate() for the rest
        cfg = self.config
        _check_prompt(input_ids, attention_mask, cfg.vocab_size)
        prompt_length = input_ids.shape[1]
        min_new, max_new = config.new_tokens(prompt_length, cfg.n_positions)

        eos = config.eos_token_ids
        pad = config.pad_token_id
        if pad is None and eos:
            _warn_once(f"Setting `pad_token_id` to `eos_token_id`:{eos[0]} for open-end generation.")
            pad = eos[0]
        device = self.device
        input_ids = input_ids.to(device=device, dtype=torch.long)
        if attention_mask is None:
            if pad is not None and pad not in eos and bool((input_ids == pad).any()):
                attention_mask = (input_ids != pad).long()
            else:
                attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(device=device, dtype=torch.long)
        if pad is not None and bool((attention_mask[:, -1] == 0).any()):
            _warn_once("A decoder-only architecture is being used, but right-padding was detected! For correct "
                       "generation results, please set `padding_side='left'` when initializing the tokenizer.")
        if seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))

        beams = config.num_beams
        expand = beams if beams > 1 else config.num_return_sequences
        if expand > 1:  # each prompt repeated (HF's repeat_interleave)
            input_ids = input_ids.repeat_interleave(expand, dim=0)
            attention_mask = attention_mask.repeat_interleave(expand, dim=0)
        rows = input_ids.shape[0]
        if streamer is not None and beams > 1:
            raise ValueError("a streamer cannot be used with beam search (the beams change their past): set num_beams=1")

        compiled = compile or cache_implementation == "static"
        if compiled and self.training:
            raise ValueError("compile=True runs the blocks without dropout: call model.eval() first")
        if not config.use_cache or cache_implementation == "dynamic":
            if compiled:
                raise ValueError("compile=True needs the static cache: use_cache=True and cache_implementation 'static' or None")
            cache = DynamicCache(self, use_cache=config.use_cache)
        else:
            slots = prompt_length + max_new
            if compiled:
                slots = min(max(cfg.n_positions, slots), math.ceil(slots / _STATIC_BUCKET) * _STATIC_BUCKET)
            cache = StaticCache(self, rows, slots, compiled=compiled)

        processor = LogitsProcessor(config, prompt_length, min_new, cfg.vocab_size)
        want_scores = config.return_dict_in_generate and config.output_scores
        want_logits = config.return_dict_in_generate and output_logits
        with torch.inference_mode():
            if beams > 1:
                # HF 4.57 fills unfinished positions with `pad_token_id or eos_token_id[0]`: a pad id of 0 gives eos.
                fill = (pad or eos[0]) if eos else (pad if pad is not None else 0)
                sequences, seq_scores, beam_indices, scores, logits = _beam_search(
                    cache, input_ids, attention_mask, config, processor, max_new, fill, eos, generator,
                    want_scores, want_logits)
            else:
                if streamer is not None:
                    streamer.put(input_ids.cpu())
                try:
                    sequences, scores, logits = _greedy_or_sample(
                        cache, input_ids, attention_mask, config, processor, max_new, pad, eos, generator,
                        want_scores, want_logits, streamer)
                finally:  # also on an error, so that a reader of the stream is not left waiting
                    if streamer is not None:
                        streamer.end()
        # A normal tensor, not an inference tensor: the ids may go into a training step (labels, RL losses).
        sequences = sequences.clone()
        if not config.return_dict_in_generate:
            return sequences
        if beams > 1:
            return GenerateBeamDecoderOnlyOutput(
                sequences=sequences, sequences_scores=seq_scores if config.output_scores else None,
                scores=scores or None, logits=logits or None, beam_indices=beam_indices,
                past_key_values=cache.key_values())
        return GenerateDecoderOnlyOutput(sequences=sequences, scores=scores or None, logits=logits or None,
                                         past_key_values=cache.key_values())


__all__ = [
    "CACHE_IMPLEMENTATIONS",
    "DynamicCache",
    "GenerateBeamDecoderOnlyOutput",
    "GenerateDecoderOnlyOutput",
    "GenerationMixin",
    "LogitsProcessor",
    "StaticCache",
    "decode_step",
]
