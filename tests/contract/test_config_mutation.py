"""A forward never changes the model's config: the saved config.json is the same bytes before and after.

HF's PyTorch sequence classifier writes the problem type it infers from the labels into ``config.problem_type``;
here every stack infers it for the call only (:func:`gpt2_multi.config.infer_problem_type`), so a config shared
by several models, or saved after training, stays as the user set it.
"""

from __future__ import annotations

import importlib

import pytest

from gpt2_multi import backends
from gpt2_multi.config import infer_problem_type
from tiny import tiny_config

AVAILABLE = backends.available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason="no backend installed")

IDS = [[5, 6, 7, 8], [0, 0, 9, 10]]  # the second row left-padded with pad_token_id 0
#: (num_labels, problem_type as the user set it, labels): integer labels, multi-hot floats, regression targets
CASES = {
    "single_label": (3, None, [2, 0]),
    "multi_label": (3, None, [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
    "regression": (1, None, [0.5, -1.5]),
    "user_set": (3, "multi_label_classification", [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
}


def _tensor(backend: backends.Backend, value):
    """``value`` as the framework's tensor: integers as the framework's label dtype, floats as float32."""
    if isinstance(value[0], int):
        return backend.make_int_tensor(value)
    module = importlib.import_module(backend.tensor_module)
    return getattr(module, backend.int_tensor[0])(value)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", AVAILABLE)
def test_forward_with_labels_leaves_the_saved_config_unchanged(name, case, tmp_path):
    backend = backends.get(name)
    num_labels, problem_type, labels = CASES[case]
    config = tiny_config(n_layer=1, num_labels=num_labels, pad_token_id=0, problem_type=problem_type)
    model = backend.model_class("GPT2ForSequenceClassification")(config)
    model.save_pretrained(tmp_path / "before")
    out = model(input_ids=backend.make_int_tensor(IDS), labels=_tensor(backend, labels))
    assert out.loss is not None
    model.save_pretrained(tmp_path / "after")
    before, after = ((tmp_path / d / "config.json").read_bytes() for d in ("before", "after"))
    assert after == before
    assert model.config.problem_type == problem_type


def test_inference_rule_is_hfs():
    assert infer_problem_type(None, 1, True) == "regression"
    assert infer_problem_type(None, 3, True) == "single_label_classification"
    assert infer_problem_type(None, 3, False) == "multi_label_classification"
    assert infer_problem_type("regression", 3, True) == "regression"  # the user's setting wins
