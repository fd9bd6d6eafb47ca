"""Training as a contract: the same losses, gradients and AdamW step in every backend, and HF's numbers.

* every head (and an untied LM): losses and every parameter's gradient agree pairwise, with gradient
  checkpointing off and on, and the gradient names are exactly the checkpoint's (tied: no ``lm_head.weight``);
* HF transformers' PyTorch model gives the same losses and gradients on the same checkpoints (the oracle);
* one AdamW step agrees pairwise, and equals a numpy AdamW written here from the formula: biases and
  LayerNorm weights move by the Adam update alone, every other weight by the decay too;
* ``gpt2-multi conform --grads`` prints the table and exits 0.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from gpt2_multi import cli
from gpt2_multi.backends import available, get
from gpt2_multi.checkpoint import expected_shapes
from gpt2_multi.conformance import training as conf
from gpt2_multi.training import AdamWHyper, decays, keras_epsilon, objective

AVAILABLE = available()
CASES = {c.name: c for c in conf.training_cases()}
NEEDS_TWO = pytest.mark.skip(reason=f"needs two backends, {len(AVAILABLE)} available ({', '.join(AVAILABLE) or 'none'})")
PAIRS = [pytest.param(a, b, id=f"{a}~{b}") for a, b in itertools.combinations(AVAILABLE, 2)] or [
    pytest.param(None, None, id="pairs", marks=NEEDS_TWO)]
BACKEND_PARAMS = AVAILABLE or [pytest.param(None, id="backends", marks=pytest.mark.skip(reason="no backend installed"))]
GRAD_TOL = dict(atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``run(case, backend)``: the flat outputs of :func:`conf.run_backend` (computed once) and the checkpoint."""
    root = tmp_path_factory.mktemp("training")

    @functools.cache
    def path(case: str):
        return conf.write_checkpoint(CASES[case], root / case)

    @functools.cache
    def outputs(case: str, backend: str) -> dict[str, np.ndarray]:
        return conf.run_backend(backend, CASES[case], path(case))

    outputs.path = path
    return outputs


def _failures(rows):
    return [f"{r.key}: {r.detail or f'{r.max_abs_diff:.2e}'}" for r in rows if not r.passed]


# ---------------------------------------------------------------------------------- shared rules
def test_decay_rule():
    assert decays("transformer.h.0.attn.c_attn.weight") and decays("transformer.wte.weight") and decays("lm_head.weight")
    assert decays("score.weight") and decays("multiple_choice_head.summary.weight") and decays("wpe.weight")
    for name in ("transformer.h.0.attn.c_attn.bias", "transformer.h.3.ln_1.weight", "transformer.h.1.ln_2.weight",
                 "transformer.ln_f.weight", "transformer.h.0.ln_cross_attn.weight", "ln_f.bias", "classifier.bias"):
        assert not decays(name), name


def test_objective_and_keras_epsilon():
    assert objective(1.5) == 1.5 and objective(1.5, 0.25) == 1.75 and objective(None, 0.25) == 0.25
    with pytest.raises(ValueError, match="labels"):
        objective(None)
    hyper = AdamWHyper(eps=1e-6, betas=(0.9, 0.99))
    assert keras_epsilon(hyper) == pytest.approx(1e-6 * np.sqrt(0.01))


def test_a_missing_gradient_fails_the_comparison():
    a = {"loss": np.float64(1.0), "grad/x": np.ones(2), "grad/y": np.ones(2)}
    rows = conf.compare("lm", "a", a, "b", {"loss": np.float64(1.0), "grad/x": np.ones(2)})
    bad = [r for r in rows if not r.passed]
    assert [(r.key, r.detail) for r in bad] == [("grad/y", "missing in b")]
    shapes = {r.key: r for r in conf.compare("lm", "a", a, "b", {**a, "grad/x": np.ones(3)})}
    assert not shapes["grad/x"].passed and shapes["grad/y"].passed  # a shape mismatch fails


# ---------------------------------------------------------------------------------- across backends
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_names_are_the_checkpoints(run, case, backend):
    c = CASES[case]
    out = run(case, backend)
    names = {k.removeprefix("grad/") for k in out if k.startswith("grad/")}
    assert names == set(expected_shapes(c.config, c.architecture))
    assert ("lm_head.weight" in names) == (c.architecture in ("GPT2LMHeadModel", "GPT2DoubleHeadsModel")
                                           and not c.config.tie_word_embeddings)
    for name, shape in expected_shapes(c.config, c.architecture).items():
        assert out[f"grad/{name}"].shape == shape and out[f"grad/{name}"].dtype == np.float32, name
        assert out[f"step/{name}"].shape == shape, name
    assert set(out) >= {"loss", "ckpt/loss"} and (("mc_loss" in out) == (c.architecture == "GPT2DoubleHeadsModel"))


@pytest.mark.parametrize("a, b", PAIRS)
@pytest.mark.parametrize("case", list(CASES))
def test_losses_and_gradients_agree(run, case, a, b):
    rows = conf.compare(case, a, run(case, a), b, run(case, b))
    assert not _failures([r for r in rows if conf.kind_of(r.key) in ("loss", "grad")])


@pytest.mark.parametrize("a, b", PAIRS)
@pytest.mark.parametrize("case", list(CASES))
def test_one_adamw_step_agrees(run, case, a, b):
    rows = conf.compare(case, a, run(case, a), b, run(case, b))
    steps = [r for r in rows if conf.kind_of(r.key) == "step"]
    assert steps and not _failures(steps)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("case", ["lm", "double"])
