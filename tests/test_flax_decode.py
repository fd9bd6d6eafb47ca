"""The Flax decode paths against the model's own full (uncached) forward, and the modeling file's structure.

The decode paths: ``FlaxGPT2LMHeadModule.decode_step`` (the fast path of the compiled ``generate`` loop),
jitted and eagerly, and the model's public ``__call__`` with its ``cache`` collection (what ``generate(jit=False)``
steps). The seeded stream, the beam bookkeeping and the streamers are tested in ``test_flax_generation.py``.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.flax
jax = pytest.importorskip("jax")
pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402

import tiny  # noqa: E402
from gpt2_multi.activations import ACTIVATIONS  # noqa: E402
from gpt2_multi.flax import FlaxGPT2LMHeadModel, FlaxGPT2LMHeadModule, modeling  # noqa: E402
from gpt2_multi.flax import activations as factivations  # noqa: E402
from gpt2_multi.flax import generation as fgen  # noqa: E402

FLAGS = ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn")
FLAG_SETS = [dict(zip(FLAGS, values)) for values in itertools.product((False, True), repeat=3)]

# two rows, the first left-padded by two; prefill 4 positions, then 4 single-token steps
IDS = np.array([[0, 0, 5, 17, 300, 41, 7, 99], [11, 22, 33, 44, 55, 66, 77, 88]], np.int32)
MASK = np.array([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]], np.int32)
POSITIONS = np.where(MASK == 0, 1, np.cumsum(MASK, axis=1) - 1).astype(np.int32)
PREFILL = 4


def _model(**overrides) -> FlaxGPT2LMHeadModel:
    # a wide initialiser: peaked attention, so each flag changes the logits noticeably
    return FlaxGPT2LMHeadModel(tiny.tiny_config(initializer_range=0.3, **overrides), seed=1)


def _fast_path_logits(model: FlaxGPT2LMHeadModel, jit: bool) -> np.ndarray:
    """(N, 1 + steps, V) logits of the decode step: the prompt's first PREFILL tokens, then one token at a time."""
    cfg = model.config
    module = FlaxGPT2LMHeadModule(cfg)
    n, length = IDS.shape
    kv = jnp.zeros((cfg.n_layer, 2, n, cfg.n_head, length, cfg.head_dim), jnp.float32)

    def step(kv, tokens, positions, index):
        return fgen.decode_step(module, model.params, kv, tokens, positions, MASK, index)

    step = jax.jit(step) if jit else step
    logits, kv = step(kv, IDS[:, :PREFILL], POSITIONS[:, :PREFILL], 0)
    out = [np.asarray(logits)]
    for j in range(PREFILL, length):
        logits, kv = step(kv, IDS[:, j:j + 1], POSITIONS[:, j:j + 1], j)
        out.append(np.asarray(logits))
    return np.stack(out, axis=1)


def _reference_cached_logits(model: FlaxGPT2LMHeadModel) -> np.ndarray:
    """The same through the model's public ``__call__`` and its ``cache`` collection (the eager generate path)."""
    cache = model.init_cache(IDS.shape[0], IDS.shape[1])
    out = model(IDS[:, :PREFILL], attention_mask=MASK, position_ids=POSITIONS[:, :PREFILL], past_key_values=cache)
    logits = [np.asarray(out.logits[:, -1])]
    for j in range(PREFILL, IDS.shape[1]):
        out = model(IDS[:, j:j + 1], attention_mask=MASK, position_ids=POSITIONS[:, j:j + 1],
                    past_key_values=out.past_key_values)
        logits.append(np.asarray(out.logits[:, -1]))
    return np.stack(logits, axis=1)


def _full_forward_logits(model: FlaxGPT2LMHeadModel, jit: bool) -> np.ndarray:
    """(N, 1 + steps, V): the uncached forward over the whole sequence, at the positions the decode paths predict."""
    if jit:
        out = model(IDS, attention_mask=MASK, position_ids=POSITIONS)
    else:
        out = model.module.apply({"params": model.params}, IDS, attention_mask=MASK, position_ids=POSITIONS)
    return np.asarray(out.logits)[:, PREFILL - 1:]


def _assert_close(paths: dict, full: np.ndarray) -> None:
    for name, logits in paths.items():
        np.testing.assert_allclose(logits, full, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: "".join("1" if v else "0" for v in f.values()))
def test_eager_decode_step_equals_full_forward_for_every_flag_and_activation(flags, activation):
    """The decode step, run eagerly (op by op, no compile per configuration), gives the full forward's logits
    at every position, for the 8 attention-flag combinations times every activation."""
    model = _model(activation_function=activation, **flags)
    _assert_close({"eager decode_step": _fast_path_logits(model, jit=False)}, _full_forward_logits(model, jit=False))


