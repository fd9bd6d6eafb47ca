"""``gpt2-multi train``: one framework-free driver, and a small trainer per backend that owns only array code.

The driver (this module) decides everything a user can observe, once for every backend: the settings and
their errors, the starting weights, the data and its batches (:mod:`gpt2_multi.training.data`), the
learning-rate schedule, the held-out evaluation, the progress bar, the checkpoints, ``--resume`` and
Ctrl-C. A backend contributes a ``Trainer`` class in its stack's ``training`` module
(``gpt2_multi/<stack>/training.py``) that runs the AdamW steps in the framework's own way: a PyTorch
optimizer loop, Keras ``fit``, an optax step under ``jax.jit``. Its interface:

=================================================  ===================================================================
``Trainer(path, hyper, seed)``                     the stack's ``GPT2LMHeadModel`` loaded from the checkpoint at ``path``
                                                   and an AdamW optimizer (:class:`gpt2_multi.training.AdamWHyper`,
                                                   decay masked by :func:`gpt2_multi.training.decays`); ``seed``
                                                   seeds dropout where the framework lets a step be seeded
                                                   (PyTorch and Flax: step ``s`` draws from ``(seed, s)``;
                                                   Keras draws its own masks)
``fit(loop)``                                      runs steps ``loop.start .. loop.stop - 1``: inputs ``loop.batch(s)``,
                                                   learning rate ``loop.learning_rate(s)``; after each step calls
                                                   ``loop.step_done(s, loss)`` and stops early when it returns False
``eval_loss(input_ids) -> float``                  the mean LM loss of a batch, without dropout and without an update
``weights() -> {name: array}``                     float32 numpy, HF PyTorch names and layout (a tied head not listed)
``optimizer_state() -> OptimizerState``            the AdamW moments under the same names, and the step count
``load_optimizer_state(state)``                    the inverse, for ``--resume``
=================================================  ===================================================================

Because the starting weights, the batches and the learning rate of every step come from here, the same
settings give the same loss curve in every backend, up to float32 rounding (and, in Keras, AdamW's epsilon
placement: see :mod:`gpt2_multi.training`), as long as dropout is off; with dropout on, each framework draws
its own masks. The optimizer state is stored in the shared layout, so a run started in one backend resumes
in another.

The output directory
    ``OUT/checkpoint-<step>/`` is a complete checkpoint: ``config.json``, ``generation_config.json``,
    ``model.safetensors``, the tokenizer's files, ``optimizer.safetensors`` (``exp_avg.<name>``,
    ``exp_avg_sq.<name>``) and ``trainer_state.json`` (the settings, the step, the loss history). It is
    written into a temporary directory and renamed into place, so a checkpoint directory is either complete
    or absent; the newest ``keep`` are kept. At the end of the run (or on Ctrl-C) the model, config and
    tokenizer are also written to ``OUT`` itself, so ``from_pretrained(OUT)`` works in every backend.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpt2_multi.training import LAYER_NORMS, AdamWHyper
from gpt2_multi.training.data import (
    DataError,
    TokenStreams,
    batch_at,
    eval_batches,
    eval_windows,
    tokenize_corpus,
)

#: the model ``gpt2-multi train`` builds when neither ``--init`` nor ``--config`` is given (the embedded model's shape)
TINY_CONFIG: dict[str, Any] = {"vocab_size": 50257, "n_positions": 256, "n_embd": 128, "n_layer": 4, "n_head": 4,
                               "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}

ARCHITECTURE = "GPT2LMHeadModel"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
#: the config fields that fix the parameters' shapes (a resumed run must match them)
SHAPE_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner")


class TrainingError(ValueError):
    """A training run that cannot start or continue: bad settings, or a checkpoint that does not fit."""


# -------------------------------------------------------------------------------------------- settings
@dataclass
class TrainSettings:
    """What a run is, as ``gpt2-multi train``'s options name it. ``None`` means "the default" (or, on
    ``--resume``, the value the run was started with)."""

    backend: str
    data: str
    out: str
    init: str | None = None
    config: str | None = None
    steps: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    min_lr_ratio: float | None = None
    warmup: int | None = None
    weight_decay: float | None = None
    seed: int | None = None
    eval_every: int | None = None
    save_every: int | None = None
    eval_windows: int | None = None
    keep: int = 2
    stop_at: int | None = None  # stop after this step as Ctrl-C does (the schedule stays that of ``steps``)
    resume: bool = False
    progress: bool = True


#: the defaults of the run-defining settings (what trainer_state.json records)
DEFAULTS: dict[str, Any] = {"steps": 1000, "batch_size": 16, "seq_len": 128, "lr": 2e-3, "min_lr_ratio": 0.1,
                            "warmup": None, "weight_decay": 0.1, "seed": 0, "eval_every": 100, "save_every": None,
                            "eval_windows": 64}
RUN_KEYS = tuple(DEFAULTS)


def learning_rate(step: int, run: dict[str, Any]) -> float:
    """The learning rate of step ``step`` (0-based): linear warm-up over ``warmup`` steps to ``lr``, then a
    cosine decay to ``lr * min_lr_ratio`` at the last step."""
    lr, steps, warmup = run["lr"], run["steps"], run["warmup"]
    if step < warmup:
        return lr * (step + 1) / warmup
    floor = lr * run["min_lr_ratio"]
    progress = (step - warmup) / max(1, steps - warmup - 1)
    return floor + 0.5 * (lr - floor) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _check_run(run: dict[str, Any], config) -> None:
    positive = ("steps", "batch_size", "seq_len", "eval_every", "save_every", "eval_windows")
    for key in positive:
        if not isinstance(run[key], int) or run[key] < 1:
            raise TrainingError(f"--{key.replace('_', '-')} must be a positive integer, got {run[key]!r}")
    if not run["lr"] > 0 or not math.isfinite(run["lr"]):
        raise TrainingError(f"--lr must be > 0, got {run['lr']}")
    if not 0 <= run["min_lr_ratio"] <= 1:
        raise TrainingError(f"--min-lr-ratio must lie in [0, 1], got {run['min_lr_ratio']}")
    if not isinstance(run["warmup"], int) or run["warmup"] < 0:
        raise TrainingError(f"--warmup must be an integer >= 0, got {run['warmup']!r}")
    if not run["weight_decay"] >= 0:  # NaN fails too
        raise TrainingError(f"--weight-decay must be >= 0, got {run['weight_decay']}")
    if run["warmup"] > run["steps"]:
        raise TrainingError(f"--warmup {run['warmup']} is longer than the run (--steps {run['steps']})")
    if run["seq_len"] > config.n_positions:
        raise TrainingError(f"--seq-len {run['seq_len']} is longer than the model's context: n_positions={config.n_positions}")


# ------------------------------------------------------------------------------------ starting weights
def init_weights(config, seed: int) -> dict[str, np.ndarray]:
    """Fresh ``GPT2LMHeadModel`` weights with HF's initialisation, from ``seed`` (numpy: the same in every
    backend): normal(0, initializer_range) for embeddings and projections, the residual projections
    (``c_proj``) scaled by ``1 / sqrt(2 * n_layer)`` as GPT-2's paper does, LayerNorm weights 1, biases 0."""
    from gpt2_multi.checkpoint import expected_shapes

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in expected_shapes(config, ARCHITECTURE).items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if name.endswith(".bias"):
            out[name] = np.zeros(shape, np.float32)
        elif name.split(".")[-2] in LAYER_NORMS:
            out[name] = np.ones(shape, np.float32)
        else:
            std = config.initializer_range
            if name.endswith("c_proj.weight"):
                std /= math.sqrt(2 * config.n_layer)
            out[name] = (std * rng.standard_normal(shape)).astype(np.float32)
    return out


