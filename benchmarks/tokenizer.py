"""Encoding speed of gpt2_multi's tokenizers against tiktoken and HF's tokenizers, in one run.

The corpus is the Python standard library's own source (the ``*.py`` files of the running
interpreter's stdlib, concatenated in sorted order until ``--mb`` megabytes). Every encoder runs
on one thread, on the whole corpus as one text, ``--repeat`` times, the encoders taking turns
(so that a busy machine slows them alike); the best time of each is reported, both wall-clock
and CPU time of this process (the latter is steadier on a shared machine). Our slow tokenizer is
timed on a fresh instance (its word cache starts empty) on every repeat.

Before timing, the ids of every engine are compared on the whole corpus: ours (slow and fast),
raw tiktoken and the raw Rust ``tokenizers`` (HF's fast engine) must agree exactly.

    python benchmarks/tokenizer.py --mb 5
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")


def stdlib_corpus(megabytes: float) -> str:
    """``megabytes`` MB (UTF-8) of Python source from the stdlib directory, cut at a character boundary."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    limit = int(megabytes * 1_000_000)
    parts: list[bytes] = []
    size = 0
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data)
        size += len(data)
        if size >= limit:
            break
    if size < limit:
        raise SystemExit(f"the stdlib at {stdlib} has only {size / 1e6:.1f} MB of source; ask for less with --mb")
    return b"".join(parts)[:limit].decode("utf-8", errors="ignore")


def timed(run: Callable[[], list[int]]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, number of ids) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    ids = run()
    return time.perf_counter() - wall, time.process_time() - cpu, len(ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=5.0, help="corpus size in MB (default 5)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per encoder; the best counts (default 5)")
    parser.add_argument("--skip-check", action="store_true", help="do not compare the ids of the engines first")
    args = parser.parse_args(argv)
    if args.mb <= 0 or args.repeat <= 0:
        parser.error("--mb and --repeat must be positive")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import tiktoken  # noqa: F401  (a core dependency; imported here so its import time is not timed)
    from tokenizers import Tokenizer

    from gpt2_multi.tokenization import GPT2Tokenizer, GPT2TokenizerFast
    from gpt2_multi.tokenization.bpe import builtin_dir
    from gpt2_multi.tokenization.fast import builtin_tiktoken_encoding

    text = stdlib_corpus(args.mb)
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"corpus: {megabytes:.2f} MB of Python stdlib source ({len(text):,} characters), "
          f"Python {sys.version.split()[0]}, best of {args.repeat}, one thread")

    fast = GPT2TokenizerFast.from_pretrained("gpt2")
    slow_box = [GPT2Tokenizer.from_pretrained("gpt2")]
    raw_tiktoken = builtin_tiktoken_encoding()
    raw_rust = Tokenizer.from_file(str(builtin_dir() / "tokenizer.json"))

    encoders: list[tuple[str, Callable[[], list[int]], Callable[[], None] | None]] = [
        ("tiktoken (raw, reference)", lambda: raw_tiktoken.encode(text, allowed_special="all"), None),
        ("tokenizers (raw Rust, HF fast's engine)", lambda: raw_rust.encode(text, add_special_tokens=False).ids, None),
        ("gpt2_multi GPT2TokenizerFast", lambda: fast.encode(text), None),
        (
            "gpt2_multi GPT2Tokenizer (cold cache)",
            lambda: slow_box[0].encode(text),
            lambda: slow_box.__setitem__(0, GPT2Tokenizer.from_pretrained("gpt2")),
        ),
    ]
    try:
        import transformers  # type: ignore[import-not-found]
        from transformers import GPT2Tokenizer as HFSlow  # type: ignore[import-not-found]
        from transformers import GPT2TokenizerFast as HFFast  # type: ignore[import-not-found]

        transformers.logging.set_verbosity_error()

        hf_slow = HFSlow.from_pretrained(str(builtin_dir()))
        hf_fast = HFFast.from_pretrained(str(builtin_dir()))
        encoders.append(("HF transformers GPT2TokenizerFast", lambda: hf_fast.encode(text), None))
        encoders.append(("HF transformers GPT2Tokenizer", lambda: hf_slow.encode(text), None))
    except ImportError:
        print("HF transformers is not installed: its tokenizers are skipped (raw tiktoken and tokenizers are the references)")

    if not args.skip_check:
        start = time.perf_counter()
        reference = encoders[0][1]()
        for name, run, _ in encoders[1:]:
            ids = run()
            if ids != reference:
                first = next((i for i, (a, b) in enumerate(zip(ids, reference)) if a != b), min(len(ids), len(reference)))
                print(f"MISMATCH: {name} differs from tiktoken at token {first} ({len(ids)} vs {len(reference)} tokens)")
                return 1
        print(f"ids check: all {len(encoders)} encoders give the same {len(reference):,} ids "
              f"({time.perf_counter() - start:.1f} s)")

    wall = {name: float("inf") for name, _, _ in encoders}
    cpu = dict(wall)
    counts: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, run, fresh in encoders:
            if fresh is not None:
                fresh()
            seconds, cpu_seconds, counts[name] = timed(run)
            wall[name] = min(wall[name], seconds)
            cpu[name] = min(cpu[name], cpu_seconds)

    try:
        load = f" (load average {os.getloadavg()[0]:.1f}, {os.cpu_count() or 0} CPUs)"
    except OSError:
        load = ""
    print(f"\nbest of {args.repeat}{load}")
    print(f"{'encoder':42s} {'MB/s':>7s} {'tokens/s':>11s} {'CPU MB/s':>9s} {'CPU tok/s':>11s} {'vs tiktoken (CPU)':>18s}")
    reference_cpu = cpu[encoders[0][0]]
    for name, _, _ in encoders:
        print(
            f"{name:42s} {megabytes / wall[name]:7.2f} {counts[name] / wall[name]:11,.0f} "
            f"{megabytes / cpu[name]:9.2f} {counts[name] / cpu[name]:11,.0f} {reference_cpu / cpu[name]:17.0%}"
        )
    fast_name, slow_name = encoders[2][0], encoders[3][0]
    print(f"\n{fast_name}: {reference_cpu / cpu[fast_name]:.0%} of tiktoken's speed (CPU time; target >= 90%)")
    line = f"{slow_name}: {megabytes / cpu[slow_name]:.2f} MB/s (CPU time; target >= 1.8 MB/s"
    hf_slow = next((n for n, _, _ in encoders if n == "HF transformers GPT2Tokenizer"), None)
    if hf_slow is not None:
        line += f", i.e. 2x HF's slow tokenizer; here {cpu[hf_slow] / cpu[slow_name]:.1f}x HF's slow tokenizer"
    print(line + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
