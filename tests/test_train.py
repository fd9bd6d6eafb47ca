"""``gpt2-multi train``: the same run in every backend, resume, Ctrl-C, and every bad input's error.

The corpus (``tests/fixtures/train/corpus.txt``) is the first 40 kB of the embedded model's training text
(the Python documentation, PSF license; ``recipes/tiny/make_corpus.py``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpt2_multi import backends
from gpt2_multi.cli import main
from gpt2_multi.training.data import batch_at, tokenize_corpus
from gpt2_multi.training.run import TrainingError, TrainSettings, checkpoints, learning_rate, train

CORPUS = Path(__file__).parent / "fixtures" / "train" / "corpus.txt"
CONFIG = json.dumps({"vocab_size": 50257, "n_positions": 64, "n_embd": 16, "n_layer": 2, "n_head": 2,
                     "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0})
RUN = dict(config=CONFIG, steps=8, batch_size=4, seq_len=32, lr=1e-2, eval_every=4, eval_windows=8, seed=3)
INSTALLED = [b for b in backends.BACKENDS if backends.stack_available(b)]
needs_backend = pytest.mark.parametrize("backend", INSTALLED)


def _run(backend: str, out: Path, **overrides) -> object:
    settings = {**RUN, **overrides}
    if overrides.get("resume") and "config" not in overrides:
        settings.pop("config")
    return train(TrainSettings(backend=backend, data=str(CORPUS), out=str(out), progress=False, **settings))


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory) -> dict[str, object]:
    """Each backend's uninterrupted 8-step run of the same settings."""
    return {b: _run(b, tmp_path_factory.mktemp(f"full-{b}")) for b in INSTALLED}


def _losses(result) -> np.ndarray:
    return np.array([h["loss"] for h in result.history])


@needs_backend
def test_training_lowers_the_held_out_loss(full_runs, backend):
    result = full_runs[backend]
    assert [e["step"] for e in result.evals] == [4, 8]
    first, last = result.evals[0]["loss"], result.evals[-1]["loss"]
    assert last < first - 0.05 < math.log(50257), (first, last)
    assert result.history[0]["loss"] == pytest.approx(math.log(50257), abs=0.1)  # fresh weights: a uniform guess
    # the run's output directory loads in every backend, and the model there is the trained one
    out = result.out
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert [s for s, _ in checkpoints(out)] == [4, 8]


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends to compare")
def test_every_backend_follows_the_same_loss_curve(full_runs):
    reference = _losses(full_runs[INSTALLED[0]])
    assert len(reference) == RUN["steps"] and reference[-1] < reference[0] - 0.3
    for backend in INSTALLED[1:]:
        np.testing.assert_allclose(_losses(full_runs[backend]), reference, rtol=0, atol=2e-4, err_msg=backend)
        held = [e["loss"] for e in full_runs[backend].evals]
        np.testing.assert_allclose(held, [e["loss"] for e in full_runs[INSTALLED[0]].evals], atol=2e-4)


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends to compare")
def test_a_trained_model_gives_the_same_logits_in_every_backend(full_runs):
    out = full_runs[INSTALLED[0]].out
    ids = np.array([[464, 2163, 5860, 262]])
    logits = {b: backends.Driver(b, out).forward(ids)[0].logits for b in INSTALLED}
    for b in INSTALLED[1:]:
        np.testing.assert_allclose(logits[b], logits[INSTALLED[0]], atol=1e-4)


@needs_backend
def test_a_resumed_run_continues_the_same_curve(full_runs, backend, tmp_path):
    first = _run(backend, tmp_path, stop_at=4)
    assert not first.interrupted and first.step == 4 and [s for s, _ in checkpoints(tmp_path)] == [4]
    second = _run(backend, tmp_path, resume=True)
    assert not second.interrupted and second.step == 8
    np.testing.assert_allclose(_losses(second), _losses(full_runs[backend]), rtol=0, atol=1e-5)
    np.testing.assert_allclose([e["loss"] for e in second.evals], [e["loss"] for e in full_runs[backend].evals], atol=1e-5)


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends")
def test_a_run_resumes_in_another_backend(full_runs, tmp_path):
    a, b = INSTALLED[0], INSTALLED[-1]
    _run(a, tmp_path, stop_at=4)
    second = _run(b, tmp_path, resume=True)
    assert json.loads((tmp_path / "checkpoint-8" / "trainer_state.json").read_text())["backend"] == b
    np.testing.assert_allclose(_losses(second), _losses(full_runs[a]), rtol=0, atol=2e-4)


def test_batches_and_schedule_are_functions_of_the_step():
    stream = np.arange(1000, dtype=np.int32)
    a, b = batch_at(stream, 7, 4, 16, seed=1), batch_at(stream, 7, 4, 16, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 16) and a.dtype == np.int32
    assert np.all(np.diff(a, axis=1) == 1)  # consecutive windows of the stream
    assert not np.array_equal(a, batch_at(stream, 8, 4, 16, seed=1))
    run = {"lr": 1.0, "steps": 10, "warmup": 2, "min_lr_ratio": 0.1}
    lrs = [learning_rate(s, run) for s in range(10)]
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(x >= y for x, y in zip(lrs[1:], lrs[2:]))


