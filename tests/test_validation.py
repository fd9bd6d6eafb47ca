"""The shared shape checks the three stacks call (their wording is the contract of tests/contract/test_errors.py):
the shapes HF takes pass, the others raise the shared InputError."""

from __future__ import annotations

import pytest

from gpt2_multi.validation import InputError, check_embeds_shape, check_token_shape


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
