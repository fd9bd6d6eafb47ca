"""Every head's outputs as a contract, in every backend: HF's output class, HF's field names in HF's order, and
HF's shapes, with and without labels, output flags and the cache; ``return_dict=False`` gives the same values as
a tuple in that order, and an output indexes by name and position as HF's ``ModelOutput`` does.

The modes: ``defaults`` (no labels, no flags; the cache as the stack's default is: on in PyTorch and TensorFlow,
``config.use_cache``; Flax caches only into a cache from ``init_cache``, as HF's Flax models), ``everything``
(labels, both output flags and a cache) and ``no-cache`` (labels and flags, the cache off).

Shapes are HF's: HF's PyTorch models' layout, except where HF's TensorFlow models differ (multiple choice: HF's
TF model keeps the choices axis of every hidden state and attention map, HF's PyTorch model flattens it into the
batch axis but for the last hidden state); a stack HF has no class for (Flax DoubleHeads) follows PyTorch's.
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
from contract_support import (  # noqa: F401
    BACKEND_PARAMS,
    CACHE_HEADS,
    DiffersFromTheContract,
    backend_param,
    call,
    has_static_cache,
    numpy,
    one_torch_thread,
    write_checkpoint,
)

from gpt2_multi.backends import BACKENDS, get
from gpt2_multi.conformance.cases import HEADS

#: HF's output class of each head and its fields, in HF's order (transformers 4.57, checked below where installed)
HF_OUTPUTS = {
    "base": ("BaseModelOutputWithPastAndCrossAttentions",
             ("last_hidden_state", "past_key_values", "hidden_states", "attentions", "cross_attentions")),
    "lm": ("CausalLMOutputWithCrossAttentions",
           ("loss", "logits", "past_key_values", "hidden_states", "attentions", "cross_attentions")),
    "double": ("GPT2DoubleHeadsModelOutput",
               ("loss", "mc_loss", "logits", "mc_logits", "past_key_values", "hidden_states", "attentions")),
    "seqcls": ("SequenceClassifierOutputWithPast", ("loss", "logits", "past_key_values", "hidden_states", "attentions")),
    "tokcls": ("TokenClassifierOutput", ("loss", "logits", "hidden_states", "attentions")),
    "qa": ("QuestionAnsweringModelOutput", ("loss", "start_logits", "end_logits", "hidden_states", "attentions")),
}
#: the stacks whose multiple-choice hidden states and attentions keep the choices axis (HF's TF layout)
CHOICES_KEPT = ("tf",)
MODES = ("defaults", "everything", "no-cache")
B, C, T = 2, 2, 5

#: (backend, head, mode) -> why the stack's outputs differ from the contract (the test raises DiffersFromTheContract)
KNOWN_DIFFERENCES: dict[tuple[str, str, str], str] = {}


def _params():
    params = []
    for b in BACKENDS:
        for head in HEADS:
            for mode in MODES:
                reason = KNOWN_DIFFERENCES.get((b, head, mode))
                marks = [pytest.mark.xfail(strict=True, raises=DiffersFromTheContract, reason=reason)] if reason else []
                params.append(backend_param(b, head, mode, id=f"{b}-{head}-{mode}", marks=marks))
    return params


def test_the_field_table_is_hfs():
    outputs = pytest.importorskip("transformers.modeling_outputs", reason="HF transformers is the oracle of the fields")
    from transformers.models.gpt2 import modeling_gpt2

    for name, fields in HF_OUTPUTS.values():
        cls = getattr(outputs, name, None) or getattr(modeling_gpt2, name)
        assert tuple(f.name for f in dataclasses.fields(cls)) == fields, name


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_stack_has_hfs_output_class_and_fields(backend, head):
    name, fields = HF_OUTPUTS[head]
    cls = getattr(importlib.import_module(get(backend).package), get(backend).class_prefix + name)
    assert tuple(f.name for f in dataclasses.fields(cls)) == fields


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs-contract")
    return {head: write_checkpoint(root / head, head, seed=i) for i, head in enumerate(HEADS)}


def _inputs(head: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(input_ids, labels) for one head: (B, T) ids, (B, C, T) for multiple choice."""
    rng = np.random.default_rng(7)
    ids = rng.integers(1, 1000, size=(B, C, T) if head == "double" else (B, T))
    labels = {
        "base": {},
        "lm": {"labels": ids},
        "double": {"labels": ids, "mc_labels": np.array([1, 0])},
        "seqcls": {"labels": np.array([2, 0])},
        "tokcls": {"labels": ids % 3},
        "qa": {"start_positions": np.array([1, 3]), "end_positions": np.array([2, 4])},
    }[head]
    return ids, labels


