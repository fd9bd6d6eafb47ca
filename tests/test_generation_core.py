"""The framework-free generation core: prepare(), Settings, the seeded stream and the beam bookkeeping."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gpt2_multi.generation import PROCESSORS, BeamSearch, GenerationConfig, prepare, resolve_prompt, sampling
from gpt2_multi.validation import InputError
from tiny import tiny_config

CONFIG = tiny_config(pad_token_id=None, eos_token_id=7, bos_token_id=7)


def plan(ids, mask=None, config=CONFIG, **kwargs):
    kwargs.setdefault("max_new_tokens", 4)
    return prepare(config, None, kwargs, np.asarray(ids), None if mask is None else np.asarray(mask))


# ------------------------------------------------------------------------------------------ prepare
def test_mask_is_inferred_from_the_pad_id_when_it_is_not_an_eos_id():
    p = plan([[5, 5, 3, 4], [1, 2, 3, 4]], pad_token_id=5)
    np.testing.assert_array_equal(p.attention_mask, [[0, 0, 1, 1], [1, 1, 1, 1]])
    assert p.padded
    # pad == eos (the default when only eos is set): HF cannot infer a mask, all ones
    p = plan([[7, 7, 3, 4]])
    np.testing.assert_array_equal(p.attention_mask, [[1, 1, 1, 1]])
    assert not p.padded


def test_pad_defaults_to_the_first_eos_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="gpt2_multi.generation"):
        p = plan([[1, 2]], eos_token_id=[9, 8])
    assert p.config.pad_token_id == 9 and p.settings.pad == 9
    assert "Setting `pad_token_id` to `eos_token_id`:9" in caplog.text


@pytest.mark.parametrize("pad, eos, beams, fill", [
    (5, 7, 1, 5), (5, 7, 2, 5),
    (0, 7, 2, 7),      # HF 4.57 beam search: `pad or eos[0]` -- a pad id of 0 gives the eos id
    (None, 7, 2, 7),   # pad defaults to eos
    (0, None, 2, -1),  # no eos: HF fills with -1
    (None, None, 1, 0), (3, None, 2, 3),
])
def test_fill_token_is_hfs_rule(pad, eos, beams, fill):
    p = plan([[1, 2, 3]], pad_token_id=pad, eos_token_id=eos, num_beams=beams)
    assert p.settings.pad == fill


def test_expansion_is_repeat_interleave():
    p = plan([[1, 2], [3, 4]], do_sample=True, num_return_sequences=3)
    np.testing.assert_array_equal(p.input_ids[:, 0], [1, 1, 1, 3, 3, 3])
    assert p.rows == 6 and p.batch_size == 2 and p.settings.expand == 3
    p = plan([[1, 2], [3, 4]], num_beams=2)
    np.testing.assert_array_equal(p.input_ids[:, 0], [1, 1, 3, 3])
    assert p.settings.beam_candidates == 4


def test_settings_are_canonical_and_hashable():
    a = plan([[1, 2]], top_k=5, top_p=0.3, temperature=0.5).settings  # greedy: the sampling knobs cannot act
    b = plan([[1, 2]]).settings
    assert a == b and hash(a) == hash(b)
    assert a.processors == ()
    s = plan([[1, 2]], do_sample=True, top_k=5, top_p=0.3, temperature=0.5, repetition_penalty=1.2,
             no_repeat_ngram_size=2, min_new_tokens=2).settings
    assert s.processors == PROCESSORS  # every one active, in the one order
    assert plan([[1, 2]], do_sample=True, top_k=CONFIG.vocab_size).settings.top_k == 0  # k >= V filters nothing
    assert plan([[1, 2]], eos_token_id=5000).settings.eos == ()  # outside the vocabulary: never produced


def test_lengths():
    p = plan([[1, 2, 3]], max_new_tokens=None, max_length=10, min_length=5)
    assert (p.min_new, p.max_new, p.total_length) == (2, 7, 10)


@pytest.mark.parametrize("ids, mask, kwargs, error, match", [
    ([[1.0, 2.0]], None, {}, InputError, "integer token ids"),
    ([[1, 2000]], None, {}, InputError, "outside the vocabulary"),
    ([[-1, 2]], None, {}, InputError, "outside the vocabulary"),
    ([[[1, 2]]], None, {}, InputError, r"\(batch, prompt_length\)"),
    (np.zeros((1, 0), int), None, {}, InputError, r"\(batch, prompt_length\)"),
    ([[1, 2]], [[1, 1, 1]], {}, InputError, "attention_mask has shape"),
    ([[1, 2]], [[1, 2]], {}, InputError, "only 0 .padding. and 1"),
    ([[1, 2], [3, 4]], [[0, 0], [1, 1]], {}, InputError, "row 0 has no token"),
    ([[1, 2]], None, {"max_new_tokens": 63}, IndexError, "exceeds the model's n_positions=64"),  # HF: IndexError
    ([[1, 2]], None, {"max_new_tokens": None, "max_length": 2}, ValueError, "nothing to generate"),
    ([[1, 2]], None, {"bogus": 1}, TypeError, "bogus"),
    ([[1, 2]], None, {"num_beams": 2, "num_return_sequences": 3}, ValueError, "num_return_sequences"),
    ([[1, 2]], None, {"num_beams": 2, "early_stopping": "sometimes"}, ValueError, "early_stopping"),
    ([[5, 5]], None, {"pad_token_id": 5}, InputError, "only of pad_token_id"),
])
def test_bad_input_is_one_error_with_one_wording(ids, mask, kwargs, error, match):
    with pytest.raises(error, match=match):
        plan(ids, mask, **kwargs)


def test_prompt_names():
    assert resolve_prompt(None, [[1]]) == [[1]]
    with pytest.raises(TypeError, match="input_ids or as inputs, not both"):
        resolve_prompt([[1]], [[1]])
    with pytest.raises(InputError, match="needs input_ids"):
        resolve_prompt(None, None)


def test_seed_words():
    assert sampling.seed_words(5) == (5, 0)
    assert sampling.seed_words((3 << 32) | 9) == (9, 3)
    with pytest.raises(ValueError, match="seed"):
        sampling.seed_words(-1)
    with pytest.raises(TypeError, match="seed"):
        sampling.seed_words(1.5)
    p = prepare(CONFIG, None, {"do_sample": True, "max_new_tokens": 2}, np.array([[1]]), seed=2**40 + 1)
    assert p.seed == (1, 256) and p.settings.seeded
    assert not prepare(CONFIG, None, {"max_new_tokens": 2}, np.array([[1]]), seed=3).settings.seeded  # greedy


# ------------------------------------------------------------------------------------------ the stream
def _mix32_python(x: int) -> int:
    """lowbias32 on Python ints (arbitrary precision): an independent spelling of the spec."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) % 2**32
    x ^= x >> 15
    x = (x * 0x846CA68B) % 2**32
    return x ^ (x >> 16)


