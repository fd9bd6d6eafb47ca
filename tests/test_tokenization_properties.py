"""Property tests: on arbitrary Unicode, our two tokenizers round-trip and agree with each other, with
HF's Rust engine (on HF's tokenizer.json) and with tiktoken (built here from vocab.json, independently
of the package's own construction)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regex
import tiktoken
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken as RustAddedToken
from tokenizers import Regex, Tokenizer, pre_tokenizers

from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast
from gpt2_multi.tokenization import AddedToken, _unicode_tables

DATA = Path(__file__).resolve().parents[1] / "src" / "gpt2_multi" / "data" / "gpt2"
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _byte_decoder() -> dict[str, int]:
    # GPT-2's byte table (from OpenAI's encoder.py): printable Latin-1 bytes map to themselves, the rest
    # to U+0100 onwards in byte order.
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = {b: chr(b) for b in keep}
    extra = iter(range(256, 512))
    for b in range(256):
        if b not in chars:
            chars[b] = chr(next(extra))
    return {c: b for b, c in chars.items()}


def _tiktoken_reference() -> tiktoken.Encoding:
    vocab = json.loads((DATA / "vocab.json").read_text(encoding="utf-8"))
    table = _byte_decoder()
    ranks = {bytes(table[c] for c in token): index for token, index in vocab.items() if token != "<|endoftext|>"}
    return tiktoken.Encoding("gpt2-test-reference", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def _rust(add_prefix_space: bool = False) -> Tokenizer:
    tok = Tokenizer.from_file(str(DATA / "tokenizer.json"))
    if add_prefix_space:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    return tok


TIKTOKEN = _tiktoken_reference()
RUST = _rust()
RUST_PREFIX = _rust(add_prefix_space=True)
SLOW = GPT2Tokenizer.from_pretrained("gpt2")
FAST = GPT2TokenizerFast.from_pretrained("gpt2")
SLOW_PREFIX = GPT2Tokenizer.from_pretrained("gpt2", add_prefix_space=True)
FAST_PREFIX = GPT2TokenizerFast.from_pretrained("gpt2", add_prefix_space=True)

# Added tokens with every matching rule, overlapping contents, special and not.
ADDED = [
    ("<a>", {}, False),
    ("<a>b", {}, False),
    ("[SEP]", {}, True),
    ("<m>", {"lstrip": True, "rstrip": True}, True),
    ("word", {"single_word": True}, False),
    ("ünï", {}, False),
    ("hello", {}, False),  # already in the vocabulary
]


def _with_added(klass):
    tok = klass.from_pretrained("gpt2")
    for content, flags, special in ADDED:
        tok.add_tokens([AddedToken(content, special=special, **flags)], special_tokens=special)
    return tok


RUST_ADDED = _rust()
for _content, _flags, _special in ADDED:
    _token = RustAddedToken(_content, special=_special, normalized=not _special, **_flags)
    (RUST_ADDED.add_special_tokens if _special else RUST_ADDED.add_tokens)([_token])
SLOW_ADDED, FAST_ADDED = _with_added(GPT2Tokenizer), _with_added(GPT2TokenizerFast)

# Code points assigned after the Unicode version of HF's engine: the regex module (newer) calls them
# letters or numbers, HF's engine does not (U+0558 Armenian, U+088F Arabic, U+11DE0 digits, CJK Ext. J).
NEW_CODE_POINTS = ["\u0558", "\u088f", "\U00011de0", "\U000323b0"]
PIECES = st.sampled_from(
    [" ", "  ", "\n", "\n\n", "\t", "\r\n", "\x0b", "\x85", "\u00a0", "\u2028", "\u3000", "\u200b", "<|endoftext|>",
     "'s", "'ll", "'RE", "123", "3.14", "١٢٣", "Hello", " world", "über", "😀", "👍🏽", "中文", "Ġ", "\x00", "!!", "a",
     *NEW_CODE_POINTS]
)
TEXTS = st.lists(st.one_of(st.text(max_size=16), PIECES), max_size=12).map("".join)
ADDED_PIECES = st.sampled_from([c for c, _, _ in ADDED] + [" ", "  ", "x", "_", "é", "words", " word ", "<", ">", "b"])
TEXTS_WITH_ADDED = st.lists(st.one_of(PIECES, ADDED_PIECES, st.text(max_size=4)), max_size=12).map("".join)


@SETTINGS
@given(TEXTS)
def test_encode_decode_round_trips(text):
    for tok in (SLOW, FAST):
        assert tok.decode(tok.encode(text)) == text


@SETTINGS
@given(TEXTS)
@example("\U000323b0's")
@example("x\u0558y 1\U00011de0 2 's")
def test_slow_fast_rust_and_tiktoken_agree(text):
    expected = RUST.encode(text, add_special_tokens=False).ids
    assert SLOW.encode(text) == expected
    assert FAST.encode(text) == expected
    assert TIKTOKEN.encode(text, allowed_special="all") == expected


@SETTINGS
@given(TEXTS)
@example("\U000323b0's")
def test_add_prefix_space_agrees_with_rust(text):
    expected = RUST_PREFIX.encode(text, add_special_tokens=False).ids
    assert SLOW_PREFIX.encode(text) == expected
    assert FAST_PREFIX.encode(text) == expected


@SETTINGS
@given(st.lists(TEXTS, min_size=1, max_size=6))
def test_pre_split_words_agree_with_rust(words):
    expected = RUST_PREFIX.encode(words, is_pretokenized=True, add_special_tokens=False).ids
    assert SLOW_PREFIX(words, is_split_into_words=True).input_ids == expected
    assert FAST_PREFIX(words, is_split_into_words=True).input_ids == expected


@SETTINGS
@given(TEXTS_WITH_ADDED)
def test_added_tokens_agree_with_rust(text):
    expected = RUST_ADDED.encode(text, add_special_tokens=False).ids
    assert SLOW_ADDED.encode(text) == expected
    assert FAST_ADDED.encode(text) == expected


@SETTINGS
@given(TEXTS_WITH_ADDED)
def test_offsets_agree_with_rust(text):
    expected = RUST_ADDED.encode(text, add_special_tokens=False)
    out = FAST_ADDED(text, return_offsets_mapping=True)
    assert out.input_ids == expected.ids
    assert out.offset_mapping == [tuple(o) for o in expected.offsets]


@SETTINGS
@given(st.lists(st.integers(0, 50256), max_size=40))
def test_decode_of_any_ids_matches_rust(ids):
    expected = RUST.decode(ids, skip_special_tokens=False)
    assert SLOW.decode(ids) == expected
    assert FAST.decode(ids) == expected


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from("aeilnorst\n 1.!é"), min_size=49, max_size=600))
def test_long_words_use_the_heap_merge_and_agree(text):
    expected = RUST.encode(text, add_special_tokens=False).ids
    assert SLOW.encode(text) == expected
    assert FAST.encode(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=2, max_size=120))
def test_heap_merge_equals_scan_merge(data):
    engine = SLOW._bpe
    start = [engine.byte_ids[b] for b in data]
    assert engine._merge_heap(list(start)) == engine._merge_scan(list(start))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 12), st.one_of(st.none(), st.integers(0, 12)), st.integers(0, 20),
    st.sampled_from(["longest_first", "only_first", "only_second"]), st.sampled_from(["right", "left"]),
)
def test_truncation_agrees_with_rust(n_first, n_second, max_length, strategy, side):
    first = "".join(f" w{i}" for i in range(n_first))  # " w0" is one token, and so on
    second = None if n_second is None else "".join(f" v{i}" for i in range(n_second))
    engine = _TRUNCATION_ENGINE
    engine.enable_truncation(max_length, strategy=strategy, direction=side)
    try:
        expected = engine.encode(first, second).ids
    except Exception:
        expected = None
    finally:
        engine.no_truncation()
    for tok in (SLOW, FAST):
        tok.truncation_side = side
        try:
            if expected is None:
                with pytest.raises(ValueError):
                    tok(first, second, truncation=strategy, max_length=max_length)
            else:
                assert tok(first, second, truncation=strategy, max_length=max_length).input_ids == expected
        finally:
            tok.truncation_side = "right"


_TRUNCATION_ENGINE = _rust()


def _matched_by_tiktoken(pattern: str, text: str) -> set[str]:
    # With only single-byte tokens, tiktoken outputs the bytes of what the pattern matched (the rest is skipped).
    probe = tiktoken.Encoding("probe", pat_str=pattern, mergeable_ranks={bytes([b]): b for b in range(256)}, special_tokens={})
    return set(bytes(probe.encode_ordinary(text)).decode("utf-8"))


def _matched_by_rust(pattern: str, text: str) -> set[str]:
    kept = pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text)
    return set(text) - set("".join(piece for piece, _ in kept))


def test_unicode_tables_match_hf_and_tiktoken_engines():
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    classes = ((_unicode_tables.LETTERS, r"\p{L}"), (_unicode_tables.NUMBERS, r"\p{N}"), (_unicode_tables.SPACES, r"\s"))
    # HF's engine is slow on a million code points: it gets every code point on which the regex module
    # and the tables disagree (where a Unicode upgrade would show first) and every 5th of the others.
    disputed: set[str] = set()
    for table, pattern in classes:
        inside = {chr(c) for first, last in table for c in range(first, last + 1)}
        disputed |= inside.symmetric_difference(regex.findall(pattern, every))
    sample = "".join(sorted(disputed)) + every[::5]
    for table, pattern in classes:
        expected = {chr(c) for first, last in table for c in range(first, last + 1)}
        assert _matched_by_tiktoken(pattern + "+", every) == expected, pattern
        assert _matched_by_rust(pattern + "+", sample) == expected & set(sample), pattern
    assert "\U000323b0" not in {chr(c) for a, b in _unicode_tables.LETTERS for c in range(a, b + 1)}
    if regex.match(r"\p{L}", "\U000323b0"):  # this regex module knows a newer Unicode: the case is live
        assert SLOW.encode("\U000323b0's") == RUST.encode("\U000323b0's", add_special_tokens=False).ids
