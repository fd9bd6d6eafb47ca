"""Encoding speed of gpt2_multi's tokenizers against tiktoken and HF's tokenizers, in one run.

The corpus is the Python standard library's own source (the ``*.py`` files of the running
interpreter's stdlib, concatenated in sorted order until ``--mb`` megabytes). Every encoder runs
on one thread, on the whole corpus as one text, ``--repeat`` times, the encoders taking turns
(so that a busy machine slows them alike); the best time of each is reported, both wall-clock
and CPU time of this process (the latter is steadier on a shared machine). Our slow tokenizer is
timed on a fresh instance (its word cache starts empty) on every repeat.

Before timing, the ids of every engine are compared on the whole corpus: ours (slow and fast),
raw tiktoken and the raw Rust ``tokenizers`` (HF's fast engine) must agree exactly.

Two more sections (``--sections``) time documents rather than one text: the corpus cut into documents
of 1 to 100 KB (seeded sizes, uniform in that range):

* ``docs``: one document per call, one thread: our ``GPT2TokenizerFast.encode`` against tiktoken's
  ``encode_ordinary`` (the issue's reference), our ``GPT2Tokenizer`` against HF's slow ``GPT2Tokenizer``
  (each on a fresh instance, cold cache, every repeat), CPU time;
* ``batch``: ``tokenizer(list_of_documents)`` on one thread (``GPT2_MULTI_TOKENIZER_THREADS=1``) and on every
  usable CPU, wall-clock time; tiktoken's own ``encode_ordinary_batch`` on 1 and on every CPU is printed
  beside it, as what this machine allows at the time (another process busy on the cores shows there too).

    python benchmarks/tokenizer.py --mb 5
    python benchmarks/tokenizer.py --mb 2 --sections docs,batch
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


SECTIONS = ("text", "docs", "batch")


def documents(text: str, smallest: int = 1_000, largest: int = 100_000, seed: int = 0) -> list[str]:
    """``text`` cut into consecutive documents of ``smallest`` to ``largest`` characters (seeded sizes)."""
    rng = random.Random(seed)
    docs, start = [], 0
    while start < len(text):
        size = rng.randint(smallest, largest)
        docs.append(text[start : start + size])
        start += size
    return docs


def best_of(repeat: int, runs: list[tuple[str, Callable[[], Any], Callable[[], None] | None]]) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall and CPU seconds of each run, the runs taking turns ``repeat`` times (``fresh`` before each)."""
    wall = {name: float("inf") for name, _, _ in runs}
    cpu = dict(wall)
    for _ in range(repeat):
        for name, run, fresh in runs:
            if fresh is not None:
                fresh()
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    return wall, cpu


def load_note() -> str:
    try:
        return f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count() or 0} CPUs"
    except OSError:
        return f"{os.cpu_count() or 0} CPUs"


def docs_section(docs: list[str], repeat: int, hf: dict[str, Any]) -> int:
    """One document per call, one thread: fast vs tiktoken's encode_ordinary, slow vs HF's slow (CPU time)."""
    from gpt2_multi.tokenization import GPT2Tokenizer, GPT2TokenizerFast
    from gpt2_multi.tokenization.fast import builtin_tiktoken_encoding

    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    sizes = sorted(len(d) for d in docs)
    print(f"\n== docs: {len(docs)} documents of {sizes[0]:,}-{sizes[-1]:,} characters ({megabytes:.2f} MB), "
          f"one call per document, one thread, CPU time, best of {repeat} ==")
    tik = builtin_tiktoken_encoding()
    fast = GPT2TokenizerFast.from_pretrained("gpt2")
    slow = [GPT2Tokenizer.from_pretrained("gpt2")]
    expected = [tik.encode_ordinary(d) for d in docs]
    if [fast.encode(d) for d in docs] != expected or [slow[0].encode(d) for d in docs] != expected:
        print("MISMATCH: our tokenizers differ from tiktoken on the documents")
        return 1
    encode_ordinary, fast_encode = tik.encode_ordinary, fast.encode
    runs: list[tuple[str, Callable[[], Any], Callable[[], None] | None]] = [
        ("tiktoken encode_ordinary (reference)", lambda: [encode_ordinary(d) for d in docs], None),
        ("gpt2_multi GPT2TokenizerFast.encode", lambda: [fast_encode(d) for d in docs], None),
        ("gpt2_multi GPT2TokenizerFast(text)", lambda: [fast(d)["input_ids"] for d in docs], None),
        ("gpt2_multi GPT2Tokenizer.encode (cold)", lambda: [slow[0].encode(d) for d in docs],
         lambda: slow.__setitem__(0, GPT2Tokenizer.from_pretrained("gpt2"))),
    ]
    if hf:
        hf_slow = [hf["slow"]()]
        if [hf_slow[0].encode(d) for d in docs[:20]] != expected[:20]:
            print("MISMATCH: HF's slow tokenizer differs from tiktoken on the documents")
            return 1
        runs.append(("HF GPT2Tokenizer.encode (cold)", lambda: [hf_slow[0].encode(d) for d in docs],
                     lambda: hf_slow.__setitem__(0, hf["slow"]())))
    _, cpu = best_of(repeat, runs)
    print(f"({load_note()})")
    reference = cpu[runs[0][0]]
    print(f"{'encoder':42s} {'CPU MB/s':>9s} {'vs tiktoken encode_ordinary':>28s}")
    for name, _, _ in runs:
        print(f"{name:42s} {megabytes / cpu[name]:9.2f} {reference / cpu[name]:27.3f}x")
    fast_name, slow_name = runs[1][0], runs[3][0]
    print(f"\n{fast_name}: {reference / cpu[fast_name]:.3f}x tiktoken's encode_ordinary (target >= 1.0x)")
    if hf:
        hf_name = runs[4][0]
        print(f"{slow_name}: {cpu[hf_name] / cpu[slow_name]:.1f}x HF's slow tokenizer "
              f"({megabytes / cpu[slow_name]:.2f} vs {megabytes / cpu[hf_name]:.2f} MB/s; target >= 4x)")
    return 0


