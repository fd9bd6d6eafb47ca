"""The TensorFlow static-cache decode step (generation's fast path) against the model's own full forward.

``_forward_static`` (prefill, then one token per step into the preallocated cache) must give the full
forward's logits at every position, and leave the full forward's keys and values in the cache, for every
combination of the three attention flags and every activation; eagerly and under XLA.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")

from gpt2_multi.activations import ACTIVATIONS  # noqa: E402
from gpt2_multi.tf import TFGPT2LMHeadModel  # noqa: E402
from gpt2_multi.tf.generation import _forward_static  # noqa: E402
from gpt2_multi.tf.modeling import TFGPT2MainLayer  # noqa: E402
from tiny import tiny_config  # noqa: E402

FLAG_NAMES = ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn")
FLAG_SETS = [dict(zip(FLAG_NAMES, values)) for values in itertools.product((False, True), repeat=3)]

# Three rows, two of them left-padded; the first PROMPT columns are the prefill, the rest are decoded one by one.
IDS = np.random.default_rng(0).integers(0, 1000, size=(3, 11)).astype(np.int32)
MASK = (np.arange(11)[None, :] >= np.array([[0], [2], [5]])).astype(np.int32)
POSITIONS = np.where(MASK == 0, 1, np.cumsum(MASK, axis=1) - 1).astype(np.int32)
PROMPT, SPARE = 6, 3  # the cache has SPARE columns more than the tokens: unwritten, hidden by the bias


def make_model(flags: dict, activation: str = "gelu_new") -> TFGPT2LMHeadModel:
    # a wide initialisation, so that attention is far from uniform and every activation is exercised
    tf.keras.utils.set_random_seed(1)
    return TFGPT2LMHeadModel(tiny_config(activation_function=activation, initializer_range=0.3, **flags))


def decode(model):
    """Prefill PROMPT tokens, then feed the others one at a time: ((N, steps, V) logits, the cache)."""
    cfg = model.config
    n, total = IDS.shape
    length = total + SPARE
    dtype = tf.as_dtype(model.transformer.compute_dtype)
    key_valid = tf.concat([tf.constant(MASK > 0), tf.ones([n, SPARE], tf.bool)], axis=1)
    kv = tf.zeros([cfg.n_layer, 2, n, cfg.n_head, length, cfg.head_dim], dtype)
    logits, kv = _forward_static(model, IDS[:, :PROMPT], POSITIONS[:, :PROMPT], kv, tf.constant(0),
                                 TFGPT2MainLayer.static_cache_bias(key_valid, 0, PROMPT, dtype))
    steps = [logits]
    for t in range(PROMPT, total):
        logits, kv = _forward_static(model, IDS[:, t:t + 1], POSITIONS[:, t:t + 1], kv, tf.constant(t),
                                     TFGPT2MainLayer.static_cache_bias(key_valid, t, 1, dtype))
        steps.append(logits)
    return tf.stack(steps, axis=1), kv


def check(model, logits, kv):
    full = model(IDS, attention_mask=MASK, position_ids=POSITIONS, use_cache=True)
    expected = full.logits.numpy()[:, PROMPT - 1:]
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-5)
    kv = kv.numpy()
    real = MASK.astype(bool)  # keys at padding positions are never attended to: not compared
    for layer, present in enumerate(full.past_key_values):
        for i in range(2):
            np.testing.assert_allclose(kv[layer, i][:, :, :IDS.shape[1]].transpose(0, 2, 1, 3)[real],
                                       present.numpy()[i].transpose(0, 2, 1, 3)[real], rtol=1e-5, atol=1e-5)
        assert not kv[layer, :, :, :, IDS.shape[1]:].any()  # the spare columns stay unwritten
    return expected


@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: ",".join(k for k, v in f.items() if v) or "none")
def test_decode_step_equals_full_forward_for_every_flag_combination(flags):
    model = make_model(flags)
    expected = check(model, *decode(model))
    compiled = tf.function(lambda: decode(model), jit_compile=True, autograph=False)
    check(model, *compiled())
    if flags["scale_attn_weights"] or flags["scale_attn_by_inverse_layer_idx"]:  # the flags change the numbers
        plain = make_model({**flags, "scale_attn_weights": False, "scale_attn_by_inverse_layer_idx": False})
        assert np.abs(plain(IDS, attention_mask=MASK, position_ids=POSITIONS).logits.numpy()[:, PROMPT - 1:]
                      - expected).max() > 1e-3


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_decode_step_equals_full_forward_for_every_activation(activation):
    flags = FLAG_SETS[ACTIVATIONS.index(activation) % len(FLAG_SETS)]  # the flags vary along too
    model = make_model(flags, activation)
    check(model, *decode(model))
    compiled = tf.function(lambda: decode(model), jit_compile=True, autograph=False)
    check(model, *compiled())


@pytest.mark.parametrize("compiled", [False, True])
def test_a_half_precision_cache_write_puts_exactly_the_new_bits_in_place(compiled):
    """generation's static cache in bfloat16 is written as 16-bit integers (XLA's CPU backend otherwise runs the
    write in float32 over the whole cache): the same bits land at the layer and column, and nothing else moves."""
    from gpt2_multi.tf.modeling import write_cache

    rng = np.random.default_rng(0)
    cache = tf.cast(rng.standard_normal((3, 2, 2, 4, 6, 8)), tf.bfloat16)  # (n_layer, 2, B, H, L, D)
    key, value = (tf.cast(rng.standard_normal((2, 4, 1, 8)), tf.bfloat16) for _ in range(2))
    def write(c, k, v, i):
        return write_cache(c, k, v, i, layer=1)[0]

    if compiled:
        write = tf.function(write, jit_compile=True)
    out = write(cache, key, value, tf.constant(4))
    expected = cache.numpy().copy()
    expected[1, 0, :, :, 4:5], expected[1, 1, :, :, 4:5] = key.numpy(), value.numpy()
    assert out.dtype == tf.bfloat16
    np.testing.assert_array_equal(tf.bitcast(out, tf.uint16).numpy(), tf.bitcast(tf.constant(expected), tf.uint16).numpy())
    if compiled:  # the compiled write updates 16-bit words, with no float32 copy of the whole cache
        hlo = write.experimental_get_compiler_ir(cache, key, value, tf.constant(4))(stage="optimized_hlo")
        assert "u16[3,2,2,4,6,8]" in hlo and "f32[3,2,2,4,6,8]" not in hlo
