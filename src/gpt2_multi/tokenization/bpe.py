"""GPT-2's byte-level BPE: the byte table, the pre-tokenisation pattern, vocab/merges loading and a BPE engine.

Everything here is shared by the slow (pure Python) and the fast tokenizer.

* :func:`bytes_to_unicode` is GPT-2's reversible map from the 256 byte values to printable
  characters (so that every vocabulary entry is a printable string).
* :data:`GPT2_PATTERN` splits text into "words" before BPE.
* :func:`load_vocab`, :func:`load_merges` and :func:`load_tokenizer_json` read HF's files and
  check them, with errors that name the file and the problem.
* :class:`TextEncoder` splits text with the pattern and caches each word's ids.
* :class:`BytePairEncoder` runs BPE on words in pure Python. Short words use a linear scan per
  merge; long words (say 1 MB without a space) use a heap over a linked list, O(n log n), and
  give exactly the same result (lowest merge rank first, leftmost first among equal ranks,
  which is the order of the Rust ``tokenizers`` BPE that HF's fast tokenizer runs).
"""

from __future__ import annotations

import functools
import heapq
import json
import os
import re
from collections.abc import Callable, Sequence
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any

import regex

from gpt2_multi.hub import EMBEDDED_MODELS, HUB_ALIASES
from gpt2_multi.tokenization import _unicode_tables

# The pre-tokenisation pattern of GPT-2 (contractions, letters, numbers, other symbols, spaces).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

ENDOFTEXT = "<|endoftext|>"

# Names whose tokenizer is the built-in GPT-2 one: the built-in sizes, by short name and by hub repo id
# (all OpenAI sizes and distilgpt2 share a vocabulary), and the models embedded in the package.
BUILTIN_NAMES = frozenset({*HUB_ALIASES, *HUB_ALIASES.values(), *EMBEDDED_MODELS})

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) map to
    themselves; the other 68 bytes (controls, space, soft hyphen...) map, in increasing order, to
    the characters U+0100, U+0101, ... This is why a space shows up as ``Ġ`` (U+0120) in tokens.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of :func:`bytes_to_unicode`: character -> byte value."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_to_bytes(token: str) -> bytes | None:
    """The bytes a byte-level token stands for, or None if a character is outside the byte table."""
    table = unicode_to_bytes()
    try:
        return bytes(table[char] for char in token)
    except KeyError:
        return None


@functools.lru_cache(maxsize=1)
def compiled_pattern() -> regex.Pattern:
    """GPT-2's pre-tokenisation pattern, compiled once."""
    return regex.compile(GPT2_PATTERN)


def builtin_dir() -> Path:
    """The directory of the GPT-2 tokenizer files shipped in this package (``gpt2_multi/data/gpt2``)."""
    root = resources.files("gpt2_multi").joinpath("data", "gpt2")
    path = Path(str(root))
    if not (path / VOCAB_FILE).is_file():
        raise FileNotFoundError(f"the built-in GPT-2 vocabulary is missing from the installed package: {path}")
    return path


# ---------------------------------------------------------------------------------------------------------
# Loading and checking vocab/merges.


def load_vocab(path: str | os.PathLike) -> dict[str, int]:
    """Read HF's ``vocab.json`` (token -> id) and check it: a JSON object of str -> distinct int >= 0."""
    path = Path(path)
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    return check_vocab(vocab, source=str(path))


def check_vocab(vocab: Any, source: str = "vocab") -> dict[str, int]:
    """Check a token -> id mapping and return it as a plain dict."""
    if not isinstance(vocab, dict):
        raise ValueError(f"{source}: the vocabulary must be a JSON object of token -> id, got {type(vocab).__name__}")
    seen: dict[int, str] = {}
    for token, index in vocab.items():
        if not isinstance(token, str):
            raise ValueError(f"{source}: vocabulary keys must be strings, got {token!r}")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"{source}: the id of token {token!r} must be an int >= 0, got {index!r}")
        if index in seen:
            raise ValueError(f"{source}: tokens {seen[index]!r} and {token!r} share the id {index}")
        seen[index] = token
    return dict(vocab)


