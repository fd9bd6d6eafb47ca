"""Training conformance: losses, gradients (with and without gradient checkpointing) and one AdamW step,
compared across backends on seeded tiny checkpoints of every head (``gpt2-multi conform --grads``).

Framework-free: each backend is driven through its registry functions ``loss_and_grads`` and
``adamw_step`` (:mod:`gpt2_multi.backends`), whose semantics :mod:`gpt2_multi.training` defines. For each
case (a head, a config, labelled inputs) and each backend:

* ``loss_and_grads(checkpointing=False)``: the losses (``loss``, and ``mc_loss`` for the double heads)
  and the gradient of every parameter, under HF PyTorch names;
* ``loss_and_grads(checkpointing=True)``: the same on the training path with gradient checkpointing
  (PyTorch ``gradient_checkpointing_enable``, Flax ``nn.remat``; TensorFlow has none: ``training=True``);
* ``adamw_step``: every weight after one AdamW step (:class:`gpt2_multi.training.AdamWHyper`).

Every pair of backends is compared key by key; a key one backend lacks (a parameter name missing from its
gradients, say) is a failure. Result rows are ``(head, pair, key, max_abs_diff, passed)``; keys are
``loss`` / ``mc_loss``, ``grad/<name>``, ``ckpt/loss``, ``ckpt/grad/<name>`` and ``step/<name>``.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
import traceback
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpt2_multi import backends as registry
from gpt2_multi.checkpoint import save_checkpoint
from gpt2_multi.config import GPT2Config
from gpt2_multi.conformance import cases as case_lib
from gpt2_multi.conformance.runner import Tolerance, compare_arrays, missing_in
from gpt2_multi.training import AdamWHyper

#: the tolerance per kind of value: pass when |a - b| <= atol + rtol * |b| everywhere (float32 runs).
#: Measured worst differences (pt, tf, flax on the cases below, CPU): losses 9.5e-7 (a few % of the tolerance),
#: gradients 3.3e-7 (2 %), weights after the step 1.5e-7 (10 %; one float32 ulp of a LayerNorm weight near 1).
TOLERANCES: dict[str, Tolerance] = {
    "loss": Tolerance(1e-5, 1e-5),
    "grad": Tolerance(1e-5, 1e-4),
    "step": Tolerance(1e-6, 1e-5),
}

#: The AdamW step compared. Adam's first step moves a weight by ``lr * g / (|g| + eps)``, so a gradient difference
#: ``dg`` between backends becomes a weight difference of up to ``(lr / eps) * dg``. With the usual ``eps = 1e-8``
#: that factor is 1e5: gradients that are zero in exact arithmetic (the attention's key bias; ``ln_f.bias`` and
#: ``qa_outputs.bias`` under the QA softmax's shift invariance) carry framework-specific float32 noise of ~1e-8,
#: which becomes updates of up to +-lr that differ by ~lr. ``eps = lr`` makes the factor 1, so the weights
#: agree as well as the gradients do; it also makes Keras' epsilon placement visible (its corrected epsilon is
#: 3.2e-5, not 1e-3). The weight decay is larger than usual so that it shows in the weights (lr * wd * |w| ~ 1e-5).
HYPER = AdamWHyper(lr=1e-3, betas=(0.9, 0.999), eps=1e-3, weight_decay=0.1)

#: added to every training config: HF's token-classification head falls back to dropout 0.1 without it, and
#: training-mode calls (checkpointing) would then be random
NO_DROPOUT = {"classifier_dropout": 0.0}

#: case name -> (cases.HEADS key, config overrides on cases.BASE_CONFIG)
CASES: dict[str, tuple[str, dict]] = {
    "lm": ("lm", {}),
    "lm-untied": ("lm", {"tie_word_embeddings": False}),
    "double": ("double", {}),
    "seqcls": ("seqcls", {}),
    "tokcls": ("tokcls", {}),
    "qa": ("qa", {}),
}

#: the dropout fields zeroed on a user's checkpoint (training-mode calls would be random otherwise)
DROPOUTS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout", "classifier_dropout")


@dataclass
class TrainingCase:
    name: str
    architecture: str
    config: GPT2Config
    inputs: dict[str, np.ndarray]
    seed: int | None = None  # generated weights (cases.random_tensors); None: ``checkpoint``
    checkpoint: Path | None = None


@dataclass
class TrainingRow:
    head: str  # the case name: "lm", "double", ...
    pair: str  # "pt~tf"; an error row names its backend
    key: str  # "loss", "grad/<name>", "ckpt/grad/<name>", "step/<name>", "error"
    max_abs_diff: float
    passed: bool
    detail: str = ""


@dataclass
class TrainingResult:
    backends: list[str]
    cases: list[str] = field(default_factory=list)
    rows: list[TrainingRow] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    hyper: AdamWHyper = HYPER

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)


# ------------------------------------------------------------------------------------------ cases
def training_cases(seed: int = 0) -> list[TrainingCase]:
    """One labelled batch per head on the tiny float32, dropout-free config (``cases.BASE_CONFIG``)."""
    rng = np.random.default_rng(seed)
    out = []
    for name, (head, overrides) in CASES.items():
        config = GPT2Config(**{**case_lib.BASE_CONFIG, **NO_DROPOUT, **overrides})
        inputs, _, _ = case_lib._inputs(rng, config, "labels", head)
        out.append(TrainingCase(name, case_lib.HEADS[head], config, inputs,
                                seed=zlib.crc32(f"training/{seed}/{name}".encode())))
    return out


def checkpoint_training_case(path: Path, seed: int = 0) -> TrainingCase:
    """Labelled inputs for an existing checkpoint's own head; its dropouts are zeroed (see :data:`DROPOUTS`)."""
    from gpt2_multi.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    head = case_lib.head_of(ckpt.architecture)
    if head == "base":
        raise ValueError(f"{path}: a GPT2Model checkpoint has no head and no loss to differentiate")
    config = ckpt.config.copy(**{k: 0.0 for k in DROPOUTS})
    if config.pad_token_id is None:
        config = config.copy(pad_token_id=0)
    inputs, _, _ = case_lib._inputs(np.random.default_rng(seed), config, "labels", head)
    return TrainingCase(f"{Path(path).name}/{head}", ckpt.architecture, config, inputs, checkpoint=Path(path))


