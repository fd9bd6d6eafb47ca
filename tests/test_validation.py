"""The shared shape checks the three stacks call (their wording is the contract of tests/contract/test_errors.py):
the shapes HF takes pass, the others raise the shared InputError; and the InputError subclasses that are also the
built-in type HF raises for the same input."""

from __future__ import annotations

import numpy as np
import pytest

from gpt2_multi.validation import (
    InputDtypeError,
    InputError,
    InputIndexError,
    InputShapeError,
    SequenceIndexError,
    check_embeds_shape,
    check_token_shape,
)


@pytest.mark.parametrize(("shape", "input_shape"), [
    ((2, 4), (2, 4)),          # one row per input row
    ((1, 4), (2, 4)),          # broadcast over the batch
    ((4,), (2, 4)),            # HF reshapes (T,) to (1, T)
    ((1, 4), (4,)),            # one sequence given as (T,)
    ((6, 4), (2, 3, 4)),       # multiple choice, flattened
    ((2, 3, 4), (2, 3, 4)),
    ((None, 4), (2, 4)),       # a dynamic (traced) dim matches anything
])
def test_token_shapes_hf_takes_pass(shape, input_shape):
    check_token_shape("position_ids", shape, input_shape)


@pytest.mark.parametrize(("shape", "input_shape"), [((1, 5), (1, 4)), ((3, 4), (2, 4)), ((2, 2, 4), (2, 3, 4))])
def test_other_token_shapes_raise_the_shared_error(shape, input_shape):
    with pytest.raises(InputError, match=rf"position_ids has shape \({shape[0]}, .*\) but must be"):
        check_token_shape("position_ids", shape, input_shape)


def test_embeddings_need_n_embd_last():
    check_embeds_shape((2, 4, 32), 32)
    check_embeds_shape((4, 32), 32)
    with pytest.raises(InputError, match=r"inputs_embeds has shape \(2, 4, 31\) but must be \(batch, sequence, 32\)"):
        check_embeds_shape((2, 4, 31), 32)


@pytest.mark.parametrize(("error", "builtins"), [
    (InputIndexError, (ValueError, IndexError)),
    (InputShapeError, (ValueError, RuntimeError)),
    (InputDtypeError, (ValueError, RuntimeError)),
    (SequenceIndexError, (ValueError, IndexError, RuntimeError)),
])
def test_each_error_is_an_input_error_and_hfs_builtin(error, builtins):
    """Every subclass stays an InputError (a ValueError), and re-raising it from its message alone (what Keras does
    when it adds call context: ``e.__class__(message)``) keeps its type."""
    err = error("message")
    assert isinstance(err, InputError) and all(isinstance(err, b) for b in builtins)
    assert type(type(err)(str(err))) is error


def test_the_prompt_check_raises_the_types_hf_generate_raises():
    """generate()'s shared prompt check against HF's PyTorch generate (4.57) on the same tiny model's input."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from gpt2_multi.generation.plan import check_prompt

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=1000, n_positions=64, n_embd=32, n_layer=2, n_head=4, pad_token_id=0, bos_token_id=1,
        eos_token_id=2)).eval()
    ones = np.ones((2, 4), np.int64)
    prompts = {
        "float ids": (np.ones((2, 4), np.float32), None),
        "an id outside the vocabulary": (np.array([[1, 1000], [1, 2]]), None),
        "a mask of another length": (ones, np.ones((2, 3), np.int64)),
    }
    for what, (ids, mask) in prompts.items():
        with pytest.raises(Exception) as theirs:  # noqa: PT011 - the oracle's type is what is compared
            hf.generate(torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask),
                        max_new_tokens=2)
        with pytest.raises(InputError) as ours:
            check_prompt(ids, mask, 1000)
        assert isinstance(ours.value, type(theirs.value)), f"{what}: HF raises {theirs.value!r}, we {ours.value!r}"
