"""HF transformers' golden outputs (tests/fixtures/hf-tiny, HF 4.57.6) in every backend, from every checkpoint format.

* every golden case of every head, in every backend (PyTorch's eager attention too), from every checkpoint format:
  HF-written where the fixture set has it, converted by the shared checkpoint layer from HF's safetensors where it
  has not (so that every head is checked in every format), compared through ``runner.compare`` (every output HF
  recorded, on the defined positions only) and, beyond its tolerance, to 1e-5 in absolute terms;
* every checkpoint format of a head loads to parameters equal bit for bit to its safetensors checkpoint's.
"""

from __future__ import annotations

import dataclasses

import pytest
from contract_support import one_torch_thread, parameters, variant_params  # noqa: F401

from gpt2_multi.backends import framework_installed, get
from gpt2_multi.checkpoint import FORMATS, convert
from gpt2_multi.conformance.cases import HEADS, golden_cases
from gpt2_multi.conformance.runner import compare

from fixture_cases import HF_TINY, INDEX

#: the fixture directories' format names -> the checkpoint layer's
FIXTURE_FORMATS = {"safetensors": "safetensors", "bin": "pt-bin", "tf": "tf", "flax": "flax"}
FORMAT_PARAMS = [pytest.param(fmt, marks=pytest.mark.skipif(fmt == "pt-bin" and not framework_installed("pt"),
                                                            reason="pytorch_model.bin needs torch"))
                 for fmt in FORMATS]
#: HF's golden numbers come from float32 PyTorch: every backend is within this of them, beyond runner.TOLERANCES
MAX_ABS_DIFF = 1e-5
CASES = {c.name.removeprefix("golden/"): c for c in golden_cases(HF_TINY)}
HEAD_OF = {case: head for head, info in INDEX["heads"].items() for case in info["cases"]}


def test_the_golden_cases_cover_every_head_and_format():
    assert set(HEAD_OF.values()) == set(HEADS) and set(HEAD_OF) == set(CASES)
    assert {FIXTURE_FORMATS[f] for info in INDEX["heads"].values() for f in info["checkpoints"]} == set(FORMATS)
    assert all("safetensors" in info["checkpoints"] for info in INDEX["heads"].values())


@pytest.fixture(scope="session")
def fixture_checkpoints(tmp_path_factory):
    """``(head, format) -> directory``: HF's own checkpoint where the fixtures have one, else one converted
    from HF's safetensors by the shared checkpoint layer."""
    root = tmp_path_factory.mktemp("hf-tiny-converted")
    written = {fmt: name for name, fmt in FIXTURE_FORMATS.items()}

    def get(head: str, fmt: str):
        checkpoints = INDEX["heads"][head]["checkpoints"]
        if written[fmt] in checkpoints:
            return HF_TINY / checkpoints[written[fmt]]
        target = root / head / fmt
        if not target.exists():
            convert(HF_TINY / checkpoints["safetensors"], target, fmt)
        return target

    return get


@pytest.mark.parametrize("case_name", sorted(CASES))
@pytest.mark.parametrize("fmt", FORMAT_PARAMS)
@pytest.mark.parametrize(("backend", "load_kwargs"), variant_params())
def test_every_golden_case_in_every_backend_and_format(backend, load_kwargs, fmt, case_name, fixture_checkpoints,
                                                       loaded):
    head = HEAD_OF[case_name]
    case = dataclasses.replace(CASES[case_name], checkpoint=fixture_checkpoints(head, fmt))
    model = loaded(backend, case.checkpoint, head, **load_kwargs)
    out = get(backend).ops.forward(model, case.inputs, case.flags, case.past_chunks)
    rows = compare(case, backend, out, "golden", case.expected, "float32")
    assert {r.key for r in rows} == set(case.expected) and rows
    failed = [f"{r.key}: {r.detail or r.max_abs_diff}" for r in rows if not r.passed or r.max_abs_diff > MAX_ABS_DIFF]
    assert not failed, failed


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("fmt", [f for f in FORMAT_PARAMS if f.values[0] != "safetensors"])
@pytest.mark.parametrize(("backend", "load_kwargs"), [p for p in variant_params() if not p.values[1]])
def test_every_fixture_format_loads_the_same_parameters(backend, load_kwargs, fmt, head, fixture_checkpoints, loaded):
    reference = parameters(backend, loaded(backend, fixture_checkpoints(head, "safetensors"), head))
    got = parameters(backend, loaded(backend, fixture_checkpoints(head, fmt), head))
    assert set(got) == set(reference)
    for name, value in reference.items():
        assert got[name].dtype == value.dtype and got[name].tobytes() == value.tobytes(), name
