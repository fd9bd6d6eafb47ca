"""The seeded random stream of ``generate(do_sample=True, seed=N)``: the same draws in every backend.

Each framework's own generator (``torch.Generator``, TF's stateless kernels, ``jax.random``) produces
different numbers from the same seed, and TF's even differs between eager and XLA. So ``seed=`` uses
one counter-based stream, defined here and written in each framework's integer ops, which every
backend computes bit for bit, eagerly and compiled:

    key(seed, step)          = mix(mix(seed_lo) ^ mix(seed_hi ^ (step + STEP_SALT)))
    bits(seed, step, r, c)   = mix(mix(r * n_cols + c) ^ key(seed, step))           (uint32)
    u                        = ((bits >> 8) + 0.5) * 2**-24                          (float32, in (0, 1))
    token(row r)             = argmax_c  scores[r, c] - log(-log(u[r, c]))           (Gumbel-max)

``mix`` is a 32-bit integer hash (Chris Wellons' "lowbias32"); ``seed_lo`` / ``seed_hi`` are the low and
high 32 bits of the seed; ``step`` counts the generated tokens from 0; ``r`` is the row of the expanded
batch (prompt ``b``'s ``i``-th return sequence is row ``b * num_return_sequences + i``) and ``c`` the
vocabulary id. Gumbel-max draws exactly from ``softmax(scores)``, and a -inf score (filtered by top-k /
top-p) is never drawn. Beam sampling draws its ``keep`` candidates without replacement as the top-``keep``
of the same noisy scores over the (num_beams * V) flattened candidates of each prompt (Gumbel top-k),
with ``r`` the prompt and ``c`` the flat candidate index.

Where backends can still differ: the integer part is exact everywhere; the float part is not. Two
backends' logits differ in their last bits (matmul order), and ``log`` may differ by an ulp between
math libraries, so when the two best noisy scores of a row lie within ~1e-6 of each other, backends may
pick different tokens. Measured in ``tests/test_generation_core.py`` (the tie rate is printed by
``benchmarks/sampling_ties.py``); it is rare, and a test asserts its bound.

All integer arithmetic here is on uint64 holding uint32 values (or uint32 with wrap-around), which every
framework has; multiplications are reduced mod 2**32 after each step.
"""

from __future__ import annotations

import numpy as np

MASK32 = 0xFFFFFFFF
MIX_MUL_1 = 0x7FEB352D
MIX_MUL_2 = 0x846CA68B
STEP_SALT = 0x9E3779B9  # keeps step 0 from hashing to the seed itself


def seed_words(seed: int) -> tuple[int, int]:
    """A non-negative int seed -> (low, high) 32-bit words. Raises on a negative or >= 2**64 seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must lie in [0, 2**64), got {seed}")
    return seed & MASK32, (seed >> 32) & MASK32


def mix32(x: np.ndarray) -> np.ndarray:
    """lowbias32 on uint64 arrays holding uint32 values (the numpy spelling; each stack writes the same)."""
    x = np.asarray(x, dtype=np.uint64) & MASK32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(MIX_MUL_1)) & MASK32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(MIX_MUL_2)) & MASK32
    x ^= x >> np.uint64(16)
    return x


def step_key(seed: int, step: int) -> int:
    """The per-step key: a uint32 int."""
    lo, hi = seed_words(seed)
    salted = (hi ^ ((int(step) + STEP_SALT) & MASK32)) & MASK32
    return int(mix32(np.uint64(int(mix32(np.uint64(lo))) ^ int(mix32(np.uint64(salted))))))


def uniforms(seed: int, step: int, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) float32 uniforms in (0, 1) for this step: the numpy reference of the stream."""
    counter = np.arange(rows, dtype=np.uint64)[:, None] * np.uint64(cols) + np.arange(cols, dtype=np.uint64)[None, :]
    bits = mix32(mix32(counter & MASK32) ^ np.uint64(step_key(seed, step)))
    return ((bits >> np.uint64(8)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)


def gumbel(seed: int, step: int, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) float32 Gumbel noise ``-log(-log(u))``."""
    u = uniforms(seed, step, rows, cols)
    return -np.log(-np.log(u))


def reference_sample(scores: np.ndarray, seed: int, step: int) -> np.ndarray:
    """Gumbel-max over processed ``scores`` (N, V): one token id per row (the test oracle)."""
    scores = np.asarray(scores, dtype=np.float32)
    noisy = scores + gumbel(seed, step, *scores.shape)
    return np.argmax(noisy, axis=-1)


def reference_sample_without_replacement(scores: np.ndarray, seed: int, step: int, k: int) -> np.ndarray:
    """Gumbel top-``k`` over ``scores`` (B, M): ``k`` distinct column indices per row, best first."""
    scores = np.asarray(scores, dtype=np.float32)
    noisy = scores + gumbel(seed, step, *scores.shape)
    return np.argsort(-noisy, axis=-1, kind="stable")[:, :k]


__all__ = [
    "MASK32", "MIX_MUL_1", "MIX_MUL_2", "STEP_SALT", "gumbel", "mix32", "reference_sample",
    "reference_sample_without_replacement", "seed_words", "step_key", "uniforms",
]
