"""Numerics of the PyTorch stack on tiny random models: the config flags are honoured, SDPA against the eager path,
float16 upcasting, positions after the cache, masks, head masks, the heads' losses and pooling, cross-attention,
training. The flags and activations against a float64 reference, caches, outputs and bad input in every backend:
tests/contract/."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from gpt2_multi.pt import (  # noqa: E402
    GPT2DoubleHeadsModel,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
)
from tiny import tiny_config  # noqa: E402

pytestmark = pytest.mark.torch


def perturbed(model, seed=0):
    """Move layer norms and biases away from 1 / 0 so that a mis-wired parameter cannot hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name or name.startswith("ln_"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.mul_(3.0)  # bigger weights: attention distributions far from uniform
    return model.eval()


def make(cls, seed=0, **overrides):
    torch.manual_seed(seed)
    return perturbed(cls(tiny_config(**overrides)), seed)


def ids(batch=3, seq=10, seed=1, vocab=1000):
    return torch.randint(1, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def both_paths(model, **kwargs):
    """last_hidden_state via SDPA and via the eager path."""
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        fused = model(**kwargs).last_hidden_state
        model.set_attn_implementation("eager")
        eager = model(**kwargs).last_hidden_state
        model.set_attn_implementation("sdpa")
    return fused, eager


@pytest.mark.parametrize("flag", ["scale_attn_weights", "scale_attn_by_inverse_layer_idx"])
def test_flags_change_the_output(flag):
    """The flags are honoured (so the reference comparison above can fail if one were ignored)."""
    base = make(GPT2Model)
    other = GPT2Model(tiny_config(**{flag: not getattr(base.config, flag)}))
    other.load_state_dict(base.state_dict())
    other.eval()
    x = ids()
    with torch.no_grad():
        diff = (base(x).last_hidden_state - other(x).last_hidden_state).abs().max()
    assert diff > 1e-3  # far above the 2e-5 tolerance of the reference comparison


def test_reorder_and_upcast_keeps_fp16_scores_finite():
    """In float16, q.k overflows (> 65504) when computed in half precision (HF's eager path without the flag);
    reorder_and_upcast_attn computes the scores and softmax in float32 on both paths and matches the float64
    attention, and so do half-precision scores without the flag (float32 from the product to the softmax)."""
    torch.manual_seed(0)
    cfg = tiny_config(n_layer=1, reorder_and_upcast_attn=True)
    from gpt2_multi.pt import GPT2Attention

    attn = GPT2Attention(cfg, layer_idx=0).eval()
    with torch.no_grad():
        attn.c_attn.weight.normal_(0, 1.0)
        attn.c_attn.weight[:, :64] *= 40.0  # big q and k: raw scores ~ 1e5
        attn.c_attn.bias.zero_()
    x = torch.randn(1, 6, 32)
    ref_attn = GPT2Attention(cfg, layer_idx=0).double().eval()
    ref_attn.load_state_dict(attn.state_dict())
    plain = GPT2Attention(tiny_config(n_layer=1), layer_idx=0).half().eval()
    plain.load_state_dict(attn.state_dict())
    with torch.no_grad():
        expected = ref_attn(x.double(), is_causal=True, use_sdpa=False)[0]
        half = attn.half()
        outs = [half(x.half(), is_causal=True, use_sdpa=s)[0] for s in (True, False)]
        plain = plain(x.half(), is_causal=True, use_sdpa=False)[0]
    for out in outs:
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.double(), expected, atol=0.05 * expected.abs().max().item(), rtol=0)
    assert torch.isfinite(plain).all()  # half-precision scores are float32: no overflow without the flag either
    torch.testing.assert_close(plain.double(), expected, atol=0.05 * expected.abs().max().item(), rtol=0)


def test_which_path_runs(monkeypatch):
    """SDPA runs unless attention weights or a head mask are requested (or attn_implementation='eager')."""
    calls = []
    real = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("is_causal"))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model = make(GPT2Model)
    x = ids()
    with torch.no_grad():
        past = model(x).past_key_values
        assert calls == [True, True]  # no padding, no cache: the causal kernel
        model(x[:, :2], past_key_values=past)
        assert calls[2:] == [False, False]  # cached: explicit mask
        model(x, output_attentions=True)
        model(x, head_mask=torch.ones(4))
        model.set_attn_implementation("eager")
        model(x)
    assert len(calls) == 4


