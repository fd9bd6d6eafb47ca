"""GPT-2's tokenizers: ``GPT2Tokenizer`` (pure Python) and ``GPT2TokenizerFast`` (tiktoken / Rust tokenizers).

Both follow HF transformers' tokenizer API and give the ids of HF's ``GPT2TokenizerFast``.
``from_pretrained("gpt2")`` works offline: GPT-2's vocabulary ships with the package.
"""

from gpt2_multi.tokenization.base import AddedToken, BatchEncoding, InvalidTokenIdError
from gpt2_multi.tokenization.fast import GPT2TokenizerFast
from gpt2_multi.tokenization.slow import GPT2Tokenizer

__all__ = ["AddedToken", "BatchEncoding", "GPT2Tokenizer", "GPT2TokenizerFast", "InvalidTokenIdError"]
