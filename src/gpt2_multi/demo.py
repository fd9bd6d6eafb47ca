"""The demo's models: the trained model that ships in the package, and a seeded random one.

* ``gpt2-multi/tiny`` (:data:`DEFAULT_MODEL`): a small GPT-2 trained by ``gpt2-multi train`` on English
  prose from the Python documentation (``recipes/tiny/``); ``gpt2-multi demo`` and ``gpt2-multi generate``
  use it by default, and every ``from_pretrained`` loads it by name, offline.
* :func:`make_demo_checkpoint`: a smaller GPT-2 with seeded random weights on the real GPT-2 vocabulary,
  which ``gpt2-multi conform`` and the tests write when they need a checkpoint of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the model ``gpt2-multi demo`` and ``generate`` run by default
DEFAULT_MODEL = "gpt2-multi/tiny"
#: the embedded model's held-out text (the tail of its corpus that training set aside), in its package folder
HELDOUT_FILE = "heldout.txt"
#: the demo's perplexity: this many windows of this many tokens of the held-out text
DEMO_EVAL_WINDOWS = 8
DEMO_EVAL_LENGTH = 128

DEMO_CONFIG = {"vocab_size": 50257, "n_positions": 128, "n_embd": 64, "n_layer": 2, "n_head": 4,
               "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
DEMO_SEED = 0
DEMO_PROMPT = "The function returns"


def embedded_summary(name: str) -> str:
    """One line on an embedded model: its shape and what it was trained on (from its config and model card)."""
    from gpt2_multi import GPT2Config
    from gpt2_multi.hub import resolve

    config = GPT2Config.from_pretrained(resolve(name))
    return (f"{config.n_layer} layers, n_embd {config.n_embd}, {config.n_head} heads, context {config.n_positions}, "
            "GPT-2 vocabulary, trained on the Python documentation")


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
