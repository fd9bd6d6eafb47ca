"""The TensorFlow/Keras stack's own surface: cross-attention against a numpy reference, the call styles, dropout, the
heads' pooling and losses, variable names. HF's golden numbers, activations, caches, outputs and bad input in every
backend: tests/contract/."""

from __future__ import annotations

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import gpt2_multi.tf as gtf  # noqa: E402
from gpt2_multi.checkpoint import layout  # noqa: E402
from gpt2_multi.config import GPT2Config  # noqa: E402
from gpt2_multi.validation import InputError  # noqa: E402

from fixture_cases import HEAD_ARCHITECTURES, INDEX, checkpoint_dir  # noqa: E402

pytestmark = pytest.mark.tf

CLASSES = {
    "base": gtf.TFGPT2Model,
    "lm": gtf.TFGPT2LMHeadModel,
    "double": gtf.TFGPT2DoubleHeadsModel,
    "seqcls": gtf.TFGPT2ForSequenceClassification,
    "tokcls": gtf.TFGPT2ForTokenClassification,
    "qa": gtf.TFGPT2ForQuestionAnswering,
}
# Directory name in the fixtures -> format name of the checkpoint layer.
FORMATS = {"safetensors": "safetensors", "tf": "tf", "flax": "flax", "bin": "pt-bin"}

_MODELS: dict[tuple[str, str], object] = {}


def model_for(head: str, fmt: str):
    key = (head, fmt)
    if key not in _MODELS:
        _MODELS[key] = CLASSES[head].from_pretrained(checkpoint_dir(head, fmt), format=FORMATS[fmt])
    return _MODELS[key]


def tiny_config(**overrides) -> GPT2Config:
    drop = ("transformers_version", "model_type") + (("id2label", "label2id") if "num_labels" in overrides else ())
    base = {k: v for k, v in INDEX["config"].items() if k not in drop}
    return GPT2Config(**{**base, **overrides})


# ------------------------------------------------------------------------------------ numpy reference
def _np_act(name):
    from math import erf

    verf = np.vectorize(erf)
    tanh_gelu = lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))  # noqa: E731
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    return {
        "gelu": lambda x: 0.5 * x * (1 + verf(x / math.sqrt(2))), "gelu_python": lambda x: 0.5 * x * (1 + verf(x / math.sqrt(2))),
        "gelu_new": tanh_gelu, "gelu_pytorch_tanh": tanh_gelu, "gelu_accurate": tanh_gelu,
        "gelu_fast": lambda x: 0.5 * x * (1 + np.tanh(0.7978845608 * x * (1 + 0.044715 * x * x))),
        "quick_gelu": lambda x: x * sig(1.702 * x), "relu": lambda x: np.maximum(x, 0),
        "relu6": lambda x: np.clip(x, 0, 6), "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
        "silu": lambda x: x * sig(x), "swish": lambda x: x * sig(x),
        "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))), "tanh": np.tanh, "sigmoid": sig, "linear": lambda x: x,
    }[name]


