"""Kill-safe writes (issue 16): SIGKILL at random points of save_checkpoint / convert never leaves a truncated
weights file, config or index under its final name, a reader ignores the temporaries left behind, and a rerun
succeeds (and removes them).

A child process saves a GPT-2 XL-width checkpoint (1 layer, ~0.45 GB) in a loop, alternating two contents
(every weight 1.0, then every weight 2.0): sharded safetensors and sharded pytorch_model.bin with
``save_checkpoint``, then ``convert`` of the safetensors to tf_model.h5 and flax_model.msgpack. The parent kills
it at seeded random moments and checks after each kill that each directory is either without loadable weights
or loads completely with one content.

``gpt2-multi train``'s checkpoints (a temporary directory renamed into place, old ones set aside under a temporary
name before they are deleted: ``training/run.py``) are killed the same way, four times, and the run resumed each
time: see :func:`test_sigkill_during_training_checkpoints_then_resume_matches`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import itertools, sys
from pathlib import Path
import numpy as np
import torch  # before the loop: the first save should not wait for the import
from gpt2_multi import GPT2Config
from gpt2_multi.checkpoint import convert, expected_shapes, save_checkpoint
root = Path(sys.argv[1])
once = len(sys.argv) > 2
config = GPT2Config(n_layer=1, n_embd=1600, n_head=25, vocab_size=50257, n_positions=1024)
shapes = expected_shapes(config, "GPT2LMHeadModel")
for i in itertools.count():
    value = np.float32(1.0 + i % 2)
    tensors = {name: np.full(shape, value, np.float32) for name, shape in shapes.items()}
    save_checkpoint(root / "st", tensors, config, max_shard_size="150MB")
    save_checkpoint(root / "bin", tensors, config, format="pt-bin", max_shard_size="150MB")
    del tensors
    convert(root / "st", root / "h5", "tf")
    convert(root / "st", root / "msgpack", "flax")
    print("done", i, flush=True)
    if once:
        break
"""

FORMATS = {"st": "safetensors", "bin": "pt-bin", "h5": "tf", "msgpack": "flax"}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def check_directory(directory: Path) -> float | None:
    """The one value every weight holds, or None when the directory holds no loadable weights yet."""
    from gpt2_multi.checkpoint import CheckpointError, MissingWeightsError, find_weights, load_checkpoint

    if not directory.is_dir():
        return None
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (directory / name).exists():
            json.loads((directory / name).read_text())  # never truncated
    try:
        fmt, _ = find_weights(directory)
    except MissingWeightsError:
        return None
    assert fmt == FORMATS[directory.name]
    if not (directory / "config.json").exists():
        with pytest.raises(CheckpointError, match="no config.json"):
            load_checkpoint(directory)
        return None
    ckpt = load_checkpoint(directory)
    values = set()
    for name, array in ckpt.tensors.items():
        array = np.asarray(array, np.float32)
        first = float(array.reshape(-1)[0])
        assert np.all(array == first), f"{directory.name}: {name} mixes contents"
        values.add(first)
    assert len(values) == 1 and values <= {1.0, 2.0}, f"{directory.name}: tensors from different saves {values}"
    return values.pop()


def test_sigkill_at_random_points_leaves_old_or_new_files(tmp_path):
    pytest.importorskip("torch")
    rng = random.Random(16)
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(2.0, 7.0))
        if proc.poll() is not None:
            pytest.fail(f"the writer died on its own: {proc.stderr.read().decode()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
        for sub in FORMATS:
            check_directory(tmp_path / sub)
    assert kills == 5
    leftovers = [p for sub in FORMATS if (tmp_path / sub).is_dir() for p in (tmp_path / sub).glob(".*.tmp")]

    # A rerun completes; it removes the dead writers' temporaries in the directories it writes.
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), "once"], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for sub in FORMATS:
        assert check_directory(tmp_path / sub) == 1.0
        assert not list((tmp_path / sub).glob(".*.tmp")), f"{sub}: temporaries of killed writers left"
    print(f"{len(leftovers)} temporaries were left by the kills")


