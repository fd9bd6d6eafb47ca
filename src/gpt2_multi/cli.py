"""The ``gpt2-multi`` command (also ``python -m gpt2_multi``).

    gpt2-multi demo [--model PATH] [--backends pt,tf,flax] [--prompt TEXT] [--new-tokens N]
    gpt2-multi generate --backend {pt,tf,flax} [--model PATH] --prompt TEXT [--max-new-tokens N] [--do-sample ...]
    gpt2-multi convert SRC DST --to {safetensors,pt-bin,tf,flax} [--max-shard-size 5GB] [--dtype bf16]
    gpt2-multi conform [CKPT] [--golden DIR] [--full] [--json]
    gpt2-multi train --backend {pt,tf,flax} --data FILE_OR_DIR --out DIR [--init PATH | --config NAME_OR_JSON] [--steps N] ...
    gpt2-multi info PATH
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gpt2_multi import __version__
from gpt2_multi.backends import BACKENDS
from gpt2_multi.checkpoint import FORMATS, CheckpointError, convert, find_weights, load_checkpoint
from gpt2_multi.demo import (
    DEFAULT_MODEL,
    DEMO_EVAL_LENGTH,
    DEMO_EVAL_WINDOWS,
    DEMO_PROMPT,
    HELDOUT_FILE,
    embedded_summary,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt2-multi", description="GPT-2 for PyTorch, TensorFlow/Keras and JAX/Flax.")
    parser.add_argument("--version", action="version", version=f"gpt2-multi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="load one checkpoint in every installed backend; print parity and generations")
    demo.add_argument("--model", default=DEFAULT_MODEL,
                      help=f"a checkpoint directory or model name (default: {DEFAULT_MODEL}, trained and shipped in the package)")
    demo.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {','.join(BACKENDS)} (default: all installed)")
    demo.add_argument("--prompt", default=DEMO_PROMPT)
    demo.add_argument("--new-tokens", type=int, default=24)
    demo.add_argument("--verbose", action="store_true", help="let the frameworks' own log lines through")

    conv = sub.add_parser("convert", help="convert a checkpoint between formats")
    conv.add_argument("src", help="a checkpoint directory, weights file or hub name")
    conv.add_argument("dst", help="output directory")
    conv.add_argument("--to", required=True, choices=FORMATS)
    conv.add_argument("--from", dest="src_format", choices=FORMATS, help="read this format when SRC has several")
    conv.add_argument("--max-shard-size", default="5GB",
                      help="largest safetensors / pytorch_model.bin file before sharding (e.g. 500MB); default 5GB")
    conv.add_argument("--dtype", choices=["fp32", "fp16", "bf16", "float32", "float16", "bfloat16"],
                      help="cast the weights (default: keep the source's dtype)")
    conv.add_argument("--no-progress", action="store_true")

    gen = sub.add_parser("generate", help="stream a continuation of a prompt from one backend")
    gen.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0])
    gen.add_argument("--model", default=DEFAULT_MODEL, help=f"checkpoint directory or model name (default: {DEFAULT_MODEL})")
    gen.add_argument("--prompt", default=DEMO_PROMPT)
    gen.add_argument("--max-new-tokens", type=int, default=32)
    gen.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=50)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--repetition-penalty", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0, help="sampling seed")
    gen.add_argument("--verbose", action="store_true", help="let the frameworks' own log lines through")

    train = sub.add_parser("train", help="train or fine-tune a GPT-2 LM on plain UTF-8 text, in any backend",
                           description="Train (or fine-tune) a GPT-2 language model on plain UTF-8 text with the chosen "
                           "framework's own loop. Checkpoints go to OUT/checkpoint-<step> (safetensors, loadable by every "
                           "backend); the final model to OUT itself. Ctrl-C writes a checkpoint and stops; --resume "
                           "continues, in any backend.")
    train.add_argument("--backend", choices=BACKENDS, required=True)
    train.add_argument("--data", required=True, help="a UTF-8 text file, or a directory of *.txt files")
    train.add_argument("--out", required=True, help="output directory (checkpoints and the final model)")
    start = train.add_mutually_exclusive_group()
    start.add_argument("--init", help="fine-tune: start from this checkpoint directory or model name")
    start.add_argument("--config", help="train from scratch: 'tiny' (the default), a built-in size (gpt2, ...), a "
                       "config.json, a model name, or inline JSON")
    train.add_argument("--steps", type=int, help="total optimizer steps (default 1000)")
    train.add_argument("--batch-size", type=int, help="sequences per step (default 16)")
    train.add_argument("--seq-len", type=int, help="tokens per sequence (default 128; at most n_positions)")
    train.add_argument("--lr", type=float, help="peak learning rate (default 2e-3)")
    train.add_argument("--min-lr-ratio", type=float, help="final learning rate / peak, after the cosine decay (default 0.1)")
    train.add_argument("--warmup", type=int, help="linear warm-up steps (default min(100, steps / 10))")
    train.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay (default 0.1)")
    train.add_argument("--seed", type=int, help="seeds the fresh weights, the batches and dropout (default 0)")
    train.add_argument("--eval-every", type=int, help="held-out loss every K steps (default 100)")
    train.add_argument("--save-every", type=int, help="checkpoint every K steps (default: --eval-every)")
    train.add_argument("--eval-windows", type=int, help="held-out windows of --seq-len tokens evaluated (default 64)")
    train.add_argument("--keep", type=int, default=2, help="checkpoints kept (default 2)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--stop-at", type=int, help="stop after this step, as Ctrl-C does (checkpoint written; the "
                       "schedule stays that of --steps, so --resume continues the same run)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--verbose", action="store_true", help="let the frameworks' own log lines through")

    conform = sub.add_parser("conform", help="run the conformance suite: every backend, same logits and KV caches")
    _add_conform_arguments(conform)

    info = sub.add_parser("info", help="summarise a checkpoint: config, parameter count, formats found")
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _add_conform_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from gpt2_multi.conformance.cli import add_arguments
    except ImportError:  # the conformance package ships with the repository and the sdist/wheel
        parser.add_argument("rest", nargs="*")
        return
    add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gpt2_multi import logs

    quiet = contextlib.nullcontext() if getattr(args, "verbose", False) else logs.quiet_environment()
    with quiet:  # before any framework is imported
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "convert":
            return cmd_convert(args)
        if args.command == "info":
            return cmd_info(args)
        if args.command == "generate":
            return cmd_generate(args)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "conform":
            from gpt2_multi.conformance.cli import run as run_conformance

            return run_conformance(args)
    except (CheckpointError, OSError, ValueError) as err:
        print(f"gpt2-multi {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 1


# ----------------------------------------------------------------------------------------- convert
def cmd_convert(args: argparse.Namespace) -> int:
    """Convert, streaming tensor by tensor; a progress bar in bytes on stderr, then the time and throughput."""
    bar = None

    def progress(what: str, done: int, total: int) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"writing {args.to}",
                       file=sys.stderr)
        bar.update(done - bar.n)

    start = time.perf_counter()
    try:
        written = convert(args.src, args.dst, args.to, src_format=args.src_format, max_shard_size=args.max_shard_size,
                          progress=progress, dtype=args.dtype)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    total = sum(path.stat().st_size for path in written)
    rate = total / seconds / 1e6 if seconds > 0 else float("inf")
    print(f"wrote {len(written)} file(s), {total / 1e6:,.1f} MB, to {args.dst} in {seconds:.2f} s ({rate:,.1f} MB/s):")
    for path in written:
        print(f"  {path.name}  ({path.stat().st_size:,} bytes)")
    return 0


# -------------------------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    from gpt2_multi import hub

    directory = hub.resolve(args.path)
    formats = []
    for fmt in FORMATS:
        try:
            _, files = find_weights(directory, fmt)
            formats.append({"format": fmt, "files": [f.name for f in files], "bytes": sum(f.stat().st_size for f in files)})
        except CheckpointError:
            continue
    ckpt = load_checkpoint(args.path)
    config = ckpt.config
    dtypes = sorted({str(v.dtype) for v in ckpt.tensors.values()})
    summary = {
        "path": str(directory),
        "architecture": ckpt.architecture,
        "read_format": ckpt.format,
        "formats": formats,
        "parameters": ckpt.num_parameters(),
        "dtypes": dtypes,
        "config": {k: getattr(config, k) for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
                                                    "activation_function", "tie_word_embeddings", "num_labels")},
    }
    card = _model_card(directory)
    if card:
        summary["about"] = card
    trained = directory / "training.json"
    if trained.is_file():
        record = json.loads(trained.read_text())
        last = record["evals"][-1]
        summary["training"] = {"steps": record["step"], "backend": record["backend"],
                               "train_tokens": record["data"]["train_tokens"], "heldout_loss": last["loss"],
                               "heldout_perplexity": last["perplexity"], "seconds": record.get("train_seconds")}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    c = summary["config"]
    print(f"{summary['path']}")
    print(f"  architecture   {ckpt.architecture}")
    print(f"  parameters     {summary['parameters']:,} ({', '.join(dtypes)})")
    print(f"  layers x width {c['n_layer']} x {c['n_embd']}, {c['n_head']} heads, MLP {config.inner_dim} ({c['activation_function']})")
    print(f"  vocab          {c['vocab_size']}, context {c['n_positions']}, tied embeddings {c['tie_word_embeddings']}")
    for f in formats:
        print(f"  format         {f['format']:<12} {', '.join(f['files'])} ({f['bytes']:,} bytes)")
    if "training" in summary:
        t = summary["training"]
        took = f" in {t['seconds'] / 60:.0f} min" if t["seconds"] else ""
        print(f"  trained        {t['steps']} steps in {t['backend']}{took} on {t['train_tokens']:,} tokens; held-out "
              f"loss {t['heldout_loss']:.4f}, perplexity {t['heldout_perplexity']:.2f}")
    if card:
        print(f"  about          {card}")
    return 0


def _model_card(directory: Path) -> str | None:
    """The first paragraph of a checkpoint's model card (``README.md``), front matter and headings skipped."""
    path = directory / "README.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if text.startswith("---"):
        text = text.split("---", 2)[-1]
    for block in text.split("\n\n"):
        block = block.strip()
        if block and not block.startswith("#"):
            return " ".join(block.split())
    return None


