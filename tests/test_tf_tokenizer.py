"""TFGPT2Tokenizer: exact GPT-2 ids in-graph (fixtures, random Unicode, the pre-tokenizer rule), API, export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_text")
pytest.importorskip("keras")
regex = pytest.importorskip("regex")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpt2_multi.tf.tokenizer import (  # noqa: E402
    GPT2_PRETOKENIZE_PATTERN,
    LETTER_RANGES,
    NUMBER_RANGES,
    WHITESPACE_RANGES,
    TFGPT2Tokenizer,
    _class_intervals,
    bytes_to_unicode,
)

VOCAB_DIR = Path(__file__).resolve().parent.parent / "src" / "gpt2_multi" / "data" / "gpt2"
CASES = [
    json.loads(line) for line in (Path(__file__).parent / "fixtures" / "tokenizer" / "cases.jsonl").open()
]
GPT2_RE = regex.compile(GPT2_PRETOKENIZE_PATTERN)
SPECIAL = "<|endoftext|>"
HYPOTHESIS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def tokenizer():
    return TFGPT2Tokenizer.from_pretrained(VOCAB_DIR)


@pytest.fixture(scope="module")
def encode(tokenizer):
    """The layer inside a tf.function with a batch signature (one trace for every batch)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def run(texts):
        return tokenizer(texts)["input_ids"]

    return lambda texts: run(tf.constant([t.encode("utf-8") for t in texts])).to_list()


@pytest.fixture(scope="module")
def pretokenize(tokenizer):
    run = tf.function(tokenizer.pretokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    return lambda texts: [
        [t.decode("utf-8") for t in row] for row in run(tf.constant([t.encode() for t in texts])).to_list()
    ]


@pytest.fixture(scope="module")
def round_trip(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def run(texts):
        return tokenizer.detokenize(tokenizer(texts)["input_ids"])

    return run


@pytest.fixture(scope="module")
def hf_fast():
    """HF's GPT2TokenizerFast (the reference of the golden ids; test-only oracle, never imported by the package)."""
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2TokenizerFast.from_pretrained(str(VOCAB_DIR))


@pytest.fixture(scope="module")
def ours():
    """This package's pure-Python GPT2Tokenizer: every tokenizer of the package must give the same ids."""
    tokenization = pytest.importorskip("gpt2_multi.tokenization")
    return tokenization.GPT2Tokenizer.from_pretrained(VOCAB_DIR)


@pytest.fixture(scope="module")
def tiktoken_encoding():
    pytest.importorskip("tiktoken")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from tf_tokenizer import tiktoken_reference
    finally:
        sys.path.pop(0)
    return tiktoken_reference(VOCAB_DIR)


# ------------------------------------------------------------------------------------------------
# Exact ids
# ------------------------------------------------------------------------------------------------


def test_golden_fixture_ids(encode):
    got = encode([c["text"] for c in CASES])
    for case, ids in zip(CASES, got):
        assert ids == case["ids"], repr(case["text"])


def test_golden_fixture_ids_add_prefix_space():
    tok = TFGPT2Tokenizer.from_pretrained(VOCAB_DIR, add_prefix_space=True)
    got = tok(tf.constant([c["text"] for c in CASES]))["input_ids"].to_list()
    for case, ids in zip(CASES, got):
        assert ids == case["ids_add_prefix_space"], repr(case["text"])


# Hand-picked corners of GPT-2's whitespace rule, contractions, overlapping merges, NUL and long words.
CORNERS = [
    "\n\n",
    "a\n\nb",
    "a  b",
    "a   's",
    "  'sx",
    "x \n y",
    "  \nabc",
    " \n abc",
    "\u3000\u3000a",
    "\xa0 a",
    "a \u3000",
    "\t\t\t",
    "end   ",
    "\r\n\r\n  x",
    "a\x00b",
    "\x00 \x00  \x00",
    "!\x00?",
    "  \x00",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    "        if x:",
    "1111111111111",
    "don't'll'VE 'd",
    "x<|endoftext|>  <|endoftext|>\n",
    "<|endoftext|><|endoftext|>",
    "<|endoftext",
    "a\x1cb\x1d c\x85d\u2028e",
    "\U00018db3\U00033382'df",  # letters for Python's regex module, not for HF's fast tokenizer / tiktoken
    "ab\U000107bbcd 1\U00011de02",
    "\u0301\u0301x",
    "🏳️‍🌈 ok",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and ＦＵＬＬ",
    "𐵀𐵁 10 ١٢٣",
    "",
]


def test_corner_cases_match_hf_and_ours(encode, hf_fast, ours):
    got = encode(CORNERS)
    for text, ids in zip(CORNERS, got):
        assert ids == hf_fast.encode(text), repr(text)
        assert ids == ours.encode(text), repr(text)


def test_stdlib_sources_match_tiktoken(encode, tiktoken_encoding):
    import sysconfig

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("[a-c]*.py"))[:12]
    texts = [f.read_text(encoding="utf-8") for f in files]
    got = encode(texts)
    for path, text, ids in zip(files, texts, got):
        assert ids == tiktoken_encoding.encode(text, allowed_special="all"), path.name


@HYPOTHESIS
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=40), min_size=1, max_size=16))
def test_random_unicode_matches_hf_and_ours(encode, hf_fast, ours, texts):
    for text, ids in zip(texts, encode(texts)):
        assert ids == hf_fast.encode(text), repr(text)
        assert ids == ours.encode(text), repr(text)


