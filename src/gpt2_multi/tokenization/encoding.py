"""What a tokenizer call returns: :class:`BatchEncoding`, its tensors, and the token <-> text alignment.

* :class:`BatchEncoding` is a dict of fields (``input_ids``, ``attention_mask``, ...) with attribute
  access and ``return_tensors`` conversion, as in HF transformers.
* :class:`Encoding` is one row's alignment: for each token its text span (``offsets``), its word
  (``word_ids``) and its sequence (``sequence_ids``: 0, 1 for a pair's second text, None for added
  special and padding tokens). The fast tokenizer's BatchEncodings answer HF's alignment methods
  (``word_ids()``, ``token_to_word``, ``char_to_token``, ...) from it, with the answers of HF's
  ``tokenizers.Encoding``.

The alignment costs a second pass through the Rust ``tokenizers`` engine (ids come from tiktoken), so a
BatchEncoding computes it on first use, from the text it was made from, and checks that this gives the
ids it holds. ``return_offsets_mapping=True`` computes it with the ids.
"""

from __future__ import annotations

import importlib
import warnings
from collections import UserDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from gpt2_multi import backends

TENSOR_TYPES = ("np", *(b.tensor_type for b in backends.REGISTRY.values()))


# ---------------------------------------------------------------------------------------------------------
# Tensors.


def _backend_for(tensor_type: str):
    """The registered backend whose tensors ``return_tensors=tensor_type`` asks for; a clear ImportError when its
    framework is missing."""
    backend = next(b for b in backends.REGISTRY.values() if b.tensor_type == tensor_type)
    try:
        importlib.import_module(backend.tensor_module)
    except ImportError as err:
        raise ImportError(
            f"return_tensors={tensor_type!r} needs {backend.label}, which could not be imported ({err}); "
            f"install it ({backend.install_hint()}), or use return_tensors='np'"
        ) from err
    return backend


def check_tensor_type(tensor_type: Any) -> str | None:
    """Validate ``return_tensors``: None, "np", "pt", "tf" or "jax" (HF's TensorType values are accepted)."""
    if tensor_type is None:
        return None
    value = getattr(tensor_type, "value", tensor_type)
    if value == "numpy":
        value = "np"
    if value not in TENSOR_TYPES:
        raise ValueError(f"return_tensors must be one of {', '.join(map(repr, TENSOR_TYPES))} or None, got {tensor_type!r}")
    return value


def _check_rectangular(key: str, value: Any) -> None:
    if isinstance(value, list) and value and isinstance(value[0], list):
        lengths = sorted({len(row) for row in value})
        if len(lengths) > 1:
            raise ValueError(
                f"cannot make a tensor of {key!r}: its sequences have different lengths ({lengths[0]} to {lengths[-1]}). "
                "Pass padding=True (and truncation=True if some are too long) to get sequences of one length"
            )


def to_tensor(value: Any, tensor_type: str, key: str = "input_ids") -> Any:
    """``value`` (nested lists of ints) as an array/tensor of ``tensor_type``.

    dtypes follow HF: numpy and PyTorch int64; TensorFlow and JAX their default int (int32).
    """
    _check_rectangular(key, value)
    if tensor_type == "np":
        import numpy as np

        return np.asarray(value, dtype=np.int64)
    return _backend_for(tensor_type).make_int_tensor(value)


def _as_lists(value: Any) -> Any:
    if hasattr(value, "numpy") and not hasattr(value, "tolist"):
        value = value.numpy()
    return value.tolist() if hasattr(value, "tolist") else value


# ---------------------------------------------------------------------------------------------------------
# Alignment.


