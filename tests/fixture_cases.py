"""Access to the golden fixtures in tests/fixtures (made by HF transformers 4.57.6; see fixtures/README.md).

The cases themselves are read by the conformance layer's one loader (:func:`gpt2_multi.conformance.cases.golden_cases`,
its one :class:`~gpt2_multi.conformance.cases.Case`); :func:`golden_case` picks one of them by name.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from gpt2_multi.conformance.cases import HEADS, Case, golden_cases

FIXTURES = Path(__file__).parent / "fixtures"
HF_TINY = FIXTURES / "hf-tiny"
INDEX = json.loads((HF_TINY / "index.json").read_text())

# The PyTorch class HF used for each head directory (one table, shared with the conformance suite).
HEAD_ARCHITECTURES = HEADS


@functools.cache
def _golden() -> dict[str, Case]:
    return {case.name.removeprefix("golden/"): case for case in golden_cases(HF_TINY)}


def golden_case(name: str) -> Case:
    """The golden case ``name`` (``lm_plain``, ...): ``inputs``, ``flags``, ``past_chunks`` and HF's ``expected``.

    Shared across tests: do not change its arrays.
    """
    return _golden()[name]


def checkpoint_dir(head: str, fmt: str) -> Path:
    """Directory of HF's checkpoint for ``head`` in ``fmt`` (safetensors, bin, tf, flax)."""
    return HF_TINY / INDEX["heads"][head]["checkpoints"][fmt]
