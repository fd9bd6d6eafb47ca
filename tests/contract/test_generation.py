"""generate() as a contract: HF's tokens in every backend, and the same tokens across backends and paths.

* every backend reproduces HF transformers' golden greedy and beam sequences (tests/fixtures/hf-tiny/generation);
* every pair of backends gives identical sequences on the conformance generation cases, seeded sampling
  included (the shared counter-based stream of :mod:`gpt2_multi.generation.sampling`);
* in every backend every decode path (the eager reference loop, the fast and the compiled ones) gives
  identical seeded samples;
* on random configs and settings, seeded sampling agrees across backends; the number of tokens where two
  backends differ (near-ties within float rounding) is counted and must stay at zero on this sample
  (``benchmarks/sampling_ties.py`` measures the rate on a larger one).
"""

from __future__ import annotations

import numpy as np
import pytest

from gpt2_multi.backends import BACKENDS, Driver, stack_available
from gpt2_multi.conformance import generation

from fixture_cases import HF_TINY

INSTALLED = [b for b in BACKENDS if stack_available(b)]
pytestmark = pytest.mark.skipif(not INSTALLED, reason="no backend installed")

#: each backend's decode paths as generate() keywords: the eager reference loop first, then the fast ones
PATHS = {
    "pt": [{"cache_implementation": "dynamic"}, {}, {"compile": True}],
    "tf": [{"jit_compile": False}, {"jit_compile": True}],
    "flax": [{"jit": False}, {"jit": True}],
}

@pytest.fixture(scope="module")
def golden_drivers():
    return {b: Driver(b, HF_TINY / "generation" / "model") for b in INSTALLED}


@pytest.fixture(scope="module")
def peaked(tmp_path_factory):
    path = generation.make_generation_checkpoint(tmp_path_factory.mktemp("gen") / "model")
    return {b: Driver(b, path) for b in INSTALLED}


@pytest.mark.parametrize("backend", INSTALLED)
def test_every_backend_gives_hfs_greedy_and_beam_tokens(backend, golden_drivers):
    cases = generation.golden_generation_cases(HF_TINY)
    assert len(cases) >= 7
    comparisons, errors = generation.run_generation(cases, {backend: golden_drivers[backend]})
    assert not errors, errors[0][2]
    failed = [f"{c.case} {c.key}: {c.detail or c.max_abs_diff}" for c in comparisons if not c.passed]
    assert not failed, failed
    assert {c.case for c in comparisons if c.key == "sequences"} == {c.name for c in cases}
    assert any(c.key == "sequences_scores" for c in comparisons)


@pytest.mark.skipif(len(INSTALLED) < 2, reason="agreement between backends needs two")
def test_every_pair_of_backends_generates_the_same_tokens(peaked):
    config = next(iter(peaked.values())).config
    cases = generation.generation_cases(config)
    comparisons, errors = generation.run_generation(cases, peaked)
    assert not errors, errors[0][2]
    failed = [f"{c.case} {c.pair} {c.key}: {c.detail or c.max_abs_diff}" for c in comparisons if not c.passed]
    assert not failed, failed
    pairs = {c.pair for c in comparisons}
    assert len(pairs) == len(INSTALLED) * (len(INSTALLED) - 1) // 2
    assert {c.case for c in comparisons} == {c.name for c in cases}


def test_a_mismatch_names_the_first_differing_position():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = a.copy()
    b[1, 2] = 9
    result = generation.compare_sequences("case", "x~y", a, b, fill=0)
    assert not result.passed and "row 1, position 2: 7 vs 9" in result.detail
    longer = np.concatenate([a, [[0], [3]]], axis=1)
    result = generation.compare_sequences("case", "x~y", a, longer, fill=0)
    assert not result.passed and "row 1 goes on past position 4" in result.detail
    assert generation.compare_sequences("case", "x~y", a, np.concatenate([a, [[0], [0]]], axis=1), fill=0).passed


@pytest.mark.parametrize("backend", INSTALLED)
@pytest.mark.parametrize("settings", [
    dict(top_k=20, top_p=0.9, temperature=0.7, repetition_penalty=1.3, num_return_sequences=2),
    dict(top_k=0, no_repeat_ngram_size=2, min_new_tokens=3),
    dict(num_beams=2, num_return_sequences=2),
], ids=["filters", "ngram", "beam-sample"])
def test_seeded_sampling_is_the_same_eager_and_compiled(backend, settings, peaked):
    driver = peaked[backend]
    ids, mask = generation.left_padded(np.random.default_rng(3), driver.config.vocab_size, [4, 6], 0)
    kwargs = dict(settings, do_sample=True, seed=2024, max_new_tokens=8, pad_token_id=3, eos_token_id=5)
    reference, *fast_paths = (driver.generate(ids, mask, **kwargs, **path).sequences for path in PATHS[backend])
    assert len({tuple(row) for row in reference[:, ids.shape[1]:].tolist()}) > 1  # not a degenerate sample
    for fast in fast_paths:
        n = min(reference.shape[1], fast.shape[1])
        np.testing.assert_array_equal(reference[:, :n], fast[:, :n])
        assert (reference[:, n:] == 3).all() and (fast[:, n:] == 3).all()  # only the fill token beyond

