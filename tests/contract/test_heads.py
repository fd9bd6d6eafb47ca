"""The DoubleHeads summary settings and cross-attention as contracts: HF transformers' numbers in every backend.

Golden data: ``tests/fixtures/hf-tiny-heads`` (made by ``tests/fixtures/make_heads_golden.py`` with HF PyTorch).

* every ``summary_*`` setting gives HF's ``logits``, ``mc_logits`` (shape included: HF's last / first / mean pool
  dim 1 of (B, C, T, E), the choices axis, so ``mc_logits`` is (B, T)), ``loss`` and ``mc_loss``; where HF cannot
  pair ``mc_logits`` with one label per example, every backend refuses the labels too;
* building such a model logs the pooling warning once per process and summary_type;
* a cross-attention LM gives HF's logits, attentions, cross-attentions and self-attention cache, and one cached
  step with the encoder states gives HF's numbers again;
* encoder states given to a model without cross-attention layers raise the one shared message.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from contract_support import BACKEND_PARAMS, LOAD_VARIANTS, call, has_static_cache, numpy

from gpt2_multi import validation
from gpt2_multi.backends import get, stack_available
from gpt2_multi.config import GPT2Config
from gpt2_multi.validation import InputError

from fixture_cases import HF_TINY

HEADS = Path(__file__).resolve().parents[1] / "fixtures" / "hf-tiny-heads"
INDEX = json.loads((HEADS / "index.json").read_text())
DOUBLE_CASES = sorted(name for name, case in INDEX["cases"].items() if "summary_type" in case)
TOL = dict(atol=1e-4, rtol=1e-4)

MAX_LENGTH = 8  # the Flax cache's length for the cross-attention case
KINDS = {"double": "GPT2DoubleHeadsModel", "lm": "GPT2LMHeadModel"}


# ---------------------------------------------------------------------------------- the registry's adapters
def _load(backend: str, kind: str, path: Path):
    """PyTorch's eager attention (as HF's golden run), every other stack's one path."""
    return get(backend).model_class(KINDS[kind]).from_pretrained(path, **LOAD_VARIANTS.get(backend, {}))