def test_mix32_equals_the_integer_spec():
    values = np.array([0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1, 0xDEADBEEF], dtype=np.uint64)
    assert [int(v) for v in sampling.mix32(values)] == [_mix32_python(int(v)) for v in values]
    assert int(sampling.mix32(np.uint64(0))) == 0  # lowbias32 fixes 0


def test_uniforms_follow_the_spec_and_are_uniform():
    u = sampling.uniforms(1234, 3, 4, 1000)
    key = _mix32_python(_mix32_python(1234) ^ _mix32_python((0 ^ (3 + sampling.STEP_SALT)) % 2**32))
    assert sampling.step_key(1234, 3) == key
    bits = _mix32_python(_mix32_python(2 * 1000 + 17) ^ key)
    assert u[2, 17] == np.float32(((bits >> 8) + 0.5) * 2.0**-24)
    assert u.dtype == np.float32 and 0 < u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert not np.array_equal(u, sampling.uniforms(1234, 4, 4, 1000))  # each step its own draw
    assert not np.array_equal(u, sampling.uniforms(1235, 3, 4, 1000))
    np.testing.assert_array_equal(u, sampling.uniforms(1234, 3, 4, 1000))


def test_gumbel_max_draws_from_the_softmax():
    logits = np.log(np.array([[0.5, 0.25, 0.15, 0.1, 0.0]], np.float32) + 1e-30).astype(np.float32)
    logits[0, 4] = -np.inf
    draws = np.array([sampling.reference_sample(np.repeat(logits, 50, 0), 99, step) for step in range(200)]).ravel()
    freq = np.bincount(draws, minlength=5) / draws.size
    np.testing.assert_allclose(freq[:4], [0.5, 0.25, 0.15, 0.1], atol=0.015)
    assert freq[4] == 0  # a -inf score is never drawn


