"""The truncation and padding rules alone, as pure functions on lists (tokenization/truncation.py)."""

from __future__ import annotations

import pytest

from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast
from gpt2_multi.tokenization import truncation as t


def test_keep_lengths_fast_engine_rules():
    assert t.keep_lengths(10, None, "longest_first", 4, 0) == (4, None)
    assert t.keep_lengths(5, 5, "longest_first", 7, 0) == (3, 4)  # the engine gives the odd token to the second
    assert t.keep_lengths(8, 2, "longest_first", 6, 0) == (4, 2)
    assert t.keep_lengths(2, 8, "longest_first", 6, 1) == (2, 3)
    assert t.keep_lengths(6, 3, "only_first", 7, 0) == (4, 3)
    assert t.keep_lengths(6, 3, "only_second", 8, 0) == (6, 2)
    assert t.keep_lengths(6, 3, "do_not_truncate", 2, 0) == (6, 3)
    assert t.keep_lengths(6, 3, "longest_first", 1, 1) == (0, 0)  # no budget left: empty, as HF's engine
    with pytest.raises(ValueError, match="smaller than the 2 special tokens"):
        t.keep_lengths(3, None, "longest_first", 1, 2)
    with pytest.raises(ValueError, match="only_first.*must remove 6 tokens.*has only 3"):
        t.keep_lengths(3, 5, "only_first", 2, 0)
    with pytest.raises(ValueError, match="needs a text_pair"):
        t.keep_lengths(9, None, "only_second", 4, 0)


def test_cut_and_windows():
    values = list(range(10))
    assert t.cut(values, 3) == [0, 1, 2] and t.cut(values, 3, "left") == [7, 8, 9] and t.cut(values, 20) == values
    assert t.windows(values, 4, 1) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert t.windows(values, 4, 2, "left") == [[6, 7, 8, 9], [4, 5, 6, 7], [2, 3, 4, 5], [0, 1, 2, 3]]
    assert t.windows(values, 0, 0) == [[], values]
    with pytest.raises(ValueError, match="stride=3 must be less than the 3 tokens"):
        t.check_stride({"first": (10, 3)}, 3)


def test_truncate_sequences_python_rules():
    a, b = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    assert t.truncate_sequences(a, b, 3) == ([1, 2, 3, 4], [6, 7, 8], [])  # 4 + 3 where the engine keeps 3 + 4
    assert t.truncate_sequences(a + [11], b, 4) == ([1, 2, 3, 4], [6, 7, 8], [])
    assert t.truncate_sequences(a, None, 2, stride=1) == ([1, 2, 3], None, [3, 4, 5])
    assert t.truncate_sequences(a, None, 2, stride=1, side="left") == ([3, 4, 5], None, [1, 2, 3])
    assert t.truncate_sequences(a, b, 2, "only_second") == (a, [6, 7, 8], [9, 10])
    assert t.truncate_sequences(a, b, 0) == (a, b, [])
    with pytest.raises(ValueError, match="must remove 5 tokens"):
        t.truncate_sequences(a, b, 5, "only_first")
    with pytest.raises(ValueError, match="not possible"):
        t.check_overflow("longest_first", pair=True)


def test_padding():
    assert t.padded_length([3, 5], "longest", None, None) == 5
    assert t.padded_length([3, 5], "longest", None, 4) == 8
    assert t.padded_length([3, 5], "max_length", 6, None) == 6
    assert t.padded_length([3, 5], "do_not_pad", 6, None) is None
    row = {"input_ids": [1, 2], "attention_mask": [1, 1], "other": [9, 9]}
    t.pad_row(row, 4, {"input_ids": 0, "attention_mask": 0}, "left")
    assert row == {"input_ids": [0, 0, 1, 2], "attention_mask": [0, 0, 1, 1], "other": [9, 9]}


def test_slow_and_fast_give_pairs_the_same_structure():
    slow, fast = GPT2Tokenizer.from_pretrained("gpt2"), GPT2TokenizerFast.from_pretrained("gpt2")
    calls = [
        lambda k: dict(k("a b", "c d", return_token_type_ids=True, return_special_tokens_mask=True)),
        lambda k: dict(k([("a b", "c"), ("d", "e f")], return_token_type_ids=True)),
        lambda k: dict(k(["a b", "d"], ["c", "e f"], truncation="only_second", max_length=3)),
        lambda k: dict(k.encode_plus("a b", "c d")),
        lambda k: dict(k.batch_encode_plus([("a b", "c"), ("d", "e f")])),
        lambda k: k.encode("a b", "c d"),
        lambda k: k.tokenize("a b", "c d"),
        lambda k: dict(k("a b c d e f", "g h i j", truncation=True, max_length=6, return_overflowing_tokens=True)),
        lambda k: dict(k.prepare_for_model([1, 2, 3], [4, 5], return_token_type_ids=True)),
    ]
    for call in calls:
        assert call(slow) == call(fast)
    assert fast("a b", "c d").n_sequences == slow("a b", "c d").n_sequences == 2
