"""The PyTorch decode paths against the model's full forward, and ``seed=`` against the shared numpy stream.

Oracles: the model's own full ``forward`` (no cache) for the logits of every decode path (preallocated cache
eager, compiled, and the growing reference cache), for every combination of the three attention flags
and every activation; :mod:`gpt2_multi.generation.sampling` (numpy) for the seeded draws, bit for bit for
the uniforms and token for token for greedy-style and beam sampling; the shared :class:`BeamSearch`
replayed on the scores the model produced.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpt2_multi.activations import ACTIVATIONS  # noqa: E402
from gpt2_multi.generation import BeamSearch, prepare, sampling  # noqa: E402
from gpt2_multi.pt import GPT2LMHeadModel, modeling  # noqa: E402
from gpt2_multi.pt.generation import GrowingDecoder, StaticDecoder, position_ids_from_mask, uniforms  # noqa: E402
from tiny import count_calls, one_torch_thread, tiny_config  # noqa: E402, F401 (one_torch_thread: an autouse fixture)

from fixture_cases import checkpoint_dir  # noqa: E402

pytestmark = pytest.mark.torch

FLAGS = ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn")
COMBOS = [dict(zip(FLAGS, values)) for values in itertools.product((True, False), repeat=3)]
PROMPTS = torch.tensor([[0, 0, 5, 6, 7, 8], [11, 12, 13, 14, 15, 16], [0, 0, 0, 0, 400, 3]])
MASK = (PROMPTS != 0).long()



def make_model(**overrides) -> GPT2LMHeadModel:
    """A tiny random LM with weights scaled up (peaked attention) and layer norms / biases moved off 1 / 0."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_config(**overrides))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.mul_(3.0)
    return model.eval()


