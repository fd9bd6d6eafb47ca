"""Speed and exactness of ``TFGPT2Tokenizer`` on real text.

Corpus: the Python standard library's ``.py`` files (sorted by path, one document per file) up to
``--mb`` megabytes. The tokenizer encodes batches of documents inside a ``tf.function`` (tracing
excluded: a full warm-up pass runs first); ids are compared per document with tiktoken built offline from
the same vocab.json/merges.txt and GPT-2's pattern (``<|endoftext|>`` allowed as the special token).

    python benchmarks/tf_tokenizer.py --mb 5
    python benchmarks/tf_tokenizer.py --mb 1 --corpus some/dir --glob '*.txt'
    python benchmarks/tf_tokenizer.py --mb 2 --corpus unicode       # synthetic multi-script text
    python benchmarks/tf_tokenizer.py --mb 1 --tf-threads 1         # TensorFlow on one thread

Prints MB/s and tokens/s of the TF tokenizer (wall clock, best of ``--repeat`` passes; and MB per CPU-second,
which is steadier on a shared machine), tiktoken's speed (one thread, for scale) and the number of documents
whose ids differ (must be 0; exit status 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

VOCAB_DIR = Path(__file__).resolve().parent.parent / "src" / "gpt2_multi" / "data" / "gpt2"
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def load_corpus(root: Path, pattern: str, megabytes: float) -> list[str]:
    budget = int(megabytes * 1_000_000)
    docs, total = [], 0
    for path in sorted(root.rglob(pattern)):
        if total >= budget or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if total + len(text.encode()) > budget:
            text = text.encode()[: budget - total].decode("utf-8", errors="ignore")
        docs.append(text)
        total += len(text.encode())
    return docs


def synthetic_unicode_corpus(megabytes: float, seed: int = 0) -> list[str]:
    """Documents of words in several scripts (CJK, Cyrillic, Greek, Arabic, Devanagari with its combining
    marks, accented Latin), digits, emoji, punctuation and mixed whitespace: the non-ASCII route."""
    import random

    rng = random.Random(seed)
    alphabets = [
        [chr(c) for c in range(0x4E00, 0x4E00 + 800)],
        [chr(c) for c in range(0x0430, 0x0450)],
        [chr(c) for c in range(0x03B1, 0x03CA)],
        [chr(c) for c in range(0x0627, 0x064B)],
        [chr(c) for c in range(0x0915, 0x0939)] + ["\u093e", "\u093f", "\u0940", "\u094d"],
        list("abcdefghijklmnopqrstuvwxyzéèàüößñç"),
    ]
    extras = ["1", "23", "2024", "😀", "👍🏽", "，", "。", "!", "?", "...", "«", "»", "'s", "-"]
    spaces = [" "] * 12 + ["\n", "\n\n", "  ", "\u3000", "\xa0", "\t"]
    budget, docs, total = int(megabytes * 1_000_000), [], 0
    while total < budget:
        parts = []
        for _ in range(rng.randint(200, 2000)):
            alphabet = rng.choice(alphabets)
            word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
            parts.append(rng.choice(extras) if rng.random() < 0.1 else word)
            parts.append(rng.choice(spaces))
        doc = "".join(parts)
        docs.append(doc)
        total += len(doc.encode())
    return docs


def tiktoken_reference(vocab_dir: Path):
    """tiktoken ``Encoding`` from vocab.json + merges.txt (no download): GPT-2's ids are its BPE ranks."""
    import tiktoken

    from gpt2_multi.tf.tokenizer import bytes_to_unicode

    decoder = {ch: b for b, ch in bytes_to_unicode().items()}
    vocab = json.loads((vocab_dir / "vocab.json").read_text(encoding="utf-8"))
    special = "<|endoftext|>"
    ranks = {bytes(decoder[ch] for ch in tok): i for tok, i in vocab.items() if tok != special}
    return tiktoken.Encoding(
        "gpt2-offline", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={special: vocab[special]}
    )


def batches(docs: list[str], batch_bytes: int) -> list[list[str]]:
    out, cur, size = [], [], 0
    for doc in docs:
        cur.append(doc)
        size += len(doc.encode())
        if size >= batch_bytes:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=5.0, help="corpus size in MB (default 5)")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=Path(sysconfig.get_paths()["stdlib"]),
        help="a directory of text files (default: the stdlib), or 'unicode' for a synthetic multi-script corpus",
    )
    parser.add_argument("--glob", default="*.py")
    parser.add_argument(
        "--batch-kb", type=int, default=512, help="documents per batch, by size (default 512 KB)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed passes; the best is reported (default 3)"
    )
    parser.add_argument(
        "--tf-threads", type=int, default=0,
        help="TensorFlow's intra- and inter-op thread counts (default 0: TensorFlow's own choice, every core)",
    )
    args = parser.parse_args(argv)

    import tensorflow as tf

    if args.tf_threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.tf_threads)

    from gpt2_multi.tf.tokenizer import TFGPT2Tokenizer

    if str(args.corpus) == "unicode":
        docs, origin = synthetic_unicode_corpus(args.mb), "synthetic multi-script text"
    else:
        docs, origin = load_corpus(args.corpus, args.glob, args.mb), f"{args.corpus} ({args.glob})"
    total_bytes = sum(len(d.encode()) for d in docs)
    print(f"corpus: {len(docs)} documents, {total_bytes / 1e6:.2f} MB from {origin}")

    t0 = time.perf_counter()
    tokenizer = TFGPT2Tokenizer.from_pretrained(VOCAB_DIR)
    print(f"TFGPT2Tokenizer built in {time.perf_counter() - t0:.2f} s")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(texts):
        return tokenizer(texts)["input_ids"]

    groups = [tf.constant([d.encode() for d in group]) for group in batches(docs, args.batch_kb * 1024)]
    t0 = time.perf_counter()
    results = [encode(g) for g in groups]  # warm-up (traces once)
    print(f"warm-up pass (includes tracing): {time.perf_counter() - t0:.2f} s")
    best = best_cpu = float("inf")
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        results = [encode(g) for g in groups]
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    ids = [row for r in results for row in r.to_list()]
    n_tokens = sum(len(r) for r in ids)
    print(
        f"TFGPT2Tokenizer (tf.function, {len(groups)} batches of ~{args.batch_kb} KB, best of {args.repeat}): "
        f"{total_bytes / 1e6 / best:.2f} MB/s, {n_tokens / best / 1e6:.2f} M tokens/s ({n_tokens} tokens); "
        f"{total_bytes / 1e6 / best_cpu:.2f} MB per CPU-second of this process"
    )

    reference = tiktoken_reference(VOCAB_DIR)
    t0 = time.perf_counter()
    expected = [reference.encode(d, allowed_special="all") for d in docs]
    ref_time = time.perf_counter() - t0
    print(f"tiktoken (reference, one thread): {total_bytes / 1e6 / ref_time:.2f} MB/s")
    print(f"TFGPT2Tokenizer: {total_bytes / 1e6 / best:.2f} MB/s (target >= 4 MB/s), {ref_time / best:.2f}x tiktoken's "
          "one-thread speed in this run")
    differ = [i for i, (a, b) in enumerate(zip(ids, expected)) if a != b]
    print(f"documents whose ids differ from the reference: {len(differ)} of {len(docs)}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