def test_checkpointing_gives_the_same_gradients(run, case, backend):
    out = run(case, backend)
    for key in [k for k in out if not k.startswith(("ckpt/", "step/"))]:
        np.testing.assert_allclose(out[f"ckpt/{key}"], out[key], **GRAD_TOL, err_msg=key)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_the_model_still_works_after_training_calls(run, backend):
    """loss_and_grads leaves the model as it was (mode, checkpointing); adamw_step leaves it updated and usable."""
    c = CASES["lm"]
    ops = get(backend).ops
    model = ops.load(run.path("lm"), c.architecture)
    before = ops.forward(model, {"input_ids": c.inputs["input_ids"]}, {}, [])["logits"]
    ops.loss_and_grads(model, c.inputs, checkpointing=True)
    np.testing.assert_allclose(ops.forward(model, {"input_ids": c.inputs["input_ids"]}, {}, [])["logits"], before,
                               atol=1e-6, rtol=0)
    if backend == "pt":
        assert not model.training and not model.is_gradient_checkpointing
        assert all(p.grad is None for p in model.parameters())
    new = ops.adamw_step(model, c.inputs, conf.HYPER)
    losses, grads = ops.loss_and_grads(model, c.inputs)
    assert losses["loss"] < run("lm", backend)["loss"]  # one step downhill
    np.testing.assert_array_equal(ops.loss_and_grads(model, c.inputs)[1]["transformer.wte.weight"],
                                  grads["transformer.wte.weight"])
    assert set(new) == set(grads)


# ---------------------------------------------------------------------------------- HF oracle
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("case", list(CASES))
def test_hf_transformers_gives_the_same_losses_and_gradients(run, case, backend):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    c = CASES[case]
    model = getattr(transformers, c.architecture).from_pretrained(str(run.path(case)), attn_implementation="eager")
    model.eval()
    out = model(**{k: torch.from_numpy(np.asarray(v)) for k, v in c.inputs.items()})
    mc_loss = getattr(out, "mc_loss", None)
    (out.loss + mc_loss if mc_loss is not None else out.loss).backward()  # HF's own: sum the double heads' losses
    hf = {"loss": out.loss.item(), **({"mc_loss": mc_loss.item()} if mc_loss is not None else {})}
    hf.update({f"grad/{n}": p.grad.numpy() for n, p in model.named_parameters()})
    ours = run(case, backend)
    assert {k for k in ours if k.startswith("grad/")} == {k for k in hf if k.startswith("grad/")}
    for key, expected in hf.items():
        if key.startswith("grad/"):
            np.testing.assert_allclose(ours[key], expected, **GRAD_TOL, err_msg=key)
        else:
            assert ours[key] == pytest.approx(expected, abs=1e-5, rel=1e-5), key


# ---------------------------------------------------------------------------------- the AdamW formula
def _numpy_adamw(w: np.ndarray, g: np.ndarray, hyper: AdamWHyper, decay: bool) -> np.ndarray:
    """One AdamW step from zero moments, as Loshchilov & Hutter with PyTorch's epsilon (float64)."""
    w, g = w.astype(np.float64), g.astype(np.float64)
    b1, b2 = hyper.betas
    m, v = (1 - b1) * g, (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1), v / (1 - b2)
    w = w - hyper.lr * hyper.weight_decay * w if decay else w
    return w - hyper.lr * m_hat / (np.sqrt(v_hat) + hyper.eps)


@pytest.mark.parametrize("hyper", [AdamWHyper(), conf.HYPER], ids=["default", "conformance"])
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_adamw_step_is_the_formula_with_the_decay_mask(run, backend, hyper):
    c = CASES["lm"]
    ops = get(backend).ops
    model = ops.load(run.path("lm"), c.architecture)
    _, grads = ops.loss_and_grads(model, c.inputs)
    initial = conf.case_lib.random_tensors(c.config, c.architecture, c.seed)
    new = ops.adamw_step(model, c.inputs, hyper)
    for name in ("transformer.h.0.mlp.c_fc.bias", "transformer.h.1.ln_1.weight", "transformer.ln_f.bias",
                 "transformer.h.0.mlp.c_fc.weight", "transformer.wte.weight", "transformer.h.1.attn.c_proj.weight"):
        decay = decays(name)
        assert decay == name.endswith(("c_fc.weight", "wte.weight", "c_proj.weight")), name
        expected = _numpy_adamw(initial[name], grads[name], hyper, decay)
        np.testing.assert_allclose(new[name], expected, atol=1e-6, rtol=1e-6, err_msg=name)
        # the other choice of mask is visibly wrong: the decay term is far above the tolerance
        other = _numpy_adamw(initial[name], grads[name], hyper, not decay)
        assert np.max(np.abs(other - expected)) > 1e-5, name


# ---------------------------------------------------------------------------------- the CLI
def test_conform_grads_prints_the_table_and_exits_0(capsys):
    if len(AVAILABLE) < 2:
        pytest.skip(f"needs two backends, {len(AVAILABLE)} available")
    # the two quickest stacks (the flax ones compile each head's gradient); every pair runs in the tests above
    backends = sorted(AVAILABLE, key=lambda b: b == "flax")[:2]
    code = cli.main(["conform", "--grads", "--no-generation", "--backends", ",".join(backends)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.index("conformance:") < out.index("training conformance")  # after the forward grid's report
    assert out.count("PASSED") == 2
    pair = f"{backends[0]}~{backends[1]}"
    header = next(line for line in out.splitlines() if line.startswith("head"))
    assert pair in header
    for head in CASES:
        for what in ("loss", "grads", "ckpt grads", "adamw step"):
            assert any(line.startswith(head + " ") and f" {what} " in line for line in out.splitlines()), (head, what)