@pytest.mark.skipif(len(INSTALLED) < 2, reason="agreement between backends needs two")
def test_seeded_sampling_agrees_on_random_configs_and_settings(tmp_path):
    rng = np.random.default_rng(12)
    tokens = differing = 0
    for i in range(6):
        config, case = generation.random_sampling_case(rng)
        path = generation.make_generation_checkpoint(tmp_path / f"m{i}", seed=i, config=config)
        outs = {b: Driver(b, path).generate(case.input_ids, case.attention_mask, **case.kwargs).sequences
                for b in INSTALLED}
        compared, differ = generation.count_differences(outs, case.input_ids.shape[1])
        tokens, differing = tokens + compared, differing + differ
    assert tokens > 50
    assert differing == 0, f"{differing} of {tokens} sampled tokens differ between backends"


# ------------------------------------------------------------------------------------------ bfloat16
@pytest.fixture(scope="module")
def trained_bf16():
    from gpt2_multi.demo import DEFAULT_MODEL
    from gpt2_multi.hub import resolve

    return {b: Driver(b, resolve(DEFAULT_MODEL), "bfloat16") for b in INSTALLED}


@pytest.mark.parametrize("backend", INSTALLED)
def test_bfloat16_batch_one_greedy_follows_the_models_own_forward(backend, trained_bf16, monkeypatch):
    """Batch-1 bfloat16 decode (the one-row products: TensorFlow's transposed kernels behind a barrier, Flax's
    fused matrix-vector form) picks the argmax of the model's own bfloat16 forward at every step, on every path
    (streamed too)."""
    driver = trained_bf16[backend]
    prompt = np.array([[464, 2163, 5860, 262]])  # "The function returns the" (the demo's prompt)
    new = 10
    sequence = prompt
    for _ in range(new):  # the reference: the full forward, no cache, argmax
        logits = np.asarray(driver.ops.forward(driver.model, {"input_ids": sequence}, {}, [])["logits"], np.float32)
        sequence = np.concatenate([sequence, logits[:, -1].argmax(-1)[:, None]], axis=1)
    assert len(set(sequence[0, prompt.shape[1]:].tolist())) > 3  # not a degenerate continuation
    read = []  # TensorFlow: whether each traced one-row product found its transposed kernel
    if backend == "tf":
        from gpt2_multi.tf import modeling as tf_modeling

        lookup = tf_modeling.row_kernel
        monkeypatch.setattr(tf_modeling, "row_kernel", lambda layer: read.append(lookup(layer) is not None) or lookup(layer))
    for path in [*PATHS[backend], {"streamer": Recorder()}]:
        read.clear()
        out = driver.generate(prompt, max_new_tokens=new, eos_token_id=None, **path).sequences
        np.testing.assert_array_equal(out, sequence, err_msg=str(path))
        assert backend != "tf" or sum(read) >= 4 * driver.config.n_layer + 1, (path, read)  # each Conv1D, the head
    assert len(path["streamer"].puts) == new + 1


class _Logits:
    """A stand-in driver whose forward returns fixed last-position logits, chosen by the prefix's length."""

    def __init__(self, name: str, by_length: dict[int, list[float]]):
        from gpt2_multi.config import GPT2Config

        self.backend, self.dtype, self.model = name, "bfloat16", None
        self.config = GPT2Config(vocab_size=4, n_positions=16, n_embd=8, n_layer=1, n_head=2)
        self.ops, self.by_length, self.prefixes = self, by_length, []

    def forward(self, model, inputs, flags, past):
        self.prefixes.append(inputs["input_ids"])
        return {"logits": np.array([[self.by_length[inputs["input_ids"].shape[1]]]], np.float32)}


def test_a_driver_names_an_unsupported_dtype():
    with pytest.raises(ValueError, match="Driver dtype must be 'float32' or 'bfloat16', got 'float16'"):
        Driver(INSTALLED[0], HF_TINY / "generation" / "model", "float16")


