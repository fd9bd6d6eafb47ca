"""The KV cache and left padding as contracts, in every backend (and PyTorch's eager attention path):

* a cached continuation (one call after a prefix, and several: a prefix, then one token per call) gives the full
  forward's outputs for the new tokens, and its cache is the full forward's, for every head that has a cache;
* a left-padded batch (explicit positions) gives each prompt's outputs when run alone, on the defined positions,
  for per-position, pooled (the last-token rule) and span heads; decoding that batch token by token through the cache, with the mask over the cached and new
  tokens as generation passes it, gives them too.

The model: every head of a tiny config with both attention-scaling flags that touch the cache
(``scale_attn_by_inverse_layer_idx``, ``reorder_and_upcast_attn``), seeded weights away from the defaults.
"""

from __future__ import annotations

import numpy as np
import pytest
from contract_support import (  # noqa: F401
    CACHE_HEADS,
    decode,
    left_padded,
    one_torch_thread,
    variant_params,
    write_checkpoint,
)

from gpt2_multi.backends import get
from gpt2_multi.conformance.cases import HEADS

ATOL = 1e-5
FLAGS = {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True}
OUTPUT_FLAGS = {"output_hidden_states": True, "output_attentions": True}
#: per head: the output whose new-token part a cached call returns (DoubleHeads: every choice's logits)
PRIMARY = {"base": "last_hidden_state", "lm": "logits", "double": "logits", "seqcls": "logits", "tokcls": "logits",
           "qa": "start_logits"}
#: 8 tokens: where each cached call ends (the last call takes the rest); equal lengths keep Flax's compiled shapes few
SPLITS = {"one-step": [4], "several-steps": [4, 5, 6, 7]}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache-contract")
    return {head: write_checkpoint(root / head, head, seed=i, **FLAGS) for i, head in enumerate(HEADS)}


def _ids(head: str, batch: int = 3, length: int = 8, seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(1, 1000, size=(batch, length))  # never the pad id 0
    return np.stack([ids, ids[::-1]], axis=1) if head == "double" else ids


def _assert_close(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, the full forward's is {expected.shape}"
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0, err_msg=what)


# ------------------------------------------------------------------------------------------ cached == full
@pytest.mark.parametrize("steps", sorted(SPLITS))
@pytest.mark.parametrize("head", CACHE_HEADS)
@pytest.mark.parametrize(("backend", "load_kwargs"), variant_params())
def test_cached_calls_give_the_full_forwards_outputs(backend, load_kwargs, head, steps, checkpoints, loaded):
    ops = get(backend).ops
    model = loaded(backend, checkpoints[head], head, **load_kwargs)
    ids = _ids(head)
    extra = {"mc_token_ids": np.full(ids.shape[:2], ids.shape[-1] - 1)} if head == "double" else {}
    full = ops.forward(model, {"input_ids": ids, **extra}, {"use_cache": True, **OUTPUT_FLAGS}, [])
    bounds = [0, *SPLITS[steps]]
    chunks = [ids[..., a:b] for a, b in zip(bounds, bounds[1:])]
    last = ids[..., bounds[-1]:]
    if extra:
        extra = {"mc_token_ids": np.full(ids.shape[:2], last.shape[-1] - 1)}  # the same token, in the last call
    cached = ops.forward(model, {"input_ids": last, **extra}, {"use_cache": True, **OUTPUT_FLAGS}, chunks)
    new = last.shape[-1]
    key = PRIMARY[head]
    if head == "seqcls":  # pooled at the last token: the last call's pool is the full sequence's
        _assert_close(cached[key], full[key], key)
    else:
        _assert_close(cached[key], full[key][..., -new:, :], key)
    if head == "double":
        _assert_close(cached["mc_logits"], full["mc_logits"], "mc_logits")
    n_layer = model.config.n_layer
    for i in range(n_layer + 1):  # hidden states: the new tokens' rows
        _assert_close(cached[f"hidden_states.{i}"], full[f"hidden_states.{i}"][..., -new:, :], f"hidden_states.{i}")
    for i in range(n_layer):  # attention rows of the new tokens over every position
        _assert_close(cached[f"attentions.{i}"], full[f"attentions.{i}"][..., -new:, :], f"attentions.{i}")
    rows = ids.size // ids.shape[-1]  # choices are in the batch axis of a cache
    for i in range(n_layer):
        for kind in ("key", "value"):
            name = f"past.{i}.{kind}"
            assert cached[name].shape == (rows, model.config.n_head, ids.shape[-1], model.config.head_dim), name
            _assert_close(cached[name], full[name], name)
    assert not any(k.startswith("past.") and k.split(".")[1] == str(n_layer) for k in cached)


# ------------------------------------------------------------------------------------------ left padding
PROMPTS = [7, 4, 2]  # lengths of the prompts in one left-padded batch


def _prompts() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(1, 1000, size=n) for n in PROMPTS]


