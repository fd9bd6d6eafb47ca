"""The Flax stack's own surface: the static cache, jit, dropout, dtypes, remat, the heads' pooling and losses, and the
cache errors. HF's golden numbers, the numpy reference, caches, outputs and bad input in every backend: tests/contract/."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.flax
jax = pytest.importorskip("jax")
pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402

import tiny  # noqa: E402
from gpt2_multi import GPT2Config  # noqa: E402
from gpt2_multi.flax import (  # noqa: E402
    MODEL_CLASSES,
    FlaxGPT2ForSequenceClassification,
    FlaxGPT2LMHeadModel,
    FlaxGPT2Model,
)
from gpt2_multi.validation import InputError  # noqa: E402

from fixture_cases import HEAD_ARCHITECTURES, checkpoint_dir  # noqa: E402

ATOL = 1e-4


@functools.cache
def load_model(head: str, fmt: str):
    return MODEL_CLASSES[HEAD_ARCHITECTURES[head]].from_pretrained(checkpoint_dir(head, fmt))


def tiny_config(**overrides) -> GPT2Config:
    return tiny.tiny_config(**{"pad_token_id": 0, **overrides})


def test_cache_index_counts_the_filled_positions():
    """Flax's static cache: ``cache_index`` is the number of positions filled so far (cached == full forward, in
    every backend: tests/contract/test_cache.py)."""
    model = load_model("lm", "safetensors")
    ids = np.random.RandomState(0).randint(1, 1000, size=(2, 10))
    b, max_length = 2, 12
    mask = np.zeros((b, max_length), np.int32)
    mask[:, :4] = 1
    out = model(ids[:, :4], attention_mask=mask, position_ids=np.broadcast_to(np.arange(4), (b, 4)),
                past_key_values=model.init_cache(b, max_length))
    assert int(out.past_key_values["transformer"]["h"]["0"]["attn"]["cache_index"]) == 4
    for pos in range(4, 10):
        mask[:, pos] = 1
        out = model(ids[:, pos:pos + 1], attention_mask=mask, position_ids=np.full((b, 1), pos),
                    past_key_values=out.past_key_values)
    assert int(out.past_key_values["transformer"]["h"]["0"]["attn"]["cache_index"]) == 10


def test_init_cache_shapes_and_no_params():
    model = FlaxGPT2LMHeadModel(tiny_config(), _do_init=False)
    with pytest.raises(ValueError, match="_do_init=False"):
        model.params  # noqa: B018
    cache = model.init_cache(3, 20)
    attn = cache["transformer"]["h"]["1"]["attn"]
    assert attn["cached_key"].shape == (3, 20, 4, 8)
    assert attn["cached_value"].shape == (3, 20, 4, 8)
    assert int(attn["cache_index"]) == 0
    assert FlaxGPT2Model(tiny_config(), _do_init=False).init_cache(1, 5)["h"]["0"]["attn"]["cached_key"].shape == (1, 5, 4, 8)


# ------------------------------------------------------------------------------------- call contract
def test_jitted_once_per_static_configuration():
    model = FlaxGPT2LMHeadModel(tiny_config(), seed=0)
    ids = np.ones((2, 5), np.int64)
    model(ids)
    model(ids + 1)
    model(ids, output_attentions=True)
    assert model._jitted_keys == {(False, False, False, False), (False, True, False, False)}
    fn = model._jitted_apply(False, False, False, False)
    assert fn._cache_size() == 1  # the second call with the same shapes did not retrace
    twin = FlaxGPT2LMHeadModel(tiny_config(), seed=1)
    assert twin._jitted_apply(False, False, False, False) is fn  # same module and config: same compiled code
    twin(ids)
    assert fn._cache_size() == 1


def test_mask_and_positions_are_filled_as_hf_so_one_program_serves_all():
    """Without a cache, no mask / no positions are filled with ones / arange as HF's Flax models do: the same numbers
    bit for bit, and one compiled program for calls with and without them (the conformance grid's compile count)."""
    model = FlaxGPT2LMHeadModel(tiny_config(), seed=0)
    ids = np.arange(10, dtype=np.int64).reshape(2, 5) % 7
    plain = model(ids).logits
    fn = model._jitted_apply(False, False, False, False)
    masked = model(ids, attention_mask=np.ones((2, 5), np.int64)).logits
    placed = model(ids, position_ids=np.broadcast_to(np.arange(5), (2, 5))).logits
    both = model(ids, attention_mask=np.ones((2, 5), np.int32), position_ids=np.broadcast_to(np.arange(5), (2, 5))).logits
    assert fn._cache_size() == 1
    for other in (masked, placed, both):
        np.testing.assert_array_equal(np.asarray(other), np.asarray(plain))
    shifted = model(ids, position_ids=np.broadcast_to(np.arange(1, 6), (2, 5))).logits  # the positions do count
    assert np.abs(np.asarray(shifted) - np.asarray(plain)).max() > 1e-3
    assert fn._cache_size() == 1


def test_outputs_are_pytrees_and_modules_jit():
    model = load_model("lm", "safetensors")
    ids = jnp.asarray(np.arange(1, 9).reshape(2, 4))

    @jax.jit
    def f(params, ids):
        return model.module.apply({"params": params}, ids, labels=ids)

    out = f(model.params, ids)
    assert type(out).__name__ == "FlaxCausalLMOutputWithCrossAttentions"
    ref = model(np.asarray(ids), labels=np.asarray(ids))
    np.testing.assert_allclose(np.asarray(out.loss), np.asarray(ref.loss), atol=1e-6)
    assert jax.tree_util.tree_structure(out).num_leaves == 2


def test_train_mode_dropout():
    cfg = tiny_config(resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3)
    model = FlaxGPT2LMHeadModel(cfg, seed=0)
    ids = np.arange(1, 11).reshape(2, 5)
    eval1, eval2 = (np.asarray(model(ids).logits) for _ in range(2))
    np.testing.assert_array_equal(eval1, eval2)
    key = jax.random.PRNGKey(1)
    tr1 = np.asarray(model(ids, train=True, dropout_rng=key).logits)
    tr2 = np.asarray(model(ids, train=True, dropout_rng=key).logits)
    tr3 = np.asarray(model(ids, train=True, dropout_rng=jax.random.PRNGKey(2)).logits)
    np.testing.assert_array_equal(tr1, tr2)
    assert np.abs(tr1 - eval1).max() > 1e-3 and np.abs(tr1 - tr3).max() > 1e-3
    with pytest.raises(InputError, match="dropout_rng"):
        model(ids, train=True)


def test_dtype_and_param_dtype():
    ref = load_model("lm", "safetensors")
    ids = np.arange(1, 13).reshape(2, 6)
    expected = np.asarray(ref(ids).logits)
    half = FlaxGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), dtype=jnp.bfloat16)
    assert half.params["transformer"]["wte"]["embedding"].dtype == jnp.float32
    out = half(ids).logits
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), expected, atol=0.05)
    stored = FlaxGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), param_dtype=jnp.bfloat16)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(stored.params))
    np.testing.assert_allclose(np.asarray(stored(ids).logits, np.float32), expected, atol=0.05)
    bf16 = ref.to_bf16()
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(bf16))
    back = ref.to_fp32(bf16)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(back))
    np.testing.assert_allclose(np.asarray(ref(ids, params=back).logits), expected, atol=0.05)
    mask = jax.tree_util.tree_map(lambda x: x.ndim > 1, ref.params)
    partial = ref.to_bf16(mask=mask)
    assert partial["transformer"]["ln_f"]["scale"].dtype == jnp.float32
    assert partial["transformer"]["wte"]["embedding"].dtype == jnp.bfloat16


