"""``generate()`` of the PyTorch stack against HF transformers and the shared numpy reference.

Oracles: HF transformers 4.x's ``generate`` on the same HF-written fixture checkpoint
(tests/fixtures/hf-tiny/lm) for greedy, eos/padding and beam search, token for token; the
shared ``reference_process_logits`` for the logits processors; a cache-free loop over the
model's own forward for the DoubleHeads model. The fixture's eos (50256) lies outside its
vocabulary, so tests where eos matters pass ids that the model actually produces.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpt2_multi.generation import GenerationConfig, prepare, reference_process_logits  # noqa: E402
from gpt2_multi.pt import GPT2DoubleHeadsModel, GPT2LMHeadModel  # noqa: E402
from gpt2_multi.pt.generation import (  # noqa: E402
    GenerateBeamDecoderOnlyOutput,
    GenerateDecoderOnlyOutput,
    LogitsProcessor,
)
from gpt2_multi.validation import InputError  # noqa: E402
from tiny import one_torch_thread, tiny_config  # noqa: E402, F401 (one_torch_thread: an autouse fixture)

from fixture_cases import checkpoint_dir  # noqa: E402

pytestmark = pytest.mark.torch

LM_DIR = checkpoint_dir("lm", "safetensors")
# Three prompts, two left-padded (pad id 0); a repetition penalty makes the tiny model's
# continuations varied (without it it repeats one token), and these ids do occur in them.
PROMPTS = torch.tensor([[0, 0, 5, 6, 7, 8], [11, 12, 13, 14, 15, 16], [0, 0, 0, 0, 400, 3]])
MASK = (PROMPTS != 0).long()
VARIED = dict(repetition_penalty=1.3)



@pytest.fixture(scope="module")
def model():
    return GPT2LMHeadModel.from_pretrained(LM_DIR)


@pytest.fixture(scope="module")
def hf_model():
    # Keep transformers (if this is its first import) from loading TF and Flax; only for that import:
    # left in os.environ, the setting reached later tests' subprocesses, where HF's TF classes then vanished.
    saved = {key: os.environ.get(key) for key in ("USE_TF", "USE_FLAX")}
    os.environ.update({key: value or "0" for key, value in saved.items()})
    try:
        transformers = pytest.importorskip("transformers")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return transformers.GPT2LMHeadModel.from_pretrained(LM_DIR).eval()


def generate_both(model, hf_model, **kwargs):
    ours = model.generate(PROMPTS, attention_mask=MASK, **kwargs)
    with torch.no_grad():
        theirs = hf_model.generate(PROMPTS, attention_mask=MASK, **kwargs)
    return ours, theirs


def assert_same_tokens(ours, theirs):
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert torch.equal(ours, theirs), f"\nours:\n{ours}\nHF:\n{theirs}"


# ------------------------------------------------------------------------------------ processors
PROCESSOR_SETTINGS = [
    dict(repetition_penalty=1.7),
    dict(repetition_penalty=0.6),
    dict(no_repeat_ngram_size=1),
    dict(no_repeat_ngram_size=2),
    dict(no_repeat_ngram_size=3),
    dict(min_new_tokens=5, eos_token_id=[3, 17]),
    dict(do_sample=True, temperature=0.7, top_k=0),
    dict(do_sample=True, top_k=7),
    dict(do_sample=True, top_k=0, top_p=0.8),
    dict(do_sample=True, temperature=1.3, top_k=20, top_p=0.6, repetition_penalty=1.2,
         no_repeat_ngram_size=2, min_new_tokens=3, eos_token_id=4),
]


@pytest.mark.parametrize("settings", PROCESSOR_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("new_so_far", [0, 4])
def test_processors_equal_the_numpy_reference(settings, new_so_far):
    rng = np.random.default_rng(len(str(settings)) + new_so_far)
    vocab, prompt = 50, 6
    # small alphabet so that n-grams repeat; scores with both signs for the repetition penalty
    ids = rng.integers(0, 8, size=(3, prompt + new_so_far))
    scores = rng.normal(size=(3, vocab)).astype(np.float32) * 3
    config = GenerationConfig(**settings)
    min_new, _ = config.new_tokens(prompt, 1000)
    expected = reference_process_logits(scores, ids, config, new_so_far, min_new)
    plan = prepare(tiny_config(vocab_size=vocab, n_positions=1000), config, {}, ids[:, :prompt])
    got = LogitsProcessor(plan.settings, prompt)(torch.from_numpy(ids), torch.from_numpy(scores)).numpy()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert np.isfinite(got).any(axis=1).all()


def test_processors_are_a_no_op_by_default():
    scores = torch.randn(2, 30)
    processor = LogitsProcessor(prepare(tiny_config(vocab_size=30), None, {}, np.zeros((2, 4), np.int64)).settings, 4)
    assert not processor.active and processor(torch.zeros(2, 4, dtype=torch.long), scores) is scores


# ------------------------------------------------------------------------------------ greedy against HF
@pytest.mark.parametrize("cache", [None, "dynamic"])
@pytest.mark.parametrize("settings", [dict(), VARIED, dict(no_repeat_ngram_size=2)], ids=["plain", "rep", "ngram"])
def test_greedy_equals_hf_on_left_padded_batch(model, hf_model, cache, settings):
    ours = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=20, cache_implementation=cache, **settings)
    with torch.no_grad():
        theirs = hf_model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=20, **settings)
    assert_same_tokens(ours, theirs)
    assert torch.equal(ours[:, :PROMPTS.shape[1]], PROMPTS)


def test_left_padded_batch_equals_each_prompt_alone(model):
    batch = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=15, **VARIED)
    for row in range(PROMPTS.shape[0]):
        keep = MASK[row].bool()
        alone = model.generate(PROMPTS[row:row + 1, keep], max_new_tokens=15, **VARIED)
        assert torch.equal(batch[row, PROMPTS.shape[1]:], alone[0, int(keep.sum()):]), row


def test_use_cache_false_gives_the_same_tokens(model):
    fast = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=10, **VARIED)
    slow = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=10, use_cache=False, **VARIED)
    assert torch.equal(fast, slow)


@pytest.mark.slow
def test_compiled_static_cache_equals_eager(model):
    kwargs = dict(attention_mask=MASK, max_new_tokens=12, **VARIED)
    eager = model.generate(PROMPTS, **kwargs)
    dynamic = model.generate(PROMPTS, cache_implementation="dynamic", **kwargs)
    compiled = model.generate(PROMPTS, compile=True, **kwargs)
    assert torch.equal(eager, dynamic) and torch.equal(eager, compiled)
    # a shorter prompt in the same padded bucket reuses the compiled step; beam search reorders the static cache
    again = model.generate(PROMPTS[:, 1:], attention_mask=MASK[:, 1:], max_new_tokens=12, cache_implementation="static", **VARIED)
    assert torch.equal(again, model.generate(PROMPTS[:, 1:], attention_mask=MASK[:, 1:], max_new_tokens=12, **VARIED))
    beams = dict(num_beams=3, eos_token_id=[257, 152], **kwargs)
    assert torch.equal(model.generate(PROMPTS, compile=True, **beams), model.generate(PROMPTS, **beams))


# ------------------------------------------------------------------------------------ eos and padding
def test_eos_rows_are_padded_and_generation_stops_like_hf(model, hf_model):
    ours, theirs = generate_both(model, hf_model, max_new_tokens=20, eos_token_id=[257, 152], pad_token_id=5, **VARIED)
    assert_same_tokens(ours, theirs)
    assert ours.shape[1] < PROMPTS.shape[1] + 20  # every row ended early
    for row in ours[:, PROMPTS.shape[1]:]:
        ends = [i for i, t in enumerate(row.tolist()) if t in (257, 152)]
        assert ends, row
        assert (row[ends[0] + 1:] == 5).all()


def test_min_new_tokens_and_max_length(model, hf_model):
    ours, theirs = generate_both(model, hf_model, max_new_tokens=12, min_new_tokens=6, eos_token_id=174)
    assert_same_tokens(ours, theirs)
    assert (ours[:, PROMPTS.shape[1]:PROMPTS.shape[1] + 6] != 174).all()
    # max_new_tokens wins over max_length; max_length counts the prompt
    assert model.generate(PROMPTS, attention_mask=MASK, max_length=9).shape[1] == 9
    assert model.generate(PROMPTS, attention_mask=MASK, max_length=9, max_new_tokens=4).shape[1] == PROMPTS.shape[1] + 4


def test_pad_token_defaults_to_eos_with_a_warning(model, caplog):
    with caplog.at_level(logging.WARNING, logger="gpt2_multi.generation"):
        from gpt2_multi.generation import plan

        plan._warned.clear()
        out = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=20, eos_token_id=257, pad_token_id=None, **VARIED)
    assert "Setting `pad_token_id` to `eos_token_id`:257" in caplog.text
    row = out[0, PROMPTS.shape[1]:].tolist()
    assert 257 in row and all(t == 257 for t in row[row.index(257):])


# ------------------------------------------------------------------------------------ beam search against HF
@pytest.mark.parametrize("settings", [
    dict(num_beams=3),
    dict(num_beams=3, eos_token_id=[257, 152]),
    dict(num_beams=4, eos_token_id=[897, 152], early_stopping=True, length_penalty=0.7, num_return_sequences=2),
    dict(num_beams=4, eos_token_id=[897, 152], early_stopping="never", length_penalty=1.5),
    dict(num_beams=3, eos_token_id=[897, 152, 601], early_stopping=False, length_penalty=-1.0, pad_token_id=3),
], ids=["plain", "eos", "early-true-nrs", "never", "negative-lp"])
def test_beam_search_equals_hf(model, hf_model, settings):
    ours, theirs = generate_both(model, hf_model, max_new_tokens=15, **VARIED, **settings)
    assert_same_tokens(ours, theirs)


def test_beam_output_scores_equal_hf(model, hf_model):
    kwargs = dict(max_new_tokens=8, num_beams=3, num_return_sequences=2, eos_token_id=[257, 152],
                  return_dict_in_generate=True, output_scores=True, **VARIED)
    ours, theirs = generate_both(model, hf_model, **kwargs)
    assert isinstance(ours, GenerateBeamDecoderOnlyOutput)
    assert_same_tokens(ours.sequences, theirs.sequences)
    torch.testing.assert_close(ours.sequences_scores, theirs.sequences_scores, rtol=1e-4, atol=1e-4)
    assert torch.equal(ours.beam_indices, theirs.beam_indices.long())
    assert len(ours.scores) == len(theirs.scores)
    for a, b in zip(ours.scores, theirs.scores):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------ outputs
def test_scores_output_equals_hf(model, hf_model):
    kwargs = dict(max_new_tokens=6, return_dict_in_generate=True, output_scores=True, **VARIED)
    ours, theirs = generate_both(model, hf_model, **kwargs)
    assert isinstance(ours, GenerateDecoderOnlyOutput)
    assert_same_tokens(ours.sequences, theirs.sequences)
    assert len(ours.scores) == 6
    for step, (a, b) in enumerate(zip(ours.scores, theirs.scores)):
        assert a.shape == (3, 1000) and a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert torch.equal(a.argmax(-1), ours.sequences[:, PROMPTS.shape[1] + step])
    # past_key_values cover every token fed to the model (all but the last generated)
    assert len(ours.past_key_values) == model.config.n_layer
    for key, value in ours.past_key_values:
        assert key.shape == value.shape == (3, 4, PROMPTS.shape[1] + 5, 8)


def test_generated_ids_can_train():
    """The ids are not inference tensors: they can be labels of a training step."""
    model = GPT2LMHeadModel.from_pretrained(LM_DIR)
    out = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=3)
    model.train()
    model(out, labels=out).loss.backward()
    assert model.lm_head.weight.grad is not None


def test_return_dict_without_scores_and_raw_logits(model):
    out = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=3, return_dict_in_generate=True,
                         output_logits=True, **VARIED)
    assert out.scores is None and len(out.logits) == 3 and out.logits[0].shape == (3, 1000)
    assert torch.equal(out.sequences, model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=3, **VARIED))


@pytest.mark.parametrize("flag", ["output_attentions", "output_hidden_states"])
def test_attentions_and_hidden_states_are_not_returned(model, flag):
    """As in the TF and Flax stacks: the outputs have no such fields, and asking for them is a TypeError naming it."""
    with pytest.raises(TypeError, match=flag):
        model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=2, return_dict_in_generate=True, **{flag: True})
    for output in (GenerateDecoderOnlyOutput, GenerateBeamDecoderOnlyOutput):
        assert not {"attentions", "hidden_states"} & set(output.__dataclass_fields__)


# ------------------------------------------------------------------------------------ sampling
def test_sampling_is_reproducible_with_seed_and_generator(model):
    """seed= is the shared counter stream; generator= torch's own stream (torch.multinomial); neither: the global RNG."""
    kwargs = dict(attention_mask=MASK, max_new_tokens=10, do_sample=True, top_k=0)
    a = model.generate(PROMPTS, seed=3, **kwargs)
    b = model.generate(PROMPTS, seed=3, **kwargs)
    d = model.generate(PROMPTS, seed=4, **kwargs)
    assert torch.equal(a, b) and not torch.equal(a, d)
    c = model.generate(PROMPTS, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(c, model.generate(PROMPTS, generator=torch.Generator().manual_seed(3), **kwargs))
    torch.manual_seed(11)
    e = model.generate(PROMPTS, **kwargs)
    torch.manual_seed(11)
    assert torch.equal(e, model.generate(PROMPTS, **kwargs))


def test_sampled_tokens_have_finite_processed_scores(model):
    out = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=10, do_sample=True, top_k=5, top_p=0.7,
                         temperature=0.8, seed=0, return_dict_in_generate=True, output_scores=True)
    for step, scores in enumerate(out.scores):
        token = out.sequences[:, PROMPTS.shape[1] + step]
        assert torch.isfinite(scores.gather(1, token[:, None])).all()
        assert (torch.isfinite(scores).sum(-1) <= 5).all()


