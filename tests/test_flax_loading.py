"""Flax weights through the shared checkpoint layer: every format in, safetensors/flax out, HF loading semantics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.flax
jax = pytest.importorskip("jax")
flax = pytest.importorskip("flax")
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import serialization, traverse_util  # noqa: E402

from gpt2_multi.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from gpt2_multi.flax import (  # noqa: E402
    FlaxGPT2ForSequenceClassification,
    FlaxGPT2ForTokenClassification,
    FlaxGPT2LMHeadModel,
    FlaxGPT2Model,
)

from fixture_cases import checkpoint_dir, golden_case  # noqa: E402


def flat(params) -> dict[tuple[str, ...], np.ndarray]:
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


def test_param_tree_is_hf_flax_tree():
    """Our params have exactly the paths, shapes and values of HF's flax_model.msgpack (read with Flax itself)."""
    for head, cls in (("lm", FlaxGPT2LMHeadModel), ("base", FlaxGPT2Model)):
        raw = serialization.msgpack_restore((checkpoint_dir(head, "flax") / "flax_model.msgpack").read_bytes())
        hf = flat(raw)
        ours = flat(cls.from_pretrained(checkpoint_dir(head, "safetensors")).params)
        assert set(ours) == set(hf), set(ours) ^ set(hf)
        for path, value in hf.items():
            np.testing.assert_array_equal(ours[path], value, err_msg="/".join(path))
        shapes = traverse_util.flatten_dict(cls.from_pretrained(checkpoint_dir(head, "flax")).params_shape_tree())
        assert {k: tuple(v.shape) for k, v in shapes.items()} == {k: v.shape for k, v in hf.items()}


def test_from_pretrained_never_initialises(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained must not run module.init")

    monkeypatch.setattr(FlaxGPT2LMHeadModel, "init_weights", refuse)
    real_init = nn.Module.init

    def only_abstract(self, *args, **kwargs):
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        assert all(isinstance(x, jax.core.Tracer) for x in leaves if hasattr(x, "shape")), "init ran on real arrays"
        return real_init(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "init", only_abstract)
    model = FlaxGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"))
    assert model.params["transformer"]["h"]["1"]["mlp"]["c_fc"]["kernel"].shape == (128, 32)


def test_save_pretrained_flax_format_is_hfs_msgpack_tree(tmp_path):
    """``format="flax"`` writes HF's flax_model.msgpack: read with Flax itself, it is our params tree, value for value.
    (The files, names and round trips of every format: tests/contract/test_roundtrip.py.)"""
    model = FlaxGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "flax"))
    model.save_pretrained(tmp_path / "msgpack", format="flax")
    raw = flat(serialization.msgpack_restore((tmp_path / "msgpack" / "flax_model.msgpack").read_bytes()))
    assert set(raw) == set(flat(model.params))
    for path, value in flat(model.params).items():
        np.testing.assert_array_equal(raw[path], value)


