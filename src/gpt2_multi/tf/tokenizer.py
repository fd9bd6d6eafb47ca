r"""``TFGPT2Tokenizer``: GPT-2's byte-level BPE as TensorFlow ops, exact and fast.

.. code-block:: python

    from gpt2_multi.tf.tokenizer import TFGPT2Tokenizer

    tokenizer = TFGPT2Tokenizer.from_pretrained("gpt2")           # the vocabulary shipped with the package
    out = tokenizer(tf.constant(["Hello world", "\n\nfoo"]))        # out["input_ids"]: tf.RaggedTensor (B, None)
    tokenizer = TFGPT2Tokenizer.from_pretrained("gpt2", max_length=8, pad_token_id=50256)
    out = tokenizer(tf.constant(["Hello world"]))                   # dense (B, 8) input_ids and attention_mask

The layer is a ``keras.layers.Layer`` (Keras 3, TensorFlow backend) built only from TensorFlow and
tensorflow-text ops, so it runs inside ``tf.function``, ``tf.data`` pipelines and exported SavedModels.
Its ids are identical to HF's ``GPT2TokenizerFast``, tiktoken's and this package's ``GPT2Tokenizer`` /
``GPT2TokenizerFast`` (``<|endoftext|>`` in the text is the special token 50256, as in HF's tokenizers; pass
``special_tokens={}`` to BPE-encode it as text, which is what HF's keras-nlp based ``TFGPT2Tokenizer`` does).
HF's slow ``GPT2Tokenizer`` agrees too, except around some recently assigned code points its ``regex`` module
classes differently (see :data:`LETTER_RANGES`).

How it works (each step is exact, not an approximation of GPT-2's regex):

1. **Special tokens** are cut out first (``tensorflow_text.regex_split`` keeping the delimiters), so each
   remaining piece is pre-tokenized on its own, as HF does. ``add_prefix_space`` prepends ``" "`` to every
   non-special piece that does not start with one (``GPT2TokenizerFast`` semantics).
2. **Pre-tokenization.** GPT-2's pattern
   ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`` needs a lookahead, which
   RE2 lacks. The lookahead only matters at a whitespace run of n >= 2 characters followed by a non-space:
   GPT-2 emits the first n-1 characters, and the last one starts the next match (a ``" "`` prefixes the
   following letter/number/other run; any other whitespace character is a token of its own). This module
   matches ``\s* X+`` (X one of the three runs, the ``" "`` being the run's last character) and ``\s+`` with
   RE2 (a ``regex_replace`` that writes a mark before every match), then marks a cut in every
   whitespace-led match holding >= 2 whitespace characters before its last leading whitespace character,
   except a pure-whitespace match that ends its piece (that is GPT-2's ``\s+(?!\S)`` at end of text), and
   splits at the marks. ``tests/test_tf_tokenizer.py`` checks this against the ``regex`` module
   on whitespace-heavy random strings.
3. **Character classes** are explicit code-point ranges (:data:`WHITESPACE_RANGES`, :data:`LETTER_RANGES`,
   :data:`NUMBER_RANGES`, shared with the package's Python tokenizers: the classes of HF's fast tokenizer
   and tiktoken). RE2's own ``\s`` is ASCII-only and its Unicode tables are of another version, and RE2
   runs the pattern five times slower with large Unicode classes, so RE2 only ever sees ASCII: a piece
   with other characters is decoded to code points, each non-ASCII character is replaced by an ASCII
   stand-in of its class (letter, number, whitespace, other), the stand-in text is split, and the
   pre-tokens are re-encoded from the original code points.
4. **BPE.** The pre-tokens of the batch are de-duplicated (``tf.unique``). A hash table maps every
   pre-token whose BPE is a single vocabulary token to its id (computed once, at construction, with the
   same merge loop). The other words go through a vectorised merge loop over all of them at once: each
   step looks up the rank of every adjacent symbol pair, takes each word's lowest-rank pair and merges all
   its non-overlapping occurrences left to right, exactly as the reference BPE does; a word with nothing
   left to merge leaves the loop. Ids are gathered back to every pre-token and text. Pre-tokens are
   handled as raw UTF-8 bytes (the vocabulary is mapped back through GPT-2's byte-to-unicode table at
   construction), so no byte-to-unicode conversion runs in the graph.

Input strings must be valid UTF-8 (as any Python ``str`` is); invalid bytes are decoded as U+FFFD.
NUL bytes are fine (tensorflow-text's split stops at NUL; such text takes the stand-in route).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# TensorFlow and Keras 3 (on the TensorFlow backend) are checked, with a message naming the extra, by the
# package's __init__, which Python runs before this module.
import keras
import tensorflow as tf

from gpt2_multi.tf import _EXTRA

try:
    import tensorflow_text  # noqa: F401  (registers the ops a reloaded SavedModel needs)
except ImportError as err:  # pragma: no cover
    raise ImportError(f"TFGPT2Tokenizer needs tensorflow-text: {_EXTRA} ({err})") from err

# The raw op behind tensorflow_text.regex_split_with_offsets (its wrapper builds validated RaggedTensors,
# which this module does not need).
from tensorflow_text.python.ops.regex_split_ops import gen_regex_split_ops as _gen_regex_split  # noqa: E402

from gpt2_multi.tokenization import _unicode_tables as _tables  # noqa: E402
from gpt2_multi.tokenization.base import TOKENIZER_CONFIG_FILE  # noqa: E402
from gpt2_multi.tokenization.bpe import BUILTIN_NAMES, MERGES_FILE, TOKENIZER_FILE, VOCAB_FILE  # noqa: E402

__all__ = [
    "GPT2_PRETOKENIZE_PATTERN",
    "LETTER_RANGES",
    "NUMBER_RANGES",
    "TFGPT2Tokenizer",
    "WHITESPACE_RANGES",
    "bytes_to_unicode",
]

# GPT-2's pre-tokenization pattern (for the Python ``regex`` module; RE2 cannot run it).
GPT2_PRETOKENIZE_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

DEFAULT_SPECIAL_TOKEN = "<|endoftext|>"

# Character classes of GPT-2's pattern: \s, \p{L} and \p{N} as inclusive (first, last) code-point ranges,
# shared with this package's Python tokenizers so that every tokenizer of the package gives the same ids.
# They are the classes of HF's fast tokenizer (Oniguruma) and tiktoken, which agree with each other; the
# Python ``regex`` module (HF's slow GPT2Tokenizer) classes some 17,000 recently assigned code points as
# letters/numbers that these engines do not.
WHITESPACE_RANGES: tuple[tuple[int, int], ...] = _tables.SPACES
LETTER_RANGES: tuple[tuple[int, int], ...] = _tables.LETTERS
NUMBER_RANGES: tuple[tuple[int, int], ...] = _tables.NUMBERS


def _union(*range_lists: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(r for ranges in range_lists for r in ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _complement(ranges: Iterable[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Code points in [0, limit] outside ``ranges`` (surrogates are left in: they never occur)."""
    out, nxt = [], 0
    for a, b in _union(ranges):
        if a > limit:
            break
        if a > nxt:
            out.append((nxt, a - 1))
        nxt = max(nxt, b + 1)
    if nxt <= limit:
        out.append((nxt, limit))
    return out