@HYPOTHESIS
@given(st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=40), min_size=1, max_size=16))
def test_detokenize_inverts_tokenize(round_trip, texts):
    assert [b.decode("utf-8") for b in round_trip(tf.constant([t.encode() for t in texts])).numpy()] == texts


def test_detokenize_dense_and_1d(tokenizer):
    assert tokenizer.detokenize(tf.constant([15496, 995])).numpy() == b"Hello world"
    assert tokenizer.detokenize([[15496, 995], [50256, 198]]).numpy().tolist() == [
        b"Hello world",
        b"<|endoftext|>\n",
    ]
    with pytest.raises(TypeError, match="integer"):
        tokenizer.detokenize(tf.constant([1.0]))


# Whitespace-heavy alphabet: every kind of whitespace regex's \s has (and \x1c-\x1f, which it does not),
# letters incl. contraction letters, digits, apostrophes, punctuation, emoji, combining marks.
WS_HEAVY = st.text(
    st.sampled_from(
        list("   \n\n\t\r\x0b\x0c")
        + ["\xa0", "\u3000", "\x85", "\u2028", "\u2009", "\x1c", "\x1f"]
        + list("'''sStTrevmld")
        + list("ab7٣")
        + list("!.,-_#")
        + ["😀", "\u0301", "é", "中"]
    ),
    max_size=30,
)


@HYPOTHESIS
@given(st.lists(WS_HEAVY, min_size=1, max_size=24))
def test_pretokenizer_equals_gpt2_regex(pretokenize, texts):
    for text, pieces in zip(texts, pretokenize(texts)):
        assert pieces == GPT2_RE.findall(text), repr(text)


def test_stand_in_classes_cover_every_code_point():
    """The interval table behind the non-ASCII route classes every code point like the range tables."""
    import numpy as np

    starts, stand_ins = _class_intervals()
    code_points = np.arange(0x110000)
    got = np.asarray(stand_ins)[np.searchsorted(starts, code_points, side="right") - 1]
    expected = np.full(0x110000, ord("#"))
    for ranges, stand_in in ((WHITESPACE_RANGES, 0x0B), (LETTER_RANGES, ord("a")), (NUMBER_RANGES, ord("0"))):
        for first, last in ranges:
            expected[first : last + 1] = stand_in
    assert np.array_equal(got, expected)


