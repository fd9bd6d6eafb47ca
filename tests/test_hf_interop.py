"""Files we write load in HF transformers 4.x as its own (the `dev` extra installs it as an oracle).

HF is only an oracle here: the package never imports it. Each test writes a
checkpoint with our writer from HF's fixture, loads it with HF's class for the
format, and compares HF's outputs with the golden outputs HF produced originally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpt2_multi.checkpoint import load_checkpoint, save_checkpoint

from fixture_cases import HEAD_ARCHITECTURES, checkpoint_dir, golden_case

transformers = pytest.importorskip("transformers", reason="HF transformers is the interop oracle (pip install -e '.[dev]')")

# A case per head whose inputs need no labels or cache, for a direct comparison.
PLAIN_CASES = {"lm": "lm_plain", "base": "base_plain", "double": "double_heads", "seqcls": "seqcls",
               "tokcls": "tokcls", "qa": "qa"}
MAIN_OUTPUT = {"lm": "logits", "base": "last_hidden_state", "double": "mc_logits", "seqcls": "logits",
               "tokcls": "logits", "qa": "start_logits"}
CALL_ARGS = ("input_ids", "attention_mask", "mc_token_ids")


@pytest.mark.parametrize("fmt", ["safetensors", "pt-bin"])
@pytest.mark.parametrize("head", sorted(PLAIN_CASES))
def test_hf_pytorch_loads_what_we_write(head, fmt, tmp_path):
    torch = pytest.importorskip("torch")
    source = load_checkpoint(checkpoint_dir(head, "safetensors"))
    save_checkpoint(tmp_path, source.tensors, source.config, format=fmt)
    cls = getattr(transformers, HEAD_ARCHITECTURES[head])
    model, info = cls.from_pretrained(tmp_path, output_loading_info=True, attn_implementation="eager")
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    case = golden_case(PLAIN_CASES[head])
    kwargs = {k: torch.from_numpy(v) for k, v in case.inputs.items() if k in CALL_ARGS}
    with torch.no_grad():
        out = model.eval()(**kwargs)
    key = MAIN_OUTPUT[head]
    np.testing.assert_allclose(getattr(out, key).numpy(), case.expected[key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head", ["lm", "base"])
def test_hf_flax_loads_what_we_write(head, tmp_path):
    pytest.importorskip("flax")
    source = load_checkpoint(checkpoint_dir(head, "safetensors"))
    save_checkpoint(tmp_path, source.tensors, source.config, format="flax")
    cls = getattr(transformers, "Flax" + HEAD_ARCHITECTURES[head])
    model = cls.from_pretrained(tmp_path)
    case = golden_case(PLAIN_CASES[head])
    out = model(case.inputs["input_ids"])
    key = MAIN_OUTPUT[head]
    np.testing.assert_allclose(np.asarray(getattr(out, key)), case.expected[key], atol=1e-4, rtol=1e-4)


def test_hf_tensorflow_loads_what_we_write(tmp_path):
    """HF's TF classes need Keras 2 (tf-keras); they run in a subprocess so Keras 3 in this process is untouched."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras", reason="HF's TF classes need tf-keras (part of the dev extra)")
    jobs = []
    for head in ("lm", "base", "double", "seqcls"):
        source = load_checkpoint(checkpoint_dir(head, "safetensors"))
        out = tmp_path / head
        save_checkpoint(out, source.tensors, source.config, format="tf")
        case = golden_case(PLAIN_CASES[head])
        np.savez(out / "inputs.npz", **{k: v for k, v in case.inputs.items() if k in CALL_ARGS})
        jobs.append({"dir": str(out), "cls": "TF" + HEAD_ARCHITECTURES[head], "key": MAIN_OUTPUT[head]})
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import transformers
        results = {}
        for job in json.loads(sys.argv[1]):
            model = getattr(transformers, job["cls"]).from_pretrained(job["dir"])
            inputs = dict(np.load(job["dir"] + "/inputs.npz"))
            out = model(**inputs, training=False)
            np.save(job["dir"] + "/out.npy", np.asarray(getattr(out, job["key"])))
        """
    )
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", script, json.dumps(jobs)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for head, job in zip(("lm", "base", "double", "seqcls"), jobs):
        got = np.load(os.path.join(job["dir"], "out.npy"))
        np.testing.assert_allclose(got, golden_case(PLAIN_CASES[head]).expected[job["key"]], atol=1e-4, rtol=1e-4, err_msg=head)
