"""Kill-safe writes (issue 16): SIGKILL at random points of save_checkpoint / convert never leaves a truncated
weights file, config or index under its final name, a reader ignores the temporaries left behind, and a rerun
succeeds (and removes them).

A child process saves a GPT-2 XL-width checkpoint (1 layer, ~0.45 GB) in a loop, alternating two contents
(every weight 1.0, then every weight 2.0): sharded safetensors and sharded pytorch_model.bin with
``save_checkpoint``, then ``convert`` of the safetensors to tf_model.h5 and flax_model.msgpack. The parent kills
it at seeded random moments and checks after each kill that each directory is either without loadable weights
or loads completely with one content. Training checkpoints (a temporary directory renamed into place, see
``training/run.py``) are not exercised here: they write through the same ``save_checkpoint``.
"""

from __future__ import annotations

import json
import os
import random
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
    """A sharded save removes the old index first and the old save's unused files last; a single-file save
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