def test_tables_against_python_regex_module():
    """Python's regex module (a newer Unicode) has the same whitespace and every letter/number of the tables;
    it only adds recently assigned code points (where HF's slow tokenizer then differs from the fast one)."""
    for ranges, pattern in ((WHITESPACE_RANGES, r"\s"), (LETTER_RANGES, r"\p{L}"), (NUMBER_RANGES, r"\p{N}")):
        members = {cp for first, last in ranges for cp in range(first, last + 1)}
        matcher = regex.compile(pattern).match
        matched = {cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and matcher(chr(cp))}
        assert members <= matched, pattern
        if pattern == r"\s":
            assert members == matched


# ------------------------------------------------------------------------------------------------
# Special tokens
# ------------------------------------------------------------------------------------------------


def test_special_token_is_one_id(encode):
    assert encode([SPECIAL, f"a{SPECIAL}b"]) == [[50256], [64, 50256, 65]]


def test_special_tokens_disabled_bpe_encodes_them(tiktoken_encoding):
    tok = TFGPT2Tokenizer.from_pretrained(VOCAB_DIR, special_tokens={})
    text = f"x {SPECIAL} y{SPECIAL}"
    assert tok(tf.constant([text]))["input_ids"].to_list() == [tiktoken_encoding.encode_ordinary(text)]
    assert 50256 not in tok(tf.constant([text]))["input_ids"].to_list()[0]


def test_special_token_led_by_whitespace_is_never_cut():
    # GPT-2's whitespace rule cuts pre-tokens, never a special token (HF's GPT2TokenizerFast and ours with
    # "\n\n<s>" added as a special token: [64, 50257, 65] and [87, 220, 220, 50257]).
    tok = TFGPT2Tokenizer.from_pretrained(VOCAB_DIR, special_tokens={SPECIAL: 50256, "\n\n<s>": 50257})
    out = tok(tf.constant(["a\n\n<s>b", "x  \n\n<s>", "\n\n\n<s> \n\n<s>\n"]))["input_ids"].to_list()
    assert out == [[64, 50257, 65], [87, 220, 220, 50257], [198, 50257, 220, 50257, 198]]


# ------------------------------------------------------------------------------------------------
# Outputs: ragged, padded, scalar
# ------------------------------------------------------------------------------------------------


def test_ragged_outputs_and_mask(tokenizer):
    out = tokenizer(tf.constant(["Hello world", "", "a b c d"]))
    assert isinstance(out["input_ids"], tf.RaggedTensor)
    assert out["input_ids"].dtype == tf.int32
    assert out["input_ids"].to_list() == [[15496, 995], [], [64, 275, 269, 288]]
    assert out["attention_mask"].to_list() == [[1, 1], [], [1, 1, 1, 1]]


def test_padded_outputs():
    tok = TFGPT2Tokenizer.from_pretrained(VOCAB_DIR, max_length=3, pad_token_id=50256)
    out = tok(tf.constant(["Hello world", "", "a b c d"]))
    assert out["input_ids"].shape == (3, 3)
    assert out["input_ids"].numpy().tolist() == [[15496, 995, 50256], [50256] * 3, [64, 275, 269]]
    assert out["attention_mask"].numpy().tolist() == [[1, 1, 0], [0, 0, 0], [1, 1, 1]]
    # The call's max_length overrides the constructor's.
    wide = tok(tf.constant(["Hello world"]), max_length=4)
    assert wide["input_ids"].numpy().tolist() == [[15496, 995, 50256, 50256]]


def test_max_length_without_pad_truncates_ragged(tokenizer):
    out = tokenizer(tf.constant(["a b c d", "a"]), max_length=2)
    assert out["input_ids"].to_list() == [[64, 275], [64]]


def test_scalar_and_python_inputs(tokenizer):
    assert tokenizer(tf.constant("Hello world"))["input_ids"].numpy().tolist() == [15496, 995]
    assert tokenizer("Hello world")["input_ids"].numpy().tolist() == [15496, 995]
    assert tokenizer(["Hello", " world"])["input_ids"].to_list() == [[15496], [995]]