def test_the_corpus_is_split_and_joined_with_end_of_text(tmp_path):
    from gpt2_multi.tokenization import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    (tmp_path / "a.txt").write_text("Hello world. " * 50)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Goodbye world. " * 50)
    (tmp_path / "ignored.md").write_text("not text data")
    streams = tokenize_corpus(tmp_path, tok, seq_len=8)
    whole = np.concatenate([streams.train, streams.heldout])
    assert streams.files == 2
    assert list(whole).count(tok.eos_token_id) == 2 and whole[-1] == tok.eos_token_id
    assert streams.heldout.size == max(round(whole.size * 0.05), 18)


# ------------------------------------------------------------------------------------------- errors
def _cli(tmp_path, *args: str) -> list[str]:
    return ["train", "--backend", INSTALLED[0], "--out", str(tmp_path / "out"), "--no-progress", *args]


@pytest.mark.skipif(not INSTALLED, reason="no backend installed")
@pytest.mark.parametrize("case, message", [
    ("empty", "the training data is empty"),
    ("latin1", "is not UTF-8 text: byte 9"),
    ("missing", "no such file or directory"),
    ("seq_len", "--seq-len 65 is longer than the model's context: n_positions=64"),
    ("config", "unknown --config 'gpt7'"),
    ("bad_json", "--config is not valid JSON"),
    ("out_file", "is a file; give a directory"),
    ("nothing_to_resume", "holds no checkpoint to resume"),
    ("steps", "--steps must be a positive integer, got 0"),
    ("short", "the training data is too short"),
    ("stop_at", "--stop-at 5 must lie after the run's current step (0) and at most --steps (2)"),
    ("warmup", "--warmup 3 is longer than the run (--steps 2)"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, case, message):
    data = tmp_path / "data.txt"
    data.write_text("Some text for training. " * 200)
    args = ["--data", str(data), "--config", CONFIG, "--steps", "2", "--seq-len", "32"]
    if case == "empty":
        data.write_text("  \n\n ")
    elif case == "latin1":
        data.write_bytes("plain caf\xe9 text".encode("latin-1"))
    elif case == "missing":
        args[1] = str(tmp_path / "nope.txt")
    elif case == "seq_len":
        args[-1] = "65"
    elif case == "config":
        args[3] = "gpt7"
    elif case == "bad_json":
        args[3] = "{not json"
    elif case == "out_file":
        (tmp_path / "out").write_text("a file")
    elif case == "nothing_to_resume":
        args = ["--data", str(data), "--resume"]
    elif case == "steps":
        args[5] = "0"
    elif case == "short":
        data.write_text("Too short.")
    elif case == "stop_at":
        args += ["--stop-at", "5"]
    elif case == "warmup":
        args += ["--warmup", "3"]
    assert main(_cli(tmp_path, *args)) == 2
    assert message in capsys.readouterr().err
    out = tmp_path / "out"
    if case == "out_file":
        assert out.read_text() == "a file"  # untouched
    else:
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())  # nothing written


def test_unknown_backend_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--backend", "mxnet", "--data", str(CORPUS), "--out", str(tmp_path)])
    assert exc.value.code == 2 and "invalid choice: 'mxnet'" in capsys.readouterr().err


@pytest.mark.skipif(not INSTALLED, reason="no backend installed")
def test_resume_with_another_shape_and_unwritable_out_are_errors(tmp_path):
    out = tmp_path / "run"
    _run(INSTALLED[0], out, steps=2, eval_every=2)
    other = json.dumps({**json.loads(CONFIG), "n_embd": 32})
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(TrainingError, match=r"another shape than --config .*n_embd 16 vs 32"):
        _run(INSTALLED[0], out, config=other, resume=True, steps=4)
    with pytest.raises(TrainingError, match="already holds a training run"):
        _run(INSTALLED[0], out)
    assert sorted(p.name for p in out.iterdir()) == before
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(TrainingError, match="is not a writable directory"):
        _run(INSTALLED[0], blocked / "sub")


@pytest.mark.skipif("pt" not in INSTALLED, reason="needs PyTorch")
def test_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gpt2_multi", *_cli(tmp_path, "--data", str(CORPUS), "--config", CONFIG,
                                                     "--steps", "100000", "--eval-every", "100000", "--seq-len", "32")]
    cmd[cmd.index("--out") + 1] = str(out)
    cmd[cmd.index("--backend") + 1] = "pt"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the run's header: the model is built and the loop starts
    assert line.startswith("training "), line
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "stopped after step" in stderr
    (step, where), = checkpoints(out)
    assert 0 < step < 100000 and f"stopped at step {step} of 100000" in stdout
    assert (out / "model.safetensors").is_file() and (where / "optimizer.safetensors").is_file()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.skipif(not INSTALLED, reason="no backend installed")
def test_stop_at_is_a_clean_stop_and_resume_needs_a_later_one(tmp_path, capsys):
    args = ["--data", str(CORPUS), "--config", CONFIG, "--steps", "4", "--seq-len", "32", "--batch-size", "2",
            "--eval-every", "2", "--eval-windows", "2"]
    assert main(_cli(tmp_path, *args, "--stop-at", "3")) == 0  # asked for: status 0, not Ctrl-C's 130
    assert "stopped at step 3 of 4" in capsys.readouterr().out
    assert [s for s, _ in checkpoints(tmp_path / "out")] == [2, 3]
    resume = ["--data", str(CORPUS), "--resume"]
    assert main(_cli(tmp_path, *resume, "--stop-at", "2")) == 2
    assert "--stop-at 2 must lie after the run's current step (3)" in capsys.readouterr().err
    assert main(_cli(tmp_path, *resume)) == 0
    assert "done at step 4 of 4" in capsys.readouterr().out