def _np_attention(q, k, v, allowed, config, layer):
    s = q @ k.transpose(0, 1, 3, 2)
    if config.scale_attn_weights:
        s = s / math.sqrt(q.shape[-1])
    if config.scale_attn_by_inverse_layer_idx:
        s = s / (layer + 1)
    s = np.where(allowed, s, -1e300)
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def numpy_gpt2(sd, config, ids, mask=None, enc=None, enc_mask=None):
    """GPT-2 body in float64 numpy from PyTorch-named weights (an independent reference)."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    p = "transformer."
    b, t = ids.shape
    e, nh = config.n_embd, config.n_head
    d = e // nh

    def ln(x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + config.layer_norm_epsilon) * sd[name + ".weight"] + sd[name + ".bias"]

    act = _np_act(config.activation_function)
    heads = lambda z: z.reshape(z.shape[0], z.shape[1], nh, d).transpose(0, 2, 1, 3)  # noqa: E731
    x = sd[p + "wte.weight"][ids] + sd[p + "wpe.weight"][np.arange(t)][None]
    allowed = np.tril(np.ones((t, t), bool))[None, None]
    if mask is not None:
        allowed = allowed & mask.astype(bool)[:, None, None, :]
    for i in range(config.n_layer):
        h = f"{p}h.{i}."
        a = ln(x, h + "ln_1") @ sd[h + "attn.c_attn.weight"] + sd[h + "attn.c_attn.bias"]
        q, k, v = (heads(z) for z in np.split(a, 3, axis=-1))
        o = _np_attention(q, k, v, allowed, config, i).transpose(0, 2, 1, 3).reshape(b, t, e)
        x = x + o @ sd[h + "attn.c_proj.weight"] + sd[h + "attn.c_proj.bias"]
        if enc is not None:
            c = h + "crossattention."
            q = heads(ln(x, h + "ln_cross_attn") @ sd[c + "q_attn.weight"] + sd[c + "q_attn.bias"])
            k, v = (heads(z) for z in np.split(enc @ sd[c + "c_attn.weight"] + sd[c + "c_attn.bias"], 2, axis=-1))
            cross_allowed = np.ones((1, 1, 1, enc.shape[1]), bool) if enc_mask is None else enc_mask.astype(bool)[:, None, None, :]
            o = _np_attention(q, k, v, cross_allowed, config, i).transpose(0, 2, 1, 3).reshape(b, t, e)
            x = x + o @ sd[c + "c_proj.weight"] + sd[c + "c_proj.bias"]
        m = act(ln(x, h + "ln_2") @ sd[h + "mlp.c_fc.weight"] + sd[h + "mlp.c_fc.bias"])
        x = x + m @ sd[h + "mlp.c_proj.weight"] + sd[h + "mlp.c_proj.bias"]
    return ln(x, p + "ln_f")


def test_cross_attention_matches_numpy_reference(tmp_path):
    config = tiny_config(add_cross_attention=True, scale_attn_by_inverse_layer_idx=True)
    model = gtf.TFGPT2LMHeadModel(config)
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 1000, size=(2, 5))
    enc = rng.standard_normal((2, 7, 32)).astype(np.float32)
    enc_mask = np.ones((2, 7), np.int64)
    enc_mask[1, 4:] = 0
    out = model(ids, encoder_hidden_states=enc, encoder_attention_mask=enc_mask, output_attentions=True)
    sd = model.state_dict()
    assert "transformer.h.1.crossattention.q_attn.weight" in sd and "transformer.h.0.ln_cross_attn.bias" in sd
    hidden = numpy_gpt2(sd, config, ids, enc=enc, enc_mask=enc_mask)
    np.testing.assert_allclose(out.logits.numpy(), hidden @ sd["transformer.wte.weight"].T, atol=1e-4)
    assert len(out.cross_attentions) == 2 and out.cross_attentions[0].shape == (2, 4, 5, 7)
    assert np.all(out.cross_attentions[1].numpy()[1, :, :, 4:] == 0)
    # the cache holds self-attention only; cross-attention is recomputed from the encoder states each step
    first = model(ids[:, :3], encoder_hidden_states=enc, encoder_attention_mask=enc_mask, use_cache=True)
    second = model(ids[:, 3:], past_key_values=first.past_key_values, encoder_hidden_states=enc, encoder_attention_mask=enc_mask)
    np.testing.assert_allclose(second.logits.numpy(), out.logits.numpy()[:, 3:], atol=1e-5)
    # and it round-trips through the shared checkpoint layer
    model.save_pretrained(tmp_path)
    again = gtf.TFGPT2LMHeadModel.from_pretrained(tmp_path)
    np.testing.assert_array_equal(again(ids, encoder_hidden_states=enc).logits.numpy(), model(ids, encoder_hidden_states=enc).logits.numpy())
    with pytest.raises(InputError, match="add_cross_attention=True"):
        model_for("lm", "safetensors")(ids, encoder_hidden_states=enc)


# ------------------------------------------------------------------------------------ call contract
def test_input_styles_agree():
    model = model_for("lm", "safetensors")
    ids = np.random.default_rng(4).integers(0, 1000, size=(2, 6))
    mask = np.ones_like(ids)
    mask[1, 4:] = 0
    ref = model(input_ids=ids, attention_mask=mask).logits.numpy()
    styles = {
        "dict": model({"input_ids": ids, "attention_mask": mask}),
        "list": model([ids, None, mask]),
        "tf tensors": model(tf.constant(ids), attention_mask=tf.constant(mask)),
        "int32": model(ids.astype(np.int32), attention_mask=mask.astype(np.float32)),
        "positional": model(ids, None, mask),
    }
    for name, out in styles.items():
        np.testing.assert_allclose(out.logits.numpy(), ref, atol=1e-6, err_msg=name)
    # a plain nested list of token ids is one batch of ids
    np.testing.assert_allclose(model(ids.tolist(), attention_mask=mask).logits.numpy(), ref, atol=1e-6)


def test_inputs_embeds_without_ids_equals_ids():
    model = model_for("lm", "safetensors")
    ids = np.random.default_rng(5).integers(0, 1000, size=(2, 6))
    embeds = tf.gather(model.transformer.wte.embeddings, ids)
    np.testing.assert_allclose(model(inputs_embeds=embeds).logits.numpy(), model(ids).logits.numpy(), atol=1e-6)


def test_head_mask_one_dim_equals_two_dim_and_zeroes_heads():
    model = model_for("base", "safetensors")
    ids = np.random.default_rng(6).integers(0, 1000, size=(1, 5))
    hm = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    a = model(ids, head_mask=hm, output_attentions=True)
    b = model(ids, head_mask=np.stack([hm, hm]), output_attentions=True)
    np.testing.assert_allclose(a.last_hidden_state.numpy(), b.last_hidden_state.numpy(), atol=1e-6)
    assert np.all(a.attentions[0].numpy()[:, 1] == 0)
    assert np.abs(a.last_hidden_state.numpy() - model(ids).last_hidden_state.numpy()).max() > 1e-4


def test_dropout_follows_training_flag():
    config = tiny_config(resid_pdrop=0.5, embd_pdrop=0.5, attn_pdrop=0.5)
    model = gtf.TFGPT2Model(config)
    ids = np.arange(8)[None]
    e1, e2 = model(ids).last_hidden_state.numpy(), model(ids, training=False).last_hidden_state.numpy()
    np.testing.assert_array_equal(e1, e2)
    t1 = model(ids, training=True).last_hidden_state.numpy()
    assert np.abs(t1 - e1).max() > 1e-3


def test_double_heads_multiple_choice_shapes_and_default_mc_token():
    model = model_for("double", "safetensors")
    ids = np.random.default_rng(7).integers(0, 1000, size=(2, 3, 5))
    out = model(ids, use_cache=True, output_hidden_states=True, output_attentions=True)
    assert out.logits.shape == (2, 3, 5, 1000) and out.mc_logits.shape == (2, 3)
    assert out.hidden_states[0].shape == (2, 3, 5, 32) and out.attentions[0].shape == (2, 3, 4, 5, 5)
    assert out.past_key_values[0].shape == (2, 6, 4, 5, 8)  # flat over batch * choices, as HF
    last = model(ids, mc_token_ids=np.full((2, 3), 4))
    np.testing.assert_allclose(out.mc_logits.numpy(), last.mc_logits.numpy(), atol=1e-6)


def test_seqcls_pools_last_non_pad_token_and_losses():
    model = model_for("seqcls", "safetensors")
    ids = np.array([[5, 6, 7, 0, 0], [0, 0, 8, 9, 10]])  # pad id is 0: right and left padding
    out = model(ids)
    hidden = model.transformer(input_ids=ids).last_hidden_state.numpy()
    kernel = model.score.kernel.numpy()
    np.testing.assert_allclose(out.logits.numpy(), np.stack([hidden[0, 2], hidden[1, 4]]) @ kernel, atol=1e-5)
    labels = np.array([2, 1])
    ce = -np.log(np.exp(out.logits.numpy()) / np.exp(out.logits.numpy()).sum(-1, keepdims=True))[[0, 1], labels].mean()
    np.testing.assert_allclose(model(ids, labels=labels).loss.numpy(), ce, rtol=1e-5)
    multi = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
    z = out.logits.numpy()
    bce = np.mean(np.maximum(z, 0) - z * multi + np.log1p(np.exp(-np.abs(z))))
    np.testing.assert_allclose(model(ids, labels=multi).loss.numpy(), bce, rtol=1e-5)


def test_seqcls_regression_and_no_pad_token():
    model = gtf.TFGPT2ForSequenceClassification(tiny_config(num_labels=1, pad_token_id=None))
    ids = np.array([[5, 6, 7]])
    out = model(ids, labels=np.array([0.5], np.float32))
    np.testing.assert_allclose(out.loss.numpy(), (out.logits.numpy()[0, 0] - 0.5) ** 2, rtol=1e-5)
    with pytest.raises(InputError, match="pad_token_id"):
        model(np.array([[5, 6, 7], [1, 2, 3]]))


def test_qa_positions_outside_are_ignored():
    model = model_for("qa", "safetensors")
    ids = np.random.default_rng(8).integers(1, 1000, size=(2, 6))
    out = model(ids, start_positions=np.array([1, 50]), end_positions=np.array([2, 3]))
    only_first = model(ids[:1], start_positions=np.array([1]), end_positions=np.array([2]))
    logp = tf.nn.log_softmax(out.end_logits).numpy()
    end_loss = -(logp[0, 2] + logp[1, 3]) / 2
    start_loss = -tf.nn.log_softmax(only_first.start_logits).numpy()[0, 1]
    np.testing.assert_allclose(out.loss.numpy(), (start_loss + end_loss) / 2, rtol=1e-5)


def test_lm_loss_all_ignored_is_nan_like_pytorch():
    model = model_for("lm", "safetensors")
    assert np.isnan(model(np.arange(4)[None], labels=np.full((1, 4), -100)).loss.numpy())


def test_untied_lm_head_is_its_own_weight():
    model = gtf.TFGPT2LMHeadModel(tiny_config(tie_word_embeddings=False))
    names = set(model.state_dict())
    assert "lm_head.weight" in names
    ids = np.arange(4)[None]
    h = model.transformer(input_ids=ids).last_hidden_state.numpy()
    np.testing.assert_allclose(model(ids).logits.numpy(), h @ model.lm_head.kernel.numpy(), atol=1e-5)


# ------------------------------------------------------------------------------------ errors
def test_a_cache_in_another_layout_is_refused():
    """TensorFlow's native cache is (2, B, H, S, D) per layer; one with its last axes swapped is refused by name
    (the other bad caches and inputs, in every backend: tests/contract/test_errors.py)."""
    model = model_for("lm", "safetensors")
    past = model(np.ones((1, 60), np.int64), use_cache=True).past_key_values
    with pytest.raises(InputError, match=r"past_key_values\[0\] key has shape \(1, 4, 8, 60\) but must be \(1, 4, 8, 8\)"):
        model(np.ones((1, 2), np.int64), past_key_values=[np.swapaxes(p.numpy(), 3, 4) for p in past])


def test_dict_input_rejects_unknown_keys():
    model = model_for("lm", "safetensors")
    with pytest.raises(InputError, match="unknown input"):
        model({"input_ids": np.ones((1, 3), np.int64), "input_idz": 1})


def test_variable_paths_map_to_pytorch_names_through_layout():
    for head in CLASSES:
        model = model_for(head, "safetensors")
        expected = layout.canonical_names(layout.expected_shapes(model.config, HEAD_ARCHITECTURES[head]))
        seen = {}
        for v in model.weights:
            scoped = v.path.split("/", 1)[1]
            pt = layout.tf_to_pt_name(scoped)
            assert layout.pt_to_tf_name(pt) == scoped + ":0"
            seen[pt] = tuple(layout.tf_to_pt_array(pt, np.zeros(v.shape)).shape)
        assert seen == expected, head
