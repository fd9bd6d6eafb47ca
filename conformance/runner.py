"""Run conformance cases in every installed backend and compare the outputs.

Comparisons, per case: every backend against the golden data (where the case has it),
and every pair of backends against each other. Outputs compared: logits, hidden
states, attentions, losses and KV caches (all converted to ``(B, H, S, D)`` by the
stacks' ``backend.cache_to_bhsd``). Only positions that are undefined are masked: the case says which
(``Case.defined``: queries with nothing to attend to under left padding, and the keys computed from them).

Tolerances are data (:data:`TOLERANCES`): float32 ``|a - b| <= 1e-4 + 1e-4 |b|``; bfloat16 runs
(``dtype="bfloat16"``) use ``|a - b| <= u + 16 u max|b|`` (u = 2^-8, bfloat16's unit roundoff; ``max|b|`` over
the compared output's finite values), stated separately in the report. A bfloat16 run also reports, per backend, how far its
logits lie from the same backend's float32 logits on the cases it is asked to (:class:`Drift`).

Every output either side produced is compared (the union): an output that one backend returns and
another does not is a failure, not a silent pass.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpt2_multi import backends as registry
from gpt2_multi.conformance.cases import Case, make_checkpoint


@dataclass(frozen=True)
class Tolerance:
    """Pass when ``|a - b| <= atol + rtol * |b| + scale * max|b|`` elementwise, ``max|b|`` over the finite values
    of the whole compared output (the magnitude a low-precision rounding error is relative to)."""

    atol: float
    rtol: float
    scale: float = 0.0

    def bound(self, b: np.ndarray) -> np.ndarray:
        """The allowed ``|a - b|`` at each element of ``b``. ``max|b|`` is taken over the finite elements: one
        infinite reference value must not make every other element's bound infinite."""
        b = np.abs(b)
        finite = b[np.isfinite(b)]
        peak = self.scale * float(finite.max()) if self.scale and finite.size else 0.0
        with np.errstate(invalid="ignore"):  # 0 * inf: a non-finite element has no numeric bound (compare_arrays)
            return self.atol + self.rtol * b + peak

    def describe(self) -> str:
        text = f"|a - b| <= {self.atol:.3g} + {self.rtol:.3g} |b|" if self.rtol else f"|a - b| <= {self.atol:.3g}"
        return text + (f" + {self.scale:.3g} max|b|" if self.scale else "")


#: bfloat16's unit roundoff: 8 significant bits, so rounding to bfloat16 is off by at most 2^-8 of the value
BF16_UNIT_ROUNDOFF = 2.0 ** -8
#: how far one backend's bfloat16 forward may lie from its own float32 forward: 8 u of the output's scale.
#: Every stored activation is rounded (relative error <= u) and the errors pass through the layers at about unit
#: gain (LayerNorm renormalises), so a bf16 forward is a few u of the scale off; measured on every conformance
#: case, at most 6.1 u (3.4 to 4.2 u on the trained model gpt2-multi/tiny).
BF16_FROM_FLOAT32 = 8 * BF16_UNIT_ROUNDOFF

#: the tolerances, as data: a run uses its dtype's entry unless a case names another (``Case.tolerance``).
#: bfloat16: two backends each within BF16_FROM_FLOAT32 of the exact result are within twice that of each other,
#: 16 u (1/16) of the output's largest magnitude, plus u absolute for outputs that are about 0 throughout. The
#: backends round at the same points (tests/contract/test_bfloat16.py); what still differs is the order of float32
#: accumulations and library functions, which moves a rounding now and then: measured worst cross-backend
#: difference 5.7 u of the scale over the grid and 4.0 u on the trained model before the linear layers of TF and
#: Flax rounded once (margins 2.8x and 4x); the trained model after: 0.094 of logits up to 13.6, 1.8 u. An absolute tolerance cannot be right for bfloat16:
#: the trained model's logits reach |12|, where one bfloat16 step is 2^-4 = 0.0625.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(1e-4, 1e-4),
    "bfloat16": Tolerance(BF16_UNIT_ROUNDOFF, 0.0, 2 * BF16_FROM_FLOAT32),
}


@dataclass
class Comparison:
    case: str
    pair: str  # "pt~tf", "flax~golden", ...
    key: str
    max_abs_diff: float
    passed: bool
    detail: str = ""  # why a comparison failed without a number: a missing output, a shape mismatch