def test_sampling_follows_the_processed_distribution(model):
    """4000 one-token samples of one prompt: frequencies match softmax(processed scores)."""
    prompt = PROMPTS[1:2]
    settings = dict(do_sample=True, top_k=6, temperature=2.0)
    out = model.generate(prompt, max_new_tokens=1, num_return_sequences=4000, seed=0, return_dict_in_generate=True,
                         output_scores=True, **settings)
    probs = torch.softmax(out.scores[0][0], -1)
    counts = torch.bincount(out.sequences[:, -1], minlength=probs.shape[0]).double() / 4000
    assert set(torch.nonzero(counts).flatten().tolist()) <= set(torch.nonzero(probs).flatten().tolist())
    torch.testing.assert_close(counts, probs.double(), rtol=0, atol=0.03)


def test_top_k_1_sampling_is_greedy(model):
    sampled = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=8, do_sample=True, top_k=1, seed=1, **VARIED)
    assert torch.equal(sampled, model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=8, **VARIED))


def test_beam_sampling_is_reproducible_and_well_formed(model):
    kwargs = dict(attention_mask=MASK, max_new_tokens=8, do_sample=True, num_beams=3, num_return_sequences=2,
                  top_k=10, eos_token_id=[257, 152], return_dict_in_generate=True, output_scores=True)
    a = model.generate(PROMPTS, seed=5, **kwargs)
    b = model.generate(PROMPTS, seed=5, **kwargs)
    assert torch.equal(a.sequences, b.sequences) and a.sequences.shape[0] == 6
    assert torch.equal(a.sequences[:, :PROMPTS.shape[1]], PROMPTS.repeat_interleave(2, dim=0))
    assert (a.sequences_scores[0::2] >= a.sequences_scores[1::2]).all()  # best hypothesis first
    new = a.sequences[:, PROMPTS.shape[1]:]
    assert ((new >= 0) & (new < 1000)).all()


