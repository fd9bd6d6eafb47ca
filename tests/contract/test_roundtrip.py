"""save_pretrained / from_pretrained round trips as a contract, across every ordered pair of backends and every format.

Backend A loads a checkpoint (HF's fixture of every head, and an untied LM) and saves it with its own
``save_pretrained`` in every format it writes (safetensors by default; PyTorch writes ``pytorch_model.bin`` with
``safe_serialization=False``, TensorFlow and Flax any format through ``format=``); the formats a stack does not write
come from its safetensors through the shared ``gpt2_multi.checkpoint.convert``. Then:

* A wrote HF's files: config.json (HF's config), the format's weights file under HF PyTorch names, bit for bit the
  tensors it loaded, a tied ``lm_head`` left out, and generation_config.json for the heads that generate;
* every backend B (A included) loads them to parameters equal bit for bit to A's (HF PyTorch-named numpy state
  dicts), gives A's outputs within the float32 tolerance of ``runner.compare`` (and HF's golden numbers, where the
  checkpoint is HF's), and exactly the outputs it gives on the original checkpoint.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from contract_support import (  # noqa: F401
    DiffersFromTheContract,
    backend_param,
    one_torch_thread,
    parameters,
    write_checkpoint,
)

from gpt2_multi.backends import BACKENDS, framework_installed, get, stack_available
from gpt2_multi.checkpoint import FORMATS, WEIGHTS_NAMES, convert, load_checkpoint
from gpt2_multi.config import GPT2Config
from gpt2_multi.conformance.cases import HEADS, golden_cases
from gpt2_multi.conformance.runner import compare

from fixture_cases import HF_TINY, INDEX

#: the keyword arguments of each stack's save_pretrained for each format it writes itself
SAVE_OPTIONS = {
    "pt": {"safetensors": {}, "pt-bin": {"safe_serialization": False}},
    "tf": {fmt: {"format": fmt} for fmt in FORMATS},
    "flax": {fmt: {"format": fmt} for fmt in FORMATS},
}
GENERATING_HEADS = ("lm", "double")
#: one golden case per head: its inputs, and HF's numbers
CASE_OF = {"base": "base_plain", "lm": "lm_plain", "double": "double_heads", "seqcls": "seqcls", "tokcls": "tokcls",
           "qa": "qa"}
GOLDEN = {c.name.removeprefix("golden/"): c for c in golden_cases(HF_TINY)}
SOURCES = [*HEADS, "lm-untied"]


def _head(source: str) -> str:
    return source.removesuffix("-untied")


def _format_params(backend: str) -> list:
    out = []
    for fmt in FORMATS:
        how = "save" if fmt in SAVE_OPTIONS.get(backend, {}) else "convert"
        marks = [pytest.mark.skipif(fmt == "pt-bin" and not framework_installed("pt"), reason="pt-bin needs torch")]
        out.append((fmt, how, marks))
    return out


def _save_params():
    return [backend_param(a, source, fmt, id=f"{a}-{source}-{fmt}-{how}", marks=marks)
            for a in BACKENDS for source in SOURCES for fmt, how, marks in _format_params(a)]


#: (A, B, source, format) -> why B's outputs on A's save are not exactly its outputs on the original
KNOWN_DIFFERENCES: dict[tuple[str, str, str, str], str] = {}  # none today; a new entry is a strict xfail


def _pair_params():
    params = []
    for a in BACKENDS:
        for b in BACKENDS:
            for source in SOURCES:
                for fmt, _, marks in _format_params(a):
                    reason = KNOWN_DIFFERENCES.get((a, b, source, fmt))
                    known = [pytest.mark.xfail(strict=True, raises=DiffersFromTheContract, reason=reason)] if reason else []
                    skip = pytest.mark.skipif(not stack_available(b), reason=f"the {b} stack is not installed")
                    params.append(backend_param(a, b, source, fmt, id=f"{a}-to-{b}-{source}-{fmt}",
                                                marks=[*marks, skip, *known]))
    return params


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    paths = {head: HF_TINY / INDEX["heads"][head]["checkpoints"]["safetensors"] for head in HEADS}
    paths["lm-untied"] = write_checkpoint(tmp_path_factory.mktemp("untied"), "lm", seed=3, tie_word_embeddings=False)
    return paths


@pytest.fixture(scope="module")
def case_for(sources):
    """The case a source's round trips run: its head's golden case (HF's numbers), the untied LM the LM's inputs."""
    def get_case(source: str):
        case = GOLDEN[CASE_OF[_head(source)]]
        if source in HEADS:
            return case
        return dataclasses.replace(case, expected=None, checkpoint=sources[source])

    return get_case


@pytest.fixture(scope="module")
def saved(tmp_path_factory, sources, loaded):
    """``saved(a, source, fmt)`` -> (directory, the paths save_pretrained returned): A's save of the source."""
    root = tmp_path_factory.mktemp("saved")
    done: dict = {}

    def save(a: str, source: str, fmt: str):
        key = (a, source, fmt)
        if key not in done:
            target = root / f"{a}-{source}-{fmt}"
            if fmt in SAVE_OPTIONS[a]:
                written = loaded(a, sources[source], _head(source)).save_pretrained(str(target), **SAVE_OPTIONS[a][fmt])
            else:
                safetensors_dir, _ = save(a, source, "safetensors")
                written = convert(safetensors_dir, target, fmt)
            done[key] = (target, written)
        return done[key]

    return save


def _forward(backend: str, model, case) -> dict[str, np.ndarray]:
    return get(backend).ops.forward(model, case.inputs, case.flags, case.past_chunks)


@pytest.fixture(scope="module")
def on_original(sources, case_for, loaded):
    """Each backend's outputs on the original checkpoint, computed once."""
    done: dict = {}

    def outputs(backend: str, source: str):
        if (backend, source) not in done:
            done[backend, source] = _forward(backend, loaded(backend, sources[source], _head(source)), case_for(source))
        return done[backend, source]

    return outputs


@pytest.mark.parametrize(("a", "source", "fmt"), _save_params())
def test_save_pretrained_writes_hfs_checkpoint(a, source, fmt, sources, saved):
    head = _head(source)
    directory, written = saved(a, source, fmt)
    names = {"config.json", WEIGHTS_NAMES[fmt]} | ({"generation_config.json"} if head in GENERATING_HEADS else set())
    assert sorted(p.name for p in written) == sorted(names)
    assert {p.name for p in directory.iterdir()} == names
    original = load_checkpoint(sources[source])
    ckpt = load_checkpoint(directory)
    assert ckpt.format == fmt and ckpt.architecture == HEADS[head]
    assert ckpt.config.architectures == [HEADS[head]]
    assert ("lm_head.weight" in ckpt.tensors) == (not original.config.tie_word_embeddings and head in GENERATING_HEADS)
    assert set(ckpt.tensors) == set(original.tensors)
    for name, value in original.tensors.items():
        got = ckpt.tensors[name]
        assert got.dtype == value.dtype and got.shape == value.shape and got.tobytes() == value.tobytes(), name
    ignore = ("architectures", "torch_dtype", "dtype", "transformers_version")
    config = {k: v for k, v in GPT2Config.from_pretrained(directory).to_dict().items() if k not in ignore}
    assert config == {k: v for k, v in original.config.to_dict().items() if k not in ignore}
    if head in GENERATING_HEADS:
        generation = json.loads((directory / "generation_config.json").read_text())
        expected = json.loads((sources[source] / "generation_config.json").read_text()) if source in HEADS else {}
        expected.pop("transformers_version", None)
        assert {k: v for k, v in generation.items() if k in expected} == expected
        assert generation["pad_token_id"] == original.config.pad_token_id


@pytest.mark.parametrize(("a", "b", "source", "fmt"), _pair_params())
def test_a_checkpoint_saved_by_a_loads_in_b_bit_for_bit(a, b, source, fmt, sources, saved, case_for, on_original,
                                                        loaded):
    head = _head(source)
    directory, _ = saved(a, source, fmt)
    model_a = loaded(a, sources[source], head)
    model_b = loaded(b, directory, head)
    want, got = parameters(a, model_a), parameters(b, model_b)
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].tobytes() == value.tobytes(), name
    case = case_for(source)
    out = _forward(b, model_b, case)
    rows = compare(case, f"{a}->{b}", out, a, on_original(a, source), "float32")
    if case.expected is not None:
        rows += compare(case, f"{a}->{b}", out, "golden", case.expected, "float32")
    assert rows and all(r.passed for r in rows), [r for r in rows if not r.passed]
    original = on_original(b, source)
    assert set(out) == set(original)
    differ = [key for key, value in original.items() if not np.array_equal(out[key], value)]
    if differ:  # the same parameters must give exactly the same numbers
        worst = max(float(np.max(np.abs(out[k] - original[k]))) for k in differ)
        raise DiffersFromTheContract(f"{b} gives other numbers on the same parameters: {differ}, up to {worst:.2e}")
