"""Every activation and every attention setting against formulas written here, in every backend.

* each backend's activation table (its ``ACT2FN``) names exactly :data:`gpt2_multi.activations.ACTIVATIONS`,
  in that order, and every entry equals its numpy formula on sample inputs (float64 where the framework
  computes in float64, else float32); the formulas are HF transformers' (checked against HF's own table
  where HF is installed);
* a model with each activation, and with each config setting that changes the numbers (the three attention
  flags alone and together, ``n_inner``, ``layer_norm_epsilon``; each on one activation's model), gives the hidden states of an independent
  float64 numpy GPT-2 (:func:`contract_support.reference_gpt2`) and the PyTorch stack's logits, on every
  position of a batch with a right-padded row; the flags change the reference's numbers, so each comparison
  can fail.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from contract_support import (  # noqa: F401
    BACKEND_PARAMS,
    REFERENCE_ACTIVATIONS,
    call,
    contract_config,
    numpy,
    one_torch_thread,
    reference_gpt2,
    tensor,
    variant_params,
    write_checkpoint,
)

from gpt2_multi.activations import ACTIVATIONS
from gpt2_multi.backends import get, stack_available
from gpt2_multi.checkpoint import load_checkpoint

#: sample inputs: both tails, and densely around 0 where the gelus differ
PROBE = np.concatenate([np.linspace(-8.0, 8.0, 101), np.linspace(-7.0, 7.0, 301)])
#: (atol, rtol) by the dtype the framework computed in
PROBE_TOLERANCE = {np.dtype("float64"): (1e-7, 1e-7), np.dtype("float32"): (2e-6, 1e-5)}
ATOL = 1e-5  # the model against the float64 reference and against PyTorch


def test_the_reference_covers_every_activation():
    assert tuple(REFERENCE_ACTIVATIONS) == ACTIVATIONS


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_every_backends_activation_table_is_the_shared_list_and_the_formulas(backend):
    table = importlib.import_module(get(backend).package).ACT2FN
    assert tuple(table) == ACTIVATIONS
    for name in ACTIVATIONS:
        got = np.asarray(table[name](tensor(backend, PROBE)))
        atol, rtol = PROBE_TOLERANCE[got.dtype]
        np.testing.assert_allclose(got, REFERENCE_ACTIVATIONS[name](PROBE), atol=atol, rtol=rtol, err_msg=name)


def test_the_reference_formulas_are_hfs():
    pytest.importorskip("transformers", reason="HF transformers is the oracle of the formulas")
    torch = pytest.importorskip("torch")
    from transformers.activations import ACT2FN as HF_ACT2FN

    x = torch.from_numpy(PROBE)
    for name in ACTIVATIONS:
        expected = HF_ACT2FN[name](x).numpy()
        np.testing.assert_allclose(REFERENCE_ACTIVATIONS[name](PROBE), expected, atol=1e-7, rtol=1e-7, err_msg=name)


# ------------------------------------------------------------------------------------------ whole models
ATTENTION_FLAGS = {
    "no-scale": {"scale_attn_weights": False},
    "inverse-layer-idx": {"scale_attn_by_inverse_layer_idx": True},
    "reorder-and-upcast": {"reorder_and_upcast_attn": True},
    "inverse-and-reorder": {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True},
    "all-flags": {"scale_attn_weights": False, "scale_attn_by_inverse_layer_idx": True,
                  "reorder_and_upcast_attn": True},
}
#: the other settings that change the numbers
SETTINGS = {**ATTENTION_FLAGS, "n_inner-24": {"n_inner": 24}, "n_inner-48": {"n_inner": 48},
            "layer_norm_epsilon-1e-1": {"layer_norm_epsilon": 1e-1}, "layer_norm_epsilon-1e-3": {"layer_norm_epsilon": 1e-3}}
#: one model per activation (each compiled model costs Flax a second); the settings ride on some of them
SETTING_OF = dict(zip(("gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_accurate", "gelu_fast", "relu",
                       "quick_gelu", "leaky_relu", "relu6"), SETTINGS))
CONFIGS = {name + (f"+{SETTING_OF[name]}" if name in SETTING_OF else ""):
           {"activation_function": name, **SETTINGS.get(SETTING_OF.get(name, ""), {})} for name in ACTIVATIONS}


def test_every_setting_rides_on_an_activation():
    assert set(SETTING_OF.values()) == set(SETTINGS) and len(CONFIGS) == len(ACTIVATIONS)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference-contract")
    paths = {}

    def get_path(name: str):
        if name not in paths:
            paths[name] = write_checkpoint(root / name, "lm", seed=len(paths), **CONFIGS[name])
        return paths[name]

    return get_path


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    ids = np.random.default_rng(2).integers(1, 1000, size=(2, 9))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0  # right padding in one row: its padded queries still attend to its real tokens
    return ids, mask


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize(("backend", "load_kwargs"), variant_params())
def test_every_activation_and_setting_gives_the_reference_numbers(backend, load_kwargs, config_name, checkpoints,
                                                                  loaded):
    path = checkpoints(config_name)
    ckpt = load_checkpoint(path)
    ids, mask = _inputs()
    expected = reference_gpt2(ckpt.tensors, ckpt.config, ids, mask)
    out = get(backend).ops.forward(loaded(backend, path, "lm", **load_kwargs),
                                   {"input_ids": ids, "attention_mask": mask}, {"output_hidden_states": True}, [])
    last = f"hidden_states.{ckpt.config.n_layer}"  # after ln_f: the body's output
    np.testing.assert_allclose(out[last], expected, atol=ATOL, rtol=0, err_msg=f"{config_name}: {last}")
    wte = ckpt.tensors["transformer.wte.weight"].astype(np.float64)
    logits = out["logits"]
    np.testing.assert_allclose(logits, expected @ wte.T, atol=ATOL, rtol=0, err_msg=f"{config_name}: tied logits")
    if backend != "pt" and stack_available("pt"):
        pytorch = get("pt").ops.forward(loaded("pt", path, "lm"), {"input_ids": ids, "attention_mask": mask}, {}, [])
        np.testing.assert_allclose(logits, pytorch["logits"], atol=ATOL, rtol=0, err_msg=f"{config_name}: vs PyTorch")


@pytest.mark.parametrize("config_name", [c for c in sorted(CONFIGS) if c.partition("+")[2] in ATTENTION_FLAGS])
def test_the_attention_flags_change_the_reference(config_name, checkpoints):
    """So that the comparisons above could fail if a stack ignored a flag (upcasting alone only changes precision)."""
    ckpt = load_checkpoint(checkpoints(config_name))
    ids, mask = _inputs()
    flagged = reference_gpt2(ckpt.tensors, ckpt.config, ids, mask)
    plain = reference_gpt2(ckpt.tensors, contract_config(activation_function=ckpt.config.activation_function), ids,
                           mask)
    diff = np.abs(flagged - plain).max()
    if config_name.endswith("+reorder-and-upcast"):
        assert diff == 0
    else:
        assert diff > 1e-3