def test_bfloat16_greedy_differences_must_be_near_ties():
    """The bfloat16 rule of ``gpt2-multi conform --dtype bfloat16``: a greedy difference passes only where, in
    both backends, the processed scores of the common prefix (without its left padding) put the two tokens
    within the bfloat16 tolerance (u + 16 u max|scores|: 0.066 here) of each other and of the best score; every
    differing row is judged, and one that is not a near tie fails the comparison."""
    kwargs = dict(max_new_tokens=3, eos_token_id=None, pad_token_id=0)
    case = generation.GenerationCase("c", np.array([[0, 3, 0]]), np.array([[0, 1, 1]]), kwargs)
    a = np.array([[0, 3, 0, 1, 2, 3]])
    b = np.array([[0, 3, 0, 1, 3, 3]])  # first difference: position 4, tokens 2 and 3
    row = generation.compare_sequences("c", "x~y", a, b, fill=0)
    assert not row.passed
    close = [_Logits("x", {3: [0.0, 0.5, 1.0, 0.95]}), _Logits("y", {3: [0.0, 0.5, 0.94, 1.0]})]
    judged = generation.near_tie(case, row, *close, a, b)
    assert judged.passed and "near tie at row 0, position 4: tokens 2 and 3" in judged.detail
    np.testing.assert_array_equal(close[0].prefixes[0], [[3, 0, 1]])  # left padding dropped, up to the choice
    apart = [_Logits("x", {3: [0.0, 0.5, 1.0, 0.9]}), _Logits("y", {3: [0.0, 0.5, 0.94, 1.0]})]  # x: 0.1 apart
    assert "not a near tie" in generation.near_tie(case, row, *apart, a, b).detail
    below = [_Logits(n, {3: [1.5, 0.5, 1.0, 1.0]}) for n in "xy"]  # tied with each other, far below the best
    assert not generation.near_tie(case, row, *below, a, b).passed
    # two rows: row 0 a near tie, row 1 not (its prefix is 5 tokens long): the comparison fails
    case2 = generation.GenerationCase("c2", np.array([[0, 3, 0], [1, 3, 0]]), np.array([[0, 1, 1], [1, 1, 1]]), kwargs)
    a2 = np.array([[0, 3, 0, 1, 2, 3], [1, 3, 0, 1, 1, 3]])
    b2 = np.array([[0, 3, 0, 1, 3, 3], [1, 3, 0, 1, 1, 1]])
    drivers = [_Logits("x", {3: [0.0, 0.5, 1.0, 0.95], 5: [0.0, 0.2, 0.0, 1.0]}),
               _Logits("y", {3: [0.0, 0.5, 0.94, 1.0], 5: [0.0, 0.2, 0.0, 1.0]})]
    judged = generation.near_tie(case2, generation.compare_sequences("c2", "x~y", a2, b2, 0), *drivers, a2, b2)
    assert not judged.passed and "row 1, position 5: tokens 3 and 1" in judged.detail


# ------------------------------------------------------------------------------------------ streaming
class Recorder:
    """A streamer that keeps what generate() hands it (HF's put / end contract)."""

    def __init__(self, fail_at: int | None = None):
        self.puts, self.ended, self.fail_at = [], 0, fail_at

    def put(self, value):
        self.puts.append(np.asarray(value))
        if self.fail_at is not None and len(self.puts) == self.fail_at:
            raise RuntimeError("the streamer stops here")

    def end(self):
        self.ended += 1


def _path_id(path: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in path.items()) or "default"


@pytest.mark.parametrize("backend, path", [(b, p) for b in INSTALLED for p in PATHS[b]],
                         ids=[f"{b}-{_path_id(p)}" for b in INSTALLED for p in PATHS[b]])
def test_a_streamer_gets_the_prompt_then_each_token_then_end(backend, path, peaked):
    driver = peaked[backend]
    ids, mask = generation.left_padded(np.random.default_rng(5), driver.config.vocab_size, [4, 6], 0)
    kwargs = dict(path, max_new_tokens=6, do_sample=True, seed=11, num_return_sequences=2, pad_token_id=3)
    expected = driver.generate(ids, mask, **kwargs).sequences
    recorder = Recorder()
    out = driver.generate(ids, mask, streamer=recorder, **kwargs).sequences
    np.testing.assert_array_equal(out, expected)  # streaming changes nothing
    assert recorder.ended == 1
    assert [p.shape for p in recorder.puts] == [(4, ids.shape[1])] + [(4,)] * 6  # the expanded batch, as HF
    streamed = np.concatenate([recorder.puts[0]] + [p[:, None] for p in recorder.puts[1:]], axis=1)
    np.testing.assert_array_equal(streamed, out[:, :streamed.shape[1]])


@pytest.mark.parametrize("backend", INSTALLED)
def test_a_failing_streamer_raises_its_own_error_and_still_ends(backend, peaked):
    driver = peaked[backend]
    recorder = Recorder(fail_at=3)
    with pytest.raises(RuntimeError, match="the streamer stops here"):
        driver.generate(np.array([[5, 6, 7]]), max_new_tokens=6, streamer=recorder)
    assert len(recorder.puts) == 3 and recorder.ended == 1
    with pytest.raises(ValueError, match="beam search"):
        driver.generate(np.array([[5, 6, 7]]), max_new_tokens=2, num_beams=2, streamer=Recorder())


@pytest.mark.parametrize("backend", INSTALLED)
def test_text_streamer_prints_what_generate_returns(backend, peaked, capsys):
    from gpt2_multi import TextStreamer

    class Words:  # each id a word: every token is released as soon as it comes
        def decode(self, ids, **kwargs):
            return "".join(f"{int(i)} " for i in ids)

    out = peaked[backend].generate(np.array([[5, 6, 7]]), max_new_tokens=6, eos_token_id=None,
                                   streamer=TextStreamer(Words())).sequences
    assert capsys.readouterr().out == Words().decode(out[0]) + "\n"
