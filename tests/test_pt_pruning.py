"""Head pruning (PyTorch, deprecated as in HF): the same numbers as HF's pruned model, saved and loaded pruned,
refused where it cannot work (a StaticCache, TensorFlow and Flax)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpt2_multi import GPT2Config  # noqa: E402
from gpt2_multi.config import ConfigError  # noqa: E402
from gpt2_multi.pt import GPT2LMHeadModel, StaticCache  # noqa: E402

CONFIG = dict(vocab_size=96, n_positions=32, n_embd=32, n_layer=3, n_head=4)
PRUNE = {0: [1], 2: [0, 3]}


def _model(**extra):
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**CONFIG, **extra)).eval()


def _ids(batch=2, length=7, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, CONFIG["vocab_size"], (batch, length)))


def test_pruning_removes_the_heads_weights_and_keeps_the_others_numbers():
    model = _model()
    ids = _ids()
    # A head's contribution is its slice of c_proj's rows; zeroing it must equal pruning it.
    with torch.no_grad():
        masked = model(ids, head_mask=torch.tensor([[1.0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]])).logits
    with pytest.warns(FutureWarning, match="deprecated"):
        model.prune_heads(PRUNE)
    attn = model.transformer.h[2].attn
    assert attn.num_heads == 2 and attn.c_attn.weight.shape == (32, 3 * 16) and attn.c_proj.weight.shape == (16, 32)
    assert model.config.pruned_heads == {0: [1], 2: [0, 3]}
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    np.testing.assert_allclose(out.logits.numpy(), masked.numpy(), atol=1e-5)
    assert [a.shape[1] for a in out.attentions] == [3, 4, 2]
    with pytest.warns(FutureWarning):
        model.prune_heads({0: [1, 2]})  # head 1 is already gone: only head 2 goes
    assert model.transformer.h[0].attn.num_heads == 2 and model.config.pruned_heads[0] == [1, 2]


def test_a_pruned_model_decodes_and_round_trips(tmp_path):
    model = _model()
    with pytest.warns(FutureWarning):
        model.prune_heads(PRUNE)
    ids = _ids(1, 5)
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :3], use_cache=True)
        step = model(ids[:, 3:], past_key_values=first.past_key_values).logits
    np.testing.assert_allclose(step.numpy(), full[:, 3:].numpy(), atol=1e-5)
    greedy = model.generate(ids, max_new_tokens=4, do_sample=False)  # the dynamic cache, chosen for pruned models
    assert greedy.shape == (1, 9)
    with pytest.raises(ValueError, match="pruned"):
        model.generate(ids, max_new_tokens=2, cache_implementation="static")
    with pytest.raises(ValueError, match="StaticCache"):
        model(ids, past_key_values=StaticCache(model.config, max_cache_len=16), use_cache=True)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["pruned_heads"] == {"0": [1], "2": [0, 3]}
    again = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert again.config.pruned_heads == {0: [1], 2: [0, 3]}
    with torch.no_grad():
        np.testing.assert_array_equal(again(ids).logits.numpy(), full.numpy())


def test_bad_pruning_is_refused():
    with pytest.raises(ConfigError, match="layer 5"):
        GPT2Config(**CONFIG, pruned_heads={5: [0]})
    with pytest.raises(ConfigError, match="head 4"):
        GPT2Config(**CONFIG, pruned_heads={"0": [4]})
    with pytest.raises(ConfigError, match="all 4 heads"):
        GPT2Config(**CONFIG, pruned_heads={0: [0, 1, 2, 3]})
    model = _model()
    with pytest.warns(FutureWarning), pytest.raises(ConfigError, match="all 4 heads"):
        model.prune_heads({1: [0, 1, 2, 3]})
    assert model.transformer.h[1].attn.num_heads == 4  # nothing changed


def test_tensorflow_and_flax_refuse_pruned_configs():
    config = GPT2Config(**CONFIG, pruned_heads=PRUNE)
    pytest.importorskip("flax")
    from gpt2_multi.flax import FlaxGPT2LMHeadModel

    with pytest.raises(NotImplementedError, match="PyTorch only"):
        FlaxGPT2LMHeadModel(config)
    pytest.importorskip("tensorflow")
    from gpt2_multi.tf import TFGPT2LMHeadModel

    with pytest.raises(NotImplementedError, match="PyTorch only"):
        TFGPT2LMHeadModel(config)


def test_pruning_equals_hfs(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = _model()
    model.save_pretrained(tmp_path / "full")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "full", attn_implementation="eager").eval()
    with pytest.warns(FutureWarning):
        model.prune_heads(PRUNE)
    hf.prune_heads(PRUNE)
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    with torch.no_grad():
        ours, theirs = model(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits
    defined = mask.bool().numpy()  # a padding position attends to nothing: its row is undefined in both
    np.testing.assert_allclose(ours.numpy()[defined], theirs.numpy()[defined], atol=1e-5)
    theirs = theirs.numpy()[defined]
    model.save_pretrained(tmp_path / "ours")  # HF loads our pruned checkpoint pruned
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids, attention_mask=mask).logits.numpy()[defined], theirs, atol=1e-5)
    hf.save_pretrained(tmp_path / "hf")  # and we load HF's
    ours_again = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        np.testing.assert_allclose(ours_again(ids, attention_mask=mask).logits.numpy()[defined], theirs, atol=1e-5)