def test_input_errors(tokenizer):
    with pytest.raises(TypeError, match="tf.string"):
        tokenizer(tf.constant([1, 2]))
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        tokenizer(tf.constant([["a"]]))
    with pytest.raises(ValueError, match="max_length"):
        tokenizer(tf.constant(["a"]), max_length=0)


def test_constructor_errors():
    base = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    with pytest.raises(ValueError, match="byte token"):
        TFGPT2Tokenizer({"a": 0}, [])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        TFGPT2Tokenizer(base, ["a b"])
    with pytest.raises(ValueError, match="two symbols"):
        TFGPT2Tokenizer(base, ["abc"])


def test_a_vocabulary_without_every_byte_is_refused(tmp_path):
    """TFGPT2Tokenizer needs all 256 single-byte tokens (BPE starts from them in the graph): a trimmed custom
    vocabulary, which HF's and our GPT2Tokenizer load (encoding a missing byte as unk_token), is refused here
    with a message naming the first missing byte (README, "Differences from HF, on purpose")."""
    table = bytes_to_unicode()
    vocab = {table[b]: i for i, b in enumerate(b for b in range(128) if chr(b).isalpha() or b == 32)}
    vocab[SPECIAL] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match="^vocab lacks the byte token '\u0100' \\(byte 0\\); every byte needs a token$"):
        TFGPT2Tokenizer.from_pretrained(tmp_path)
    from gpt2_multi import GPT2Tokenizer

    assert GPT2Tokenizer.from_pretrained(tmp_path).encode("a!") == [vocab["a"], vocab[SPECIAL]]


def test_tiny_vocab_merges_left_to_right():
    """A hand-made vocabulary: merges apply by rank, all non-overlapping occurrences, left to right."""
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    a = vocab["a"]
    vocab.update({"aa": 256, "aaa": 257, "ab": 258})
    tok = TFGPT2Tokenizer(vocab, ["a a", "aa a", "a b"])
    got = tok(tf.constant(["aaaa", "aaaaa", "aab", "aaab"]))["input_ids"].to_list()
    # aaaa -> (aa)(aa); aaaaa -> (aa)(aa)a -> (aa)(aaa); aab -> (aa)b; aaab -> (aa)ab -> (aaa)b
    assert got == [[256, 256], [256, 257], [256, vocab["b"]], [257, vocab["b"]]]
    assert tok(tf.constant(["aba"]))["input_ids"].to_list() == [[258, a]]


# ------------------------------------------------------------------------------------------------
# Graph use, export, config
# ------------------------------------------------------------------------------------------------


def test_tf_data_pipeline(tokenizer, encode):
    texts = ["Hello world", "\n\n  x = 1", "", "中文 😀 don't"]
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(lambda t: tokenizer(t)["input_ids"])
    got = [row for batch in dataset for row in batch.to_list()]
    assert got == encode(texts)


def test_keras_functional_model_and_keras_file(tmp_path):
    import keras

    tok = TFGPT2Tokenizer.from_pretrained(VOCAB_DIR, max_length=4, pad_token_id=50256)
    texts = keras.Input(shape=(), dtype="string")
    model = keras.Model(texts, tok(texts))
    out = model(tf.constant(["Hello world", "a b c d e"]))
    assert out["input_ids"].numpy().tolist() == [[15496, 995, 50256, 50256], [64, 275, 269, 288]]
    assert out["attention_mask"].numpy().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    model.save(tmp_path / "tok.keras")
    reloaded = keras.models.load_model(tmp_path / "tok.keras")
    again = reloaded(tf.constant(["Hello world", "a b c d e"]))
    assert again["input_ids"].numpy().tolist() == out["input_ids"].numpy().tolist()


