"""The conformance suite: every installed backend against HF's golden data and against each other.

CI installs all three frameworks, so every pair runs there; a venv with fewer backends runs
what it has and skips (visibly) what needs two.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpt2_multi import backends as registry
from gpt2_multi.cli import main
from gpt2_multi.conformance import cases as case_lib
from gpt2_multi.conformance import report, runner
from gpt2_multi.conformance.roundtrip import round_trips

from fixture_cases import HF_TINY

BACKENDS = registry.available()
pytestmark = pytest.mark.skipif(not BACKENDS, reason="no backend installed")


@pytest.fixture(scope="module")
def golden_result():
    return runner.run(case_lib.golden_cases(HF_TINY), BACKENDS)


def test_golden_cases_in_every_backend(golden_result):
    text = report.to_text(golden_result, verbose=True)
    assert golden_result.passed, text
    # Every backend was compared with the golden data on every case, and on the outputs that matter.
    pairs = {c.pair for c in golden_result.comparisons}
    assert {f"{b}~golden" for b in BACKENDS} <= pairs
    keys = {c.key for c in golden_result.comparisons if c.case == "golden/lm_past"}
    assert {"logits", "past.0.key", "past.1.value"} <= keys
    keys = {c.key for c in golden_result.comparisons if c.case == "golden/lm_plain"}
    assert {"logits", "hidden_states.2", "attentions.1"} <= keys


@pytest.mark.skipif(len(BACKENDS) < 2, reason="pairwise comparison needs two backends")
def test_generated_grid_pairwise():
    result = runner.run(case_lib.generated_cases(seed=0, full=False), BACKENDS)
    assert result.passed, report.to_text(result)
    assert len({c.case for c in result.comparisons}) == len(result.cases)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="round trips between backends need two")
@pytest.mark.parametrize("head", ["lm", "double"])
def test_round_trip_every_ordered_pair(head):
    case = next(c for c in case_lib.golden_cases(HF_TINY) if c.name == {"lm": "golden/lm_plain", "double": "golden/double_heads"}[head])
    rows = round_trips(case.checkpoint, case, BACKENDS)
    assert {r.pair.split("~")[0] for r in rows} == {f"{a}->{b}" for a in BACKENDS for b in BACKENDS}
    failures = [r for r in rows if not r.passed]
    assert not failures, failures[:5]


def test_a_wrong_output_fails_the_suite(monkeypatch):
    """The suite is not vacuous: a backend off by 1e-3 in one logit fails, and the report names it."""
    backend = BACKENDS[0]
    ops = registry.get(backend).ops
    original = ops.forward

    def off_by_a_little(*args):
        out = original(*args)
        if "logits" in out:
            out["logits"] = out["logits"].copy()
            out["logits"].flat[0] += 1e-3
        return out

    monkeypatch.setattr(ops, "forward", off_by_a_little)
    cases = [c for c in case_lib.golden_cases(HF_TINY) if c.name == "golden/lm_plain"]
    result = runner.run(cases, [backend])
    assert not result.passed
    text = report.to_text(result)
    assert f"FAIL golden/lm_plain {backend}~golden: logits differs by 1.000e-03" in text


def test_non_finite_values_agree_only_with_themselves():
    """A NaN or an overflow never passes, and one infinite reference value does not widen every bound."""
    bf16 = runner.TOLERANCES["bfloat16"]  # relative to max|b|: an infinite max would allow anything
    b = np.array([1.0, 2.0, -np.inf])
    assert runner.compare_arrays(b, b, bf16) == (0.0, True, "")
    assert not runner.compare_arrays(np.array([1.0, 9.0, -np.inf]), b, bf16)[1]  # 9 vs 2: off by 7
    diff, passed, why = runner.compare_arrays(np.array([1.0, 2.0, np.inf]), b, bf16)  # wrong sign
    assert (diff, passed, why) == (float("inf"), False, "1 non-finite value(s) differ")
    nan = np.array([1.0, np.nan, -np.inf])
    for a, ref in ((nan, b), (b, nan), (nan, nan)):
        assert runner.compare_arrays(a, ref, runner.TOLERANCES["float32"])[:2] == (float("inf"), False)
    assert runner.TOLERANCES["bfloat16"].bound(b)[0] == runner.BF16_UNIT_ROUNDOFF + 2 * runner.BF16_FROM_FLOAT32 * 2


def test_left_padding_masks_only_undefined_rows():
    case = next(c for c in case_lib.golden_cases(HF_TINY) if c.name == "golden/lm_left_pad")
    mask = case.defined
    logits = case.expected["logits"]
    assert mask is not None and not mask.all()  # from the case's attention mask, not from its name
    assert runner._defined(case, "logits", logits).shape == (int(mask.sum()), logits.shape[-1])
    broken = logits.copy()
    broken[~mask] = 1e6  # garbage in undefined rows is ignored...
    reference = {"logits": logits}
    assert all(c.passed for c in runner.compare(case, "x", {"logits": broken}, "ref", reference, "float32"))
    broken[mask.nonzero()[0][0], mask.nonzero()[1][0]] += 1.0  # ...but not in a defined one
    assert not all(c.passed for c in runner.compare(case, "x", {"logits": broken}, "ref", reference, "float32"))


@pytest.mark.skipif(len(BACKENDS) < 2, reason="the CLI's pairwise table needs two backends")
def test_cli_conform_json(capsys):
    """The CLI end to end on one checkpoint (HF's generation model) and the golden cases; the default run (the
    trained model, a random one and the config grid) is ``nox -s conformance``'s."""
    code = main(["conform", str(HF_TINY / "generation" / "model"), "--golden", str(HF_TINY), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["passed"] and data["backends"] == BACKENDS
    assert len(data["generation"]) > 50 and all(g["passed"] for g in data["generation"])
    assert data["tolerance"] == {"atol": 1e-4, "rtol": 1e-4}
    worst = max(c["max_abs_diff"] for c in data["comparisons"])
    assert 0 < worst < 1e-4
    assert np.isfinite(worst)


@pytest.mark.skipif(not registry.stack_available("flax") or len(BACKENDS) < 2, reason="needs Flax and a second backend")
def test_models_run_on_threads_give_the_same_results_as_one_at_a_time():
    """Flax's models run on threads (registry: concurrent_models); each case is still computed alone, so the
    comparisons are exactly those of a one-model-at-a-time run, and every case ran in every backend."""
    assert registry.get("flax").concurrent_models and not registry.get("tf").concurrent_models
    first_of_each = {}
    for case in case_lib.generated_cases(seed=0, full=False):
        if "/lm/" in case.name:
            first_of_each.setdefault(case.model_key, case)
    cases = list(first_of_each.values())[:4]
    pair = ["pt", "flax"]
    serial, threaded = (runner.run(cases, pair, workers=w) for w in (1, 2))
    assert not serial.errors and not threaded.errors
    assert len({c.model_key for c in cases}) > 1  # several models, so the threaded run overlapped them

    def rows(result):
        return sorted((c.case, c.pair, c.key, c.max_abs_diff) for c in result.comparisons)

    assert rows(threaded) == rows(serial)
    assert {c.case for c in threaded.comparisons} == {c.name for c in cases}
