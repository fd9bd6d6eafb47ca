"""The conformance grid's own contract: every number-changing config field, head and input kind is in it,
the CI sample still touches all of them, and a case's defined positions come from its mask, not its name."""

from __future__ import annotations

import numpy as np

from gpt2_multi.activations import ACTIVATIONS
from gpt2_multi.conformance import cases as case_lib
from gpt2_multi.conformance import runner

#: every GPT2Config field that changes a model's numbers, and the values the grid must give it
NUMERIC_FIELDS = {
    "activation_function": set(ACTIVATIONS) - {"gelu_new"},  # gelu_new is the default row's
    "n_inner": None, "layer_norm_epsilon": None, "n_layer": None, "n_head": None, "n_embd": None,
    "scale_attn_weights": {False}, "scale_attn_by_inverse_layer_idx": {True}, "reorder_and_upcast_attn": {True},
    "summary_type": {"last", "first", "mean"}, "summary_use_proj": {False}, "summary_activation": {"tanh"},
    "summary_proj_to_labels": {False}, "num_labels": None, "tie_word_embeddings": {False},
    "add_cross_attention": {True}, "pad_token_id": {None},
}


def test_the_grid_varies_every_numeric_field():
    seen: dict[str, set] = {}
    for row in case_lib.VARIATIONS:
        for key, value in row.overrides.items():
            seen.setdefault(key, set()).add(value)
    for field, values in NUMERIC_FIELDS.items():
        assert field in seen, f"no grid row varies {field}"
        if values is not None:
            assert values <= seen[field], (field, values - seen[field])


def test_the_ci_sample_touches_every_row_head_and_kind():
    full, sample = case_lib.generated_cases(full=True), case_lib.generated_cases(full=False)
    assert len(sample) < len(full) / 2
    rows_heads = {tuple(c.name.split("/")[1:3]) for c in full}
    assert {tuple(c.name.split("/")[1:3]) for c in sample} == rows_heads
    assert {c.name.split("/")[-1] for c in sample} == set(case_lib.INPUT_KINDS)
    assert {c.architecture for c in sample} == set(case_lib.HEADS.values())


def test_defined_positions_come_from_the_mask():
    """Left padding (and a left-padded row of a cache with holes) leaves queries undefined; right padding and
    holes after the first real token do not."""
    mask = np.array([[1, 1, 0, 1], [0, 0, 1, 1], [1, 1, 1, 0]])
    np.testing.assert_array_equal(case_lib.defined_positions(mask),
                                  [[True, True, True, True], [False, False, True, True], [True, True, True, True]])
    assert case_lib.defined_positions(np.ones((2, 3))) is None
    by_name = {c.name: c for c in case_lib.generated_cases(full=True)}
    assert by_name["gen/default/lm/right_pad"].defined is None
    holes = by_name["gen/default/lm/past_holes"]
    assert holes.defined.shape == (3, 7) and holes.defined.sum() == 19  # row 2's first two positions
    assert by_name["gen/default/double/left_pad"].defined.shape == (3, 2, 7)


def test_the_comparison_is_over_the_union_of_outputs():
    case = next(c for c in case_lib.generated_cases(full=False) if c.name == "gen/default/lm/plain")
    a = {"logits": np.zeros((3, 7, 97)), "past.0.key": np.zeros((3, 4, 7, 6))}
    rows = runner.compare(case, "x", a, "y", {"logits": np.zeros((3, 7, 97))}, "float32")
    missing = [r for r in rows if not r.passed]
    assert [(r.key, r.detail) for r in missing] == [("past.0.key", "missing in y")]
    # against golden data only HF's outputs are required
    assert all(r.passed for r in runner.compare(case, "x", a, "golden", {"logits": np.zeros((3, 7, 97))}, "float32"))


def test_a_case_may_name_its_tolerance():
    case = next(c for c in case_lib.generated_cases(full=False) if c.name == "gen/default/lm/plain")
    out = {"logits": np.zeros((3, 7, 97))}
    off = {"logits": np.full((3, 7, 97), 1e-3)}
    assert not runner.compare(case, "x", off, "y", out, "float32")[0].passed
    case.tolerance = "bfloat16"
    assert runner.compare(case, "x", off, "y", out, "float32")[0].passed