def batch_section(docs: list[str], repeat: int) -> int:
    """tokenizer(list) on one thread and on every CPU (wall time), and tiktoken's own batch for scale."""
    from gpt2_multi.tokenization import GPT2TokenizerFast, parallel
    from gpt2_multi.tokenization.fast import builtin_tiktoken_encoding

    threads = parallel.usable_cpus()  # (this script sets TOKENIZERS_PARALLELISM=false for HF's engine: not here)
    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    print(f"\n== batch: tokenizer(list of {len(docs)} documents, {megabytes:.2f} MB), 1 thread vs {threads}, "
          f"wall time, best of {repeat} ==")
    tik = builtin_tiktoken_encoding()
    fast = GPT2TokenizerFast.from_pretrained("gpt2")
    saved = {key: os.environ.pop(key, None) for key in (parallel.THREADS_ENV, parallel.PARALLELISM_ENV)}

    def with_threads(count: int) -> Callable[[], Any]:
        def run() -> Any:
            os.environ[parallel.THREADS_ENV] = str(count)
            return fast(docs)["input_ids"]
        return run

    try:
        expected = [tik.encode_ordinary(d) for d in docs]
        if with_threads(1)() != expected or with_threads(threads)() != expected:
            print("MISMATCH: the batch's ids differ from tiktoken's, one document at a time")
            return 1
        runs: list[tuple[str, Callable[[], Any], Callable[[], None] | None]] = [
            ("gpt2_multi GPT2TokenizerFast(list), 1 thread", with_threads(1), None),
            (f"gpt2_multi GPT2TokenizerFast(list), {threads} threads", with_threads(threads), None),
            ("tiktoken encode_ordinary_batch, 1 thread", lambda: tik.encode_ordinary_batch(docs, num_threads=1), None),
            (f"tiktoken encode_ordinary_batch, {threads} threads",
             lambda: tik.encode_ordinary_batch(docs, num_threads=threads), None),
        ]
        wall, cpu = best_of(repeat, runs)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
    print(f"({load_note()})")
    print(f"{'encoder':48s} {'MB/s':>7s} {'CPU s / wall s':>15s}")
    for name, _, _ in runs:
        print(f"{name:48s} {megabytes / wall[name]:7.2f} {cpu[name] / wall[name]:15.2f}")
    ours = wall[runs[0][0]] / wall[runs[1][0]]
    theirs = wall[runs[2][0]] / wall[runs[3][0]]
    print(f"\nbatch on {threads} threads: {ours:.2f}x our one-thread batch (target >= 1.8x on 2 cores); "
          f"tiktoken's own batch in the same run: {theirs:.2f}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=5.0, help="corpus size in MB (default 5)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per encoder; the best counts (default 5)")
    parser.add_argument("--skip-check", action="store_true", help="do not compare the ids of the engines first")
    parser.add_argument("--sections", default="text,docs,batch",
                        help="comma-separated: text (the corpus as one text), docs (1-100 KB documents, one "
                             "thread), batch (a list of documents, 1 thread vs all) (default: all three)")
    parser.add_argument("--doc-kb", default="1,100",
                        help="smallest,largest document size in KB (1000 characters) for docs and batch (default 1,100)")
    args = parser.parse_args(argv)
    if args.mb <= 0 or args.repeat <= 0:
        parser.error("--mb and --repeat must be positive")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    try:
        smallest, largest = (int(float(v) * 1000) for v in args.doc_kb.split(","))
    except ValueError:
        parser.error("--doc-kb takes two sizes in KB, e.g. 1,100")
    if not 0 < smallest <= largest:
        parser.error("--doc-kb: the sizes must be positive, the smallest first")
    if not sections or any(s not in SECTIONS for s in sections):
        parser.error(f"--sections takes a comma-separated subset of {', '.join(SECTIONS)}")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import tiktoken  # noqa: F401  (a core dependency; imported here so its import time is not timed)

    from gpt2_multi.tokenization.bpe import builtin_dir

    text = stdlib_corpus(args.mb)
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"corpus: {megabytes:.2f} MB of Python stdlib source ({len(text):,} characters), "
          f"Python {sys.version.split()[0]}, best of {args.repeat}")

    hf: dict[str, Any] = {}
    try:
        import transformers  # type: ignore[import-not-found]
        from transformers import GPT2Tokenizer as HFSlow  # type: ignore[import-not-found]
        from transformers import GPT2TokenizerFast as HFFast  # type: ignore[import-not-found]

        transformers.logging.set_verbosity_error()
        hf["slow"] = lambda: HFSlow.from_pretrained(str(builtin_dir()))
        hf["fast"] = lambda: HFFast.from_pretrained(str(builtin_dir()))
    except ImportError:
        print("HF transformers is not installed: its tokenizers are skipped (raw tiktoken and tokenizers are the references)")

    status = 0
    if "text" in sections:
        status |= text_section(text, megabytes, args.repeat, args.skip_check, hf)
    docs = documents(text, smallest, largest)
    if "docs" in sections:
        status |= docs_section(docs, args.repeat, hf)
    if "batch" in sections:
        status |= batch_section(docs, args.repeat)
    return status


