"""Generation conformance: the same tokens from every backend's ``model.generate``, and HF's where HF is deterministic.

A :class:`GenerationCase` is a prompt batch and ``generate`` keyword arguments. Each installed backend
runs it through its own default (fast) path; sequences must be identical token for token between every
pair of backends, and equal to HF transformers' golden sequences where the case has them (greedy and
beam search; HF's sampling uses its own generators, so seeded sampling is compared across our backends
only). ``sequences_scores`` of beam search are compared with the float tolerance.

Output lengths differ by framework convention (Flax pads every row to the full length, PyTorch and
TensorFlow stop at the longest row); sequences are compared over the longest common length, and what
lies beyond it must be the fill token only. A mismatch names the first differing row and position.

The cases (:func:`generation_cases`): a left-padded greedy batch; eos reached mid-batch with padding after
it; the processors on (repetition penalty, no-repeat n-gram, min new tokens); beam search with
``num_return_sequences > 1`` (early stopping True and "never"); seeded sampling with top-k / top-p /
temperature / repetition penalty and ``num_return_sequences > 1`` on a left-padded batch; seeded beam sampling.
HF's golden sequences for the ``hf-tiny`` checkpoint live in ``<golden>/generation/*.npz``
(``tests/fixtures/make_generation_golden.py`` makes them with HF transformers).

In bfloat16 (drivers loaded with ``dtype="bfloat16"``) two backends' logits may differ by the stated bfloat16
tolerance (``runner.TOLERANCES``: a few bfloat16 steps of the logits' scale), so where two logits lie that close
a greedy choice may go either way. The rule there: greedy sequences agree token for token up to their first
difference, and that difference must be a near tie: in each of the two backends, its own bfloat16 logits for
the common prefix put the two chosen tokens within the tolerance of each other (checked by re-running the
prefix; the report names the margin). Sampled and beam cases still run in every backend and are compared, but
their agreement is reported, not required (``required=False``): a sampled or beam choice turns on differences
within the tolerance through cumulative probabilities and running sums, which no per-token margin bounds.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpt2_multi.config import GPT2Config
from gpt2_multi.generation import prepare

SCORE_TOLERANCE = (1e-4, 1e-4)  # atol, rtol for beam scores (float32 sums of log-probabilities)


@dataclass
class GenerationCase:
    name: str
    input_ids: np.ndarray  # (B, T) left-padded
    attention_mask: np.ndarray  # (B, T)
    kwargs: dict[str, Any] = field(default_factory=dict)
    expected: np.ndarray | None = None  # HF's sequences, when HF is deterministic for this case
    expected_scores: np.ndarray | None = None
    eos_from_greedy: bool = False  # pick eos as a token greedy decoding reaches mid-way in row 0


@dataclass
class GenerationComparison:
    case: str
    pair: str
    key: str
    max_abs_diff: float  # differing positions for sequences; max |diff| for scores
    passed: bool
    detail: str = ""
    required: bool = True  # False: reported only (bfloat16 sampling and beams, see the module's notes)


def left_padded(rng: np.random.Generator, vocab: int, lengths: list[int], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Random prompts of ``lengths`` (ids in [1, vocab)), left-padded with ``pad``: (ids, attention_mask) (B, T)."""
    t = max(lengths)
    ids = np.full((len(lengths), t), pad, np.int64)
    mask = np.zeros((len(lengths), t), np.int64)
    for row, n in enumerate(lengths):
        ids[row, t - n:] = rng.integers(1, vocab, size=n)
        mask[row, t - n:] = 1
    return ids, mask


GENERATION_CONFIG = dict(vocab_size=1000, n_positions=64, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0)


