"""The weight layout: which parameters each architecture has, their shapes, and their names in every format.

This module is the one place that knows parameter names. The canonical form is
HF's PyTorch ``state_dict``: a base ``GPT2Model`` has bare names (``wte.weight``,
``h.0.attn.c_attn.weight``); every head model nests the body under
``transformer.`` and adds its head (``lm_head.weight``, ``score.weight``, ...).
Shapes are PyTorch's: ``Conv1D`` weights are ``(in, out)``, ``nn.Linear`` weights
``(out, in)``.

HF's TensorFlow (Keras 2 ``.h5``) and Flax (``.msgpack``) layouts are derived
here from the PyTorch name by rules, each with its transform:

============================  ==========================  ==============================
PyTorch name                  TF (.h5, after model scope)  Flax (.msgpack path)
============================  ==========================  ==============================
wte.weight / wpe.weight       wte/embeddings:0             wte/embedding
h.{i}.ln_1.weight / .bias     h_._{i}/ln_1/gamma:0 / beta  h/{i}/ln_1/scale / bias
h.{i}.attn.c_attn.weight      .../c_attn/weight:0 (same)   .../c_attn/kernel (transposed)
h.{i}.attn.c_attn.bias        .../c_attn/bias:0 (1, n)     .../c_attn/bias
score.weight (Linear)         score/kernel:0 (transposed)  score/kernel (transposed)
============================  ==========================  ==============================
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from gpt2_multi.config import GPT2Config

BASE_MODEL_PREFIX = "transformer"

ARCHITECTURES: tuple[str, ...] = (
    "GPT2Model",
    "GPT2LMHeadModel",
    "GPT2DoubleHeadsModel",
    "GPT2ForSequenceClassification",
    "GPT2ForTokenClassification",
    "GPT2ForQuestionAnswering",
)

# Buffers HF stored in old checkpoints; they are not parameters and are ignored on read.
IGNORED_KEY_PATTERNS = (re.compile(r"(^|\.)attn\.(bias|masked_bias)$"), re.compile(r"(^|\.)crossattention\.(bias|masked_bias)$"))

# Head modules that are nn.Linear (weight (out, in)): their weights are transposed in TF and Flax.
_LINEAR_HEADS = ("lm_head.", "score.", "classifier.", "qa_outputs.", "multiple_choice_head.summary.")


def normalize_architecture(architecture: str) -> str:
    """Accept ``GPT2LMHeadModel``, ``TFGPT2LMHeadModel`` or ``FlaxGPT2LMHeadModel``; return the PyTorch name."""
    name = architecture
    for prefix in ("TF", "Flax"):
        if name.startswith(prefix + "GPT2"):
            name = name[len(prefix):]
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    return name


def body_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Shapes of the body (``GPT2Model``) parameters, bare names, PyTorch layout, in module order."""
    e, inner = config.n_embd, config.inner_dim
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (config.vocab_size, e), "wpe.weight": (config.n_positions, e)}
    for i in range(config.n_layer):
        p = f"h.{i}."
        a = (config.n_head - len(config.pruned_heads.get(i, ()))) * config.head_dim  # narrower where heads are pruned
        shapes.update({
            p + "ln_1.weight": (e,), p + "ln_1.bias": (e,),
            p + "attn.c_attn.weight": (e, 3 * a), p + "attn.c_attn.bias": (3 * a,),
            p + "attn.c_proj.weight": (a, e), p + "attn.c_proj.bias": (e,),
            p + "ln_2.weight": (e,), p + "ln_2.bias": (e,),
        })
        if config.add_cross_attention:
            shapes.update({
                p + "crossattention.c_attn.weight": (e, 2 * e), p + "crossattention.c_attn.bias": (2 * e,),
                p + "crossattention.q_attn.weight": (e, e), p + "crossattention.q_attn.bias": (e,),
                p + "crossattention.c_proj.weight": (e, e), p + "crossattention.c_proj.bias": (e,),
                p + "ln_cross_attn.weight": (e,), p + "ln_cross_attn.bias": (e,),
            })
        shapes.update({
            p + "mlp.c_fc.weight": (e, inner), p + "mlp.c_fc.bias": (inner,),
            p + "mlp.c_proj.weight": (inner, e), p + "mlp.c_proj.bias": (e,),
        })
    shapes.update({"ln_f.weight": (e,), "ln_f.bias": (e,)})
    return shapes


def multiple_choice_summary_size(config: GPT2Config) -> int:
    """Output width of the DoubleHeads summary projection (HF forces ``num_labels = 1`` there)."""
    if config.summary_proj_to_labels:
        return 1
    return config.n_embd