# -------------------------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from gpt2_multi import backends, hub

    requested = backends.parse_backends(args.backends)
    if args.new_tokens < 0:
        raise ValueError(f"--new-tokens must be >= 0, got {args.new_tokens}")
    embedded = args.model in hub.EMBEDDED_MODELS
    if embedded:
        print(f"checkpoint: {args.model}, the model that ships in the package ({embedded_summary(args.model)}; "
              f"`gpt2-multi info {args.model}` says more)")
    else:
        print(f"checkpoint: {args.model}")
    heldout = hub.resolve(args.model) / HELDOUT_FILE if embedded else None
    return _run_demo(args.model, requested, args.prompt, args.new_tokens, heldout)


def _heldout_windows(path: Path | None, tokenizer, config) -> np.ndarray | None:
    """The demo's perplexity text: the first DEMO_EVAL_WINDOWS windows of the embedded model's held-out text."""
    if path is None or not path.is_file():
        return None
    from gpt2_multi.training.data import eval_windows

    length = min(DEMO_EVAL_LENGTH, config.n_positions)
    ids = np.asarray(tokenizer.encode(path.read_text(encoding="utf-8")), dtype=np.int32)
    windows = eval_windows(ids, length, DEMO_EVAL_WINDOWS)
    return windows if len(windows) else None