def load_merges(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read HF's ``merges.txt``: an optional ``#version`` line, then one ``left right`` pair a line."""
    path = Path(path)
    merges = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line or (number == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise ValueError(f"{path}, line {number}: expected two tokens separated by one space, got {line!r}")
            merges.append((parts[0], parts[1]))
    return merges


def check_merges(merges: Any, source: str = "merges") -> list[tuple[str, str]]:
    """Accept merges as ``"a b"`` strings or ``[a, b]`` pairs (both appear in tokenizer.json files)."""
    if not isinstance(merges, (list, tuple)):
        raise ValueError(f"{source}: merges must be a list, got {type(merges).__name__}")
    out = []
    for number, merge in enumerate(merges):
        if isinstance(merge, str):
            parts = merge.split(" ")
        elif isinstance(merge, (list, tuple)):
            parts = list(merge)
        else:
            raise ValueError(f"{source}: merge {number} must be a string or a pair, got {merge!r}")
        if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
            raise ValueError(f"{source}: merge {number} must be two non-empty tokens, got {merge!r}")
        out.append((parts[0], parts[1]))
    return out


def load_tokenizer_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read an HF ``tokenizer.json`` of a byte-level BPE model.

    Returns ``{"vocab", "merges", "added_tokens", "add_prefix_space"}``. Anything that is not
    GPT-2's scheme (another model type, a normalizer, a pre-tokenizer other than ByteLevel with
    its regex) is refused with a ValueError, because both engines assume that scheme.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ValueError(f"{path}: not a tokenizer.json (no 'model' object)")
    model = data["model"]
    if model.get("type", "BPE") != "BPE":
        raise ValueError(f"{path}: the model is {model.get('type')!r}; only byte-level BPE (GPT-2) is supported")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ValueError(f"{path}: BPE option {key}={model[key]!r} is not GPT-2's scheme and is not supported")
    if model.get("dropout"):
        raise ValueError(f"{path}: BPE dropout={model['dropout']} is not supported (encoding would be random)")
    if data.get("normalizer") is not None:
        raise ValueError(f"{path}: a normalizer ({data['normalizer'].get('type')}) is not GPT-2's scheme and is not supported")
    pre = data.get("pre_tokenizer")
    if not isinstance(pre, dict) or pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        raise ValueError(f"{path}: the pre-tokenizer must be ByteLevel with use_regex=true (GPT-2's), got {pre!r}")
    added = data.get("added_tokens") or []
    if not isinstance(added, list):
        raise ValueError(f"{path}: 'added_tokens' must be a list")
    return {
        "vocab": check_vocab(model.get("vocab"), source=f"{path} (model.vocab)"),
        "merges": check_merges(model.get("merges", []), source=f"{path} (model.merges)"),
        "added_tokens": added,
        "add_prefix_space": bool(pre.get("add_prefix_space", False)),
    }


def missing_byte_tokens(vocab: dict[str, int]) -> list[str]:
    """The single-byte tokens a (trimmed or custom) byte-level vocabulary lacks. HF accepts such vocabularies;
    a byte without its token encodes as ``unk_token`` (dropped when the vocabulary has no unk token either)."""
    return [char for char in bytes_to_unicode().values() if char not in vocab]


def check_merges_in_vocab(vocab: dict[str, int], merges: Sequence[tuple[str, str]], source: str = "merges") -> None:
    """Every merge's two parts and its result must be in the vocabulary (single-byte tokens may be missing:
    see :func:`missing_byte_tokens`)."""
    for rank, (left, right) in enumerate(merges):
        for token in (left, right, left + right):
            if token not in vocab:
                raise ValueError(f"{source}: merge {rank} ({left!r} {right!r}): token {token!r} is not in the vocabulary")


@functools.lru_cache(maxsize=1)
def builtin_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's own vocabulary and merges (read once from the package data)."""
    directory = builtin_dir()
    return load_vocab(directory / VOCAB_FILE), load_merges(directory / MERGES_FILE)


def id_tables(vocab: dict[str, int]) -> tuple[list[str | None], list[bytes | None]]:
    """id -> token string and id -> bytes lists (None where no token has that id).

    A token with a character outside the byte table (not a byte-level token) stands for its UTF-8 bytes.
    """
    size = max(vocab.values(), default=-1) + 1
    tokens: list[str | None] = [None] * size
    for token, index in vocab.items():
        tokens[index] = token
    data: list[bytes | None] = [None if t is None else (token_to_bytes(t) or t.encode("utf-8")) for t in tokens]
    return tokens, data


@functools.lru_cache(maxsize=1)
def builtin_id_tables() -> tuple[list[str | None], list[bytes | None]]:
    """:func:`id_tables` of GPT-2's own vocabulary (built once)."""
    return id_tables(builtin_vocab_and_merges()[0])


# ---------------------------------------------------------------------------------------------------------
# The pure Python BPE engine.

_NO_MERGE = float("inf")
# Words with at most this many bytes use the scan-per-merge loop; longer ones the heap.
_HEAP_THRESHOLD = 48


class BytePairEncoder:
    """Byte-level BPE over a vocabulary and ranked merges, in pure Python.

    Symbols are token ids. ``merge`` table keys pack a pair of ids into one int
    (``left * stride + right``) and values pack ``rank * stride + merged_id``, so the lowest
    value is the pair to merge first and the merged id comes out of the same number.
    """

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]], unknown: int | None = None) -> None:
        byte_table = bytes_to_unicode()
        self.stride = max(vocab.values(), default=0) + 1
        stride = self.stride
        # a byte the vocabulary lacks is the unk id (``unknown``), or nothing when there is none (as HF's slow one)
        self.byte_ids: list[int | None] = [vocab.get(byte_table[b], unknown) for b in range(256)]
        self.complete = None not in self.byte_ids
        table: dict[int, int] = {}
        for rank, (left, right) in enumerate(merges):
            try:
                key = vocab[left] * stride + vocab[right]
                merged = vocab[left + right]
            except KeyError as err:
                raise ValueError(
                    f"merge {rank} ({left!r} {right!r}): token {err.args[0]!r} is not in the vocabulary"
                ) from None
            table[key] = rank * stride + merged  # a repeated merge keeps its last rank, like HF
        self.table = table

    def encode_bytes(self, data: bytes) -> list[int]:
        """BPE of one pre-tokenised word given as UTF-8 bytes; returns token ids."""
        ids = [self.byte_ids[b] for b in data]
        if not self.complete:
            ids = [i for i in ids if i is not None]
        if len(ids) < 2:
            return ids
        if len(ids) > _HEAP_THRESHOLD:
            return self._merge_heap(ids)
        return self._merge_scan(ids)

    def _merge_scan(self, ids: list[int]) -> list[int]:
        get = self.table.get
        stride = self.stride
        no_merge = _NO_MERGE
        values = [get(a * stride + b, no_merge) for a, b in zip(ids, ids[1:])]
        while True:
            best = min(values)
            if best == no_merge:
                return ids
            i = values.index(best)  # leftmost among equal ranks
            merged = best % stride
            ids[i : i + 2] = (merged,)
            del values[i]
            if i < len(values):
                values[i] = get(merged * stride + ids[i + 1], no_merge)
            if i:
                values[i - 1] = get(ids[i - 1] * stride + merged, no_merge)
            if not values:
                return ids

    def _merge_heap(self, ids: list[int]) -> list[int]:
        get = self.table.get
        stride = self.stride
        n = len(ids)
        symbols: list[int] = list(ids)  # symbols[i] is -1 once merged into its left neighbour
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        heap = []
        for i in range(n - 1):
            value = get(ids[i] * stride + ids[i + 1])
            if value is not None:
                heap.append((value, i))
        heapq.heapify(heap)
        push, pop = heapq.heappush, heapq.heappop
        while heap:
            value, i = pop(heap)
            left = symbols[i]
            j = nxt[i]
            if left < 0 or j < 0 or get(left * stride + symbols[j]) != value:
                continue  # stale: one side was merged since this pair was queued
            merged = value % stride
            symbols[i] = merged
            symbols[j] = -1
            k = nxt[j]
            nxt[i] = k
            if k >= 0:
                prv[k] = i
                after = get(merged * stride + symbols[k])
                if after is not None:
                    push(heap, (after, i))
            p = prv[i]
            if p >= 0:
                before = get(symbols[p] * stride + merged)
                if before is not None:
                    push(heap, (before, p))
        return [s for s in symbols if s >= 0]