def _clip(ranges: Iterable[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    return [(a, min(b, limit)) for a, b in ranges if a <= limit]


def _re2_class(ranges: Iterable[tuple[int, int]]) -> str:
    body = "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)
    return f"[{body}]"


def _re2_literal(text: str) -> str:
    return "".join(ch if ch.isascii() and ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in text)


def _pretokenize_pattern() -> str:
    """The RE2 pre-tokenization pattern for ASCII text (other text is mapped to ASCII stand-ins first)."""
    ws = _clip(WHITESPACE_RANGES, 0x7F)
    letters = _clip(LETTER_RANGES, 0x7F)
    numbers = _clip(NUMBER_RANGES, 0x7F)
    ws_c, l_c, n_c = _re2_class(ws), _re2_class(letters), _re2_class(numbers)
    other_c = _re2_class(_complement(_union(ws, letters, numbers), 0x7F))
    run = f"{l_c}+|{n_c}+|{other_c}+"
    # A contraction, a letter/number/other run, whitespace ending in " " glued to the run after it, or a
    # whitespace run. Leftmost-first alternation, as in GPT-2's pattern.
    return f"'s|'t|'re|'ve|'m|'ll|'d|{run}|{ws_c}* (?:{run})|{ws_c}+"


# ASCII stand-ins for the classes of non-ASCII characters (none is " ", "'" or a contraction letter).
_STAND_INS = {"other": ord("#"), "letter": ord("a"), "number": ord("0"), "whitespace": 0x0B}


def _class_intervals() -> tuple[list[int], list[int]]:
    """(starts, stand_ins): code points in [starts[i], starts[i+1]) have the class of stand_ins[i]."""
    marks = []
    for name, ranges in (
        ("whitespace", WHITESPACE_RANGES),
        ("letter", LETTER_RANGES),
        ("number", NUMBER_RANGES),
    ):
        marks += [(a, b, _STAND_INS[name]) for a, b in ranges]
    starts, stand_ins, nxt = [], [], 0
    for a, b, stand_in in sorted(marks):
        if a > nxt:
            starts.append(nxt)
            stand_ins.append(_STAND_INS["other"])
        starts.append(a)
        stand_ins.append(stand_in)
        nxt = b + 1
    starts.append(nxt)
    stand_ins.append(_STAND_INS["other"])
    return starts, stand_ins


# Pre-tokens are cut apart by writing this character before each (the split runs only on ASCII text, where
# it never occurs) and splitting at it.
_MARK = "\u00ff"
_ASCII_WS = _re2_class(_clip(WHITESPACE_RANGES, 0x7F))
# GPT-2's \s+(?!\S): a pre-token led by >= 2 whitespace characters and followed (in it, or by the next one)
# by something else is cut before its last leading whitespace character. A whitespace run that ends its
# text has nothing after it and is not cut.
_CUT = f"({_MARK}{_ASCII_WS}+)({_ASCII_WS}[^{_ASCII_WS[1:-1]}])"
_ASCII_NO_NUL = "[\\x01-\\x7f]*"  # ASCII without NUL: RE2 splits it directly
_HAS_NUL = "(?s).*\\x00.*"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the alphabet of vocab.json and merges.txt)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _read_merges(lines: Iterable[str]) -> list[str]:
    merges = []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line or line.startswith("#version"):
            continue
        merges.append(line)
    return merges


def _merge_pair(merge: str | tuple[str, str] | list[str], index: int) -> tuple[str, str]:
    if isinstance(merge, str):
        parts = merge.split(" ")
    else:
        parts = list(merge)
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"merge {index} must be two symbols separated by one space, got {merge!r}")
    return parts[0], parts[1]


