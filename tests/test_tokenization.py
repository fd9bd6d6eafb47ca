"""GPT2Tokenizer / GPT2TokenizerFast: golden ids, HF's call contract, special and added tokens, errors, files.

Expected values come from the golden cases (HF's GPT2TokenizerFast with the real vocabulary), from
HF's Rust ``tokenizers`` engine run on HF's own tokenizer.json, or from HF's documented behaviour.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tokenizers import AddedToken as RustAddedToken
from tokenizers import Tokenizer, pre_tokenizers

from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast
from gpt2_multi.tokenization import AddedToken, BatchEncoding, InvalidTokenIdError

FIXTURES = Path(__file__).parent / "fixtures" / "tokenizer"
CASES = [json.loads(line) for line in (FIXTURES / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line]
DATA = Path(__file__).resolve().parents[1] / "src" / "gpt2_multi" / "data" / "gpt2"
VOCAB = json.loads((DATA / "vocab.json").read_text(encoding="utf-8"))  # HF's vocab.json: token -> id
CLASSES = [GPT2Tokenizer, GPT2TokenizerFast]
EOT = "<|endoftext|>"
EOT_ID = 50256


def by_text(text: str) -> dict:
    return next(c for c in CASES if c["text"] == text)


_JSON = (DATA / "tokenizer.json").read_text(encoding="utf-8")


def reference(add_prefix_space: bool = False) -> Tokenizer:
    """HF's Rust engine on HF's tokenizer.json (what HF's GPT2TokenizerFast runs); a fresh one each call."""
    tok = Tokenizer.from_str(_JSON)
    if add_prefix_space:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    return tok


@pytest.fixture(scope="module")
def shared_ref() -> Tokenizer:
    return reference()


@pytest.fixture
def ref(shared_ref) -> Tokenizer:
    """The shared reference engine, reset after each test (truncation off, special tokens matched)."""
    yield shared_ref
    shared_ref.no_truncation()
    shared_ref.encode_special_tokens = False


@pytest.fixture(params=CLASSES, ids=["slow", "fast"])
def cls(request):
    return request.param


@pytest.fixture
def tok(cls):
    return cls.from_pretrained("gpt2")


@pytest.fixture
def padded(cls):
    t = cls.from_pretrained("gpt2")
    t.pad_token = t.eos_token
    return t


# ---------------------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("case", CASES, ids=[repr(c["text"][:24]) for c in CASES])
@pytest.mark.parametrize("klass", CLASSES, ids=["slow", "fast"])
def test_golden_case(klass, case):
    tok = klass.from_pretrained("gpt2")
    assert tok.encode(case["text"]) == case["ids"]
    assert tok(case["text"]).input_ids == case["ids"]
    assert tok(case["text"]).attention_mask == [1] * len(case["ids"])
    assert tok.tokenize(case["text"]) == case["tokens"]
    assert tok.convert_ids_to_tokens(case["ids"]) == case["tokens"]
    assert tok.convert_tokens_to_ids(case["tokens"]) == case["ids"]
    assert tok.decode(case["ids"]) == case["decoded"]
    assert tok.convert_tokens_to_string(case["tokens"]) == case["decoded"]


@pytest.mark.parametrize("klass", CLASSES, ids=["slow", "fast"])
def test_golden_cases_add_prefix_space(klass):
    tok = klass.from_pretrained("gpt2", add_prefix_space=True)
    for case in CASES:
        assert tok.encode(case["text"]) == case["ids_add_prefix_space"], case["text"]


def test_golden_batch_equals_single(tok):
    texts = [c["text"] for c in CASES]
    assert tok(texts).input_ids == [c["ids"] for c in CASES]
    assert tok.batch_decode([c["ids"] for c in CASES]) == [c["decoded"] for c in CASES]


# --------------------------------------------------------------------------------- defaults and names


def test_gpt2_defaults(tok):
    # HF's GPT-2 tokenizer: one special token for bos/eos/unk, no pad token, 1024 positions.
    assert tok.bos_token == tok.eos_token == tok.unk_token == EOT
    assert tok.bos_token_id == tok.eos_token_id == tok.unk_token_id == EOT_ID
    assert tok.pad_token is None and tok.pad_token_id is None
    assert tok.vocab_size == 50257 and len(tok) == 50257
    assert tok.model_max_length == 1024
    assert tok.padding_side == "right" and tok.truncation_side == "right"
    assert tok.add_prefix_space is False and tok.add_bos_token is False
    assert tok.clean_up_tokenization_spaces is False
    assert tok.all_special_tokens == [EOT] and tok.all_special_ids == [EOT_ID]
    assert tok.special_tokens_map == {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
    assert tok.model_input_names == ["input_ids", "attention_mask"]
    vocab = tok.get_vocab()
    assert len(vocab) == 50257 and vocab[EOT] == EOT_ID and vocab["Ġworld"] == 995
    assert tok.is_fast is (type(tok) is GPT2TokenizerFast)


@pytest.mark.parametrize(
    "name", ["openai-community/gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2", "openai-community/gpt2-xl"]
)
def test_builtin_names_share_the_vocabulary(cls, name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached: the package data must be used
    tok = cls.from_pretrained(name)
    assert tok.encode("Hello world") == by_text("Hello world")["ids"]
    assert len(tok) == 50257


def test_from_pretrained_reads_hf_files(cls, tmp_path):
    # A directory as HF wrote it (the shipped files are HF's), copied elsewhere.
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(DATA / name, tmp_path / name)
    tok = cls.from_pretrained(tmp_path, padding_side="left")
    assert tok.padding_side == "left" and tok.model_max_length == 1024
    assert tok.encode("text<|endoftext|>more text") == by_text("text<|endoftext|>more text")["ids"]


def test_slow_reads_tokenizer_json_alone(tmp_path, ref):
    shutil.copy(DATA / "tokenizer.json", tmp_path / "tokenizer.json")
    for klass in CLASSES:
        tok = klass.from_pretrained(tmp_path)
        text = "Reading only tokenizer.json <|endoftext|> works"
        assert tok.encode(text) == ref.encode(text).ids
        assert tok.model_max_length > 10**20  # no tokenizer_config.json: HF's "no limit"


def test_other_names_go_through_the_hub(cls, monkeypatch, tmp_path):
    import gpt2_multi.hub as hub

    saved = tmp_path / "saved"
    cls.from_pretrained("gpt2").save_pretrained(saved)
    calls = []

    def fake_resolve(name, **kwargs):
        calls.append(name)
        return saved

    monkeypatch.setattr(hub, "resolve", fake_resolve)
    tok = cls.from_pretrained("someone/my-gpt2")
    assert calls == ["someone/my-gpt2"]
    assert tok.encode("Hello world") == by_text("Hello world")["ids"]


def test_unknown_name_offline_raises_oserror(cls, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(OSError, match="no-such-user/no-such-model"):
        cls.from_pretrained("no-such-user/no-such-model")


def test_from_pretrained_bad_paths(cls, tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        cls.from_pretrained(tmp_path)  # an empty directory
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError):
        cls.from_pretrained(tmp_path / "file.txt")
    with pytest.raises(TypeError):
        cls.from_pretrained(123)


#: keywords HF user code passes: loader options (use_fast, verbose, revision, cache_dir), one HF's GPT-2 ignores
#: (do_lower_case) and one nobody knows
LOADER_KEYWORDS = {"use_fast": True, "verbose": False, "revision": "main", "cache_dir": "CACHE", "do_lower_case": True,
                   "not_a_keyword": 3}


def _only(mapping: dict, keys) -> dict:
    return {k: mapping[k] for k in keys if k in mapping}


@pytest.mark.parametrize("names", [[k] for k in LOADER_KEYWORDS] + [list(LOADER_KEYWORDS)],
                         ids=[*LOADER_KEYWORDS, "all"])
def test_init_kwargs_and_saved_config_are_hfs(cls, tmp_path, names):
    """Issue 17, against HF 4.57 itself: from ``from_pretrained(dir, **kwargs)``, the same keys land in
    ``init_kwargs`` (use_fast, verbose and unknown keywords: yes; the fetch options revision and cache_dir: no),
    the same ones are written to tokenizer_config.json, and they come back when the saved files are loaded."""
    transformers = pytest.importorskip("transformers")
    hf_cls = getattr(transformers, cls.__name__)
    kwargs = {k: str(tmp_path / "cache") if LOADER_KEYWORDS[k] == "CACHE" else LOADER_KEYWORDS[k] for k in names}
    ours, theirs = cls.from_pretrained(str(DATA), **kwargs), hf_cls.from_pretrained(str(DATA), **kwargs)
    assert _only(ours.init_kwargs, LOADER_KEYWORDS) == _only(theirs.init_kwargs, LOADER_KEYWORDS)
    assert ours.verbose == theirs.verbose
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    saved = {who: json.loads((tmp_path / who / "tokenizer_config.json").read_text()) for who in ("ours", "theirs")}
    assert _only(saved["ours"], LOADER_KEYWORDS) == _only(saved["theirs"], LOADER_KEYWORDS)
    assert set(saved["ours"]) == set(saved["theirs"])
    again, hf_again = cls.from_pretrained(str(tmp_path / "ours")), hf_cls.from_pretrained(str(tmp_path / "theirs"))
    assert _only(again.init_kwargs, LOADER_KEYWORDS) == _only(hf_again.init_kwargs, LOADER_KEYWORDS)
    assert again.verbose == hf_again.verbose


def test_constructor_keeps_every_keyword_as_hf_does(cls, tmp_path):
    """HF's constructor consumes no loader option: given there (not to from_pretrained), revision= is kept."""
    transformers = pytest.importorskip("transformers")
    files = (str(DATA / "vocab.json"), str(DATA / "merges.txt"))
    kwargs = {"revision": "main", "cache_dir": str(tmp_path), "verbose": True}
    ours, theirs = cls(*files, **kwargs), getattr(transformers, cls.__name__)(*files, **kwargs)
    assert _only(ours.init_kwargs, kwargs) == _only(theirs.init_kwargs, kwargs) == kwargs


def test_keywords_that_change_nothing_are_named_once(cls, caplog):
    """Loader options pass silently; a keyword GPT-2's byte-level BPE has no use for is named in a warning, and
    changes nothing (HF's GPT-2 tokenizers ignore do_lower_case too)."""
    with caplog.at_level("WARNING", logger="gpt2_multi.tokenization.base"):
        cls.from_pretrained("gpt2", use_fast=True, revision="main", verbose=False)
    assert not caplog.records
    with caplog.at_level("WARNING", logger="gpt2_multi.tokenization.base"):
        tok = cls.from_pretrained("gpt2", do_lower_case=True)
    assert "do_lower_case change nothing" in caplog.text
    assert tok.encode("Hello") == [15496]


def test_constructor_needs_files(cls):
    with pytest.raises(TypeError, match="from_pretrained"):
        cls()
    tok = cls(str(DATA / "vocab.json"), str(DATA / "merges.txt"))
    assert tok.encode("Hello world") == by_text("Hello world")["ids"]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        cls(str(DATA / "missing.json"), str(DATA / "merges.txt"))


def test_fast_from_tokenizer_file():
    tok = GPT2TokenizerFast(tokenizer_file=str(DATA / "tokenizer.json"))
    assert tok.encode("Hello world") == by_text("Hello world")["ids"]


def test_bad_vocab_files(cls, tmp_path):
    (tmp_path / "vocab.json").write_text("{not json")
    shutil.copy(DATA / "merges.txt", tmp_path / "merges.txt")
    with pytest.raises(ValueError, match="not valid JSON"):
        cls(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    shutil.copy(DATA / "vocab.json", tmp_path / "vocab.json")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nthree parts here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3"):
        cls(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ zzzq\n", encoding="utf-8")
    with pytest.raises(ValueError, match="zzzq"):
        cls(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))


def test_tokenizer_json_of_another_model_is_refused(tmp_path):
    data = json.loads((DATA / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["type"] = "WordPiece"
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="WordPiece"):
        GPT2TokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))


# ------------------------------------------------------------------------------------- the call contract


def test_padding_right_and_left(padded):
    a, b = by_text("Hello world")["ids"], by_text("Hello, my dog is cute")["ids"]
    out = padded(["Hello world", "Hello, my dog is cute"], padding=True)
    assert isinstance(out, BatchEncoding)
    pad = [EOT_ID] * (len(b) - len(a))
    assert out.input_ids == [a + pad, b]
    assert out.attention_mask == [[1] * len(a) + [0] * len(pad), [1] * len(b)]
    out = padded(["Hello world", "Hello, my dog is cute"], padding="longest", padding_side="left")
    assert out["input_ids"] == [pad + a, b]
    assert out["attention_mask"] == [[0] * len(pad) + [1] * len(a), [1] * len(b)]
    padded.padding_side = "left"
    assert padded(["Hello world", "Hello, my dog is cute"], padding=True).input_ids == [pad + a, b]


def test_padding_max_length_and_multiple(padded):
    a = by_text("Hello world")["ids"]
    assert padded("Hello world", padding="max_length", max_length=5).input_ids == a + [EOT_ID] * 3
    assert padded("Hello world", padding=True, pad_to_multiple_of=8).input_ids == a + [EOT_ID] * 6
    assert padded("Hello world", padding=True).input_ids == a  # one sequence: nothing to pad to
    assert padded("Hello world", padding=False).input_ids == a
    out = padded("Hello world", padding="max_length")  # max_length defaults to model_max_length
    assert len(out.input_ids) == 1024 and sum(out.attention_mask) == len(a)


def test_padding_without_pad_token_raises(tok):
    with pytest.raises(ValueError, match="pad_token") as err:
        tok(["Hello world", "a"], padding=True)
    assert "add_special_tokens({'pad_token': '[PAD]'})" in str(err.value)
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == EOT_ID
    assert tok(["Hello world", "a"], padding=True).attention_mask[1][-1] == 0


@pytest.mark.parametrize(
    "lengths,max_length", [((10, 10), 15), ((3, 20), 15), ((20, 3), 15), ((20, 30), 15), ((9, 8), 15), ((16, 2), 15), ((5, 5), 3)]
)
@pytest.mark.parametrize("side", ["right", "left"])
def test_pair_truncation_longest_first_matches_hf_engine(tok, ref, lengths, max_length, side):
    first, second = " a" * lengths[0], " b" * lengths[1]
    engine = ref
    engine.enable_truncation(max_length, strategy="longest_first", direction=side)
    expected = engine.encode(first, second)
    tok.truncation_side = side
    out = tok(first, second, truncation=True, max_length=max_length, return_token_type_ids=True)
    assert out.input_ids == expected.ids
    assert out.token_type_ids == expected.type_ids


@pytest.mark.parametrize("strategy", ["only_first", "only_second"])
def test_pair_truncation_only_one_matches_hf_engine(tok, ref, strategy):
    first, second = " a b c d e f g h i j", " k l m n o p q"
    engine = ref
    engine.enable_truncation(12, strategy=strategy)
    assert tok(first, second, truncation=strategy, max_length=12).input_ids == engine.encode(first, second).ids


def test_truncation_rules(tok):
    ids = by_text("Hello, my dog is cute")["ids"]
    assert tok("Hello, my dog is cute", truncation=True, max_length=3).input_ids == ids[:3]
    assert tok("Hello, my dog is cute", max_length=3).input_ids == ids[:3]  # HF: max_length alone truncates
    tok.truncation_side = "left"
    assert tok("Hello, my dog is cute", truncation=True, max_length=3).input_ids == ids[-3:]
    tok.truncation_side = "right"
    long = "word " * 2000
    assert len(tok(long, truncation=True).input_ids) == 1024  # model_max_length
    assert len(tok(long).input_ids) > 1024  # no truncation unless asked
    with pytest.raises(ValueError, match="first sequence has only"):
        tok("a b", " c d e f g h i j", truncation="only_first", max_length=5)
    with pytest.raises(ValueError, match="text_pair"):
        tok("a b c d e f g", truncation="only_second", max_length=3)
    with pytest.raises(ValueError, match="multiple"):
        tok.pad_token = tok.eos_token
        tok("a", padding=True, truncation=True, max_length=10, pad_to_multiple_of=8)


def test_pairs_in_a_batch(padded, ref):
    engine = ref
    expected = [e.ids for e in engine.encode_batch([("a b c", "d e"), ("f", "g h i j")])]
    out = padded([("a b c", "d e"), ("f", "g h i j")])
    assert out.input_ids == expected
    assert padded(["a b c", "f"], ["d e", "g h i j"]).input_ids == expected
    out = padded([("a b c", "d e"), ("f", "g h i j")], padding=True, return_special_tokens_mask=True, return_length=True)
    width = max(map(len, expected))
    assert out.length == [width, width]
    assert out.special_tokens_mask == [[0] * len(e) + [1] * (width - len(e)) for e in expected]


@pytest.mark.parametrize("tensor_type", ["np", "pt", "tf", "jax"])
def test_return_tensors(padded, tensor_type):
    module = {"np": "numpy", "pt": "torch", "tf": "tensorflow", "jax": "jax"}[tensor_type]
    pytest.importorskip(module)
    a, b = by_text("Hello world")["ids"], by_text("Hello, my dog is cute")["ids"]
    out = padded(["Hello world", "Hello, my dog is cute"], padding=True, return_tensors=tensor_type)
    ids = np.asarray(out["input_ids"])
    assert ids.shape == (2, len(b))
    assert ids.tolist() == [a + [EOT_ID] * (len(b) - len(a)), b]
    single = padded("Hello world", return_tensors=tensor_type)
    assert np.asarray(single.input_ids).tolist() == [a]  # a batch axis is added
    assert np.asarray(single.attention_mask).tolist() == [[1, 1]]
    expected_dtype = {"np": "int64", "pt": "torch.int64", "tf": "int32", "jax": "int32"}[tensor_type]
    dtype = out.input_ids.dtype
    assert str(getattr(dtype, "name", dtype)) == expected_dtype
    assert np.asarray(padded.encode("Hello world", return_tensors=tensor_type)).tolist() == [a]
    assert padded.decode(out.input_ids[1]) == "Hello, my dog is cute"
    assert padded.batch_decode(out.input_ids, skip_special_tokens=True) == ["Hello world", "Hello, my dog is cute"]


def test_return_tensors_errors(tok, monkeypatch):
    with pytest.raises(ValueError, match="different lengths"):
        tok(["Hello world", "a"], return_tensors="np")
    with pytest.raises(ValueError, match="return_tensors"):
        tok("a", return_tensors="mlx")
    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    with pytest.raises(ImportError, match="PyTorch"):
        tok("a", return_tensors="pt")


def test_batch_encoding_access(tok):
    out = tok(["Hello world", "a"])
    assert out.input_ids is out["input_ids"]
    assert set(out.keys()) == {"input_ids", "attention_mask"}
    if tok.is_fast:  # HF's fast tokenizers: a row's Encoding
        assert out[0].ids == by_text("Hello world")["ids"] and out[0].tokens == ["Hello", "Ġworld"]
    else:  # HF's slow ones raise KeyError; a dict of the row's fields here
        assert out[0] == {"input_ids": by_text("Hello world")["ids"], "attention_mask": [1, 1]}
    assert out[0:1] == {"input_ids": [by_text("Hello world")["ids"]], "attention_mask": [[1, 1]]}
    with pytest.raises(AttributeError, match="token_type_ids"):
        _ = out.token_type_ids
    with pytest.raises(KeyError, match="labels"):
        _ = out["labels"]
    again = pickle.loads(pickle.dumps(out))
    assert dict(again) == dict(out)
    torch = pytest.importorskip("torch")
    moved = tok("Hello world", return_tensors="pt").to("cpu")
    assert isinstance(moved.input_ids, torch.Tensor)


def test_return_options(tok):
    out = tok("Hello world", return_attention_mask=False, return_token_type_ids=True, return_length=True)
    assert out.input_ids == by_text("Hello world")["ids"]
    assert "attention_mask" not in out
    assert out.token_type_ids == [0, 0]
    assert out.length == [2]
    assert tok(["", "Hello world"]).input_ids == [[], by_text("Hello world")["ids"]]
    assert tok([]).input_ids == []


def test_offsets_mapping_fast(ref):
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    text = "Hello world 😀 <|endoftext|> ok"
    out = tok(text, return_offsets_mapping=True)
    expected = ref.encode(text)
    assert out.input_ids == expected.ids
    assert out.offset_mapping == [tuple(o) for o in expected.offsets]
    assert text[slice(*out.offset_mapping[1])] == " world"


def test_offsets_mapping_slow_is_not_available():
    with pytest.raises(NotImplementedError, match="GPT2TokenizerFast"):
        GPT2Tokenizer.from_pretrained("gpt2")("Hello", return_offsets_mapping=True)


def test_is_split_into_words(cls):
    words = ["Hello", "world", " spaced", "", "<|endoftext|>x"]
    engine = reference(add_prefix_space=True)
    expected = engine.encode(words, is_pretokenized=True).ids
    tok = cls.from_pretrained("gpt2", add_prefix_space=True)
    assert tok(words, is_split_into_words=True).input_ids == expected
    assert tok([words, ["a"]], is_split_into_words=True).input_ids == [expected, engine.encode(["a"], is_pretokenized=True).ids]
    assert tok.encode(words, is_split_into_words=True) == expected


def test_is_split_into_words_fast_needs_add_prefix_space():
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    with pytest.raises(ValueError, match="add_prefix_space=True"):
        tok(["Hello", "world"], is_split_into_words=True)
    # The slow tokenizer, like HF's, adds the space itself.
    slow = GPT2Tokenizer.from_pretrained("gpt2")
    assert slow(["Hello", "world"], is_split_into_words=True).input_ids == reference(True).encode(
        ["Hello", "world"], is_pretokenized=True
    ).ids


def test_add_bos_token(cls):
    tok = cls.from_pretrained("gpt2", add_bos_token=True)
    ids = by_text("Hello world")["ids"]
    assert tok.encode("Hello world") == [EOT_ID] + ids
    assert tok.encode("Hello world", add_special_tokens=False) == ids
    out = tok("Hello world", "Hello world", return_special_tokens_mask=True, return_token_type_ids=True)
    assert out.input_ids == [EOT_ID] + ids + [EOT_ID] + ids
    assert out.special_tokens_mask == [1, 0, 0, 1, 0, 0]
    assert out.token_type_ids == [0, 0, 0, 1, 1, 1]
    assert tok("Hello world", truncation=True, max_length=2).input_ids == [EOT_ID, ids[0]]


def test_split_special_tokens(cls, ref):
    tok = cls.from_pretrained("gpt2")
    text = "a<|endoftext|>b"
    assert tok(text).input_ids == ref.encode(text).ids
    ref.encode_special_tokens = True
    assert tok(text, split_special_tokens=True).input_ids == ref.encode(text).ids
    assert EOT_ID not in tok(text, split_special_tokens=True).input_ids


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [123, None, 1.5, b"bytes", {"a": 1}])
def test_non_str_input_raises_type_error(tok, bad):
    with pytest.raises((TypeError, ValueError), match=type(bad).__name__ if bad is not None else "text"):
        tok(bad)
    with pytest.raises(TypeError, match=type(bad).__name__):
        tok.encode(bad)


def test_bad_batch_items_and_args(tok):
    with pytest.raises(TypeError, match=r"text\[1\].*int"):
        tok(["ok", 5])
    assert tok([["a", "b"]]).input_ids == [[VOCAB["a"], VOCAB["b"]]]  # a batch of one (text, text_pair) pair, as in HF
    with pytest.raises(TypeError, match="is_split_into_words"):
        tok([["a", "b", "c"]])
    with pytest.raises(ValueError, match="same length"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="padding"):
        tok("a", padding="most")
    with pytest.raises(ValueError, match="truncation"):
        tok("a", truncation="middle")
    with pytest.raises(ValueError, match="max_length"):
        tok("a", max_length=-1)
    with pytest.raises(TypeError):
        tok("a", not_an_argument=True)
    with pytest.raises(TypeError, match="str"):
        tok.tokenize(5)
    with pytest.raises(ValueError, match="padding_side"):
        tok.padding_side = "middle"


def test_lone_surrogate_is_refused(tok):
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("ok \ud800 no")


def test_decode_bad_ids(tok):
    with pytest.raises(InvalidTokenIdError, match="50257") as err:
        tok.decode([15496, 50257])
    assert isinstance(err.value, IndexError) and isinstance(err.value, ValueError)
    assert "50256" in str(err.value)  # names the valid range
    with pytest.raises(IndexError, match="-1"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="float"):
        tok.decode([1.5])
    with pytest.raises(TypeError, match="batch_decode"):
        tok.decode([[1, 2]])
    with pytest.raises(TypeError, match="str"):
        tok.decode("Hello")
    with pytest.raises(IndexError, match="99999"):
        tok.convert_ids_to_tokens([99999])


def test_decode_invalid_utf8_gives_replacement_character(tok):
    case = by_text("emoji 😀🎉👍🏽 family 👨\u200d👩\u200d👧\u200d👦")
    half = case["ids"][case["tokens"].index("ĠðŁĺ")]  # " " and the first 3 of 😀's 4 bytes
    assert tok.decode([half]) == (b" " + "😀".encode()[:3]).decode("utf-8", "replace")
    assert "\ufffd" in tok.decode([half])
    assert tok.decode(case["ids"]) == case["text"]


def test_decode_options(tok):
    ids = tok.encode("Hello , world ! I 'm here .<|endoftext|>")
    assert tok.decode(ids) == "Hello , world ! I 'm here .<|endoftext|>"
    assert tok.decode(ids, skip_special_tokens=True) == "Hello , world ! I 'm here ."
    assert tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True) == "Hello, world! I'm here."
    assert tok.decode(EOT_ID) == EOT
    assert tok.decode(np.array(by_text("Hello world")["ids"])) == "Hello world"
    assert tok.decode([]) == ""
    assert tok.convert_ids_to_tokens(995) == "Ġworld"
    assert tok.convert_tokens_to_ids("not-a-token-in-gpt2") == EOT_ID  # unknown -> unk, like HF


def test_long_inputs_stay_fast(cls, ref):
    tok = cls.from_pretrained("gpt2")
    texts = ["a" * 200_000, "ab1." * 50_000, "\n" * 100_000]
    if cls is GPT2TokenizerFast:
        texts.append("\n" * 1_000_000)  # tiktoken's regex overflows its stack here: the fallback must take over
    for text in texts:
        start = time.perf_counter()
        ids = tok.encode(text)
        assert time.perf_counter() - start < 30  # quadratic BPE would take hours
        assert tok.decode(ids) == text
    assert tok.encode("\n" * 100_001) == [628] * 50_000 + [198]  # 628 is "ĊĊ", 198 "Ċ" (golden "\n\n\n")
    text = "a" * 5000 + "b" * 3000 + "ab" * 2000  # one long word through the heap merge
    assert tok.encode(text) == ref.encode(text).ids


# ------------------------------------------------------------------------------ special and added tokens


def test_add_special_tokens_pad(cls):
    ref = reference()  # a fresh engine: this test adds a token to it
    tok = cls.from_pretrained("gpt2")
    assert tok.add_special_tokens({"pad_token": "[PAD]"}) == 1
    assert len(tok) == 50258 and tok.vocab_size == 50257
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == 50257
    ref.add_special_tokens(["[PAD]"])
    text = "x[PAD]y [PAD] z"
    assert tok.encode(text) == ref.encode(text).ids
    assert tok.decode(tok.encode(text), skip_special_tokens=True) == "xy  z"
    assert tok.add_special_tokens({"pad_token": "[PAD]"}) == 0
    with pytest.raises(ValueError, match="not_a_token_name"):
        tok.add_special_tokens({"not_a_token_name": "x"})


def test_add_tokens_are_never_split(cls):
    engine = reference()
    tok = cls.from_pretrained("gpt2")
    new = ["<new>", "hello", "über", AddedToken("<m>", lstrip=True, rstrip=True), AddedToken("xyz", single_word=True)]
    assert tok.add_tokens(new) == 5
    engine.add_tokens(
        ["<new>", "hello", "über", RustAddedToken("<m>", lstrip=True, rstrip=True), RustAddedToken("xyz", single_word=True)]
    )
    assert len(tok) == engine.get_vocab_size(with_added_tokens=True) == 50257 + 4
    for text in ["say hello<new>world", "a  <m>  b", "axyz xyz b_xyz xyzé éxyz xyz", "überall über", "<new><new>"]:
        assert tok.encode(text) == engine.encode(text, add_special_tokens=False).ids, text
    assert tok.decode(tok.encode("say über <new>")) == "say über <new>"
    assert tok.convert_tokens_to_ids("<new>") == 50257 and tok.convert_ids_to_tokens(50257) == "<new>"
    assert tok.get_vocab()["<new>"] == 50257
    assert tok.added_tokens_encoder["hello"] == VOCAB["hello"]  # kept its id in the base vocabulary
    assert tok.add_tokens([""]) == 0  # HF skips the empty string
    with pytest.raises(ValueError, match="empty"):  # an AddedToken of nothing is still refused
        AddedToken("")


def test_add_tokens_with_add_prefix_space(cls):
    engine = reference(add_prefix_space=True)
    engine.add_tokens(["<new>"])
    tok = cls.from_pretrained("gpt2", add_prefix_space=True)
    tok.add_tokens("<new>")
    for text in ["a<new>b", "<new> x", "x <new>", "<new>"]:
        assert tok.encode(text) == engine.encode(text, add_special_tokens=False).ids


def test_special_token_setters(tok):
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == EOT_ID
    tok.pad_token_id = 0
    assert tok.pad_token == next(t for t, i in VOCAB.items() if i == 0)
    tok.pad_token = "[NOT-IN-VOCAB]"  # HF: assigning does not add; the id is the unk token's
    assert tok.pad_token_id == EOT_ID and len(tok) == 50257
    tok.pad_token = None
    assert tok.pad_token_id is None
    with pytest.raises(TypeError, match="int"):
        tok.pad_token = 5
    tok.add_special_tokens({"additional_special_tokens": ["<a>", "<b>"]})
    assert tok.additional_special_tokens == ["<a>", "<b>"]
    assert tok.all_special_tokens == [EOT, "<a>", "<b>"]
    assert tok.all_special_ids == [EOT_ID, 50257, 50258]


# ---------------------------------------------------------------------------------------- saving


def test_save_and_reload(cls, tmp_path, ref):
    tok = cls.from_pretrained("gpt2", padding_side="left")
    tok.add_tokens(["<new>"])
    tok.add_special_tokens({"pad_token": "[PAD]"})
    files = {Path(f).name for f in tok.save_pretrained(tmp_path)}
    expected = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
    assert files == expected | ({"tokenizer.json"} if cls is GPT2TokenizerFast else set())
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == json.loads(
        (DATA / "vocab.json").read_text(encoding="utf-8")
    )
    assert (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines() == (DATA / "merges.txt").read_text(
        encoding="utf-8"
    ).splitlines()
    assert json.loads((tmp_path / "added_tokens.json").read_text()) == {"<new>": 50257, "[PAD]": 50258}
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["pad_token"] == "[PAD]" and config["model_max_length"] == 1024 and config["padding_side"] == "left"
    assert config["added_tokens_decoder"]["50258"]["special"] is True
    for klass in CLASSES:
        again = klass.from_pretrained(tmp_path)
        assert len(again) == 50259 and again.pad_token_id == 50258 and again.padding_side == "left"
        assert again.encode("a<new>b[PAD]c") == tok.encode("a<new>b[PAD]c") == [VOCAB["a"], 50257, VOCAB["b"], 50258, VOCAB["c"]]
    if cls is GPT2TokenizerFast:
        engine = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
        text = "a<new>b[PAD]c <|endoftext|> Hello world"
        assert engine.encode(text, add_special_tokens=False).ids == tok.encode(text)


def test_save_vocabulary(tok, tmp_path):
    vocab_file, merges_file = tok.save_vocabulary(tmp_path, filename_prefix="x")
    assert Path(vocab_file).name == "x-vocab.json" and Path(merges_file).name == "x-merges.txt"
    again = type(tok)(vocab_file, merges_file)
    assert again.encode("Hello world") == by_text("Hello world")["ids"]


# ------------------------------------------------------------------------------------ a tiny vocabulary


def tiny_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level vocabulary of the 256 bytes plus a few merges (not GPT-2's)."""
    table = json.loads((DATA / "vocab.json").read_text(encoding="utf-8"))
    byte_tokens = sorted((t for t in table if len(t) == 1), key=table.__getitem__)[:256]
    vocab = {t: i for i, t in enumerate(byte_tokens)}
    merges = [("l", "o"), ("Ġ", "lo"), ("Ġlo", "l"), ("a", "a"), ("aa", "aa")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab[EOT] = len(vocab)
    return vocab, merges


def test_tiny_vocabulary_uses_the_same_rules(tmp_path):
    vocab, merges = tiny_vocab()
    from tokenizers import decoders, models

    engine = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    engine.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    engine.decoder = decoders.ByteLevel()
    engine.add_special_tokens([EOT])
    texts = ["lol lol lolol", "aaaaaaa aaa", "x<|endoftext|>lol", "héllo wörld 😀"]
    for klass in CLASSES:
        tok = klass(vocab=vocab, merges=merges)
        for text in texts:
            assert tok.encode(text) == engine.encode(text).ids
            assert tok.decode(tok.encode(text)) == text
        tok.save_pretrained(tmp_path / klass.__name__)
        assert klass.from_pretrained(tmp_path / klass.__name__).encode(texts[0]) == engine.encode(texts[0]).ids


# ----------------------------------------------------------------------------------------- odds and ends


def test_importing_and_using_the_tokenizers_loads_no_framework():
    import subprocess

    code = (
        "import sys\n"
        "from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast\n"
        "GPT2TokenizerFast.from_pretrained('gpt2')(['a b', 'c'], return_tensors=None)\n"
        "GPT2Tokenizer.from_pretrained('gpt2').decode([15496])\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not loaded & {"torch", "tensorflow", "keras", "jax", "flax", "transformers"}


def test_pad_method_and_older_names(padded):
    a, b = by_text("Hello world")["ids"], by_text("Hello, my dog is cute")["ids"]
    features = [{"input_ids": a}, {"input_ids": b}]
    out = padded.pad(features, return_tensors="np")
    assert out.input_ids.tolist() == [a + [EOT_ID] * (len(b) - len(a)), b]
    assert out.attention_mask.tolist() == [[1] * len(a) + [0] * (len(b) - len(a)), [1] * len(b)]
    assert padded.pad({"input_ids": a}, padding="max_length", max_length=4).input_ids == a + [EOT_ID] * 2
    assert padded.encode_plus("Hello world").input_ids == a
    assert padded.batch_encode_plus(["Hello world", "Hello, my dog is cute"]).input_ids == [a, b]
    with pytest.raises(ValueError, match="input_ids"):
        padded.pad([{"labels": [1]}])


def test_constructor_options_are_checked(cls):
    with pytest.raises(ValueError, match="errors"):
        cls.from_pretrained("gpt2", errors="not-a-handler")
    with pytest.raises(ValueError, match="model_max_length"):
        cls.from_pretrained("gpt2", model_max_length=0)
    with pytest.raises(TypeError, match="add_prefix_space"):
        cls.from_pretrained("gpt2", add_prefix_space="yes")
    strict = cls.from_pretrained("gpt2", errors="strict")
    half = by_text("emoji 😀🎉👍🏽 family 👨\u200d👩\u200d👧\u200d👦")["ids"][2]
    with pytest.raises(UnicodeDecodeError):
        strict.decode([half])


def test_rust_added_token_objects_are_accepted(cls):
    tok = cls.from_pretrained("gpt2")
    assert tok.add_tokens([RustAddedToken("<r>", lstrip=True)]) == 1
    assert tok.added_tokens_decoder[50257].lstrip is True
    assert tok.encode("a <r>") == [VOCAB["a"], 50257]


def test_hf_exception_types_for_bad_text_and_the_empty_token(tok):
    """HF raises ValueError (GPT2Tokenizer) or TypeError (GPT2TokenizerFast) for a text of the wrong type: ours is
    both. A list or tuple is read as HF's class of the same name reads it (test_tokenization_hf.py), and a nested
    one, which neither reads, is refused the same way. HF skips an empty added token."""
    for bad in (3, None, [["a"]]):
        with pytest.raises(ValueError, match="encode takes"):
            tok.encode(bad)
        with pytest.raises(TypeError):
            tok.encode(bad)
    with pytest.raises(ValueError, match="text must be a str"):
        tok(3)
    size = len(tok)
    assert tok.add_tokens("") == 0 and tok.add_tokens(["", "<new>"]) == 1 and len(tok) == size + 1


def test_max_len_single_sentence_and_pair(cls):
    tok = cls.from_pretrained("gpt2")
    assert tok.max_len_single_sentence == tok.max_len_sentences_pair == 1024  # GPT-2 adds no special tokens
    bos = cls.from_pretrained("gpt2", add_bos_token=True)
    assert bos.max_len_single_sentence == 1023 and bos.max_len_sentences_pair == 1022


# ------------------------------------------------------------------------------ encode(text), the short way


def test_encode_short_way_equals_the_call(cls):
    # encode(text) with default arguments skips __call__'s argument handling: it must give what the call gives.
    texts = ["Hello world", "a<|endoftext|>b", "", " \n\n  x", "naïve 東京 😀"]
    for kwargs in ({}, {"add_bos_token": True}, {"split_special_tokens": True}, {"add_prefix_space": True}):
        tok = cls.from_pretrained("gpt2", **kwargs)
        for text in texts:
            for add in (True, False):
                assert tok.encode(text, add_special_tokens=add) == tok(text, add_special_tokens=add)["input_ids"]
    tok = cls.from_pretrained("gpt2", add_bos_token=True)
    assert tok.encode("Hello world") == [50256, 15496, 995]
    assert tok.encode("Hello world", add_special_tokens=False) == [15496, 995]
    assert cls.from_pretrained("gpt2", split_special_tokens=True).encode("a<|endoftext|>") == [64, 27, 91, 437, 1659, 5239, 91, 29]
    assert cls.from_pretrained("gpt2").encode("a<|endoftext|>") == [64, 50256]
    with pytest.raises(ValueError, match="lone surrogate '\\\\ud800' at position 2"):
        cls.from_pretrained("gpt2").encode("ab\ud800")