class TextEncoder:
    """Text -> ids with GPT-2's pattern and a bounded word -> ids cache (cleared when full, keeping the
    current text's words).

    The pattern runs on the ``regex`` module's ``\\p{L}``/``\\p{N}``/``\\s``; the few code points that
    module classes differently from HF's and tiktoken's engines (see :func:`disagreement_pattern`)
    are looked for in the words the cache has not seen, and a text holding one is split again with
    :func:`exact_pattern`. Words holding such code points are never cached, so a cached word is
    known to be free of them.
    """

    def __init__(self, encode_word: Callable[[bytes], list[int]], limit: int = 200_000) -> None:
        self._encode_word = encode_word
        self.limit = limit
        self.data: dict[str, list[int]] = {}
        self._findall = compiled_pattern().findall

    def encode(self, text: str) -> list[int]:
        """ids of ``text`` (which must hold no added token)."""
        words = self._findall(text)
        data = self.data
        unique = set(words)
        missing = unique.difference(data)
        if missing:
            probe = "".join(missing)
            if not probe.isascii():
                disagree = disagreement_pattern()
                if disagree is not None and disagree.search(probe):
                    return self._encode_exact(text, disagree)
            if len(data) + len(missing) > self.limit:
                kept = {w: data[w] for w in unique.difference(missing)}
                data.clear()
                data.update(kept)
            encode = self._encode_word
            for word in missing:
                data[word] = encode(word.encode("utf-8"))
        return list(chain.from_iterable(map(data.__getitem__, words)))

    def _encode_exact(self, text: str, disagree: re.Pattern) -> list[int]:
        data = self.data
        local: dict[str, list[int]] = {}
        out: list[int] = []
        for word in exact_pattern().findall(text):
            ids = data.get(word) or local.get(word)
            if ids is None:
                ids = self._encode_word(word.encode("utf-8"))
                if disagree.search(word):
                    local[word] = ids
                elif len(data) < self.limit:
                    data[word] = ids
            out.extend(ids)
        return out

    def clear(self) -> None:
        self.data.clear()


