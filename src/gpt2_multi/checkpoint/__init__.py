"""Framework-free checkpoints: a dict of numpy arrays keyed by HF PyTorch names, plus a ``GPT2Config``.

Data flows one way: file -> :class:`Checkpoint` (numpy, canonical names) ->
:func:`match_state_dict` (HF's loading semantics, a :class:`LoadReport`) -> a
backend's parameters. Saving is the reverse. Only the ``pytorch_model.bin``
reader imports a framework (PyTorch), and only when such a file is read.

Formats (``--to`` names of ``gpt2-multi convert``):

=============  ==================================================  ==========================
format         file(s)                                             needs
=============  ==================================================  ==========================
safetensors    model.safetensors / model-0000k-of-0000n + index    nothing (memory-mapped)
pt-bin         pytorch_model.bin / pytorch_model-0000k-of-0000n    torch (``torch.load(weights_only,
               .bin + index                                        mmap)``)
tf             tf_model.h5 (HF's Keras 2 layout)                   h5py (datasets memory-mapped)
flax           flax_model.msgpack                                  msgpack (memory-mapped views)
=============  ==================================================  ==========================

Reading never copies the weights: every reader returns views of a file map (HF's TF/Flax transposes as
transposed views). Writing streams tensor by tensor (:mod:`gpt2_multi.checkpoint.streaming`), so
:func:`convert` peaks near one tensor above the interpreter at any checkpoint size; see
:func:`save_checkpoint` for what a kill at any point leaves behind.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gpt2_multi.checkpoint import layout, safetensors_io, streaming
from gpt2_multi.checkpoint.errors import CheckpointError, MissingWeightsError
from gpt2_multi.checkpoint.layout import ARCHITECTURES, expected_shapes, normalize_architecture
from gpt2_multi.checkpoint.streaming import ProgressFn
from gpt2_multi.config import GPT2Config
from gpt2_multi.filenames import BIN_INDEX_NAME, CONFIG_NAME, SAFE_INDEX_NAME, WEIGHTS_NAMES
from gpt2_multi.io_utils import atomic_write_text, remove_stale_temporaries

if TYPE_CHECKING:
    from gpt2_multi.generation import GenerationConfig

__all__ = [
    "ARCHITECTURES", "FORMATS", "Checkpoint", "CheckpointError", "LoadReport", "MissingWeightsError",
    "convert", "expected_shapes", "find_weights", "load_checkpoint", "match_state_dict", "read_weights",
    "save_checkpoint",
]

FORMATS = ("safetensors", "pt-bin", "tf", "flax")
DEFAULT_MAX_SHARD_SIZE = "5GB"



@dataclass
class Checkpoint:
    """Weights and config, framework-free. ``tensors`` are canonical: body under ``transformer.``."""

    config: GPT2Config
    tensors: dict[str, np.ndarray]
    architecture: str = "GPT2LMHeadModel"
    source: Path | None = None
    format: str | None = None

    @property
    def directory(self) -> Path | None:
        """The directory the checkpoint was read from (where its generation_config.json would be)."""
        if self.source is None:
            return None
        return self.source if self.source.is_dir() else self.source.parent

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.tensors.values()))

    def state_dict(self, architecture: str | None = None) -> dict[str, np.ndarray]:
        """The tensors under ``architecture``'s state_dict names (default: the checkpoint's own)."""
        return layout.to_architecture_names(self.tensors, architecture or self.architecture)


@dataclass
class LoadReport:
    """What HF's ``output_loading_info`` reports: which keys were new, dropped or re-initialised."""

    missing_keys: list[str] = field(default_factory=list)  # initialised fresh (a head the source lacks)
    unexpected_keys: list[str] = field(default_factory=list)  # in the source, not in the model: dropped
    mismatched_keys: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, source, model) shapes

    def as_dict(self) -> dict[str, list]:
        return {"missing_keys": list(self.missing_keys), "unexpected_keys": list(self.unexpected_keys),
                "mismatched_keys": list(self.mismatched_keys), "error_msgs": []}

    def summary(self) -> str:
        lines = []
        if self.missing_keys:
            lines.append(f"newly initialised (not in the checkpoint): {', '.join(self.missing_keys)}")
        if self.unexpected_keys:
            lines.append(f"not used (the model has no such parameter): {', '.join(self.unexpected_keys)}")
        if self.mismatched_keys:
            lines.append("re-initialised for a shape mismatch: " + ", ".join(f"{n} {s} -> {m}" for n, s, m in self.mismatched_keys))
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ reading
def find_weights(directory: str | os.PathLike, format: str | None = None) -> tuple[str, list[Path]]:
    """Pick the weights file(s) in ``directory``: safetensors first, then pt-bin, tf, flax.

    ``format`` forces one. A ``pytorch_model.bin`` is skipped in the automatic order when
    PyTorch is not installed and another format is present. Returns ``(format, files)``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingWeightsError(f"{directory} is not a directory")
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; choose one of {', '.join(FORMATS)}")
    found: dict[str, list[Path]] = {}
    for fmt, index_name in (("safetensors", SAFE_INDEX_NAME), ("pt-bin", BIN_INDEX_NAME)):
        if (directory / WEIGHTS_NAMES[fmt]).is_file():
            found[fmt] = [directory / WEIGHTS_NAMES[fmt]]
        elif (directory / index_name).is_file():
            found[fmt] = _shards_from_index(directory / index_name)
    for fmt in ("tf", "flax"):
        if (directory / WEIGHTS_NAMES[fmt]).is_file():
            found[fmt] = [directory / WEIGHTS_NAMES[fmt]]
    if format is not None:
        if format not in found:
            raise MissingWeightsError(f"{directory} has no {format} weights ({WEIGHTS_NAMES[format]}); found: {', '.join(found) or 'none'}")
        return format, found[format]
    if not found:
        names = ", ".join([*WEIGHTS_NAMES.values(), SAFE_INDEX_NAME])
        raise MissingWeightsError(f"{directory} holds no weights: looked for {names}")
    order = list(FORMATS)
    if "pt-bin" in found and len(found) > 1 and not _torch_available():
        order.remove("pt-bin")
    fmt = next(f for f in order if f in found)
    return fmt, found[fmt]


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _shards_from_index(index_path: Path) -> list[Path]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index_path} is not a valid shard index: {err}") from None
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (index_path.parent / s).is_file()]
    if missing:
        raise CheckpointError(f"{index_path} names shard(s) that are not there: {', '.join(missing)}")
    return [index_path.parent / s for s in shards]


def _format_of_file(path: Path) -> str:
    name = path.name
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith((".bin", ".pt", ".pth")):
        return "pt-bin"
    if name.endswith(".h5"):
        return "tf"
    if name.endswith(".msgpack"):
        return "flax"
    raise CheckpointError(f"cannot tell the format of {path}: expected .safetensors, .bin, .h5 or .msgpack")


def _reader(fmt: str) -> Callable[[Path], dict[str, np.ndarray]]:
    """The reader of one format. Each format's module (and its library: h5py, msgpack, torch) is imported only when
    that format is read, so safetensors alone needs none of them."""
    if fmt == "safetensors":
        return safetensors_io.load
    if fmt == "tf":
        from gpt2_multi.checkpoint import tf_h5

        return tf_h5.load
    if fmt == "flax":
        from gpt2_multi.checkpoint import flax_msgpack

        return flax_msgpack.load
    from gpt2_multi.checkpoint import torch_bin

    return torch_bin.load


def read_weights(path: str | os.PathLike, format: str | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """Read the weights at ``path`` (a file or a directory) as canonical tensors; return ``(format, tensors)``."""
    path = Path(path)
    if path.is_dir():
        fmt, files = find_weights(path, format)
    elif path.is_file():
        fmt, files = _format_of_file(path), [path]
    else:
        raise MissingWeightsError(f"no checkpoint at {path}")
    reader = _reader(fmt)
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        for name, value in reader(file).items():
            if name in tensors:
                raise CheckpointError(f"{file}: tensor {name!r} also appears in another shard")
            tensors[name] = value
    try:
        return fmt, layout.canonical_names(tensors)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None


def _resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A local directory holding config.json and weights for ``name_or_path``, downloading if it must.

    A local directory is returned as it is (:func:`find_weights` says what it lacks). A hub name not in
    the cache downloads config.json and model.safetensors.
    """
    from gpt2_multi import hub  # lazily: urllib and the cache only for what is not a local path

    if Path(name_or_path).expanduser().exists():
        return hub.resolve(name_or_path)
    directory = hub.resolve(name_or_path, files=(CONFIG_NAME, WEIGHTS_NAMES["safetensors"]))
    names = [*WEIGHTS_NAMES.values(), SAFE_INDEX_NAME, BIN_INDEX_NAME]
    if any((directory / name).is_file() for name in names):
        return directory
    raise hub.HubError(f"{directory} has a config but no weights (looked for {', '.join(WEIGHTS_NAMES.values())})")


