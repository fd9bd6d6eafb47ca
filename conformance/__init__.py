"""Conformance suite: one checkpoint in every installed backend; logits, hidden states, attentions,
losses and KV caches compared against HF's golden data and pairwise.

Used by the tests (``tests/test_conformance.py``), by nox (``nox -s conformance``) and by
``gpt2-multi conform [CKPT]``.

    cases.py      golden fixtures + a generated grid of configs and inputs
    executors.py  per-backend loading, calling, and cache adapters to (B, H, S, D)
    runner.py     runs cases, compares with tolerances, masks only undefined positions
    report.py     the table (and --json)
    roundtrip.py  load in A, save, load in B
"""

from gpt2_multi.conformance.cases import Case, generated_cases, golden_cases
from gpt2_multi.conformance.runner import Result, run

__all__ = ["Case", "Result", "generated_cases", "golden_cases", "run"]