def test_sampling_without_replacement_gives_distinct_indices():
    picked = sampling.reference_sample_without_replacement(np.zeros((3, 40), np.float32), 5, 0, 6)
    assert picked.shape == (3, 6) and all(len(set(row)) == 6 for row in picked.tolist())


# ------------------------------------------------------------------------------------------ beams
def test_beam_bookkeeping_by_hand():
    """Two beams, vocab 4, eos 3, one prompt; the HF semantics worked out on paper."""
    config = tiny_config(vocab_size=4, n_positions=16, eos_token_id=3, pad_token_id=0)
    p = prepare(config, None, {"num_beams": 2, "max_new_tokens": 3, "length_penalty": 1.0, "early_stopping": True},
                np.array([[1, 2]]))
    beams = BeamSearch(p, 4)
    assert beams.keep == 4
    np.testing.assert_array_equal(beams.running_scores, [[0.0, -1e9]])
    # step 1: candidates (flat beam * 4 + token), best first: eos from beam 0 (-0.1), token 1 (-0.5), token 2 (-1.0)
    rows = beams.step(np.array([[-0.1, -0.5, -1.0, -2.0]], np.float32), np.array([[3, 1, 2, 0]]))
    np.testing.assert_array_equal(rows, [0, 0])
    np.testing.assert_array_equal(beams.sequences(), [[1, 2, 1], [1, 2, 2]])
    np.testing.assert_allclose(beams.running_scores, [[-0.5, -1.0]])
    assert beams.finished_flag.tolist() == [[True, False]] and beams.finished_scores[0, 0] == np.float32(-0.1)
    assert not beams.done  # one hypothesis finished, early_stopping needs two
    # step 2: beam 1 ends with eos (-1.2, normalised -0.6); beam 0 goes on
    rows = beams.step(np.array([[-0.7, -1.2, -1.5, -3.0]], np.float32), np.array([[1, 7, 2, 6]]))
    np.testing.assert_array_equal(rows, [0, 0])
    assert beams.finished_flag.all() and beams.done  # early stopping: two finished
    sequences, scores, beam_indices = beams.finalize()
    np.testing.assert_array_equal(sequences, [[1, 2, 3]])  # trimmed to the longest returned hypothesis
    np.testing.assert_allclose(scores, [-0.1])
    np.testing.assert_array_equal(beam_indices, [[0]])
    np.testing.assert_array_equal(beams.finished[0, 1], [1, 2, 2, 3, 3])  # pad 0 is falsy: HF fills with eos


def test_beam_step_checks_its_input_shapes():
    p = prepare(CONFIG, None, {"num_beams": 2, "max_new_tokens": 2}, np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"takes \(1, 4\) candidates"):
        BeamSearch(p, CONFIG.vocab_size).step(np.zeros((1, 3)), np.zeros((1, 3), int))


def test_generation_config_rejects_bad_beam_settings():
    with pytest.raises(ValueError, match="length_penalty"):
        GenerationConfig(length_penalty="long")
