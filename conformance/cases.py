"""Conformance cases: HF's golden fixtures, and generated ones over a grid of configs and inputs.

A case is framework-free: a config, an architecture, numpy inputs, call flags, and
optionally the expected outputs (golden cases only). Generated cases carry a seed
from which :func:`make_checkpoint` writes the model's weights; every backend then
loads that same safetensors file.

Input kinds (``Case.kind``):
  plain, right_pad, left_pad (with position_ids), past (one cached step), past_steps
  (several cached steps), headmask_tokentype, inputs_embeds, labels (each head's loss).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpt2_multi import GPT2Config
from gpt2_multi.activations import ACTIVATIONS
from gpt2_multi.checkpoint import expected_shapes, save_checkpoint

HEADS = {
    "base": "GPT2Model",
    "lm": "GPT2LMHeadModel",
    "double": "GPT2DoubleHeadsModel",
    "seqcls": "GPT2ForSequenceClassification",
    "tokcls": "GPT2ForTokenClassification",
    "qa": "GPT2ForQuestionAnswering",
}


@dataclass
class Case:
    """One model call (or a sequence of cached calls) to run in every backend."""

    name: str
    architecture: str
    config: GPT2Config
    inputs: dict[str, np.ndarray]
    flags: dict[str, bool] = field(default_factory=dict)
    # Cached continuation: chunks of input_ids run first, one call each, with use_cache=True.
    past_chunks: list[np.ndarray] = field(default_factory=list)
    expected: dict[str, np.ndarray] | None = None  # golden outputs (HF), keyed like outputs
    checkpoint: Path | None = None  # golden: HF's checkpoint directory
    seed: int | None = None  # generated: the weights' seed (shared by every case of one config and head)

    @property
    def model_key(self) -> str:
        """Cases with the same key share one checkpoint (and one loaded model per backend)."""
        if self.checkpoint is not None:
            return str(self.checkpoint)
        return f"{self.architecture}/{self.seed}/{self.config.to_json_string()}"

    def valid_mask(self) -> np.ndarray | None:
        """(B, T) bool: query positions whose outputs are defined (left padding leaves rows undefined)."""
        if "left_pad" in self.name and "attention_mask" in self.inputs:
            return self.inputs["attention_mask"].astype(bool)
        return None


# ------------------------------------------------------------------------------------------ golden
def read_case_file(path: Path) -> tuple[dict[str, np.ndarray], dict[str, bool], dict[str, np.ndarray]]:
    """A golden ``cases/*.npz``: (``in.*`` inputs, ``in.flag.*`` call flags, ``out.*`` expected outputs)."""
    data = np.load(path)
    inputs = {k[3:]: data[k] for k in data.files if k.startswith("in.") and not k.startswith("in.flag.")}
    flags = {k[8:]: bool(data[k]) for k in data.files if k.startswith("in.flag.")}
    outputs = {k[4:]: data[k] for k in data.files if k.startswith("out.")}
    return inputs, flags, outputs


def golden_cases(fixtures: Path, fmt: str = "safetensors") -> list[Case]:
    """Every case of HF's golden fixtures, with the head's checkpoint in ``fmt`` (where it exists)."""
    index = json.loads((fixtures / "index.json").read_text())
    cases = []
    for head, info in index["heads"].items():
        if fmt not in info["checkpoints"]:
            continue
        ckpt = fixtures / info["checkpoints"][fmt]
        config = GPT2Config.from_pretrained(ckpt)
        for name in info["cases"]:
            inputs, flags, expected = read_case_file(fixtures / "cases" / f"{name}.npz")
            chunks = [inputs.pop("past_input_ids")] if "past_input_ids" in inputs else []
            cases.append(Case(name=f"golden/{name}", architecture=HEADS[head], config=config, inputs=inputs,
                              flags=flags, past_chunks=chunks, expected=expected, checkpoint=ckpt))
    return cases


# ------------------------------------------------------------------------------------------ generated
BASE_CONFIG = {"vocab_size": 97, "n_positions": 32, "n_embd": 24, "n_layer": 2, "n_head": 4, "resid_pdrop": 0.0,
               "embd_pdrop": 0.0, "attn_pdrop": 0.0, "summary_first_dropout": 0.0, "num_labels": 3, "pad_token_id": 0}


def config_grid() -> dict[str, dict]:
    """Named config variations: every activation, n_inner, the three attention flags, odd heads, 1 and 3 layers."""
    grid: dict[str, dict] = {"default": {}}
    for act in ACTIVATIONS:
        if act != "gelu_new":
            grid[f"act-{act}"] = {"activation_function": act}
    grid.update({
        "n_inner-40": {"n_inner": 40},
        "no-scale": {"scale_attn_weights": False},
        "inverse-layer-scale": {"scale_attn_by_inverse_layer_idx": True, "n_layer": 3},
        "upcast-reorder": {"reorder_and_upcast_attn": True},
        "all-flags": {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True},
        "odd-heads": {"n_embd": 21, "n_head": 3},
        "one-layer": {"n_layer": 1},
        "three-layers": {"n_layer": 3, "n_head": 6},
    })
    return grid


def random_tensors(config: GPT2Config, architecture: str, seed: int) -> dict[str, np.ndarray]:
    """Seeded weights for every parameter; layer norms and biases away from 1/0 so no mapping error can hide."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(config, architecture).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight", "ln_cross_attn.weight")):
            tensors[name] = (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        elif name.endswith(".bias"):
            tensors[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            tensors[name] = (0.15 * rng.standard_normal(shape)).astype(np.float32)
    return tensors


def make_checkpoint(case: Case, directory: Path) -> Path:
    """Write the generated case's weights (safetensors + config.json) into ``directory``."""
    assert case.seed is not None, "golden cases carry HF's checkpoint"
    save_checkpoint(directory, random_tensors(case.config, case.architecture, case.seed), case.config,
                    architecture=case.architecture)
    return directory


def _applies(kind: str, head: str) -> bool:
    if kind == "labels" and head == "base":
        return False
    return not (kind in ("past", "past_steps") and head in NO_CACHE_HEADS)


def _inputs(rng: np.random.Generator, config: GPT2Config, kind: str, head: str) -> tuple[dict, dict, list]:
    b, t = 3, 7
    ids = rng.integers(1, config.vocab_size, size=(b, t))
    flags = {"output_hidden_states": True, "output_attentions": True}
    if head not in NO_CACHE_HEADS:
        flags["use_cache"] = True
    inputs: dict[str, np.ndarray] = {"input_ids": ids}
    chunks: list[np.ndarray] = []
    if kind == "right_pad":
        mask = np.ones((b, t), np.int64)
        mask[1, 5:] = 0
        mask[2, 3:] = 0
        inputs["input_ids"] = np.where(mask == 1, ids, config.pad_token_id)
        inputs["attention_mask"] = mask
    elif kind == "left_pad":
        mask = np.ones((b, t), np.int64)
        mask[1, :2] = 0
        mask[2, :4] = 0
        inputs["input_ids"] = np.where(mask == 1, ids, config.pad_token_id)
        inputs["attention_mask"] = mask
        inputs["position_ids"] = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    elif kind == "past":
        chunks = [rng.integers(1, config.vocab_size, size=(b, 5))]
        inputs["input_ids"] = ids[:, :3]
    elif kind == "past_steps":
        chunks = [rng.integers(1, config.vocab_size, size=(b, 4)), rng.integers(1, config.vocab_size, size=(b, 1)),
                  rng.integers(1, config.vocab_size, size=(b, 1))]
        inputs["input_ids"] = ids[:, :1]
    elif kind == "headmask_tokentype":
        head_mask = rng.uniform(0.0, 1.0, size=(config.n_layer, config.n_head)).astype(np.float32)
        head_mask[0, 0] = 0.0
        inputs["head_mask"] = head_mask
        inputs["token_type_ids"] = rng.integers(0, 2, size=(b, t))
    elif kind == "inputs_embeds":
        del inputs["input_ids"]
        inputs["inputs_embeds"] = rng.standard_normal((b, t, config.n_embd)).astype(np.float32)
        flags["output_attentions"] = False
    elif kind == "labels":
        flags = {}
        inputs.update(_labels(rng, config, head, b, t, ids))
    if head == "double":
        # Multiple choice: (B, C, T) with C = 2, mc_token_ids at each choice's last real token.
        if "input_ids" in inputs:
            inputs["input_ids"] = np.stack([inputs["input_ids"], inputs["input_ids"][::-1]], axis=1)
        for key in ("attention_mask", "position_ids", "token_type_ids"):
            if key in inputs:
                inputs[key] = np.stack([inputs[key], inputs[key][::-1]], axis=1)
        if "inputs_embeds" in inputs:
            inputs["inputs_embeds"] = np.stack([inputs["inputs_embeds"], inputs["inputs_embeds"][::-1]], axis=1)
        chunks = [np.stack([c, c[::-1]], axis=1) for c in chunks]
        seq = (inputs.get("input_ids", inputs.get("inputs_embeds"))).shape[2]
        inputs["mc_token_ids"] = np.full((b, 2), seq - 1, dtype=np.int64)
        if kind == "labels":
            inputs["labels"] = np.stack([inputs["labels"], inputs["labels"][::-1]], axis=1)
            inputs["mc_labels"] = rng.integers(0, 2, size=(b,))
    return inputs, flags, chunks


def _labels(rng, config, head, b, t, ids) -> dict[str, np.ndarray]:
    if head in ("lm", "double"):
        labels = ids.copy()
        labels[0, :2] = -100
        return {"labels": labels}
    if head == "seqcls":
        return {"labels": rng.integers(0, config.num_labels, size=(b,))}
    if head == "tokcls":
        labels = rng.integers(0, config.num_labels, size=(b, t))
        labels[1, -2:] = -100
        return {"labels": labels}
    if head == "qa":
        return {"start_positions": rng.integers(0, t, size=(b,)), "end_positions": np.array([1, t + 5, 3])}
    return {}


# Heads whose HF outputs carry no cache (HF's QA head does not even take use_cache).
NO_CACHE_HEADS = ("tokcls", "qa")

INPUT_KINDS = ("plain", "right_pad", "left_pad", "past", "past_steps", "headmask_tokentype", "inputs_embeds", "labels")


def generated_cases(seed: int = 0, full: bool = True) -> list[Case]:
    """The grid: every config variation on the LM with every input kind, and every head on the default config.

    ``full=False`` keeps the default config's cases and one input kind per variation (a quick run).
    """
    cases = []
    rng = np.random.default_rng(seed)
    grid = config_grid()
    for cname, overrides in grid.items():
        config = GPT2Config(**{**BASE_CONFIG, **overrides})
        heads = list(HEADS) if cname == "default" else ["lm"]
        kinds = INPUT_KINDS if (full or cname == "default") else ("past",)
        for head in heads:
            for kind in kinds:
                if not _applies(kind, head):
                    continue
                inputs, flags, chunks = _inputs(rng, config, kind, head)
                model_seed = zlib.crc32(f"{seed}/{cname}/{head}".encode())
                cases.append(Case(name=f"gen/{cname}/{head}/{kind}", architecture=HEADS[head], config=config,
                                  inputs=inputs, flags=flags, past_chunks=chunks, seed=model_seed))
    return cases


def checkpoint_cases(path: Path, seed: int = 0) -> list[Case]:
    """Every input kind on an existing checkpoint (its own config and head), for ``gpt2-multi conform CKPT``."""
    from gpt2_multi.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    head = next(h for h, arch in HEADS.items() if arch == ckpt.architecture)
    directory = ckpt.source if ckpt.source is not None and ckpt.source.is_dir() else Path(path)
    config = ckpt.config
    if config.pad_token_id is None:
        config = config.copy(pad_token_id=0)
    rng = np.random.default_rng(seed)
    cases = []
    for kind in INPUT_KINDS:
        if not _applies(kind, head):
            continue
        inputs, flags, chunks = _inputs(rng, config, kind, head)
        cases.append(Case(name=f"{Path(path).name}/{head}/{kind}", architecture=ckpt.architecture, config=config,
                          inputs=inputs, flags=flags, past_chunks=chunks, checkpoint=directory))
    return cases
