"""GPT2Config: HF compatibility, round-trips, validation."""

from __future__ import annotations

import json

import pytest

from gpt2_multi import ConfigError, GPT2Config
from gpt2_multi.activations import ACTIVATIONS

from fixture_cases import HF_TINY, INDEX

# HF GPT2Config defaults, written out from HF's documentation (the spec), not from our code.
HF_DEFAULTS = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
    "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "summary_type": "cls_index", "summary_use_proj": True,
    "summary_activation": None, "summary_proj_to_labels": True, "summary_first_dropout": 0.1,
    "scale_attn_weights": True, "use_cache": True, "bos_token_id": 50256, "eos_token_id": 50256,
    "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
    "tie_word_embeddings": True, "add_cross_attention": False, "pad_token_id": None, "problem_type": None,
    "output_hidden_states": False, "output_attentions": False, "return_dict": True,
}


def test_defaults_match_hf():
    config = GPT2Config()
    for key, value in HF_DEFAULTS.items():
        assert getattr(config, key) == value, key
    assert config.num_labels == 2
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert config.use_return_dict is True


def test_aliases_read_and_write():
    config = GPT2Config(hidden_size=64, num_attention_heads=4, num_hidden_layers=3, max_position_embeddings=32)
    assert (config.n_embd, config.n_head, config.n_layer, config.n_positions) == (64, 4, 3, 32)
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers, config.max_position_embeddings) == (64, 4, 3, 32)
    config.hidden_size = 128
    assert config.n_embd == 128
    with pytest.raises(ConfigError, match="hidden_size=64 contradicts n_embd=32"):
        GPT2Config(hidden_size=64, n_embd=32)


def test_num_labels_and_label_maps():
    config = GPT2Config(num_labels=3)
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert config.label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    config.num_labels = 5
    assert config.num_labels == 5 and len(config.label2id) == 5
    named = GPT2Config(id2label={"0": "neg", "1": "pos"})
    assert named.id2label == {0: "neg", 1: "pos"} and named.label2id == {"neg": 0, "pos": 1}
    with pytest.raises(ConfigError, match="num_labels=3 but id2label has 2"):
        GPT2Config(num_labels=3, id2label={0: "a", 1: "b"})


@pytest.mark.parametrize("head", sorted(INDEX["heads"]))
def test_fixture_configs_round_trip(head, tmp_path):
    for fmt, rel in INDEX["heads"][head]["checkpoints"].items():
        path = HF_TINY / rel / "config.json"
        raw = json.loads(path.read_text())
        config = GPT2Config.from_pretrained(path.parent)
        for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "pad_token_id", "activation_function"):
            assert getattr(config, key) == raw[key], (fmt, key)
        assert config.num_labels == len(raw.get("id2label", {0: 0, 1: 1}))
        # What we write reads back equal, and keeps the keys HF wrote (e.g. "dtype", "architectures").
        config.save_pretrained(tmp_path / head / fmt)
        again = GPT2Config.from_pretrained(tmp_path / head / fmt)
        assert again == config
        written = json.loads((tmp_path / head / fmt / "config.json").read_text())
        for key, value in raw.items():
            if key == "transformers_version":
                continue
            assert written[key] == value, (fmt, key)


def test_unknown_keys_kept_and_legacy_keys_accepted(tmp_path):
    raw = {"model_type": "gpt2", "n_ctx": 512, "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 100,
           "my_custom_key": {"a": [1, 2]}, "task_specific_params": {"text-generation": {"do_sample": True}},
           "max_length": 50, "transformers_version": "4.2.0"}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    config = GPT2Config.from_pretrained(tmp_path)
    assert config.n_positions == 512
    assert config.my_custom_key == {"a": [1, 2]} and config.max_length == 50
    out = config.to_dict()
    assert out["my_custom_key"] == {"a": [1, 2]} and out["max_length"] == 50
    assert out["task_specific_params"] == {"text-generation": {"do_sample": True}}
    assert "n_ctx" not in out and "transformers_version" not in out
    assert GPT2Config.from_dict(json.loads(config.to_json_string())) == config


def test_to_dict_from_dict_full_round_trip():
    config = GPT2Config(n_embd=48, n_head=6, n_layer=1, activation_function="relu", scale_attn_by_inverse_layer_idx=True,
                        reorder_and_upcast_attn=True, n_inner=80, add_cross_attention=True, problem_type="regression")
    assert GPT2Config.from_dict(config.to_dict()) == config
    assert GPT2Config.from_dict(json.loads(config.to_json_string(use_diff=False))) == config
    assert config.head_dim == 8 and config.inner_dim == 80
    assert GPT2Config(n_embd=16, n_head=2).inner_dim == 64


def test_builtin_sizes_resolve_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    for name, (e, n_layer, n_head) in {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16), "gpt2-large": (1280, 36, 20),
                                       "openai-community/gpt2-xl": (1600, 48, 25)}.items():
        config = GPT2Config.from_pretrained(name)
        assert (config.n_embd, config.n_layer, config.n_head) == (e, n_layer, n_head)
    assert GPT2Config.from_pretrained("gpt2", n_layer=2).n_layer == 2


def test_one_table_of_built_in_sizes():
    from gpt2_multi import config as config_module
    from gpt2_multi import hub
    from gpt2_multi.tokenization import bpe

    assert set(hub.HUB_ALIASES) == set(config_module.BUILTIN_CONFIGS)
    # the embedded models use GPT-2's own tokenizer too
    assert bpe.BUILTIN_NAMES == set(config_module.BUILTIN_CONFIGS) | set(hub.HUB_ALIASES.values()) | set(hub.EMBEDDED_MODELS)
    for short, repo in hub.HUB_ALIASES.items():
        assert hub.short_name(short) == hub.short_name(repo) == short
    assert hub.short_name("someone/gpt2") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_embd": 30, "n_head": 4}, r"n_embd \(30\) must be divisible by n_head \(4\)"),
        ({"activation_function": "gelu_fancy"}, "activation_function='gelu_fancy' is not supported"),
        ({"summary_type": "max"}, "summary_type='max' is not valid"),
        ({"n_layer": 0}, "n_layer must be a positive int, got 0"),
        ({"vocab_size": -5}, "vocab_size must be a positive int, got -5"),
        ({"n_positions": 2.5}, "n_positions must be a positive int, got 2.5"),
        ({"resid_pdrop": 1.0}, r"resid_pdrop must be a dropout rate in \[0, 1\), got 1.0"),
        ({"attn_pdrop": -0.1}, r"attn_pdrop must be a dropout rate in \[0, 1\), got -0.1"),
        ({"layer_norm_epsilon": 0}, "layer_norm_epsilon must be a positive number"),
        ({"n_inner": 0}, "n_inner must be a positive int or None"),
        ({"problem_type": "ranking"}, "problem_type='ranking' is not valid"),
        ({"scale_attn_weights": "yes"}, "scale_attn_weights must be true or false"),
        ({"pad_token_id": -1}, "pad_token_id must be a non-negative int or None"),
        ({"num_labels": 0}, "num_labels must be a positive int, got 0"),
    ],
)
def test_validation_errors_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GPT2Config(**kwargs)


def test_every_activation_accepted():
    for name in ACTIVATIONS:
        assert GPT2Config(activation_function=name).activation_function == name


def test_bad_files(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        GPT2Config.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="model_type='bert': this is not a GPT-2 config"):
        GPT2Config.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        GPT2Config.from_pretrained(tmp_path / "..")
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError):
        GPT2Config().save_pretrained(target)
