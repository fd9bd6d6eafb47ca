"""The PyTorch stack's library surface: from_pretrained / save_pretrained through the shared checkpoint
layer, HF's PreTrainedModel helpers, dtypes, gradient checkpointing, outputs, torch.compile, and the
import guard."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gpt2_multi import GPT2Config  # noqa: E402
from gpt2_multi.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from gpt2_multi.pt import (  # noqa: E402
    CausalLMOutputWithCrossAttentions,
    GPT2DoubleHeadsModel,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
)
from tiny import tiny_config  # noqa: E402

from fixture_cases import checkpoint_dir, golden_case  # noqa: E402

pytestmark = pytest.mark.torch

tiny = tiny_config


def ids(batch=2, seq=8, seed=0):
    return torch.randint(1, 1000, (batch, seq), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- init
def test_init_follows_hf():
    torch.manual_seed(0)
    cfg = tiny(n_embd=64, n_layer=4, vocab_size=5000, initializer_range=0.05)
    model = GPT2LMHeadModel(cfg)
    sd = model.state_dict()
    assert abs(sd["transformer.wte.weight"].std().item() - 0.05) < 0.003
    assert abs(sd["transformer.h.0.attn.c_attn.weight"].std().item() - 0.05) < 0.005
    scaled = 0.05 / (2 * 4) ** 0.5
    for name in ("transformer.h.1.attn.c_proj.weight", "transformer.h.2.mlp.c_proj.weight"):
        assert abs(sd[name].std().item() - scaled) < 0.15 * scaled, name
    assert torch.all(sd["transformer.h.0.ln_1.weight"] == 1) and torch.all(sd["transformer.h.0.attn.c_attn.bias"] == 0)
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)  # Conv1D: (in, out)


def test_state_dict_names_are_hf_names():
    from gpt2_multi.checkpoint import expected_shapes

    for cls in (GPT2Model, GPT2LMHeadModel, GPT2DoubleHeadsModel, GPT2ForSequenceClassification,
                GPT2ForTokenClassification, GPT2ForQuestionAnswering):
        cfg = tiny(num_labels=3, add_cross_attention=True, tie_word_embeddings=False)
        model = cls(cfg)
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert got == expected_shapes(cfg, cls.architecture), cls.__name__


# ----------------------------------------------------------------------------- loading
def test_loading_info_and_head_init(caplog):
    """A seq-cls model from an LM checkpoint: body loaded, `score` new (reported and initialised)."""
    with caplog.at_level("WARNING", logger="gpt2_multi.pt"):
        model, info = GPT2ForSequenceClassification.from_pretrained(checkpoint_dir("lm", "safetensors"), output_loading_info=True)
    assert info["missing_keys"] == ["score.weight"] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert "score.weight" in caplog.text
    w = model.score.weight
    assert not w.is_meta and 0.005 < w.std().item() < 0.05  # N(0, 0.02) over 3 x 32 values
    lm = GPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"))
    torch.testing.assert_close(model.transformer.wte.weight, lm.transformer.wte.weight, rtol=0, atol=0)


def test_base_from_head_checkpoint_drops_the_head():
    model, info = GPT2Model.from_pretrained(checkpoint_dir("qa", "safetensors"), output_loading_info=True)
    assert info["unexpected_keys"] == ["qa_outputs.bias", "qa_outputs.weight"] or sorted(info["unexpected_keys"]) == [
        "qa_outputs.bias", "qa_outputs.weight"]
    assert info["missing_keys"] == []
    case = golden_case("base_plain")
    qa_body = GPT2ForQuestionAnswering.from_pretrained(checkpoint_dir("qa", "safetensors")).transformer
    x = torch.from_numpy(case.inputs["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(model(x).last_hidden_state, qa_body(x).last_hidden_state, rtol=0, atol=0)


def test_mismatched_head_and_config_overrides():
    path = checkpoint_dir("seqcls", "safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatch for 'score.weight'.*\(3, 32\).*\(5, 32\)"):
        GPT2ForSequenceClassification.from_pretrained(path, num_labels=5)
    model, info = GPT2ForSequenceClassification.from_pretrained(path, num_labels=5, ignore_mismatched_sizes=True,
                                                                output_loading_info=True)
    assert model.config.num_labels == 5 and model.score.weight.shape == (5, 32)
    assert info["mismatched_keys"] == [("score.weight", (3, 32), (5, 32))]
    with pytest.raises(TypeError, match="not_a_field"):
        GPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), not_a_field=1)
    model = GPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), attn_pdrop=0.25)
    assert model.config.attn_pdrop == 0.25 and model.transformer.h[0].attn.attn_dropout.p == 0.25


def test_explicit_config_and_hub_cache_name(tmp_path, monkeypatch):
    import shutil

    config = GPT2Config.from_pretrained(checkpoint_dir("lm", "safetensors"))
    config.attn_pdrop = 0.3
    model = GPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), config=config)
    assert model.config.attn_pdrop == 0.3
    # a hub name resolved in the local HF cache, offline
    snapshot = tmp_path / "models--someone--tiny-gpt2" / "snapshots" / "abc123"
    shutil.copytree(checkpoint_dir("lm", "safetensors"), snapshot)
    (tmp_path / "models--someone--tiny-gpt2" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-gpt2" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from_hub = GPT2LMHeadModel.from_pretrained("someone/tiny-gpt2")
    torch.testing.assert_close(from_hub.transformer.wte.weight, model.transformer.wte.weight, rtol=0, atol=0)


def test_untied_head_from_tied_checkpoint_is_initialised():
    model, info = GPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), tie_word_embeddings=False,
                                                  output_loading_info=True)
    assert info["missing_keys"] == ["lm_head.weight"]
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert 0.01 < model.lm_head.weight.std().item() < 0.03


@pytest.mark.parametrize("fmt", ["safetensors", "pt-bin"])
def test_save_records_the_dtype_and_reload_keeps_the_tie(tmp_path, fmt):
    """PyTorch's part of a round trip: config.json records ``torch_dtype`` and the reloaded head is the embedding
    object itself. (Files, names and bit-exact round trips across every backend and format:
    tests/contract/test_roundtrip.py.)"""
    torch.manual_seed(0)
    model = GPT2DoubleHeadsModel(tiny(pad_token_id=0)).eval()
    model.save_pretrained(tmp_path, safe_serialization=fmt == "safetensors")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["GPT2DoubleHeadsModel"] and config["torch_dtype"] == "float32"
    again = GPT2DoubleHeadsModel.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert again.lm_head.weight is again.transformer.wte.weight


def test_sharded_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny(tie_word_embeddings=False)).eval()
    written = model.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and len(written) > 3
    again = GPT2LMHeadModel.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_loaded_parameters_are_writable_and_the_file_is_untouched(tmp_path):
    """safetensors are memory-mapped copy-on-write: training writes to private pages, never to the file."""
    torch.manual_seed(0)
    GPT2LMHeadModel(tiny()).save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    model = GPT2LMHeadModel.from_pretrained(tmp_path)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(ids(), labels=ids()).loss.backward()
    opt.step()
    with torch.no_grad():
        model.transformer.h[0].ln_1.weight.add_(1.0)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    reloaded = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert not torch.equal(reloaded.transformer.wte.weight, model.transformer.wte.weight)
    # saving over the directory the weights are mapped from is safe (atomic replace)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(GPT2LMHeadModel.from_pretrained(tmp_path).transformer.h[0].ln_1.weight,
                               model.transformer.h[0].ln_1.weight, rtol=0, atol=0)


def test_safetensors_weights_are_not_copied(tmp_path):
    """One copy of the weights: parameters live in a private (copy-on-write) mapping of the file."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    torch.manual_seed(0)
    GPT2LMHeadModel(tiny()).save_pretrained(tmp_path)
    model = GPT2LMHeadModel.from_pretrained(tmp_path)
    file = str((tmp_path / "model.safetensors").resolve())
    regions = []
    for line in maps.read_text().splitlines():
        if line.endswith(file):
            span, perms = line.split()[:2]
            lo, hi = (int(v, 16) for v in span.split("-"))
            regions.append((lo, hi, perms))
    for name, p in model.named_parameters():
        inside = [perms for lo, hi, perms in regions if lo <= p.data_ptr() < hi]
        assert inside == ["rw-p"], (name, inside)  # writable, private: writes never reach the file
    converted = GPT2LMHeadModel.from_pretrained(tmp_path, torch_dtype=torch.float16)
    ptr = converted.transformer.wte.weight.data_ptr()
    assert not any(lo <= ptr < hi for lo, hi, _ in regions)  # a dtype change makes its own copy