def test_num_return_sequences_repeats_each_prompt(model):
    out = model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=5, do_sample=True, num_return_sequences=3, seed=0)
    assert out.shape == (9, PROMPTS.shape[1] + 5)
    assert torch.equal(out[:, :PROMPTS.shape[1]], PROMPTS.repeat_interleave(3, dim=0))


# ------------------------------------------------------------------------------------ config and heads
def test_generation_config_defaults_to_the_model_config():
    from gpt2_multi.config import GPT2Config

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2, eos_token_id=7,
                                       bos_token_id=7, pad_token_id=None)).eval()
    assert model.generation_config.eos_token_id == 7 and model.generation_config.pad_token_id is None
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4).shape[1] <= 7


def test_generation_config_json_is_read(tmp_path):
    shutil.copytree(LM_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"max_new_tokens": 4, "repetition_penalty": 1.3, "pad_token_id": 0, "eos_token_id": 50256}))
    model = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert model.generation_config.max_new_tokens == 4 and model.generation_config.repetition_penalty == 1.3
    out = model.generate(PROMPTS, attention_mask=MASK)
    assert out.shape == (3, PROMPTS.shape[1] + 4)
    assert torch.equal(out, model.generate(PROMPTS, attention_mask=MASK, generation_config=GenerationConfig(
        max_new_tokens=4, repetition_penalty=1.3, pad_token_id=0)))
    assert model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=2).shape[1] == PROMPTS.shape[1] + 2


