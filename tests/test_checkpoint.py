"""The framework-free checkpoint layer: reading HF's files, writing every format, loading semantics, errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from gpt2_multi import GPT2Config
from gpt2_multi.checkpoint import (
    CheckpointError,
    MissingWeightsError,
    convert,
    expected_shapes,
    find_weights,
    layout,
    load_checkpoint,
    match_state_dict,
    read_weights,
    safetensors_io,
    save_checkpoint,
)

from fixture_cases import INDEX, checkpoint_dir

HEADS = sorted(INDEX["heads"])
FORMAT_DIRS = {"safetensors": "safetensors", "pt-bin": "bin", "tf": "tf", "flax": "flax"}
WRITE_FORMATS = ("safetensors", "pt-bin", "tf", "flax")


def _reference(head: str) -> dict[str, np.ndarray]:
    """The tensors of HF's safetensors file for ``head``, read by the official safetensors library."""
    from safetensors.numpy import load_file

    raw = load_file(str(checkpoint_dir(head, "safetensors") / "model.safetensors"))
    return layout.canonical_names(raw)


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


@pytest.mark.parametrize(("head", "fmt"), [(h, f) for h in HEADS for f in INDEX["heads"][h]["checkpoints"]])
def test_every_hf_fixture_format_reads_to_identical_arrays(head, fmt):
    if fmt == "bin":
        pytest.importorskip("torch")
    ckpt = load_checkpoint(checkpoint_dir(head, fmt))
    reference = _reference(head)
    tensors = dict(ckpt.tensors)
    if fmt == "bin" and "lm_head.weight" in tensors:  # HF's .bin stores the tied head; it is wte
        np.testing.assert_array_equal(tensors.pop("lm_head.weight"), reference["transformer.wte.weight"])
    _assert_same(tensors, reference)
    assert ckpt.architecture == {"base": "GPT2Model", "lm": "GPT2LMHeadModel", "double": "GPT2DoubleHeadsModel",
                                 "seqcls": "GPT2ForSequenceClassification", "tokcls": "GPT2ForTokenClassification",
                                 "qa": "GPT2ForQuestionAnswering"}[head]
    assert ckpt.config.n_embd == 32 and ckpt.config.vocab_size == 1000


def test_safetensors_reads_are_memory_mapped_views(tmp_path):
    import shutil

    shutil.copy(checkpoint_dir("lm", "safetensors") / "model.safetensors", tmp_path / "m.safetensors")
    before = (tmp_path / "m.safetensors").read_bytes()
    tensors = safetensors_io.load(tmp_path / "m.safetensors")
    wte = tensors["transformer.wte.weight"]
    wte[0, 0] = 123.0  # copy-on-write: writable, and the write never reaches the file
    assert (tmp_path / "m.safetensors").read_bytes() == before
    base = wte
    while base.base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    # All tensors are views of one mapping: no copy was made.
    roots = set()
    for value in tensors.values():
        root = value
        while isinstance(root, np.ndarray) and root.base is not None:
            root = root.base
        roots.add(id(root))
    assert len(roots) == 1


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_write_then_read_back_identical(head, fmt, tmp_path):
    if fmt == "pt-bin":
        pytest.importorskip("torch")
    source = load_checkpoint(checkpoint_dir(head, "safetensors"))
    written = save_checkpoint(tmp_path, source.tensors, source.config, format=fmt)
    assert {p.name for p in written} >= {"config.json"}
    again = load_checkpoint(tmp_path)
    assert again.format == fmt and again.architecture == source.architecture
    _assert_same(again.tensors, source.tensors)
    assert again.config == source.config.copy(architectures=[source.architecture])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("head", ["lm", "base", "double", "seqcls"])
