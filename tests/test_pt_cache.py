"""HF 4.57's cache objects in PyTorch (``gpt2_multi.pt.cache``): what a model returns, takes and updates.

HF's contract: with no cache given, ``past_key_values`` comes back as a ``DynamicCache``; a cache object passed
in is updated in place and returned; a legacy tuple passed in gives a tuple back; ``get_seq_length``, ``layers``,
``to_legacy_cache`` / ``from_legacy_cache``, ``reorder_cache``, and indexing / iteration as legacy pairs.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gpt2_multi import GPT2Config  # noqa: E402
from gpt2_multi.pt import Cache, DynamicCache, GPT2LMHeadModel, StaticCache  # noqa: E402

CONFIG = dict(vocab_size=97, n_positions=32, n_embd=16, n_layer=3, n_head=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**CONFIG)).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_no_cache_given_returns_a_dynamic_cache(model, ids):
    out = model(ids[:, :5])
    cache = out.past_key_values
    assert isinstance(cache, DynamicCache) and isinstance(cache, Cache)
    assert cache.get_seq_length() == 5 and len(cache) == 3 and len(cache.layers) == 3
    assert cache.layers[0].keys.shape == (2, 2, 5, 8) and cache.layers[2].values.shape == (2, 2, 5, 8)
    legacy = cache.to_legacy_cache()
    assert isinstance(legacy, tuple) and len(legacy) == 3 and all(len(pair) == 2 for pair in legacy)
    key, value = cache[1]  # indexing and iteration as legacy pairs
    assert key is legacy[1][0] and value is legacy[1][1]
    assert [k.shape for k, _ in cache] == [(2, 2, 5, 8)] * 3
    assert model(ids[:, :5], use_cache=False).past_key_values is None


@torch.no_grad()
def test_a_cache_object_is_updated_in_place_and_returned(model, ids):
    full = model(ids).logits
    cache = model(ids[:, :5]).past_key_values
    out = model(ids[:, 5:], past_key_values=cache)
    assert out.past_key_values is cache and cache.get_seq_length() == 9
    torch.testing.assert_close(out.logits, full[:, 5:], rtol=0, atol=1e-5)


@torch.no_grad()
def test_a_legacy_tuple_gives_a_tuple_back(model, ids):
    full = model(ids).logits
    legacy = model(ids[:, :5]).past_key_values.to_legacy_cache()
    out = model(ids[:, 5:], past_key_values=legacy)
    assert isinstance(out.past_key_values, tuple) and out.past_key_values[0][0].shape[-2] == 9
    torch.testing.assert_close(out.logits, full[:, 5:], rtol=0, atol=1e-5)
    again = DynamicCache.from_legacy_cache(legacy)  # the round trip
    assert again.get_seq_length() == 5 and all(torch.equal(a, b) for a, b in zip(again[0], legacy[0]))
    torch.testing.assert_close(model(ids[:, 5:], past_key_values=again).logits, full[:, 5:], rtol=0, atol=1e-5)


@torch.no_grad()
def test_reorder_and_crop(model, ids):
    cache = model(ids[:, :5]).past_key_values
    before = cache[0][0].clone()
    cache.reorder_cache(torch.tensor([1, 1]))
    assert torch.equal(cache[0][0][0], before[1]) and torch.equal(cache[0][0][1], before[1])
    cache.crop(3)
    assert cache.get_seq_length() == 3
    cache.crop(-1)
    assert cache.get_seq_length() == 2


@torch.no_grad()
def test_static_cache_prefill_and_steps_equal_the_full_forward(model, ids):
    full = model(ids).logits
    cache = StaticCache(model.config, max_cache_len=16)  # HF 4.57's form: the batch comes with the first call
    assert cache.get_max_cache_shape() == 16 and cache.get_seq_length() == 0
    first = model(ids[:, :5], past_key_values=cache)
    assert first.past_key_values is cache and cache.get_seq_length() == 5
    for t in range(5, 9):
        step = model(ids[:, t:t + 1], past_key_values=cache)
        torch.testing.assert_close(step.logits[:, 0], full[:, t], rtol=0, atol=1e-5)
    assert cache.key_buffer.shape == (3, 2, 2, 16, 8) and cache.layers[0].keys.shape == (2, 2, 9, 8)
    with pytest.raises(ValueError, match="holds 16 tokens"):
        model(torch.zeros(2, 8, dtype=torch.long), past_key_values=cache)
    old_style = StaticCache(model.config, 2, 16)  # HF 4.4x's (config, max_batch_size, max_cache_len)
    assert old_style.key_buffer.shape == (3, 2, 2, 16, 8)
    with pytest.raises(ValueError, match="made for a batch of 2, but this call has 1 rows"):
        model(ids[:1, :3], past_key_values=old_style)


class UsersCache:
    """Anything with HF's interface (``update`` and ``get_seq_length``) will do."""

    def __init__(self):
        self.keys, self.values, self.calls = {}, {}, 0

    def get_seq_length(self, layer_idx=0):
        return 0 if layer_idx not in self.keys else self.keys[layer_idx].shape[-2]

    def update(self, key, value, layer_idx, cache_kwargs=None):
        self.calls += 1
        if layer_idx in self.keys:
            key, value = torch.cat([self.keys[layer_idx], key], -2), torch.cat([self.values[layer_idx], value], -2)
        self.keys[layer_idx], self.values[layer_idx] = key, value
        return key, value


@torch.no_grad()
def test_any_object_with_the_interface_is_accepted(model, ids):
    full = model(ids).logits
    cache = UsersCache()
    model(ids[:, :5], past_key_values=cache)
    out = model(ids[:, 5:], past_key_values=cache)
    assert out.past_key_values is cache and cache.calls == 6 and cache.get_seq_length() == 9
    torch.testing.assert_close(out.logits, full[:, 5:], rtol=0, atol=1e-5)


@torch.no_grad()
def test_generate_returns_a_cache_object(model, ids):
    for implementation in (None, "dynamic"):
        out = model.generate(ids[:, :4], max_new_tokens=3, do_sample=False, return_dict_in_generate=True,
                             cache_implementation=implementation, pad_token_id=0)
        assert isinstance(out.past_key_values, Cache), implementation
        assert out.past_key_values.get_seq_length() == 6  # the prompt and the tokens fed back (not the last one)


@torch.no_grad()
def test_hf_transformers_own_dynamic_cache_works_here(model, ids):
    transformers = pytest.importorskip("transformers")  # the dev extra's oracle
    full = model(ids).logits
    cache = transformers.DynamicCache()
    model(ids[:, :5], past_key_values=cache)
    out = model(ids[:, 5:], past_key_values=cache)
    assert out.past_key_values is cache and cache.get_seq_length() == 9
    torch.testing.assert_close(out.logits, full[:, 5:], rtol=0, atol=1e-5)
