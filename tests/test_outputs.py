"""The framework-free ModelOutput contract (every stack's outputs subclass it)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gpt2_multi.outputs import CausalLMOutputWithCrossAttentions, GPT2DoubleHeadsModelOutput


def test_attribute_key_and_index_access_skip_none_fields():
    logits, past = np.ones((1, 2, 3)), ((np.zeros(1), np.zeros(1)),)
    out = CausalLMOutputWithCrossAttentions(logits=logits, past_key_values=past)
    assert list(out.keys()) == ["logits", "past_key_values"]
    assert out.logits is logits and out["logits"] is logits and out[0] is logits and out[1] is past
    assert out.to_tuple() == (logits, past) and out[:1] == (logits,)
    assert out.loss is None
    with pytest.raises(KeyError):
        out["loss"]


def test_setting_fields_follows_hf():
    """HF: setting an attribute updates the dict view only for a key already there; item assignment adds one."""
    out = CausalLMOutputWithCrossAttentions(logits=1)
    out.logits = 2
    out.loss = 3
    assert out.to_tuple() == (2,) and out.loss == 3
    out["hidden_states"] = 4
    assert out.to_tuple() == (2, 4) and out.hidden_states == 4


def test_replace_returns_a_new_output_and_leaves_the_original():
    out = GPT2DoubleHeadsModelOutput(logits=1, mc_logits=2)
    new = out.replace(mc_logits=5, loss=0.5)
    assert type(new) is GPT2DoubleHeadsModelOutput
    assert new.to_tuple() == (0.5, 1, 5)  # HF's field order: loss, logits, mc_logits
    assert out.to_tuple() == (1, 2) and out.loss is None
    dropped = new.replace(loss=None)
    assert list(dropped.keys()) == ["logits", "mc_logits"]
    with pytest.raises(TypeError, match="no field.*scores"):
        out.replace(scores=1)


def test_pickle_round_trip_keeps_fields():
    out = CausalLMOutputWithCrossAttentions(loss=1.5, logits=np.arange(3))
    back = pickle.loads(pickle.dumps(out))
    assert type(back) is CausalLMOutputWithCrossAttentions and back.loss == 1.5
    np.testing.assert_array_equal(back.logits, np.arange(3))
