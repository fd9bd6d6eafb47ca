"""Generation, framework-free: settings, the per-call plan, the sampling stream and beam bookkeeping.

* :mod:`~gpt2_multi.generation.config`: :class:`GenerationConfig` (HF's ``generation_config.json``).
* :mod:`~gpt2_multi.generation.plan`: :func:`prepare`, which validates a prompt and resolves a call into
  a :class:`Plan` (expanded prompts, pad / eos / fill, lengths) with hashable :class:`Settings`; the
  processor pipeline's order and semantics (:data:`PROCESSORS`).
* :mod:`~gpt2_multi.generation.sampling`: the counter-based random stream behind ``seed=``, the same in
  every backend.
* :mod:`~gpt2_multi.generation.beam`: :class:`BeamSearch`, HF's beam scorer on each step's candidates.
* :mod:`~gpt2_multi.generation.reference`: numpy oracles for the tests.

Each stack's ``generation.py`` holds only what must be traced or run in its framework.
"""

from __future__ import annotations

import numpy as np

from gpt2_multi.generation.beam import BeamSearch
from gpt2_multi.generation.config import DEFAULTS, GENERATION_CONFIG_NAME, GenerationConfig
from gpt2_multi.generation.plan import PROCESSORS, Plan, Settings, check_prompt, prepare, resolve_prompt
from gpt2_multi.generation.reference import reference_process_logits


def position_ids_from_mask(attention_mask: np.ndarray) -> np.ndarray:
    """Left-padded prompts: position = (cumsum of the mask) - 1, padding positions set to 1 (HF's convention)."""
    mask = np.asarray(attention_mask)
    positions = np.cumsum(mask, axis=-1) - 1
    return np.where(mask == 0, 1, positions)


__all__ = [
    "DEFAULTS", "GENERATION_CONFIG_NAME", "PROCESSORS", "BeamSearch", "GenerationConfig", "Plan", "Settings",
    "check_prompt", "position_ids_from_mask", "prepare", "reference_process_logits", "resolve_prompt",
]