def _past(backend: str, past, length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer (key, value), each (B, H, length, D), from a backend's cache."""
    return get(backend).ops.cache_to_bhsd(past, length)


@pytest.fixture(scope="module")
def models():
    """Loaded models, shared by the module's tests: ``models(backend, kind, checkpoint)``."""
    loaded: dict = {}

    def get(backend: str, kind: str, checkpoint: str):
        key = (backend, kind, checkpoint)
        if key not in loaded:
            loaded[key] = _load(backend, kind, HEADS / checkpoint)
        return loaded[key]

    return get


def _close(backend: str, got, expected, name: str) -> None:
    got = numpy(backend, got)
    assert got.shape == expected.shape, f"{name}: shape {got.shape}, HF's is {expected.shape}"
    np.testing.assert_allclose(got, expected, err_msg=name, **TOL)


# ---------------------------------------------------------------------------------- DoubleHeads summaries
def test_the_golden_cases_touch_every_summary_setting():
    cases = [INDEX["cases"][name] for name in DOUBLE_CASES]
    assert {c["summary_type"] for c in cases} == {"last", "first", "mean", "cls_index"}
    assert {c["summary_use_proj"] for c in cases} == {True, False}
    assert {c["summary_proj_to_labels"] for c in cases if c["summary_use_proj"]} == {True, False}
    assert {c["summary_activation"] for c in cases} >= {None, "tanh", "relu", "gelu"}
    # HF's shapes: (B, C) for cls_index, (B, T) for the others (dim 1 pooled), a trailing E without a 1-wide projection
    shapes = {name: tuple(INDEX["cases"][name]["mc_logits_shape"]) for name in DOUBLE_CASES}
    assert shapes["last_proj_labels"] == (2, 5) and shapes["cls_tanh_labels"] == (2, 2)
    assert shapes["first_noproj"] == (2, 5, 24) and shapes["cls_noproj"] == (2, 2, 24)


@pytest.mark.parametrize("case", DOUBLE_CASES)
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_double_heads_summary_gives_hfs_numbers_and_shapes(backend, case, models):
    meta = INDEX["cases"][case]
    golden = np.load(HEADS / f"{case}.npz")
    model = models(backend, "double", meta["checkpoint"])
    inputs = {k[len("in."):]: golden[k] for k in golden.files if k.startswith("in.")}
    out = call(backend, model, **inputs)
    for name in ("logits", "mc_logits", "loss", "mc_loss"):
        key = f"out.{name}"
        if key in golden.files:
            _close(backend, getattr(out, name), golden[key], f"{backend} {case} {name}")
        else:
            assert getattr(out, name) is None, f"{backend} {case}: {name} without its labels"
    assert tuple(out.mc_logits.shape) == tuple(meta["mc_logits_shape"])


@pytest.mark.parametrize("case", [c for c in DOUBLE_CASES if "bad.mc_labels" in np.load(HEADS / f"{c}.npz").files])
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_mc_labels_hf_cannot_pair_with_mc_logits_are_refused(backend, case, models):
    """Without a 1-wide projection mc_logits keep a trailing E; HF's loss (view(-1, E)) then has more rows than
    labels and raises. Every backend raises too rather than computing some other number."""
    golden = np.load(HEADS / f"{case}.npz")
    model = models(backend, "double", INDEX["cases"][case]["checkpoint"])
    inputs = {k[len("in."):]: golden[k] for k in golden.files if k.startswith("in.")}
    errors: tuple[type[BaseException], ...] = (ValueError,)
    if backend == "tf":
        import tensorflow as tf
        errors = (ValueError, tf.errors.InvalidArgumentError)
    with pytest.raises(errors):
        numpy(backend, call(backend, model, **inputs, mc_labels=golden["bad.mc_labels"]).mc_loss)


def _build_double(backend: str, summary_type: str):
    config = GPT2Config(**INDEX["config"], summary_type=summary_type)
    return get(backend).model_class(KINDS["double"])(config)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_summary_pooling_warning_is_logged_once_per_summary_type(backend, caplog):
    validation._warn_summary_pooling_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="gpt2_multi"):
        for summary_type in ("last", "last", "cls_index", "mean", "cls_index"):
            _build_double(backend, summary_type)
    messages = [r.getMessage() for r in caplog.records if r.name == "gpt2_multi" and "choices axis" in r.getMessage()]
    assert len(messages) == 2, messages
    assert "'last'" in messages[0] and "'mean'" in messages[1]
    assert "(batch, seq)" in messages[0] and "cls_index" in messages[0]


def test_the_warning_needs_no_framework():
    validation._warn_summary_pooling_once.cache_clear()
    validation.warn_summary_pooling(GPT2Config(summary_type="cls_index"))
    assert validation._warn_summary_pooling_once.cache_info().currsize == 0
    validation.warn_summary_pooling(GPT2Config(summary_type="first"))
    validation.warn_summary_pooling(GPT2Config(summary_type="first"))
    assert validation._warn_summary_pooling_once.cache_info().currsize == 1


# ---------------------------------------------------------------------------------- cross-attention
@pytest.fixture(scope="module")
def cross():
    return np.load(HEADS / "cross.npz")


def _cross_inputs(g) -> dict:
    return {"encoder_hidden_states": g["in.encoder_hidden_states"], "encoder_attention_mask": g["in.encoder_attention_mask"]}


