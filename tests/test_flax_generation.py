"""Flax ``generate()``: processors vs the numpy reference, greedy / beam vs HF transformers, left padding,
eager vs jitted, eos padding, num_return_sequences, scores, seeds (the shared stream vs its numpy reference),
the in-graph beam search vs the shared ``BeamSearch``, streamers, errors.

HF transformers (PyTorch) is the oracle where installed; the tiny fixture LM (vocab 1000, n_positions 64).
"""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

pytestmark = pytest.mark.flax
pytest.importorskip("jax")
pytest.importorskip("flax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from gpt2_multi.config import GPT2Config  # noqa: E402
from gpt2_multi.flax import FlaxGPT2DoubleHeadsModel, FlaxGPT2LMHeadModel  # noqa: E402
from gpt2_multi.flax import generation as fgen  # noqa: E402
from gpt2_multi.generation import (  # noqa: E402
    BeamSearch,
    GenerationConfig,
    position_ids_from_mask,
    prepare,
    reference_process_logits,
    sampling,
)
from gpt2_multi.streamers import TextIteratorStreamer  # noqa: E402

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
    # the shared Settings of such a call (a vocabulary of v), as generate() gets them from prepare()
    s = prepare(GPT2Config(vocab_size=v, n_positions=64), gen, {"max_new_tokens": length - prompt_len},
                seqs[:, :prompt_len]).settings
    assert s.min_new == min_new
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


# ------------------------------------------------------------------------------------------ the seeded stream
@pytest.mark.parametrize("seed", [0, 1234, 2**40 + 7, 2**64 - 1])
def test_stream_uniforms_equal_the_shared_reference_exactly(seed):
    """The uint32 stream in jnp ops is bit-identical to gpt2_multi.generation.sampling, eagerly and jitted."""
    words = jnp.asarray(np.array(sampling.seed_words(seed), np.uint32))
    jitted = jax.jit(fgen.stream_uniforms, static_argnums=(2, 3))
    for step in (0, 1, 17, 40_000):
        expected = sampling.uniforms(seed, step, 3, 1001)
        np.testing.assert_array_equal(np.asarray(fgen.stream_uniforms(words, step, 3, 1001)), expected)
        np.testing.assert_array_equal(np.asarray(jitted(words, jnp.int32(step), 3, 1001)), expected)


SEED = 1234


def test_seeded_sampling_follows_the_shared_stream(model):
    """With seed=, each step's token is ``reference_sample`` (Gumbel-max on the shared stream) of the processed
    scores: those the run reports, and those the numpy processors give on the model's full forward. Eager == jit."""
    settings = dict(max_new_tokens=8, do_sample=True, top_k=50, top_p=0.9, temperature=0.8, repetition_penalty=1.3,
                    num_return_sequences=2)
    out = model.generate(IDS, attention_mask=MASK, seed=SEED, output_scores=True, **settings)
    eager = model.generate(IDS, attention_mask=MASK, seed=SEED, output_scores=True, jit=False, **settings)
    seqs = np.asarray(out.sequences)
    np.testing.assert_array_equal(np.asarray(eager.sequences), seqs)
    mask = np.repeat(MASK, 2, axis=0)
    t = IDS.shape[1]
    gen = GenerationConfig(pad_token_id=0, **settings)
    assert len(out.scores) == 8
    for step, scores in enumerate(out.scores):
        token = seqs[:, t + step]
        np.testing.assert_array_equal(sampling.reference_sample(np.asarray(scores), SEED, step), token)
        so_far = seqs[:, :t + step]
        ext = np.concatenate([mask, np.ones((mask.shape[0], step), np.int64)], axis=1)
        logits = np.asarray(model(so_far, attention_mask=ext, position_ids=position_ids_from_mask(ext)).logits[:, -1])
        expected = reference_process_logits(logits, so_far, gen, step, 0)
        np.testing.assert_array_equal(np.isfinite(np.asarray(scores)), np.isfinite(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(np.asarray(scores)[finite], expected[finite], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(sampling.reference_sample(expected, SEED, step), token)
    assert not np.array_equal(seqs[0, t:], seqs[1, t:])  # the two samples of one prompt differ


def test_seeded_beam_sampling_follows_the_shared_stream_and_beam_search(model):
    """Seeded beam sampling = Gumbel top-k on the shared stream (row = prompt, column = beam * V + token)
    followed by the shared BeamSearch, replayed in numpy on the run's own per-step log-probabilities."""
    free = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, **VARIED).sequences)
    kwargs = dict(max_new_tokens=8, do_sample=True, num_beams=3, num_return_sequences=2, top_k=30, temperature=0.9,
                  eos_token_id=[int(free[0, 8]), int(free[1, 9])], pad_token_id=3, length_penalty=1.5)
    out = model.generate(IDS, attention_mask=MASK, seed=SEED, output_scores=True, **kwargs)
    eager = model.generate(IDS, attention_mask=MASK, seed=SEED, output_scores=True, jit=False, **kwargs)
    np.testing.assert_array_equal(np.asarray(eager.sequences), np.asarray(out.sequences))
    np.testing.assert_allclose(np.asarray(eager.sequences_scores), np.asarray(out.sequences_scores), rtol=1e-6)

    plan = prepare(model.config, model.generation_config, kwargs, IDS, MASK, seed=SEED)
    s, v = plan.settings, model.config.vocab_size
    beams = BeamSearch(plan, v)
    for step, log_probs in enumerate(out.scores):
        total = (np.asarray(log_probs).reshape(plan.batch_size, s.num_beams, v) + beams.running_scores[..., None])
        total = total.reshape(plan.batch_size, -1)
        index = sampling.reference_sample_without_replacement(total, SEED, step, s.beam_candidates)
        beams.step(np.take_along_axis(total, index, axis=1), index)
    assert beams.done
    sequences, scores, _ = beams.finalize()
    ours = np.asarray(out.sequences)
    np.testing.assert_array_equal(ours[:, :sequences.shape[1]], sequences)
    assert (ours[:, sequences.shape[1]:] == s.pad).all()
    np.testing.assert_allclose(np.asarray(out.sequences_scores), scores, rtol=1e-6)
    unseeded = np.asarray(model.generate(IDS, attention_mask=MASK, prng_key=SEED, **kwargs).sequences)
    assert not np.array_equal(unseeded, ours)  # prng_key= is jax.random's own stream, another draw


# ------------------------------------------------------------------------------------------ in-graph beam search
@pytest.mark.parametrize("early_stopping", [True, False, "never"])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_in_graph_beam_step_equals_shared_beam_search(early_stopping, length_penalty):
    """The jitted beam bookkeeping against gpt2_multi.generation.BeamSearch on random log-probabilities: the same
    candidates each step give the same running / finished sequences, flags, reorder rows and stop, the same
    running scores and finished scores to the last bit but one."""
    rng = np.random.default_rng(int(length_penalty * 10) + {True: 0, False: 1, "never": 2}[early_stopping])
    b, k, v, t, max_new, eos = 3, 3, 11, 4, 7, [2, 5]
    ids = rng.integers(6, v, size=(b, t))
    plan = prepare(GPT2Config(vocab_size=v, n_positions=64), None,
                   dict(num_beams=k, num_return_sequences=2, max_new_tokens=max_new, eos_token_id=eos, pad_token_id=1,
                        early_stopping=early_stopping, length_penalty=length_penalty), ids)
    s = plan.settings
    beams = BeamSearch(plan, v)
    _, _, st = fgen._beam_init(jnp.asarray(plan.input_ids), jnp.asarray(plan.attention_mask), jax.random.PRNGKey(0), v, s)
    ended_early = False
    for step in range(max_new):
        logits = rng.normal(size=(b * k, v)) * 2
        logits[:, eos] += rng.uniform(0, 3, size=(b * k, len(eos)))  # eos often among the best candidates
        log_probs = (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(st["running_scores"]), beams.running_scores)
        total = (log_probs.reshape(b, k, v) + beams.running_scores[..., None]).reshape(b, k * v)
        index = np.argsort(-total, axis=1, kind="stable")[:, :s.beam_candidates]
        candidates = np.take_along_axis(total, index, axis=1)
        rows = beams.step(candidates, index)
        st, our_rows = fgen._jitted_beam_step(st, jnp.asarray(candidates), jnp.asarray(index, jnp.int32), v, t, s)
        np.testing.assert_array_equal(np.asarray(our_rows), rows)
        np.testing.assert_array_equal(np.asarray(st["running"]), beams.running)
        np.testing.assert_array_equal(np.asarray(st["running_scores"]), beams.running_scores)
        np.testing.assert_array_equal(np.asarray(st["finished_seqs"]), beams.finished)
        # scores divided by the length penalty: XLA's float32 division on CPU is not correctly rounded (1 ulp)
        np.testing.assert_allclose(np.asarray(st["beam_scores"]), beams.finished_scores, rtol=3e-7, atol=0)
        np.testing.assert_array_equal(np.asarray(st["is_finished"]), beams.finished_flag)
        assert bool(st["done"]) == beams.done
        ended_early |= bool(beams.finished_flag.any()) and step + 1 < max_new
        if beams.done:
            break
    assert ended_early  # hypotheses ended with an eos, not only at the last position
    sequences, scores, _ = beams.finalize()
    ours = fgen._make_output(st, s, t, b)
    np.testing.assert_array_equal(np.asarray(ours.sequences)[:, :sequences.shape[1]], sequences)
    assert (np.asarray(ours.sequences)[:, sequences.shape[1]:] == s.pad).all()
    np.testing.assert_allclose(np.asarray(ours.sequences_scores), scores, rtol=3e-7, atol=0)


# ------------------------------------------------------------------------------------------ prompt, mask, keywords
def test_attention_mask_inferred_from_pad_token_as_hf(model, hf_lm):
    """No attention_mask: the pad id (0 here) in the prompt marks the padding, HF's rule (via prepare)."""
    torch = pytest.importorskip("torch")
    inferred = np.asarray(model.generate(IDS, max_new_tokens=10, pad_token_id=0, **VARIED).sequences)
    explicit = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, pad_token_id=0, **VARIED).sequences)
    np.testing.assert_array_equal(inferred, explicit)
    with torch.no_grad():
        ref = hf_lm.generate(torch.tensor(IDS), max_new_tokens=10, do_sample=False, pad_token_id=0, **VARIED).numpy()
    assert_same_tokens(inferred, ref, 0)


