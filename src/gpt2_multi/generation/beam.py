"""Beam-search bookkeeping, written once: HF's (4.57, vectorised) beam scorer on each step's candidates.

A stack's beam loop does only the array work: the model step, ``log_softmax``, the processors, adding
:attr:`BeamSearch.running_scores` and choosing ``settings.beam_candidates`` (2K for one eos id)
candidates per prompt from the (K * V) flattened scores (top-k, or Gumbel top-k when sampling). It
hands their scores and flat indices to :meth:`BeamSearch.step`, which keeps the K running beams and
the K best finished hypotheses per prompt and returns the rows to reorder the cache by::

    beams = BeamSearch(plan, vocab_size)
    logits = prefill(plan.input_ids)
    while True:
        log_probs = process(beams.sequences(), log_softmax(logits))           # (B * K, V)
        total = (log_probs.reshape(B, K, V) + beams.running_scores[..., None]).reshape(B, K * V)
        scores, index = top_k(total, settings.beam_candidates)                 # (B, 2K) each
        rows = beams.step(scores, index)
        if beams.done:
            break
        cache = reorder(cache, rows); logits = step(beams.last_tokens())
    sequences, sequences_scores, beam_indices = beams.finalize()

Semantics (HF's): a hypothesis' score is its summed log-probability divided by (new tokens) **
``length_penalty``; a candidate that ends (eos, or the last position) joins the finished ones only if it
is among the top K of its step; ``early_stopping`` True stops a prompt once K hypotheses are finished,
False / "never" go on while a running beam can still beat the worst finished one (with "never" and a
positive penalty, judged at the maximum length). Ties are broken by the lower index (stable sort).

The Flax stack keeps an in-graph copy (inside ``jax.jit``); ``tests/test_flax_generation.py`` holds it
equal to this one on random inputs.
"""

from __future__ import annotations

import numpy as np

from gpt2_multi.generation.plan import Plan

NEG = np.float32(-1.0e9)  # HF's "impossible" beam score


def _gather(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """array (B, M, ...) rows picked by index (B, J) -> (B, J, ...)."""
    return np.take_along_axis(array, index.reshape(index.shape + (1,) * (array.ndim - 2)), axis=1)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first; ties: the lower index first."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


class BeamSearch:
    """The state of one beam search over ``plan.input_ids`` (B * K, T), each prompt repeated K times."""

    def __init__(self, plan: Plan, vocab_size: int) -> None:
        s = plan.settings
        self.k, self.vocab = s.num_beams, int(vocab_size)
        self.b, self.t = plan.batch_size, plan.prompt_length
        self.total = plan.total_length
        self.max_new = s.max_new
        self.keep = s.beam_candidates
        self.eos = np.array(s.eos, dtype=np.int64)
        self.length_penalty, self.early_stopping = s.length_penalty, s.early_stopping
        self.num_return_sequences = s.num_return_sequences
        b, k = self.b, self.k
        self.running = np.full((b, k, self.total), s.pad, dtype=np.int64)
        self.running[:, :, :self.t] = plan.input_ids.reshape(b, k, self.t)
        self.finished = self.running.copy()
        self.running_scores = np.zeros((b, k), np.float32)
        self.running_scores[:, 1:] = NEG  # only the first beam's continuations at the first step
        self.finished_scores = np.full((b, k), NEG, np.float32)
        self.finished_flag = np.zeros((b, k), bool)
        self.improvable = np.ones((b, 1), bool)
        self.running_beams = np.full((b, k, self.max_new), -1, np.int64)
        self.finished_beams = self.running_beams.copy()
        self.cur = self.t
        self.done = False

    def sequences(self) -> np.ndarray:
        """(B * K, cur) the running beams' tokens so far (what the processors see)."""
        return self.running[:, :, :self.cur].reshape(self.b * self.k, self.cur)

    def last_tokens(self) -> np.ndarray:
        """(B * K,) the token each running beam feeds to the model next."""
        return self.running[:, :, self.cur - 1].reshape(-1)

    def step(self, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Take one step's candidates: ``scores`` (B, keep) float32 summed log-probabilities, ``index`` (B, keep)
        flat ids ``beam * V + token``, best first. Returns the (B * K,) source row of each new running beam."""
        b, k, t, cur = self.b, self.k, self.t, self.cur
        scores = np.asarray(scores, np.float32)
        index = np.asarray(index, np.int64)
        if scores.shape != (b, self.keep) or index.shape != (b, self.keep):
            raise ValueError(f"beam step takes ({b}, {self.keep}) candidates, got {scores.shape} and {index.shape}")
        source, tokens = index // self.vocab, index % self.vocab
        cand = _gather(self.running, source)
        cand[:, :, cur] = tokens
        cand_beams = _gather(self.running_beams, source)
        cand_beams[:, :, cur - t] = source + np.arange(b)[:, None] * k
        ends = np.isin(tokens, self.eos) | (cur + 1 >= self.total)

        # the K best candidates that did not end keep running
        alive = scores + ends.astype(np.float32) * NEG
        best = _top(alive, k)
        self.running, self.running_scores = _gather(cand, best), np.take_along_axis(alive, best, axis=1)
        self.running_beams = _gather(cand_beams, best)

        # candidates among the top K that ended compete with the finished hypotheses
        just_ended = ends & (np.arange(self.keep) < k)[None, :]
        final = scores / np.float32((cur + 1 - t) ** self.length_penalty)
        final = final + (self.finished_flag.all(axis=1, keepdims=True) & (self.early_stopping is True)) * NEG
        final = final + (~self.improvable) * NEG + (~just_ended) * NEG
        merged = np.concatenate([self.finished_scores, final.astype(np.float32)], axis=1)
        top = _top(merged, k)
        self.finished = _gather(np.concatenate([self.finished, cand], axis=1), top)
        self.finished_scores = np.take_along_axis(merged, top, axis=1)
        self.finished_beams = _gather(np.concatenate([self.finished_beams, cand_beams], axis=1), top)
        self.finished_flag = np.take_along_axis(np.concatenate([self.finished_flag, just_ended], axis=1), top, axis=1)

        rows = self.running_beams[:, :, cur - t].reshape(-1)
        self.cur = cur = cur + 1
        # can a running beam still beat the worst finished one?
        never = self.early_stopping == "never" and self.length_penalty > 0.0
        best_length = (self.total - t) if never else (cur - t)
        best_possible = self.running_scores[:, :1] / np.float32(best_length ** self.length_penalty)
        worst = np.where(self.finished_flag, self.finished_scores.min(axis=1, keepdims=True), NEG)
        self.improvable = self.improvable & (best_possible > worst).any(axis=1, keepdims=True)
        all_closed = bool(self.finished_flag.all()) and self.early_stopping is True
        self.done = not (bool(self.improvable.any()) and not all_closed and not bool(ends.all()))
        return rows

    def finalize(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sequences (B * R, T + new), sequences_scores (B * R,), beam_indices (B * R, new)), R =
        num_return_sequences; ``new`` is the longest returned hypothesis' length (HF trims to it)."""
        r = self.num_return_sequences
        sequences = self.finished[:, :r].reshape(self.b * r, self.total)
        scores = self.finished_scores[:, :r].reshape(-1)
        beam_indices = self.finished_beams[:, :r].reshape(self.b * r, self.max_new)
        generated = int((beam_indices >= 0).sum(axis=1).max())
        return sequences[:, :self.t + generated], scores, beam_indices[:, :generated]


__all__ = ["NEG", "BeamSearch"]