def test_reader_ignores_a_leftover_temporary_and_a_save_removes_it(tmp_path):
    from gpt2_multi import GPT2Config
    from gpt2_multi.checkpoint import load_checkpoint, save_checkpoint
    from gpt2_multi.io_utils import atomic_path

    config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_positions=4)
    from gpt2_multi.checkpoint import expected_shapes

    tensors = {k: np.ones(s, np.float32) for k, s in expected_shapes(config, "GPT2LMHeadModel").items()}
    save_checkpoint(tmp_path, tensors, config)
    # what a killed writer leaves: a temporary named after a process that is gone, here a truncated file
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.safetensors.{dead.pid}.abc123.tmp"
    stale.write_bytes(b"\x00" * 10)
    live = tmp_path / f".model.safetensors.{os.getpid()}.def456.tmp"  # a save in progress beside ours
    live.write_bytes(b"\x00" * 10)
    assert load_checkpoint(tmp_path).tensors.keys() == load_checkpoint(tmp_path / "model.safetensors",
                                                                       config=config).tensors.keys()
    save_checkpoint(tmp_path, tensors, config)
    assert not stale.exists() and live.exists()
    with atomic_path(tmp_path / "x.json") as tmp:
        assert f".x.json.{os.getpid()}." in tmp.name


def test_sharded_resave_replaces_every_old_file(tmp_path):
    """A sharded save writes its index last and removes the old save's unused files after it; a single-file save
    removes the old shards and index."""
    from gpt2_multi import GPT2Config
    from gpt2_multi.checkpoint import expected_shapes, find_weights, save_checkpoint

    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=500, n_positions=16)
    tensors = {k: np.ones(s, np.float32) for k, s in expected_shapes(config, "GPT2LMHeadModel").items()}
    for fmt, index in (("safetensors", "model.safetensors.index.json"), ("pt-bin", "pytorch_model.bin.index.json")):
        if fmt == "pt-bin":
            pytest.importorskip("torch")
        d = tmp_path / fmt
        save_checkpoint(d, tensors, config, format=fmt, max_shard_size=20_000)
        many = find_weights(d, fmt)[1]
        save_checkpoint(d, tensors, config, format=fmt, max_shard_size=60_000)
        fewer = find_weights(d, fmt)[1]
        assert 1 < len(fewer) < len(many)
        assert sorted(p.name for p in d.iterdir() if p.name != "config.json") == sorted([index, *(p.name for p in fewer)])
        save_checkpoint(d, tensors, config, format=fmt)
        assert len(find_weights(d, fmt)[1]) == 1 and not (d / index).exists()
        assert sorted(p.name for p in d.iterdir()) == sorted(["config.json", find_weights(d, fmt)[1][0].name])