def test_attention_mask_is_inferred_from_pad_token(model):
    assert torch.equal(model.generate(PROMPTS, max_new_tokens=6, **VARIED),
                       model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=6, **VARIED))


def test_double_heads_generates_with_its_lm_logits():
    model = GPT2DoubleHeadsModel.from_pretrained(checkpoint_dir("double", "safetensors"))
    prompt = torch.tensor([[5, 6, 7, 8]])
    out = model.generate(prompt, max_new_tokens=8, repetition_penalty=1.3)
    config = GenerationConfig(repetition_penalty=1.3)
    ids = prompt.clone()
    with torch.no_grad():
        for _ in range(8):  # no cache: the whole sequence through the model each step
            logits = model(ids).logits[:, -1].float()
            scores = reference_process_logits(logits.numpy(), ids.numpy(), config, 0, 0)
            ids = torch.cat([ids, torch.tensor([[int(scores.argmax())]])], dim=1)
    assert torch.equal(out, ids)


# ------------------------------------------------------------------------------------ errors
def test_errors(model):
    with pytest.raises(ValueError, match="exceeds the model's n_positions=64"):
        model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=60)
    with pytest.raises(TypeError, match="foo_bar"):
        model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=2, foo_bar=1)
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=2, num_return_sequences=3, num_beams=2)
    with pytest.raises(InputError, match="integer token ids"):
        model.generate(PROMPTS.float(), max_new_tokens=2)
    with pytest.raises(InputError, match="outside the vocabulary"):
        model.generate(PROMPTS + 995, max_new_tokens=2)
    with pytest.raises(InputError, match="attention_mask has shape"):
        model.generate(PROMPTS, attention_mask=MASK[:, 1:], max_new_tokens=2)
    with pytest.raises(InputError, match="batch, prompt_length"):
        model.generate(PROMPTS[:, :0], max_new_tokens=2)
    with pytest.raises(TypeError, match="seed must be an int"):
        model.generate(PROMPTS, max_new_tokens=2, do_sample=True, seed=1.5)
    with pytest.raises(ValueError, match="seed or generator"):
        model.generate(PROMPTS, max_new_tokens=2, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="cache_implementation"):
        model.generate(PROMPTS, max_new_tokens=2, cache_implementation="paged")
    with pytest.raises(ValueError, match="nothing to generate"):
        model.generate(PROMPTS, max_length=4)