def resolve_config(spec: str):
    """``--config``: a built-in size (``gpt2``, ``gpt2-medium``, ...), ``tiny`` (:data:`TINY_CONFIG`), a model
    name or directory with a ``config.json``, a JSON file, or a JSON object written inline."""
    from gpt2_multi import GPT2Config
    from gpt2_multi.config import BUILTIN_CONFIGS, ConfigError

    if spec == "tiny":
        return GPT2Config(**TINY_CONFIG, architectures=[ARCHITECTURE])
    if spec.lstrip().startswith("{"):
        try:
            return GPT2Config.from_dict(json.loads(spec))
        except json.JSONDecodeError as err:
            raise TrainingError(f"--config is not valid JSON: {err}") from None
    try:
        return GPT2Config.from_pretrained(spec)
    except (OSError, ConfigError) as err:
        names = ", ".join(["tiny", *BUILTIN_CONFIGS])
        raise TrainingError(f"unknown --config {spec!r}: {err}. Give a built-in size ({names}), a model name or "
                            "directory with a config.json, a JSON file, or a JSON object") from None


# ---------------------------------------------------------------------------------------- checkpoints
@dataclass
class OptimizerState:
    """AdamW's state in the shared layout: the completed steps, and both moments per HF parameter name."""

    step: int
    exp_avg: dict[str, np.ndarray]
    exp_avg_sq: dict[str, np.ndarray]

    def tensors(self) -> dict[str, np.ndarray]:
        out = {f"exp_avg.{k}": v for k, v in self.exp_avg.items()}
        out.update({f"exp_avg_sq.{k}": v for k, v in self.exp_avg_sq.items()})
        return out

    @classmethod
    def from_tensors(cls, step: int, tensors: dict[str, np.ndarray]) -> OptimizerState:
        avg = {k[len("exp_avg."):]: v for k, v in tensors.items() if k.startswith("exp_avg.")}
        sq = {k[len("exp_avg_sq."):]: v for k, v in tensors.items() if k.startswith("exp_avg_sq.")}
        return cls(step, avg, sq)

    def check_names(self, names: set[str], where: Path) -> None:
        if set(self.exp_avg) != names or set(self.exp_avg_sq) != names:
            missing = sorted(names - set(self.exp_avg))
            extra = sorted(set(self.exp_avg) - names)
            raise TrainingError(f"{where / OPTIMIZER_FILE} does not match the model: missing moments for {missing[:3]}, "
                                f"moments of unknown parameters {extra[:3]}")


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    """The complete checkpoints under ``out``, oldest first (temporary directories are not listed)."""
    if not out.is_dir():
        return []
    found = []
    for child in out.iterdir():
        m = CHECKPOINT_RE.match(child.name)
        if m and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def _write_model(directory: Path, weights: dict[str, np.ndarray], config, tokenizer) -> None:
    from gpt2_multi.checkpoint import save_checkpoint
    from gpt2_multi.generation import GenerationConfig

    if getattr(config, "torch_dtype", None) not in (None, "float32"):  # the weights written are float32
        config = config.copy(torch_dtype="float32")
    save_checkpoint(directory, weights, config, architecture=ARCHITECTURE,
                    generation_config=GenerationConfig.from_model_config(config))
    tokenizer.save_pretrained(directory)


