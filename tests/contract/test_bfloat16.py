"""bfloat16: every stack rounds at the same points, on the trained embedded model ``gpt2-multi/tiny``.

Each stack loaded the way ``gpt2-multi conform --dtype bfloat16`` loads it (its registry ``ops.load``: bfloat16
weights and compute), on the trained model's conformance cases (a padding mask, a cache, a head mask):

* with the linear layers' biases at zero, one block's bfloat16 outputs (its attention probabilities, its cache,
  its output) are the same numbers in every stack: the embeddings, the LayerNorms (float32 inside, rounded
  once), the attention (scores and softmax in float32, probabilities rounded once) and the activation
  (float32 inside, rounded once) round at the same points. Only the last bits of float32 library functions
  (tanh, exp) and of accumulation orders may move a rounding, in a small fraction of the elements: at most 1% of
  each output (measured: 0.04%; when the stacks rounded at different points, 2 to 75%: PyTorch's and
  TensorFlow's probabilities 2%, their block outputs 30%, Flax's outputs against either 39 to 75%; with
  TensorFlow's BatchMatMul rounding partial sums of ``probs @ value``, 42% of its block outputs). Every stack
  rounds a linear layer's ``x @ W + b`` once; the biases are zero because PyTorch's bfloat16 CPU GEMM on a
  cached continuation's few rows still moved 1.8% of that block's outputs against the other two (measured on
  an AVX2 CPU; TensorFlow and Flax agree bit for bit there);
* with the real weights, the stacks agree within ``runner.TOLERANCES["bfloat16"]`` on every output;
* each stack's bfloat16 outputs lie within ``runner.BF16_FROM_FLOAT32`` (8 u, u = 2^-8) of the output's scale from
  its own float32 outputs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from contract_support import BACKEND_PARAMS, INSTALLED, one_torch_thread  # noqa: F401

from gpt2_multi.backends import get
from gpt2_multi.checkpoint import load_checkpoint, save_checkpoint
from gpt2_multi.conformance import runner
from gpt2_multi.conformance.cases import checkpoint_cases
from gpt2_multi.demo import DEFAULT_MODEL
from gpt2_multi.hub import resolve

#: the trained model's conformance cases run here: a left-padded batch, a cached continuation, a head mask
KINDS = ("left_pad", "past", "headmask_tokentype")
#: one block's outputs: its attention probabilities, its cache and its output (the next block's input)
FIRST_BLOCK = ("attentions.0", "past.0.key", "past.0.value", "hidden_states.1")
#: the largest fraction of each of one block's bfloat16 outputs that may differ between two stacks
MAX_DIFFERING = 0.01
#: each stack against its own float32 outputs: 8 u of each output's largest magnitude
FROM_FLOAT32 = runner.Tolerance(0.0, 0.0, runner.BF16_FROM_FLOAT32)
#: the linear layers' (GPT-2's Conv1D) biases
LINEAR_BIASES = (".c_attn.bias", ".c_proj.bias", ".c_fc.bias")


@functools.cache
def _trained() -> Path:
    return resolve(DEFAULT_MODEL)



@pytest.fixture(scope="session")
def without_linear_biases(tmp_path_factory) -> Path:
    """The trained model with every linear layer's bias at zero."""
    ckpt = load_checkpoint(_trained())
    tensors = {name: np.zeros_like(t) if name.endswith(LINEAR_BIASES) else np.asarray(t)
               for name, t in ckpt.tensors.items()}
    directory = tmp_path_factory.mktemp("tiny-without-linear-biases")
    save_checkpoint(directory, tensors, ckpt.config, architecture=ckpt.architecture)
    return directory


@functools.cache
def _cases(path: Path) -> tuple:
    return tuple(c for c in checkpoint_cases(path) if c.name.rsplit("/", 1)[-1] in KINDS)


@functools.cache
def _outputs(backend: str, path: Path, dtype: str) -> dict[str, dict[str, np.ndarray]]:
    """case name -> outputs, as the conformance runner computes them."""
    ops = get(backend).ops
    model = ops.load(path, "GPT2LMHeadModel", dtype)
    return {c.name: ops.forward(model, c.inputs, c.flags, c.past_chunks) for c in _cases(path)}


def _others(backend: str) -> list[str]:
    others = [b for b in INSTALLED if b != backend]
    if not others:
        pytest.skip("needs a second backend to compare with")
    return others


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_one_block_rounds_at_the_same_points_in_every_stack(backend, without_linear_biases):
    path = without_linear_biases
    ours = _outputs(backend, path, "bfloat16")
    for other in _others(backend):
        theirs = _outputs(other, path, "bfloat16")
        for case in _cases(path):
            for key in FIRST_BLOCK:
                a = runner._defined(case, key, np.asarray(ours[case.name][key], np.float64))
                b = runner._defined(case, key, np.asarray(theirs[case.name][key], np.float64))
                differing = float(np.mean(a != b))
                assert differing <= MAX_DIFFERING, (f"{case.name} {key}: {differing:.1%} of the bfloat16 values "
                                                    f"differ between {backend} and {other}")


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_the_stacks_agree_within_the_bfloat16_tolerance(backend):
    ours = _outputs(backend, _trained(), "bfloat16")
    for other in _others(backend):
        theirs = _outputs(other, _trained(), "bfloat16")
        for case in _cases(_trained()):
            rows = runner.compare(case, backend, ours[case.name], other, theirs[case.name], "bfloat16")
            failed = [(r.key, r.max_abs_diff, r.detail) for r in rows if not r.passed]
            assert rows and not failed, f"{case.name} {backend}~{other}: {failed}"


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_bfloat16_lies_within_the_stated_distance_of_float32(backend):
    low, high = _outputs(backend, _trained(), "bfloat16"), _outputs(backend, _trained(), "float32")
    for case in _cases(_trained()):
        assert set(low[case.name]) == set(high[case.name])
        for key in sorted(high[case.name]):
            a = runner._defined(case, key, np.asarray(low[case.name][key], np.float64))
            b = runner._defined(case, key, np.asarray(high[case.name][key], np.float64))
            diff, passed, _ = runner.compare_arrays(a, b, FROM_FLOAT32)
            scale = float(np.abs(b).max()) if b.size else 0.0
            assert passed, (f"{case.name} {key}: bfloat16 is {diff:.3g} from float32, "
                            f"{diff / scale / runner.BF16_UNIT_ROUNDOFF:.1f} u of its scale {scale:.3g}")