def _run_demo(model_path: str, requested: list[str], prompt: str, new_tokens: int, heldout: Path | None = None) -> int:
    from gpt2_multi import GPT2Config, backends, logs
    from gpt2_multi.hub import resolve
    from gpt2_multi.tokenization import GPT2TokenizerFast

    tokenizer = GPT2TokenizerFast.from_pretrained("gpt2")
    ids = np.array([tokenizer.encode(prompt)], dtype=np.int64)
    if ids.size == 0:
        raise ValueError("the prompt is empty; pass --prompt with some text")
    config = GPT2Config.from_pretrained(resolve(model_path))
    if ids.max() >= config.vocab_size:
        raise ValueError(f"the prompt's GPT-2 token ids go up to {ids.max()}, outside this model's vocabulary "
                         f"(vocab_size={config.vocab_size}); the demo tokenizes with the GPT-2 vocabulary")
    if ids.shape[1] + new_tokens > config.n_positions:
        raise ValueError(f"prompt ({ids.shape[1]} tokens) + --new-tokens {new_tokens} exceeds n_positions={config.n_positions}")
    windows = _heldout_windows(heldout, tokenizer, config)
    print(f"prompt: {prompt!r} -> {ids.shape[1]} tokens\n")

    missing = []
    for b in map(backends.get, requested):
        if not b.installed():
            missing.append(f"{b.label}: not installed ({b.install_hint()})")
        elif not b.available():
            missing.append(f"{b.label}: installed, but the {b.package} stack is not available yet")
    runnable = [b for b in requested if backends.stack_available(b)]

    results: dict[str, dict] = {}
    for b in runnable:
        t0 = time.perf_counter()
        with logs.captured_stderr():  # the framework's import and first model print C++ log lines
            driver = backends.Driver(b, model_path)
        load = time.perf_counter() - t0
        step, _ = driver.forward(ids)
        r = {"step": step, "load": load, "tokens": np.zeros((1, 0), np.int64), "compile": 0.0, "decode": 0.0}
        if windows is not None:
            losses = [driver.lm_loss(w[None]) for w in windows]
            r["perplexity"] = math.exp(float(np.mean(losses)))
        if new_tokens:  # the backend's own generate(): greedy, no eos stop, every row the full length
            settings = dict(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
            t1 = time.perf_counter()
            driver.generate(ids, **settings)  # the first call compiles (XLA, jit) and decodes
            t2 = time.perf_counter()
            out = driver.generate(ids, **settings)  # the second only decodes
            t3 = time.perf_counter()
            r["tokens"] = out.sequences[:, ids.shape[1]:ids.shape[1] + new_tokens]
            r["decode"] = t3 - t2
            r["compile"] = max(0.0, (t2 - t1) - (t3 - t2))
        results[b] = r

    if results:
        print(f"{'backend':<18} {'load s':>7} {'compile s':>10} {'decode s':>9} {'tokens/s':>9}  (greedy, {new_tokens} new tokens)")
        for b, r in results.items():
            rate = new_tokens / r["decode"] if new_tokens and r["decode"] > 0 else float("nan")
            print(f"{backends.get(b).label:<18} {r['load']:>7.2f} {r['compile']:>10.2f} {r['decode']:>9.3f} {rate:>9.1f}")
        print()

    names = list(results)
    if len(names) >= 2:
        print("parity (max |diff| on the prompt's forward pass):")
        print(f"  {'pair':<28} {'logits':>10} {'KV cache':>10}")
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                sa, sb = results[a]["step"], results[b]["step"]
                dl = backends.max_abs_diff(sa.logits, sb.logits)
                dkv = max(max(backends.max_abs_diff(ka, kb), backends.max_abs_diff(va, vb))
                          for (ka, va), (kb, vb) in zip(sa.kv, sb.kv))
                print(f"  {backends.get(a).label + ' vs ' + backends.get(b).label:<28} {dl:>10.2e} {dkv:>10.2e}")
        same = all(np.array_equal(results[names[0]]["tokens"], results[n]["tokens"]) for n in names)
        print(f"  greedy tokens identical in every backend: {'yes' if same else 'NO'}\n")
    elif len(names) == 1:
        print("parity: only one backend ran, nothing to compare\n")

    if windows is not None and results:
        print(f"held-out perplexity ({windows.size:,} tokens of text the model never trained on):")
        for b, r in results.items():
            print(f"  {backends.get(b).label:<18} {r['perplexity']:.3f}")
        print()

    for b, r in results.items():
        text = tokenizer.decode(r["tokens"][0].tolist())
        print(f"{backends.get(b).label:<18} {prompt}\u2192{text!r}")
    if missing:
        print("\nnot run:")
        for line in missing:
            print(f"  {line}")
    if not results:
        print("\nno backend could run; the checkpoint layer and tokenizer worked (see above)")
    return 0


# ------------------------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    """``gpt2-multi train``: see :mod:`gpt2_multi.training.run`. Exit status 130 after a Ctrl-C (checkpoint written)."""
    from gpt2_multi.training.run import RUN_KEYS, TrainSettings, train

    if args.keep < 1:
        raise ValueError(f"--keep must be >= 1, got {args.keep}")
    settings = TrainSettings(backend=args.backend, data=args.data, out=args.out, init=args.init, config=args.config,
                             keep=args.keep, stop_at=args.stop_at, resume=args.resume, progress=not args.no_progress,
                             **{k: getattr(args, k) for k in RUN_KEYS})
    result = train(settings)
    last = result.evals[-1] if result.evals else None
    held = f"held-out loss {last['loss']:.4f}, perplexity {last['perplexity']:.2f}; " if last else ""
    print(f"{'stopped' if result.step < result.total else 'done'} at step {result.step} of {result.total}: "
          f"{held}{result.seconds:.1f} s; "
          f"model written to {result.out}")
    return 130 if result.interrupted else 0


# ---------------------------------------------------------------------------------------- generate
def cmd_generate(args: argparse.Namespace) -> int:
    """Stream a continuation: the backend's own ``model.generate(..., streamer=TextStreamer(tokenizer))``.

    The same arguments and ``--seed`` give the same text in every backend: sampling draws from the
    shared seeded stream (:mod:`gpt2_multi.generation.sampling`), and each backend runs its fast path
    (PyTorch's preallocated cache, TensorFlow's XLA loop, Flax's jitted loop; a streamer is fed from it).
    """
    from gpt2_multi import backends, logs
    from gpt2_multi.streamers import TextStreamer
    from gpt2_multi.tokenization import GPT2TokenizerFast

    if not backends.stack_available(args.backend):
        raise ValueError(f"the {backends.get(args.backend).label} backend is not installed "
                         f"({backends.get(args.backend).install_hint()})")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    tokenizer = GPT2TokenizerFast.from_pretrained("gpt2")
    start = time.perf_counter()
    with logs.captured_stderr():
        driver = backends.Driver(args.backend, args.model)
    load_s = time.perf_counter() - start
    ids = np.array([tokenizer.encode(args.prompt)], dtype=np.int64)
    if ids.size == 0:
        raise ValueError("the prompt is empty; pass --prompt with some text")
    settings = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample)
    if args.do_sample:
        settings.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    if args.repetition_penalty != 1.0:
        settings["repetition_penalty"] = args.repetition_penalty
    t0 = time.perf_counter()
    out = driver.generate(ids, streamer=TextStreamer(tokenizer), **settings)
    elapsed = time.perf_counter() - t0
    new = out.sequences[0, ids.shape[1]:]
    eos = driver.config.eos_token_id
    n_new = int(np.argmax(new == eos)) + 1 if eos is not None and (new == eos).any() else new.size
    print(f"\n\n[{backends.get(args.backend).label}: {n_new} tokens in {elapsed:.2f} s (compilation included), "
          f"{n_new / elapsed:.1f} tokens/s; load {load_s:.2f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