def sequence(rows=3, length=14, prompt=6, seed=2):
    """Left-padded ids (rows, length) and their mask: row 0 has 2 pads, row 2 has 4, row 1 none."""
    ids = torch.randint(1, 1000, (rows, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :4] = 0
    return ids.masked_fill(mask == 0, 0), mask


def decode_logits(model, ids, mask, prompt, path):
    """Feed ``ids[:, :prompt]`` as the prefill, then one token per step; the logits after each fed position."""
    rows, length = ids.shape
    with torch.inference_mode():
        if path == "dynamic":
            cache = GrowingDecoder(model)
        else:  # a few spare slots: the unwritten ones must stay masked
            cache = StaticDecoder(model, rows, length + 3, compiled=path == "compiled")
        out = [cache.prefill(ids[:, :prompt], mask[:, :prompt])]
        for j in range(prompt, length - 1):
            out.append(cache.step(ids[:, j]))
    return torch.stack(out, dim=1)  # (rows, length - prompt, V)


def full_logits(model, ids, mask, prompt):
    with torch.no_grad():
        logits = model(ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    return logits[:, prompt - 1:-1].float()


def assert_decode_equals_forward(model, path, prompt=6):
    ids, mask = sequence(prompt=prompt)
    got = decode_logits(model, ids, mask, prompt, path)
    expected = full_logits(model, ids, mask, prompt)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------ decode == forward
@pytest.mark.parametrize("flags", COMBOS, ids=lambda f: "-".join(f"{k[:12]}={int(v)}" for k, v in f.items()))
@pytest.mark.parametrize("path", ["static", "dynamic"])
def test_decode_step_equals_full_forward_for_every_flag_combination(flags, path):
    assert_decode_equals_forward(make_model(**flags), path)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_decode_step_equals_full_forward_for_every_activation(activation):
    assert_decode_equals_forward(make_model(activation_function=activation), "static")


def test_decode_step_equals_full_forward_with_eager_attention():
    model = make_model(reorder_and_upcast_attn=True, scale_attn_by_inverse_layer_idx=True)
    model.set_attn_implementation("eager")
    assert_decode_equals_forward(model, "static")


@pytest.mark.slow
@pytest.mark.parametrize("flags", COMBOS, ids=lambda f: "-".join(f"{k[:12]}={int(v)}" for k, v in f.items()))
def test_compiled_decode_step_equals_full_forward_for_every_flag_combination(flags):
    """The compiled block step (one graph for all layers; one per layer with scale_attn_by_inverse_layer_idx).
    Dynamo must not fall back to eager (which would pass without testing the graph)."""
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        assert_decode_equals_forward(make_model(**flags), "compiled")


def test_every_path_attends_through_attention_core_and_write_cache(monkeypatch):
    """Forward, prefill and decode step all run modeling.attention_core / write_cache, once per layer per call."""
    calls = count_calls(monkeypatch, modeling, "attention_core", "write_cache")
    model = make_model()
    layers = model.config.n_layer
    ids, mask = sequence()
    with torch.no_grad():
        model(ids, attention_mask=mask)
    assert calls == {"attention_core": layers, "write_cache": layers}
    decode_logits(model, ids[:, :9], mask[:, :9], 6, "static")  # a prefill and two steps
    assert calls == {"attention_core": 4 * layers, "write_cache": 4 * layers}


# ------------------------------------------------------------------------------------ the seeded stream
SEEDS = [0, 7, 2**32 + 5, 2**64 - 1]


def test_uniforms_equal_the_shared_stream_bit_for_bit_eager_and_compiled():
    compiled = torch.compile(uniforms, dynamic=False)
    for seed, step in itertools.product(SEEDS, [0, 1, 37]):
        expected = sampling.uniforms(seed, step, 3, 1000).view(np.uint32)
        assert np.array_equal(uniforms(seed, step, 3, 1000).numpy().view(np.uint32), expected), (seed, step)
        assert np.array_equal(compiled(seed, step, 3, 1000).numpy().view(np.uint32), expected), (seed, step)


@pytest.fixture(scope="module")
def lm():
    return GPT2LMHeadModel.from_pretrained(checkpoint_dir("lm", "safetensors"))


SAMPLING = dict(do_sample=True, temperature=0.8, top_k=40, top_p=0.9, repetition_penalty=1.3)


@pytest.mark.parametrize("path", [None, "dynamic"])
def test_seeded_sampling_equals_the_numpy_reference(lm, path):
    """Each chosen token is reference_sample(processed scores, seed, step), row by row (rows of the expanded batch)."""
    seed = 2**33 + 11
    out = lm.generate(PROMPTS, attention_mask=MASK, max_new_tokens=10, num_return_sequences=2, seed=seed,
                      cache_implementation=path, return_dict_in_generate=True, output_scores=True, **SAMPLING)
    t = PROMPTS.shape[1]
    assert len(out.scores) == 10
    for step, scores in enumerate(out.scores):
        expected = sampling.reference_sample(scores.numpy(), seed, step)
        assert np.array_equal(out.sequences[:, t + step].numpy(), expected), step
    again = lm.generate(PROMPTS, attention_mask=MASK, max_new_tokens=10, num_return_sequences=2, seed=seed, **SAMPLING)
    assert torch.equal(again, out.sequences)


@pytest.mark.slow
def test_seeded_sampling_compiled_equals_eager(lm):
    kwargs = dict(attention_mask=MASK, max_new_tokens=8, seed=5, **SAMPLING)
    assert torch.equal(lm.generate(PROMPTS, compile=True, **kwargs), lm.generate(PROMPTS, **kwargs))
    beams = dict(num_beams=3, eos_token_id=[257, 152], **kwargs)
    assert torch.equal(lm.generate(PROMPTS, compile=True, **beams), lm.generate(PROMPTS, **beams))


@pytest.mark.parametrize("settings", [
    dict(num_beams=3, num_return_sequences=2, top_k=10, eos_token_id=[257, 152]),
    dict(num_beams=2, temperature=0.7, length_penalty=0.5, early_stopping=True),
], ids=["eos-nrs", "early"])
def test_seeded_beam_sampling_equals_the_numpy_reference(lm, settings):
    """Replay the shared BeamSearch on the scores the model produced, choosing candidates with the numpy Gumbel
    top-k (row = prompt, column = flat beam * V + token): the same hypotheses, scores and beam indices."""
    seed = 99
    kwargs = dict(max_new_tokens=8, do_sample=True, **settings)
    out = lm.generate(PROMPTS, attention_mask=MASK, seed=seed, return_dict_in_generate=True, output_scores=True, **kwargs)
    plan = prepare(lm.config, lm.generation_config, dict(kwargs), PROMPTS.numpy(), MASK.numpy(), seed=seed)
    b, k, vocab = plan.batch_size, plan.settings.num_beams, lm.config.vocab_size
    beams = BeamSearch(plan, vocab)
    for step, log_probs in enumerate(out.scores):
        assert not beams.done
        total = (log_probs.numpy().reshape(b, k, vocab) + beams.running_scores[:, :, None]).reshape(b, k * vocab)
        index = sampling.reference_sample_without_replacement(total, seed, step, plan.settings.beam_candidates)
        beams.step(np.take_along_axis(total, index, axis=1), index)
    assert beams.done
    sequences, scores, beam_indices = beams.finalize()
    assert np.array_equal(out.sequences.numpy(), sequences)
    assert np.array_equal(out.beam_indices.numpy(), beam_indices)
    np.testing.assert_allclose(out.sequences_scores.numpy(), scores, rtol=1e-6, atol=1e-6)


def test_a_1d_prompt_is_one_row(lm):
    assert torch.equal(lm.generate(PROMPTS[1], max_new_tokens=4), lm.generate(PROMPTS[1:2], max_new_tokens=4))
