"""``generate()`` of the TensorFlow stack: HF's semantics, checked against HF transformers and the numpy references.

HF transformers (PyTorch) is the oracle; it runs once per session in a subprocess (so PyTorch never
shares this process with TensorFlow) on the golden fixture LM checkpoint. The seeded sampling stream and
the logits processors are checked against the shared numpy references of ``gpt2_multi.generation``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")

from gpt2_multi import GPT2Config  # noqa: E402
from gpt2_multi.generation import GenerationConfig, prepare, reference_process_logits, sampling  # noqa: E402
from gpt2_multi.tf import TFGPT2DoubleHeadsModel, TFGPT2LMHeadModel  # noqa: E402
from gpt2_multi.tf.generation import _sample_without_replacement, process_logits, sample_tokens, uniforms  # noqa: E402

from fixture_cases import checkpoint_dir  # noqa: E402

LM_DIR = checkpoint_dir("lm", "safetensors")

# A left-padded batch: row 0 has 5 real tokens, row 1 has 8, row 2 has 3.
IDS = np.array([[0, 0, 0, 11, 250, 37, 901, 4],
                [17, 300, 42, 8, 999, 123, 64, 5],
                [0, 0, 0, 0, 0, 77, 78, 79]], np.int32)
MASK = (np.arange(8)[None, :] >= np.array([[3], [0], [5]])).astype(np.int32)

# name -> generate kwargs; each is run by HF and by us on (IDS, MASK).
HF_CASES = {
    "greedy": dict(max_new_tokens=12),
    "greedy_eos": dict(max_new_tokens=12, eos_token_id=[174, 3], pad_token_id=0),
    "greedy_processors": dict(max_new_tokens=12, repetition_penalty=1.4, no_repeat_ngram_size=2, min_new_tokens=4,
                              eos_token_id=174, pad_token_id=0),
    "beam_default": dict(max_new_tokens=8, num_beams=3, num_return_sequences=2),
    "beam_eos_early": dict(max_new_tokens=8, num_beams=4, eos_token_id=174, pad_token_id=0, early_stopping=True,
                           length_penalty=0.5),
    "beam_eos_never": dict(max_new_tokens=8, num_beams=3, eos_token_id=[174, 964], pad_token_id=0,
                           early_stopping="never", length_penalty=2.0, num_return_sequences=3),
    "beam_eos_false": dict(max_new_tokens=8, num_beams=2, eos_token_id=964, pad_token_id=0, early_stopping=False),
}

HF_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    warnings.filterwarnings("ignore")
    import numpy as np, torch
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging
    logging.set_verbosity_error()
    job = json.load(sys.stdin)
    model = GPT2LMHeadModel.from_pretrained(job["dir"]).eval()
    ids, mask = torch.tensor(job["ids"]), torch.tensor(job["mask"])
    out = {}
    with torch.no_grad():
        for name, kwargs in job["cases"].items():
            out[name] = model.generate(ids, attention_mask=mask, do_sample=False, **kwargs).tolist()
        prompts = [torch.tensor(job["ids"][i])[torch.tensor(job["mask"][i]) == 1][None] for i in range(len(job["ids"]))]
        out["alone"] = [model.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=12,
                                       do_sample=False).tolist()[0] for p in prompts]
    json.dump(out, sys.stdout)
""")


