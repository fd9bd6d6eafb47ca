"""``GPT2Config``: the model's hyper-parameters, compatible with HF's ``config.json``.

The class is framework-free. It reads a ``config.json`` written by any HF
transformers version (unknown keys are kept and written back unchanged, old
keys such as ``n_ctx`` are accepted), validates what it reads, and exposes HF's
aliases (``hidden_size``, ``num_attention_heads``, ...).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from gpt2_multi import hub
from gpt2_multi.activations import ACTIVATIONS
from gpt2_multi.filenames import CONFIG_NAME
from gpt2_multi.io_utils import atomic_write_text

SUMMARY_TYPES = ("last", "first", "mean", "cls_index", "attn")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# HF's names for the same fields.
ATTRIBUTE_MAP = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}

# Defaults of HF's GPT2Config (the GPT-2 small architecture), in HF's order.
MODEL_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "resid_pdrop": 0.1,
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5,
    "initializer_range": 0.02,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "summary_activation": None,
    "summary_proj_to_labels": True,
    "summary_first_dropout": 0.1,
    "scale_attn_weights": True,
    "use_cache": True,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
}

# Defaults that every HF PretrainedConfig has.
COMMON_DEFAULTS: dict[str, Any] = {
    "pad_token_id": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
    "torchscript": False,
    "torch_dtype": None,
    "tie_word_embeddings": True,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "chunk_size_feed_forward": 0,
    "pruned_heads": {},
    "architectures": None,
    "finetuning_task": None,
    "tokenizer_class": None,
    "prefix": None,
    "task_specific_params": None,
    "problem_type": None,
}

# The published OpenAI sizes (and distilgpt2): the architecture of each, everything else is the default
# above. GPT2Config.from_pretrained builds them when neither a local path nor the HF cache has the name
# (gpt2_multi.hub.HUB_ALIASES gives their hub repo ids).
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2": {"n_embd": 768, "n_layer": 12, "n_head": 12},
    "gpt2-medium": {"n_embd": 1024, "n_layer": 24, "n_head": 16},
    "gpt2-large": {"n_embd": 1280, "n_layer": 36, "n_head": 20},
    "gpt2-xl": {"n_embd": 1600, "n_layer": 48, "n_head": 25},
    "distilgpt2": {"n_embd": 768, "n_layer": 6, "n_head": 12},
}

def infer_problem_type(problem_type: str | None, num_labels: int, labels_are_integer: bool) -> str:
    """The problem type of one sequence-classification loss: ``problem_type`` (the config's) when set, else HF's rule.

    HF's rule: regression for one label, single-label classification for integer labels, multi-label
    otherwise. Every stack calls this per forward, with its own test of "integer", and keeps the result
    in a local: unlike HF, the inferred type is never written into the (shared) config.
    """
    if problem_type is not None:
        return problem_type
    if num_labels == 1:
        return "regression"
    if labels_are_integer:
        return "single_label_classification"
    return "multi_label_classification"


# Keys older HF versions wrote that mean something we already have.
LEGACY_KEYS = {"n_ctx": "n_positions"}

# Written by HF into config.json but not configuration proper; dropped when read.
_IGNORED_ON_READ = ("transformers_version",)

_FLOAT_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout")
_POSITIVE_INT_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
_BOOL_FIELDS = (
    "summary_use_proj",
    "summary_proj_to_labels",
    "scale_attn_weights",
    "use_cache",
    "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "tie_word_embeddings",
    "add_cross_attention",
)


class ConfigError(ValueError):
    """A config value is invalid. The message names the key, the value and what was expected."""


class GPT2Config:
    """Configuration of a GPT-2 model, field-for-field compatible with HF's ``GPT2Config``.

    Every keyword of HF's ``GPT2Config`` (:data:`MODEL_DEFAULTS`) and the common
    ``PretrainedConfig`` ones in :data:`COMMON_DEFAULTS` get HF's default. Keys this
    class does not know are kept as attributes (without a default) and written back by
    :meth:`to_dict`, so a config round-trips unchanged.

    Args:
        vocab_size: number of token ids.
        n_positions: longest sequence the model accepts (position table size).
        n_embd: hidden size; must be divisible by ``n_head``.
        n_layer: number of transformer blocks.
        n_head: attention heads per block.
        n_inner: MLP width, ``None`` for ``4 * n_embd``.
        activation_function: a name from :data:`gpt2_multi.activations.ACTIVATIONS`.
        resid_pdrop, embd_pdrop, attn_pdrop: dropout rates in ``[0, 1)``.
        layer_norm_epsilon: epsilon of every layer norm.
        initializer_range: std of the normal initialiser.
        summary_*: the multiple-choice head of ``GPT2DoubleHeadsModel``.
        scale_attn_weights: divide scores by ``sqrt(head_dim)``.
        scale_attn_by_inverse_layer_idx: also divide scores by ``layer_idx + 1``.
        reorder_and_upcast_attn: compute scores and softmax in float32.
        num_labels / id2label / label2id: classification heads' labels.
    """

    model_type = "gpt2"
    attribute_map = ATTRIBUTE_MAP

    def __init__(self, **kwargs: Any) -> None:
        for old, new in LEGACY_KEYS.items():
            if old in kwargs:
                value = kwargs.pop(old)
                # n_ctx is always equal to n_positions in HF's own configs; keep an explicit n_positions.
                kwargs.setdefault(new, value)
        for alias, field in ATTRIBUTE_MAP.items():
            if alias in kwargs:
                value = kwargs.pop(alias)
                if field in kwargs and kwargs[field] != value:
                    raise ConfigError(f"{alias}={value!r} contradicts {field}={kwargs[field]!r}: they are the same field")
                kwargs[field] = value
        for key in _IGNORED_ON_READ:
            kwargs.pop(key, None)
        kwargs.pop("model_type", None)

        num_labels = kwargs.pop("num_labels", None)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)

        for key, default in {**MODEL_DEFAULTS, **COMMON_DEFAULTS}.items():
            value = kwargs.pop(key, copy.deepcopy(default))
            object.__setattr__(self, key, value)
        # Whatever is left is kept verbatim (generation settings of old configs, custom keys, ...). This is
        # also how both spellings of the dtype round-trip, with no code of their own: HF >= 4.56 writes "dtype"
        # (an extra key here), older versions "torch_dtype" (a field, default None, left out of the diff).
        self._extra_keys: list[str] = []
        for key, value in kwargs.items():
            object.__setattr__(self, key, value)
            self._extra_keys.append(key)

        self._set_labels(num_labels, id2label, label2id)
        self.validate()

    # ----------------------------------------------------------------- aliases
    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: resolve HF's aliases.
        field = ATTRIBUTE_MAP.get(name)
        if field is not None:
            return getattr(self, field)
        raise AttributeError(f"'GPT2Config' has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        name = ATTRIBUTE_MAP.get(name, name)
        if name == "num_labels":
            self._set_labels(value, None, None)
            return
        known = name in MODEL_DEFAULTS or name in COMMON_DEFAULTS or name.startswith("_") or name in ("id2label", "label2id")
        object.__setattr__(self, name, value)
        if not known and name not in self._extra_keys:
            self._extra_keys.append(name)

    # ------------------------------------------------------------------ labels
    def _set_labels(self, num_labels: int | None, id2label: dict | None, label2id: dict | None) -> None:
        if id2label is not None:
            id2label = {int(k): v for k, v in id2label.items()}
            if num_labels is not None and num_labels != len(id2label):
                raise ConfigError(f"num_labels={num_labels} but id2label has {len(id2label)} entries")
        else:
            n = 2 if num_labels is None else num_labels
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"num_labels must be a positive int, got {n!r}")
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        if label2id is None:
            label2id = {v: k for k, v in id2label.items()}
        else:
            label2id = {k: int(v) for k, v in label2id.items()}
        object.__setattr__(self, "id2label", id2label)
        object.__setattr__(self, "label2id", label2id)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    # -------------------------------------------------------- derived fields
    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        """Width of the MLP: ``n_inner`` or ``4 * n_embd``."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict) and not self.torchscript

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        for key in _POSITIVE_INT_FIELDS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{key} must be a positive int, got {value!r}")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or isinstance(self.n_inner, bool) or self.n_inner <= 0):
            raise ConfigError(f"n_inner must be a positive int or None, got {self.n_inner!r}")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"the remainder is {self.n_embd % self.n_head}"
            )
        if self.activation_function not in ACTIVATIONS:
            raise ConfigError(
                f"activation_function={self.activation_function!r} is not supported; choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.summary_activation not in (None, "tanh") and self.summary_activation not in ACTIVATIONS:
            raise ConfigError(f"summary_activation={self.summary_activation!r} is not supported; use None or one of {', '.join(ACTIVATIONS)}")
        if self.summary_type not in SUMMARY_TYPES:
            raise ConfigError(f"summary_type={self.summary_type!r} is not valid; choose one of {', '.join(SUMMARY_TYPES)}")
        for key in _FLOAT_FIELDS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{key} must be a dropout rate in [0, 1), got {value!r}")
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ConfigError(f"layer_norm_epsilon must be a positive number, got {eps!r}")
        ir = self.initializer_range
        if isinstance(ir, bool) or not isinstance(ir, (int, float)) or ir < 0:
            raise ConfigError(f"initializer_range must be a non-negative number, got {ir!r}")
        for key in _BOOL_FIELDS:
            value = getattr(self, key)
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false, got {value!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type={self.problem_type!r} is not valid; choose None or one of {', '.join(PROBLEM_TYPES)}")
        for key in ("pad_token_id", "bos_token_id"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"{key} must be a non-negative int or None, got {value!r}")
        self._check_pruned_heads()
        eos = self.eos_token_id
        eos_list = eos if isinstance(eos, list) else [eos]
        for value in eos_list:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"eos_token_id must be a non-negative int, a list of them, or None, got {eos!r}")

    def _check_pruned_heads(self) -> None:
        """``pruned_heads``: layer -> the heads pruned from it (JSON's string keys become ints, as in HF)."""
        value = self.pruned_heads
        if not isinstance(value, dict):
            raise ConfigError(f"pruned_heads must be a dict of layer -> list of heads, got {type(value).__name__}")
        out: dict[int, list[int]] = {}
        for key, heads in value.items():
            try:
                layer = int(key)
            except (TypeError, ValueError):
                raise ConfigError(f"pruned_heads keys must be layer indices, got {key!r}") from None
            if not 0 <= layer < self.n_layer:
                raise ConfigError(f"pruned_heads names layer {layer}, but the model has layers 0..{self.n_layer - 1}")
            if not isinstance(heads, (list, tuple, set)) or not all(isinstance(h, int) and not isinstance(h, bool) for h in heads):
                raise ConfigError(f"pruned_heads[{layer}] must be a list of head indices, got {heads!r}")
            bad = [h for h in heads if not 0 <= h < self.n_head]
            if bad:
                raise ConfigError(f"pruned_heads[{layer}] names head {bad[0]}, but a layer has heads 0..{self.n_head - 1}")
            if len(set(heads)) >= self.n_head:
                raise ConfigError(f"pruned_heads[{layer}] prunes all {self.n_head} heads; a layer keeps at least one")
            if heads:
                out[layer] = sorted(set(heads))
        object.__setattr__(self, "pruned_heads", out)

    # ------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Every field, HF's key names, JSON-ready (``model_type`` included)."""
        out: dict[str, Any] = {}
        for key in MODEL_DEFAULTS:
            out[key] = copy.deepcopy(getattr(self, key))
        for key in COMMON_DEFAULTS:
            out[key] = copy.deepcopy(getattr(self, key))
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        for key in self._extra_keys:
            out[key] = copy.deepcopy(getattr(self, key))
        out["model_type"] = self.model_type
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """Like :meth:`to_dict` without the common fields at their defaults (what HF writes to disk).

        Every GPT-2 field of :data:`MODEL_DEFAULTS` is written, default or not, as HF does; the default
        two-label maps are left out.
        """
        full = self.to_dict()
        defaults = {**MODEL_DEFAULTS, **COMMON_DEFAULTS}
        out: dict[str, Any] = {}
        for key, value in full.items():
            if key in defaults and defaults[key] == value and key not in MODEL_DEFAULTS:
                continue
            if key in ("id2label", "label2id") and self.num_labels == 2 and full["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}:
                continue
            out[key] = value
        return dict(sorted(out.items()))

    def to_json_string(self, use_diff: bool = True) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike, use_diff: bool = True) -> None:
        atomic_write_text(Path(path), self.to_json_string(use_diff=use_diff))

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> GPT2Config:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type")
        if model_type is not None and model_type != cls.model_type:
            raise ConfigError(f"model_type={model_type!r}: this is not a GPT-2 config (expected 'gpt2')")
        if "num_labels" in overrides and "id2label" not in overrides:
            # A new label count replaces the stored label names (HF does the same).
            data = {k: v for k, v in data.items() if k not in ("id2label", "label2id")}
        return cls(**{**data, **overrides})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> GPT2Config:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"no config file at {path}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> GPT2Config:
        """Read ``config.json`` from a directory, a file, or a hub name (the local HF cache, then a download).

        ``"gpt2"`` (and the other sizes of :data:`BUILTIN_CONFIGS`, also under their hub repo ids such as
        ``"openai-community/gpt2"``) fall back to their published architecture, with no file and no
        download. Keyword overrides replace fields.
        """
        try:
            config = cls.from_json_file(hub.resolve_config_file(name_or_path))
        except hub.HubError:
            short = hub.short_name(str(name_or_path))
            if short is None:
                raise
            config = cls(**BUILTIN_CONFIGS[short], architectures=["GPT2LMHeadModel"])
        if overrides:
            config = cls.from_dict(config.to_dict(), **overrides)
        return config

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` (HF's diff format) into ``save_directory``; return its path."""
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"save_pretrained needs a directory, but {directory} is a file")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CONFIG_NAME
        self.to_json_file(path)
        return path

    # ------------------------------------------------------------------- misc
    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> GPT2Config:
        """The config of the text model: this one (GPT-2 has no sub-configs). HF's generic code calls it on any
        model's config to reach its text part."""
        return self

    def copy(self, **overrides: Any) -> GPT2Config:
        return type(self).from_dict(self.to_dict(), **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GPT2Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"GPT2Config {self.to_json_string()}"