class CharSpan(NamedTuple):
    """A span of characters of the text: ``text[start:end]``."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """A span of tokens of one row: ``input_ids[start:end]``."""

    start: int
    end: int


#: One token's place in the text: (start, end, word, sequence), or None for an added special or padding token.
TokenPlace = tuple[int, int, int | None, int] | None


class Encoding:
    """The alignment of one row of a :class:`BatchEncoding` with its text(s), as HF's ``tokenizers.Encoding``.

    ``offsets`` are character spans in the row's own text (for a pair's second sequence, in the second
    text; for pre-split words, in each word); added special and padding tokens have ``(0, 0)``, word
    None and sequence None. A "sequence index" picks the first (0) or second (1) text of a pair; a row
    made from one text searches all of it whatever the index, as HF's does.
    """

    __slots__ = ("ids", "tokens", "offsets", "word_ids", "sequence_ids", "special_tokens_mask", "n_sequences")

    def __init__(self, ids: Sequence[int], tokens: Sequence[str], places: Sequence[TokenPlace], n_sequences: int) -> None:
        if not len(ids) == len(tokens) == len(places):
            raise ValueError(f"an Encoding needs one token and one place per id, got {len(ids)}, {len(tokens)}, {len(places)}")
        self.ids = list(ids)
        self.tokens = list(tokens)
        self.offsets = [(0, 0) if p is None else (p[0], p[1]) for p in places]
        self.word_ids = [None if p is None else p[2] for p in places]
        self.sequence_ids = [None if p is None else p[3] for p in places]
        self.special_tokens_mask = [1 if p is None else 0 for p in places]
        self.n_sequences = n_sequences

    @property
    def words(self) -> list[int | None]:
        """HF's older name of :attr:`word_ids`."""
        return self.word_ids

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Encoding(num_tokens={len(self.ids)}, n_sequences={self.n_sequences})"

    def _range(self, sequence_index: int) -> range:
        if self.n_sequences == 1 or sequence_index not in (0, 1):
            return range(len(self.ids))
        return _sequence_range(self.sequence_ids, sequence_index)

    def token_to_sequence(self, token_index: int) -> int | None:
        """The sequence (0 or 1) of the token, or None for an added special / padding token or past the end."""
        return self.sequence_ids[token_index] if 0 <= token_index < len(self.ids) else None

    def token_to_word(self, token_index: int) -> int | None:
        """The index of the word the token belongs to (in its sequence), or None."""
        return self.word_ids[token_index] if 0 <= token_index < len(self.ids) else None

    def token_to_chars(self, token_index: int) -> tuple[int, int] | None:
        """The token's character span in its text, or None for an added special / padding token or past the end."""
        if not 0 <= token_index < len(self.ids) or self.sequence_ids[token_index] is None:
            return None
        return self.offsets[token_index]

    def word_to_tokens(self, word_index: int, sequence_index: int = 0) -> tuple[int, int] | None:
        """The tokens ``[start, end)`` of a word of a sequence, or None when no token belongs to it."""
        found = [i for i in self._range(sequence_index) if self.word_ids[i] == word_index]
        return (found[0], found[-1] + 1) if found else None

    def word_to_chars(self, word_index: int, sequence_index: int = 0) -> tuple[int, int] | None:
        """The character span of a word of a sequence, or None when no token belongs to it."""
        tokens = self.word_to_tokens(word_index, sequence_index)
        if tokens is None:
            return None
        return self.offsets[tokens[0]][0], self.offsets[tokens[1] - 1][1]

    def char_to_token(self, char_index: int, sequence_index: int = 0) -> int | None:
        """The first token of a sequence whose span holds the character, or None."""
        for i in self._range(sequence_index):
            start, end = self.offsets[i]
            if start <= char_index < end:
                return i
        return None

    def char_to_word(self, char_index: int, sequence_index: int = 0) -> int | None:
        """The word of a sequence that holds the character, or None."""
        token = self.char_to_token(char_index, sequence_index)
        return None if token is None else self.word_ids[token]


def _sequence_range(sequence_ids: Sequence[int | None], sequence_index: int) -> range:
    """The tokens from the first to the last of one sequence (HF's engine keeps each sequence as one range)."""
    found = [i for i, s in enumerate(sequence_ids) if s == sequence_index]
    return range(found[0], found[-1] + 1) if found else range(0)


# ---------------------------------------------------------------------------------------------------------
# BatchEncoding.


