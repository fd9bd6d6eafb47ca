"""The documented optax train step lowers the loss of every kind of head on a tiny dataset."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.flax
jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

from gpt2_multi import GPT2Config  # noqa: E402
from gpt2_multi.flax import FlaxGPT2ForSequenceClassification, FlaxGPT2LMHeadModel  # noqa: E402
from gpt2_multi.flax.training import create_train_state, eval_step, train_step  # noqa: E402


def config(**overrides):
    base = dict(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4, pad_token_id=0)
    base.update(overrides)
    return GPT2Config(**base)


def fit(model, batches, steps, lr=1e-2):
    state = create_train_state(model, optax.adamw(lr))
    rng = jax.random.PRNGKey(0)
    before = float(np.mean([eval_step(state, b) for b in batches]))
    for step in range(steps):
        rng, key = jax.random.split(rng)
        state, loss = train_step(state, batches[step % len(batches)], key)
        assert np.isfinite(float(loss))
    after = float(np.mean([eval_step(state, b) for b in batches]))
    return state, before, after


def test_lm_train_step_lowers_loss_and_model_takes_new_params():
    rng = np.random.RandomState(0)
    # a learnable dataset: each sequence counts upward from a random start (mod vocab)
    starts = rng.randint(1, 64, size=(16, 1))
    data = (starts + np.arange(12)[None]) % 63 + 1
    batches = [{"input_ids": data[i:i + 8], "attention_mask": np.ones((8, 12), np.int32), "labels": data[i:i + 8]}
               for i in (0, 8)]
    model = FlaxGPT2LMHeadModel(config(), seed=0)
    state, before, after = fit(model, batches, 40)
    assert before > 3.5  # ~log(64) at random init
    assert after < 0.5 * before, (before, after)
    model.params = state.params
    out = model(batches[0]["input_ids"], labels=batches[0]["labels"])
    np.testing.assert_allclose(float(out.loss), float(eval_step(state, batches[0])), rtol=1e-5)


def test_sequence_classification_train_step_lowers_loss():
    rng = np.random.RandomState(1)
    ids = rng.randint(1, 64, size=(8, 6))
    labels = (ids[:, -1] % 2).astype(np.int32)  # class = parity of the last token
    model = FlaxGPT2ForSequenceClassification(config(num_labels=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0), seed=0)
    _, before, after = fit(model, [{"input_ids": ids, "labels": labels}], 30)
    assert after < 0.5 * before, (before, after)


def test_batch_without_labels_is_a_clear_error():
    model = FlaxGPT2LMHeadModel(config(), seed=0)
    state = create_train_state(model, optax.sgd(0.1))
    with pytest.raises(ValueError, match="no labels"):
        train_step(state, {"input_ids": np.ones((2, 4), np.int32)}, jax.random.PRNGKey(0))