def test_written_tf_h5_has_hf_layout(head, tmp_path):
    """Our tf_model.h5 has exactly the groups, weight names, shapes and dtypes HF's TF classes wrote."""
    import h5py

    source = load_checkpoint(checkpoint_dir(head, "safetensors"))
    save_checkpoint(tmp_path, source.tensors, source.config, format="tf")

    def describe(path):
        with h5py.File(path, "r") as f:
            out = {"layer_names": sorted(n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"])}
            for layer in out["layer_names"]:
                for w in f[layer].attrs["weight_names"]:
                    w = w.decode() if isinstance(w, bytes) else w
                    out[w] = (f[layer][w].shape, str(f[layer][w].dtype))
            return out

    assert describe(tmp_path / "tf_model.h5") == describe(checkpoint_dir(head, "tf") / "tf_model.h5")


def test_h5_datasets_are_memory_mapped_copy_on_write(tmp_path):
    """HF's tf_model.h5 stores each weight contiguously: it is mapped (no second copy), with h5py's exact values."""
    import h5py

    from gpt2_multi.checkpoint import tf_h5

    path = _copy_dir(checkpoint_dir("lm", "tf"), tmp_path / "ckpt") / "tf_model.h5"
    tensors = tf_h5.load(path)
    wte = tensors["transformer.wte.weight"]
    assert isinstance(wte, np.memmap)
    with h5py.File(path, "r") as f:
        layer = f["transformer"]
        name = next(w.decode() if isinstance(w, bytes) else w for w in layer.attrs["weight_names"] if "wte" in str(w))
        np.testing.assert_array_equal(wte, layer[name][()])
    reference = _reference("lm")
    for key, value in tensors.items():
        np.testing.assert_array_equal(value, reference[key], err_msg=key)
    wte[0, 0] += 1.0  # copy-on-write: the file is untouched
    assert tf_h5.load(path)["transformer.wte.weight"][0, 0] == reference["transformer.wte.weight"][0, 0]


def test_written_h5_datasets_start_on_64_byte_boundaries(tmp_path):
    """Every dataset of our tf_model.h5 starts on a 64-byte boundary, odd sizes included, so the loaded memory maps are
    aligned as in HF's files (PyTorch's kernels give other last bits on misaligned views)."""
    import h5py

    from gpt2_multi.checkpoint import tf_h5

    source = load_checkpoint(checkpoint_dir("double", "safetensors"))
    save_checkpoint(tmp_path, source.tensors, source.config, format="tf")
    offsets = {}
    with h5py.File(tmp_path / "tf_model.h5", "r") as f:
        f.visititems(lambda name, obj: offsets.update({name: obj.id.get_offset()}) if isinstance(obj, h5py.Dataset) else None)
    assert len(offsets) == len(source.tensors) and all(o is not None for o in offsets.values())
    assert {name: o % 64 for name, o in offsets.items() if o % 64} == {}
    loaded = tf_h5.load(tmp_path / "tf_model.h5")
    assert {k: v.ctypes.data % 64 for k, v in loaded.items() if v.ctypes.data % 64} == {}


def test_h5_big_endian_datasets_load_as_native(tmp_path):
    """A tf_model.h5 written with big-endian floats (another writer) loads with native byte order, same values."""
    import h5py

    from gpt2_multi.checkpoint import tf_h5

    src = checkpoint_dir("lm", "tf") / "tf_model.h5"
    path = tmp_path / "tf_model.h5"
    with h5py.File(src, "r") as fin, h5py.File(path, "w") as fout:
        for key, value in fin.attrs.items():
            fout.attrs[key] = value

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = fout.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value
            else:
                fout.create_dataset(name, data=obj[()].astype(obj.dtype.newbyteorder(">")))

        fin.visititems(copy)
    with h5py.File(path, "r") as f:  # the file really holds big-endian data
        first = f["transformer"].attrs["weight_names"][0]
        assert f["transformer"][first.decode() if isinstance(first, bytes) else first].dtype.byteorder == ">"
    tensors = tf_h5.load(path)
    reference = _reference("lm")
    for key, value in tensors.items():
        assert value.dtype.isnative, key
        np.testing.assert_array_equal(value, reference[key], err_msg=key)


def test_h5_dataset_past_the_end_of_the_file_is_an_error(tmp_path):
    """A dataset whose bytes would lie past the end of the file is refused before it is mapped (touching such a
    map would kill the process with SIGBUS)."""
    from gpt2_multi.checkpoint import tf_h5

    class Dataset:  # what h5py reports for a contiguous, uncompressed dataset
        dtype, shape, size, chunks, compression, external, name = np.dtype("<f4"), (4, 4), 16, None, None, None, "/w:0"

        class id:
            @staticmethod
            def get_offset():
                return 100

    path = tmp_path / "short.h5"
    path.write_bytes(b"\0" * 120)
    with pytest.raises(CheckpointError, match="short.h5 is truncated: dataset '/w:0' ends at byte 164 of 120"):
        tf_h5._mapped_or_read(path, Dataset())


@pytest.mark.parametrize("head", ["lm", "base"])
def test_written_flax_msgpack_has_hf_layout(head, tmp_path):
    """Our flax_model.msgpack restores (with msgpack alone) to HF's exact tree of shapes and dtypes."""
    from gpt2_multi.checkpoint import flax_msgpack

    source = load_checkpoint(checkpoint_dir(head, "safetensors"))
    save_checkpoint(tmp_path, source.tensors, source.config, format="flax")
    import msgpack

    def tree(path):
        def walk(node):
            return {k: walk(v) if isinstance(v, dict) else (v.shape, str(v.dtype)) for k, v in node.items()}

        return walk(msgpack.unpackb(path.read_bytes(), ext_hook=flax_msgpack._ext_hook, raw=False))

    assert tree(tmp_path / "flax_model.msgpack") == tree(checkpoint_dir(head, "flax") / "flax_model.msgpack")


def test_written_safetensors_read_by_official_library(tmp_path):
    from safetensors import safe_open

    source = load_checkpoint(checkpoint_dir("double", "safetensors"))
    save_checkpoint(tmp_path, source.tensors, source.config)
    with safe_open(str(tmp_path / "model.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}
        names = set(f.keys())
        for name in names:
            np.testing.assert_array_equal(f.get_tensor(name), source.tensors[name])
    assert names == set(source.tensors)


def test_bfloat16_and_float16_round_trip(tmp_path):
    import ml_dtypes

    source = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    for dtype in (np.float16, ml_dtypes.bfloat16):
        tensors = {k: v.astype(dtype) for k, v in source.tensors.items()}
        for fmt in ("safetensors", "flax"):
            out = tmp_path / f"{np.dtype(dtype).name}-{fmt}"
            save_checkpoint(out, tensors, source.config, format=fmt)
            again = load_checkpoint(out).tensors
            assert again["transformer.wte.weight"].dtype == np.dtype(dtype)
            _assert_same(again, tensors)


def test_sharded_safetensors(tmp_path):
    source = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    written = save_checkpoint(tmp_path, source.tensors, source.config, max_shard_size="50KB")
    shards = sorted(p.name for p in written if p.name.startswith("model-"))
    assert len(shards) >= 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(source.tensors)
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in source.tensors.values())
    for shard in shards:  # each shard fits the limit, unless it is one tensor larger than the limit
        names = [n for n, f in index["weight_map"].items() if f == shard]
        data_bytes = sum(source.tensors[n].nbytes for n in names)
        assert data_bytes <= 50_000 or len(names) == 1, (shard, names)
    assert find_weights(tmp_path)[0] == "safetensors"
    _assert_same(load_checkpoint(tmp_path).tensors, source.tensors)
    (tmp_path / shards[1]).unlink()
    with pytest.raises(CheckpointError, match=f"names shard\\(s\\) that are not there: {shards[1]}"):
        load_checkpoint(tmp_path)


def test_hub_style_bare_names_and_buffers(tmp_path):
    """The hub's gpt2 checkpoints use bare names for an LM and carry attn.bias buffers; both are handled."""
    source = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    bare = {layout.strip_body_prefix(k): v for k, v in source.tensors.items()}
    bare["h.0.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))
    bare["h.1.attn.masked_bias"] = np.array(-1e4, np.float32)
    safetensors_io.save(tmp_path / "model.safetensors", bare, {"format": "pt"})
    source.config.save_pretrained(tmp_path)
    again = load_checkpoint(tmp_path)
    _assert_same(again.tensors, source.tensors)
    matched, report = match_state_dict(again.tensors, again.config, "GPT2LMHeadModel")
    assert report.unexpected_keys == [] and report.missing_keys == []


# ------------------------------------------------------------------------------------ loading semantics
def test_lm_checkpoint_into_sequence_classifier_reports_new_head():
    ckpt = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    matched, report = match_state_dict(ckpt.tensors, ckpt.config, "GPT2ForSequenceClassification")
    assert report.missing_keys == ["score.weight"]
    assert report.unexpected_keys == []
    assert set(matched) == set(expected_shapes(ckpt.config, "GPT2ForSequenceClassification")) - {"score.weight"}


def test_base_checkpoint_into_lm_through_the_tie():
    ckpt = load_checkpoint(checkpoint_dir("base", "safetensors"))
    matched, report = match_state_dict(ckpt.tensors, ckpt.config, "GPT2LMHeadModel")
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert "transformer.wte.weight" in matched and "lm_head.weight" not in matched


def test_head_checkpoint_into_base_drops_the_head():
    ckpt = load_checkpoint(checkpoint_dir("double", "safetensors"))
    matched, report = match_state_dict(ckpt.tensors, ckpt.config, "GPT2Model")
    assert sorted(report.unexpected_keys) == ["multiple_choice_head.summary.bias", "multiple_choice_head.summary.weight"]
    assert "wte.weight" in matched and "h.0.attn.c_attn.weight" in matched  # base names are bare
    seq = load_checkpoint(checkpoint_dir("seqcls", "safetensors"))
    _, report = match_state_dict(seq.tensors, seq.config, "GPT2LMHeadModel")
    assert report.unexpected_keys == ["score.weight"]


def test_untied_lm_head_is_expected():
    ckpt = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    config = ckpt.config.copy(tie_word_embeddings=False)
    _, report = match_state_dict(ckpt.tensors, config, "GPT2LMHeadModel")
    assert report.missing_keys == ["lm_head.weight"]


def test_missing_body_weight_is_an_error_naming_it():
    ckpt = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    tensors = {k: v for k, v in ckpt.tensors.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(CheckpointError, match=r"no 'transformer.h.1.mlp.c_fc.bias'.*shape \(128,\)"):
        match_state_dict(tensors, ckpt.config, "GPT2LMHeadModel")


def test_shape_mismatch_names_both_shapes():
    ckpt = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    wider = ckpt.config.copy(n_positions=128)
    with pytest.raises(CheckpointError, match=r"'transformer.wpe.weight': the checkpoint has \(64, 32\), the model expects \(128, 32\)"):
        match_state_dict(ckpt.tensors, wider, "GPT2LMHeadModel")


def test_head_shape_mismatch_reinitialised_on_request():
    ckpt = load_checkpoint(checkpoint_dir("seqcls", "safetensors"))
    five = ckpt.config.copy(num_labels=5)
    with pytest.raises(CheckpointError, match=r"'score.weight'.*\(3, 32\).*\(5, 32\).*ignore_mismatched_sizes"):
        match_state_dict(ckpt.tensors, five, "GPT2ForSequenceClassification")
    matched, report = match_state_dict(ckpt.tensors, five, "GPT2ForSequenceClassification", ignore_mismatched_sizes=True)
    assert report.mismatched_keys == [("score.weight", (3, 32), (5, 32))]
    assert report.missing_keys == ["score.weight"] and "score.weight" not in matched


def test_non_float_parameter_dtype_is_rejected():
    ckpt = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    tensors = dict(ckpt.tensors)
    tensors["transformer.ln_f.bias"] = tensors["transformer.ln_f.bias"].astype(np.int32)
    with pytest.raises(CheckpointError, match="'transformer.ln_f.bias' has dtype int32"):
        match_state_dict(tensors, ckpt.config, "GPT2LMHeadModel")


def test_load_report_summary_names_keys():
    ckpt = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    _, report = match_state_dict(ckpt.tensors, ckpt.config, "GPT2ForQuestionAnswering")
    assert report.missing_keys == ["qa_outputs.weight", "qa_outputs.bias"]
    assert "newly initialised (not in the checkpoint): qa_outputs.weight, qa_outputs.bias" in report.summary()
    assert report.as_dict()["missing_keys"] == ["qa_outputs.weight", "qa_outputs.bias"]


# ------------------------------------------------------------------------------------ bad files
def _copy_dir(src, dst):
    import shutil

    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def test_truncated_safetensors(tmp_path):
    d = _copy_dir(checkpoint_dir("lm", "safetensors"), tmp_path / "ckpt")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="is truncated: tensor '.*' ends at byte"):
        load_checkpoint(d)
    (d / "model.safetensors").write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="shorter than the 8-byte header length"):
        load_checkpoint(d)


def test_corrupt_safetensors_header(tmp_path):
    d = _copy_dir(checkpoint_dir("lm", "safetensors"), tmp_path / "ckpt")
    data = bytearray((d / "model.safetensors").read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8:12] = b"\xff\xfe{{"
    (d / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        load_checkpoint(d)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        load_checkpoint(d)


def test_corrupt_h5_msgpack_and_bin(tmp_path):
    for fmt, name in (("tf", "tf_model.h5"), ("flax", "flax_model.msgpack")):
        d = _copy_dir(checkpoint_dir("lm", fmt), tmp_path / fmt)
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="corrupt or truncated|not a readable HDF5"):
            load_checkpoint(d)
    pytest.importorskip("torch")
    d = _copy_dir(checkpoint_dir("lm", "bin"), tmp_path / "bin")
    data = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(d)


def test_malformed_msgpack_trees_are_checkpoint_errors(tmp_path):
    """Our memory-mapped msgpack reader turns every malformed tree into a CheckpointError that says what is wrong,
    never a TypeError, ValueError or RecursionError from deep inside: a non-str key, a negative dimension (whose
    product still matches the bytes), and nesting deeper than Python's recursion limit."""
    import msgpack

    from gpt2_multi.checkpoint import flax_msgpack

    def array(shape, raw):
        return msgpack.ExtType(1, msgpack.packb([list(shape), "float32", raw]))

    cases = {
        "key.msgpack": (msgpack.packb({"params": {b"wte": {"embedding": array((2,), bytes(8))}}}), "not a parameter name"),
        "shape.msgpack": (msgpack.packb({"params": {"wte": {"embedding": array((-1, -2), bytes(8))}}}), "negative dimension"),
        "deep.msgpack": (b"\x91" * 100_000 + b"\xc0", "nest deeper"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=message):
            flax_msgpack.load(tmp_path / name)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_bin_is_never_unpickled(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.save({"wte.weight": torch.zeros(2, 2), "payload": Evil()}, tmp_path / "pytorch_model.bin")
    GPT2Config().save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(tmp_path)
    assert "this must never run" not in capsys.readouterr().out


def test_directory_without_weights(tmp_path):
    GPT2Config().save_pretrained(tmp_path)
    with pytest.raises(MissingWeightsError, match="holds no weights: looked for model.safetensors, pytorch_model.bin"):
        load_checkpoint(tmp_path)
    with pytest.raises(MissingWeightsError, match="has no tf weights"):
        find_weights(checkpoint_dir("lm", "safetensors"), "tf")
    with pytest.raises(MissingWeightsError, match="no checkpoint at"):
        read_weights(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="cannot tell the format"):
        read_weights(tmp_path / "config.json")


def test_weights_without_config(tmp_path):
    d = _copy_dir(checkpoint_dir("lm", "safetensors"), tmp_path / "ckpt")
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has weights but no config.json"):
        load_checkpoint(d)
    # A weights file given directly, with an explicit config, is fine.
    ckpt = load_checkpoint(d / "model.safetensors", config=GPT2Config.from_pretrained(checkpoint_dir("lm", "safetensors")))
    assert ckpt.format == "safetensors"


def test_format_preference_and_override(tmp_path):
    d = tmp_path / "multi"
    source = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    for fmt in ("tf", "flax", "safetensors"):
        save_checkpoint(d, source.tensors, source.config, format=fmt)
    assert find_weights(d)[0] == "safetensors"
    assert load_checkpoint(d, format="flax").format == "flax"
    with pytest.raises(ValueError, match="unknown checkpoint format 'onnx'"):
        find_weights(d, "onnx")


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    source = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    save_checkpoint(tmp_path, source.tensors, source.config)
    before = (tmp_path / "model.safetensors").read_bytes()

    class Boom(Exception):
        pass

    tensors = dict(source.tensors)
    bad = np.zeros(3, np.float32)
    original = np.ascontiguousarray

    def exploding(a, *args, **kwargs):
        if a is bad:
            raise Boom("disk full")
        return original(a, *args, **kwargs)

    tensors["zzz"] = bad
    monkeypatch.setattr(np, "ascontiguousarray", exploding)
    with pytest.raises(Boom):
        safetensors_io.save(tmp_path / "model.safetensors", tensors)
    monkeypatch.undo()
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_convert_chain_preserves_every_tensor(tmp_path):
    pytest.importorskip("torch")
    source = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    src = checkpoint_dir("lm", "safetensors")
    for i, fmt in enumerate(("tf", "flax", "pt-bin", "safetensors")):
        dst = tmp_path / f"step{i}-{fmt}"
        written = convert(src, dst, fmt)
        assert (dst / "generation_config.json") in written
        src = dst
    final = load_checkpoint(src)
    _assert_same(final.tensors, source.tensors)


def test_layout_name_maps_invert():
    config = GPT2Config(n_embd=8, n_head=2, n_layer=2, vocab_size=11, n_positions=5, add_cross_attention=True)
    for arch in layout.ARCHITECTURES:
        for name in expected_shapes(config, arch):
            canonical = next(iter(layout.canonical_names({name: np.zeros(1)})))
            assert layout.tf_to_pt_name(layout.pt_to_tf_name(canonical)) == canonical
            assert layout.flax_path_to_pt(layout.pt_to_flax_path(name)) == name
    assert layout.pt_to_tf_name("transformer.h.3.ln_1.weight") == "transformer/h_._3/ln_1/gamma:0"
    assert layout.pt_to_flax_path("h.3.mlp.c_fc.weight") == ("h", "3", "mlp", "c_fc", "kernel")


def test_streamed_msgpack_is_byte_identical_to_packb(tmp_path):
    """The streaming msgpack writer emits exactly ``msgpack.packb`` of the nested dict (fixext / ext 8/16/32 sizes)."""
    import msgpack

    from gpt2_multi.checkpoint import flax_msgpack

    config = GPT2Config(n_embd=4, n_head=2, n_layer=1, vocab_size=70000 // 4, n_positions=1)
    tensors = {k: np.arange(int(np.prod(s)), dtype=np.float32).reshape(s) for k, s in expected_shapes(config, "GPT2LMHeadModel").items()}
    tensors["transformer.ln_f.bias"] = np.zeros((1,), np.float32)  # a tiny payload
    flax_msgpack.save(tmp_path / "a.msgpack", tensors, "GPT2LMHeadModel")
    tree: dict = {}
    for name, value in tensors.items():
        path = layout.pt_to_flax_path(name)
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = flax_msgpack._pack_array(layout.pt_to_flax_array(name, value))
    assert (tmp_path / "a.msgpack").read_bytes() == msgpack.packb(tree, use_bin_type=True)
    for n in (0, 1, 2, 3, 4, 5, 60, 100, 20000, 70000):
        array = np.ones(n, np.uint8)
        expected = msgpack.packb(flax_msgpack._pack_array(array), use_bin_type=True)
        assert flax_msgpack.array_header(array.shape, array.dtype) + array.tobytes() == expected


def test_msgpack_reads_are_memory_mapped_views(tmp_path):
    source = load_checkpoint(checkpoint_dir("lm", "safetensors"))
    save_checkpoint(tmp_path, source.tensors, source.config, format="flax")
    ckpt = load_checkpoint(tmp_path)
    for name, array in ckpt.tensors.items():
        base = array
        while base is not None and not isinstance(base, np.memmap):
            base = base.base
        assert isinstance(base, np.memmap), name
    _assert_same(ckpt.tensors, source.tensors)


def test_convert_dtype_bf16_and_sharded_bin(tmp_path):
    pytest.importorskip("torch")
    src = checkpoint_dir("lm", "safetensors")
    source = load_checkpoint(src)
    convert(src, tmp_path / "bin", "pt-bin", max_shard_size=20_000, dtype="bf16")
    fmt, files = find_weights(tmp_path / "bin")
    assert fmt == "pt-bin" and len(files) > 1 and (tmp_path / "bin" / "pytorch_model.bin.index.json").is_file()
    out = load_checkpoint(tmp_path / "bin")
    assert out.config.torch_dtype == "bfloat16"
    for name, value in source.tensors.items():
        assert str(out.tensors[name].dtype) == "bfloat16"
        np.testing.assert_array_equal(out.tensors[name], value.astype(out.tensors[name].dtype))
    with pytest.raises(ValueError, match="cannot hold bfloat16"):
        convert(src, tmp_path / "h5", "tf", dtype="bf16")
    assert not (tmp_path / "h5").exists() or not any((tmp_path / "h5").iterdir())
    with pytest.raises(ValueError, match="cannot write weights as 'int8'"):
        convert(src, tmp_path / "x", "safetensors", dtype="int8")


def test_release_never_reaches_past_the_array_it_is_given(tmp_path):
    """release() drops whole pages inside the view it is given, for any strides: a reversed view of a marked or
    mapped array drops only that array's pages, and memory next to it keeps its values."""
    import mmap

    from gpt2_multi.checkpoint import pages

    page = mmap.PAGESIZE
    path = tmp_path / "blob"
    path.write_bytes(np.arange(4 * page // 4, dtype=np.float32).tobytes())
    mapped = np.memmap(path, dtype=np.float32, mode="c")
    pages.release(mapped[: page // 4][::-1])  # the first page, reversed
    np.testing.assert_array_equal(mapped, np.arange(4 * page // 4, dtype=np.float32))  # re-read from the file
    # a marked (file-backed) array inside a larger buffer: a reversed view of it must not touch its neighbours
    buffer = np.zeros(6 * page // 4, dtype=np.float32)
    inner = buffer[page // 4: 3 * page // 4]
    pages.mark_file_backed(inner)
    buffer[:] = 7.0
    pages.release(inner[::-1])
    assert (buffer[: page // 4] == 7.0).all() and (buffer[3 * page // 4:] == 7.0).all()