def _class(ranges: Sequence[tuple[int, int]]) -> str:
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@functools.lru_cache(maxsize=1)
def exact_pattern() -> regex.Pattern:
    """GPT-2's pattern with ``\\p{L}``, ``\\p{N}`` and ``\\s`` spelled out as the tables of HF's engine.

    Exact but about ten times slower than :func:`compiled_pattern` (large explicit classes).
    """
    letters, numbers, spaces = (_class(t) for t in (_unicode_tables.LETTERS, _unicode_tables.NUMBERS, _unicode_tables.SPACES))
    return regex.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+| ?[^{spaces}{letters}{numbers}]+"
        rf"|[{spaces}]+(?![^{spaces}])|[{spaces}]+"
    )


def _code_points(ranges: Sequence[tuple[int, int]]) -> str:
    return "".join("".join(map(chr, range(a, b + 1))) for a, b in ranges)


def _complement(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    previous = 0
    for first, last in [*ranges, (0x110000, 0x110000)]:
        if first > previous:
            gaps.append((previous, first - 1))
        previous = last + 1
    out = []
    for first, last in gaps:  # without the surrogates, which cannot be encoded
        if first < 0xD800:
            out.append((first, min(last, 0xD7FF)))
        if last > 0xDFFF:
            out.append((max(first, 0xE000), last))
    return out


@functools.lru_cache(maxsize=1)
def disagreement_pattern() -> re.Pattern | None:
    """A pattern of the code points the installed ``regex`` module puts in a different class
    (letter, number, white space) than HF's engine does; None if there are none.

    They are code points assigned in a Unicode version that only one of the two knows (for regex
    2026.x and tokenizers 0.22, some 17,000, all far from ASCII). Computed once (about 0.3 s).
    """
    different: set[str] = set()
    for table, prop in (
        (_unicode_tables.LETTERS, r"\p{L}"),
        (_unicode_tables.NUMBERS, r"\p{N}"),
        (_unicode_tables.SPACES, r"\s"),
    ):
        different.update(regex.findall(prop, _code_points(_complement(table))))
        different.update(regex.findall(rf"(?!{prop}).", _code_points(table), flags=regex.DOTALL))
    if not different:
        return None
    ranges: list[list[int]] = []
    for point in sorted(map(ord, different)):
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    return re.compile("[" + _class([(a, b) for a, b in ranges]) + "]")