@pytest.mark.parametrize("same_count", [False, True], ids=["other-shard-names", "same-shard-names"])
def test_a_sharded_resave_that_dies_leaves_the_old_save_loadable(tmp_path, monkeypatch, same_count):
    """A re-save that dies after its first new shard (here an exception; the kill test covers SIGKILL) leaves the
    previous save loadable with its own values: its index stays until the new one replaces it, and where the new
    shards' names collide with indexed ones they are written under temporary names first. A rerun then succeeds."""
    from gpt2_multi import GPT2Config
    from gpt2_multi.checkpoint import (
        expected_shapes,
        find_weights,
        load_checkpoint,
        safetensors_io,
        save_checkpoint,
    )

    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=500, n_positions=16)
    shapes = expected_shapes(config, "GPT2LMHeadModel")
    old = {k: np.full(s, 1.0, np.float32) for k, s in shapes.items()}
    new = {k: np.full(s, 2.0, np.float32) for k, s in shapes.items()}
    save_checkpoint(tmp_path, old, config, max_shard_size=20_000)
    shard_count = len(find_weights(tmp_path)[1])
    real_save, calls = safetensors_io.save, []

    def dies_after_one_shard(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(args[0])
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors_io, "save", dies_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, new, config, max_shard_size=20_000 if same_count else 60_000)
    monkeypatch.setattr(safetensors_io, "save", real_save)
    assert calls and calls[0].name.startswith(".") == same_count  # colliding names: the first shard was staged
    loaded = load_checkpoint(tmp_path)
    assert len(find_weights(tmp_path)[1]) == shard_count
    assert {float(v.min()) for v in loaded.tensors.values()} == {1.0} == {float(v.max()) for v in loaded.tensors.values()}
    save_checkpoint(tmp_path, new, config, max_shard_size=20_000 if same_count else 60_000)
    assert {float(v.min()) for v in load_checkpoint(tmp_path).tensors.values()} == {2.0}
    # what is left is the staged shard of this (live) process: readers ignore it, and once its process is gone a
    # later save removes it (test_reader_ignores_a_leftover_temporary_and_a_save_removes_it)
    assert all(f".{os.getpid()}." in p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------ gpt2-multi train's checkpoints
CORPUS = ROOT / "tests" / "fixtures" / "train" / "corpus.txt"
TRAIN_CONFIG = json.dumps({"vocab_size": 50257, "n_positions": 64, "n_embd": 16, "n_layer": 2, "n_head": 2,
                           "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0})
TRAIN_STEPS = 12
TRAIN_RUN = dict(steps=TRAIN_STEPS, batch_size=4, seq_len=32, lr=1e-2, eval_every=6, eval_windows=8, seed=3)

# Run as the killed child: `gpt2-multi train`; with KILL_IN_PRUNE set, the child kills itself (SIGKILL) in the middle
# of removing an old checkpoint (beyond --keep): two files deleted, the rest not yet.
TRAIN_CHILD = r"""
import os, shutil, signal, sys
from pathlib import Path
if os.environ.get("KILL_IN_PRUNE"):
    rmtree = shutil.rmtree
    def dying_rmtree(path, *args, **kwargs):
        frame, callers = sys._getframe(1), set()
        while frame is not None:
            callers.add(frame.f_code.co_name)
            frame = frame.f_back
        if "save_checkpoint_dir" in callers and (Path(path) / "trainer_state.json").is_file():
            for name in ("model.safetensors", "optimizer.safetensors"):
                (Path(path) / name).unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        return rmtree(path, *args, **kwargs)
    shutil.rmtree = dying_rmtree
from gpt2_multi.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _train_argv(out: Path, resume: bool) -> list[str]:
    argv = ["train", "--backend", "pt", "--data", str(CORPUS), "--out", str(out), "--save-every", "1", "--keep", "2",
            "--no-progress"]
    if resume:
        return [*argv, "--resume"]
    argv += ["--config", TRAIN_CONFIG]
    for key, value in TRAIN_RUN.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def check_training_output(out: Path) -> int:
    """Every ``checkpoint-*`` under ``out`` is complete and every file under a final name parses; returns the
    newest checkpoint's step (0 when there is none)."""
    from gpt2_multi.checkpoint import load_checkpoint, safetensors_io

    newest = 0
    if not out.is_dir():
        return newest
    for directory in sorted(out.glob("checkpoint-*")):
        step = int(directory.name.split("-", 1)[1])
        for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
                     "special_tokens_map.json"):
            json.loads((directory / name).read_text())
        assert (directory / "merges.txt").read_text().startswith("#version")
        state = json.loads((directory / "trainer_state.json").read_text())
        assert state["step"] == step and [h["step"] for h in state["history"]] == list(range(1, step + 1))
        weights = load_checkpoint(directory).tensors
        moments = safetensors_io.load(directory / "optimizer.safetensors")
        names = {k for k in weights if k != "lm_head.weight"}  # the tied head has no moments of its own
        assert set(moments) == {f"exp_avg.{k}" for k in names} | {f"exp_avg_sq.{k}" for k in names}, directory
        assert all(np.isfinite(np.asarray(v)).all() for v in weights.values())
        newest = max(newest, step)
    # the final model (written at the end of a run) under its final names: old, new or absent, never truncated
    for name in ("config.json", "generation_config.json", "tokenizer.json", "vocab.json"):
        if (out / name).exists():
            json.loads((out / name).read_text())
    if (out / "model.safetensors").exists():
        load_checkpoint(out)
    return newest


def test_sigkill_during_training_checkpoints_then_resume_matches(tmp_path):
    """``gpt2-multi train --backend pt`` checkpointing every step is SIGKILLed four times, at seeded random delays: in
    start-up; while a checkpoint's temporary directory is being filled; in the middle of deleting an old checkpoint
    (beyond ``--keep``: the child kills itself there); somewhere in the step or checkpoint after a new one appears.
    Each restart resumes from the newest complete checkpoint (or starts afresh while there is none). After every
    kill each ``checkpoint-<step>`` is complete; a leftover temporary is never resumed from, even one that looks
    like a newer complete checkpoint; the last ``--resume`` finishes the run with the loss curve and weights of an
    uninterrupted run (PyTorch resumes bit-exactly: compared within 1e-5). About 35 s on 2 idle cores."""
    pytest.importorskip("torch")
    from gpt2_multi.checkpoint import load_checkpoint
    from gpt2_multi.training.run import TrainSettings, checkpoints, train

    out = tmp_path / "killed"
    rng = random.Random(16)
    newest = 0
    plan = ["startup", "in-checkpoint-write", "prune", "after-checkpoint"]
    left: list[list[str]] = []
    for kind in plan:
        env = {**_env(), "KILL_IN_PRUNE": "1"} if kind == "prune" else _env()
        before = set(out.glob(".checkpoint-*.tmp"))  # a killed run's, removed by the child as it starts
        proc = subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, *_train_argv(out, resume=newest > 0)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if kind == "startup":
                time.sleep(rng.uniform(0.5, 6.0))
            elif kind == "after-checkpoint":  # a kill somewhere in the next step or its checkpoint
                _wait_for(proc, lambda n=newest: any(s > n for s, _ in checkpoints(out)))
                time.sleep(rng.uniform(0.0, 1.0))
            elif kind == "in-checkpoint-write":  # a kill while a checkpoint's temporary directory is being filled
                _wait_for(proc, lambda n=newest, old=before: any(int(p.name.split(".")[1][len("checkpoint-"):]) > n
                                                                 for p in set(out.glob(".checkpoint-*.tmp")) - old))
                time.sleep(rng.uniform(0.0, 0.3))
            else:  # the child kills itself in the middle of its first prune
                proc.wait(timeout=120)
                assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
            if kind != "prune":
                if proc.poll() is not None:
                    pytest.fail(f"the run ended on its own ({proc.returncode}): {proc.stderr.read().decode()[-3000:]}")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        newest = check_training_output(out)
        assert newest < TRAIN_STEPS
        left.append(sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.is_dir() else [])

    # A leftover temporary that looks like a newer, complete checkpoint is not resumed from (and is removed).
    assert newest > 0, "no checkpoint was written before the last kill"
    decoy = out / f".checkpoint-{newest + 1}.decoy.tmp"
    shutil.copytree(out / f"checkpoint-{newest}", decoy)
    state = json.loads((decoy / "trainer_state.json").read_text())
    (decoy / "trainer_state.json").write_text(json.dumps({**state, "step": newest + 1}))
    done = subprocess.run([sys.executable, "-c", TRAIN_CHILD, *_train_argv(out, resume=True)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"steps {newest}..{TRAIN_STEPS}" in done.stderr, done.stderr[-3000:]
    assert check_training_output(out) == TRAIN_STEPS
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporaries of killed runs left"

    # The same run, uninterrupted (checkpoints do not change the curve, so only the last one is written).
    reference = train(TrainSettings(backend="pt", data=str(CORPUS), out=str(tmp_path / "reference"),
                                    config=TRAIN_CONFIG, save_every=TRAIN_STEPS, progress=False, **TRAIN_RUN))
    state = json.loads((out / f"checkpoint-{TRAIN_STEPS}" / "trainer_state.json").read_text())
    np.testing.assert_allclose([h["loss"] for h in state["history"]], [h["loss"] for h in reference.history],
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose([e["loss"] for e in state["evals"]], [e["loss"] for e in reference.evals],
                               rtol=0, atol=1e-5)
    ours, theirs = load_checkpoint(out).tensors, load_checkpoint(reference.out).tensors
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-5, err_msg=name)
    print("temporaries after each kill (removed by the next run):",
          "; ".join(f"{kind}: {names}" for kind, names in zip(plan, left)))


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended on its own ({proc.returncode}): {proc.stderr.read().decode()[-3000:]}")
        assert time.monotonic() < deadline, f"nothing happened in {timeout} s"
        time.sleep(0.01)


def test_a_kill_between_setting_a_checkpoint_aside_and_renaming_its_replacement_in_restores_it(tmp_path):
    """Writing a step again sets the old checkpoint-<step> aside, then renames the new one in. Killed in between,
    the next run's clean-up puts the old one back (it is complete); a checkpoint set aside for pruning, possibly
    half deleted, is removed, never restored."""
    from gpt2_multi.training import run

    out = tmp_path / "out"
    for step in (3, 4):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / run.STATE_FILE).write_text(json.dumps({"step": step}))
    replaced = run._set_aside(out / "checkpoint-4", "replaced")  # ... and the process dies here
    pruned = run._set_aside(out / "checkpoint-3", "pruned")
    assert [s for s, _ in run.checkpoints(out)] == []
    run._remove_stale_temporaries(out)
    assert [s for s, _ in run.checkpoints(out)] == [4]
    assert json.loads((out / "checkpoint-4" / run.STATE_FILE).read_text()) == {"step": 4}
    assert not replaced.exists() and not pruned.exists() and not (out / "checkpoint-3").exists()
