"""Flax ``generate()``: processors vs the numpy reference, greedy / beam vs HF transformers, left padding,
eager vs jitted, eos padding, num_return_sequences, scores, seeds, errors.

HF transformers (PyTorch) is the oracle where installed; the tiny fixture LM (vocab 1000, n_positions 64).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.flax
pytest.importorskip("jax")
pytest.importorskip("flax")

import jax  # noqa: E402

from gpt2_multi.flax import FlaxGPT2DoubleHeadsModel, FlaxGPT2LMHeadModel  # noqa: E402
from gpt2_multi.flax import generation as fgen  # noqa: E402
from gpt2_multi.generation import GenerationConfig, reference_process_logits  # noqa: E402

from fixture_cases import checkpoint_dir  # noqa: E402

# two prompts, the first left-padded
IDS = np.array([[0, 0, 5, 17, 300, 41], [11, 22, 33, 44, 55, 66]])
MASK = np.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
# settings that make the random fixture LM produce varied tokens
VARIED = dict(repetition_penalty=1.5, no_repeat_ngram_size=2)


@pytest.fixture(scope="module")
def lm_dir():
    return checkpoint_dir("lm", "safetensors")


@pytest.fixture(scope="module")
def model(lm_dir):
    return FlaxGPT2LMHeadModel.from_pretrained(lm_dir)


@pytest.fixture(scope="module")
def hf_lm(lm_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2LMHeadModel.from_pretrained(lm_dir).eval()


def hf_generate(hf_model, ids, mask, **kwargs):
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        out = hf_model.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), **kwargs)
    if isinstance(out, torch.Tensor):
        return out.numpy()
    return out


def assert_same_tokens(ours, hf, pad):
    """HF PyTorch crops at the longest row; we return the full length with padding after it."""
    ours = np.asarray(ours)
    assert ours.shape[0] == hf.shape[0]
    np.testing.assert_array_equal(ours[:, :hf.shape[1]], hf)
    assert (ours[:, hf.shape[1]:] == pad).all()


# ------------------------------------------------------------------------------------------ processors
@pytest.mark.parametrize("settings", [
    dict(repetition_penalty=1.7),
    dict(no_repeat_ngram_size=2),
    dict(no_repeat_ngram_size=3, repetition_penalty=0.8),
    dict(no_repeat_ngram_size=1),
    dict(min_new_tokens=5, eos_token_id=[3, 7]),
    dict(do_sample=True, temperature=0.7, top_k=10),
    dict(do_sample=True, top_p=0.8, top_k=0),
    dict(do_sample=True, temperature=1.3, top_k=20, top_p=0.5, repetition_penalty=1.2, no_repeat_ngram_size=2),
])
def test_processors_equal_reference(settings):
    rng = np.random.default_rng(0)
    n, v, length, prompt_len, cur = 3, 40, 16, 5, 9
    seqs = rng.integers(0, 8, size=(n, length)).astype(np.int32)  # few distinct tokens: repeated n-grams
    scores = rng.normal(size=(n, v)).astype(np.float32) * 3
    gen = GenerationConfig(**settings)
    min_new, _ = gen.new_tokens(prompt_len, 64)
    s = fgen._Settings(max_new=length - prompt_len, min_new=min_new, do_sample=gen.do_sample, num_beams=1,
                       num_return_sequences=1, temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p,
                       repetition_penalty=gen.repetition_penalty, no_repeat_ngram_size=gen.no_repeat_ngram_size,
                       eos=tuple(gen.eos_token_ids), pad=0, length_penalty=1.0, early_stopping=False, output_scores=False)
    expected = reference_process_logits(scores, seqs[:, :cur], gen, cur - prompt_len, min_new)
    eager = np.asarray(fgen.process_logits(scores, seqs, cur, prompt_len, s))
    traced = np.asarray(jax.jit(lambda a, q, c: fgen.process_logits(a, q, c, prompt_len, s))(scores, seqs, cur))
    assert np.isinf(expected).any() or gen.repetition_penalty != 1.0 or gen.temperature != 1.0
    np.testing.assert_allclose(eager, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(traced, expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------ greedy
@pytest.mark.parametrize("kwargs", [{}, VARIED])
def test_greedy_matches_hf_left_padded(model, hf_lm, kwargs):
    ours = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, **kwargs)
    ref = hf_generate(hf_lm, IDS, MASK, max_new_tokens=10, do_sample=False, pad_token_id=0, **kwargs)
    assert ours.sequences.shape == (2, 16)
    assert_same_tokens(ours.sequences, ref, 0)


def test_left_padded_batch_equals_each_prompt_alone(model):
    batch = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, **VARIED).sequences)
    alone0 = np.asarray(model.generate(IDS[:1, 2:], max_new_tokens=10, **VARIED).sequences)
    alone1 = np.asarray(model.generate(IDS[1:], max_new_tokens=10, **VARIED).sequences)
    np.testing.assert_array_equal(batch[0, 2:], alone0[0])
    np.testing.assert_array_equal(batch[1], alone1[0])
    assert len(set(batch[1, 6:].tolist())) > 3  # the test is not vacuous: varied tokens


@pytest.mark.parametrize("kwargs", [
    VARIED,
    dict(do_sample=True, top_k=20, temperature=0.9),
    dict(num_beams=3, **VARIED),
    dict(num_beams=2, num_return_sequences=2, eos_token_id=[174, 9]),
])
def test_eager_equals_jitted(model, kwargs):
    key = jax.random.PRNGKey(3)
    jitted = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, prng_key=key, output_scores=True, **kwargs)
    eager = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, prng_key=key, output_scores=True, jit=False, **kwargs)
    np.testing.assert_array_equal(np.asarray(jitted.sequences), np.asarray(eager.sequences))
    assert len(jitted.scores) == len(eager.scores)
    for a, b in zip(jitted.scores, eager.scores):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_double_heads_generate_uses_lm_logits():
    transformers = pytest.importorskip("transformers")
    path = checkpoint_dir("double", "safetensors")
    ours = FlaxGPT2DoubleHeadsModel.from_pretrained(path)
    hf = transformers.GPT2DoubleHeadsModel.from_pretrained(path).eval()
    out = ours.generate(IDS, attention_mask=MASK, max_new_tokens=10, **VARIED)
    ref = hf_generate(hf, IDS, MASK, max_new_tokens=10, do_sample=False, pad_token_id=0, **VARIED)
    assert_same_tokens(out.sequences, ref, 0)
    eager = ours.generate(IDS, attention_mask=MASK, max_new_tokens=10, jit=False, **VARIED)
    np.testing.assert_array_equal(np.asarray(eager.sequences), np.asarray(out.sequences))


# ------------------------------------------------------------------------------------------ eos and padding
def test_eos_then_padding_as_hf(model, hf_lm):
    free = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, **VARIED).sequences)
    eos = int(free[0, 9])  # a token row 0 generates early: row 0 stops there, row 1 goes on
    assert eos not in free[1, 6:9].tolist()
    ours = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, eos_token_id=eos, pad_token_id=7,
                                     **VARIED).sequences)
    np.testing.assert_array_equal(ours[0, :10], free[0, :10])
    assert (ours[0, 10:] == 7).all()
    ref = hf_generate(hf_lm, IDS, MASK, max_new_tokens=10, eos_token_id=eos, pad_token_id=7, do_sample=False, **VARIED)
    assert_same_tokens(ours, ref, 7)


def test_all_rows_finished_stops_early_and_pads(model):
    free = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, **VARIED).sequences)
    eos = [int(free[0, 7]), int(free[1, 7])]
    out = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, eos_token_id=eos, pad_token_id=5,
                         output_scores=True, **VARIED)
    seqs = np.asarray(out.sequences)
    assert seqs.shape == (2, 16)
    assert (seqs[:, 8:] == 5).all()
    assert len(out.scores) <= 2  # the loop stopped once both rows were done


def test_pad_defaults_to_eos_with_warning(model, caplog):
    with caplog.at_level("WARNING"):
        out = model.generate(IDS, attention_mask=MASK, max_new_tokens=3, eos_token_id=174, pad_token_id=None)
    assert "pad_token_id" in caplog.text
    seqs = np.asarray(out.sequences)
    assert seqs.shape == (2, 9)


def test_min_new_tokens_blocks_eos(model):
    free = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, **VARIED).sequences)
    eos = int(free[1, 6])  # the first token row 1 would generate
    out = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, min_new_tokens=3, eos_token_id=eos,
                                    **VARIED).sequences)
    assert eos not in out[1, 6:8].tolist()


# ------------------------------------------------------------------------------------------ beam search
@pytest.mark.parametrize("kwargs", [
    dict(num_beams=3, **VARIED),
    dict(num_beams=4, length_penalty=0.5, early_stopping=True, num_return_sequences=2, eos_token_id=[174, 9]),
    dict(num_beams=3, early_stopping="never", length_penalty=2.0, no_repeat_ngram_size=2),
    dict(num_beams=2, early_stopping=False, length_penalty=-1.0, repetition_penalty=1.3),
])
def test_beam_matches_hf(model, hf_lm, kwargs):
    free = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, **VARIED).sequences)
    if "eos_token_id" not in kwargs:  # an eos the beams can hit
        kwargs = dict(kwargs, eos_token_id=[int(free[0, 8]), int(free[1, 10])])
    ours = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, pad_token_id=3, output_scores=True, **kwargs)
    ref = hf_generate(hf_lm, IDS, MASK, max_new_tokens=10, do_sample=False, pad_token_id=3, output_scores=True,
                      return_dict_in_generate=True, **kwargs)
    assert_same_tokens(ours.sequences, ref.sequences.numpy(), 3)
    np.testing.assert_allclose(np.asarray(ours.sequences_scores), ref.sequences_scores.numpy(), rtol=1e-4, atol=1e-4)
    assert len(ours.scores) == len(ref.scores)
    for a, b in zip(ours.scores, ref.scores):
        finite = np.isfinite(b.numpy())
        np.testing.assert_array_equal(np.isfinite(np.asarray(a)), finite)
        np.testing.assert_allclose(np.asarray(a)[finite], b.numpy()[finite], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ sampling, scores
def test_num_return_sequences_interleaved_and_seeded(model):
    kw = dict(attention_mask=MASK, max_new_tokens=10, do_sample=True, num_return_sequences=3, top_k=0)
    a = np.asarray(model.generate(IDS, prng_key=jax.random.PRNGKey(1), **kw).sequences)
    b = np.asarray(model.generate(IDS, prng_key=jax.random.PRNGKey(1), **kw).sequences)
    c = np.asarray(model.generate(IDS, prng_key=2, **kw).sequences)
    assert a.shape == (6, 16)
    np.testing.assert_array_equal(a[:3, :6], np.repeat(IDS[:1], 3, axis=0))  # each prompt repeated in place
    np.testing.assert_array_equal(a[3:, :6], np.repeat(IDS[1:], 3, axis=0))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({tuple(r) for r in a[:, 6:].tolist()}) > 1


def test_sampled_tokens_have_finite_processed_scores(model):
    out = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, do_sample=True, top_k=5, top_p=0.9,
                         temperature=0.8, output_scores=True, return_dict_in_generate=True, prng_key=7)
    seqs = np.asarray(out.sequences)
    assert len(out.scores) == 10
    for step, scores in enumerate(out.scores):
        scores = np.asarray(scores)
        assert scores.shape == (2, 1000)
        assert (np.isfinite(scores).sum(-1) <= 5).all()  # top-k kept at most 5 tokens
        chosen = scores[np.arange(2), seqs[:, 6 + step]]
        assert np.isfinite(chosen).all()


def test_greedy_scores_match_hf(model, hf_lm):
    out = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, output_scores=True, return_dict_in_generate=True,
                         **VARIED)
    ref = hf_generate(hf_lm, IDS, MASK, max_new_tokens=10, do_sample=False, pad_token_id=0, output_scores=True,
                      return_dict_in_generate=True, **VARIED)
    assert len(out.scores) == len(ref.scores) == 10
    for ours, theirs in zip(out.scores, ref.scores):
        theirs = theirs.numpy()
        np.testing.assert_array_equal(np.isfinite(np.asarray(ours)), np.isfinite(theirs))
        finite = np.isfinite(theirs)
        np.testing.assert_allclose(np.asarray(ours)[finite], theirs[finite], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ config, compile cache, errors
def test_generation_config_json_is_read(lm_dir, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(lm_dir, target)
    data = json.loads((target / "generation_config.json").read_text())
    data.update(max_new_tokens=3, pad_token_id=9)
    (target / "generation_config.json").write_text(json.dumps(data))
    model = FlaxGPT2LMHeadModel.from_pretrained(target)
    assert model.generation_config.max_new_tokens == 3
    assert np.asarray(model.generate(IDS, attention_mask=MASK).sequences).shape == (2, 9)
    assert np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=2).sequences).shape == (2, 8)
    # max_new_tokens wins over max_length
    assert np.asarray(model.generate(IDS, attention_mask=MASK, max_length=30).sequences).shape == (2, 9)


def test_compiled_once_per_setting(model):
    model.generate(IDS, attention_mask=MASK, max_new_tokens=4)
    entries = len(fgen._COMPILED)
    fn = fgen._compiled(model, next(k[-1] for k in fgen._COMPILED if k[-1].max_new == 4 and k[-1].num_beams == 1
                                    and not k[-1].do_sample and k[-1].repetition_penalty == 1.0))
    size = fn._cache_size()
    model.generate(IDS[:, ::-1].copy(), attention_mask=MASK, max_new_tokens=4)
    assert len(fgen._COMPILED) == entries and fn._cache_size() == size


def test_errors(model):
    with pytest.raises(TypeError, match="bogus"):
        model.generate(IDS, max_new_tokens=2, bogus=1)
    with pytest.raises(ValueError, match="n_positions"):
        model.generate(IDS, max_new_tokens=60)
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate(IDS, max_new_tokens=2, num_return_sequences=2)
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate(IDS, max_new_tokens=2, num_beams=2, num_return_sequences=3, do_sample=True)
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(IDS, attention_mask=MASK[:, 1:], max_new_tokens=2)
    with pytest.raises(ValueError, match="vocab"):
        model.generate(IDS + 1000, max_new_tokens=2)
    with pytest.raises(ValueError, match="nothing to generate"):
        model.generate(IDS, max_length=4)


@pytest.mark.parametrize("flags", [
    dict(scale_attn_by_inverse_layer_idx=True, activation_function="relu"),
    dict(reorder_and_upcast_attn=True, scale_attn_weights=False),
    dict(tie_word_embeddings=False, activation_function="gelu"),
])
def test_decode_step_matches_model_for_config_flags(flags):
    """The compiled decode step re-lays out the cache: it must follow every attention flag as the model does."""
    from gpt2_multi.config import GPT2Config

    config = GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4, initializer_range=0.3,
                        pad_token_id=0, **flags)
    model = FlaxGPT2LMHeadModel(config, seed=1)
    ids, mask = IDS % 100, MASK
    kw = dict(attention_mask=mask, max_new_tokens=6, output_scores=True)
    jitted = model.generate(ids, **kw)
    eager = model.generate(ids, jit=False, **kw)
    np.testing.assert_array_equal(np.asarray(jitted.sequences), np.asarray(eager.sequences))
    for a, b in zip(jitted.scores, eager.scores):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_trace_is_hfs_name_for_jit(model, monkeypatch):
    """``trace=False`` (HF's Flax debugging switch) steps the model's own ``__call__`` in Python; ``trace=True``
    runs the compiled loop, which never calls it; both give the same tokens."""
    calls = []
    original = type(model).__call__

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "__call__", counting)
    traced = model.generate(IDS, attention_mask=MASK, max_new_tokens=4, trace=True, **VARIED)
    assert not calls
    python_loop = model.generate(IDS, attention_mask=MASK, max_new_tokens=4, trace=False, jit=True, **VARIED)
    assert len(calls) == 4  # the prompt, then one call per new token after the first
    np.testing.assert_array_equal(np.asarray(python_loop.sequences), np.asarray(traced.sequences))