def load_checkpoint(name_or_path: str | os.PathLike, *, format: str | None = None, config: GPT2Config | None = None) -> Checkpoint:
    """Read a checkpoint: a directory with config.json + weights, a weights file, or a hub name in the HF cache."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        directory = path.parent
    else:
        directory = path = _resolve_weights(name_or_path)
    if config is None:
        config_file = directory / CONFIG_NAME
        if not config_file.is_file():
            raise CheckpointError(f"{directory} has weights but no {CONFIG_NAME}; pass config=GPT2Config(...)")
        config = GPT2Config.from_json_file(config_file)
    fmt, tensors = read_weights(path, format)
    architecture = _architecture_from(config, tensors)
    return Checkpoint(config=config, tensors=tensors, architecture=architecture, source=path, format=fmt)


def _architecture_from(config: GPT2Config, tensors: dict[str, np.ndarray]) -> str:
    for name in config.architectures or []:
        try:
            return normalize_architecture(name)
        except ValueError:
            continue
    return layout.infer_architecture(tensors)


# ------------------------------------------------------------------------------------------ matching
def match_state_dict(
    tensors: dict[str, np.ndarray],
    config: GPT2Config,
    architecture: str,
    *,
    ignore_mismatched_sizes: bool = False,
) -> tuple[dict[str, np.ndarray], LoadReport]:
    """Fit checkpoint tensors to ``architecture`` with HF's loading semantics.

    Returns the tensors under the target's state_dict names and a :class:`LoadReport`:

    * body weights must all be present with the right shape, or :class:`CheckpointError` names the key;
    * head weights the checkpoint lacks are reported in ``missing_keys`` (the backend initialises them);
    * tensors the target has no place for (another head, stale buffers) are in ``unexpected_keys`` and dropped;
    * a tied ``lm_head.weight`` is the word embedding and is neither expected nor unexpected;
    * a shape mismatch raises with both shapes, unless ``ignore_mismatched_sizes`` (head weights are then
      re-initialised and listed in ``mismatched_keys``, as HF does).
    """
    architecture = normalize_architecture(architecture)
    source = layout.canonical_names(tensors)
    expected = layout.canonical_names({k: v for k, v in expected_shapes(config, architecture).items()})
    report = LoadReport()
    matched: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        if name not in source:
            if layout.is_body_key(name):
                raise CheckpointError(f"the checkpoint has no {name!r}, a weight every GPT-2 body needs (shape {shape})")
            report.missing_keys.append(name)
            continue
        value = source[name]
        if tuple(value.shape) != tuple(shape):
            if ignore_mismatched_sizes and not layout.is_body_key(name):
                report.mismatched_keys.append((name, tuple(value.shape), tuple(shape)))
                report.missing_keys.append(name)
                continue
            raise CheckpointError(
                f"shape mismatch for {name!r}: the checkpoint has {tuple(value.shape)}, the model expects {tuple(shape)}"
                + (" (pass ignore_mismatched_sizes=True to re-initialise this head)" if not layout.is_body_key(name) else "")
            )
        if not (np.issubdtype(value.dtype, np.floating) or value.dtype.name == "bfloat16"):
            raise CheckpointError(f"{name!r} has dtype {value.dtype}, which cannot hold a float parameter")
        matched[name] = value
    tied = config.tie_word_embeddings and architecture in ("GPT2LMHeadModel", "GPT2DoubleHeadsModel")
    for name in source:
        if name not in expected and not (tied and name == "lm_head.weight"):
            report.unexpected_keys.append(name)
    out = layout.to_architecture_names(matched, architecture)
    report.missing_keys = list(layout.to_architecture_names(dict.fromkeys(report.missing_keys), architecture))
    return out, report


# ------------------------------------------------------------------------------------------ writing
def parse_size(size: int | str) -> int:
    """``5GB``, ``500MB``, ``10GiB`` or an int of bytes -> bytes."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", str(size), flags=re.I)
    if not m:
        raise ValueError(f"cannot read size {size!r}; write e.g. 5GB, 500MB or a number of bytes")
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    return int(float(m.group(1)) * units[(m.group(2) or "").upper()])


