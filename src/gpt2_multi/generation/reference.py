"""numpy references of the generation pipeline: test oracles, never a production path.

:func:`reference_process_logits` is the processor pipeline of :data:`gpt2_multi.generation.plan.PROCESSORS`
in plain numpy; each stack's array implementation is tested against it. The sampling stream's
reference is :func:`gpt2_multi.generation.sampling.reference_sample`.
"""

from __future__ import annotations

import numpy as np

from gpt2_multi.generation.config import GenerationConfig


def reference_process_logits(
    scores: np.ndarray, input_ids: np.ndarray, config: GenerationConfig, new_so_far: int, min_new: int
) -> np.ndarray:
    """The logits processors in HF's order, in numpy: the reference the backends are tested against.

    ``scores`` (B, V) float32 next-token logits; ``input_ids`` (B, S) everything so far.
    Order: repetition penalty, no-repeat n-gram, min new tokens (eos -> -inf), then for sampling
    temperature, top-k, top-p.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    neg = -np.inf  # HF masks with -inf
    if config.repetition_penalty != 1.0:
        for b in range(scores.shape[0]):
            seen = np.unique(input_ids[b])
            s = scores[b, seen]
            scores[b, seen] = np.where(s < 0, s * config.repetition_penalty, s / config.repetition_penalty)
    n = config.no_repeat_ngram_size
    if n > 0 and input_ids.shape[1] + 1 >= n:
        for b in range(scores.shape[0]):
            seq = input_ids[b].tolist()
            prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
            for i in range(len(seq) - n + 1):
                if tuple(seq[i:i + n - 1]) == prefix:
                    scores[b, seq[i + n - 1]] = neg
    if new_so_far < min_new:
        for e in config.eos_token_ids:
            if e < scores.shape[-1]:  # an eos outside the vocabulary can never be produced (HF ignores it)
                scores[:, e] = neg
    if config.do_sample:
        if config.temperature != 1.0:
            scores = scores / config.temperature
        k = min(config.top_k, scores.shape[-1])
        if 0 < k < scores.shape[-1]:
            kth = np.sort(scores, axis=-1)[:, -k][:, None]
            scores = np.where(scores < kth, neg, scores)
        if config.top_p < 1.0:
            order = np.argsort(scores, axis=-1)  # ascending, like HF's TopPLogitsWarper
            sorted_scores = np.take_along_axis(scores, order, axis=-1)
            probs = np.exp(sorted_scores - sorted_scores.max(-1, keepdims=True))
            probs = probs / probs.sum(-1, keepdims=True)
            cumulative = np.cumsum(probs, axis=-1)
            remove = cumulative <= 1 - config.top_p
            remove[:, -1] = False  # keep at least one token
            sorted_scores = np.where(remove, neg, sorted_scores)
            scores = np.empty_like(scores)
            np.put_along_axis(scores, order, sorted_scores, axis=-1)
    return scores