def head_shapes(config: GPT2Config, architecture: str) -> dict[str, tuple[int, ...]]:
    """Shapes of the head parameters of ``architecture`` (PyTorch layout). A tied ``lm_head`` is not listed."""
    architecture = normalize_architecture(architecture)
    e = config.n_embd
    lm = {} if config.tie_word_embeddings else {"lm_head.weight": (config.vocab_size, e)}
    if architecture == "GPT2Model":
        return {}
    if architecture == "GPT2LMHeadModel":
        return lm
    if architecture == "GPT2DoubleHeadsModel":
        out = dict(lm)
        if config.summary_use_proj:
            n = multiple_choice_summary_size(config)
            out.update({"multiple_choice_head.summary.weight": (n, e), "multiple_choice_head.summary.bias": (n,)})
        return out
    if architecture == "GPT2ForSequenceClassification":
        return {"score.weight": (config.num_labels, e)}
    if architecture == "GPT2ForTokenClassification":
        return {"classifier.weight": (config.num_labels, e), "classifier.bias": (config.num_labels,)}
    return {"qa_outputs.weight": (2, e), "qa_outputs.bias": (2,)}


def expected_shapes(config: GPT2Config, architecture: str) -> dict[str, tuple[int, ...]]:
    """Every parameter of ``architecture`` with its PyTorch name and shape, as ``state_dict`` keys.

    The base model has bare names; head models prefix the body with ``transformer.``.
    """
    architecture = normalize_architecture(architecture)
    body = body_shapes(config)
    if architecture == "GPT2Model":
        return body
    out = {f"{BASE_MODEL_PREFIX}.{k}": v for k, v in body.items()}
    out.update(head_shapes(config, architecture))
    return out


def is_ignored_key(name: str) -> bool:
    return any(p.search(name) for p in IGNORED_KEY_PATTERNS)


def strip_body_prefix(name: str) -> str:
    prefix = BASE_MODEL_PREFIX + "."
    return name[len(prefix):] if name.startswith(prefix) else name


def is_body_key(name: str) -> bool:
    bare = strip_body_prefix(name)
    return bare.split(".", 1)[0] in ("wte", "wpe", "h", "ln_f")


def canonical_names(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop ignored buffers and put the body under ``transformer.``; heads keep their names.

    Whatever the file's style (the hub's bare ``h.0...`` or ``transformer.h.0...``),
    the result names the body ``transformer.*`` so sources can be compared.
    """
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if is_ignored_key(name):
            continue
        key = f"{BASE_MODEL_PREFIX}.{strip_body_prefix(name)}" if is_body_key(name) else name
        if key in out:
            raise ValueError(f"the checkpoint holds {name!r} twice (with and without the {BASE_MODEL_PREFIX}. prefix)")
        out[key] = value
    return out


def to_architecture_names(canonical: dict[str, np.ndarray], architecture: str) -> dict[str, np.ndarray]:
    """Rename canonical tensors (body under ``transformer.``) to ``architecture``'s state_dict names."""
    if normalize_architecture(architecture) != "GPT2Model":
        return dict(canonical)
    return {strip_body_prefix(k) if is_body_key(k) else k: v for k, v in canonical.items()}


# --------------------------------------------------------------------------- TF (HF Keras 2 .h5) names
def _is_layer_norm(parts: list[str]) -> bool:
    return parts[-2].startswith("ln_")


def _is_linear(name: str) -> bool:
    return name.startswith(_LINEAR_HEADS)


def _is_conv1d(name: str) -> bool:
    return bool(re.search(r"\.(c_attn|c_proj|c_fc|q_attn)\.(weight|bias)$", name))


def pt_to_tf_name(name: str) -> str:
    """HF PyTorch name -> HF TF weight name without the model scope (``transformer/h_._0/attn/c_attn/weight:0``)."""
    parts = name.split(".")
    leaf = parts[-1]
    if parts[-2] in ("wte", "wpe"):
        parts[-1] = "embeddings"
    elif _is_layer_norm(parts):
        parts[-1] = "gamma" if leaf == "weight" else "beta"
    elif _is_linear(name) and leaf == "weight":
        parts[-1] = "kernel"
    out: list[str] = []
    i = 0
    while i < len(parts):
        if parts[i] == "h" and i + 1 < len(parts):
            out.append(f"h_._{parts[i + 1]}")
            i += 2
            continue
        out.append(parts[i])
        i += 1
    return "/".join(out) + ":0"