def test_missing_head_is_initialised_and_reported():
    model, info = FlaxGPT2ForTokenClassification.from_pretrained(checkpoint_dir("base", "safetensors"), output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    kernel = np.asarray(model.params["classifier"]["kernel"])
    assert kernel.shape == (32, 3) and 0.005 < kernel.std() < 0.05
    np.testing.assert_array_equal(np.asarray(model.params["classifier"]["bias"]), 0)
    base = FlaxGPT2Model.from_pretrained(checkpoint_dir("base", "safetensors"))
    np.testing.assert_array_equal(np.asarray(model.params["transformer"]["wte"]["embedding"]),
                                  np.asarray(base.params["wte"]["embedding"]))


def test_other_head_is_unexpected_and_body_is_shared():
    model, info = FlaxGPT2Model.from_pretrained(checkpoint_dir("seqcls", "safetensors"), output_loading_info=True)
    assert info["unexpected_keys"] == ["score.weight"] and info["missing_keys"] == []
    assert "score" not in model.params and "wte" in model.params


def test_mismatched_head_size():
    path = checkpoint_dir("seqcls", "safetensors")
    with pytest.raises(CheckpointError, match=r"score.weight.*\(3, 32\).*\(5, 32\)"):
        FlaxGPT2ForSequenceClassification.from_pretrained(path, num_labels=5)
    model, info = FlaxGPT2ForSequenceClassification.from_pretrained(path, num_labels=5, ignore_mismatched_sizes=True,
                                                                     output_loading_info=True)
    assert info["mismatched_keys"] == [("score.weight", (3, 32), (5, 32))]
    assert model.params["score"]["kernel"].shape == (32, 5)
    assert model(np.ones((2, 3), int)).logits.shape == (2, 5)


def test_missing_body_weight_names_it(tmp_path):
    ckpt = load_checkpoint(checkpoint_dir("base", "safetensors"))
    tensors = {k: v for k, v in ckpt.tensors.items() if k != "transformer.h.1.ln_2.bias"}
    from gpt2_multi.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, tensors, ckpt.config, architecture="GPT2Model")
    with pytest.raises(CheckpointError, match=r"h\.1\.ln_2\.bias"):
        FlaxGPT2Model.from_pretrained(tmp_path)


def test_bfloat16_checkpoint_loads_into_float32(tmp_path):
    model = FlaxGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"))
    model.save_pretrained(tmp_path, params=model.to_bf16())
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.tensors["transformer.wte.weight"].dtype.name == "bfloat16"
    again = FlaxGPT2LMHeadModel.from_pretrained(tmp_path)
    assert again.params["transformer"]["wte"]["embedding"].dtype == jnp.float32
    ids = np.arange(1, 9).reshape(2, 4)
    np.testing.assert_allclose(np.asarray(again(ids).logits), np.asarray(model(ids).logits), atol=0.05)


@pytest.mark.slow
def test_load_peak_memory_is_near_the_weights_size(tmp_path):
    """A random gpt2-small-sized checkpoint (124M parameters, 498 MB) loads with peak RSS growth under 1.5x its weights."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "flax_load_memory.py"
    res = subprocess.run([sys.executable, str(script), "--n-layer", "12", "--dir", str(tmp_path), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["weights_mb"] > 490 and result["params_mb"] == result["weights_mb"]
    assert result["ratio"] < 1.5, result


def test_do_init_false_returns_params_separately(tmp_path):
    model, params = FlaxGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), _do_init=False)
    with pytest.raises(ValueError, match="created with _do_init=False"):  # HF: params cannot be accessed
        model.params  # noqa: B018
    with pytest.raises(ValueError, match="created with _do_init=False"):
        model.params = params
    ids = golden_case("lm_plain").inputs["input_ids"]
    with pytest.raises(ValueError, match="keeps no params"):
        model(ids)
    with pytest.raises(ValueError, match="keeps no params"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    model.save_pretrained(tmp_path / "saved", params=params)  # with the params passed, as HF
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    expected = golden_case("lm_plain").expected["logits"]
    np.testing.assert_allclose(np.asarray(model(ids, params=params).logits), expected, atol=1e-4)
    model.enable_gradient_checkpointing()
    assert model.module.remat
    np.testing.assert_allclose(np.asarray(model(ids, params=params).logits), expected, atol=1e-4)


def test_to_bf16_params_save_as_bfloat16_and_to_fp32_restores(tmp_path):
    model = FlaxGPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"))
    half = model.to_bf16()
    assert {str(x.dtype) for x in jax.tree_util.tree_leaves(half)} == {"bfloat16"}
    assert {str(x.dtype) for x in jax.tree_util.tree_leaves(model.to_fp16())} == {"float16"}
    model.save_pretrained(tmp_path, params=half)
    from gpt2_multi.checkpoint import load_checkpoint

    assert {str(v.dtype) for v in load_checkpoint(tmp_path).tensors.values()} == {"bfloat16"}
    back = model.to_fp32(half)
    assert {str(x.dtype) for x in jax.tree_util.tree_leaves(back)} == {"float32"}