class BatchEncoding(UserDict):
    """The result of calling a tokenizer: a dict (``input_ids``, ``attention_mask``, ...) with attribute access.

    ``enc.input_ids`` is ``enc["input_ids"]``. From :class:`~gpt2_multi.GPT2TokenizerFast`, a BatchEncoding
    also knows which characters and words each token came from: HF's alignment methods
    (:meth:`word_ids`, :meth:`token_to_word`, :meth:`char_to_token`, ...), :attr:`encodings`, and
    ``enc[i]`` is row ``i``'s :class:`Encoding`, as with HF's fast tokenizers. From
    :class:`~gpt2_multi.GPT2Tokenizer` (pure Python, like HF's slow tokenizer) the alignment methods
    raise ValueError, and ``enc[i]`` is a dict of row ``i``'s fields (HF raises KeyError).
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        encoding: Sequence[Encoding] | None = None,
        tensor_type: str | None = None,
        prepend_batch_axis: bool = False,
        n_sequences: int | None = None,
        *,
        align: Callable[[], list[Encoding]] | None = None,
    ) -> None:
        super().__init__(data or {})
        self._encodings: list[Encoding] | None = None if encoding is None else list(encoding)
        self._align = align
        if n_sequences is None and self._encodings:
            n_sequences = self._encodings[0].n_sequences
        self._n_sequences = n_sequences
        self.convert_to_tensors(tensor_type, prepend_batch_axis=prepend_batch_axis)

    def __getattr__(self, name: str) -> Any:
        if name in ("data", "_encodings", "_align", "_n_sequences") or name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(f"this BatchEncoding has no field {name!r} (it has: {', '.join(self.data)})") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self.data[key]
            except KeyError:
                raise KeyError(f"this BatchEncoding has no field {key!r} (it has: {', '.join(self.data)})") from None
        if isinstance(key, int) and self.is_fast:
            return self._alignment("__getitem__")[key]
        if isinstance(key, (int, slice)):
            return {name: value[key] for name, value in self.data.items()}
        raise KeyError(f"a BatchEncoding key must be a field name, an example index or a slice, got {key!r}")

    def __getstate__(self) -> dict[str, Any]:
        # The lazy alignment holds the tokenizer and the text; a pickled BatchEncoding keeps it only if computed.
        return {"data": self.data, "encodings": self._encodings, "n_sequences": self._n_sequences}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.data = state["data"]
        self._encodings = state.get("encodings")
        self._align = None
        self._n_sequences = state.get("n_sequences")

    @property
    def n_sequences(self) -> int | None:
        """1 when made from single texts, 2 when made from pairs (None when unknown, e.g. after :meth:`pad`)."""
        return self._n_sequences

    @property
    def is_fast(self) -> bool:
        """Whether this BatchEncoding comes from a fast tokenizer and so has the token <-> text alignment."""
        return self._encodings is not None or self._align is not None

    @property
    def encodings(self) -> list[Encoding] | None:
        """One :class:`Encoding` per row (the fast tokenizer's output), or None."""
        return self._alignment("encodings") if self.is_fast else None

    def _alignment(self, method: str) -> list[Encoding]:
        if self._encodings is None:
            if self._align is None:
                raise ValueError(
                    f"{method}() needs the token-to-text alignment, which GPT2TokenizerFast records and GPT2Tokenizer "
                    "(pure Python, like HF's slow tokenizer) does not; encode with GPT2TokenizerFast"
                )
            self._encodings = self._align()
            self._align = None
        return self._encodings

    def _row(self, method: str, batch_index: int) -> Encoding:
        rows = self._alignment(method)
        if isinstance(batch_index, bool) or not isinstance(batch_index, int):
            raise TypeError(f"{method}: the batch index must be an int, got {batch_index!r}")
        if not -len(rows) <= batch_index < len(rows):
            raise IndexError(f"{method}: batch index {batch_index} is out of range for a batch of {len(rows)}")
        return rows[batch_index]

    def _locate(self, method: str, first: int, second: int | None) -> tuple[Encoding, int]:
        """HF's two call forms: ``(index)`` for the first row, ``(batch_index, index)``; negative indices count
        from the end."""
        batch_index, index = (0, first) if second is None else (first, second)
        row = self._row(method, batch_index)
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"{method}: the index must be an int, got {index!r}")
        return row, index

    def _token(self, method: str, first: int, second: int | None) -> tuple[Encoding, int]:
        row, index = self._locate(method, first, second)
        return row, index + len(row) if index < 0 else index

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of a row (byte-level, e.g. ``["Hello", "Ġworld"]``)."""
        return list(self._row("tokens", batch_index).tokens)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """Each token's sequence: 0, 1 (a pair's second text), or None (added special or padding token)."""
        return list(self._row("sequence_ids", batch_index).sequence_ids)

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Each token's word (the pieces GPT-2's pattern splits a text into, counted per sequence), or None."""
        return list(self._row("word_ids", batch_index).word_ids)

    def words(self, batch_index: int = 0) -> list[int | None]:
        """Deprecated name of :meth:`word_ids` (as in HF)."""
        warnings.warn("BatchEncoding.words() is deprecated; use word_ids()", FutureWarning, stacklevel=2)
        return self.word_ids(batch_index)

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """The sequence of a token: ``(token)`` in the first row or ``(batch, token)``."""
        row, index = self._token("token_to_sequence", batch_or_token_index, token_index)
        return row.token_to_sequence(index)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """The word of a token: ``(token)`` in the first row or ``(batch, token)``; None for special tokens."""
        row, index = self._token("token_to_word", batch_or_token_index, token_index)
        return row.token_to_word(index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        """The characters a token came from, or None for an added special or padding token."""
        row, index = self._token("token_to_chars", batch_or_token_index, token_index)
        span = row.token_to_chars(index)
        return None if span is None else CharSpan(*span)

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> TokenSpan | None:
        """The tokens of a word of a sequence, or None when no token belongs to that word."""
        row, index = self._locate("word_to_tokens", batch_or_word_index, word_index)
        span = row.word_to_tokens(index, sequence_index)
        return None if span is None else TokenSpan(*span)

    def word_to_chars(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> CharSpan | None:
        """The characters of a word of a sequence, or None when no token belongs to it (HF raises TypeError)."""
        row, index = self._locate("word_to_chars", batch_or_word_index, word_index)
        span = row.word_to_chars(index, sequence_index)
        return None if span is None else CharSpan(*span)

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """The token that holds a character of a sequence's text, or None (e.g. a character truncation cut)."""
        row, index = self._locate("char_to_token", batch_or_char_index, char_index)
        return row.char_to_token(index, sequence_index)

    def char_to_word(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """The word that holds a character of a sequence's text, or None."""
        row, index = self._locate("char_to_word", batch_or_char_index, char_index)
        return row.char_to_word(index, sequence_index)

    def convert_to_tensors(self, tensor_type: Any = None, prepend_batch_axis: bool = False) -> BatchEncoding:
        """Convert every field in place to ``tensor_type`` ("np", "pt", "tf", "jax"); None leaves lists."""
        tensor_type = check_tensor_type(tensor_type)
        if tensor_type is None:
            return self
        for key, value in list(self.data.items()):
            if isinstance(value, (list, tuple)) or (isinstance(value, int) and not isinstance(value, bool)):
                self.data[key] = to_tensor([value] if prepend_batch_axis else value, tensor_type, key)
        return self

    def to(self, device: Any) -> BatchEncoding:
        """Move PyTorch tensors to ``device`` (other values are left as they are)."""
        for key, value in self.data.items():
            if hasattr(value, "to") and callable(value.to):
                self.data[key] = value.to(device=device)
        return self


__all__ = [
    "BatchEncoding", "CharSpan", "Encoding", "TENSOR_TYPES", "TokenPlace", "TokenSpan", "check_tensor_type", "to_tensor",
]