def test_remat_same_values_and_gradients():
    cfg = tiny_config()
    plain = FlaxGPT2LMHeadModel(cfg, seed=0)
    remat = FlaxGPT2LMHeadModel(cfg, plain.params, remat=True)
    ids = jnp.asarray(np.arange(1, 17).reshape(2, 8))

    def loss(module, params):
        return module.apply({"params": params}, ids, labels=ids).loss

    l1, g1 = jax.jit(jax.value_and_grad(functools.partial(loss, plain.module)))(plain.params)
    l2, g2 = jax.jit(jax.value_and_grad(functools.partial(loss, remat.module)))(plain.params)
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_sequence_classification_regression_and_multilabel_losses():
    ids = np.array([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    reg = FlaxGPT2ForSequenceClassification(tiny_config(num_labels=1), seed=0)
    y = np.array([0.5, -1.0], np.float32)
    out = reg(ids, labels=y)
    pooled = np.asarray(out.logits)[:, 0]
    np.testing.assert_allclose(float(out.loss), np.mean((pooled - y) ** 2), rtol=1e-5)
    # pooled at the last non-pad token: equal to the unpadded row's last logit
    alone = np.asarray(reg(ids[:1, :3]).logits)
    np.testing.assert_allclose(np.asarray(out.logits)[0], alone[0], atol=ATOL)
    multi = FlaxGPT2ForSequenceClassification(tiny_config(num_labels=3), seed=0)
    targets = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    out = multi(ids, labels=targets)
    z = np.asarray(out.logits, np.float64)
    bce = np.mean(np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - z * targets)
    np.testing.assert_allclose(float(out.loss), bce, rtol=1e-5)


# ------------------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def lm():
    return load_model("lm", "safetensors")


def test_cache_errors(lm):
    cache = lm.init_cache(2, 6)
    ids = np.ones((2, 4), int)
    with pytest.raises(InputError, match="position_ids are required with past_key_values"):
        lm(ids, past_key_values=cache)
    with pytest.raises(InputError, match=r"attention_mask has shape \(2, 4\) but must be \(2, 6\)"):
        lm(ids, attention_mask=np.ones((2, 4)), position_ids=np.arange(4)[None].repeat(2, 0), past_key_values=cache)
    out = lm(ids, position_ids=np.arange(4)[None].repeat(2, 0), past_key_values=cache)
    with pytest.raises(InputError, match="holds 4 of max_length=6 positions and cannot take 3"):
        lm(np.ones((2, 3), int), position_ids=np.arange(4, 7)[None].repeat(2, 0), past_key_values=out.past_key_values)
    with pytest.raises(InputError, match=r"past_key_values\[0\] key has shape \(2, 6, 4, 8\) but must be \(1, 6, 4, 8\)"):
        lm(np.ones((1, 1), int), position_ids=np.array([[4]]), past_key_values=out.past_key_values)
    with pytest.raises(InputError, match="n_positions=64"):
        lm.init_cache(1, 65)
    base_cache = load_model("base", "safetensors").init_cache(2, 6)
    with pytest.raises(InputError, match="does not fit this FlaxGPT2LMHeadModel"):
        lm(ids, position_ids=np.arange(4)[None].repeat(2, 0), past_key_values=base_cache)
    with pytest.raises(TypeError, match="unexpected keyword argument 'mc_labels'"):
        lm(ids, mc_labels=np.zeros(2, int))
    with pytest.raises(TypeError, match="init_cache"):
        lm(ids, use_cache=True)
    assert "0.1M parameters" in repr(lm) and "FlaxGPT2LMHeadModel(n_layer=2" in repr(lm)


def test_import_does_not_pull_other_frameworks():
    code = ("import sys, gpt2_multi.flax, gpt2_multi.flax.training, gpt2_multi.flax.sharding\n"
            "bad = [m for m in ('torch', 'tensorflow', 'keras', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad\nprint('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


def test_missing_framework_gives_install_hint():
    code = ("import sys\nsys.modules['jax'] = None\n"
            "try:\n    import gpt2_multi.flax\nexcept ImportError as err:\n    print(err)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'gpt2-multi[flax]'" in res.stdout, res.stdout + res.stderr


def test_call_inside_jit_skips_value_checks_but_matches():
    model = load_model("lm", "safetensors")
    ids = np.arange(1, 11).reshape(2, 5)
    expected = np.asarray(model(ids, labels=ids).loss)

    @jax.jit
    def loss(params, ids):
        return model(ids, params=params, labels=ids).loss

    np.testing.assert_allclose(np.asarray(loss(model.params, jnp.asarray(ids))), expected, rtol=1e-6)


def test_module_defaults_positions_from_the_cache():
    """Linen users may omit position_ids with a cache: they continue from cache_index."""
    model = load_model("base", "safetensors")
    ids = jnp.asarray(np.arange(1, 13).reshape(2, 6))
    cache = model.init_cache(2, 6)
    module, params = model.module, model.params
    step = jax.jit(lambda c, x: module.apply({"params": params, "cache": c}, x, mutable=["cache"]))
    _, vars1 = step(cache, ids[:, :4])
    out2, _ = step(vars1["cache"], ids[:, 4:])
    full = jax.jit(lambda x: module.apply({"params": params}, x))(ids)
    np.testing.assert_allclose(np.asarray(out2.last_hidden_state), np.asarray(full.last_hidden_state[:, 4:]), atol=ATOL)


@pytest.mark.parametrize("summary_type", ["last", "first", "mean", "cls_index"])
def test_double_heads_summary_types(summary_type):
    base = load_model("double", "safetensors")
    cfg = base.config.copy(summary_type=summary_type, summary_activation="tanh")
    model = MODEL_CLASSES["GPT2DoubleHeadsModel"](cfg, base.params)
    ids = np.random.RandomState(0).randint(1, 1000, size=(2, 3, 5))
    mc_token_ids = np.array([[1, 4, 2], [0, 3, 4]])
    out = model(ids, mc_token_ids=mc_token_ids, output_hidden_states=True)
    hidden = np.asarray(out.hidden_states[-1])  # (B, C, T, E)
    # HF's quirk: last / first / mean index dim 1, the choices axis, giving (B, T); cls_index gives (B, C)
    pooled = {"last": hidden[:, -1], "first": hidden[:, 0], "mean": hidden.mean(1),
              "cls_index": np.take_along_axis(hidden, mc_token_ids[:, :, None, None], axis=2)[:, :, 0]}[summary_type]
    head = base.params["multiple_choice_head"]["summary"]
    expected = np.tanh(pooled @ np.asarray(head["kernel"]) + np.asarray(head["bias"]))[..., 0]
    np.testing.assert_allclose(np.asarray(out.mc_logits), expected, atol=ATOL)
    assert out.logits.shape == (2, 3, 5, 1000)


def test_sequence_classification_with_inputs_embeds_pools_the_last_token():
    model = load_model("seqcls", "safetensors")
    ids = np.array([[5, 6, 7, 8], [9, 10, 11, 12]])
    embeds = np.asarray(model.params["transformer"]["wte"]["embedding"])[ids]
    np.testing.assert_allclose(np.asarray(model(inputs_embeds=embeds).logits), np.asarray(model(ids).logits), atol=ATOL)


@pytest.mark.parametrize(("upcast", "softmax_dtype"), [(False, "f32"), (True, "f32")])
def test_reorder_and_upcast_attn_runs_softmax_in_float32(upcast, softmax_dtype):
    """With bfloat16 compute the scores and the softmax are float32, with reorder_and_upcast_attn or without (the
    flag then only moves the scale onto the query); the outputs stay bfloat16."""
    cfg = tiny_config(n_layer=1, reorder_and_upcast_attn=upcast)
    model = FlaxGPT2Model(cfg, seed=0, dtype=jnp.bfloat16)
    jaxpr = jax.make_jaxpr(lambda p, x: model.module.apply({"params": p}, x))(model.params, jnp.ones((1, 4), jnp.int32))
    exps = [line for line in str(jaxpr).splitlines() if "= exp " in line]
    assert len(exps) == 1 and f":{softmax_dtype}[1,4,4,4]" in exps[0], exps
    out = model(np.arange(1, 5)[None]).last_hidden_state
    assert out.dtype == jnp.bfloat16


def test_head_mask_per_head_broadcasts_and_zero_head_removes_it():
    model = load_model("base", "safetensors")
    ids = np.arange(1, 13).reshape(2, 6)
    per_head = np.array([1.0, 0.0, 1.0, 0.5], np.float32)
    a = model(ids, head_mask=per_head, output_attentions=True)
    b = model(ids, head_mask=np.stack([per_head, per_head]), output_attentions=True)
    np.testing.assert_array_equal(np.asarray(a.last_hidden_state), np.asarray(b.last_hidden_state))
    attn = np.asarray(a.attentions[0])
    assert np.all(attn[:, 1] == 0)  # the masked head's probabilities are zero
    np.testing.assert_allclose(attn[:, 0].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(attn[:, 3].sum(-1), 0.5, atol=1e-6)