def _drop_tied(tensors: dict[str, np.ndarray], config: GPT2Config) -> dict[str, np.ndarray]:
    if config.tie_word_embeddings and "lm_head.weight" in tensors:
        return {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    return tensors


def save_checkpoint(
    save_directory: str | os.PathLike,
    tensors: dict[str, np.ndarray],
    config: GPT2Config,
    *,
    format: str = "safetensors",
    architecture: str | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    progress: ProgressFn | None = None,
    generation_config: GenerationConfig | None = None,
    dtype: str | np.dtype | None = None,
    release_sources: bool = False,
) -> list[Path]:
    """Write ``config.json`` and the weights in ``format`` under HF's file names; return the files written.

    ``tensors`` may use any naming style; they are written under ``architecture``'s
    own names (default: ``config.architectures[0]`` or inferred). A tied ``lm_head`` is
    not written (HF does the same). safetensors and pytorch_model.bin above ``max_shard_size``
    are sharded as HF shards them (``model-00001-of-0000N.safetensors`` + ``model.safetensors.index.json``,
    ``pytorch_model-00001-of-0000N.bin`` + ``pytorch_model.bin.index.json``). A ``generation_config``
    (:class:`gpt2_multi.generation.GenerationConfig`, what the models that can generate hold) is written as
    ``generation_config.json``, as HF does.

    Memory: tensors are written one at a time, each converted (layout transpose, ``dtype``) in row blocks
    just before it is written (:mod:`gpt2_multi.checkpoint.streaming`); views in, no second copy of the
    weights. ``dtype`` (``"bf16"``, ``"fp16"``, ``"fp32"``) casts every float tensor and is recorded in the
    config. ``release_sources=True`` drops each memory-mapped source tensor's pages once it is written
    (what :func:`convert` does); never pass it for arrays backing a live model. ``progress(what, bytes
    done, bytes in all)`` is called after each tensor.

    Kill safety: every file is written to a temporary name (``.<name>.<pid>.<random>.tmp``, which no reader
    looks at) and renamed into place, so a file under its final name is complete, old or new. A sharded
    save writes its shards, then its index *last* (an atomic rename over the old index), then removes the
    files of the previous save that the new one does not use. An index never names shards of another save:
    where a new shard would overwrite a file the old index lists (a re-save with the same shard count, or a
    convert into the source's own directory), the new shards are first written under temporary names, and
    only their renames and the index write lie between removing the old index and writing the new one (a
    kill in that window leaves the new shards complete and no index, until a rerun). Otherwise the old save
    stays loadable until the new index replaces it. The config is written after the weights.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; choose one of {', '.join(FORMATS)}")
    target = streaming.parse_dtype(dtype)
    if format == "tf" and target is not None and target.name == "bfloat16":
        raise ValueError("tf_model.h5 cannot hold bfloat16 (Keras 2 h5 files have none): write it as float16 or "
                         "float32, or choose another format for bfloat16")
    directory = Path(save_directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cannot save into {directory}: it is a file")
    canonical = layout.canonical_names(tensors)
    if architecture is None:
        architecture = _architecture_from(config, canonical)
    architecture = normalize_architecture(architecture)
    canonical = _drop_tied(canonical, config)
    named = {k: np.asarray(v) for k, v in layout.to_architecture_names(canonical, architecture).items()}
    max_shard = parse_size(max_shard_size)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)

    overrides: dict = {"architectures": [architecture]}
    if target is not None:
        overrides.update(torch_dtype=target.name, dtype=target.name)
    config_to_save = config.copy(**overrides)
    stream = streaming.WriteStream(target, release=release_sources, progress=progress)
    stream.total = sum(stream.out_nbytes(v) for v in named.values())
    written: list[Path] = []
    if format in ("safetensors", "pt-bin"):
        written += _save_sharded(directory, format, named, max_shard, stream)
    elif format == "tf":
        from gpt2_multi.checkpoint import tf_h5

        tf_h5.save(directory / WEIGHTS_NAMES["tf"], named, architecture, stream=stream)
        written.append(directory / WEIGHTS_NAMES["tf"])
    else:
        from gpt2_multi.checkpoint import flax_msgpack

        flax_msgpack.save(directory / WEIGHTS_NAMES["flax"], named, architecture, stream=stream)
        written.append(directory / WEIGHTS_NAMES["flax"])
    written.append(config_to_save.save_pretrained(directory))
    if generation_config is not None:
        written.append(generation_config.save_pretrained(directory))
    return written


_SHARD_RE = {"safetensors": re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$"),
             "pt-bin": re.compile(r"^pytorch_model-\d{5}-of-\d{5}\.bin$")}
_INDEX_NAMES = {"safetensors": SAFE_INDEX_NAME, "pt-bin": BIN_INDEX_NAME}


def _shard_file_name(format: str, index: int, count: int) -> str:
    if format == "safetensors":
        return f"model-{index:05d}-of-{count:05d}.safetensors"
    return f"pytorch_model-{index:05d}-of-{count:05d}.bin"


def _save_sharded(directory: Path, format: str, named: dict[str, np.ndarray], max_shard: int,
                  stream: streaming.WriteStream) -> list[Path]:
    """safetensors or pytorch_model.bin: one file when it fits in ``max_shard`` bytes, else HF's shards + index."""
    shards: list[list[str]] = [[]]
    size = 0
    for name in sorted(named):
        nbytes = stream.out_nbytes(named[name])
        if shards[-1] and size + nbytes > max_shard:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    index_path = directory / _INDEX_NAMES[format]

    def write(path: Path, names: list[str]) -> None:
        part = {n: named[n] for n in names}
        if format == "safetensors":
            safetensors_io.save(path, part, {"format": "pt"}, stream=stream)
        else:
            from gpt2_multi.checkpoint import torch_bin

            torch_bin.save(path, part, stream=stream)

    if len(shards) == 1:
        path = directory / WEIGHTS_NAMES[format]
        write(path, shards[0])
        _remove_other_weights(directory, format, keep={path.name})
        return [path]
    shard_names = [_shard_file_name(format, i, len(shards)) for i in range(1, len(shards) + 1)]
    staged = bool(_indexed_shards(index_path) & set(shard_names))  # a new shard would overwrite an indexed one
    written, weight_map, renames = [], {}, []
    for name, names in zip(shard_names, shards):
        final = directory / name
        target = directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp" if staged else final
        write(target, names)
        renames.append((target, final))
        written.append(final)
        weight_map.update(dict.fromkeys(names, name))
    if staged:
        index_path.unlink(missing_ok=True)  # the old index must never name a mix of old and new shards
        for target, final in renames:
            os.replace(target, final)
    index = {"metadata": {"total_size": stream.total}, "weight_map": dict(sorted(weight_map.items()))}
    atomic_write_text(index_path, json.dumps(index, indent=2) + "\n")  # last: it makes the shards a checkpoint
    written.append(index_path)
    _remove_other_weights(directory, format, keep={p.name for p in written})
    return written


def _indexed_shards(index_path: Path) -> set[str]:
    """The shard file names an existing index lists (none when there is no readable index)."""
    try:
        return set(json.loads(index_path.read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _remove_other_weights(directory: Path, format: str, keep: set[str]) -> None:
    """Remove this format's weight files of an earlier save that the one just written does not use."""
    for child in directory.iterdir():
        name = child.name
        ours = name in (WEIGHTS_NAMES[format], _INDEX_NAMES[format]) or _SHARD_RE[format].match(name)
        if ours and name not in keep and child.is_file():
            child.unlink(missing_ok=True)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str,
    *,
    src_format: str | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    progress: ProgressFn | None = None,
    dtype: str | np.dtype | None = None,
) -> list[Path]:
    """Convert the checkpoint at ``src`` into ``to`` under ``dst`` (config.json and any generation_config copied).

    Streams tensor by tensor from the memory-mapped source (see :func:`save_checkpoint`): peak memory is
    about one tensor above the interpreter's, whatever the checkpoint's size (a ``.bin`` target: one shard).
    ``dtype`` casts the weights (``"bf16"``, ``"fp16"``, ``"fp32"``). ``dst`` may be the source's own directory:
    files are replaced by rename, and the maps being read keep the replaced files' contents.
    """
    ckpt = load_checkpoint(src, format=src_format)
    tensors, ckpt.tensors = ckpt.tensors, {}
    written = save_checkpoint(dst, tensors, ckpt.config, format=to, architecture=ckpt.architecture,
                              max_shard_size=max_shard_size, progress=progress, dtype=dtype, release_sources=True)
    del tensors
    if ckpt.directory is not None:
        from gpt2_multi.generation.config import GENERATION_CONFIG_NAME  # the generation package only here

        gen = ckpt.directory / GENERATION_CONFIG_NAME
        if gen.is_file():
            target = Path(dst) / gen.name
            atomic_write_text(target, gen.read_text(encoding="utf-8"))
            written.append(target)
    return written
