"""The embedded demo model: a small GPT-2 on the real GPT-2 vocabulary, random weights from a seed.

``gpt2-multi demo``, ``gpt2-multi generate`` and ``gpt2-multi conform`` use it when no checkpoint is named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEMO_CONFIG = {"vocab_size": 50257, "n_positions": 128, "n_embd": 64, "n_layer": 2, "n_head": 4,
               "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
DEMO_SEED = 0
DEMO_PROMPT = "The three frameworks agree that"


def make_demo_checkpoint(directory: Path, seed: int = DEMO_SEED) -> Path:
    """Write the embedded demo model (seeded random weights, HF's init) as safetensors + config.json."""
    from gpt2_multi import GPT2Config
    from gpt2_multi.checkpoint import expected_shapes, save_checkpoint

    config = GPT2Config(**DEMO_CONFIG, architectures=["GPT2LMHeadModel"])
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(config, "GPT2LMHeadModel").items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            tensors[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif name.endswith(".bias"):
            tensors[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        else:
            std = config.initializer_range / (np.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else 1.0)
            tensors[name] = (std * rng.standard_normal(shape)).astype(np.float32)
    save_checkpoint(directory, tensors, config, architecture="GPT2LMHeadModel")
    return directory
