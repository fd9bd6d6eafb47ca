"""benchmarks/gpu_check.py (the one command for a lent GPU) runs end to end on CPU with tiny shapes.

The real check needs a GPU; these tests keep the script working between the times one is lent: the
``--device cpu --quick`` run must pass and write its JSON, and a budget too small for anything must report
every part as skipped (never as passed) and exit 3.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
KEYS = {"status", "exit_code", "mode", "device", "environment", "checkpoint", "tolerances", "parity", "generate",
        "peaks", "speed", "skipped", "errors", "tensorflow_import_attempts", "elapsed_s"}


def _run(tmp_path: Path, *flags: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    summary = out / "gpu_check.json"
    assert summary.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(summary.read_text())


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.flax
def test_quick_cpu_run_passes_and_writes_the_summary(tmp_path):
    for module in ("torch", "jax", "flax"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    proc, data = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert KEYS <= set(data), KEYS - set(data)
    assert data["status"] == "pass" and not data["errors"] and not data["skipped"]
    assert data["tensorflow_import_attempts"] == []
    assert {"pt", "flax"} <= set(data["environment"])
    # fp32: PT and Flax each against float64 numpy and each other; bf16: each against its fp32 run and each other
    assert len(data["parity"]) == 6
    assert all(row["status"] == "pass" and row["max_abs"] is not None for row in data["parity"]), data["parity"]
    # fp32 greedy tokens: each stack against float64's argmax (teacher-forced) and the two stacks against each other
    fp32_tokens = [row for row in data["generate"] if row["dtype"] == "float32"]
    assert len(fp32_tokens) == 3 and all(r["status"] == "pass" and r["identical"] for r in fp32_tokens), fp32_tokens
    assert {r["status"] for r in data["generate"] if r["dtype"] == "bfloat16"} == {"info"}  # reported, not required
    assert {(r["stack"], r["dtype"], r["kind"]) for r in data["speed"]} == {
        (s, d, k) for s in ("pt", "flax") for d in ("float32", "bfloat16") for k in ("decode", "prefill")}
    assert all(r["tokens_per_s"] and r["tokens_per_s"] > 0 for r in data["speed"] if r["kind"] == "prefill")
    assert data["peaks"]["used (the higher of each)"]["copy_gb_s"] > 0
    assert (tmp_path / "out" / "gpu_check.md").read_text().startswith("# gpu_check: PASS")


def test_a_spent_budget_skips_everything_and_passes_nothing(tmp_path):
    proc, data = _run(tmp_path, "--budget-s", "0.5", timeout=120)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert data["status"] == "incomplete" and data["exit_code"] == 3
    assert data["parity"] and all(row["status"] == "skipped" for row in data["parity"] + data["generate"])
    assert data["speed"] == [] and data["skipped"]
    assert "PASS" not in (tmp_path / "out" / "gpu_check.md").read_text()