def test_sdpa_matches_eager_in_bfloat16():
    model = make(GPT2Model).to(torch.bfloat16)
    x = ids()
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    fused, eager = both_paths(model, input_ids=x, attention_mask=mask)
    assert fused.dtype == torch.bfloat16
    valid = mask.bool()
    torch.testing.assert_close(fused[valid].float(), eager[valid].float(), atol=0.05, rtol=0.02)


# ----------------------------------------------------------------------------- KV cache
def test_default_positions_continue_after_the_cache():
    model = make(GPT2Model)
    x = ids(seq=8)
    with torch.no_grad():
        # a legacy tuple: reused three times (a DynamicCache would grow with each call, as HF's does)
        past = model(x[:, :5], use_cache=True).past_key_values.to_legacy_cache()
        implicit = model(x[:, 5:], past_key_values=past).last_hidden_state
        explicit = model(x[:, 5:], past_key_values=past, position_ids=torch.arange(5, 8)[None]).last_hidden_state
        wrong = model(x[:, 5:], past_key_values=past, position_ids=torch.arange(0, 3)[None]).last_hidden_state
    torch.testing.assert_close(implicit, explicit, rtol=0, atol=0)
    assert (implicit - wrong).abs().max() > 1e-3


# ----------------------------------------------------------------------------- masks, head mask, embeddings
def test_padding_is_ignored():
    """Changing a padded token changes nothing at the real positions (right padding)."""
    model = make(GPT2Model)
    x = ids()
    mask = torch.ones_like(x)
    mask[:, 7:] = 0
    y = x.clone()
    y[:, 7:] = 5
    with torch.no_grad():
        a = model(x, attention_mask=mask).last_hidden_state[:, :7]
        b = model(y, attention_mask=mask).last_hidden_state[:, :7]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_head_mask_multiplies_probabilities():
    model = make(GPT2Model)
    x = ids()
    per_layer = torch.tensor([[1.0, 0.0, 1.0, 0.5], [1.0, 0.0, 1.0, 0.5]])
    with torch.no_grad():
        plain = model(x, output_attentions=True)
        masked = model(x, head_mask=per_layer, output_attentions=True)
        shared = model(x, head_mask=per_layer[0], output_attentions=True)
    # Layer 0 sees the same input: its probabilities are scaled per head. Later layers' inputs change.
    torch.testing.assert_close(masked.attentions[0], plain.attentions[0] * per_layer[0].view(1, 4, 1, 1), rtol=0, atol=1e-6)
    assert masked.attentions[1][:, 1].abs().max() == 0
    torch.testing.assert_close(masked.attentions[1][:, 3].sum(-1), torch.full((3, 10), 0.5), rtol=0, atol=1e-6)
    torch.testing.assert_close(shared.last_hidden_state, masked.last_hidden_state, rtol=0, atol=0)
    assert (plain.last_hidden_state - masked.last_hidden_state).abs().max() > 1e-3


def test_token_type_ids_use_wte_and_inputs_embeds_match_ids():
    model = make(GPT2Model)
    x = ids()
    types = torch.randint(0, 3, x.shape)
    with torch.no_grad():
        with_types = model(x, token_type_ids=types).last_hidden_state
        embeds = model.wte(x) + model.wte(types)
        via_embeds = model(inputs_embeds=embeds).last_hidden_state
    torch.testing.assert_close(with_types, via_embeds, rtol=0, atol=1e-6)


def test_multiple_choice_inputs_are_flattened():
    model = make(GPT2Model)
    x = ids(batch=6).view(3, 2, 10)
    mask = torch.ones_like(x)
    mask[:, 1, 8:] = 0
    with torch.no_grad():
        out = model(x, attention_mask=mask, use_cache=True)
        flat = model(x.view(6, 10), attention_mask=mask.view(6, 10)).last_hidden_state
    assert out.last_hidden_state.shape == (3, 2, 10, 32)
    assert out.past_key_values[0][0].shape == (6, 4, 10, 8)
    torch.testing.assert_close(out.last_hidden_state.view(6, 10, 32), flat, rtol=0, atol=0)