def test_importing_generation_imports_no_other_framework():
    code = ("import sys, gpt2_multi.pt.generation\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not loaded & {"tensorflow", "keras", "jax", "flax", "transformers"}


# ------------------------------------------------------------------------------------ streamers
class Recorder:
    """A streamer that keeps what generate hands it."""

    def __init__(self):
        self.puts, self.ended = [], 0

    def put(self, value):
        self.puts.append(value.clone())

    def end(self):
        self.ended += 1


def test_streamer_gets_the_prompt_then_each_token_as_hf(model, hf_model):
    prompt, mask = PROMPTS[1:2], MASK[1:2]
    ours, theirs = Recorder(), Recorder()
    out = model.generate(prompt, attention_mask=mask, max_new_tokens=6, streamer=ours, **VARIED)
    with torch.no_grad():
        hf_model.generate(prompt, attention_mask=mask, max_new_tokens=6, streamer=theirs, pad_token_id=0, **VARIED)
    assert ours.ended == theirs.ended == 1
    assert [p.shape for p in ours.puts] == [p.shape for p in theirs.puts] == [(1, 6)] + [(1,)] * 6
    assert all(torch.equal(a, b) for a, b in zip(ours.puts, theirs.puts))
    assert torch.equal(torch.cat([ours.puts[0][0]] + ours.puts[1:]), out[0])


def test_text_streamer_prints_what_generate_returns(model, capsys):
    from gpt2_multi import GPT2TokenizerFast, TextIteratorStreamer, TextStreamer

    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    prompt = PROMPTS[1:2]
    out = model.generate(prompt, max_new_tokens=8, streamer=TextStreamer(tok), **VARIED)
    assert capsys.readouterr().out == tok.decode(out[0].tolist()) + "\n"
    model.generate(prompt, max_new_tokens=8, streamer=TextStreamer(tok, skip_prompt=True), **VARIED)
    assert capsys.readouterr().out == tok.decode(out[0, prompt.shape[1]:].tolist()) + "\n"

    import threading

    streamer = TextIteratorStreamer(tok, skip_prompt=True, timeout=60)
    thread = threading.Thread(target=model.generate, args=(prompt,),
                              kwargs=dict(max_new_tokens=8, streamer=streamer, **VARIED))
    thread.start()
    pieces = list(streamer)
    thread.join()
    assert "".join(pieces) == tok.decode(out[0, prompt.shape[1]:].tolist())


def test_streamer_with_a_batch_as_hf(model, hf_model):
    """HF hands a streamer the whole batch (its text streamers refuse it themselves); beam search is refused."""
    from gpt2_multi import GPT2TokenizerFast, TextStreamer

    ours, theirs = Recorder(), Recorder()
    model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=3, streamer=ours, num_return_sequences=2, do_sample=True,
                   seed=0)
    with torch.no_grad():
        hf_model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=3, streamer=theirs, num_return_sequences=2,
                          do_sample=True, pad_token_id=0)
    assert [p.shape for p in ours.puts] == [p.shape for p in theirs.puts] == [(6, 6)] + [(6,)] * 3
    assert torch.equal(ours.puts[0], theirs.puts[0]) and ours.ended == 1
    with pytest.raises(ValueError, match="one sequence, but got a batch of 3 rows"):
        model.generate(PROMPTS, attention_mask=MASK, max_new_tokens=2,
                       streamer=TextStreamer(GPT2TokenizerFast.from_pretrained("gpt2")))
    with pytest.raises(ValueError, match="beam search"):
        model.generate(PROMPTS[1:2], max_new_tokens=2, num_beams=2, streamer=Recorder())


def test_prompt_as_inputs_or_input_ids(model):
    expected = model.generate(PROMPTS[1:2], max_new_tokens=2)
    assert torch.equal(model.generate(inputs=PROMPTS[1:2], max_new_tokens=2), expected)
    with pytest.raises(TypeError, match="input_ids or as inputs, not both"):
        model.generate(PROMPTS[1:2], inputs=PROMPTS[1:2], max_new_tokens=2)
