"""Conformance cases: HF's golden fixtures, and generated ones over a grid of configs and inputs.

A case is framework-free: a config, an architecture, numpy inputs, call flags, cached chunks run
first, which query positions are defined, its tolerance, and optionally the expected outputs
(golden cases only). Generated cases carry a seed from which :func:`make_checkpoint` writes the
model's weights; every backend then loads that same safetensors file.

The grid (:data:`VARIATIONS`) is a table: each row names config overrides, the heads they apply to and
the input kinds (:data:`INPUT_KINDS`) they interact with. Every ``GPT2Config`` field that changes numbers
has a row. ``generated_cases(full=True)`` runs every row with every one of its kinds (``nox -s
conformance``); ``full=False`` (CI) runs the default config in full and one seeded kind per other row,
so every field is still touched.
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


def head_of(architecture: str) -> str:
    """The :data:`HEADS` key of HF's class name ``architecture``."""
    return next(h for h, arch in HEADS.items() if arch == architecture)


@dataclass
class Case:
    """One model call (or a sequence of cached calls) to run in every backend."""

    name: str
    architecture: str
    config: GPT2Config
    inputs: dict[str, np.ndarray]
    flags: dict[str, bool] = field(default_factory=dict)
    # Cached continuation: chunks of input_ids run first, one call each, with use_cache=True. An
    # ``attention_mask`` in ``inputs`` then covers every position (chunks + final call); each call gets its prefix.
    past_chunks: list[np.ndarray] = field(default_factory=list)
    # (..., S) bool over every position (chunks + final call): where outputs are defined. None: everywhere.
    # Under left padding a query with no key to attend to gives no defined output in HF (fully masked softmax).
    defined: np.ndarray | None = None
    tolerance: str | None = None  # a key of runner.TOLERANCES; None: the run's dtype
    expected: dict[str, np.ndarray] | None = None  # golden outputs (HF), keyed like outputs
    checkpoint: Path | None = None  # golden: HF's checkpoint directory
    seed: int | None = None  # generated: the weights' seed (shared by every case of one config and head)

    def __post_init__(self) -> None:
        if self.defined is None and "attention_mask" in self.inputs:
            self.defined = defined_positions(self.inputs["attention_mask"])

    @property
    def model_key(self) -> str:
        """Cases with the same key share one checkpoint (and one loaded model per backend)."""
        if self.checkpoint is not None:
            return str(self.checkpoint)
        return f"{self.architecture}/{self.seed}/{self.config.to_json_string()}"



def defined_positions(attention_mask: np.ndarray) -> np.ndarray | None:
    """(..., S) bool: the positions with at least one unmasked key at or before them; None when all are.

    A query before the first real token (left padding) attends to nothing: HF's output there is the
    softmax of an all-masked row, undefined (it differs between frameworks and between kernels).
    """
    defined = np.cumsum(np.asarray(attention_mask) != 0, axis=-1) > 0
    return None if defined.all() else defined


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

#: Input kinds: what one case feeds the model.
#:   plain        input_ids                          right_pad   + attention_mask (zeros at the end)
#:   left_pad     + attention_mask, position_ids     past        one cached chunk, then a 3-token call
#:   past_steps   three cached chunks, then 1 token  past_holes  past_steps with a mask with holes and left padding
#:   headmask_tokentype  head_mask and token_type_ids            inputs_embeds  embeddings instead of ids
#:   labels       each head's labels (its loss)      single      one row (SequenceClassification without a pad id)
#:   encoder      encoder_hidden_states + encoder_attention_mask (cross-attention)
#:   encoder_past encoder states with a cached chunk
INPUT_KINDS = ("plain", "right_pad", "left_pad", "past", "past_steps", "past_holes", "headmask_tokentype",
               "inputs_embeds", "labels", "single", "encoder", "encoder_past")