def test_prompt_as_inputs_and_seed_or_prng_key(model):
    expected = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=2).sequences)
    np.testing.assert_array_equal(np.asarray(model.generate(inputs=IDS, attention_mask=MASK, max_new_tokens=2).sequences),
                                  expected)
    with pytest.raises(TypeError, match="input_ids or as inputs, not both"):
        model.generate(IDS, inputs=IDS, max_new_tokens=2)
    with pytest.raises(TypeError, match="not both"):
        model.generate(IDS, max_new_tokens=2, do_sample=True, seed=1, prng_key=1)
    with pytest.raises(ValueError, match="seed"):
        model.generate(IDS, max_new_tokens=2, do_sample=True, seed=-1)


# ------------------------------------------------------------------------------------------ streamers
class Recorder:
    """A streamer that keeps what generate hands it."""

    def __init__(self):
        self.puts, self.ended = [], 0

    def put(self, value):
        self.puts.append(np.array(value))

    def end(self):
        self.ended += 1


class TorchRecorder(Recorder):
    def put(self, value):
        self.puts.append(value.numpy().copy())


@pytest.mark.parametrize("jit", [True, False])
def test_streamer_gets_the_prompt_then_each_token_as_hf(model, hf_lm, jit):
    """HF's order: the prompt (N, T), one (N,) array per step (a finished row gets the pad), then end()."""
    torch = pytest.importorskip("torch")
    free = np.asarray(model.generate(IDS, attention_mask=MASK, max_new_tokens=10, **VARIED).sequences)
    kwargs = dict(max_new_tokens=10, eos_token_id=int(free[0, 9]), pad_token_id=7, **VARIED)  # row 0 ends early
    ours, theirs = Recorder(), TorchRecorder()
    out = model.generate(IDS, attention_mask=MASK, streamer=ours, jit=jit, **kwargs)
    with torch.no_grad():
        hf_lm.generate(torch.tensor(IDS), attention_mask=torch.tensor(MASK), streamer=theirs, do_sample=False, **kwargs)
    assert ours.ended == theirs.ended == 1
    steps = len(theirs.puts) - 1
    assert 1 < steps < 10  # HF stopped once both rows had the eos: so must the stream
    assert [p.shape for p in ours.puts] == [p.shape for p in theirs.puts] == [(2, 6)] + [(2,)] * steps
    for a, b in zip(ours.puts, theirs.puts):
        np.testing.assert_array_equal(a, b)
    streamed = np.concatenate([ours.puts[0]] + [p[:, None] for p in ours.puts[1:]], axis=1)
    np.testing.assert_array_equal(streamed, np.asarray(out.sequences)[:, :6 + steps])
    assert (np.asarray(out.sequences)[:, 6 + steps:] == 7).all()


