"""Conformance report: a table per case and backend pair (max |diff|, pass/fail), or JSON for machines."""

from __future__ import annotations

import json
from collections import defaultdict

from gpt2_multi.conformance.runner import BF16_FROM_FLOAT32, BF16_UNIT_ROUNDOFF, TOLERANCES, Result


def summarize(result: Result) -> dict[tuple[str, str], tuple[float, bool, str]]:
    """(case, pair) -> (max |diff| over outputs, passed, the output with the largest diff)."""
    rows: dict[tuple[str, str], tuple[float, bool, str]] = {}
    for c in result.comparisons:
        key = (c.case, c.pair)
        diff, ok, worst = rows.get(key, (0.0, True, ""))
        if c.max_abs_diff >= diff:
            diff, worst = c.max_abs_diff, c.key
        rows[key] = (diff, ok and c.passed, worst)
    return rows


def to_text(result: Result, verbose: bool = False) -> str:
    tol = TOLERANCES[result.dtype]
    rows = summarize(result)
    pairs = sorted({pair for _, pair in rows})
    other = "" if result.dtype == "bfloat16" else f"; bfloat16 runs use {TOLERANCES['bfloat16'].describe()}"
    lines = [f"conformance: {len(result.cases)} cases, backends {', '.join(result.backends)}, dtype {result.dtype} "
             f"(pass: {tol.describe()}{other})"]
    width = max([len(c) for c in result.cases] + [4])
    lines.append(f"{'case':<{width}}  " + "  ".join(f"{p:>14}" for p in pairs))
    failed_cases = {c for (c, _), (_, ok, _) in rows.items() if not ok} | {e.case for e in result.errors
                                                                             if e.case in result.cases}
    for case in result.cases:
        if not verbose and case not in failed_cases and len(result.cases) > 40:
            continue
        cells = []
        for p in pairs:
            if (case, p) in rows:
                diff, ok, _ = rows[(case, p)]
                cells.append(f"{diff:>9.1e} {'ok' if ok else 'FAIL':>4}")
            else:
                cells.append(f"{'-':>14}")
        lines.append(f"{case:<{width}}  " + "  ".join(cells))
    if not verbose and len(result.cases) > 40:
        lines.append(f"({len(result.cases) - len(failed_cases)} passing cases not listed; --verbose lists all)")
    per_pair: dict[str, list[float]] = defaultdict(list)
    for (_, pair), (diff, _, _) in rows.items():
        per_pair[pair].append(diff)
    lines.append("worst max |diff| per pair: " + ", ".join(f"{p} {max(d):.1e}" for p, d in sorted(per_pair.items())))
    for (case, pair), (diff, ok, worst) in sorted(rows.items()):
        if not ok:
            detail = next((c.detail for c in result.comparisons if (c.case, c.pair, c.key) == (case, pair, worst)), "")
            lines.append(f"FAIL {case} {pair}: {worst} " + (detail or f"differs by {diff:.3e}"))
    for e in result.errors:
        lines.append(f"ERROR {e.case} [{e.backend}]: {e.error.strip().splitlines()[-1]}")
    if result.drift:
        lines.append(_drift_text(result))
    if result.generation:
        lines.append(_generation_text(result))
    lines.append("time per backend: " + ", ".join(f"{b} {s:.1f} s" for b, s in result.seconds.items()))
    if not result.comparisons:
        lines.append("nothing was compared (one backend and no golden data?)")
    n_fail = len(failed_cases)
    if result.generation:
        gen_cases = sorted({g.case for g in result.generation})
        gen_failed = {g.case for g in result.generation if not g.passed and g.required}
        gen_differ = {g.case for g in result.generation if not g.passed and not g.required} - gen_failed
        text = f"generation: {len(gen_cases) - len(gen_failed) - len(gen_differ)} of {len(gen_cases)} cases agree"
        lines.append(text + (f" ({len(gen_differ)} differ where agreement is not required)" if gen_differ else ""))
    uncompared = [c for c in result.cases if c not in {case for case, _ in rows} and c not in failed_cases]
    if uncompared:
        lines.append(f"{len(uncompared)} case(s) had nothing to compare against")
    compared = len(result.cases) - len(uncompared)
    lines.append(f"{'PASSED' if result.passed else 'FAILED'}: {compared - n_fail} of {compared} compared cases")
    return "\n".join(lines)