def write_checkpoint(case: TrainingCase, directory: Path) -> Path:
    """The case's weights and config as a safetensors checkpoint every backend loads."""
    if case.seed is not None:
        tensors = case_lib.random_tensors(case.config, case.architecture, case.seed)
    else:
        from gpt2_multi.checkpoint import load_checkpoint

        tensors = load_checkpoint(case.checkpoint).tensors
    save_checkpoint(directory, tensors, case.config, architecture=case.architecture)
    return directory


# ------------------------------------------------------------------------------------------ running
def run_backend(backend: str, case: TrainingCase, path: Path, hyper: AdamWHyper = HYPER) -> dict[str, np.ndarray]:
    """Everything one backend computes for ``case``, flat: ``loss``, ``grad/<name>``, ``ckpt/...``, ``step/<name>``."""
    ops = registry.get(backend).ops
    model = ops.load(path, case.architecture)
    flat: dict[str, np.ndarray] = {}
    for prefix, checkpointing in (("", False), ("ckpt/", True)):
        losses, grads = ops.loss_and_grads(model, case.inputs, checkpointing=checkpointing)
        flat.update({f"{prefix}{k}": np.float64(v) for k, v in losses.items()})
        flat.update({f"{prefix}grad/{k}": v for k, v in grads.items()})
    flat.update({f"step/{k}": v for k, v in ops.adamw_step(model, case.inputs, hyper).items()})  # updates the model last
    return flat


def kind_of(key: str) -> str:
    """The tolerance (and table row) a key belongs to: ``loss``, ``grad`` or ``step``."""
    leaf = key.removeprefix("ckpt/")
    return "grad" if leaf.startswith("grad/") else "step" if leaf.startswith("step/") else "loss"


def compare(head: str, name_a: str, out_a: dict, name_b: str, out_b: dict) -> list[TrainingRow]:
    """Every key of either side; one side's missing key, or a shape mismatch, fails with an infinite diff."""
    pair = f"{name_a}~{name_b}"
    rows = []
    for key in sorted(set(out_a) | set(out_b)):
        if missing := missing_in(key, name_a, out_a, name_b, out_b):
            rows.append(TrainingRow(head, pair, key, math.inf, False, missing))
            continue
        rows.append(TrainingRow(head, pair, key, *compare_arrays(out_a[key], out_b[key], TOLERANCES[kind_of(key)])))
    return rows


def run_training(backends: list[str] | None = None, cases: list[TrainingCase] | None = None,
                 hyper: AdamWHyper = HYPER, workdir: Path | None = None, progress=None) -> TrainingResult:
    """Run ``cases`` (default :func:`training_cases`) in ``backends`` (default: every available one); compare pairwise."""
    backends = list(backends or registry.available())
    cases = training_cases() if cases is None else cases
    result = TrainingResult(backends=backends, cases=[c.name for c in cases], hyper=hyper)
    with tempfile.TemporaryDirectory(prefix="gpt2-multi-grads-") as tmp:
        root = Path(workdir or tmp)
        for i, case in enumerate(cases):
            path = write_checkpoint(case, root / f"training-{i}")
            got: dict[str, dict] = {}
            for backend in backends:
                start = time.perf_counter()
                try:
                    got[backend] = run_backend(backend, case, path, hyper)
                except Exception:  # noqa: BLE001 - recorded as a failing row, the run goes on
                    result.rows.append(TrainingRow(case.name, backend, "error", math.nan, False,
                                                   traceback.format_exc(limit=3)))
                result.seconds[backend] = result.seconds.get(backend, 0.0) + time.perf_counter() - start
            names = [b for b in backends if b in got]
            for j, a in enumerate(names):
                for b in names[j + 1:]:
                    result.rows += compare(case.name, a, got[a], b, got[b])
            if progress is not None:
                progress(i + 1, len(cases))
    return result