@keras.saving.register_keras_serializable(package="gpt2_multi")
class TFGPT2Tokenizer(keras.layers.Layer):
    """GPT-2's tokenizer as an in-graph Keras layer: ``tf.string`` in, HF-identical token ids out.

    Args:
        vocab: token (in GPT-2's byte-to-unicode alphabet, as in ``vocab.json``) -> id.
        merges: BPE merges in rank order, each ``"a b"`` (as in ``merges.txt``, without the ``#version``
            line) or a pair ``(a, b)``.
        max_length: default ``max_length`` of :meth:`call`: with ``pad_token_id`` set, outputs are dense
            ``(B, max_length)``, truncated and right-padded; without it, ragged rows are truncated.
        pad_token_id: the id used for padding (needs ``max_length``, here or in the call).
        add_prefix_space: prepend ``" "`` to every piece of text (between special tokens) that does not
            already start with one, like ``GPT2TokenizerFast(add_prefix_space=True)``.
        special_tokens: special token string -> id, matched in the text before BPE (default:
            ``{"<|endoftext|>": vocab["<|endoftext|>"]}`` when the vocabulary has it; ``{}`` disables).
        **kwargs: Keras layer arguments (``name``, ...).

    Call: ``tokenizer(texts, max_length=None)`` with ``texts`` a ``tf.string`` tensor of shape ``(B,)``
    (or a scalar, a Python ``str`` or a list of them) returns ``{"input_ids", "attention_mask"}``, both
    ``int32``: ``tf.RaggedTensor`` of shape ``(B, None)`` without padding, dense ``(B, max_length)`` with it;
    a scalar input gives ``(None,)`` / ``(max_length,)``.

    A SavedModel holding this layer uses tensorflow-text's regex op: ``import tensorflow_text`` before
    ``tf.saved_model.load`` in a fresh process (TF Serving needs the tensorflow-text ops too).
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        merges: Iterable[str | tuple[str, str]],
        max_length: int | None = None,
        pad_token_id: int | None = None,
        add_prefix_space: bool = False,
        special_tokens: Mapping[str, int] | None = None,
        **kwargs: Any,
    ):
        kwargs.pop("dtype", None)  # ids are int32 whatever the (float) dtype policy says
        super().__init__(dtype="int32", **kwargs)
        # Keras must pass strings through untouched.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if not isinstance(vocab, Mapping) or not vocab:
            raise ValueError("vocab must be a non-empty mapping token -> id")
        if max_length is not None and (not isinstance(max_length, int) or max_length <= 0):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        if pad_token_id is not None and not isinstance(pad_token_id, int):
            raise ValueError(f"pad_token_id must be an int or None, got {pad_token_id!r}")
        # Held in a plain object: Keras would otherwise wrap and track 100k Python strings (a second).
        self._files = _BPEFiles(
            {str(k): int(v) for k, v in vocab.items()},
            [" ".join(_merge_pair(m, i)) for i, m in enumerate(merges)],
        )
        self.max_length = max_length
        self.pad_token_id = pad_token_id
        self.add_prefix_space = bool(add_prefix_space)
        if special_tokens is None:
            special_tokens = (
                {DEFAULT_SPECIAL_TOKEN: self._files.vocab[DEFAULT_SPECIAL_TOKEN]}
                if DEFAULT_SPECIAL_TOKEN in self._files.vocab
                else {}
            )
        self.special_tokens = {str(k): int(v) for k, v in special_tokens.items() if k}
        self._build_tables()
        self.built = True

    @property
    def vocab(self) -> dict[str, int]:
        """token -> id, as given (a copy)."""
        return dict(self._files.vocab)

    @property
    def merges(self) -> list[str]:
        """The merges in rank order, each ``"a b"`` (a copy)."""
        return list(self._files.merges)

    # ----------------------------------------------------------------------------------------------
    # Tables (built once, eagerly, at construction)
    # ----------------------------------------------------------------------------------------------

    def _build_tables(self) -> None:
        byte_decoder = {ch: b for b, ch in bytes_to_unicode().items()}

        def raw(token: str, where: str) -> bytes:
            try:
                return bytes(byte_decoder[ch] for ch in token)
            except KeyError:
                raise ValueError(
                    f"{where} {token!r} has a character outside GPT-2's byte-to-unicode alphabet"
                ) from None

        # BPE symbols are vocabulary ids: every byte and every merge result must be in the vocabulary.
        ids = self._files.vocab
        byte_ids = []
        for b, ch in bytes_to_unicode().items():
            if ch not in ids:
                raise ValueError(f"vocab lacks the byte token {ch!r} (byte {b}); every byte needs a token")
            byte_ids.append(ids[ch])
        # A pair is looked up as the int64 `a << bits | b`; the table answers `rank << bits | merged id`.
        self._id_bits = max(max(ids.values()), 1).bit_length()
        if 2 * self._id_bits > 62 or (len(self._files.merges) << self._id_bits) >= 1 << 62:
            raise ValueError(f"vocabulary ids up to {max(ids.values())} are too large for this tokenizer")
        pair_keys, pair_values = [], []
        shift = 1 << self._id_bits
        for rank, merge in enumerate(self._files.merges):
            a, b = merge.split(" ")
            for sym in (a, b, a + b):
                if sym not in ids:
                    raise ValueError(f"merge {rank} ({merge!r}) uses {sym!r}, which is not in the vocabulary")
            pair_keys.append(ids[a] * shift + ids[b])
            pair_values.append(rank * shift + ids[a + b])
        self._byte_ids = tf.constant(byte_ids, dtype=tf.int64)
        if pair_keys:
            self._merge_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(pair_keys, tf.int64), tf.constant(pair_values, tf.int64)
                ),
                default_value=-1,
            )
        else:
            self._merge_table = None

        # Whole pre-tokens that BPE leaves as one vocabulary token: found by running the merge loop once
        # over every vocabulary entry.
        specials = set(self.special_tokens)
        candidates = [(tok, i) for tok, i in ids.items() if tok not in specials]
        raw_tokens = [raw(tok, "vocab token") for tok, _ in candidates]
        bpe = tf.function(self._bpe, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
        values, lengths = bpe(tf.constant(raw_tokens, dtype=tf.string))
        lengths = lengths.numpy()
        starts = lengths.cumsum() - lengths
        values = values.numpy()
        keys, word_ids = [], []
        for (_, i), raw_tok, start, length in zip(candidates, raw_tokens, starts, lengths):
            if length == 1 and values[start] == i:
                keys.append(raw_tok)
                word_ids.append(i)
        for tok, i in self.special_tokens.items():
            keys.append(tok.encode("utf-8"))
            word_ids.append(i)
        self._word_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.string), tf.constant(word_ids, tf.int64)
            ),
            default_value=-1,
        )
        self._num_single_token_words = len(keys)
        # id -> raw bytes, for detokenize (ids missing from the vocabulary decode to nothing).
        id_bytes = [b""] * (max(ids.values()) + 1)
        for tok, i in ids.items():
            id_bytes[i] = tok.encode("utf-8") if tok in specials else raw(tok, "vocab token")
        self._id_bytes = tf.constant(id_bytes, tf.string)
        self._pattern = _pretokenize_pattern()
        starts, stand_ins = _class_intervals()
        self._class_starts = tf.constant(starts, tf.int32)
        self._class_stand_in = tf.constant(stand_ins, tf.int32)
        self._special_pattern = "|".join(
            _re2_literal(t) for t in sorted(self.special_tokens, key=len, reverse=True)
        )

    # ----------------------------------------------------------------------------------------------
    # Graph pieces
    # ----------------------------------------------------------------------------------------------

    def _bpe(self, words: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """BPE of ``words`` (M,) raw-byte strings -> (flat ids (N,) int64, ids per word (M,) int64)."""
        num_words = tf.shape(words, out_type=tf.int64)[0]
        byte_lengths = tf.cast(tf.strings.length(words), tf.int64)
        raw = tf.io.decode_raw(tf.strings.reduce_join(words), tf.uint8)
        symbols = tf.gather(self._byte_ids, tf.cast(raw, tf.int32))
        row_ids = _row_ids(byte_lengths)
        if self._merge_table is not None:
            symbols, row_ids = self._merge_loop(symbols, row_ids, num_words)
        lengths = tf.math.unsorted_segment_sum(tf.ones_like(row_ids), row_ids, num_words)
        return symbols, lengths

    def _merge_loop(self, symbols: tf.Tensor, row_ids: tf.Tensor, num_words: tf.Tensor):
        """Merge until no word has a pair in the merge table; words leave the loop once they are final."""
        shift = tf.constant(1 << self._id_bits, tf.int64)
        none = tf.constant(tf.int64.max, tf.int64)
        table = self._merge_table

        def step(symbols, row_ids, done_symbols, done_rows):
            pair_rows = row_ids[:-1]
            packed = table.lookup(symbols[:-1] * shift + symbols[1:])
            packed = tf.where((pair_rows == row_ids[1:]) & (packed >= 0), packed, none)
            # Each word's lowest-rank pair (rank is the high part of `packed`, so min over packed).
            best = tf.math.unsorted_segment_min(packed, pair_rows, num_words)
            is_best = (packed == tf.gather(best, pair_rows)) & (packed != none)
            # Occurrences overlap only for a pair (x, x): in a run of consecutive matches keep every
            # second one, from the left (the reference merges left to right, non-overlapping).
            not_best = tf.logical_not(is_best)
            falses_so_far = tf.cumsum(tf.cast(not_best, tf.int64))
            false_positions = tf.concat([[-1], tf.where(not_best)[:, 0]], axis=0)
            run_start = tf.gather(false_positions, falses_so_far) + 1
            offset = tf.range(tf.size(packed, out_type=tf.int64)) - run_start
            merge_here = is_best & (offset % 2 == 0)
            symbols = tf.where(
                tf.concat([merge_here, [False]], axis=0), tf.concat([packed % shift, [0]], axis=0), symbols
            )
            # Drop each merge's right symbol; words that had nothing to merge are final and leave.
            final = tf.gather(best, row_ids) == none
            leave = tf.logical_not(tf.concat([[False], merge_here], axis=0)) & final
            stay = tf.logical_not(tf.concat([[False], merge_here], axis=0) | final)
            done_symbols = tf.concat([done_symbols, tf.boolean_mask(symbols, leave)], axis=0)
            done_rows = tf.concat([done_rows, tf.boolean_mask(row_ids, leave)], axis=0)
            return tf.boolean_mask(symbols, stay), tf.boolean_mask(row_ids, stay), done_symbols, done_rows

        empty = tf.zeros([0], tf.int64)
        _, _, symbols, row_ids = tf.while_loop(
            lambda symbols, *_: tf.size(symbols) > 0,
            step,
            (symbols, row_ids, empty, empty),
            shape_invariants=(tf.TensorShape([None]),) * 4,
        )
        # Words left in blocks, in the order they finished: put them back in order (stable sort).
        order = tf.argsort(row_ids, stable=True)
        return tf.gather(symbols, order), tf.gather(row_ids, order)

    # Ragged data is handled as flat (values, row_splits) pairs: it keeps the graph small (fast to trace
    # and to optimise) and every step explicit.

    @staticmethod
    def _split_keep_all(strings: tf.Tensor, pattern: str) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Split (n,) ``strings`` into the matches of ``pattern`` (and any text between them).

        Returns ``(parts, row_splits, perm)``: the parts of the strings taken in the order ``perm``.
        Used for the special-token split of whole texts. tensorflow-text's regex split stops at a NUL
        byte, so texts holding one are split with NUL replaced by \x01 (special tokens never contain
        either) and cut from the original by the offsets.
        """
        has_nul = tf.strings.regex_full_match(strings, _HAS_NUL)
        plain_idx = tf.where(tf.logical_not(has_nul))[:, 0]
        nul_idx = tf.where(has_nul)[:, 0]
        plain, _, _, plain_splits = _regex_split_op(tf.gather(strings, plain_idx), pattern)
        with_nul = tf.gather(strings, nul_idx)
        _, begin, end, nul_splits = _regex_split_op(
            tf.strings.regex_replace(with_nul, "\\x00", "\x01"), pattern
        )
        # Cut the originals: a dense (rows, longest) grid of offsets, broadcast against the strings.
        rows = tf.size(nul_idx, out_type=tf.int64)
        lengths = nul_splits[1:] - nul_splits[:-1]
        width = tf.reduce_max(tf.concat([lengths, [0]], axis=0))
        row_of = _row_ids(lengths)
        col_of = tf.range(tf.size(begin, out_type=tf.int64)) - tf.gather(nul_splits, row_of)
        grid = tf.stack([row_of, col_of], axis=1)
        shape = tf.stack([rows, width])
        pos = tf.scatter_nd(grid, tf.cast(begin, tf.int32), shape)
        size = tf.scatter_nd(grid, tf.cast(end - begin, tf.int32), shape)
        cut = tf.strings.substr(with_nul[:, None], pos, size)
        nul = tf.gather_nd(cut, grid)
        parts = tf.concat([plain, nul], axis=0)
        splits = tf.concat([plain_splits, plain_splits[-1] + nul_splits[1:]], axis=0)
        return parts, splits, tf.concat([plain_idx, nul_idx], axis=0)

    def _pieces(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(B,) texts -> pieces (special tokens and the text between them), their row_splits over B."""
        if self.special_tokens:
            parts, splits, perm = self._split_keep_all(texts, self._special_pattern)
            pieces, splits = _reorder_rows(parts, splits, perm)
        else:
            pieces, splits = texts, tf.range(tf.size(texts, out_type=tf.int64) + 1)
        if self.add_prefix_space:
            needs = tf.strings.length(pieces) > 0
            if self.special_tokens:
                needs &= tf.logical_not(tf.strings.regex_full_match(pieces, self._special_pattern))
            needs &= tf.strings.substr(pieces, 0, 1) != " "
            pieces = tf.where(needs, tf.strings.join([" ", pieces]), pieces)
        return pieces, splits

    def _split_pieces(self, pieces: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Pre-tokenize (S,) pieces -> (pre-tokens, row_splits, perm): rows are the pieces in order ``perm``.

        ASCII pieces go straight through RE2; pieces with other characters (or NUL) go through an ASCII
        stand-in; a special token is its own single pre-token.
        """
        fast = tf.strings.regex_full_match(pieces, _ASCII_NO_NUL)
        if self.special_tokens:
            special = tf.strings.regex_full_match(pieces, self._special_pattern)
            fast &= tf.logical_not(special)
            other = tf.logical_not(fast | special)
        else:
            special = tf.zeros_like(fast)
            other = tf.logical_not(fast)
        fast_idx, other_idx, special_idx = (tf.where(m)[:, 0] for m in (fast, other, special))
        fast_tokens, fast_splits = self._split_ascii(tf.gather(pieces, fast_idx))
        slow_tokens, slow_splits = self._split_by_stand_in(tf.gather(pieces, other_idx))
        tokens = tf.concat([fast_tokens, slow_tokens, tf.gather(pieces, special_idx)], axis=0)
        n_special = tf.size(special_idx, out_type=tf.int64)
        splits = tf.concat(
            [
                fast_splits,
                fast_splits[-1] + slow_splits[1:],
                fast_splits[-1] + slow_splits[-1] + tf.range(1, n_special + 1),
            ],
            axis=0,
        )
        perm = tf.concat([fast_idx, other_idx, special_idx], axis=0)
        return tokens, splits, perm

    def _split_ascii(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Pre-tokenize (n,) ASCII texts without NUL -> (pre-tokens, row_splits).

        RE2 writes :data:`_MARK` before every match of the pattern (every character is in one) and before
        the last leading whitespace character of every pre-token :data:`_CUT` cuts; the texts are then split
        at the marks. (A replace that needs only the whole match runs on RE2's DFA, about twice as fast as a
        split op that extracts a capture group per match.)
        """
        marked = tf.strings.regex_replace(texts, self._pattern, _MARK + "\\0")
        marked = tf.strings.regex_replace(marked, _CUT, "\\1" + _MARK + "\\2")
        parts = tf.strings.split(marked, _MARK)
        values = parts.flat_values
        keep = tf.strings.length(values) > 0  # the empty part before each text's first mark
        lengths = tf.math.unsorted_segment_sum(
            tf.cast(keep, tf.int64), parts.value_rowids(), tf.shape(texts, out_type=tf.int64)[0]
        )
        return tf.boolean_mask(values, keep), tf.concat([[0], tf.cumsum(lengths)], axis=0)

    def _split_by_stand_in(self, pieces: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Pre-tokenize pieces with non-ASCII characters: (pre-tokens, row_splits).

        Every character outside ASCII (and NUL, at which tensorflow-text's split would stop) is replaced
        by an ASCII character of the same class (letter "a", number "0", whitespace "\\v", other "#"); the
        ASCII pattern splits that stand-in text (one byte per character, so its offsets count characters)
        and the pre-tokens are re-encoded from the original code points. RE2 runs large Unicode classes
        several times slower; this keeps every script at ASCII speed.
        """
        chars = tf.strings.unicode_decode(pieces, "UTF-8", errors="replace")
        code_points = chars.flat_values
        char_splits = tf.cast(chars.row_splits, tf.int64)
        interval = tf.searchsorted(self._class_starts, code_points, side="right") - 1
        stand_in = tf.where(
            (code_points > 0) & (code_points < 128), code_points, tf.gather(self._class_stand_in, interval)
        )
        stand_in_text = tf.strings.unicode_encode(
            tf.RaggedTensor.from_row_splits(stand_in, char_splits, validate=False), "UTF-8"
        )
        stand_in_tokens, splits = self._split_ascii(stand_in_text)
        # The pre-tokens tile their texts, one byte a character: their code points follow one another.
        lengths = tf.cast(tf.strings.length(stand_in_tokens), tf.int64)
        token_splits = tf.concat([[0], tf.cumsum(lengths)], axis=0)
        tokens = tf.strings.unicode_encode(
            tf.RaggedTensor.from_row_splits(code_points, token_splits, validate=False), "UTF-8"
        )
        return tokens, splits

    def _pretokens(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        pieces, piece_splits = self._pieces(texts)
        tokens, token_splits, perm = self._split_pieces(pieces)
        return tokens, token_splits, perm, piece_splits

    def pretokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """The pre-tokens (raw UTF-8 bytes) of ``texts`` (B,): ragged (B, None) ``tf.string``.

        Special tokens are single pre-tokens; ``add_prefix_space`` is applied. For text without special
        tokens this is ``regex.findall(GPT2_PRETOKENIZE_PATTERN, text)``.
        """
        texts = self._check_input(texts)[0]
        tokens, token_splits, perm, piece_splits = self._pretokens(texts)
        tokens, token_splits = _reorder_rows(tokens, token_splits, perm)
        return tf.RaggedTensor.from_row_splits(tokens, tf.gather(token_splits, piece_splits), validate=False)

    def _encode(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """(B,) texts -> (B, None) int64 ids."""
        tokens, token_splits, perm, piece_splits = self._pretokens(texts)
        # BPE once per distinct pre-token: a table lookup, else the merge loop.
        words, word_index = tf.unique(tokens, out_idx=tf.int64)
        word_ids = self._word_table.lookup(words)
        hit = word_ids >= 0
        hit_idx = tf.where(hit)[:, 0]
        miss_idx = tf.where(tf.logical_not(hit))[:, 0]
        miss_values, miss_lengths = self._bpe(tf.gather(words, miss_idx))
        num_words = tf.size(words, out_type=tf.int64)
        word_lengths = tf.tensor_scatter_nd_update(
            tf.ones([num_words], tf.int64), miss_idx[:, None], miss_lengths
        )
        word_starts = tf.cumsum(word_lengths, exclusive=True)
        miss_positions = _gather_rows(tf.gather(word_starts, miss_idx), miss_lengths)
        word_values = tf.dynamic_stitch(
            [tf.cast(tf.gather(word_starts, hit_idx), tf.int32), tf.cast(miss_positions, tf.int32)],
            [tf.gather(word_ids, hit_idx), miss_values],
        )
        # Back to every pre-token, then pieces in their original order, then texts.
        lengths = tf.gather(word_lengths, word_index)
        ids = tf.gather(word_values, _gather_rows(tf.gather(word_starts, word_index), lengths))
        id_splits = tf.concat([[0], tf.cumsum(lengths)], axis=0)
        ids, piece_id_splits = _reorder_rows(ids, tf.gather(id_splits, token_splits), perm)
        return tf.RaggedTensor.from_row_splits(ids, tf.gather(piece_id_splits, piece_splits), validate=False)

    # ----------------------------------------------------------------------------------------------
    # Keras API
    # ----------------------------------------------------------------------------------------------

    @staticmethod
    def _check_input(texts: Any) -> tuple[tf.Tensor, bool]:
        if not isinstance(texts, (tf.Tensor, tf.Variable)) or isinstance(texts, tf.RaggedTensor):
            if isinstance(texts, tf.RaggedTensor):
                raise TypeError(
                    "TFGPT2Tokenizer takes a dense tf.string tensor of shape (batch,) or (), not ragged"
                )
            texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string:
            raise TypeError(f"TFGPT2Tokenizer takes tf.string texts, got dtype {texts.dtype.name}")
        rank = texts.shape.rank
        if rank is None:
            raise ValueError("TFGPT2Tokenizer needs texts of known rank: 0 (one text) or 1 (a batch)")
        if rank > 1:
            raise ValueError(f"TFGPT2Tokenizer takes texts of shape (batch,) or (), got shape {texts.shape}")
        scalar = rank == 0
        return (tf.reshape(texts, [1]) if scalar else texts), scalar

    def call(self, x: Any, max_length: int | None = None) -> dict[str, tf.Tensor | tf.RaggedTensor]:
        """Tokenize ``x`` (``tf.string``, shape (B,) or ()); see the class docstring for the outputs."""
        texts, scalar = self._check_input(x)
        max_length = self.max_length if max_length is None else max_length
        if max_length is not None and (not isinstance(max_length, int) or max_length <= 0):
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        ids = tf.cast(self._encode(texts), tf.int32)
        if max_length is not None:
            ids = ids[:, :max_length]
        mask = tf.ones_like(ids)
        if max_length is not None and self.pad_token_id is not None:
            shape = [None, max_length]
            ids = ids.to_tensor(default_value=self.pad_token_id, shape=shape)
            mask = mask.to_tensor(default_value=0, shape=shape)
        if scalar:
            ids, mask = ids[0], mask[0]
        return {"input_ids": ids, "attention_mask": mask}

    def detokenize(self, ids: Any) -> tf.Tensor:
        """Token ids -> the UTF-8 bytes they stand for (``tf.string``), in-graph.

        ``ids``: ``(B, None)`` ragged, ``(B, T)`` dense (strip padding first, or pass a ragged tensor) or
        ``(T,)``; returns ``(B,)`` or a scalar. Byte-level BPE is lossless, so
        ``detokenize(tokenizer(texts)["input_ids"]) == texts``. A slice of ids may end inside a multi-byte
        character: decode the bytes with ``errors="replace"`` as HF's ``decode`` does.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise TypeError(f"detokenize takes integer token ids, got dtype {ids.dtype.name}")
        if ids.shape.rank not in (1, 2):
            raise ValueError(f"detokenize takes ids of shape (T,) or (B, T), got shape {ids.shape}")
        pieces = (
            tf.gather(self._id_bytes, ids)
            if not isinstance(ids, tf.RaggedTensor)
            else tf.ragged.map_flat_values(tf.gather, self._id_bytes, ids)
        )
        return tf.strings.reduce_join(pieces, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("dtype", None)
        config.update(
            {
                "vocab": self.vocab,
                "merges": self.merges,
                "max_length": self.max_length,
                "pad_token_id": self.pad_token_id,
                "add_prefix_space": self.add_prefix_space,
                "special_tokens": dict(self.special_tokens),
            }
        )
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TFGPT2Tokenizer:
        return cls(**config)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> TFGPT2Tokenizer:
        """Build from a GPT-2 tokenizer object: this package's ``GPT2Tokenizer``/``GPT2TokenizerFast`` or HF's.

        Takes its vocabulary, merges, ``add_prefix_space`` and special tokens; ``kwargs`` (``max_length``,
        ``pad_token_id``, ...) override them.
        """
        vocab = tokenizer.get_vocab()
        merges = _tokenizer_merges(tokenizer)
        kwargs.setdefault("add_prefix_space", bool(getattr(tokenizer, "add_prefix_space", False)))
        if "special_tokens" not in kwargs:
            added = getattr(tokenizer, "added_tokens_encoder", None)
            if isinstance(added, Mapping) and added:
                kwargs["special_tokens"] = {str(k): int(v) for k, v in added.items()}
        return cls(vocab, merges, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> TFGPT2Tokenizer:
        """Load ``vocab.json`` + ``merges.txt`` (or ``tokenizer.json``) from a directory or a hub name.

        ``"gpt2"`` and the other OpenAI sizes (and ``openai-community/...``) use the vocabulary shipped with
        this package, without network. ``add_prefix_space`` defaults to the one in ``tokenizer_config.json``;
        ``kwargs`` go to the constructor.
        """
        directory = _resolve_tokenizer_dir(pretrained_model_name_or_path)
        vocab, merges = _read_vocab_and_merges(directory)
        config_file = directory / TOKENIZER_CONFIG_FILE
        if config_file.is_file():
            tok_config = json.loads(config_file.read_text(encoding="utf-8"))
            if "add_prefix_space" in tok_config:
                kwargs.setdefault("add_prefix_space", bool(tok_config["add_prefix_space"]))
            if "special_tokens" not in kwargs:
                specials = {
                    entry["content"]: int(index)
                    for index, entry in (tok_config.get("added_tokens_decoder") or {}).items()
                    if isinstance(entry, Mapping) and entry.get("content")
                }
                if specials:
                    kwargs["special_tokens"] = specials
        return cls(vocab, merges, **kwargs)


def _regex_split_op(strings: tf.Tensor, pattern: str):
    """tensorflow-text's RegexSplitWithOffsets keeping every match: (tokens, begin, end, row_splits)."""
    wrapped = f"({pattern})"
    return _gen_regex_split.regex_split_with_offsets(strings, wrapped, wrapped)


def _row_ids(lengths: tf.Tensor) -> tf.Tensor:
    """The row of every element of rows with ``lengths`` (int64): ``repeat(range(n), lengths)``.

    (``tf.repeat`` builds an (n, max(lengths)) mask; this is linear.)
    """
    starts = tf.cumsum(lengths, exclusive=True)
    total = tf.reduce_sum(lengths)
    # Count the rows starting at each position (empty rows share their successor's start), then cumsum.
    row_starts = tf.math.unsorted_segment_sum(tf.ones_like(starts), starts, total + 1)[:-1]
    return tf.cumsum(row_starts) - 1


def _gather_rows(starts: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    """concat(range(s, s + n) for s, n in zip(starts, lengths)), int64: the flat indices of rows."""
    rows = _row_ids(lengths)
    offsets = starts - tf.cumsum(lengths, exclusive=True)
    return tf.range(tf.size(rows, out_type=tf.int64)) + tf.gather(offsets, rows)


def _reorder_rows(values: tf.Tensor, splits: tf.Tensor, perm: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Rows ``(values, splits)`` stored in the order ``perm`` -> the same rows in order 0..n-1."""
    inverse = tf.math.invert_permutation(perm)
    lengths = tf.gather(splits[1:] - splits[:-1], inverse)
    starts = tf.gather(splits[:-1], inverse)
    return tf.gather(values, _gather_rows(starts, lengths)), tf.concat([[0], tf.cumsum(lengths)], axis=0)


class _BPEFiles:
    """The vocabulary and merges a tokenizer was built from (kept for ``get_config``)."""

    def __init__(self, vocab: dict[str, int], merges: list[str]):
        self.vocab = vocab
        self.merges = merges


def _tokenizer_merges(tokenizer: Any) -> list[str]:
    ranks = getattr(tokenizer, "bpe_ranks", None)
    if isinstance(ranks, Mapping) and ranks:
        return [" ".join(pair) for pair, _ in sorted(ranks.items(), key=lambda item: item[1])]
    merges = getattr(tokenizer, "bpe_merges", None) or getattr(tokenizer, "merges", None)
    if merges:
        return [m if isinstance(m, str) else " ".join(m) for m in merges]
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        model = json.loads(backend.to_str())["model"]
        return [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    raise TypeError(
        f"cannot read BPE merges from {type(tokenizer).__name__}: "
        "expected bpe_ranks, bpe_merges, merges or a backend_tokenizer"
    )


def _package_vocab_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "gpt2"


def _resolve_tokenizer_dir(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.parent
    if path.is_dir():
        return path
    if str(name_or_path) in BUILTIN_NAMES:
        return _package_vocab_dir()
    from gpt2_multi import hub  # lazily: only for names that are neither local nor built in

    return hub.resolve(name_or_path, files=(VOCAB_FILE, MERGES_FILE))


def _read_vocab_and_merges(directory: Path) -> tuple[dict[str, int], list[str]]:
    vocab_file, merges_file, tokenizer_file = (
        directory / VOCAB_FILE,
        directory / MERGES_FILE,
        directory / TOKENIZER_FILE,
    )
    if vocab_file.is_file() and merges_file.is_file():
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        merges = _read_merges(merges_file.read_text(encoding="utf-8").split("\n"))
        return vocab, merges
    if tokenizer_file.is_file():
        model = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("model", {})
        if model.get("type") != "BPE":
            raise ValueError(f"{tokenizer_file} is not a BPE tokenizer (model type {model.get('type')!r})")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        return dict(model["vocab"]), merges
    raise FileNotFoundError(
        f"{directory} has neither {VOCAB_FILE} + {MERGES_FILE} nor {TOKENIZER_FILE}: not a GPT-2 tokenizer directory"
    )
