"""gpt2-multi: GPT-2 for PyTorch, TensorFlow/Keras and JAX/Flax from one code base.

This top-level package is framework-free: it holds the config, the tokenizers and
the checkpoint layer. The model stacks live in ``gpt2_multi.pt``, ``gpt2_multi.tf``
and ``gpt2_multi.flax``; importing one of them imports only its own framework.
"""

from __future__ import annotations

from typing import Any

from gpt2_multi.config import ConfigError, GPT2Config

__version__ = "0.1.0"

__all__ = ["ConfigError", "GPT2Config", "GPT2Tokenizer", "GPT2TokenizerFast", "TextIteratorStreamer", "TextStreamer",
           "__version__"]


def __getattr__(name: str) -> Any:
    # The tokenizers load lazily so that `import gpt2_multi` stays cheap.
    if name in ("GPT2Tokenizer", "GPT2TokenizerFast"):
        from gpt2_multi import tokenization

        return getattr(tokenization, name)
    if name in ("TextStreamer", "TextIteratorStreamer"):
        from gpt2_multi import streamers

        return getattr(streamers, name)
    raise AttributeError(f"module 'gpt2_multi' has no attribute {name!r}")