def test_torch_dtype():
    path = checkpoint_dir("lm", "safetensors")
    x = torch.from_numpy(golden_case("lm_plain").inputs["input_ids"])
    ref = GPT2LMHeadModel.from_pretrained(path)
    for spec in (torch.bfloat16, "bfloat16"):
        model = GPT2LMHeadModel.from_pretrained(path, torch_dtype=spec)
        assert model.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in model.parameters())
        with torch.no_grad():
            torch.testing.assert_close(model(x).logits.float(), ref(x).logits, atol=0.05, rtol=0.05)
    assert GPT2LMHeadModel.from_pretrained(path, torch_dtype="auto").dtype == torch.float32
    assert GPT2LMHeadModel.from_pretrained(path, dtype=torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="torch_dtype"):
        GPT2LMHeadModel.from_pretrained(path, torch_dtype="int8")


def test_bfloat16_save_and_auto_load(tmp_path):
    model = GPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"), torch_dtype=torch.bfloat16)
    model.save_pretrained(tmp_path)
    assert load_checkpoint(tmp_path).tensors["transformer.wte.weight"].dtype.name == "bfloat16"
    again = GPT2LMHeadModel.from_pretrained(tmp_path, torch_dtype="auto")
    assert again.dtype == torch.bfloat16
    torch.testing.assert_close(again.transformer.wte.weight, model.transformer.wte.weight, rtol=0, atol=0)


