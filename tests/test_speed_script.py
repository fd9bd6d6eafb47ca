"""benchmarks/speed.py (issue 15's decode / prefill table) keeps working: a quick PyTorch run end to end, and its
FLOP count checked by hand. The figures themselves are measured by running the script, never in the suite."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _speed_module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("speed_script", BENCHMARKS / "speed.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_forward_flops_counts_two_per_weight_per_token_plus_attention():
    speed = _speed_module()
    shapes = dict(vocab_size=10, n_embd=4, n_layer=2)
    # per token: 2 layers x 12 d^2 (qkv 3d^2, proj d^2, mlp 8d^2) + the tied head 10 x 4, two FLOPs each;
    # attention: per layer 2 products of t x t x d, two FLOPs each
    weights = 2 * 12 * 16 + 40
    assert speed.forward_flops(shapes, batch=3, tokens=5) == 3 * (2 * weights * 5 + 2 * 2 * 2 * 25 * 4)


@pytest.mark.slow
@pytest.mark.torch
def test_quick_run_prints_every_row_and_writes_json(tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "speed.py"), "--quick", "--backends", "pt", "--no-hf",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(r["backend"], r["dtype"]) for r in report["rows"]] == [("pt", "fp32"), ("pt", "bf16")]
    for row in report["rows"]:
        assert isinstance(row["ours"], dict), row["ours"]  # a failed child is a string
        assert set(row["ours"]["decode"]) == {"1", "8"} and all(v > 0 for v in row["ours"]["decode"].values())
        assert set(row["ours"]["prefill_ms"]) == {"1", "8"} and all(v > 0 for v in row["ours"]["prefill_ms"].values())
        assert row["hf"] is None and row["bound"] > 0
    assert report["bandwidth"] > 0 and all(v > 0 for v in report["peaks"].values())
    assert "| pt | bf16 | 1 |" in proc.stdout and "batch-1 decode, bf16 / fp32 (ours): pt" in proc.stdout