def test_cross_attention():
    model = make(GPT2Model, add_cross_attention=True)
    assert "h.0.crossattention.q_attn.weight" in model.state_dict()
    x = ids(batch=2, seq=5)
    enc = torch.randn(2, 7, 32)
    enc_mask = torch.ones(2, 7, dtype=torch.long)
    enc_mask[1, 4:] = 0
    enc2 = enc.clone()
    enc2[1, 4:] = 100.0  # masked encoder positions must not matter
    with torch.no_grad():
        out = model(x, encoder_hidden_states=enc, encoder_attention_mask=enc_mask, output_attentions=True)
        again = model(x, encoder_hidden_states=enc2, encoder_attention_mask=enc_mask)
        no_enc = model(x).last_hidden_state
    assert len(out.cross_attentions) == 2 and out.cross_attentions[0].shape == (2, 4, 5, 7)
    assert out.cross_attentions[0][1, :, :, 4:].abs().max() == 0
    fused, eager = both_paths(model, input_ids=x, encoder_hidden_states=enc, encoder_attention_mask=enc_mask)
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused, out.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(again.last_hidden_state, out.last_hidden_state, atol=1e-5, rtol=0)
    assert (no_enc - out.last_hidden_state).abs().max() > 1e-3


# ----------------------------------------------------------------------------- heads and losses
def test_lm_loss_is_shifted_and_ignores_minus_100():
    model = make(GPT2LMHeadModel)
    x = ids()
    labels = x.clone()
    labels[0, 4:] = -100
    with torch.no_grad():
        out = model(x, labels=labels)
    logits = out.logits.double()
    terms = [F.cross_entropy(logits[b, t], labels[b, t + 1]) for b in range(3) for t in range(9) if labels[b, t + 1] != -100]
    torch.testing.assert_close(out.loss.double(), torch.stack(terms).mean(), atol=1e-5, rtol=0)


def test_lm_head_is_tied_and_logits_to_keep():
    model = make(GPT2LMHeadModel)
    assert model.lm_head.weight is model.transformer.wte.weight
    x = ids()
    with torch.no_grad():
        full = model(x).logits
        last = model(x, logits_to_keep=1).logits
    assert last.shape == (3, 1, 1000)
    torch.testing.assert_close(last, full[:, -1:], rtol=0, atol=1e-6)


def test_double_heads_default_token_and_losses():
    model = make(GPT2DoubleHeadsModel)
    assert model.config.num_labels == 1
    x = ids(batch=4).view(2, 2, 10)
    mc_labels = torch.tensor([1, 0])
    with torch.no_grad():
        out = model(x, mc_labels=mc_labels, labels=x)
        explicit = model(x, mc_token_ids=torch.full((2, 2), 9))
        hidden = model.transformer(x).last_hidden_state
    assert out.mc_logits.shape == (2, 2) and out.logits.shape == (2, 2, 10, 1000)
    torch.testing.assert_close(out.mc_logits, explicit.mc_logits, rtol=0, atol=0)
    head = model.multiple_choice_head.summary
    torch.testing.assert_close(out.mc_logits, (hidden[:, :, -1] @ head.weight.T + head.bias).squeeze(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.mc_loss, F.cross_entropy(out.mc_logits, mc_labels), atol=1e-6, rtol=0)
    assert out.loss is not None and out.to_tuple()[0] is out.loss and out.to_tuple()[1] is out.mc_loss


@pytest.mark.parametrize("padding", ["right", "left"])
def test_sequence_classification_pools_last_non_pad_token(padding):
    model = make(GPT2ForSequenceClassification, pad_token_id=0, num_labels=3)
    x = ids()
    lengths = [10, 6, 3]
    for b, n in enumerate(lengths):
        if padding == "right":
            x[b, n:] = 0
        else:
            x[b, : 10 - n] = 0
    with torch.no_grad():
        out = model(x, labels=torch.tensor([0, 2, 1]))
        token_logits = model.score(model.transformer(x).last_hidden_state)
    last = [n - 1 if padding == "right" else 9 for n in lengths]
    torch.testing.assert_close(out.logits, token_logits[torch.arange(3), last], rtol=0, atol=0)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([0, 2, 1])), atol=1e-6, rtol=0)