def test_savedmodel_round_trip(tmp_path, encode):
    tok = TFGPT2Tokenizer.from_pretrained(VOCAB_DIR, max_length=8, pad_token_id=50256)
    module = tf.Module()
    module.tokenizer = tok
    module.serve = tf.function(
        lambda texts: tok(texts), input_signature=[tf.TensorSpec([None], tf.string, name="texts")]
    )
    tf.saved_model.save(module, str(tmp_path / "tok"))
    del module
    loaded = tf.saved_model.load(str(tmp_path / "tok"))
    texts = ["Hello world", "\n\n  x = 1", "中文 😀"]
    out = loaded.serve(tf.constant(texts))
    expected = [ids[:8] + [50256] * (8 - len(ids[:8])) for ids in encode(texts)]
    assert out["input_ids"].numpy().tolist() == expected
    assert out["attention_mask"].numpy().sum(axis=1).tolist() == [min(len(ids), 8) for ids in encode(texts)]


def test_get_config_from_config_round_trip(tokenizer):
    config = tokenizer.get_config()
    for key in ("vocab", "merges", "max_length", "pad_token_id"):
        assert key in config
    assert len(config["merges"]) == 50000 and config["vocab"]["<|endoftext|>"] == 50256
    json.dumps(config)  # serialisable
    config.update(max_length=5, pad_token_id=0, add_prefix_space=True)
    clone = TFGPT2Tokenizer.from_config(config)
    out = clone(tf.constant(["Hello world"]))
    assert out["input_ids"].numpy().tolist() == [[18435, 995, 0, 0, 0]]


def test_from_tokenizer_hf_slow_and_fast():
    transformers = pytest.importorskip("transformers")
    slow = transformers.GPT2Tokenizer.from_pretrained(str(VOCAB_DIR))
    fast = transformers.GPT2TokenizerFast.from_pretrained(str(VOCAB_DIR), add_prefix_space=True)
    text = ["Hello world<|endoftext|>again", "  spaced\n\n out"]
    from_slow = TFGPT2Tokenizer.from_tokenizer(slow)
    assert from_slow(tf.constant(text))["input_ids"].to_list() == [slow.encode(t) for t in text]
    from_fast = TFGPT2Tokenizer.from_tokenizer(fast)
    assert from_fast.add_prefix_space
    assert from_fast(tf.constant(text))["input_ids"].to_list() == [fast.encode(t) for t in text]


def test_from_tokenizer_ours():
    tokenization = pytest.importorskip("gpt2_multi.tokenization")
    text = ["Hello world<|endoftext|>again", "  spaced\n\n out"]
    for cls in (tokenization.GPT2Tokenizer, tokenization.GPT2TokenizerFast):
        source = cls.from_pretrained(VOCAB_DIR, add_prefix_space=True)
        tok = TFGPT2Tokenizer.from_tokenizer(source)
        assert tok.add_prefix_space
        assert tok(tf.constant(text))["input_ids"].to_list() == [source.encode(t) for t in text]


def test_from_pretrained_builtin_name_needs_no_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    tok = TFGPT2Tokenizer.from_pretrained("gpt2")
    assert tok(tf.constant(["Hello world"]))["input_ids"].to_list() == [[15496, 995]]
    with pytest.raises(OSError):
        TFGPT2Tokenizer.from_pretrained(tmp_path / "missing")


def test_from_pretrained_tokenizer_json_only(tmp_path):
    (tmp_path / "tokenizer.json").write_text(
        (VOCAB_DIR / "tokenizer.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    tok = TFGPT2Tokenizer.from_pretrained(tmp_path)
    assert tok(tf.constant(["Hello world\n\nx"]))["input_ids"].to_list() == [[15496, 995, 198, 198, 87]]


def test_import_pulls_no_other_framework():
    code = (
        "import sys\nimport gpt2_multi.tf.tokenizer\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not loaded & {"torch", "jax", "flax", "transformers", "keras_hub", "keras_nlp"}