# ----------------------------------------------------------------------------- PreTrainedModel helpers
def test_num_parameters():
    model = GPT2LMHeadModel(tiny())
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(unique.values()) == load_checkpoint(checkpoint_dir("lm", "safetensors")).num_parameters()
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters() - 1000 * 32 - 64 * 32
    model.transformer.wpe.weight.requires_grad_(False)
    assert model.num_parameters(only_trainable=True) == model.num_parameters() - 64 * 32
    assert GPT2LMHeadModel(tiny(tie_word_embeddings=False)).num_parameters() == model.num_parameters() + 1000 * 32


def test_resize_token_embeddings_keeps_the_tie():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny()).eval()
    old = model.get_input_embeddings().weight.detach().clone()
    emb = model.resize_token_embeddings(1003, pad_to_multiple_of=8)
    assert emb.weight.shape == (1008, 32) and model.config.vocab_size == 1008
    assert model.lm_head.weight is emb.weight
    torch.testing.assert_close(emb.weight[:1000], old, rtol=0, atol=0)
    torch.testing.assert_close(emb.weight[1000:].mean(0), old.mean(0), atol=1e-3, rtol=0)  # mean resizing
    with torch.no_grad():
        out = model(torch.tensor([[1005, 3, 1007]]))
    assert out.logits.shape == (1, 3, 1008)
    shrunk = model.resize_token_embeddings(500)
    assert shrunk.weight.shape == (500, 32) and model.lm_head.weight is shrunk.weight
    assert model.resize_token_embeddings() is shrunk


def test_resize_untied_head_and_tie_weights():
    model = GPT2LMHeadModel(tiny(tie_word_embeddings=False))
    model.resize_token_embeddings(1010, mean_resizing=False)
    assert model.lm_head.weight.shape == (1010, 32) and model.lm_head.weight is not model.transformer.wte.weight
    model.config.tie_word_embeddings = True
    model.tie_weights()
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.get_output_embeddings() is model.lm_head and GPT2Model(tiny()).get_output_embeddings() is None


def test_gradient_checkpointing_same_gradients(caplog):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny())
    model.train()
    x = ids()
    model(x, labels=x).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    from gpt2_multi.pt import modeling

    modeling._warned.clear()
    with caplog.at_level("WARNING", logger="gpt2_multi.pt"):
        out = model(x, labels=x, use_cache=True)
    assert out.past_key_values is None and "incompatible with gradient checkpointing" in caplog.text
    out.loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n], atol=1e-6, rtol=1e-5, msg=n)
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing


def test_device_and_dtype_moves():
    model = GPT2LMHeadModel(tiny()).to("cpu").to(torch.float64)
    assert model.device == torch.device("cpu") and model.dtype == torch.float64
    with torch.no_grad():
        assert model(ids()).logits.dtype == torch.float64
    assert model.lm_head.weight is model.transformer.wte.weight