@pytest.mark.parametrize("jit", [True, False])
def test_streamer_with_sampled_return_sequences(model, jit):
    rec = Recorder()
    out = model.generate(IDS, attention_mask=MASK, max_new_tokens=4, streamer=rec, jit=jit, do_sample=True, seed=3,
                         num_return_sequences=2)
    assert [p.shape for p in rec.puts] == [(4, 6)] + [(4,)] * 4 and rec.ended == 1
    np.testing.assert_array_equal(np.concatenate([rec.puts[0]] + [p[:, None] for p in rec.puts[1:]], axis=1),
                                  np.asarray(out.sequences))


@pytest.mark.parametrize("jit", [True, False])
def test_streamer_ends_after_an_error(model, jit):
    """The streamer's own exception comes out of generate (not XLA's wrapper of it), and end() is still called."""
    class Failing(Recorder):
        def put(self, value):
            super().put(value)
            if len(self.puts) == 3:
                raise RuntimeError("stop")

    streamer = Failing()
    with pytest.raises(RuntimeError, match="stop"):
        model.generate(IDS, attention_mask=MASK, max_new_tokens=5, streamer=streamer, jit=jit)
    assert streamer.ended == 1 and len(streamer.puts) == 3
    assert not fgen._STREAMS


class _Words:
    """A stand-in tokenizer: each id is a word."""

    def decode(self, ids, **kwargs):
        return "".join(f"{i} " for i in ids)


def test_text_iterator_streamer_reads_the_compiled_loop_from_another_thread(model):
    streamer = TextIteratorStreamer(_Words(), skip_prompt=True, timeout=120)
    result = {}

    def run():
        result["out"] = model.generate(IDS[1:], max_new_tokens=6, streamer=streamer, **VARIED)

    thread = threading.Thread(target=run)
    thread.start()
    pieces = list(streamer)
    thread.join()
    assert "".join(pieces) == _Words().decode(np.asarray(result["out"].sequences)[0, 6:].tolist())


def test_streamer_callback_is_compiled_in_only_with_a_streamer(model):
    """The program keyed by Settings alone has no host callback: decoding without a streamer is not slowed."""
    plan = prepare(model.config, model.generation_config, dict(max_new_tokens=3), IDS, MASK)
    args = (model.params, jnp.asarray(plan.input_ids), jnp.asarray(plan.attention_mask), jax.random.PRNGKey(0))
    plain = fgen._compiled(model, plan.settings).lower(*args).as_text().lower()
    streaming = fgen._compiled(model, plan.settings, True).lower(*args, jnp.int32(0)).as_text().lower()
    assert "callback" not in plain and "callback" in streaming
