"""The gpt2-multi command: convert, info, demo, errors, and `python -m gpt2_multi`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gpt2_multi.checkpoint import load_checkpoint
from gpt2_multi.cli import main

from fixture_cases import checkpoint_dir


@pytest.mark.parametrize("to", ["safetensors", "tf", "flax", "pt-bin"])
def test_convert_each_format(to, tmp_path, capsys):
    if to == "pt-bin":
        pytest.importorskip("torch")
    src = checkpoint_dir("double", "safetensors")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", to]) == 0
    out = capsys.readouterr()
    assert "wrote" in out.out and "config.json" in out.out
    assert "writing" in out.err  # the progress bar
    converted = load_checkpoint(tmp_path / "out")
    original = load_checkpoint(src)
    assert converted.format == to and converted.architecture == "GPT2DoubleHeadsModel"
    assert sorted(converted.tensors) == sorted(original.tensors)
    for name, value in original.tensors.items():
        np.testing.assert_array_equal(converted.tensors[name], value)


def test_convert_from_tf_h5_with_shards(tmp_path, capsys):
    assert main(["convert", str(checkpoint_dir("lm", "tf")), str(tmp_path / "o"), "--to", "safetensors",
                 "--max-shard-size", "40KB", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert (tmp_path / "o" / "model.safetensors.index.json").is_file()
    assert load_checkpoint(tmp_path / "o").num_parameters() == load_checkpoint(checkpoint_dir("lm", "tf")).num_parameters()


def test_info_text_and_json(capsys):
    assert main(["info", str(checkpoint_dir("seqcls", "safetensors"))]) == 0
    text = capsys.readouterr().out
    assert "GPT2ForSequenceClassification" in text
    assert "59,616" in text  # 59,520 body + 3 x 32 score (the fixture's sizes)
    assert "2 x 32, 4 heads" in text
    assert main(["info", "--json", str(checkpoint_dir("lm", "flax"))]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parameters"] == 1000 * 32 + 64 * 32 + 2 * (4 * 32 + 32 * 96 + 96 + 32 * 32 + 32 + 32 * 128 + 128 + 128 * 32 + 32) + 2 * 32
    assert data["formats"][0]["format"] == "flax" and data["dtypes"] == ["float32"]


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert main(["convert", str(tmp_path), str(tmp_path / "o"), "--to", "tf"]) == 2
    assert "holds no weights" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "a", "b", "--to", "onnx"])


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "gpt2_multi", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("gpt2-multi ")


def test_demo_runs_every_installed_backend_with_parity(capsys):
    from gpt2_multi import backends

    assert main(["demo", "--new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    ran = [b for b in backends.BACKENDS if backends.stack_available(b)]
    for b in ran:
        assert backends.get(b).label in out
    pairs = [line.split() for line in out.splitlines() if " vs " in line]
    assert len(pairs) == len(ran) * (len(ran) - 1) // 2
    for row in pairs:
        logit_diff, kv_diff = float(row[-2]), float(row[-1])
        assert 0 <= logit_diff < 1e-4 and 0 <= kv_diff < 1e-4, row
    if len(ran) >= 2:
        assert "greedy tokens identical in every backend: yes" in out


def test_demo_rejects_a_model_whose_vocabulary_is_too_small(capsys):
    assert main(["demo", "--model", str(checkpoint_dir("lm", "safetensors"))]) == 2
    assert "outside this model's vocabulary (vocab_size=1000)" in capsys.readouterr().err


def _generated_text(out: str, prompt: str) -> str:
    assert out.startswith(prompt)
    return out[len(prompt):].strip("\n")


def _greedy_by_hand(driver, prompt: np.ndarray, new_tokens: int) -> list[int]:
    """The oracle: argmax of cached forward steps (no generate(), no processors)."""
    step, state = driver.forward(prompt, None, max_length=prompt.shape[1] + new_tokens)
    tokens = []
    for _ in range(new_tokens):
        tokens.append(int(step.logits[0, -1].argmax()))
        step, state = driver.forward(np.array([[tokens[-1]]]), state)
    return tokens


def test_generate_streams_the_greedy_continuation(capsys, tmp_path):
    from gpt2_multi import backends
    from gpt2_multi.demo import DEMO_PROMPT, make_demo_checkpoint
    from gpt2_multi.tokenization import GPT2TokenizerFast

    ran = [b for b in backends.BACKENDS if backends.stack_available(b)]
    if not ran:
        pytest.skip("no backend installed")
    checkpoint = make_demo_checkpoint(tmp_path / "demo")
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    expected = _greedy_by_hand(backends.Driver(ran[0], checkpoint), np.array([tok.encode(DEMO_PROMPT)]), 6)
    for backend in ran:
        assert main(["generate", "--backend", backend, "--model", str(checkpoint), "--max-new-tokens", "6"]) == 0
        captured = capsys.readouterr()
        assert _generated_text(captured.out, DEMO_PROMPT) == tok.decode(expected)
        assert "6 tokens in" in captured.err and "tokens/s" in captured.err


def test_generate_sampling_is_seeded_and_backend_independent(capsys):
    from gpt2_multi import backends

    ran = [b for b in backends.BACKENDS if backends.stack_available(b)]
    if not ran:
        pytest.skip("no backend installed")
    texts = {}
    for backend in ran:
        for seed in ("1", "2"):
            assert main(["generate", "--backend", backend, "--do-sample", "--seed", seed, "--max-new-tokens", "5",
                         "--top-k", "20"]) == 0
            texts[backend, seed] = capsys.readouterr().out
    assert len({texts[b, "1"] for b in ran}) == 1  # one seed, one text, whichever backend
    assert texts[ran[0], "1"] != texts[ran[0], "2"]


def test_generate_errors(capsys):
    from gpt2_multi import backends

    missing = [b for b in backends.BACKENDS if not backends.framework_installed(b)]
    if missing:
        assert main(["generate", "--backend", missing[0]]) == 2
        assert f"pip install 'gpt2-multi[{backends.get(missing[0]).extra}]'" in capsys.readouterr().err
    ran = [b for b in backends.BACKENDS if backends.stack_available(b)]
    if not ran:
        pytest.skip("no backend installed")
    assert main(["generate", "--backend", ran[0], "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens must be >= 1" in capsys.readouterr().err
    assert main(["generate", "--backend", ran[0], "--max-new-tokens", "500"]) == 2
    assert "exceeds the model's n_positions=256" in capsys.readouterr().err