#: the kinds every attention setting interacts with (masks, caches, head masks)
ATTENTION_KINDS = ("plain", "right_pad", "left_pad", "past", "past_steps", "past_holes", "headmask_tokentype")
#: the kinds of the default config: every head, every input except those that need a special config
DEFAULT_KINDS = tuple(k for k in INPUT_KINDS if k not in ("single", "encoder", "encoder_past"))
ALL_HEADS = ("base", "lm", "double", "seqcls", "tokcls", "qa")
# Heads whose HF outputs carry no cache (HF's QA head does not even take use_cache).
NO_CACHE_HEADS = ("tokcls", "qa")
CACHE_KINDS = ("past", "past_steps", "past_holes", "encoder_past")


@dataclass(frozen=True)
class Variation:
    """One row of the grid: config overrides on :data:`BASE_CONFIG`, the heads and input kinds to run."""

    name: str
    overrides: dict
    heads: tuple[str, ...] = ("lm",)
    kinds: tuple[str, ...] = ("plain", "past")


def _variations() -> tuple[Variation, ...]:
    rows = [Variation("default", {}, ALL_HEADS, DEFAULT_KINDS)]
    # the MLP's activation does not meet the mask or the cache: one plain call each
    rows += [Variation(f"act-{act}", {"activation_function": act}, kinds=("plain",)) for act in ACTIVATIONS
             if act != "gelu_new"]
    rows += [
        Variation("n_inner-40", {"n_inner": 40}),
        Variation("layer_norm_epsilon-1e-2", {"layer_norm_epsilon": 1e-2}, kinds=("plain",)),
        # the three attention flags, alone and together, against every mask and cache
        Variation("no-scale", {"scale_attn_weights": False}, kinds=ATTENTION_KINDS),
        Variation("inverse-layer-scale", {"scale_attn_by_inverse_layer_idx": True, "n_layer": 3}, kinds=ATTENTION_KINDS),
        Variation("upcast-reorder", {"reorder_and_upcast_attn": True}, kinds=ATTENTION_KINDS),
        Variation("all-flags", {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True,
                                "scale_attn_weights": False}, ("lm", "double"), ATTENTION_KINDS),
        Variation("odd-heads", {"n_embd": 21, "n_head": 3}, kinds=("plain", "left_pad", "past")),
        Variation("one-layer", {"n_layer": 1}),
        Variation("three-layers", {"n_layer": 3, "n_head": 6}),
        Variation("untied", {"tie_word_embeddings": False}, ("lm", "double"), ("plain", "labels")),
        # the multiple-choice summary: every summary_* field (HF pools "last"/"first"/"mean" over dim 1)
        Variation("summary-last", {"summary_type": "last"}, ("double",), ("plain", "labels")),
        Variation("summary-first", {"summary_type": "first", "summary_use_proj": False}, ("double",), ("plain",)),
        Variation("summary-mean", {"summary_type": "mean", "summary_activation": "tanh"}, ("double",), ("plain",)),
        Variation("summary-tanh", {"summary_activation": "tanh"}, ("double",), ("plain", "labels")),
        Variation("summary-no-proj", {"summary_use_proj": False}, ("double",), ("plain",)),
        Variation("summary-to-hidden", {"summary_proj_to_labels": False, "num_labels": 5}, ("double",), ("plain",)),
        # classification heads: num_labels, and the last-token rule with and without pad_token_id
        Variation("num_labels-1", {"num_labels": 1}, ("seqcls", "tokcls"), ("plain", "labels")),
        Variation("num_labels-5", {"num_labels": 5}, ("seqcls", "tokcls"), ("labels",)),
        Variation("no-pad-id", {"pad_token_id": None}, ("seqcls",), ("single",)),
        Variation("pad-id-5", {"pad_token_id": 5}, ("seqcls",), ("right_pad", "left_pad")),
        # cross-attention: encoder states, their mask, and the cache beside them
        Variation("cross-attention", {"add_cross_attention": True}, ("base", "lm"), ("plain", "encoder", "encoder_past")),
    ]
    return tuple(rows)


VARIATIONS = _variations()


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