@pytest.fixture(scope="module", autouse=True)
def hf_process():
    """Starts HF's run at the beginning of the module, so it overlaps the TensorFlow tests (its tests come last)."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        yield None
        return
    job = json.dumps({"dir": str(LM_DIR), "ids": IDS.tolist(), "mask": MASK.tolist(), "cases": HF_CASES})
    env = {**os.environ, "USE_TF": "0", "USE_FLAX": "0", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", HF_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    proc.stdin.write(job)
    proc.stdin.close()
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def hf_outputs(hf_process):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    stdout = hf_process.stdout.read()
    stderr = hf_process.stderr.read()
    assert hf_process.wait(timeout=300) == 0, stderr[-3000:]
    return json.loads(stdout)


@pytest.fixture(scope="module")
def model():
    return TFGPT2LMHeadModel.from_pretrained(LM_DIR)


SAMPLE_KW = dict(attention_mask=MASK, max_new_tokens=10, do_sample=True, top_k=8, top_p=0.9, temperature=0.8,
                 return_dict_in_generate=True, output_scores=True)


def test_eager_equals_compiled(model):
    for name in ("greedy", "greedy_processors"):  # compiled programs shared with the HF tests
        compiled = model.generate(IDS, attention_mask=MASK, **HF_CASES[name]).numpy()
        eager = model.generate(IDS, attention_mask=MASK, jit_compile=False, **HF_CASES[name]).numpy()
        np.testing.assert_array_equal(compiled, eager, err_msg=name)
    compiled = model.generate(IDS, seed=5, **SAMPLE_KW)
    eager = model.generate(IDS, seed=5, jit_compile=False, **SAMPLE_KW)
    np.testing.assert_array_equal(compiled.sequences.numpy(), eager.sequences.numpy())
    np.testing.assert_allclose(compiled.scores[-1].numpy(), eager.scores[-1].numpy(), rtol=1e-4, atol=1e-4)


def test_no_retrace_within_a_prompt_bucket(model):
    model.generate(IDS, attention_mask=MASK, **HF_CASES["greedy"])
    before = model._generate_traces
    model.generate(IDS[:, 2:], attention_mask=MASK[:, 2:], **HF_CASES["greedy"])  # other prompt lengths,
    model.generate(IDS[:, 1:], attention_mask=MASK[:, 1:], **HF_CASES["greedy"])  # same bucket of 32
    assert model._generate_traces == before


# ------------------------------------------------------------------------------------ processors
@pytest.mark.parametrize("kwargs", [
    dict(repetition_penalty=1.7),
    dict(no_repeat_ngram_size=2),
    dict(no_repeat_ngram_size=3),
    dict(no_repeat_ngram_size=1),
    dict(min_new_tokens=5, eos_token_id=[3, 7]),
    dict(do_sample=True, temperature=0.7, top_k=5),
    dict(do_sample=True, top_k=0, top_p=0.8),
    dict(do_sample=True, temperature=1.3, top_k=12, top_p=0.6, repetition_penalty=0.8, no_repeat_ngram_size=2,
         min_new_tokens=3, eos_token_id=2),
])
def test_processors_equal_reference(kwargs):
    rng = np.random.default_rng(0)
    vocab = 40
    scores = rng.normal(size=(4, vocab)).astype(np.float32) * 3
    ids = rng.integers(0, 8, size=(4, 9)).astype(np.int32)
    ids[:, -2:] = ids[:, 2:4]  # the last two tokens occurred before: 2- and 3-grams get banned
    config = GenerationConfig(**kwargs)
    # the shared Settings of such a call, with min_new = 4 (the reference takes it as an argument)
    model_config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=8, n_layer=1, n_head=2)
    settings = prepare(model_config, config, {"max_new_tokens": 10}, ids).settings
    settings = dataclasses.replace(settings, min_new=4)
    masked_any = False
    for new_so_far in (0, 4):
        expected = reference_process_logits(scores, ids, config, new_so_far, 4)
        masked_any |= bool(np.isinf(expected).any())
        ours = process_logits(tf.constant(scores), tf.constant(ids), ids.shape[1], new_so_far, settings).numpy()
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)
        # the same inside a larger buffer: bucket padding before the tokens, unwritten slots after
        buffer = np.concatenate([np.full((4, 3), 5), ids, np.full((4, 6), 6)], axis=1).astype(np.int32)
        fn = tf.function(lambda s, b, k=new_so_far: process_logits(s, b, 3 + ids.shape[1], k, settings, start=3),
                         jit_compile=True)
        np.testing.assert_allclose(fn(tf.constant(scores), tf.constant(buffer)).numpy(), expected, rtol=1e-6, atol=1e-6)
    assert masked_any or not (config.do_sample or config.no_repeat_ngram_size or config.min_new_tokens)


# ------------------------------------------------------------------------------------ sampling
def test_sampling_reproducible_and_within_the_processed_support(model):
    kwargs = SAMPLE_KW
    a = model.generate(IDS, seed=11, **kwargs)
    b = model.generate(IDS, seed=11, **kwargs)
    c = model.generate(IDS, seed=12, **kwargs)
    np.testing.assert_array_equal(a.sequences.numpy(), b.sequences.numpy())
    assert not np.array_equal(a.sequences.numpy(), c.sequences.numpy())
    new = a.sequences.numpy()[:, IDS.shape[1]:]
    assert len(a.scores) == new.shape[1]
    for step, scores in enumerate(a.scores):
        chosen = np.take_along_axis(scores.numpy(), new[:, step:step + 1], axis=1)
        assert np.isfinite(chosen).all()
        assert (np.isfinite(scores.numpy()).sum(axis=1) <= 8).all()  # top-k applied
    tf.random.set_seed(3)
    d = model.generate(IDS, **kwargs)  # no seed: drawn from TF's global generator
    tf.random.set_seed(3)
    e = model.generate(IDS, **kwargs)
    np.testing.assert_array_equal(d.sequences.numpy(), e.sequences.numpy())


def test_num_return_sequences_interleaves(model):
    out = model.generate(IDS, attention_mask=MASK, max_new_tokens=6, do_sample=True, num_return_sequences=3, seed=1,
                         jit_compile=False).numpy()
    assert out.shape == (9, 14)
    np.testing.assert_array_equal(out[:, :8], np.repeat(IDS, 3, axis=0))
    rows = out[3:6, 8:]
    assert len({tuple(r) for r in rows}) > 1  # the copies are sampled independently


@pytest.mark.parametrize("seed", [0, 7, 2**32 + 3, 2**64 - 1])
def test_uniforms_are_the_shared_stream_bit_for_bit(seed):
    words = tf.constant(np.array(sampling.seed_words(seed), np.uint32))
    compiled = tf.function(lambda w, t: uniforms(w, t, 5, 1000), jit_compile=True)
    for step in (0, 1, 37, 2**31 - 1):
        expected = sampling.uniforms(seed, step, 5, 1000)
        np.testing.assert_array_equal(uniforms(words, step, 5, 1000).numpy(), expected)
        np.testing.assert_array_equal(compiled(words, tf.constant(step)).numpy(), expected)


def test_gumbel_max_and_gumbel_top_k_equal_the_numpy_references():
    rng = np.random.default_rng(5)
    scores = (rng.normal(size=(4, 300)) * 2).astype(np.float32)
    scores[:, ::3] = -np.inf  # filtered ids are never drawn
    words = tf.constant(np.array(sampling.seed_words(99), np.uint32))
    compiled = tf.function(lambda s, t: sample_tokens(s, words, t), jit_compile=True)
    for step in range(6):
        expected = sampling.reference_sample(scores, 99, step)
        np.testing.assert_array_equal(sample_tokens(tf.constant(scores), words, step).numpy(), expected)
        np.testing.assert_array_equal(compiled(tf.constant(scores), tf.constant(step)).numpy(), expected)
        assert np.isfinite(np.take_along_axis(scores, expected[:, None], axis=1)).all()
        kept, index = _sample_without_replacement(tf.constant(scores), words, step, 6)
        np.testing.assert_array_equal(index.numpy(), sampling.reference_sample_without_replacement(scores, 99, step, 6))
        np.testing.assert_array_equal(kept.numpy(), np.take_along_axis(scores, index.numpy(), axis=1))


def test_seeded_sampling_draws_the_reference_token_at_every_step(model):
    """Each new token is reference_sample(processed scores, seed, step) of its row (eager and XLA): the same
    tokens the other backends draw from the same scores. Rows are the expanded batch (return sequences)."""
    seed = 2**40 + 17
    kwargs = dict(SAMPLE_KW, num_return_sequences=2)
    outs = [model.generate(IDS, seed=seed, jit_compile=jit, **kwargs) for jit in (True, False)]
    np.testing.assert_array_equal(outs[0].sequences.numpy(), outs[1].sequences.numpy())
    for out in outs:
        new = out.sequences.numpy()[:, IDS.shape[1]:]
        assert new.shape == (6, 10) and len(out.scores) == 10
        for step, scores in enumerate(out.scores):
            np.testing.assert_array_equal(new[:, step], sampling.reference_sample(scores.numpy(), seed, step))
    # HF-TF's seed pair (a, b) is the int a + (b << 32)
    pair = model.generate(IDS, seed=(17, 2**8), **kwargs)
    np.testing.assert_array_equal(pair.sequences.numpy(), outs[0].sequences.numpy())
    with pytest.raises(ValueError, match="seed"):
        model.generate(IDS, seed=(1, -2), **kwargs)


def test_beam_sampling_is_seeded(model):
    kwargs = dict(attention_mask=MASK, max_new_tokens=6, num_beams=3, do_sample=True, top_k=0, temperature=1.5,
                  num_return_sequences=2, jit_compile=False)
    a = model.generate(IDS, seed=3, **kwargs).numpy()
    np.testing.assert_array_equal(model.generate(IDS, seed=3, **kwargs).numpy(), a)
    assert not np.array_equal(model.generate(IDS, seed=4, **kwargs).numpy(), a)
    greedy_beams = model.generate(IDS, attention_mask=MASK, max_new_tokens=6, num_beams=3, num_return_sequences=2).numpy()
    assert not np.array_equal(a, greedy_beams)


# ------------------------------------------------------------------------------------ scores, eos, config
def test_greedy_scores_output(model):
    out = model.generate(IDS, attention_mask=MASK, max_new_tokens=5, return_dict_in_generate=True, output_scores=True,
                         repetition_penalty=1.5)
    new = out.sequences.numpy()[:, IDS.shape[1]:]
    assert len(out.scores) == 5 and out.scores[0].shape == (3, 1000)
    logits = model(IDS, attention_mask=MASK, position_ids=np.maximum(np.cumsum(MASK, 1) - 1, 0)).logits.numpy()[:, -1]
    config = GenerationConfig(repetition_penalty=1.5)
    expected = reference_process_logits(logits, IDS, config, 0, 0)
    np.testing.assert_allclose(out.scores[0].numpy(), expected, rtol=1e-4, atol=1e-4)
    for step, scores in enumerate(out.scores):
        np.testing.assert_array_equal(np.argmax(scores.numpy(), axis=1), new[:, step])


def test_stops_when_all_rows_finish_and_pads_after_eos(model):
    # eager path (eager == compiled is tested above; fewer XLA compiles keep this module fast);
    # the repetition penalty makes the tiny model's greedy rows vary (else each repeats one token)
    free = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, repetition_penalty=3.0, jit_compile=False).numpy()[:, 8:]
    r, k = next((r, i) for r in range(3) for i in range(1, 10) if free[r, i] not in free[r, :i])
    eos = int(free[r, k])  # row r first emits it at step k + 1
    out = model.generate(IDS, attention_mask=MASK, max_new_tokens=10, repetition_penalty=3.0, jit_compile=False, eos_token_id=eos, pad_token_id=0).numpy()[:, 8:]
    for row, ref in zip(out, free):
        hit = np.flatnonzero(ref == eos)
        if hit.size:
            np.testing.assert_array_equal(row[:hit[0] + 1], ref[:hit[0] + 1])
            assert (row[hit[0] + 1:] == 0).all()
        else:
            np.testing.assert_array_equal(row, ref[:len(row)])
    stop = model.generate(IDS[r:r + 1], attention_mask=MASK[r:r + 1], max_new_tokens=10, repetition_penalty=3.0, jit_compile=False, eos_token_id=eos).numpy()
    assert stop.shape == (1, 8 + k + 1)  # the only row finished at step k + 1: generation stopped there


def test_generation_config_file_and_max_new_tokens_wins(tmp_path, model):
    model.save_pretrained(tmp_path)
    GenerationConfig(max_new_tokens=3, eos_token_id=None, pad_token_id=0).save_pretrained(tmp_path)
    loaded = TFGPT2LMHeadModel.from_pretrained(tmp_path)
    assert loaded.generation_config.max_new_tokens == 3
    assert loaded.generate(IDS, attention_mask=MASK, jit_compile=False).shape == (3, 11)
    assert loaded.generate(IDS, attention_mask=MASK, max_length=10, max_new_tokens=4, jit_compile=False).shape == (3, 12)
    assert model.generate(IDS, attention_mask=MASK, max_length=11, eos_token_id=None, jit_compile=False).shape == (3, 11)


def test_double_heads_generate_uses_lm_logits(model):
    double = TFGPT2DoubleHeadsModel.from_pretrained(LM_DIR)
    expected = model.generate(IDS, attention_mask=MASK, max_new_tokens=6).numpy()
    ours = double.generate(IDS, attention_mask=MASK, max_new_tokens=6, jit_compile=False).numpy()
    np.testing.assert_array_equal(ours, expected)


def test_errors(model):
    with pytest.raises(ValueError, match="n_positions"):
        model.generate(IDS, attention_mask=MASK, max_new_tokens=60)
    with pytest.raises(TypeError, match="bogus_arg"):
        model.generate(IDS, attention_mask=MASK, max_new_tokens=2, bogus_arg=1)
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate(IDS, attention_mask=MASK, max_new_tokens=2, num_return_sequences=2)
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(IDS, attention_mask=MASK[:, 1:], max_new_tokens=2)
    with pytest.raises(ValueError):
        model.generate(IDS + 1000, max_new_tokens=2)  # out of the vocabulary
    with pytest.raises(ValueError, match="needs input_ids"):
        model.generate(max_new_tokens=2)


def test_inputs_is_hfs_name_for_input_ids(model):
    expected = model.generate(IDS, attention_mask=MASK, max_new_tokens=3).numpy()
    np.testing.assert_array_equal(model.generate(inputs=IDS, attention_mask=MASK, max_new_tokens=3).numpy(), expected)
    with pytest.raises(TypeError, match="input_ids or as inputs, not both"):
        model.generate(IDS, inputs=IDS, max_new_tokens=3)


# ------------------------------------------------------------------------------------ streamer
class Recorder:
    def __init__(self):
        self.puts, self.ended = [], 0

    def put(self, value):
        assert isinstance(value, tf.Tensor)
        self.puts.append(value.numpy())

    def end(self):
        self.ended += 1


@pytest.mark.parametrize("jit_compile", [True, False])
def test_streamer_gets_the_prompt_then_each_token(model, jit_compile):
    kwargs = dict(attention_mask=MASK, max_new_tokens=12, repetition_penalty=1.4, no_repeat_ngram_size=2,
                  min_new_tokens=4, eos_token_id=174, pad_token_id=0)  # HF_CASES["greedy_processors"]: compiled already
    expected = model.generate(IDS, **kwargs).numpy()
    streamer = Recorder()
    out = model.generate(IDS, streamer=streamer, jit_compile=jit_compile, **kwargs).numpy()
    np.testing.assert_array_equal(out, expected)
    new = out.shape[1] - IDS.shape[1]
    assert streamer.ended == 1
    assert [p.shape for p in streamer.puts] == [IDS.shape] + [(3,)] * new
    np.testing.assert_array_equal(np.concatenate([streamer.puts[0]] + [p[:, None] for p in streamer.puts[1:]], axis=1), out)
    # sampling: the stream is the seeded loop's, and the puts are the expanded batch (HF's)
    streamer = Recorder()
    sampled = model.generate(IDS, seed=5, streamer=streamer, jit_compile=jit_compile, num_return_sequences=2,
                             **{k: v for k, v in SAMPLE_KW.items() if k not in ("return_dict_in_generate", "output_scores")})
    reference = model.generate(IDS, seed=5, jit_compile=jit_compile, num_return_sequences=2,
                               **{k: v for k, v in SAMPLE_KW.items() if k not in ("return_dict_in_generate", "output_scores")})
    np.testing.assert_array_equal(sampled.numpy(), reference.numpy())
    assert [p.shape for p in streamer.puts] == [(6, 8)] + [(6,)] * 10


def test_import_pulls_in_no_other_framework():
    code = "import sys, gpt2_multi.tf.generation; print([m for m in ('torch', 'jax', 'flax') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------ HF equality
@pytest.mark.parametrize("name", list(HF_CASES))
def test_matches_hf_token_for_token(model, hf_outputs, name):
    ours = model.generate(IDS, attention_mask=MASK, **HF_CASES[name])
    assert isinstance(ours, tf.Tensor)
    np.testing.assert_array_equal(ours.numpy(), np.array(hf_outputs[name]), err_msg=name)


def test_greedy_eos_case_exercises_padding(hf_outputs):
    """The eos case must really finish a row early (else it tests nothing)."""
    seqs = np.array(hf_outputs["greedy_eos"])[:, IDS.shape[1]:]
    finished_early = [row for row in seqs if np.isin(row[:-1], [174, 3]).any()]
    assert finished_early, seqs


def test_left_padded_batch_equals_each_prompt_alone(model, hf_outputs):
    batch = model.generate(IDS, attention_mask=MASK, max_new_tokens=12).numpy()
    for i in range(len(IDS)):
        prompt = IDS[i][MASK[i] == 1][None]
        alone = model.generate(prompt, max_new_tokens=12).numpy()[0]
        np.testing.assert_array_equal(alone, np.array(hf_outputs["alone"][i]))
        np.testing.assert_array_equal(batch[i, IDS.shape[1]:], alone[prompt.shape[1]:])
