"""``GPT2Tokenizer``: GPT-2's byte-level BPE in pure Python (with the ``regex`` module)."""

from __future__ import annotations

import functools
import numbers
from typing import Any

from gpt2_multi.tokenization import bpe
from gpt2_multi.tokenization.base import GPT2TokenizerBase, TextTypeError


@functools.lru_cache(maxsize=1)
def _builtin_encoder() -> bpe.BytePairEncoder:
    vocab, merges = bpe.builtin_vocab_and_merges()
    return bpe.BytePairEncoder(vocab, merges)


class GPT2Tokenizer(GPT2TokenizerBase):
    """GPT-2's tokenizer in pure Python, with HF's ``GPT2Tokenizer`` API and HF's fast tokenizer's ids.

    Text is split with GPT-2's pattern, each piece's UTF-8 bytes go through BPE (a per-word cache
    makes repeated words free; words of thousands of bytes use an O(n log n) merge), and added
    tokens such as ``<|endoftext|>`` are matched before that and never split.

    >>> tok = GPT2Tokenizer.from_pretrained("gpt2")
    >>> tok("Hello world").input_ids
    [15496, 995]
    """

    is_fast = False

    def __init__(self, vocab_file: Any = None, merges_file: Any = None, **kwargs: Any) -> None:
        super().__init__(vocab_file, merges_file, **kwargs)

    def _sequence_argument(self, text: list | tuple, text_pair: Any, method: str) -> tuple[Any, Any, bool]:
        """As HF's ``GPT2Tokenizer``: a list or tuple of str is tokens (``convert_tokens_to_ids``, so an unknown
        one is ``unk_token``: ``encode(("Hello world", "x"))`` is ``[50256, 87]``), a list of int is ids; a
        ``text_pair`` is read the same way, or encoded when it is a str."""
        pair = None if text_pair is None else self._ids_of(text_pair, method)
        return self._ids_of(text, method), pair, True

    def _ids_of(self, value: Any, method: str) -> list[Any]:
        if isinstance(value, str):
            return self.encode(value, add_special_tokens=False)
        if isinstance(value, (list, tuple)) and value:
            if all(isinstance(v, str) for v in value):
                return self.convert_tokens_to_ids(list(value))
            if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
                return [int(v) for v in value]
        raise TextTypeError(
            f"{method} takes a str, or a list or tuple of tokens (all str) or of token ids (all int) as HF's "
            f"GPT2Tokenizer does, got {type(value).__name__} {value!r:.60}; use tokenizer(list_of_texts) for a batch"
        )

    def _post_init(self) -> None:
        if self._is_builtin_vocab:
            self._bpe = _builtin_encoder()
        else:
            unk = self._unk_for_missing_bytes()
            self._bpe = bpe.BytePairEncoder(self.encoder, self.bpe_merges, None if unk is None else self.encoder[unk])
        self._cache = bpe.TextEncoder(self._bpe.encode_bytes)

    def _encode_ordinary(self, segments: list[str]) -> list[list[int]]:
        encode = self._cache.encode
        return [encode(segment) for segment in segments]

    def bpe(self, word: str) -> str:
        """HF's ``bpe``: the BPE of one pre-tokenised word given as a byte-level string, tokens joined by spaces."""
        data = bpe.token_to_bytes(word)
        if data is None:
            raise ValueError(f"{word!r} is not a byte-level string (encode text with tokenize() instead)")
        return " ".join(self._base_tokens[i] or "" for i in self._bpe.encode_bytes(data))