def applies(kind: str, head: str, config: GPT2Config) -> bool:
    """Whether input ``kind`` makes sense for ``head`` on ``config``."""
    if kind == "labels" and head == "base":
        return False
    if kind in CACHE_KINDS and head in NO_CACHE_HEADS:
        return False
    if kind.startswith("encoder") and not config.add_cross_attention:
        return False
    if head == "seqcls" and config.pad_token_id is None:
        return kind == "single"  # HF: a batch needs a pad token to find each row's last token
    return kind != "single" or head == "seqcls"


def _inputs(rng: np.random.Generator, config: GPT2Config, kind: str, head: str) -> tuple[dict, dict, list]:
    """(inputs, call flags, cached chunks) of one kind, for a (B=3, T=7) batch ((B, C=2, T) for DoubleHeads)."""
    b, t = (1, 7) if kind == "single" else (3, 7)
    ids = rng.integers(1, config.vocab_size, size=(b, t))
    if config.pad_token_id is not None:  # real tokens never equal the pad id (the last-token rule looks for it)
        ids = np.where(ids == config.pad_token_id, (config.pad_token_id + 1) % config.vocab_size, ids)
    flags = {"output_hidden_states": True, "output_attentions": True}
    if head not in NO_CACHE_HEADS:
        flags["use_cache"] = True
    inputs: dict[str, np.ndarray] = {"input_ids": ids}
    chunks: list[np.ndarray] = []
    pad = 0 if config.pad_token_id is None else config.pad_token_id  # only SequenceClassification reads it

    def padded(mask: np.ndarray) -> np.ndarray:
        return np.where(mask == 1, ids, pad)

    if kind == "right_pad":
        mask = np.ones((b, t), np.int64)
        mask[1, 5:] = 0
        mask[2, 3:] = 0
        inputs.update(input_ids=padded(mask), attention_mask=mask)
    elif kind == "left_pad":
        mask = np.ones((b, t), np.int64)
        mask[1, :2] = 0
        mask[2, :4] = 0
        inputs.update(input_ids=padded(mask), attention_mask=mask,
                      position_ids=np.clip(np.cumsum(mask, axis=1) - 1, 0, None))
    elif kind in ("past", "encoder_past"):  # one chunk of 4, then 3 tokens (7 positions, as past_steps)
        chunks = [ids[:, :4]]
        inputs["input_ids"] = ids[:, 4:]
    elif kind in ("past_steps", "past_holes"):  # chunks of 4, 1, 1, then 1 token
        chunks = [ids[:, :4], ids[:, 4:5], ids[:, 5:6]]
        inputs["input_ids"] = ids[:, 6:]
        if kind == "past_holes":  # holes inside the cache, and row 2 left-padded
            mask = np.ones((b, t), np.int64)
            mask[0, 2] = 0
            mask[1, [1, 4]] = 0
            mask[2, :2] = 0
            inputs["attention_mask"] = mask
    elif kind == "headmask_tokentype":
        head_mask = rng.uniform(0.0, 1.0, size=(config.n_layer, config.n_head)).astype(np.float32)
        head_mask[0, 0] = 0.0
        inputs["head_mask"] = head_mask
        inputs["token_type_ids"] = rng.integers(0, 2, size=(b, t))
    elif kind == "inputs_embeds":
        del inputs["input_ids"]
        inputs["inputs_embeds"] = rng.standard_normal((b, t, config.n_embd)).astype(np.float32)
    elif kind == "labels":
        flags = {}
        inputs.update(_labels(rng, config, head, b, t, ids))
    if kind.startswith("encoder"):
        inputs["encoder_hidden_states"] = rng.standard_normal((b, 5, config.n_embd)).astype(np.float32)
        encoder_mask = np.ones((b, 5), np.int64)
        encoder_mask[1, 3:] = 0
        inputs["encoder_attention_mask"] = encoder_mask
    if head == "double":
        inputs, chunks = _choices(rng, inputs, chunks, kind)
    return inputs, flags, chunks