def text_section(text: str, megabytes: float, repeat: int, skip_check: bool, hf: dict[str, Any]) -> int:
    """The corpus as one text, every engine on one thread (ids compared first)."""
    from tokenizers import Tokenizer

    from gpt2_multi.tokenization import GPT2Tokenizer, GPT2TokenizerFast
    from gpt2_multi.tokenization.bpe import builtin_dir
    from gpt2_multi.tokenization.fast import builtin_tiktoken_encoding

    print(f"\n== text: the corpus as one text, one thread, best of {repeat} ==")
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
    if hf:
        hf_slow, hf_fast = hf["slow"](), hf["fast"]()
        encoders.append(("HF transformers GPT2TokenizerFast", lambda: hf_fast.encode(text), None))
        encoders.append(("HF transformers GPT2Tokenizer", lambda: hf_slow.encode(text), None))

    if not skip_check:
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
    for _ in range(repeat):
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
    print(f"\nbest of {repeat}{load}")
    print(f"{'encoder':42s} {'MB/s':>7s} {'tokens/s':>11s} {'CPU MB/s':>9s} {'CPU tok/s':>11s} {'vs tiktoken (CPU)':>18s}")
    reference_cpu = cpu[encoders[0][0]]
    for name, _, _ in encoders:
        print(
            f"{name:42s} {megabytes / wall[name]:7.2f} {counts[name] / wall[name]:11,.0f} "
            f"{megabytes / cpu[name]:9.2f} {counts[name] / cpu[name]:11,.0f} {reference_cpu / cpu[name]:17.0%}"
        )
    fast_name, slow_name = encoders[2][0], encoders[3][0]
    print(f"\n{fast_name}: {reference_cpu / cpu[fast_name]:.0%} of tiktoken's speed (CPU time)")
    line = f"{slow_name}: {megabytes / cpu[slow_name]:.2f} MB/s (CPU time"
    hf_slow = next((n for n, _, _ in encoders if n == "HF transformers GPT2Tokenizer"), None)
    if hf_slow is not None:
        line += f"; {cpu[hf_slow] / cpu[slow_name]:.1f}x HF's slow tokenizer, target >= 4x"
    print(line + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