def _cache_kwargs(model, ids: np.ndarray, on: bool) -> dict:
    if has_static_cache(model):  # Flax: a cache only into one from init_cache, with explicit positions
        if not on:
            return {}
        rows = int(np.prod(ids.shape[:-1]))
        return {"past_key_values": model.init_cache(rows, ids.shape[-1]),
                "position_ids": np.broadcast_to(np.arange(ids.shape[-1]), ids.shape).copy()}
    return {"use_cache": on}


def _expected_fields(backend: str, head: str, mode: str, model) -> list[str]:
    fields = HF_OUTPUTS[head][1]
    labelled = mode != "defaults" and head != "base"
    flagged = mode != "defaults"
    cached = head in CACHE_HEADS and (mode == "everything" or (mode == "defaults" and not has_static_cache(model)))
    present = {"loss": labelled, "mc_loss": labelled and head == "double", "past_key_values": cached,
               "hidden_states": flagged, "attentions": flagged, "cross_attentions": False}
    return [f for f in fields if present.get(f, True)]


def _shapes(backend: str, head: str, config) -> dict[str, tuple]:
    """HF's shape of every single-array output, and of each entry of the per-layer ones."""
    e, h, v, n = config.n_embd, config.n_head, config.vocab_size, config.num_labels
    lead = (B, C) if head == "double" else (B,)
    rows = B * C if head == "double" else B
    kept = head == "double" and backend in CHOICES_KEPT
    shapes = {
        "loss": (), "mc_loss": (), "last_hidden_state": (*lead, T, e), "mc_logits": (B, C),
        "logits": {"lm": (B, T, v), "double": (B, C, T, v), "seqcls": (B, n), "tokcls": (B, T, n)}.get(head),
        "start_logits": (B, T), "end_logits": (B, T),
        # HF's PyTorch model flattens the choices in every hidden state but the last (after ln_f, reshaped back)
        "hidden_states": [(*lead, T, e) if kept or i == config.n_layer else (rows, T, e) for i in range(config.n_layer + 1)],
        "attentions": [(*lead, h, T, T) if kept else (rows, h, T, T)] * config.n_layer,
        "past_key_values": [(rows, h, T, config.head_dim)] * config.n_layer,  # (B, H, S, D) per key and value
    }
    return shapes


def _leaves(value) -> list:
    if hasattr(value, "to_legacy_cache"):  # PyTorch's DynamicCache: its (key, value) pairs
        return _leaves(value.to_legacy_cache())
    if isinstance(value, dict):
        return [leaf for key in sorted(value) for leaf in _leaves(value[key])]
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


@pytest.mark.parametrize(("backend", "head", "mode"), _params())
def test_every_heads_outputs_are_hfs_fields_in_hfs_order_and_shapes(backend, head, mode, checkpoints, loaded):
    model = loaded(backend, checkpoints[head], head)
    config = model.config
    ids, labels = _inputs(head)
    kwargs = {"input_ids": ids}
    if mode != "defaults":
        kwargs.update(labels, output_hidden_states=True, output_attentions=True)
        if head in CACHE_HEADS:
            kwargs.update(_cache_kwargs(model, ids, mode == "everything"))
    out = call(backend, model, **kwargs)
    name = get(backend).class_prefix + HF_OUTPUTS[head][0]
    assert type(out).__name__ == name
    expected = _expected_fields(backend, head, mode, model)
    assert list(out.keys()) == expected
    for i, key in enumerate(expected):  # by name, attribute and position, as HF's ModelOutput
        assert out[key] is getattr(out, key) and out[i] is out[key], key
    for key in set(HF_OUTPUTS[head][1]) - set(expected):
        assert getattr(out, key) is None and key not in out, key

    as_tuple = call(backend, model, **kwargs, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(expected)
    got, want = _leaves(as_tuple), _leaves(list(out.values()))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(numpy(backend, a), numpy(backend, b))

    shapes, mismatches = _shapes(backend, head, config), []
    for key in expected:
        value = out[key]
        if key == "past_key_values":
            layers = list(value) if not has_static_cache(model) else get(backend).ops.cache_to_bhsd(value, T)
            assert len(layers) == config.n_layer
            for layer, shape in zip(layers, shapes[key]):
                pair = [numpy(backend, x) for x in layer]  # a native layer iterates to its (key, value)
                assert [p.shape for p in pair] == [shape, shape], key
        elif key in ("hidden_states", "attentions"):
            got_shapes = [tuple(np.shape(numpy(backend, x))) for x in value]
            if got_shapes != shapes[key]:
                mismatches.append(f"{key}: {got_shapes}, HF's {shapes[key]}")
        else:
            assert tuple(np.shape(numpy(backend, value))) == shapes[key], key
    if "hidden_states" in expected:  # the last entry is after ln_f: the body's output
        assert len(out.hidden_states) == config.n_layer + 1 and len(out.attentions) == config.n_layer
        if head == "base":
            np.testing.assert_array_equal(numpy(backend, out.hidden_states[-1]), numpy(backend, out.last_hidden_state))
    if mismatches:
        raise DiffersFromTheContract("; ".join(mismatches))