def tf_to_pt_name(name: str) -> str:
    """Inverse of :func:`pt_to_tf_name` (input without model scope)."""
    if name.endswith(":0"):
        name = name[:-2]
    parts = []
    for part in name.split("/"):
        m = re.fullmatch(r"h_\._(\d+)", part)
        parts.extend(["h", m.group(1)] if m else [part])
    parts[-1] = {"embeddings": "weight", "gamma": "weight", "beta": "bias", "kernel": "weight"}.get(parts[-1], parts[-1])
    return ".".join(parts)


def pt_to_tf_array(name: str, value: np.ndarray, *, contiguous: bool = True) -> np.ndarray:
    """The TF value of a PyTorch-layout array. ``contiguous=False`` returns a transposed *view* where the
    layouts differ (no copy: what the streaming readers and writers use, converting one tensor at a time)."""
    if _is_conv1d(name) and name.endswith(".bias"):
        return value.reshape(1, -1)
    if _is_linear(name) and name.endswith(".weight"):
        return np.ascontiguousarray(value.T) if contiguous else value.T
    return value


def tf_to_pt_array(pt_name: str, value: np.ndarray, *, contiguous: bool = True) -> np.ndarray:
    if _is_conv1d(pt_name) and pt_name.endswith(".bias"):
        return value.reshape(-1)
    if _is_linear(pt_name) and pt_name.endswith(".weight"):
        return np.ascontiguousarray(value.T) if contiguous else value.T
    return value


# --------------------------------------------------------------------------- Flax (.msgpack) names
def pt_to_flax_path(name: str) -> tuple[str, ...]:
    """HF PyTorch name -> HF Flax parameter path, e.g. ``('transformer', 'h', '0', 'attn', 'c_attn', 'kernel')``."""
    parts = name.split(".")
    leaf = parts[-1]
    if parts[-2] in ("wte", "wpe"):
        parts[-1] = "embedding"
    elif _is_layer_norm(parts):
        parts[-1] = "scale" if leaf == "weight" else "bias"
    elif leaf == "weight":
        parts[-1] = "kernel"
    return tuple(parts)


def flax_path_to_pt(path: tuple[str, ...]) -> str:
    parts = list(path)
    if parts[-1] in ("embedding", "scale", "kernel"):
        parts[-1] = "weight"
    return ".".join(parts)


def flax_transposed(name: str) -> bool:
    """Whether HF's Flax layout stores this (2-D) PyTorch weight transposed: every weight but the embeddings."""
    return name.endswith(".weight") and name.split(".")[-2] not in ("wte", "wpe") and not _is_layer_norm(name.split("."))


def pt_to_flax_array(name: str, value: np.ndarray, *, contiguous: bool = True) -> np.ndarray:
    """Every 2-D weight that is not an embedding is stored transposed in HF's Flax layout.

    ``contiguous=False`` returns the transposed *view* (no copy), as :func:`pt_to_tf_array`.
    """
    if value.ndim == 2 and flax_transposed(name):
        return np.ascontiguousarray(value.T) if contiguous else value.T
    return value


flax_to_pt_array: Callable[[str, np.ndarray], np.ndarray] = pt_to_flax_array  # a transpose is its own inverse

# The scope HF's TF classes write as the first component of every weight name.
TF_MODEL_SCOPES = {
    "GPT2Model": "tfgpt2_model",
    "GPT2LMHeadModel": "tfgpt2lm_head_model",
    "GPT2DoubleHeadsModel": "tfgpt2_double_heads_model",
    "GPT2ForSequenceClassification": "tfgpt2_for_sequence_classification",
    "GPT2ForTokenClassification": "tfgpt2_for_token_classification",
    "GPT2ForQuestionAnswering": "tfgpt2_for_question_answering",
}


def infer_architecture(names: list[str] | set[str] | dict) -> str:
    """Guess the head from parameter names (used when config.json has no ``architectures``)."""
    names = set(names)
    if any(n.startswith("multiple_choice_head.") for n in names):
        return "GPT2DoubleHeadsModel"
    if "score.weight" in names:
        return "GPT2ForSequenceClassification"
    if "classifier.weight" in names:
        return "GPT2ForTokenClassification"
    if "qa_outputs.weight" in names:
        return "GPT2ForQuestionAnswering"
    if "lm_head.weight" in names or any(n.startswith(BASE_MODEL_PREFIX + ".") for n in names):
        return "GPT2LMHeadModel"
    return "GPT2Model"