def _check_past(backend: str, past, g, prefix: str, length: int) -> None:
    layers = _past(backend, past, length)
    assert len(layers) == INDEX["config"]["n_layer"]
    for i, (key, value) in enumerate(layers):
        _close(backend, key, g[f"out.{prefix}.{i}.key"], f"{backend} {prefix} {i} key")
        _close(backend, value, g[f"out.{prefix}.{i}.value"], f"{backend} {prefix} {i} value")


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_cross_attention_forward_gives_hfs_numbers(backend, models, cross):
    g = cross
    model = models(backend, "lm", "cross")
    out = call(backend, model, input_ids=g["in.input_ids"], attention_mask=g["in.attention_mask"],
                output_attentions=True, **_cross_inputs(g))
    _close(backend, out.logits, g["out.logits"], f"{backend} logits")
    assert len(out.cross_attentions) == INDEX["config"]["n_layer"]
    for i in range(INDEX["config"]["n_layer"]):
        _close(backend, out.attentions[i], g[f"out.attentions.{i}"], f"{backend} attentions {i}")
        _close(backend, out.cross_attentions[i], g[f"out.cross_attentions.{i}"], f"{backend} cross_attentions {i}")
    # the masked encoder positions get no weight
    assert np.all(numpy(backend, out.cross_attentions[0])[1, :, :, 5:] == 0)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_cross_attention_cache_and_cached_step_give_hfs_numbers(backend, models, cross):
    """The cache holds self-attention keys and values only; the step passes the encoder states again."""
    g = cross
    model = models(backend, "lm", "cross")
    ids, mask = g["in.input_ids"], g["in.attention_mask"]
    step_ids, step_mask = g["in.step_input_ids"], g["in.step_attention_mask"]
    t = ids.shape[1]
    if has_static_cache(model):  # Flax: a cache from init_cache, explicit positions, a mask over all of it
        b = ids.shape[0]
        full_mask = np.zeros((b, MAX_LENGTH), np.int32)
        full_mask[:, :t] = mask
        first = model(ids, attention_mask=full_mask, position_ids=np.broadcast_to(np.arange(t), (b, t)),
                      past_key_values=model.init_cache(b, MAX_LENGTH), **_cross_inputs(g))
        full_mask[:, : t + 1] = step_mask
        step = model(step_ids, attention_mask=full_mask, position_ids=np.full((b, 1), t),
                     past_key_values=first.past_key_values, output_attentions=True, **_cross_inputs(g))
    else:
        first = call(backend, model, input_ids=ids, attention_mask=mask, use_cache=True, **_cross_inputs(g))
        step = call(backend, model, input_ids=step_ids, attention_mask=step_mask, past_key_values=first.past_key_values,
                    use_cache=True, output_attentions=True, **_cross_inputs(g))
    _close(backend, first.logits, g["out.logits"], f"{backend} cached logits")
    _check_past(backend, first.past_key_values, g, "past", t)
    _close(backend, step.logits, g["out.step_logits"], f"{backend} step logits")
    for i in range(INDEX["config"]["n_layer"]):
        _close(backend, step.cross_attentions[i], g[f"out.step_cross_attentions.{i}"], f"{backend} step cross_attentions {i}")
    _check_past(backend, step.past_key_values, g, "step_past", t + 1)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_encoder_states_without_cross_attention_layers_raise_the_shared_message(backend):
    model = _load(backend, "lm", HF_TINY / "lm" / "safetensors")
    assert not model.config.add_cross_attention
    ids = np.arange(1, 7).reshape(2, 3)
    enc = np.zeros((2, 4, model.config.n_embd), np.float32)
    with pytest.raises(InputError, match=re.escape(validation.NO_CROSS_ATTENTION)):
        call(backend, model, input_ids=ids, encoder_hidden_states=enc)


def test_flax_base_model_takes_encoder_states_and_other_heads_do_not(models, cross):
    if not stack_available("flax"):
        pytest.skip("the flax stack is not installed")
    from gpt2_multi.flax import FlaxGPT2ForSequenceClassification, FlaxGPT2Model

    g = cross
    base = FlaxGPT2Model.from_pretrained(HEADS / "cross")
    out = base(g["in.input_ids"], attention_mask=g["in.attention_mask"], output_attentions=True, **_cross_inputs(g))
    lm = models("flax", "lm", "cross")
    wte = np.asarray(lm.params["transformer"]["wte"]["embedding"])
    np.testing.assert_allclose(np.asarray(out.last_hidden_state) @ wte.T, g["out.logits"], **TOL)  # tied LM head
    assert len(out.cross_attentions) == INDEX["config"]["n_layer"]
    # HF gives the cross-attention inputs to the body and the LM head only; the other heads have the layers
    # (their checkpoints hold them) but take no encoder states
    seqcls = FlaxGPT2ForSequenceClassification.from_pretrained(HEADS / "cross", num_labels=2)
    assert "crossattention" in seqcls.params["transformer"]["h"]["0"]
    with pytest.raises(TypeError, match="encoder_hidden_states"):
        seqcls(g["in.input_ids"][:1], **{k: v[:1] for k, v in _cross_inputs(g).items()})
    with pytest.raises(InputError, match=r"encoder_hidden_states has shape \(1, 7, 24\)"):
        lm(g["in.input_ids"], encoder_hidden_states=g["in.encoder_hidden_states"][:1])
