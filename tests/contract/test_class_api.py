"""The class-level API generic HF code relies on, in every backend (issue 17's first slice).

HF 4.57: ``PreTrainedModel.can_generate()`` is a classmethod, True for the classes with a ``generate`` (here the
LM and double-heads models) and False for the others; every model class has ``main_input_name = "input_ids"``
and ``config_class``; ``config.get_text_config()`` is the config itself for a model without sub-configs; weights
of the wrong size raise a RuntimeError (``load_state_dict``'s "size mismatch").
"""

from __future__ import annotations

import pytest
from contract_support import BACKEND_PARAMS, write_checkpoint

from gpt2_multi import GPT2Config
from gpt2_multi.backends import get
from gpt2_multi.checkpoint import CheckpointError
from gpt2_multi.conformance.cases import HEADS

GENERATES = {"GPT2LMHeadModel", "GPT2DoubleHeadsModel"}


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("architecture", sorted(set(HEADS.values())))
def test_can_generate_and_main_input_name_at_class_level(backend, architecture):
    cls = get(backend).model_class(architecture)
    assert cls.can_generate() is (architecture in GENERATES)  # on the class: generic code asks before building
    assert cls.main_input_name == "input_ids"
    assert cls.config_class is GPT2Config


def test_get_text_config_is_the_config_itself():
    config = GPT2Config(n_layer=2)
    assert config.get_text_config() is config
    assert config.get_text_config(decoder=True) is config


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_a_head_of_the_wrong_size_is_a_runtime_error(backend, tmp_path):
    path = write_checkpoint(tmp_path / "seqcls", "seqcls")  # 3 labels
    cls = get(backend).model_class("GPT2ForSequenceClassification")
    with pytest.raises(RuntimeError, match="score.weight") as info:  # what HF raises, so `except RuntimeError` works
        cls.from_pretrained(str(path), num_labels=5)
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)