def _choices(rng, inputs: dict, chunks: list, kind: str) -> tuple[dict, list]:
    """Multiple choice: every (B, T...) input becomes (B, C=2, T...), the second choice the rows reversed;
    ``mc_token_ids`` at each choice's last position."""
    out = {}
    for key, value in inputs.items():
        if key in ("head_mask", "encoder_hidden_states", "encoder_attention_mask"):
            out[key] = value
        else:
            out[key] = np.stack([value, value[::-1]], axis=1)
    chunks = [np.stack([c, c[::-1]], axis=1) for c in chunks]
    seq = out.get("input_ids", out.get("inputs_embeds")).shape[2]
    b = next(iter(out.values())).shape[0]
    out["mc_token_ids"] = np.full((b, 2), seq - 1, dtype=np.int64)
    if kind == "labels":
        out["mc_labels"] = rng.integers(0, 2, size=(b,))
    return out, chunks


def _labels(rng, config, head, b, t, ids) -> dict[str, np.ndarray]:
    if head in ("lm", "double"):
        labels = ids.copy()
        labels[0, :2] = -100
        return {"labels": labels}
    if head == "seqcls":
        if config.num_labels == 1:  # regression
            return {"labels": rng.standard_normal((b,)).astype(np.float32)}
        return {"labels": rng.integers(0, config.num_labels, size=(b,))}
    if head == "tokcls":  # always class ids (HF's token classification has no regression)
        labels = rng.integers(0, config.num_labels, size=(b, t))
        labels[1, -2:] = -100
        return {"labels": labels}
    if head == "qa":
        return {"start_positions": rng.integers(0, t, size=(b,)), "end_positions": np.array([1, t + 5, 3])[:b]}
    return {}


def _case(name: str, head: str, config: GPT2Config, kind: str, rng: np.random.Generator, **kwargs) -> Case:
    inputs, flags, chunks = _inputs(rng, config, kind, head)
    return Case(name=name, architecture=HEADS[head], config=config, inputs=inputs, flags=flags, past_chunks=chunks,
                **kwargs)


def generated_cases(seed: int = 0, full: bool = True) -> list[Case]:
    """The grid of :data:`VARIATIONS`: each row's heads with each of its input kinds.

    ``full=False`` is the CI sample: the default config's LM with every kind, every other (row, head) with
    one of its kinds drawn with ``seed``, and each kind the draw missed on the first (row, head) it applies
    to: every config field, every head and every input kind still run.
    """
    rows = []  # (row, head, config, kinds)
    pick = np.random.default_rng([seed, 1])
    for row in VARIATIONS:
        config = GPT2Config(**{**BASE_CONFIG, **row.overrides})
        for head in row.heads:
            kinds = [k for k in row.kinds if applies(k, head, config)]
            if not full and kinds and (row.name, head) != ("default", "lm"):
                kinds = [kinds[int(pick.integers(len(kinds)))]]
            rows.append((row, head, config, kinds))
    if not full:
        drawn = {k for *_, kinds in rows for k in kinds}
        for kind in INPUT_KINDS:
            if kind not in drawn:
                _, _, _, kinds = next(r for r in rows if kind in r[0].kinds and applies(kind, r[1], r[2]))
                kinds.append(kind)
    cases = []
    rng = np.random.default_rng(seed)
    for row, head, config, kinds in rows:
        model_seed = zlib.crc32(f"{seed}/{row.name}/{head}".encode())
        for kind in kinds:
            cases.append(_case(f"gen/{row.name}/{head}/{kind}", head, config, kind, rng, seed=model_seed))
    return cases


def checkpoint_cases(path: Path, seed: int = 0) -> list[Case]:
    """Every input kind that applies to an existing checkpoint (its own config and head), for
    ``gpt2-multi conform CKPT``."""
    from gpt2_multi.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    head = head_of(ckpt.architecture)
    directory = ckpt.source if ckpt.source is not None and ckpt.source.is_dir() else Path(path)
    config = ckpt.config
    rng = np.random.default_rng(seed)
    return [_case(f"{Path(path).name}/{head}/{kind}", head, config, kind, rng, checkpoint=directory)
            for kind in INPUT_KINDS if applies(kind, head, config)]
