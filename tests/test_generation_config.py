"""GenerationConfig: HF's generation_config.json, defaults, validation and length arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpt2_multi import GPT2Config
from gpt2_multi.generation import GenerationConfig, position_ids_from_mask, reference_process_logits

from fixture_cases import checkpoint_dir


def test_reads_hf_generation_config():
    config = GenerationConfig.from_pretrained(checkpoint_dir("lm", "safetensors"))
    raw = json.loads((checkpoint_dir("lm", "safetensors") / "generation_config.json").read_text())
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (raw["bos_token_id"], raw["eos_token_id"], raw["pad_token_id"])
    # HF's documented defaults for everything else.
    assert (config.max_length, config.do_sample, config.num_beams, config.top_k, config.top_p) == (20, False, 1, 50, 1.0)


def test_for_model_falls_back_to_the_model_config(tmp_path):
    model_config = GPT2Config(eos_token_id=7, pad_token_id=3)
    config = GenerationConfig.for_model(model_config, tmp_path)
    assert (config.eos_token_id, config.pad_token_id) == (7, 3)


def test_round_trip_and_unknown_keys(tmp_path):
    config = GenerationConfig(max_new_tokens=5, do_sample=True, top_p=0.9, eos_token_id=[1, 2], custom="x")
    config.save_pretrained(tmp_path)
    again = GenerationConfig.from_pretrained(tmp_path)
    assert again == config and again.eos_token_ids == [1, 2] and again.custom == "x"
    with pytest.raises(TypeError, match="unexpected keyword argument\\(s\\): bogus"):
        config.copy(bogus=1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_beams": 0}, "num_beams must be an int >= 1"),
    ({"temperature": 0.0}, "temperature must be a positive number"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"repetition_penalty": 0}, "repetition_penalty must be a positive number"),
    ({"num_return_sequences": 3}, r"num_return_sequences \(3\) must be <= num_beams \(1\)"),
    ({"eos_token_id": -1}, "token ids must be non-negative ints"),
])
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**kwargs)


def test_length_arithmetic():
    assert GenerationConfig(max_length=20).new_tokens(5, 64) == (0, 15)
    assert GenerationConfig(max_length=20, max_new_tokens=4, min_new_tokens=2).new_tokens(5, 64) == (2, 4)
    assert GenerationConfig(min_length=8, max_new_tokens=10).new_tokens(5, 64) == (3, 10)
    with pytest.raises(ValueError, match="nothing to generate"):
        GenerationConfig(max_length=5).new_tokens(5, 64)
    with pytest.raises(ValueError, match="exceeds the model's n_positions=64"):
        GenerationConfig(max_new_tokens=60).new_tokens(5, 64)


def test_position_ids_from_left_padded_mask():
    mask = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(position_ids_from_mask(mask), [[1, 1, 0, 1], [0, 1, 2, 3]])


def test_reference_processors_by_hand():
    scores = np.array([[2.0, -1.0, 0.5, 3.0]], np.float32)
    ids = np.array([[0, 1]])
    out = reference_process_logits(scores, ids, GenerationConfig(repetition_penalty=2.0), 0, 0)
    np.testing.assert_allclose(out, [[1.0, -2.0, 0.5, 3.0]])
    out = reference_process_logits(scores, ids, GenerationConfig(do_sample=True, top_k=2), 0, 0)
    np.testing.assert_array_equal(np.isinf(out), [[False, True, True, False]])
    out = reference_process_logits(scores, np.array([[3, 0, 3]]), GenerationConfig(no_repeat_ngram_size=2), 0, 0)
    assert np.isneginf(out[0, 0]) and np.isfinite(out[0, 1:]).all()  # "3 0" was seen after "3"
    out = reference_process_logits(scores, ids, GenerationConfig(eos_token_id=3), 0, 2)
    assert np.isneginf(out[0, 3])
    # top-p 0.5 keeps the smallest set whose probability reaches 0.5: here the top token alone (p = 0.69).
    out = reference_process_logits(scores, ids, GenerationConfig(do_sample=True, top_k=0, top_p=0.5), 0, 0)
    np.testing.assert_array_equal(np.isfinite(out), [[False, False, False, True]])