def drift_summary(result: Result) -> dict[str, dict[str, float]]:
    """Per backend, over the drift cases: the largest max |low - float32| of the logits, and the largest of
    each case's max |diff| / max |float32 logits| (also in units of bfloat16's unit roundoff u = 2^-8)."""
    out: dict[str, dict[str, float]] = {}
    for d in result.drift:
        row = out.setdefault(d.backend, {"cases": 0, "max_abs_diff": 0.0, "relative": 0.0, "scale": 0.0})
        row["cases"] += 1
        row["max_abs_diff"] = max(row["max_abs_diff"], d.max_abs_diff)
        row["relative"] = max(row["relative"], d.relative)
        row["scale"] = max(row["scale"], d.scale)
    for row in out.values():
        row["relative_u"] = row["relative"] / BF16_UNIT_ROUNDOFF
    return out


def _drift_text(result: Result) -> str:
    """A few lines: how far each backend's low-precision logits lie from its own float32 logits."""
    summary = drift_summary(result)
    cases = max(row["cases"] for row in summary.values())
    lines = [f"{result.dtype} logits vs each backend's own float32 logits ({cases} cases; relative = max |diff| / "
             f"max |float32 logits|, u = 2^-8; stated bound {BF16_FROM_FLOAT32 / BF16_UNIT_ROUNDOFF:g} u):"]
    for backend, row in summary.items():
        lines.append(f"  {backend:<5} max |diff| {row['max_abs_diff']:.2e} (logits up to {row['scale']:.3g}), "
                     f"relative {row['relative']:.2e} = {row['relative_u']:.1f} u")
    return "\n".join(lines)


def _generation_text(result: Result) -> str:
    """One line per generation case: each pair's verdict; a failure names its first differing position."""
    by_case: dict[str, list] = defaultdict(list)
    for g in result.generation:
        by_case[g.case].append(g)
    width = max(len(c) for c in by_case)
    if result.dtype == "float32":
        lines = ["generation (token-exact sequences; beam scores within 1e-4):"]
    else:
        lines = [f"generation in {result.dtype} (greedy: token-exact up to a near tie within the {result.dtype} "
                 "tolerance; sampling and beams: compared and reported, not required):"]
    for case, rows in by_case.items():
        verdicts = {}
        for g in rows:
            verdict = "ok" if g.passed else ("FAIL" if g.required else "differs")
            if verdicts.get(g.pair, "ok") == "ok" or verdict == "FAIL":
                verdicts[g.pair] = verdict
        cells = "  ".join(f"{pair} {verdict}" for pair, verdict in verdicts.items())
        lines.append(f"  {case:<{width}}  {cells}")
    for g in result.generation:
        what = f"{g.key} {g.detail or f'differs by {g.max_abs_diff:.3e}'}"
        if not g.passed:
            lines.append(f"{'FAIL' if g.required else 'note'} {g.case} {g.pair}: {what}")
        elif g.detail:  # passed with an explanation (a near tie)
            lines.append(f"ok   {g.case} {g.pair}: {what}")
    return "\n".join(lines)


def to_json(result: Result) -> str:
    tol = TOLERANCES[result.dtype]
    data = {
        "backends": result.backends,
        "dtype": result.dtype,
        "tolerance": {"atol": tol.atol, "rtol": tol.rtol, **({"scale": tol.scale} if tol.scale else {})},
        "passed": result.passed,
        "cases": result.cases,
        "comparisons": [c.__dict__ for c in result.comparisons],
        "errors": [e.__dict__ for e in result.errors],
        "generation": [g.__dict__ for g in result.generation],
        "seconds": result.seconds,
    }
    if result.drift:  # a low-precision run: each backend against its own float32 logits
        data["float32_drift"] = {"bound_relative": BF16_FROM_FLOAT32, "per_backend": drift_summary(result),
                                 "cases": [{**d.__dict__, "relative": d.relative} for d in result.drift]}
    return json.dumps(data, indent=2, default=float)
