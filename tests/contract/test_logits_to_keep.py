"""``logits_to_keep`` (HF 4.57's ``GPT2LMHeadModel`` argument) as a contract, in every backend:

* an int ``k`` gives the logits of the last ``k`` positions (0, and ``k >= T``, all of them), a 1-D index array
  those of its positions (negative ones from the end): rows of the full forward's logits, shaped as HF shapes
  them, equal to HF transformers' own model's (PyTorch is HF's contract; TensorFlow and Flax extend HF's
  classes, which lack the argument, with the same semantics); on a cached call too;
* with ``labels`` HF's loss pairs the kept logits with the shifted labels one to one: keeping every position
  gives HF's loss, keeping fewer raises (HF: a ValueError from its cross-entropy);
* bad values raise the shared errors, each an instance of the exception HF raises for it (where HF raises);
* ``generate`` applies the LM head to one position per row, the prompt's prefill included, on every decode
  path (eager and compiled): a spy on each stack's head projection sees every input it gets.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from contract_support import (  # noqa: F401
    BACKEND_PARAMS,
    call,
    has_static_cache,
    load,
    numpy,
    one_torch_thread,
    prefill,
    write_checkpoint,
)
from test_generation import PATHS

from gpt2_multi.backends import get
from gpt2_multi.validation import InputError, InputIndexError

ATOL = 1e-6  # kept rows against the same stack's full logits
ATOL_HF = 1e-5  # against HF transformers (another framework's float32 for TensorFlow and Flax)
B, T = 2, 7
#: (logits_to_keep, the rows of the full logits it keeps): counts, a count past T, an index array
KEEPS = [(0, slice(None)), (1, slice(-1, None)), (3, slice(-3, None)), (T + 2, slice(None)),
         (np.array([0, 4, -1, 2]), [0, 4, T - 1, 2])]
KEEP_IDS = ["0", "1", "3", "past-T", "indices"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("logits-to-keep") / "lm", "lm")


@pytest.fixture(scope="module")
def hf_model(checkpoint):
    transformers = pytest.importorskip("transformers", reason="HF transformers is the oracle")
    transformers.logging.set_verbosity_error()
    return transformers.GPT2LMHeadModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()


def _hf(hf_model, ids: np.ndarray, **kwargs):
    """HF's output (or the exception it raises) for numpy ``ids`` and ``kwargs`` (arrays become tensors)."""
    import torch

    args = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with torch.no_grad():
        return hf_model(input_ids=torch.from_numpy(ids), **args)


def _ids(batch: int = B, length: int = T) -> np.ndarray:
    return np.random.default_rng(7).integers(1, 1000, size=(batch, length))


def _assert_close(got: np.ndarray, expected: np.ndarray, atol: float, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0, err_msg=what)


# ------------------------------------------------------------------------------------------ the kept logits
@pytest.mark.parametrize(("keep", "rows"), KEEPS, ids=KEEP_IDS)
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_kept_logits_are_the_full_logits_rows(backend, keep, rows, checkpoint, loaded):
    model = loaded(backend, checkpoint, "lm")
    ids = _ids()
    full = numpy(backend, call(backend, model, input_ids=ids).logits)
    got = numpy(backend, call(backend, model, input_ids=ids, logits_to_keep=keep).logits)
    _assert_close(got, full[:, rows], ATOL, "the full forward's rows")


@pytest.mark.parametrize(("keep", "rows"), KEEPS, ids=KEEP_IDS)
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_kept_logits_are_hfs(backend, keep, rows, checkpoint, loaded, hf_model):
    model = loaded(backend, checkpoint, "lm")
    ids = _ids()
    got = numpy(backend, call(backend, model, input_ids=ids, logits_to_keep=keep).logits)
    _assert_close(got, _hf(hf_model, ids, logits_to_keep=keep).logits.numpy(), ATOL_HF, "HF transformers' logits")


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_a_cached_call_keeps_the_new_tokens_last_logits(backend, checkpoint, loaded):
    model = loaded(backend, checkpoint, "lm")
    ids = _ids()
    full = numpy(backend, call(backend, model, input_ids=ids).logits)
    past = prefill(backend, model, ids[:, :4], max_length=T)
    new = ids[:, 4:]
    if has_static_cache(model):  # HF's Flax API: explicit positions, a mask over every cache position
        kwargs = {"attention_mask": np.ones((B, T), np.int64), "position_ids": np.broadcast_to(np.arange(4, T), new.shape).copy()}
    else:
        kwargs = {"use_cache": True}
    got = numpy(backend, call(backend, model, input_ids=new, past_key_values=past, logits_to_keep=1, **kwargs).logits)
    _assert_close(got, full[:, -1:], 1e-5, "the full forward's last row")


# ------------------------------------------------------------------------------------------ with labels
@pytest.mark.parametrize("keep", [T + 2, np.array([3, 0, 6, 1, 5, 2, 4])], ids=["past-T", "permuted"])
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_keeping_every_position_gives_hfs_loss(backend, keep, checkpoint, loaded, hf_model):
    model = loaded(backend, checkpoint, "lm")
    ids = _ids()
    got = float(numpy(backend, call(backend, model, input_ids=ids, labels=ids, logits_to_keep=keep).loss))
    expected = float(_hf(hf_model, ids, labels=ids, logits_to_keep=keep).loss)
    assert abs(got - expected) < ATOL_HF, (got, expected)