def test_sequence_classification_problem_types():
    x = ids()
    reg = make(GPT2ForSequenceClassification, pad_token_id=0, num_labels=1)
    target = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        out = reg(x, labels=target)
    assert reg.config.problem_type is None  # inferred for the call (the MSE below), not written into the config
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.squeeze(-1), target), atol=1e-6, rtol=0)
    multi = make(GPT2ForSequenceClassification, pad_token_id=0, num_labels=3)
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    with torch.no_grad():
        out = multi(x, labels=target)
    assert multi.config.problem_type is None
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, target), atol=1e-6, rtol=0)


def test_sequence_classification_without_pad_token(caplog):
    model = make(GPT2ForSequenceClassification, num_labels=2)
    with pytest.raises(ValueError, match="Cannot handle batch sizes > 1 if no padding token is defined."):
        model(ids())
    with torch.no_grad():
        single = model(ids(batch=1))
        logits = model.score(model.transformer(ids(batch=1)).last_hidden_state)
    torch.testing.assert_close(single.logits, logits[:, -1], rtol=0, atol=0)
    padded = make(GPT2ForSequenceClassification, pad_token_id=0, num_labels=2)
    from gpt2_multi.pt import modeling

    modeling._warned.clear()
    embeds = torch.randn(2, 5, 32)
    with caplog.at_level("WARNING", logger="gpt2_multi.pt"), torch.no_grad():
        out = padded(inputs_embeds=embeds)
        logits = padded.score(padded.transformer(inputs_embeds=embeds).last_hidden_state)
    torch.testing.assert_close(out.logits, logits[:, -1], rtol=0, atol=0)
    assert "will not detect padding tokens in `inputs_embeds`" in caplog.text


def test_token_classification_loss_ignores_minus_100():
    model = make(GPT2ForTokenClassification, num_labels=4)
    x = ids()
    labels = torch.randint(0, 4, x.shape)
    labels[:, :3] = -100
    with torch.no_grad():
        out = model(x, labels=labels)
    assert out.logits.shape == (3, 10, 4)
    keep = labels != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]), atol=1e-6, rtol=0)