@pytest.mark.parametrize(("flags", "activation"), [(FLAG_SETS[i % 8], act) for i, act in enumerate(ACTIVATIONS)],
                         ids=lambda x: x if isinstance(x, str) else "".join("1" if v else "0" for v in x.values()))
def test_every_decode_path_equals_full_forward(flags, activation):
    """Every decode path (the compiled step of generate's loop, the same step eagerly, the model's own cached
    ``__call__`` that ``jit=False`` steps) gives the jitted full forward's logits; each flag combination is
    here twice and each activation once (the product is above, eagerly)."""
    model = _model(activation_function=activation, **flags)
    paths = {"jit decode_step": _fast_path_logits(model, jit=True), "eager decode_step": _fast_path_logits(model, jit=False),
             "cached __call__": _reference_cached_logits(model)}
    _assert_close(paths, _full_forward_logits(model, jit=True))


def test_both_paths_call_the_one_attention_core_and_cache_write(monkeypatch):
    """The forward (with and without the cache collection) and the decode step all go through
    ``modeling.attention_core`` once per layer, and every cache write through ``modeling.write_cache``."""
    model = _model()
    layers = model.config.n_layer
    cache = model.init_cache(2, 8)
    calls = tiny.count_calls(monkeypatch, modeling, "attention_core", "write_cache")
    model.module.apply({"params": model.params}, IDS)
    assert calls == {"attention_core": layers, "write_cache": 0}
    model.module.apply({"params": model.params, "cache": cache}, IDS[:, :3],
                       attention_mask=MASK, position_ids=POSITIONS[:, :3], mutable=["cache"])
    assert calls == {"attention_core": 2 * layers, "write_cache": layers}
    _fast_path_logits(model, jit=False)
    steps = 1 + IDS.shape[1] - PREFILL
    assert calls == {"attention_core": (2 + steps) * layers, "write_cache": (1 + steps) * layers}


def test_modeling_layout():
    """The section banners of the three stacks' modeling.py, in order; the activation table in its own module."""
    text = Path(modeling.__file__).read_text()
    banners = re.findall(r"^# -{82} (\w+)$", text, flags=re.M)
    assert banners == ["activations", "Conv1D", "attention", "MLP", "block", "body", "losses", "heads", "wrappers"]
    assert modeling.ACT2FN is factivations.ACT2FN and tuple(factivations.ACT2FN) == ACTIVATIONS


@pytest.mark.parametrize("layer", [None, 1])
def test_a_half_precision_cache_write_puts_exactly_the_new_bits_in_place(layer):
    """A bfloat16 cache is written as 16-bit integers (XLA's CPU backend otherwise runs the write in float32 over
    the whole cache): the same bits land at the position, in both cache layouts, and nothing else moves."""
    rng = np.random.default_rng(0)
    key, value = (jnp.asarray(rng.standard_normal((2, 4, 1, 8)), jnp.bfloat16) for _ in range(2))  # (B, H, T, D)
    if layer is None:  # HF's cache collection: (cached_key, cached_value), each (B, L, H, D)
        cache = tuple(jnp.asarray(rng.standard_normal((2, 6, 4, 8)), jnp.bfloat16) for _ in range(2))
        out = jax.jit(lambda c, k, v: modeling.write_cache(c, k, v, 4)[0])(cache, key, value)
        expected = [np.asarray(c).copy() for c in cache]
        expected[0][:, 4:5], expected[1][:, 4:5] = (np.asarray(x).transpose(0, 2, 1, 3) for x in (key, value))
    else:  # the fast path: every layer in one (n_layer, 2, B, H, L, D) array
        cache = jnp.asarray(rng.standard_normal((3, 2, 2, 4, 6, 8)), jnp.bfloat16)
        write = jax.jit(lambda c, k, v: modeling.write_cache(c, k, v, 4, layer)[0])
        out = [write(cache, key, value)]
        hlo = write.lower(cache, key, value).compile().as_text()  # 16-bit words, no float32 copy of the cache
        assert "u16[3,2,2,4,6,8]" in hlo and "f32[3,2,2,4,6,8]" not in hlo
        expected = [np.asarray(cache).copy()]
        expected[0][1, 0, :, :, 4:5], expected[0][1, 1, :, :, 4:5] = np.asarray(key), np.asarray(value)
    for got, want in zip(out, expected):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(got).view(np.uint16), want.view(np.uint16))