def test_output_access_and_pytree():
    import torch.utils._pytree as pytree

    model = GPT2LMHeadModel(tiny()).eval()
    with torch.no_grad():
        out = model(ids(), use_cache=False)
    assert isinstance(out, CausalLMOutputWithCrossAttentions)
    assert out.logits is out["logits"] is out[0] and list(out.keys()) == ["logits"]
    assert out.loss is None and out.past_key_values is None
    leaves, spec = pytree.tree_flatten(out)
    assert len(leaves) == 1 and leaves[0] is out.logits
    rebuilt = pytree.tree_unflatten([leaves[0] * 2], spec)
    assert isinstance(rebuilt, CausalLMOutputWithCrossAttentions)
    torch.testing.assert_close(rebuilt.logits, out.logits * 2)


# ----------------------------------------------------------------------------- torch.compile
@pytest.mark.slow
def test_compiled_forward_matches_eager():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny(n_layer=1)).eval()
    x = ids()
    compiled = torch.compile(model, backend="inductor", fullgraph=True)  # no graph breaks
    start = time.time()
    with torch.no_grad():
        expected = model(x, use_cache=False).logits
        got = compiled(x, use_cache=False).logits
        got_again = compiled(ids(seed=1), use_cache=False).logits
    assert time.time() - start < 300
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(got_again, model(ids(seed=1), use_cache=False).logits, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- import guard
def test_import_pulls_no_other_framework():
    code = (
        "import sys, gpt2_multi.pt\n"
        "bad = [m for m in ('tensorflow', 'keras', 'jax', 'flax', 'transformers') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_missing_torch_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # makes `import torch` raise ImportError\n"
        "try:\n"
        "    import gpt2_multi.pt\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'gpt2-multi[torch]'" in out.stdout, out.stdout + out.stderr



# ------------------------------------------------------------------ HF's generic loading habits (issue 17)
def _small_config(**overrides):
    from gpt2_multi import GPT2Config

    return GPT2Config(**{"vocab_size": 100, "n_positions": 16, "n_embd": 8, "n_layer": 1, "n_head": 2, **overrides})


def test_from_pretrained_none_with_config_and_state_dict():
    from gpt2_multi.pt import GPT2LMHeadModel

    source = GPT2LMHeadModel(_small_config()).eval()
    model = GPT2LMHeadModel.from_pretrained(None, config=source.config, state_dict=source.state_dict())
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(model(ids).logits, source(ids).logits)
    with pytest.raises(ValueError, match="needs config="):
        GPT2LMHeadModel.from_pretrained(None, state_dict=source.state_dict())
    with pytest.raises(ValueError, match=r"from_pretrained\(None, \.\.\.\) builds a model from state_dict= and config="):
        GPT2LMHeadModel.from_pretrained(None, config=source.config)


def test_from_pretrained_with_a_state_dict_keeps_the_checkpoints_config(tmp_path):
    from gpt2_multi.pt import GPT2LMHeadModel

    saved = GPT2LMHeadModel(_small_config(n_layer=2)).eval()
    saved.save_pretrained(tmp_path)
    other = GPT2LMHeadModel(_small_config(n_layer=2)).eval()  # other weights, same shapes
    model = GPT2LMHeadModel.from_pretrained(tmp_path, state_dict=other.state_dict())
    ids = torch.tensor([[4, 5]])
    assert model.config.n_layer == 2 and torch.equal(model(ids).logits, other(ids).logits)


def test_from_pretrained_refuses_a_meta_device_context():
    from gpt2_multi.pt import GPT2LMHeadModel

    source = GPT2LMHeadModel(_small_config())
    with torch.device("meta"), pytest.raises(RuntimeError, match=r"cannot run inside a torch.device\('meta'\) context"):
        GPT2LMHeadModel.from_pretrained(None, config=source.config, state_dict=source.state_dict())
    with torch.device("meta"):  # building there is fine, as in HF
        assert GPT2LMHeadModel(_small_config()).lm_head.weight.is_meta


def test_the_legacy_gradient_checkpointing_switch(tmp_path):
    from gpt2_multi.pt import GPT2LMHeadModel

    with pytest.warns(FutureWarning, match="config.gradient_checkpointing=True is deprecated"):
        model = GPT2LMHeadModel(_small_config(gradient_checkpointing=True))
    assert model.is_gradient_checkpointing and not hasattr(model.config, "gradient_checkpointing")
    GPT2LMHeadModel(_small_config()).save_pretrained(tmp_path)
    with pytest.warns(FutureWarning):
        loaded = GPT2LMHeadModel.from_pretrained(tmp_path, gradient_checkpointing=True)
    assert loaded.is_gradient_checkpointing
