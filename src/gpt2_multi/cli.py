"""The ``gpt2-multi`` command (also ``python -m gpt2_multi``).

    gpt2-multi demo [--model PATH] [--backends pt,tf,flax] [--prompt TEXT] [--new-tokens N]
    gpt2-multi generate --backend {pt,tf,flax} [--model PATH] --prompt TEXT [--max-new-tokens N] [--do-sample ...]
    gpt2-multi convert SRC DST --to {safetensors,pt-bin,tf,flax} [--max-shard-size 5GB]
    gpt2-multi conform [CKPT] [--golden DIR] [--full] [--json]
    gpt2-multi info PATH
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gpt2_multi import __version__
from gpt2_multi.backends import BACKENDS
from gpt2_multi.checkpoint import FORMATS, CheckpointError, convert, find_weights, load_checkpoint
from gpt2_multi.demo import DEMO_CONFIG, DEMO_PROMPT, DEMO_SEED, make_demo_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt2-multi", description="GPT-2 for PyTorch, TensorFlow/Keras and JAX/Flax.")
    parser.add_argument("--version", action="version", version=f"gpt2-multi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="load one checkpoint in every installed backend; print parity and generations")
    demo.add_argument("--model", help="a checkpoint directory or hub name (default: an embedded seeded small GPT-2)")
    demo.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {','.join(BACKENDS)} (default: all installed)")
    demo.add_argument("--prompt", default=DEMO_PROMPT)
    demo.add_argument("--new-tokens", type=int, default=16)
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of the embedded model's weights")

    conv = sub.add_parser("convert", help="convert a checkpoint between formats")
    conv.add_argument("src", help="a checkpoint directory, weights file or hub name")
    conv.add_argument("dst", help="output directory")
    conv.add_argument("--to", required=True, choices=FORMATS)
    conv.add_argument("--from", dest="src_format", choices=FORMATS, help="read this format when SRC has several")
    conv.add_argument("--max-shard-size", default="5GB", help="safetensors shard size (e.g. 500MB); default 5GB")
    conv.add_argument("--no-progress", action="store_true")

    gen = sub.add_parser("generate", help="stream a continuation of a prompt from one backend")
    gen.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0])
    gen.add_argument("--model", help="checkpoint directory or hub name (default: the embedded demo model)")
    gen.add_argument("--prompt", default=DEMO_PROMPT)
    gen.add_argument("--max-new-tokens", type=int, default=32)
    gen.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=50)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--repetition-penalty", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0, help="sampling seed")

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
    try:
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "convert":
            return cmd_convert(args)
        if args.command == "info":
            return cmd_info(args)
        if args.command == "generate":
            return cmd_generate(args)
        if args.command == "conform":
            from gpt2_multi.conformance.cli import run as run_conformance

            return run_conformance(args)
    except (CheckpointError, OSError, ValueError) as err:
        print(f"gpt2-multi {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 1


# ----------------------------------------------------------------------------------------- convert
def cmd_convert(args: argparse.Namespace) -> int:
    bar = None

    def progress(what: str, done: int, total: int) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="tensor", desc=f"writing {args.to}", file=sys.stderr)
        bar.update(done - bar.n)

    start = time.perf_counter()
    written = convert(args.src, args.dst, args.to, src_format=args.src_format, max_shard_size=args.max_shard_size, progress=progress)
    if bar is not None:
        bar.close()
    print(f"wrote {len(written)} file(s) to {args.dst} in {time.perf_counter() - start:.2f} s:")
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
    return 0


# -------------------------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from gpt2_multi import backends

    requested = backends.parse_backends(args.backends)
    if args.new_tokens < 0:
        raise ValueError(f"--new-tokens must be >= 0, got {args.new_tokens}")

    with tempfile.TemporaryDirectory(prefix="gpt2-multi-demo-") as tmp:
        if args.model:
            model_path = args.model
            print(f"checkpoint: {model_path}")
        else:
            model_path = str(make_demo_checkpoint(Path(tmp) / "demo", args.seed))
            print(f"checkpoint: embedded demo GPT-2 (seed {args.seed}: {DEMO_CONFIG['n_layer']} layers, "
                  f"n_embd {DEMO_CONFIG['n_embd']}, real GPT-2 vocabulary), written as safetensors to {model_path}")
        return _run_demo(model_path, requested, args.prompt, args.new_tokens)


def _run_demo(model_path: str, requested: list[str], prompt: str, new_tokens: int) -> int:
    from gpt2_multi import GPT2Config, backends
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
        driver = backends.Driver(b, model_path)
        t1 = time.perf_counter()
        step, _ = driver.forward(ids)
        t2 = time.perf_counter()
        if new_tokens:  # the backend's own generate(): greedy, no eos stop, every row the full length
            out = driver.generate(ids, max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
            tokens = out.sequences[:, ids.shape[1]:ids.shape[1] + new_tokens]
        else:
            tokens = np.zeros((1, 0), np.int64)
        t3 = time.perf_counter()
        results[b] = {"step": step, "tokens": tokens, "load": t1 - t0, "forward": t2 - t1, "generate": t3 - t2}

    if results:
        print(f"{'backend':<18} {'load s':>8} {'forward s':>10} {'generate s':>11} {'tokens/s':>9}")
        for b, r in results.items():
            rate = new_tokens / r["generate"] if new_tokens and r["generate"] > 0 else float("nan")
            print(f"{backends.get(b).label:<18} {r['load']:>8.3f} {r['forward']:>10.3f} {r['generate']:>11.3f} {rate:>9.1f}")
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


# ---------------------------------------------------------------------------------------- generate
def cmd_generate(args: argparse.Namespace) -> int:
    """Stream a continuation: the backend's own ``model.generate(..., streamer=TextStreamer(tokenizer))``.

    The same arguments and ``--seed`` give the same text in every backend: sampling draws from the
    shared seeded stream (:mod:`gpt2_multi.generation.sampling`), and each backend runs its fast path
    (PyTorch's preallocated cache, TensorFlow's XLA loop, Flax's jitted loop; a streamer is fed from it).
    """
    from gpt2_multi import backends
    from gpt2_multi.streamers import TextStreamer
    from gpt2_multi.tokenization import GPT2TokenizerFast

    if not backends.stack_available(args.backend):
        raise ValueError(f"the {backends.get(args.backend).label} backend is not installed "
                         f"({backends.get(args.backend).install_hint()})")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    with tempfile.TemporaryDirectory(prefix="gpt2-multi-generate-") as tmp:
        model_path = args.model or str(make_demo_checkpoint(Path(tmp) / "demo"))
        tokenizer = GPT2TokenizerFast.from_pretrained("gpt2")
        start = time.perf_counter()
        driver = backends.Driver(args.backend, model_path)
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
