"""The conformance grid against HF transformers itself: our PyTorch stack gives HF PyTorch's numbers on every
case of the CI sample (every config field and input kind), so agreement between our backends (checked by
``tests/test_conformance.py`` and ``gpt2-multi conform``) is agreement with HF.

HF is the oracle only here (the dev extra installs it); the package never imports it.
"""

from __future__ import annotations

import logging
import os

import pytest

from gpt2_multi.conformance import cases as case_lib
from gpt2_multi.conformance import report, runner

transformers = pytest.importorskip("transformers")
pt_backend = pytest.importorskip("gpt2_multi.pt.backend")

#: grid cases HF 4.57 cannot run (it raises), and what our three stacks do instead (held equal by the grid)
HF_RAISES = {
    # IndexError: our stacks return cross_attentions=None (test_cross_attentions_without_encoder)
    "gen/cross-attention/base/plain": "a cross-attention model without encoder states, output_attentions",
    "gen/cross-attention/lm/plain": "a cross-attention model without encoder states, output_attentions",
    # HF flattens (B, C, T) input_ids but not position_ids / inputs_embeds: ours flatten every input
    "gen/default/double/left_pad": "DoubleHeads with (B, C, T) position_ids",
    "gen/all-flags/double/left_pad": "DoubleHeads with (B, C, T) position_ids",
    "gen/default/double/inputs_embeds": "DoubleHeads with (B, C, T, E) inputs_embeds",
}


def _hf_outputs(case: case_lib.Case, checkpoint) -> dict:
    model = getattr(transformers, case.architecture).from_pretrained(str(checkpoint), attn_implementation="eager")
    return pt_backend.forward(model.eval(), case.inputs, case.flags, case.past_chunks)


def test_our_pytorch_equals_hf_on_the_grid(tmp_path):
    """The CI sample (the whole grid with GPT2_MULTI_FULL_GRID=1), plus every case HF cannot run (it must still
    raise there: the list stays honest)."""
    logging.getLogger("transformers").setLevel(logging.ERROR)
    grid = case_lib.generated_cases(seed=0, full=True)
    if os.environ.get("GPT2_MULTI_FULL_GRID"):  # nox -s conformance: the whole grid
        sample = {c.name for c in grid}
    else:
        sample = {c.name for c in case_lib.generated_cases(seed=0, full=False)} | set(HF_RAISES)
    cases = [c for c in grid if c.name in sample]
    assert {c.name for c in cases} >= set(HF_RAISES)
    result = runner.Result(backends=["pt", "hf"], dtype="float32", cases=[c.name for c in cases if c.name not in HF_RAISES])
    checkpoints: dict[str, object] = {}
    for case in cases:
        if case.model_key not in checkpoints:
            checkpoints[case.model_key] = case_lib.make_checkpoint(case, tmp_path / f"m{len(checkpoints)}")
        path = checkpoints[case.model_key]
        if case.name in HF_RAISES:
            with pytest.raises((IndexError, RuntimeError)):
                _hf_outputs(case, path)
            continue
        ours = pt_backend.forward(pt_backend.load(path, case.architecture), case.inputs, case.flags, case.past_chunks)
        result.comparisons += runner.compare(case, "pt", ours, "hf", _hf_outputs(case, path), "float32")
    assert result.passed, report.to_text(result)
    assert {c.case for c in result.comparisons} == set(result.cases)


@pytest.mark.parametrize("head", ["base", "lm"])
def test_cross_attentions_without_encoder(head, tmp_path):
    """A cross-attention model called without encoder states and with output_attentions returns no
    cross_attentions in every backend (HF PT 4.57 raises IndexError there)."""
    from gpt2_multi import backends as registry

    (case,) = [c for c in case_lib.generated_cases(seed=0, full=True) if c.name == f"gen/cross-attention/{head}/plain"]
    assert case.flags["output_attentions"] and "encoder_hidden_states" not in case.inputs
    path = case_lib.make_checkpoint(case, tmp_path / "model")
    for name in registry.available():
        ops = registry.get(name).ops
        out = ops.forward(ops.load(path, case.architecture), case.inputs, case.flags, case.past_chunks)
        assert "attentions.0" in out and not any(k.startswith("cross_attentions") for k in out), name