def test_question_answering_clamps_positions():
    model = make(GPT2ForQuestionAnswering)
    x = ids()
    start = torch.tensor([1, 50, 3])  # 50 is beyond the sequence: clamped to T and ignored
    end = torch.tensor([4, 5, -7])  # -7 is clamped to 0
    with torch.no_grad():
        out = model(x, start_positions=start, end_positions=end)
    s, e = out.start_logits, out.end_logits
    assert s.shape == (3, 10)
    expected = (F.cross_entropy(s[[0, 2]], start[[0, 2]]) + F.cross_entropy(e, torch.tensor([4, 5, 0]))) / 2
    torch.testing.assert_close(out.loss, expected, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("cls", [GPT2LMHeadModel, GPT2ForSequenceClassification, GPT2ForTokenClassification])
def test_a_few_steps_lower_the_loss(cls):
    model = make(cls, pad_token_id=0, num_labels=3)
    model.train()
    x = ids(batch=4, seq=12)
    labels = {GPT2LMHeadModel: x, GPT2ForSequenceClassification: torch.tensor([0, 1, 2, 1]),
              GPT2ForTokenClassification: x % 3}[cls]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = model(x, labels=labels).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_every_parameter_gets_a_gradient():
    model = make(GPT2DoubleHeadsModel)
    x = ids(batch=4).view(2, 2, 10)
    out = model(x, labels=x, mc_labels=torch.tensor([0, 1]))
    (out.loss + out.mc_loss).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "multiple_choice_head.summary.bias":  # a bias shared by all choices cancels in the softmax
            assert p.grad.abs().sum() > 0, name


def test_bool_ids_are_a_dtype_error_that_is_also_hfs_runtime_error():
    """HF's embedding lookup raises RuntimeError on bool ids; ours names the dtype and is that type too."""
    from gpt2_multi.validation import InputDtypeError

    model = make(GPT2Model)
    with pytest.raises(InputDtypeError, match="input_ids must hold integer token ids, got dtype torch.bool") as info:
        model(torch.ones(1, 3, dtype=torch.bool))
    assert isinstance(info.value, RuntimeError)


def test_onednn_linears_equal_torch_products_and_step_aside_for_autograd(monkeypatch):
    """Eager float32 inference sends the LM head and the block linears (more than one row) through oneDNN's inner
    product; the logits are torch's own products' to float32 rounding, and training keeps torch's products."""
    from gpt2_multi.pt import modeling

    if not modeling.ONEDNN_LINEAR:
        pytest.skip("this torch has no oneDNN linear")
    model = make(GPT2LMHeadModel)
    ids = torch.tensor([[5, 17, 99, 3], [8, 1, 2, 250]])
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(modeling.torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(a[1].shape) or real(*a),
                        raising=False)
    with torch.no_grad():
        fast = model(ids).logits
    n_layer = model.config.n_layer
    assert len(calls) == 4 * n_layer + 1  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block, and the head
    with torch.no_grad():
        one_row = model(ids[:1, :1]).logits  # one row: the block linears stay with torch.addmm
    assert len(calls) == 4 * n_layer + 2
    calls.clear()
    monkeypatch.setattr(modeling, "ONEDNN_LINEAR", False)
    with torch.no_grad():
        plain = model(ids).logits
        plain_one = model(ids[:1, :1]).logits
    assert not calls
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one_row, plain_one, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(modeling, "ONEDNN_LINEAR", True)
    model.train()
    loss = model(ids, labels=ids).loss  # autograd: torch's products, which have gradients
    loss.backward()
    assert not calls and model.lm_head.weight.grad is not None and torch.isfinite(model.lm_head.weight.grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_linears_without_hardware_support_compute_in_float32(monkeypatch, dtype):
    """Where the CPU has no bfloat16 / float16 instructions the linears compute in float32 and round once (torch's
    reference kernel there runs at about 1 GFLOP/s); the numbers are the native kernels' (float32 accumulation,
    one rounding): within one half-precision rounding of the float64 product rounded once, either way."""
    from gpt2_multi.pt import modeling

    gen = torch.Generator().manual_seed(0)
    layer = modeling.Conv1D(48, 32).to(dtype)
    head = modeling.LMHead(32, 40, bias=False).to(dtype)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(48, generator=gen))
    x = torch.randn(3, 5, 32, generator=gen).to(dtype)
    exact = (x.double() @ layer.weight.double() + layer.bias.double()).to(dtype)
    exact_head = (x.double() @ head.weight.double().T).to(dtype)
    eps = torch.finfo(dtype).eps
    for native in (False, True):
        monkeypatch.setitem(modeling._NATIVE_HALF, dtype, native)
        with torch.no_grad():
            out, logits = layer(x), head(x)
        assert out.dtype == logits.dtype == dtype and out.shape == (3, 5, 48) and logits.shape == (3, 5, 40)
        torch.testing.assert_close(out.double(), exact.double(), rtol=eps, atol=eps)
        torch.testing.assert_close(logits.double(), exact_head.double(), rtol=eps, atol=eps)
        if not native:
            assert (out == exact).float().mean() > 0.99  # rounded once from float32 sums
    monkeypatch.setitem(modeling._NATIVE_HALF, dtype, False)
    x.requires_grad_(True)
    layer(x).float().sum().backward()  # the float32 path has gradients
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


def test_models_pickle_bias_only_training_gets_gradients_and_a_resized_head_keeps_its_class():
    """Review findings: the half-precision activation wrapper pickles (a whole model through pickle / torch.save),
    a bias-only fine-tune (every other parameter frozen) gets its gradient (oneDNN's op has none), the empty batch
    runs, and resizing an untied head keeps the LMHead (its oneDNN and half-precision paths)."""
    import io
    import pickle

    from gpt2_multi.pt import modeling

    model = make(GPT2LMHeadModel, tie_word_embeddings=False)
    ids = torch.tensor([[5, 17, 99, 3]])
    with torch.no_grad():
        before = model(ids).logits
    again = pickle.loads(pickle.dumps(model))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, before, rtol=0, atol=0)
        assert model(ids[:0]).logits.shape == (0, 4, model.config.vocab_size)
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith("c_attn.bias"))
    model(ids, labels=ids).loss.backward()
    grad = model.transformer.h[0].attn.c_attn.bias.grad
    assert grad is not None and grad.abs().sum() > 0
    model.resize_token_embeddings(model.config.vocab_size + 3)
    assert type(model.lm_head) is modeling.LMHead
