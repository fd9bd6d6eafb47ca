"""Conformance suite (installed as ``gpt2_multi.conformance``; the repository keeps it in ``conformance/``):
one checkpoint in every registered backend; logits, hidden states, attentions, losses, KV caches,
gradients and an optimizer step compared against HF's golden data and pairwise.

Used by the tests (``tests/test_conformance.py``, ``tests/contract/``), by nox (``nox -s conformance``) and
by ``gpt2-multi conform [CKPT]``. Each backend is reached through :mod:`gpt2_multi.backends` (its
``backend.py``: load, forward, cache adapters to (B, H, S, D), gradients).

    cases.py       the one Case: HF's golden fixtures + the grid of configs and inputs (VARIATIONS)
    runner.py      runs cases, the one comparer (union of outputs, defined positions, tolerances as data)
    report.py      the table (and --json)
    generation.py  generate() cases compared token for token (bfloat16: up to a near tie)
    training.py    losses, gradients and one AdamW step compared (--grads)
    roundtrip.py   load in A, save, load in B
"""

from gpt2_multi.conformance.cases import Case, generated_cases, golden_cases
from gpt2_multi.conformance.runner import Result, run

__all__ = ["Case", "Result", "generated_cases", "golden_cases", "run"]