@pytest.mark.parametrize("head", ["lm", "seqcls", "qa"])  # per-position outputs and cache, pooled, spans
@pytest.mark.parametrize(("backend", "load_kwargs"), variant_params())
def test_a_left_padded_batch_gives_each_prompt_alone(backend, load_kwargs, head, checkpoints, loaded):
    ops = get(backend).ops
    model = loaded(backend, checkpoints[head], head, **load_kwargs)
    prompts = _prompts()
    ids, mask, positions = left_padded(prompts)
    flags = {**OUTPUT_FLAGS, **({"use_cache": True} if head in CACHE_HEADS else {})}
    batch = ops.forward(model, {"input_ids": ids, "attention_mask": mask, "position_ids": positions}, flags, [])
    width = ids.shape[1]
    for row, prompt in enumerate(prompts):
        alone = ops.forward(model, {"input_ids": prompt[None]}, flags, [])
        assert set(alone) == set(batch) and "hidden_states.2" in alone and "attentions.1" in alone
        real = slice(width - len(prompt), width)  # the prompt's positions in the batch
        for key, value in alone.items():
            got = batch[key][row:row + 1]
            if key.startswith("attentions."):  # (1, H, T, S): the real queries over the real keys
                assert np.all(got[:, :, real, :real.start] == 0), f"{key}: a padded key gets weight"
                got = got[:, :, real, real]
            elif key.startswith("past."):  # (1, H, S, D)
                got = got[:, :, real]
            elif not (key == "logits" and head == "seqcls"):  # per position (1, T, ...); seqcls pools the last token
                got = got[:, real]
            _assert_close(got, value, f"prompt {row}: {key}")


@pytest.mark.parametrize(("backend", "load_kwargs"), variant_params())
def test_decoding_a_left_padded_batch_through_the_cache_gives_each_prompt_alone(backend, load_kwargs, checkpoints,
                                                                                loaded):
    """A prefix, then one token per call: ``attention_mask`` over the cached and new tokens, explicit positions."""
    ops = get(backend).ops
    model = loaded(backend, checkpoints["lm"], "lm", **load_kwargs)
    prompts = _prompts()
    ids, mask, positions = left_padded(prompts)
    width = ids.shape[1]
    logits, past = decode(backend, model, ids, mask, positions, splits=list(range(width - 4, width)))
    logits = np.concatenate(logits, axis=1)
    flags = {"use_cache": True, **OUTPUT_FLAGS}  # the left-padding test's calls: Flax compiles them once
    full = ops.forward(model, {"input_ids": ids, "attention_mask": mask, "position_ids": positions}, flags, [])
    defined = mask.astype(bool)
    _assert_close(logits[defined], full["logits"][defined], "logits against the full left-padded batch")
    for row, prompt in enumerate(prompts):
        alone = ops.forward(model, {"input_ids": prompt[None]}, flags, [])["logits"][0]
        _assert_close(logits[row, width - len(prompt):], alone, f"prompt {row}: logits")
    for i, layer in enumerate(past):  # (B, H, S, D): the real tokens' keys and values
        for kind, got in zip(("key", "value"), layer):
            name = f"past.{i}.{kind}"
            _assert_close(got.transpose(0, 2, 1, 3)[defined], full[name].transpose(0, 2, 1, 3)[defined], name)
