"""The trained model that ships in the package, ``gpt2-multi/tiny``: loads by name, offline, in every backend
and both tokenizers; agrees across backends; and the demo that runs it prints no framework log noise."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from gpt2_multi import GPT2Config, GPT2Tokenizer, GPT2TokenizerFast, backends, hub
from gpt2_multi.cli import main
from gpt2_multi.demo import DEFAULT_MODEL, DEMO_PROMPT, HELDOUT_FILE

INSTALLED = [b for b in backends.BACKENDS if backends.stack_available(b)]
NOISE_MARKERS = ("I0000", "E0000", "W0000", "absl::InitializeLog", "oneDNN custom operations", "cuInit",
                 "Could not find cuda drivers", "rebuild TensorFlow")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-cache"))  # nothing cached either: the package alone


def test_the_name_resolves_to_the_package_and_its_files_are_complete():
    directory = hub.resolve(DEFAULT_MODEL)
    assert directory.parent.name == "data" and directory.parent.parent.name == "gpt2_multi"
    for name in ("config.json", "generation_config.json", "model.safetensors", HELDOUT_FILE, "training.json",
                 "README.md"):
        assert (directory / name).is_file(), name
    assert (directory / "model.safetensors").stat().st_size < 25_000_000
    config = GPT2Config.from_pretrained(DEFAULT_MODEL)
    assert (config.vocab_size, config.n_layer, config.n_embd) == (50257, 4, 128)


@pytest.mark.parametrize("cls", [GPT2Tokenizer, GPT2TokenizerFast])
def test_both_tokenizers_load_by_name(cls):
    tok = cls.from_pretrained(DEFAULT_MODEL)
    gpt2 = cls.from_pretrained("gpt2")
    text = "The function returns a new list."
    assert tok.encode(text) == gpt2.encode(text) == [464, 2163, 5860, 257, 649, 1351, 13]
    assert tok.model_max_length == 256 and gpt2.model_max_length == 1024  # the model's context, not GPT-2's


def _lm_class(backend: str):
    return backends.get(backend).model_class("GPT2LMHeadModel")


@pytest.mark.parametrize("backend", INSTALLED)
def test_every_backend_loads_it_by_name_in_float32(backend):
    model = _lm_class(backend).from_pretrained(DEFAULT_MODEL)
    driver = backends.Driver(backend, hub.resolve(DEFAULT_MODEL))
    step, _ = driver.forward(np.array([[464, 2163, 5860]]))
    assert step.logits.dtype == np.float32 and step.logits.shape == (1, 3, 50257)
    assert model.config.n_embd == 128


@pytest.fixture(scope="module")
def heldout_windows():
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    ids = np.array(tok.encode((hub.resolve(DEFAULT_MODEL) / HELDOUT_FILE).read_text(encoding="utf-8")))
    return ids[: 4 * 128].reshape(4, 128)


@pytest.mark.skipif(len(INSTALLED) < 2, reason="needs two backends")
def test_the_trained_model_agrees_across_backends(heldout_windows):
    results = {}
    for b in INSTALLED:
        driver = backends.Driver(b, hub.resolve(DEFAULT_MODEL))
        loss = driver.lm_loss(heldout_windows)
        logits = driver.forward(heldout_windows[:1, :64])[0].logits
        gen = driver.generate(heldout_windows[:1, :16], max_new_tokens=12, do_sample=False, eos_token_id=None,
                              pad_token_id=0).sequences[:, 16:28]
        results[b] = loss, logits, gen
    ref_loss, ref_logits, ref_gen = results[INSTALLED[0]]
    assert math.exp(ref_loss) < 120  # trained: far below the uniform guess's 50257
    for b in INSTALLED[1:]:
        loss, logits, gen = results[b]
        assert loss == pytest.approx(ref_loss, abs=1e-4), b
        np.testing.assert_allclose(logits, ref_logits, atol=2e-4, err_msg=b)  # trained logits are larger than random ones
        np.testing.assert_array_equal(gen, ref_gen, err_msg=b)


def test_the_recorded_training_matches_the_model():
    record = json.loads((hub.resolve(DEFAULT_MODEL) / "training.json").read_text())
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    heldout = tok.encode((hub.resolve(DEFAULT_MODEL) / HELDOUT_FILE).read_text(encoding="utf-8"))
    assert len(heldout) == record["data"]["heldout_tokens"] == 28964  # the decoded text re-encodes to those tokens
    assert record["evals"][-1]["perplexity"] == pytest.approx(56.617, abs=1e-3)  # the README's figure
    assert record["name"] == DEFAULT_MODEL and record["step"] == record["run"]["steps"]
    losses = [e["loss"] for e in record["evals"]]
    assert losses == sorted(losses, reverse=True)  # the held-out loss fell at every evaluation


def test_info_describes_it(capsys):
    assert main(["info", DEFAULT_MODEL]) == 0
    out = capsys.readouterr().out
    assert "GPT2LMHeadModel" in out and "float16" in out and "trained" in out and "Python documentation" in out


def _demo(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    return subprocess.run([sys.executable, "-m", "gpt2_multi", "demo", "--new-tokens", "6", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_the_demo_speaks_without_framework_noise():
    proc = _demo()
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    for marker in NOISE_MARKERS:
        assert marker not in both, marker
    assert proc.stderr.strip() == ""
    continuations = [line.split("\u2192", 1)[1] for line in proc.stdout.splitlines() if f"{DEMO_PROMPT}\u2192" in line]
    assert len(continuations) == len(INSTALLED) and len(set(continuations)) == 1
    assert "held-out perplexity" in proc.stdout and "compile s" in proc.stdout and "decode s" in proc.stdout
    if len(INSTALLED) >= 2:
        assert "greedy tokens identical in every backend: yes" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None or platform.machine() not in ("x86_64", "AMD64"),
                    reason="the log lines checked are TensorFlow's on x86")
def test_verbose_lets_the_framework_logs_through():
    proc = _demo("--verbose", "--backends", "tf")
    assert proc.returncode == 0, proc.stderr
    # which lines TensorFlow logs depends on the CPU ("oneDNN custom operations" with AVX-512, "rebuild
    # TensorFlow" with AVX2 only); the quiet demo above shows none of them
    assert any(marker in proc.stderr for marker in NOISE_MARKERS), proc.stderr[-2000:]
