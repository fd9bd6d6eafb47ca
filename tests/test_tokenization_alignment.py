"""A BatchEncoding's token <-> text alignment (word_ids, token_to_word, char_to_token, ...).

A worked example checked by hand, the errors, and every method at every index against HF's
GPT2TokenizerFast over a matrix of calls (padding, pairs, truncation windows, pre-split words, added
tokens, multi-byte characters).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest

from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast
from gpt2_multi.tokenization.encoding import CharSpan, Encoding, TokenSpan

DATA = Path(__file__).resolve().parents[1] / "src" / "gpt2_multi" / "data" / "gpt2"


@pytest.fixture(scope="module")
def fast():
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    tok.pad_token = tok.eos_token
    return tok


def test_worked_example(fast):
    text = "Hello world <|endoftext|> foo"
    enc = fast(text)
    # "Hello" | " world" | " " | "<|endoftext|>" | " foo": the added token is a word of its own.
    assert enc.input_ids == [15496, 995, 220, 50256, 22944]
    assert enc.tokens() == ["Hello", "Ġworld", "Ġ", "<|endoftext|>", "Ġfoo"]
    assert enc.word_ids() == [0, 1, 2, 3, 4]
    assert enc.sequence_ids() == [0, 0, 0, 0, 0]
    assert enc.token_to_chars(1) == CharSpan(5, 11) and text[5:11] == " world"
    assert enc.token_to_word(3) == 3
    assert enc.word_to_tokens(4) == TokenSpan(4, 5)
    assert enc.word_to_chars(4) == CharSpan(25, 29)
    assert enc.char_to_token(7) == 1 and enc.char_to_word(7) == 1
    assert enc.char_to_token(len(text)) is None
    assert enc.token_to_word(-1) == 4  # negative indices count from the end (HF's raise AttributeError)
    assert enc.word_to_chars(9) is None  # a word with no token (HF's raises TypeError)
    assert enc.n_sequences == 1 and enc.is_fast


def test_pairs_padding_and_multibyte(fast):
    enc = fast(["Hi 😀", "a"], ["there", "b c"], padding=True, padding_side="left")
    # Row 1: a pad token, then "a" (sequence 0), "b", " c" (sequence 1).
    assert enc.sequence_ids(1) == [None, 0, 1, 1]
    assert enc.word_ids(1) == [None, 0, 0, 1]
    assert enc.token_to_chars(1, 0) is None  # padding
    assert enc.char_to_token(1, 0, sequence_index=1) == 2
    assert enc.word_to_tokens(1, 1, sequence_index=1) == TokenSpan(3, 4)
    # Row 0: " 😀" (a space and a 4-byte emoji) is two tokens, and both hold the emoji's character.
    assert enc.tokens(0) == ["Hi", "ĠðŁĺ", "Ģ", "there"]
    assert [enc.token_to_chars(0, i) for i in range(1, 3)] == [CharSpan(2, 4), CharSpan(3, 4)]
    assert enc.word_to_chars(0, 1) == CharSpan(2, 4)


def test_the_alignment_is_lazy_and_equals_return_offsets_mapping(fast, monkeypatch):
    texts = ["Hello world", "a b c d e f g"]
    calls = []
    places = type(fast)._places_one

    def counting(self, *args):
        calls.append(args)
        return places(self, *args)

    monkeypatch.setattr(type(fast), "_places_one", counting)
    lazy = fast(texts, padding=True, truncation=True, max_length=4, stride=1, return_overflowing_tokens=True)
    assert calls == []  # ids alone never touch the alignment engine
    eager = fast(texts, padding=True, truncation=True, max_length=4, stride=1, return_overflowing_tokens=True,
                 return_offsets_mapping=True)
    n = len(calls)
    for row in range(len(lazy.input_ids)):
        assert lazy.word_ids(row) == eager.word_ids(row)
        assert [lazy.token_to_chars(row, i) for i in range(4)] == [
            None if s == e == 0 else CharSpan(s, e) for s, e in eager.offset_mapping[row]
        ]
    assert len(calls) == n + len(texts)  # once, on first use
    assert isinstance(lazy[0], Encoding) and len(lazy.encodings) == len(lazy.input_ids)


def test_errors(fast):
    enc = fast(["a b", "c"], padding=True)
    with pytest.raises(IndexError, match="batch index 2"):
        enc.word_ids(2)
    with pytest.raises(TypeError, match="index must be an int"):
        enc.token_to_word(0, "1")
    with pytest.raises(ValueError, match="GPT2Tokenizer"):
        GPT2Tokenizer.from_pretrained("gpt2")("a b").word_ids()
    assert GPT2Tokenizer.from_pretrained("gpt2")("a").encodings is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert enc.words(1) == [0, None]
    assert any(issubclass(w.category, FutureWarning) for w in caught)
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    stale = tok("Hello world")
    tok.add_tokens(["world"])
    with pytest.raises(RuntimeError, match="other ids"):
        stale.word_ids()


def test_pickling_keeps_a_computed_alignment(fast):
    enc = fast("Hello world")
    assert pickle.loads(pickle.dumps(enc)).is_fast is False  # not computed yet: dropped, with the tokenizer
    enc.word_ids()
    again = pickle.loads(pickle.dumps(enc))
    assert again.word_ids() == [0, 1] and again.token_to_chars(1) == CharSpan(5, 11)


# -- against HF ---------------------------------------------------------------------------------------

CALLS = [
    (("Hello world <|endoftext|> foo 😀x  y\n\nz",), {}),
    ((["Hello world", "a b c d e f g", ""],), {"padding": True}),
    ((["Hello world", "a b c d e f g"],), {"padding": True, "padding_side": "left"}),
    ((["Hi there", "a b c d"], ["pair  text", "q"]), {"padding": True}),
    ((["Hi there", "a b c d"], ["pair  text", "q"]), {"padding": True, "padding_side": "left"}),
    (("a b c d e f", "g h i j"), {"truncation": True, "max_length": 6, "return_overflowing_tokens": True}),
    ((["a b c d e f g h"],), {"truncation": True, "max_length": 3, "stride": 1, "return_overflowing_tokens": True}),
    (("a b c d e f", "g h i j"), {"truncation": "only_first", "max_length": 7, "stride": 1,
                                  "return_overflowing_tokens": True, "padding": True}),
    (("naïve café 東京 1234 don't",), {}),
    (("Hello <|endoftext|>",), {"split_special_tokens": True}),
    (("",), {}),
]


def _answers(enc, n_rows):
    out = []
    for b in range(n_rows):
        n = len(enc.tokens(b))
        n_words = max([w for w in enc.word_ids(b) if w is not None], default=-1) + 2
        out.append({
            "tokens": enc.tokens(b), "words": enc.word_ids(b), "seq": enc.sequence_ids(b),
            "t2s": [enc.token_to_sequence(b, i) for i in range(n + 1)],
            "t2w": [enc.token_to_word(b, i) for i in range(n + 1)],
            "t2c": [enc.token_to_chars(b, i) for i in range(n + 1)],
            **{f"w2t{s}": [enc.word_to_tokens(b, w, sequence_index=s) for w in range(n_words)] for s in (0, 1)},
            **{f"w2c{s}": [enc.word_to_chars(b, w, sequence_index=s) if enc.word_to_tokens(b, w, sequence_index=s)
                           else None for w in range(n_words)] for s in (0, 1)},
            **{f"c2t{s}": [enc.char_to_token(b, c, sequence_index=s) for c in range(40)] for s in (0, 1)},
            **{f"c2w{s}": [enc.char_to_word(b, c, sequence_index=s) for c in range(40)] for s in (0, 1)},
        })
    return out


def _plain(value):
    if isinstance(value, (CharSpan, TokenSpan)) or type(value).__name__ in ("CharSpan", "TokenSpan"):
        return (value.start, value.end)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "add_prefix_space"])
def test_every_method_at_every_index_matches_hf(prefix):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(DATA), add_prefix_space=prefix)
    hf.pad_token = hf.eos_token
    ours = GPT2TokenizerFast.from_pretrained("gpt2", add_prefix_space=prefix)
    ours.pad_token = ours.eos_token
    calls = list(CALLS)
    if prefix:
        calls.append(((["Hello", "big", "world", "😀"],), {"is_split_into_words": True}))
        calls.append((([["a", "b"], ["c"]], [["d"], ["e", "f"]]), {"is_split_into_words": True, "padding": True}))
    for args, kwargs in calls:
        reference, got = hf(*args, **kwargs), ours(*args, **kwargs)
        assert got.input_ids == reference.input_ids, (args, kwargs)
        n_rows = len(reference.encodings)
        assert _plain(_answers(got, n_rows)) == _plain(_answers(reference, n_rows)), (args, kwargs)
        assert got.n_sequences == reference.n_sequences