def make_generation_checkpoint(directory: Path, seed: int = 0, config: GPT2Config | None = None) -> Path:
    """An LM whose next-token distributions are peaked (weight matrices of std 0.4, perturbed biases and
    LayerNorms), written as safetensors: random GPT-2 inits have near-uniform logits, and greedy decoding then
    repeats one token, which would hide most of what generation conformance is for. ``config`` defaults to
    :data:`GENERATION_CONFIG` (tiny)."""
    from gpt2_multi.checkpoint import expected_shapes, save_checkpoint

    config = config or GPT2Config(**GENERATION_CONFIG, architectures=["GPT2LMHeadModel"])
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(config, "GPT2LMHeadModel").items():
        if len(shape) == 2:
            tensors[name] = (0.4 * rng.standard_normal(shape)).astype(np.float32)
        elif name.endswith(".bias"):
            tensors[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:  # LayerNorm weights
            tensors[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    save_checkpoint(directory, tensors, config, architecture="GPT2LMHeadModel")
    return Path(directory)


def generation_cases(config: GPT2Config, seed: int = 0) -> list[GenerationCase]:
    """The cross-backend generation cases for a checkpoint with ``config`` (prompts drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    vocab = config.vocab_size
    pad = 0
    room = config.n_positions - 7
    new = max(1, min(10, room))
    ids, mask = left_padded(rng, vocab, [5, 3, 7], pad)
    base = dict(max_new_tokens=new, pad_token_id=pad)
    cases = [
        GenerationCase("greedy_left_pad", ids, mask, dict(base, eos_token_id=None)),
        # one row: batch-1 decode, where a step's products are matrix-vector products (TensorFlow and Flax take
        # their one-row path in half precision)
        GenerationCase("greedy_one_row", ids[2:], mask[2:], dict(base, eos_token_id=None)),
        GenerationCase("greedy_eos_mid_batch", ids, mask, dict(base), eos_from_greedy=True),
        GenerationCase("greedy_processors", ids, mask,
                       dict(base, repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=4), eos_from_greedy=True),
        GenerationCase("beam_return2", ids[:2], mask[:2],
                       dict(base, num_beams=3, num_return_sequences=2, length_penalty=0.8, early_stopping=True,
                            output_scores=True), eos_from_greedy=True),
        GenerationCase("beam_never", ids[:2], mask[:2],
                       dict(base, num_beams=2, early_stopping="never", length_penalty=1.5, output_scores=True),
                       eos_from_greedy=True),
        GenerationCase("sample_seeded", ids, mask,
                       dict(base, do_sample=True, seed=1234, top_k=20, top_p=0.9, temperature=0.8,
                            repetition_penalty=1.2, num_return_sequences=2, eos_token_id=None)),
        GenerationCase("sample_seeded_eos", ids, mask, dict(base, do_sample=True, seed=7, top_k=0),
                       eos_from_greedy=True),
        GenerationCase("beam_sample_seeded", ids[:2], mask[:2],
                       dict(base, do_sample=True, seed=99, num_beams=2, output_scores=True), eos_from_greedy=True),
    ]
    return cases


def random_sampling_case(rng: np.random.Generator, vocab: tuple[int, int] = (50, 400)) -> tuple[GPT2Config, GenerationCase]:
    """A random config (activation, the three attention flags, sizes) and a random seeded-sampling call
    (temperature, top-k, top-p, repetition penalty, num_return_sequences, a left-padded batch)."""
    from gpt2_multi.activations import ACTIVATIONS

    config = GPT2Config(
        vocab_size=int(rng.integers(*vocab)), n_positions=32, n_embd=16, n_layer=int(rng.integers(1, 3)),
        n_head=int(rng.choice([2, 4])), activation_function=str(rng.choice(ACTIVATIONS)),
        scale_attn_weights=bool(rng.integers(2)), scale_attn_by_inverse_layer_idx=bool(rng.integers(2)),
        reorder_and_upcast_attn=bool(rng.integers(2)), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        pad_token_id=0, eos_token_id=int(rng.integers(1, 50)), architectures=["GPT2LMHeadModel"])
    kwargs = dict(do_sample=True, seed=int(rng.integers(2**40)), max_new_tokens=int(rng.integers(3, 10)),
                  temperature=float(rng.choice([1.0, 0.7, 1.5])), top_k=int(rng.choice([0, 5, 40])),
                  top_p=float(rng.choice([1.0, 0.8])), repetition_penalty=float(rng.choice([1.0, 1.4])),
                  num_return_sequences=int(rng.choice([1, 2])))
    lengths = [int(n) for n in rng.integers(1, 8, size=int(rng.integers(1, 4)))]
    ids, mask = left_padded(rng, config.vocab_size, lengths, 0)
    return config, GenerationCase("random_sampling", ids, mask, kwargs)


def count_differences(outputs: dict[str, np.ndarray], prompt_length: int) -> tuple[int, int]:
    """(new tokens compared, tokens that differ) between the first backend's sequences and every other's."""
    names = list(outputs)
    first = outputs[names[0]]
    compared = differing = 0
    for name in names[1:]:
        n = min(first.shape[1], outputs[name].shape[1])
        compared += first[:, prompt_length:n].size
        differing += int((first[:, :n] != outputs[name][:, :n]).sum())
    return compared, differing


def golden_generation_cases(fixtures: Path) -> list[GenerationCase]:
    """HF's golden cases under ``<fixtures>/generation/`` (each ``.npz`` with ``input_ids``, ``attention_mask``,
    ``sequences``, optionally ``sequences_scores``, and the JSON ``kwargs``)."""
    directory = Path(fixtures) / "generation"
    cases = []
    for path in sorted(directory.glob("*.npz")):
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        kwargs = json.loads(str(arrays.pop("kwargs")))
        cases.append(GenerationCase(f"hf:{path.stem}", arrays["input_ids"], arrays["attention_mask"], kwargs,
                                    expected=arrays["sequences"], expected_scores=arrays.get("sequences_scores")))
    return cases


def _plan(config: GPT2Config, case: GenerationCase):
    """The shared generation plan of ``case`` (its settings, processors and fill token), as generate makes it."""
    kwargs = {k: v for k, v in case.kwargs.items() if k != "seed"}
    return prepare(config, None, kwargs, case.input_ids, case.attention_mask)


def _fill(config: GPT2Config, case: GenerationCase) -> int:
    return _plan(config, case).settings.pad


def compare_sequences(case: str, pair: str, a: np.ndarray, b: np.ndarray, fill: int) -> GenerationComparison:
    """Token-exact comparison over the common length; beyond it only ``fill`` may stand."""
    if a.shape[0] != b.shape[0]:
        return GenerationComparison(case, pair, "sequences", float("inf"), False,
                                    f"{a.shape[0]} rows against {b.shape[0]}")
    n = min(a.shape[1], b.shape[1])
    longer = a if a.shape[1] > n else b
    tail_ok = bool((longer[:, n:] == fill).all())
    diff = a[:, :n] != b[:, :n]
    if not diff.any() and tail_ok:
        return GenerationComparison(case, pair, "sequences", 0.0, True)
    if diff.any():
        row, col = (int(i) for i in np.argwhere(diff)[0])
        detail = f"first difference at row {row}, position {col}: {int(a[row, col])} vs {int(b[row, col])}"
    else:
        row, col = (int(i) for i in np.argwhere(longer[:, n:] != fill)[0])
        detail = f"row {row} goes on past position {n} with token {int(longer[row, n + col])}"
    return GenerationComparison(case, pair, "sequences", float(diff.sum() or 1), False, detail)


def compare_scores(case: str, pair: str, a: np.ndarray | None, b: np.ndarray | None) -> list[GenerationComparison]:
    if a is None and b is None:
        return []
    if a is None or b is None or a.shape != b.shape:
        return [GenerationComparison(case, pair, "sequences_scores", float("inf"), False, "missing on one side")]
    atol, rtol = SCORE_TOLERANCE
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    ok = bool(np.all(diff <= atol + rtol * np.abs(b)))
    return [GenerationComparison(case, pair, "sequences_scores", float(diff.max(initial=0.0)), ok)]


def run_generation(cases: list[GenerationCase], drivers: dict[str, Any]) -> tuple[list[GenerationComparison], list[tuple[str, str, str]]]:
    """Run every case in every driver (:class:`gpt2_multi.backends.Driver`); returns (comparisons, errors)."""
    import traceback

    comparisons: list[GenerationComparison] = []
    errors: list[tuple[str, str, str]] = []
    names = list(drivers)
    if not names:
        return comparisons, errors
    config = drivers[names[0]].config
    dtype = getattr(drivers[names[0]], "dtype", "float32")
    for case in cases:
        if case.eos_from_greedy:  # an eos that row 0 reaches at its 3rd new token: ends mid-batch
            greedy = drivers[names[0]].generate(case.input_ids, case.attention_mask, eos_token_id=None,
                                                max_new_tokens=case.kwargs["max_new_tokens"], pad_token_id=0)
            t = case.input_ids.shape[1]
            case.kwargs = dict(case.kwargs, eos_token_id=int(greedy.sequences[0, t + min(2, greedy.sequences.shape[1] - t - 1)]))
            case.eos_from_greedy = False
        outputs = {}
        for name, driver in drivers.items():
            try:
                outputs[name] = driver.generate(case.input_ids, case.attention_mask, **case.kwargs)
            except Exception:  # noqa: BLE001 - recorded, the run goes on
                errors.append((case.name, name, traceback.format_exc(limit=3)))
        fill = _fill(config, case)
        if case.expected is not None:
            for name, out in outputs.items():
                comparisons.append(compare_sequences(case.name, f"{name}~hf", out.sequences, case.expected, fill))
                if case.expected_scores is not None:
                    comparisons += compare_scores(case.name, f"{name}~hf", out.sequences_scores, case.expected_scores)
        done = list(outputs)
        greedy = not case.kwargs.get("do_sample") and case.kwargs.get("num_beams", 1) == 1
        for i, a in enumerate(done):
            for b in done[i + 1:]:
                pair_rows = [compare_sequences(case.name, f"{a}~{b}", outputs[a].sequences, outputs[b].sequences, fill)]
                if "num_beams" in case.kwargs:
                    pair_rows += compare_scores(case.name, f"{a}~{b}", outputs[a].sequences_scores,
                                                outputs[b].sequences_scores)
                if dtype != "float32" and greedy and not pair_rows[0].passed:
                    pair_rows[0] = near_tie(case, pair_rows[0], drivers[a], drivers[b], outputs[a].sequences,
                                            outputs[b].sequences)
                elif dtype != "float32" and not greedy:
                    pair_rows = [dataclasses.replace(row, required=False) for row in pair_rows]
                comparisons += pair_rows
    return comparisons, errors


def near_tie(case: GenerationCase, row: GenerationComparison, driver_a: Any, driver_b: Any, seq_a: np.ndarray,
             seq_b: np.ndarray) -> GenerationComparison:
    """A low-precision greedy difference judged (see the module's notes): ``row`` passed, with each row's margins
    in its detail, when every row's first differing token is a near tie in both backends; else failed, with why.

    A near tie in one backend: its own logits for the common prefix, through the case's logits processors (the
    shared numpy reference, as generate applies them), put both tokens within the dtype's bound
    (``runner.TOLERANCES``) of each other and of that backend's best score. A row that differs only past the
    common length (one backend went on) is not a choice between two tokens and still fails.
    """
    from gpt2_multi.conformance.runner import TOLERANCES
    from gpt2_multi.generation import reference_process_logits

    if seq_a.shape[0] != seq_b.shape[0]:
        return row
    plan = _plan(driver_a.config, case)
    prompt, n = case.input_ids.shape[1], min(seq_a.shape[1], seq_b.shape[1])
    tol = TOLERANCES[driver_a.dtype]
    notes, tied = [], True
    for r in range(seq_a.shape[0]):
        differ = np.flatnonzero(seq_a[r, :n] != seq_b[r, :n])
        if not differ.size:
            longer = seq_a if seq_a.shape[1] > n else seq_b
            if (longer[r, n:] != plan.settings.pad).any():
                return dataclasses.replace(row, passed=False, detail=f"{row.detail}; row {r} goes on past position {n}")
            continue
        col = int(differ[0])
        if r >= case.attention_mask.shape[0] or col < prompt:
            return dataclasses.replace(row, passed=False)
        keep = np.concatenate([case.attention_mask[r] > 0, np.ones(col - prompt, bool)])
        token_a, token_b = int(seq_a[r, col]), int(seq_b[r, col])
        margins = []
        for driver in (driver_a, driver_b):
            out = driver.ops.forward(driver.model, {"input_ids": seq_a[r, :col][keep][None]}, {}, [])
            scores = reference_process_logits(np.asarray(out["logits"], np.float32)[:, -1], seq_a[r:r + 1, :col],
                                              plan.config, col - prompt, plan.settings.min_new)[0].astype(np.float64)
            bound = float(tol.bound(scores)[[token_a, token_b]].max())
            gap = max(abs(scores[token_a] - scores[token_b]), scores.max() - max(scores[token_a], scores[token_b]))
            margins.append((driver.backend, gap, bound))
            tied = tied and bool(gap <= bound)  # False for a token the processors ruled out (-inf)
        text = ", ".join(f"{name} {gap:.3g} (bound {bound:.3g})" for name, gap, bound in margins)
        notes.append(f"row {r}, position {col}: tokens {token_a} and {token_b}, margins {text}")
    if tied and notes:
        return dataclasses.replace(row, passed=True, detail="near tie at " + "; ".join(notes))
    return dataclasses.replace(row, passed=False, detail=f"{row.detail}; not a near tie: " + "; ".join(notes))


__all__ = ["GENERATION_CONFIG", "GenerationCase", "GenerationComparison", "compare_scores", "compare_sequences",
           "count_differences", "left_padded", "generation_cases", "golden_generation_cases", "make_generation_checkpoint",
           "near_tie", "random_sampling_case", "run_generation"]
