"""The PyTorch stack against HF transformers' golden outputs (tests/fixtures/hf-tiny, HF 4.57.6).

Every case of every head, loaded from every checkpoint format the head has (HF-written), plus
``pytorch_model.bin`` converted by the shared checkpoint layer for the heads HF's fixture set only
has in safetensors, so that every head is checked in both PyTorch formats. Tolerance 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gpt2_multi.checkpoint import convert  # noqa: E402
from gpt2_multi.pt import MODEL_CLASSES  # noqa: E402

from fixture_cases import (  # noqa: E402
    HEAD_ARCHITECTURES,
    all_cases,
    case_checkpoints,
    checkpoint_dir,
    load_case,
)

pytestmark = pytest.mark.torch

ATOL = 1e-5
_MODELS: dict = {}


@pytest.fixture(scope="session")
def converted_bin(tmp_path_factory):
    """Heads without an HF-written pytorch_model.bin get one converted from their safetensors."""
    root = tmp_path_factory.mktemp("pt-bin")
    out = {}
    for head in HEAD_ARCHITECTURES:
        target = root / head
        convert(checkpoint_dir(head, "safetensors"), target, "pt-bin")
        out[head] = target
    return out


def _model(head: str, fmt: str, converted_bin=None, attn: str = "sdpa"):
    key = (head, fmt, attn)
    if key not in _MODELS:
        path = converted_bin[head] if fmt == "bin-converted" else checkpoint_dir(head, fmt)
        cls = MODEL_CLASSES[HEAD_ARCHITECTURES[head]]
        model = cls.from_pretrained(path, format="pt-bin" if fmt.startswith("bin") else None, attn_implementation=attn)
        assert not model.training
        _MODELS[key] = model
    return _MODELS[key]


def run_case(model, case, return_dict=True):
    """Run a golden case; *_past cases first run past_input_ids with use_cache=True."""
    inputs = {k: torch.from_numpy(v) for k, v in case.inputs.items()}
    past_ids = inputs.pop("past_input_ids", None)
    with torch.no_grad():
        if past_ids is not None:
            inputs["past_key_values"] = model(input_ids=past_ids, use_cache=True).past_key_values
        return model(**inputs, **case.flags, return_dict=return_dict)


def _got(out, key):
    if key.startswith("past."):
        _, layer, kind = key.split(".")
        return out.past_key_values[int(layer)][0 if kind == "key" else 1]
    if "." in key:
        field, index = key.split(".")
        return getattr(out, field)[int(index)]
    return out[key]


def compare(case, out, atol=ATOL):
    """Every expected output, on the positions that are defined (left padding leaves masked queries undefined)."""
    valid = case.valid_positions()  # (B, T) or None
    assert set(case.outputs), case.name
    for key, expected in case.outputs.items():
        got = _got(out, key).detach().float().numpy()
        assert got.shape == expected.shape, (case.name, key, got.shape, expected.shape)
        if valid is not None and key.startswith("attentions."):
            sel = np.broadcast_to(valid[:, None, :, None], got.shape)  # defined query rows
        elif valid is not None and key.startswith("past."):
            sel = np.broadcast_to(valid[:, None, :, None], got.shape)  # keys of real tokens
        elif valid is not None and got.ndim >= 2 and got.shape[:2] == valid.shape:
            sel = np.broadcast_to(valid.reshape(valid.shape + (1,) * (got.ndim - 2)), got.shape)
        else:
            sel = np.ones(got.shape, bool)
        np.testing.assert_allclose(got[sel], expected[sel], atol=atol, rtol=0, err_msg=f"{case.name}: {key}")


HF_FORMATS = ("safetensors", "bin", "tf", "flax")


@pytest.mark.parametrize(("case_name", "fmt"), case_checkpoints(HF_FORMATS))
def test_case_hf_checkpoint(case_name, fmt):
    case = load_case(case_name)
    compare(case, run_case(_model(case.head, fmt), case))


@pytest.mark.parametrize("case_name", all_cases())
def test_case_converted_bin(case_name, converted_bin):
    case = load_case(case_name)
    compare(case, run_case(_model(case.head, "bin-converted", converted_bin), case))


@pytest.mark.parametrize("case_name", all_cases())
def test_case_eager_attention(case_name):
    """The explicit attention path gives the golden numbers too (the default path is SDPA)."""
    case = load_case(case_name)
    compare(case, run_case(_model(case.head, "safetensors", attn="eager"), case))


@pytest.mark.parametrize("case_name", ["lm_plain", "lm_loss", "base_past", "double_heads", "seqcls", "tokcls", "qa"])
def test_case_tuple_output(case_name):
    """return_dict=False gives HF's tuple order: the output's fields that are set, in order."""
    case = load_case(case_name)
    model = _model(case.head, "safetensors")
    as_dict = run_case(model, case)
    as_tuple = run_case(model, case, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert len(as_tuple) == len(as_dict)
    for i, (key, value) in enumerate(as_dict.items()):
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(as_tuple[i], value, rtol=0, atol=0, msg=key)
            torch.testing.assert_close(as_dict[i], getattr(as_dict, key), rtol=0, atol=0)
    primary = {"lm": "logits", "base": "last_hidden_state", "double": "logits", "seqcls": "logits", "tokcls": "logits",
               "qa": "start_logits"}
    assert next(iter(as_dict.keys())) == ("loss" if "loss" in case.outputs else primary[case.head])


def test_hidden_states_layout():
    """hidden_states: n_layer + 1 entries, the first the embeddings, the last after ln_f (= last_hidden_state)."""
    case = load_case("base_plain")
    out = run_case(_model("base", "safetensors"), case)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state, rtol=0, atol=0)
