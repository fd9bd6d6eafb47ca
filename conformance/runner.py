"""Run conformance cases in every installed backend and compare the outputs.

Comparisons, per case: every backend against the golden data (where the case has it),
and every pair of backends against each other. Outputs compared: logits, hidden
states, attentions, losses and KV caches (all converted to ``(B, H, S, D)`` by the
executors). Only positions that are undefined are masked: the rows of fully masked
queries under left padding (and the keys computed from them).

Tolerances: float32 ``|a - b| <= 1e-4 + 1e-4 |b|``. bfloat16 runs (``dtype="bfloat16"``)
use ``|a - b| <= 5e-2 + 5e-2 |b|``, stated separately in the report.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpt2_multi import backends as registry
from gpt2_multi.conformance.cases import Case, make_checkpoint

TOLERANCES = {"float32": (1e-4, 1e-4), "bfloat16": (5e-2, 5e-2)}


@dataclass
class Comparison:
    case: str
    pair: str  # "pt~tf", "flax~golden", ...
    key: str
    max_abs_diff: float
    passed: bool


@dataclass
class CaseError:
    case: str
    backend: str
    error: str


@dataclass
class Result:
    backends: list[str]
    dtype: str
    comparisons: list[Comparison] = field(default_factory=list)
    errors: list[CaseError] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)
    generation: list = field(default_factory=list)  # conformance.generation.GenerationComparison

    @property
    def passed(self) -> bool:
        compared = bool(self.comparisons) or bool(self.generation)
        return (not self.errors and all(c.passed for c in self.comparisons) and all(g.passed for g in self.generation)
                and compared)


def _valid(case: Case, key: str, array: np.ndarray) -> np.ndarray:
    """The defined part of ``array``: drop fully masked query rows of left padding (and keys computed from them).

    Choices of a multiple-choice batch may be flattened into the batch axis (HF's caches and attentions
    are ``(B * C, ...)``); the mask is flattened to match.
    """
    mask = case.valid_mask()
    if mask is None:
        return np.asarray(array)
    if mask.ndim == 3 and array.shape[:2] != mask.shape[:2]:
        mask = mask.reshape(-1, mask.shape[-1])
    if key.startswith(("attentions.", "past.")) and array.ndim == 4 and array.shape[2] == mask.shape[-1]:
        return np.moveaxis(array, 1, 2)[mask]  # (N, H, T, .) -> (N, T, H, .): T is the masked axis
    if array.shape[: mask.ndim] == mask.shape:
        return array[mask]
    return np.asarray(array)


def compare(case: Case, name_a: str, out_a: dict, name_b: str, out_b: dict, dtype: str) -> list[Comparison]:
    atol, rtol = TOLERANCES[dtype]
    rows = []
    if name_b == "golden":  # every golden output must be produced
        rows += [Comparison(case.name, f"{name_a}~golden", k, float("inf"), False) for k in sorted(set(out_b) - set(out_a))]
    for key in sorted(set(out_a) & set(out_b)):
        a = _valid(case, key, np.asarray(out_a[key], np.float64))
        b = _valid(case, key, np.asarray(out_b[key], np.float64))
        if a.shape != b.shape:
            rows.append(Comparison(case.name, f"{name_a}~{name_b}", key, float("inf"), False))
            continue
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        ok = bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))
        rows.append(Comparison(case.name, f"{name_a}~{name_b}", key, diff, ok))
    return rows


def run(cases: list[Case], backends: list[str] | None = None, dtype: str = "float32", workdir: Path | None = None,
        progress=None) -> Result:
    """Run ``cases`` in ``backends`` (default: every installed one) and compare everything."""
    backends = backends or registry.available()
    result = Result(backends=list(backends), dtype=dtype, cases=[c.name for c in cases])
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.model_key, []).append(case)
    with tempfile.TemporaryDirectory(prefix="gpt2-multi-conform-") as tmp:
        root = Path(workdir or tmp)
        outputs: dict[str, dict[str, dict]] = {c.name: {} for c in cases}
        for i, group in enumerate(groups.values()):
            first = group[0]
            ckpt = first.checkpoint or make_checkpoint(first, root / f"model-{i}")
            for backend in backends:
                ops = registry.get(backend).ops
                start = time.perf_counter()
                try:
                    model = ops.load(ckpt, first.architecture, dtype)
                except Exception:  # noqa: BLE001 - recorded per case, the run goes on
                    for case in group:
                        result.errors.append(CaseError(case.name, backend, traceback.format_exc(limit=3)))
                    continue
                for case in group:
                    try:
                        outputs[case.name][backend] = ops.forward(model, case.inputs, case.flags, case.past_chunks)
                    except Exception:  # noqa: BLE001
                        result.errors.append(CaseError(case.name, backend, traceback.format_exc(limit=3)))
                result.seconds[backend] = result.seconds.get(backend, 0.0) + time.perf_counter() - start
            if progress is not None:
                progress(i + 1, len(groups))
        for case in cases:
            got = outputs[case.name]
            names = [b for b in backends if b in got]
            if case.expected is not None:
                for b in names:
                    result.comparisons += compare(case, b, got[b], "golden", case.expected, dtype)
            for j, a in enumerate(names):
                for b in names[j + 1:]:
                    result.comparisons += compare(case, a, got[a], b, got[b], dtype)
    return result