@dataclass
class Drift:
    """One case's logits in a low-precision run against the same backend's float32 logits."""

    case: str
    backend: str
    max_abs_diff: float
    scale: float  # max |float32 logits| over the compared (defined) positions

    @property
    def relative(self) -> float:
        return self.max_abs_diff / self.scale if self.scale else 0.0


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
    drift: list[Drift] = field(default_factory=list)  # low-precision runs: each backend against its float32

    @property
    def passed(self) -> bool:
        compared = bool(self.comparisons) or bool(self.generation)
        return (not self.errors and all(c.passed for c in self.comparisons)
                and all(g.passed or not g.required for g in self.generation)
                and compared)


#: outputs with no position axis; SequenceClassification's logits are pooled too
POOLED_OUTPUTS = ("loss", "mc_loss", "mc_logits")
POOLED_LOGITS = ("GPT2ForSequenceClassification",)


def _defined(case: Case, key: str, array: np.ndarray) -> np.ndarray:
    """The defined part of ``array`` under ``case.defined`` (a mask over every position, cache included).

    Per-query outputs keep the mask's last T positions: logits and hidden states (..., T, X), span logits
    (..., T), attentions (N, H, T, S) on their query axis; the cache (N, H, S, D) keeps its S positions.
    Choices of a multiple-choice batch may be flattened into the batch axis (HF's caches and attentions are
    ``(B * C, ...)``); the mask is reshaped to match.
    """
    mask = case.defined
    pooled = key in POOLED_OUTPUTS or (key == "logits" and case.architecture in POOLED_LOGITS)
    if mask is None or pooled or array.ndim == 0:
        return array
    if key.startswith(("past.", "attentions.", "cross_attentions.")):
        array, axis = np.moveaxis(array, 1, 2), 1  # (N, H, T, .) -> (N, T, H, .)
    else:
        axis = array.ndim - 1 if key in ("start_logits", "end_logits") else array.ndim - 2
    lead, length = array.shape[:axis], array.shape[axis]
    if int(np.prod(lead)) != int(np.prod(mask.shape[:-1])) or length > mask.shape[-1]:
        raise ValueError(f"{case.name}: cannot apply its defined-positions mask {mask.shape} to {key} {array.shape}")
    return array[mask.reshape(*lead, mask.shape[-1])[..., -length:]]


def compare_arrays(a: np.ndarray, b: np.ndarray, tol: Tolerance) -> tuple[float, bool, str]:
    """(max |a - b|, passed, why it failed without a number): the one elementwise test of both suites.

    Non-finite values agree only with the same value: ``inf`` with ``inf`` of the same sign; a NaN on either
    side fails (and makes the reported difference ``inf``), so a backend that overflows never passes.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf"), False, f"shape {a.shape} vs {b.shape}"
    if not a.size:
        return 0.0, True, ""
    finite = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore"):  # inf - inf where both sides are infinite: judged by equality below
        gap = np.abs(a - b)
        ok = np.where(finite, gap <= tol.bound(b), a == b)
    bad = int(np.count_nonzero(~finite & ~ok))
    diff = float(gap[finite].max()) if finite.any() else 0.0
    if bad:
        return float("inf"), False, f"{bad} non-finite value(s) differ"
    return diff, bool(ok.all()), ""


def missing_in(key: str, name_a: str, out_a: dict, name_b: str, out_b: dict) -> str:
    """"missing in <name>" when one side lacks ``key``, else ""."""
    if key in out_a and key in out_b:
        return ""
    return f"missing in {name_a if key not in out_a else name_b}"


def compare(case: Case, name_a: str, out_a: dict, name_b: str, out_b: dict, dtype: str) -> list[Comparison]:
    """Compare every output of ``out_a`` with ``out_b``: the union of their keys, so an output one side
    lacks fails. Against golden data (``name_b == "golden"``) only HF's outputs are required."""
    tol = TOLERANCES[case.tolerance or dtype]
    pair = f"{name_a}~{name_b}"
    keys = set(out_b) if name_b == "golden" else set(out_a) | set(out_b)
    rows = []
    for key in sorted(keys):
        if missing := missing_in(key, name_a, out_a, name_b, out_b):
            rows.append(Comparison(case.name, pair, key, float("inf"), False, missing))
            continue
        a = _defined(case, key, np.asarray(out_a[key], np.float64))
        b = _defined(case, key, np.asarray(out_b[key], np.float64))
        rows.append(Comparison(case.name, pair, key, *compare_arrays(a, b, tol)))
    return rows