# ------------------------------------------------------------------------------------------ report
ROW_KINDS = (("loss", "loss"), ("grads", "grad"), ("ckpt loss", "ckpt/loss"), ("ckpt grads", "ckpt/grad"),
             ("adamw step", "step"))


def _row_kind(key: str) -> str:
    if key.startswith("ckpt/"):
        return "ckpt grads" if kind_of(key) == "grad" else "ckpt loss"
    return {"loss": "loss", "grad": "grads", "step": "adamw step"}[kind_of(key)]


def worst(result: TrainingResult) -> dict[tuple[str, str, str], tuple[float, bool, str]]:
    """(head, row kind, pair) -> (worst max |diff|, all passed, the key with the worst diff)."""
    table: dict[tuple[str, str, str], tuple[float, bool, str]] = {}
    for r in result.rows:
        if r.key == "error":
            continue
        cell = (r.head, _row_kind(r.key), r.pair)
        diff, ok, key = table.get(cell, (-1.0, True, ""))
        if r.max_abs_diff > diff:
            diff, key = r.max_abs_diff, r.key
        table[cell] = (diff, ok and r.passed, key)
    return table


def to_text(result: TrainingResult) -> str:
    """The worst difference per head, per kind (loss, grads, checkpointed, AdamW) and per backend pair."""
    tol = ", ".join(f"{k} {t.atol:g} + {t.rtol:g} |b|" for k, t in TOLERANCES.items())
    hyper = result.hyper
    lines = [f"training conformance: {len(result.cases)} heads, backends {', '.join(result.backends)}, float32; "
             f"AdamW lr={hyper.lr:g} betas={hyper.betas} eps={hyper.eps:g} weight_decay={hyper.weight_decay:g}",
             f"pass: |a - b| <= {tol}"]
    table = worst(result)
    pairs = sorted({p for _, _, p in table})
    hw = max([len(c) for c in result.cases] + [4])
    lines.append(f"{'head':<{hw}}  {'what':<10}  " + "  ".join(f"{p:>14}" for p in pairs))
    for head in result.cases:
        for label, _ in ROW_KINDS:
            if not any((head, label, p) in table for p in pairs):
                continue
            cells = []
            for p in pairs:
                if (head, label, p) in table:
                    diff, ok, _ = table[(head, label, p)]
                    cells.append(f"{diff:>9.1e} {'ok' if ok else 'FAIL':>4}")
                else:
                    cells.append(f"{'-':>14}")
            lines.append(f"{head:<{hw}}  {label:<10}  " + "  ".join(cells))
    per_pair: dict[str, float] = defaultdict(float)
    for (_, _, pair), (diff, _, _) in table.items():
        per_pair[pair] = max(per_pair[pair], diff)
    if per_pair:
        lines.append("worst max |diff| per pair: " + ", ".join(f"{p} {d:.1e}" for p, d in sorted(per_pair.items())))
    for r in result.rows:
        if not r.passed and r.key != "error":
            lines.append(f"FAIL {r.head} {r.pair}: {r.key} " + (r.detail or f"differs by {r.max_abs_diff:.3e}"))
        elif r.key == "error":
            lines.append(f"ERROR {r.head} [{r.pair}]: {r.detail.strip().splitlines()[-1]}")
    lines.append("time per backend: " + ", ".join(f"{b} {s:.1f} s" for b, s in result.seconds.items()))
    n_fail = sum(not r.passed for r in result.rows)
    lines.append(f"{'PASSED' if result.passed else 'FAILED'}: {len(result.rows) - n_fail} of {len(result.rows)} "
                 "training comparisons")
    return "\n".join(lines)


def as_dict(result: TrainingResult) -> dict:
    """The result for ``--json``."""
    return {
        "backends": result.backends,
        "cases": result.cases,
        "passed": result.passed,
        "tolerance": {k: {"atol": t.atol, "rtol": t.rtol} for k, t in TOLERANCES.items()},
        "hyper": dataclasses.asdict(result.hyper),
        "rows": [r.__dict__ for r in result.rows],
        "seconds": result.seconds,
    }


__all__ = ["CASES", "HYPER", "TOLERANCES", "TrainingCase", "TrainingResult", "TrainingRow", "as_dict",
           "checkpoint_training_case", "compare", "run_backend", "run_training", "to_text", "training_cases", "worst"]