# ------------------------------------------------------------------------------------------ bad values
#: (name, call arguments besides input_ids, our exception, its message)
BAD = [
    ("negative", {"logits_to_keep": -1}, InputError, r"logits_to_keep=-1 is negative"),
    ("index-past-the-end", {"logits_to_keep": np.array([0, T])}, InputIndexError, rf"position {T} at index 1, outside"),
    ("index-before-the-start", {"logits_to_keep": np.array([-T - 1])}, InputIndexError, r"outside the input's"),
    ("float-indices", {"logits_to_keep": np.array([0.5])}, InputIndexError, r"must hold integer positions"),
    ("boolean-mask", {"logits_to_keep": np.arange(T) > 4}, InputError, r"is a boolean mask; pass the positions"),
    ("2-d-indices", {"logits_to_keep": np.array([[0, 1]])}, InputError, r"shape \(1, 2\) but must be \(K,\)"),
    ("0-d-index", {"logits_to_keep": np.array(2)}, InputError, r"shape \(\) but must be \(K,\)"),
    ("labels-with-fewer-positions", {"logits_to_keep": 1, "labels": "ids"}, InputError,
     rf"labels need the logits of all {T} positions, but logits_to_keep keeps 1"),
]


def _bad_kwargs(kwargs: dict, ids: np.ndarray) -> dict:
    return {k: ids if isinstance(v, str) and v == "ids" else v for k, v in kwargs.items()}


@pytest.mark.parametrize(("name", "kwargs", "error", "match"), BAD, ids=[row[0] for row in BAD])
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_bad_values_raise_the_shared_errors(backend, name, kwargs, error, match, checkpoint, loaded):
    model = loaded(backend, checkpoint, "lm")
    ids = _ids()
    with pytest.raises(error, match=match):
        call(backend, model, input_ids=ids, **_bad_kwargs(kwargs, ids))


@pytest.mark.parametrize(("name", "kwargs", "error", "match"), BAD, ids=[row[0] for row in BAD])
def test_each_error_is_an_instance_of_hfs(name, kwargs, error, match, hf_model):
    """Where HF raises, our error is also HF's type; where HF takes the value (a negative count drops the first
    positions, a boolean mask selects, a 0-d or 2-D index reshapes the logits), ours is a plain InputError."""
    ids = _ids()
    try:
        _hf(hf_model, ids, **_bad_kwargs(kwargs, ids))
    except Exception as err:  # noqa: BLE001 - whatever HF raises is the oracle
        assert issubclass(error, type(err)), f"HF raises {type(err).__name__}: {err}"
    else:
        assert error is InputError


# ------------------------------------------------------------------------------------------ generate's prefill
def _spy_pt(model, monkeypatch, seen):
    hook = model.lm_head.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[:-1])))
    return hook.remove


def _spy_tf(model, monkeypatch, seen):
    project = model.project  # what the eager and XLA loops (traced once per fresh model) project with

    def spy(hidden):
        seen.append(tuple(hidden.shape[:-1]))
        return project(hidden)

    monkeypatch.setattr(model, "project", spy)
    return None


def _spy_flax(model, monkeypatch, seen):
    modeling = importlib.import_module("gpt2_multi.flax.modeling")
    generation = importlib.import_module("gpt2_multi.flax.generation")
    lm_logits = modeling._lm_logits  # what every LM module (and its decode_step) projects with

    def spy(module, hidden):
        seen.append(tuple(hidden.shape[:-1]))
        return lm_logits(module, hidden)

    monkeypatch.setattr(modeling, "_lm_logits", spy)
    # programs compiled earlier in the session would not be traced again: start from empty tables
    monkeypatch.setattr(modeling, "_JIT_CACHE", {})
    monkeypatch.setattr(generation, "_COMPILED", {})
    return None


#: per stack, how to watch the input of its LM head projection (only this is stack-specific)
SPIES = {"pt": _spy_pt, "tf": _spy_tf, "flax": _spy_flax}


@pytest.mark.parametrize("search", [{}, {"num_beams": 2}], ids=["greedy", "beam"])
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_generate_applies_the_head_to_one_position_per_row(backend, search, checkpoint, monkeypatch):
    ids = _ids(length=6)
    mask = np.ones_like(ids)
    mask[0, :2] = 0  # a left-padded row
    rows = B * search.get("num_beams", 1)
    for path in PATHS[backend]:
        model = load(backend, checkpoint, "lm")  # fresh: compiled loops cached on a model are traced again
        seen: list[tuple] = []
        undo = SPIES[backend](model, monkeypatch, seen)
        try:
            get(backend).ops.generate(model, ids, mask, max_new_tokens=3, pad_token_id=0, eos_token_id=None,
                                      **search, **path)
        finally:
            if undo is not None:
                undo()
            monkeypatch.undo()
        assert seen, f"{path}: the spy saw no call of the LM head"
        positions = [int(np.prod(shape)) for shape in seen]
        assert positions == [rows] * len(seen), f"{path}: the LM head got {seen}, not one position per row"
