"""Our tokenizers against HF transformers' GPT2TokenizerFast itself (test-only oracle; skipped without it).

The package never imports transformers; these tests do, when it is installed, to check the call
contract (padding, truncation, pairs, tensors, special/added tokens, files) beyond the golden ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "src" / "gpt2_multi" / "data" / "gpt2"
transformers.logging.set_verbosity_error()


def _plain(encoding) -> dict:
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in dict(encoding).items()}


def _outcome(tokenizer, args, kwargs):
    try:
        return _plain(tokenizer(*args, **kwargs))
    except Exception as err:  # HF raises bare Exception for some truncation errors
        return ("error", type(err).__name__)


@pytest.fixture(scope="module")
def hf():
    tok = transformers.GPT2TokenizerFast.from_pretrained(str(DATA))
    tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(scope="module")
def hf_prefix():
    tok = transformers.GPT2TokenizerFast.from_pretrained(str(DATA), add_prefix_space=True)
    tok.pad_token = tok.eos_token
    return tok


CALLS = [
    (("Hello world",), {}),
    ((["Hello world", "a b c d e f g"],), {"padding": True}),
    ((["Hello world", "a b c d e f g"],), {"padding": "max_length", "max_length": 10}),
    ((["Hello world", "a b c d e f g"],), {"padding": True, "truncation": True, "max_length": 4}),
    ((["Hello world", "a b c d e f g"],), {"max_length": 3}),
    (("Hello world",), {"padding": True, "pad_to_multiple_of": 8}),
    (("Hello world",), {"padding": True, "return_tensors": "np"}),
    ((["Hello world", "a b c d e f g"],), {"padding": True, "padding_side": "left", "return_tensors": "np"}),
    (("a b c d e f g h i j", "k l m n o p q r s"), {"truncation": True, "max_length": 9, "return_token_type_ids": True}),
    (("a b c d e f g h i j", "k l m"), {"truncation": "only_first", "max_length": 9}),
    (("a b c d e f g h i j", "k l m n o p q r s"), {"truncation": "only_second", "max_length": 15}),
    (([("a b c", "d e"), ("f", "g h i j")],), {"padding": True, "return_special_tokens_mask": True, "return_length": True}),
    ((["Hello world", "x"],), {"return_length": True, "padding": True}),
    (("Hello world <|endoftext|> foo 😀",), {"return_offsets_mapping": True}),
    ((["Hello world", "a b c d e f g"],), {"padding": True, "return_offsets_mapping": True}),
    (("Hello <|endoftext|>",), {"split_special_tokens": True}),
    (("",), {}),
    (("Hello world",), {"add_special_tokens": False, "return_attention_mask": False}),
    (("a b", "c d e f g h i j"), {"truncation": "only_first", "max_length": 5}),
    (("a b c d e f g",), {"truncation": "only_second", "max_length": 5}),
]


@pytest.mark.parametrize("klass", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "add_prefix_space"])
def test_call_matrix_matches_hf(hf, hf_prefix, klass, prefix):
    ours = klass.from_pretrained("gpt2", add_prefix_space=prefix)
    ours.pad_token = ours.eos_token
    reference = hf_prefix if prefix else hf
    for args, kwargs in CALLS:
        if kwargs.get("return_offsets_mapping") and not ours.is_fast:
            continue
        expected = _outcome(reference, args, kwargs)
        got = _outcome(ours, args, kwargs)
        if isinstance(expected, tuple):
            assert isinstance(got, tuple), (args, kwargs, got)
        else:
            assert got == expected, (args, kwargs)


def test_pre_split_words_match_hf(hf_prefix):
    words = [["Hello", "there", " x", "<|endoftext|>y"], ["a"]]
    expected = _plain(hf_prefix(words, is_split_into_words=True, padding=True))
    for klass in (GPT2Tokenizer, GPT2TokenizerFast):
        ours = klass.from_pretrained("gpt2", add_prefix_space=True)
        ours.pad_token = ours.eos_token
        assert _plain(ours(words, is_split_into_words=True, padding=True)) == expected


@pytest.mark.parametrize("klass", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
def test_decode_and_conversions_match_hf(hf, klass):
    ours = klass.from_pretrained("gpt2")
    ids = hf.encode("Hello , world ! I 'm here . <|endoftext|> 😀 ok")
    assert ours.encode("Hello , world ! I 'm here . <|endoftext|> 😀 ok") == ids
    for kwargs in ({}, {"skip_special_tokens": True}, {"clean_up_tokenization_spaces": True}):
        assert ours.decode(ids, **kwargs) == hf.decode(ids, **kwargs)
    assert ours.decode(ids[-3:-1]) == hf.decode(ids[-3:-1])  # a split emoji: replacement characters
    assert ours.batch_decode(np.array([ids[:4], ids[4:8]])) == hf.batch_decode(np.array([ids[:4], ids[4:8]]))
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    tokens = hf.convert_ids_to_tokens(ids)
    assert ours.convert_tokens_to_string(tokens) == hf.convert_tokens_to_string(tokens)
    assert ours.convert_tokens_to_ids(["Hello", "no-such-token", "<|endoftext|>"]) == hf.convert_tokens_to_ids(
        ["Hello", "no-such-token", "<|endoftext|>"]
    )
    assert ours.tokenize("Hello", "world", add_special_tokens=True) == hf.tokenize("Hello", "world", add_special_tokens=True)


@pytest.mark.parametrize("klass", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
def test_special_and_added_tokens_match_hf(klass):
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(DATA))
    ours = klass.from_pretrained("gpt2")
    for tok in (hf, ours):
        assert tok.pad_token is None and tok.pad_token_id is None
    new = ["<new>", "hello", "[x]"]
    assert ours.add_tokens(new) == hf.add_tokens(new)
    special = {"pad_token": "[PAD]", "additional_special_tokens": ["<a>", "<b>"]}
    assert ours.add_special_tokens(special) == hf.add_special_tokens(special)
    text = "say hello<new>x[PAD]y<a> <b>[x]"
    assert ours.encode(text) == hf.encode(text)
    assert ours.decode(ours.encode(text), skip_special_tokens=True) == hf.decode(hf.encode(text), skip_special_tokens=True)
    for attribute in ("pad_token", "pad_token_id", "all_special_tokens", "all_special_ids", "special_tokens_map",
                      "additional_special_tokens", "vocab_size"):
        assert getattr(ours, attribute) == getattr(hf, attribute), attribute
    assert len(ours) == len(hf) and ours.get_vocab() == hf.get_vocab()
    ours.pad_token, hf.pad_token = "[NOT-IN-VOCAB]", "[NOT-IN-VOCAB]"
    assert ours.pad_token_id == hf.pad_token_id and len(ours) == len(hf)


@pytest.mark.parametrize("klass", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
def test_files_are_exchanged_with_hf(klass, tmp_path):
    text = "a<new>b[PAD]c <|endoftext|> Hello"
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(DATA))
    hf.add_tokens(["<new>"])
    hf.add_special_tokens({"pad_token": "[PAD]"})
    hf.save_pretrained(tmp_path / "hf")
    ours = klass.from_pretrained(tmp_path / "hf")
    assert ours.encode(text) == hf.encode(text) and len(ours) == len(hf) and ours.pad_token_id == hf.pad_token_id

    ours.save_pretrained(tmp_path / "ours")
    for hf_class in (transformers.GPT2TokenizerFast, transformers.GPT2Tokenizer):
        back = hf_class.from_pretrained(str(tmp_path / "ours"))
        assert back.encode(text) == hf.encode(text) and len(back) == len(hf) and back.pad_token_id == hf.pad_token_id
    ours_config = json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())
    hf_config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert ours_config["added_tokens_decoder"] == hf_config["added_tokens_decoder"]
    for key in ("add_bos_token", "add_prefix_space", "bos_token", "eos_token", "unk_token", "pad_token", "model_max_length"):
        assert ours_config[key] == hf_config[key], key


def _overflow_cases(n: int):
    """Random calls with a stride (mostly with return_overflowing_tokens): singles, batches and pairs, every
    truncation strategy and side."""
    rng = np.random.default_rng(7)
    words = "the cat sat on a mat , and 123 dogs ran 😀 away ! héllo world".split()

    def text():
        return " ".join(rng.choice(words, size=rng.integers(0, 14)))

    for _ in range(n):
        kind = rng.integers(0, 3)
        if kind == 0:
            args = (text(),)
        elif kind == 1:
            args = ([text() for _ in range(rng.integers(1, 4))],)
        else:
            args = (text(), text())
        kwargs = {
            "truncation": str(rng.choice(["longest_first", "only_first", "only_second", True])),
            "max_length": int(rng.integers(1, 12)),
            "stride": int(rng.integers(0, 4)),
            "return_overflowing_tokens": bool(rng.random() < 0.8),  # without it the stride rules still apply
        }
        if kwargs["truncation"] == "True":
            kwargs["truncation"] = True
        if rng.random() < 0.3:
            kwargs["padding"] = True
        if rng.random() < 0.3:
            kwargs["return_length"] = True
        if rng.random() < 0.3:
            kwargs["return_offsets_mapping"] = True
        if rng.random() < 0.3:
            kwargs["return_token_type_ids"] = True
        yield args, kwargs, str(rng.choice(["right", "left"]))


@pytest.mark.parametrize("klass", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
def test_overflowing_tokens_match_hf(hf, klass):
    """HF's fast tokenizer's overflow contract: extra rows of windows overlapping by ``stride``, with
    ``overflow_to_sample_mapping`` (both our classes follow it, as for truncation). Where HF's engine fails
    (a stride too large for what truncation keeps: a ValueError, or a Rust panic) ours raises ValueError."""
    ours = klass.from_pretrained("gpt2")
    ours.pad_token = ours.eos_token
    compared = raised = 0
    for args, kwargs, side in _overflow_cases(400):
        if kwargs.get("return_offsets_mapping") and not ours.is_fast:
            kwargs.pop("return_offsets_mapping")
        hf.truncation_side = ours.truncation_side = side
        try:
            expected = _plain(hf(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - the Rust engine panics (PanicException is a BaseException)
            if isinstance(err, KeyboardInterrupt):
                raise
            with pytest.raises(ValueError):
                ours(*args, **kwargs)
            raised += 1
            continue
        assert _plain(ours(*args, **kwargs)) == expected, (args, kwargs, side)
        compared += 1
    hf.truncation_side = "right"
    assert compared > 250 and raised > 10, (compared, raised)


def test_overflowing_tokens_worked_example():
    """Windows of max_length tokens that overlap by stride, one row each, mapped back to their text."""
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    text = "one two three four five six seven"
    ids = tok(text)["input_ids"]
    out = tok([text, "eight"], truncation=True, max_length=3, stride=1, return_overflowing_tokens=True)
    assert out["input_ids"] == [ids[0:3], ids[2:5], ids[4:7], tok("eight")["input_ids"]]
    assert out["overflow_to_sample_mapping"] == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="stride=3 must be less than the 3 tokens truncation keeps of the first"):
        tok(text, truncation=True, max_length=3, stride=3, return_overflowing_tokens=True)
    assert tok("eight", truncation=True, max_length=3, stride=3, return_overflowing_tokens=True)["input_ids"] == [
        tok("eight")["input_ids"]]  # nothing to cut: HF accepts a stride equal to max_length then
    with pytest.raises(ValueError, match="stride=3 must be less than the 3 tokens"):  # HF's engine panics here
        tok(text, truncation=True, max_length=3, stride=3)
    with pytest.raises(ValueError, match="stride=4 is larger than the effective max length 3"):
        tok("eight", truncation=True, max_length=3, stride=4)


def _trimmed_vocabulary(directory: Path) -> Path:
    """A custom byte-level BPE vocabulary with only the ASCII letters and space of the 256 single-byte tokens."""
    from gpt2_multi.tokenization.bpe import bytes_to_unicode

    table = bytes_to_unicode()
    vocab = {table[b]: i for i, b in enumerate(b for b in range(128) if chr(b).isalpha() or b == 32)}
    merges = [("h", "e"), (table[32], "he"), ("l", "l")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return directory


@pytest.mark.parametrize("cls", [GPT2Tokenizer, GPT2TokenizerFast])
def test_a_trimmed_vocabulary_loads_and_encodes_as_hfs_gpt2_tokenizer(cls, tmp_path, caplog):
    """HF accepts a vocabulary without all 256 single-byte tokens: its GPT2Tokenizer encodes such a byte as
    unk_token. Both of ours do the same (HF's fast tokenizer instead drops it: README, differences from HF)."""
    directory = _trimmed_vocabulary(tmp_path)
    hf = transformers.GPT2Tokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    hf.save_pretrained(tmp_path / "saved")  # a tokenizer saved by HF from a custom vocabulary
    with caplog.at_level("WARNING", logger="gpt2_multi.tokenization.base"):
        ours = cls.from_pretrained(tmp_path / "saved")
    assert "lacks 203 of the 256 single-byte tokens" in caplog.text
    for text in ["hello he", "he1he", "he! the caf\u00e9", "tab\there", "\u00e9\u00e9"]:
        assert ours.encode(text) == hf.encode(text), text
    assert ours.decode(ours.encode("he1he")) == "he<|endoftext|>he"


PREPARE_CALLS = [
    ((list(range(10, 15)),), {}),
    ((list(range(10, 15)), list(range(20, 25))), {"return_token_type_ids": True, "return_special_tokens_mask": True}),
    ((list(range(10, 15)), list(range(20, 25))), {"truncation": True, "max_length": 7}),
    ((list(range(10, 16)), list(range(20, 23))), {"truncation": True, "max_length": 4}),
    ((list(range(10, 15)), list(range(20, 25))), {"truncation": "only_first", "max_length": 7}),
    ((list(range(10, 15)), list(range(20, 25))),
     {"truncation": "only_second", "max_length": 7, "return_overflowing_tokens": True, "stride": 1}),
    ((list(range(10, 15)),), {"truncation": True, "max_length": 3, "return_overflowing_tokens": True, "stride": 1}),
    ((list(range(10, 15)),), {"truncation": True, "max_length": 3, "return_overflowing_tokens": True,
                              "return_tensors": "np", "prepend_batch_axis": True}),
    ((list(range(10, 15)), list(range(20, 25))), {"padding": "max_length", "max_length": 12, "return_tensors": "np"}),
    ((list(range(10, 15)), list(range(20, 25))),
     {"padding": True, "pad_to_multiple_of": 8, "padding_side": "left", "return_token_type_ids": True,
      "return_length": True}),
    ((list(range(10, 15)),), {"add_special_tokens": False, "return_attention_mask": False}),
    ((list(range(10, 15)), list(range(20, 25))), {"truncation": True, "max_length": 7, "return_overflowing_tokens": True}),
    (("not ids",), {}),
]


@pytest.mark.parametrize("klass", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_prepare_for_model_matches_hf(klass, side):
    """prepare_for_model runs HF's Python rules in both HF classes; ours match HF's slow one (HF's fast one
    fails with an AssertionError on return_special_tokens_mask), errors included (by type)."""
    hf = transformers.GPT2Tokenizer.from_pretrained(str(DATA), truncation_side=side)
    hf.pad_token = hf.eos_token
    ours = klass.from_pretrained("gpt2", truncation_side=side)
    ours.pad_token = ours.eos_token
    def run(tokenizer, args, kwargs):
        try:
            return _plain(tokenizer.prepare_for_model(*args, **kwargs))
        except (ValueError, TypeError) as err:
            return ("error", "TypeError" if isinstance(err, TypeError) else "ValueError")

    for args, kwargs in PREPARE_CALLS:
        expected, got = run(hf, args, kwargs), run(ours, args, kwargs)
        assert got == expected, (args, kwargs)
        assert list(got) == list(expected)  # HF's key order


def test_prepare_for_model_refuses_what_hf_leaves_untruncated():
    ours = GPT2Tokenizer.from_pretrained("gpt2")
    hf = transformers.GPT2Tokenizer.from_pretrained(str(DATA))
    # HF logs an error and returns 10 tokens for max_length=3; we say why instead.
    assert len(hf.prepare_for_model(list(range(5)), list(range(5)), truncation="only_first", max_length=3).input_ids) == 10
    with pytest.raises(ValueError, match="only_first.*must remove 7 tokens.*has only 5"):
        ours.prepare_for_model(list(range(5)), list(range(5)), truncation="only_first", max_length=3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ours.prepare_for_model([50257])
    assert ours.truncate_sequences([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 3) == hf.truncate_sequences(
        [1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 3)


@pytest.mark.parametrize("legacy_format", [None, True, False])
def test_save_pretrained_legacy_format_writes_hfs_files(tmp_path, legacy_format):
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(DATA))
    ours = GPT2TokenizerFast.from_pretrained("gpt2")
    for tokenizer in (hf, ours):
        tokenizer.add_tokens(["<new>"])
    hf.save_pretrained(tmp_path / "hf", legacy_format=legacy_format)
    written = ours.save_pretrained(tmp_path / "ours", legacy_format=legacy_format)
    names = sorted(p.name for p in (tmp_path / "ours").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "hf").iterdir())
    assert sorted(Path(p).name for p in written) == names
    text = "a <new> tokenizer saved"
    for klass in (GPT2Tokenizer, GPT2TokenizerFast):  # each format loads back, in both classes and in HF
        assert klass.from_pretrained(tmp_path / "ours")(text).input_ids == hf(text).input_ids
    reference = (transformers.GPT2Tokenizer if legacy_format else transformers.GPT2TokenizerFast)
    assert reference.from_pretrained(str(tmp_path / "ours"))(text).input_ids == hf(text).input_ids


def test_slow_tokenizers_refuse_legacy_format_false(tmp_path):
    with pytest.raises(ValueError):
        transformers.GPT2Tokenizer.from_pretrained(str(DATA)).save_pretrained(tmp_path / "hf", legacy_format=False)
    with pytest.raises(ValueError, match="only fast tokenizers"):
        GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(tmp_path / "ours", legacy_format=False)
    assert not (tmp_path / "ours").exists()
    with pytest.raises(NotImplementedError, match="huggingface-cli upload"):
        GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(tmp_path / "ours", push_to_hub=True)


# a list or tuple given to encode / encode_plus as the text (issue 17): each HF class reads it its own way
SEQUENCE_ARGUMENTS = [
    (("Hello world", "x"), None),   # slow: two tokens ("Hello world" is none: unk); fast: (text, text_pair)
    (["Hello world", "x"], None),
    (("Hello", "\u0120world"), None),  # GPT-2's tokens for "Hello world"
    (["Hello"], None),
    (("a", "b", "c"), None),
    ([15496, 995], None),           # slow: ids
    (("Hello", "x"), "y"),          # slow: tokens, then the pair's text; fast: TypeError
    ([], None),
]


def _encoded(method, text, pair):
    try:
        out = method(text, pair)
    except Exception as err:  # noqa: BLE001 - the type is compared
        return err
    return _plain(out) if isinstance(out, dict) or hasattr(out, "keys") else out


@pytest.mark.parametrize("cls", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
@pytest.mark.parametrize(("text", "pair"), SEQUENCE_ARGUMENTS, ids=repr)
def test_a_list_or_tuple_as_the_text_is_read_as_hfs_class_of_that_name_reads_it(cls, text, pair):
    """HF 4.57: GPT2Tokenizer.encode reads a list/tuple of str as tokens (convert_tokens_to_ids: an unknown one
    is unk_token) and of int as ids; GPT2TokenizerFast hands it to the Rust encoder, which reads two str as
    (text, text_pair) and raises TypeError for anything else. Ours give the same ids, or an error of HF's type."""
    hf = getattr(transformers, cls.__name__).from_pretrained(str(DATA))
    ours = cls.from_pretrained("gpt2")
    for name in ("encode", "encode_plus"):
        theirs, mine = _encoded(getattr(hf, name), text, pair), _encoded(getattr(ours, name), text, pair)
        if isinstance(theirs, Exception):
            assert isinstance(mine, type(theirs)), f"{name}: HF raises {theirs!r}; ours gave {mine!r}"
        else:
            assert mine == theirs, name
    if text == ("Hello world", "x") and cls is GPT2Tokenizer:
        assert ours.encode(text) == [50256, 87]
    if text == ("Hello world", "x") and cls is GPT2TokenizerFast:
        assert ours.encode(text) == ours.encode("Hello world", "x") == [15496, 995, 87]


def _custom_fast_saved(tmp_path: Path) -> Path:
    """A custom vocabulary (all 256 single-byte tokens, a few merges, <|endoftext|>) saved by HF's *fast* class
    from vocab.json + merges.txt, so the directory holds tokenizer.json beside them."""
    from gpt2_multi.tokenization.bpe import bytes_to_unicode

    table = bytes_to_unicode()
    vocab = {table[b]: i for i, b in enumerate(range(256))}
    merges = [("h", "e"), (table[32], "t"), (table[32], "he"), ("l", "l"), ("ll", "o"), (table[10], table[10])]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    source = tmp_path / "source"
    source.mkdir()
    (source / "vocab.json").write_text(json.dumps(vocab))
    (source / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    hf = transformers.GPT2TokenizerFast(vocab_file=str(source / "vocab.json"), merges_file=str(source / "merges.txt"))
    hf.save_pretrained(tmp_path / "saved")
    return tmp_path / "saved"


@pytest.mark.parametrize("cls", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
def test_a_custom_vocabulary_saved_by_hfs_fast_class_encodes_as_hf(cls, tmp_path):
    """Issue 17: the files HF's GPT2TokenizerFast writes for a custom vocabulary (tokenizer.json included) load in
    both our classes and give HF's ids, for ASCII, unicode, spaces, newlines and the special token."""
    directory = _custom_fast_saved(tmp_path)
    assert (directory / "tokenizer.json").is_file()
    hf_fast = transformers.GPT2TokenizerFast.from_pretrained(str(directory))
    hf_slow = transformers.GPT2Tokenizer.from_pretrained(str(directory))
    ours = cls.from_pretrained(directory)
    texts = ["hello the hell", "  the  he\n\nhello\n", "caf\u00e9 \u00fcber \u65e5\u672c \U0001f600",
             "tab\there\r\n", "hello<|endoftext|> he", " ", "\n\n\n"]
    for text in texts:
        assert hf_fast.encode(text) == hf_slow.encode(text), text  # all bytes present: HF's classes agree
        assert ours.encode(text) == hf_fast.encode(text), text
        assert ours.decode(ours.encode(text)) == hf_fast.decode(hf_fast.encode(text)), text
    assert len(ours) == len(hf_fast)