def save_checkpoint_dir(out: Path, step: int, trainer, config, tokenizer, state: dict[str, Any], keep: int) -> Path:
    """Write ``out/checkpoint-<step>`` atomically (a temporary directory renamed into place); prune to ``keep``."""
    from gpt2_multi.checkpoint import safetensors_io

    final = out / f"checkpoint-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".checkpoint-{step}.", suffix=".tmp", dir=out))
    try:
        _write_model(tmp, trainer.weights(), config, tokenizer)
        opt = trainer.optimizer_state()
        safetensors_io.save(tmp / OPTIMIZER_FILE, opt.tensors(), {"format": "gpt2-multi", "step": str(opt.step)})
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
        old = _set_aside(final, "replaced") if final.exists() else None  # the same step again (a resume stopped at once)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for _, pruned in checkpoints(out)[:-keep]:
        shutil.rmtree(_set_aside(pruned, "pruned"), ignore_errors=True)
    return final


def _set_aside(directory: Path, why: str) -> Path:
    """Rename a checkpoint directory to a temporary name before deleting it, so that a kill during the deletion
    leaves a temporary, never a partly deleted ``checkpoint-<step>``. ``why`` is "pruned" (beyond ``--keep``:
    deleted next) or "replaced" (the same step written again: complete until the new one is renamed in, and
    restored by :func:`_remove_stale_temporaries` if a kill came in between)."""
    aside = directory.with_name(f".{directory.name}.{why}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    os.rename(directory, aside)
    return aside


def _remove_stale_temporaries(out: Path) -> None:
    """Leftovers of a killed run: temporary, set-aside or initial-weights directories (never read). A checkpoint set
    aside to be replaced whose replacement never arrived (killed between the two renames) is put back instead."""
    for child in out.glob(".checkpoint-*.replaced.*.tmp"):
        final = out / child.name[1:].split(".replaced.", 1)[0]
        if not final.exists() and (child / STATE_FILE).is_file():
            os.rename(child, final)
    for child in [*out.glob(".checkpoint-*.tmp"), *out.glob(".init-*")]:
        shutil.rmtree(child, ignore_errors=True)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise TrainingError(f"--out {out} is not a writable directory: {err.strerror or err}") from None


# ---------------------------------------------------------------------------------------------- the loop
@dataclass
class TrainLoop:
    """What a backend's ``Trainer.fit`` is handed: the steps to run, and where their inputs come from."""

    start: int
    stop: int
    batch: Any  # step -> (B, T) int32 numpy inputs
    learning_rate: Any  # step -> float
    step_done: Any  # (step, loss) -> bool: False stops the run


@dataclass
class TrainResult:
    out: Path
    step: int
    interrupted: bool  # by Ctrl-C (a --stop-at stop is not an interruption)
    total: int = 0  # the run's --steps
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class _Interrupt:
    """Ctrl-C sets a flag; the loop stops after the step in progress and writes a checkpoint. A second
    Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _Interrupt:
        if sys.platform != "win32" and _in_main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _log(message: str, bar) -> None:
    if bar is not None:
        bar.write(message)
    else:
        print(message, flush=True)


def _trainer_class(backend: str):
    from gpt2_multi import backends

    record = backends.get(backend)
    if not backends.stack_available(backend):
        raise TrainingError(f"the {record.label} backend is not installed ({record.install_hint()})")
    from gpt2_multi import logs

    with logs.captured_stderr():
        return importlib.import_module(f"{record.package}.training").Trainer


def _tokenizer_for(source: Path | None):
    from gpt2_multi.tokenization import GPT2TokenizerFast

    if source is not None and ((source / "vocab.json").is_file() or (source / "tokenizer.json").is_file()):
        return GPT2TokenizerFast.from_pretrained(source)
    return GPT2TokenizerFast.from_pretrained("gpt2")


def _start(settings: TrainSettings, out: Path):
    """The config, starting weights, optimizer state, tokenizer source and run settings of a run."""
    from gpt2_multi.checkpoint import load_checkpoint
    from gpt2_multi.hub import resolve

    explicit = {k: getattr(settings, k) for k in RUN_KEYS if getattr(settings, k) is not None}
    found = checkpoints(out)
    if settings.resume:
        if not found:
            raise TrainingError(f"--resume: {out} holds no checkpoint to resume (no complete checkpoint-<step> directory)")
        step, where = found[-1]
        stored = json.loads((where / STATE_FILE).read_text())
        ckpt = load_checkpoint(where)
        config = ckpt.config
        for flag, spec in (("--config", settings.config), ("--init", settings.init)):
            if spec is None:
                continue
            other = resolve_config(spec) if flag == "--config" else load_checkpoint(spec).config
            diff = [f"{k} {getattr(config, k)} vs {getattr(other, k)}" for k in SHAPE_FIELDS
                    if getattr(config, k) != getattr(other, k)]
            if diff:
                raise TrainingError(f"--resume: the checkpoint in {where} has another shape than {flag} {spec}: "
                                    f"{'; '.join(diff)}")
        from gpt2_multi.checkpoint import safetensors_io

        opt = OptimizerState.from_tensors(int(stored["step"]), safetensors_io.load(where / OPTIMIZER_FILE))
        run = {**stored["run"], **explicit}
        return config, None, opt, where, run, stored
    if found:
        raise TrainingError(f"{out} already holds a training run (checkpoint-{found[-1][0]}); pass --resume to continue "
                            "it, or choose another --out")
    if settings.init is not None and settings.config is not None:
        raise TrainingError("--init and --config both name the model; give one (--init starts from a checkpoint's "
                            "weights, --config from fresh weights of that shape)")
    run = {**DEFAULTS, **explicit}
    if settings.init is not None:
        return load_checkpoint(settings.init).config, None, None, resolve(settings.init), run, None
    config = resolve_config(settings.config or "tiny")
    if not config.architectures:
        config = config.copy(architectures=[ARCHITECTURE])
    return config, init_weights(config, run["seed"]), None, None, run, None


def train(settings: TrainSettings) -> TrainResult:
    """Run (or resume) a training run; see the module docstring."""
    trainer_class = _trainer_class(settings.backend)
    out = Path(settings.out).expanduser()
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file; give a directory")
    config, weights, opt_state, source, run, stored = _start(settings, out)
    if run["warmup"] is None:
        run["warmup"] = min(100, run["steps"] // 10)
    if run["save_every"] is None:
        run["save_every"] = run["eval_every"]
    _check_run(run, config)
    start = opt_state.step if opt_state is not None else 0
    if start >= run["steps"]:
        raise TrainingError(f"--resume: the run in {out} has already done {start} of its {run['steps']} steps; "
                            "pass a larger --steps to train further")
    if settings.stop_at is not None and not start < settings.stop_at <= run["steps"]:
        raise TrainingError(f"--stop-at {settings.stop_at} must lie after the run's current step ({start}) and at most "
                            f"--steps ({run['steps']})")
    if not isinstance(settings.keep, int) or settings.keep < 1:
        raise TrainingError(f"--keep must be a positive integer, got {settings.keep!r}")
    tokenizer = _tokenizer_for(source)
    streams = tokenize_corpus(settings.data, tokenizer, run["seq_len"])
    top = int(max(streams.train.max(), streams.heldout.max()))
    if top >= config.vocab_size:
        raise DataError(f"the data's token ids go up to {top}, outside the model's vocabulary (vocab_size={config.vocab_size})")
    if stored is not None and stored.get("data") != streams.fingerprint:
        print(f"note: the data differs from the data the run was started with (token stream "
              f"{streams.fingerprint} vs {stored.get('data')}); training continues on the new data", file=sys.stderr)
    _check_writable(out)
    _remove_stale_temporaries(out)
    hyper = AdamWHyper(lr=run["lr"], weight_decay=run["weight_decay"])
    from gpt2_multi import logs

    with logs.captured_stderr():  # the framework's first model prints C++ log lines (device discovery)
        if weights is None:  # --init or --resume: the backend loads the checkpoint itself
            trainer = trainer_class(source, hyper, seed=run["seed"])
        else:  # fresh weights: written once, loaded as any checkpoint would be
            with tempfile.TemporaryDirectory(prefix=".init-", dir=out) as tmp:
                from gpt2_multi.checkpoint import save_checkpoint

                save_checkpoint(tmp, weights, config, architecture=ARCHITECTURE)
                trainer = trainer_class(Path(tmp), hyper, seed=run["seed"])
    if opt_state is not None:
        opt_state.check_names(set(trainer.weights()), source)  # type: ignore[arg-type]
        trainer.load_optimizer_state(opt_state)
    return _run(trainer, settings, run, config, tokenizer, streams, out, start, stored)


def _run(trainer, settings, run, config, tokenizer, streams: TokenStreams, out: Path, start: int, stored) -> TrainResult:
    windows = eval_windows(streams.heldout, run["seq_len"], run["eval_windows"])
    history = list(stored.get("history", [])) if stored else []
    evals = list(stored.get("evals", [])) if stored else []
    result = TrainResult(out, start, False, total=run["steps"], history=history, evals=evals)
    print(f"training {config.n_layer} layers x n_embd {config.n_embd} ({sum(v.size for v in trainer.weights().values()):,} "
          f"parameters) in {settings.backend} on {streams.train.size:,} tokens from {streams.files} file(s) "
          f"({streams.heldout.size:,} held out); steps {start}..{run['steps']}, batch {run['batch_size']} x "
          f"{run['seq_len']}", file=sys.stderr)
    bar = None
    if settings.progress:
        from tqdm import tqdm

        bar = tqdm(total=run["steps"], initial=start, unit="step", desc=f"train {settings.backend}", file=sys.stderr,
                   dynamic_ncols=True)
    tokens_per_step = run["batch_size"] * run["seq_len"]
    clock = {"t": time.perf_counter(), "started": time.perf_counter()}

    def state() -> dict[str, Any]:
        return {"backend": settings.backend, "run": run, "data": streams.fingerprint, "history": history,
                "evals": evals}

    def evaluate(step: int) -> None:
        losses, rows = 0.0, 0
        for batch in eval_batches(windows, run["batch_size"]):
            losses += trainer.eval_loss(batch) * len(batch)
            rows += len(batch)
        loss = losses / rows
        evals.append({"step": step, "loss": loss, "perplexity": math.exp(min(loss, 50.0))})
        _log(f"step {step}: held-out loss {loss:.4f}, perplexity {math.exp(min(loss, 50.0)):.2f}", bar)

    with _Interrupt() as interrupt:
        def step_done(step: int, loss: float) -> bool:
            now = time.perf_counter()
            done = step + 1
            if not math.isfinite(loss):
                raise TrainingError(f"the loss became {loss} at step {done}; lower --lr")
            history.append({"step": done, "loss": float(loss), "lr": learning_rate(step, run)})
            result.step = done
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_step / max(now - clock['t'], 1e-9):.0f}")
                bar.update(1)
            if done % run["eval_every"] == 0 or done == run["steps"]:
                evaluate(done)
            if done % run["save_every"] == 0 and done != run["steps"]:
                save_checkpoint_dir(out, done, trainer, config, tokenizer, state(), settings.keep)
            clock["t"] = time.perf_counter()
            if interrupt.requested:
                result.interrupted = True
                return False
            return not (settings.stop_at is not None and done >= settings.stop_at)

        try:
            trainer.fit(TrainLoop(start, run["steps"], lambda s: batch_at(streams.train, s, run["batch_size"], run["seq_len"], run["seed"]),
                                  lambda s: learning_rate(s, run), step_done))
        finally:
            if bar is not None:
                bar.close()
        stopped = result.step < run["steps"]
        if stopped:  # Ctrl-C or --stop-at: the checkpoint first, with no evaluation in the way
            print(f"stopped after step {result.step}: writing a checkpoint (continue with --resume)", file=sys.stderr)
        elif not evals or evals[-1]["step"] != result.step:
            evaluate(result.step)
        saved = checkpoints(out)
        if not saved or saved[-1][0] != result.step:  # step_done may have just written it
            save_checkpoint_dir(out, result.step, trainer, config, tokenizer, state(), settings.keep)
        _write_model(out, trainer.weights(), config, tokenizer)
    result.seconds = time.perf_counter() - clock["started"]
    return result


__all__ = ["DEFAULTS", "TINY_CONFIG", "OptimizerState", "TrainLoop", "TrainResult", "TrainSettings", "TrainingError",
           "checkpoints", "init_weights", "learning_rate", "resolve_config", "save_checkpoint_dir", "train"]