def drift(case: Case, backend: str, low: dict, float32: dict) -> Drift | None:
    """``case``'s logits from a low-precision run against the same backend's float32 run (None: no logits)."""
    if "logits" not in low or "logits" not in float32:
        return None
    a = _defined(case, "logits", np.asarray(low["logits"], np.float64))
    b = _defined(case, "logits", np.asarray(float32["logits"], np.float64))
    return Drift(case.name, backend, float(np.max(np.abs(a - b))) if b.size else 0.0,
                 float(np.max(np.abs(b))) if b.size else 0.0)


def run(cases: list[Case], backends: list[str] | None = None, dtype: str = "float32", workdir: Path | None = None,
        progress=None, workers: int | None = None, drift_cases: Collection[str] = ()) -> Result:
    """Run ``cases`` in ``backends`` (default: every installed one) and compare everything.

    Cases that share a model (:attr:`Case.model_key`) run on one loaded model. A backend whose registry record
    allows it (``concurrent_models``: Flax, whose time goes to XLA compiling one program per new shape, outside
    the GIL) runs ``workers`` models at once on threads (default: one per CPU core, at most 4); every case is
    still computed alone on its own model, so the outputs do not depend on the schedule.
    ``progress(done, total)`` is called after each model of each backend. In a low-precision run the cases
    named in ``drift_cases`` also run on the same backend's float32 model, and how far their logits moved is
    recorded (:attr:`Result.drift`).
    """
    backends = backends or registry.available()
    result = Result(backends=list(backends), dtype=dtype, cases=[c.name for c in cases])
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.model_key, []).append(case)
    workers = workers or min(os.cpu_count() or 1, 4)
    with tempfile.TemporaryDirectory(prefix="gpt2-multi-conform-") as tmp:
        root = Path(workdir or tmp)
        outputs: dict[str, dict[str, dict]] = {c.name: {} for c in cases}
        jobs = [(group, group[0].checkpoint or make_checkpoint(group[0], root / f"model-{i}"))
                for i, group in enumerate(groups.values())]
        done = 0

        def run_model(backend: str, ops, group: list[Case], ckpt: Path) -> None:
            try:
                model = ops.load(ckpt, group[0].architecture, dtype)
            except Exception:  # noqa: BLE001 - recorded per case, the run goes on
                for case in group:
                    result.errors.append(CaseError(case.name, backend, traceback.format_exc(limit=3)))
                return
            for case in group:
                try:
                    outputs[case.name][backend] = ops.forward(model, case.inputs, case.flags, case.past_chunks)
                except Exception:  # noqa: BLE001
                    result.errors.append(CaseError(case.name, backend, traceback.format_exc(limit=3)))
            drifting = [c for c in group if c.name in drift_cases and backend in outputs[c.name]]
            if dtype == "float32" or not drifting:
                return
            try:
                reference = ops.load(ckpt, group[0].architecture, "float32")
                for case in drifting:
                    row = drift(case, backend, outputs[case.name][backend],
                                ops.forward(reference, case.inputs, case.flags, case.past_chunks))
                    if row is not None:
                        result.drift.append(row)
            except Exception:  # noqa: BLE001
                result.errors.append(CaseError(drifting[0].name, backend, traceback.format_exc(limit=3)))

        for backend in backends:
            record = registry.get(backend)
            ops = record.ops
            start = time.perf_counter()
            if record.concurrent_models and workers > 1 and len(jobs) > 1:
                with ThreadPoolExecutor(workers, thread_name_prefix=f"conform-{backend}") as pool:
                    for future in as_completed([pool.submit(run_model, backend, ops, *job) for job in jobs]):
                        future.result()
                        done += 1
                        if progress is not None:
                            progress(done, len(jobs) * len(backends))
            else:
                for job in jobs:
                    run_model(backend, ops, *job)
                    done += 1
                    if progress is not None:
                        progress(done, len(jobs) * len(backends))
            result.seconds[backend] = time.perf_counter() - start
        result.errors.sort(key=lambda e: (result.cases.index(e.case), result.backends.index(e.backend)))
        result.drift.sort(key=lambda d: (result.backends.index(d.backend), result.cases.index(d.case)))
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
