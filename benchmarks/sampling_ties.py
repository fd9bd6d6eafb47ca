"""How often seeded sampling differs between backends: the tie rate of ``generate(do_sample=True, seed=N)``.

    python benchmarks/sampling_ties.py [--runs 200] [--backend pt,tf,flax] [--vocab 50,400]

Each run draws a random config (activation, the three attention flags, sizes) and a random seeded
sampling call (temperature, top-k, top-p, repetition penalty, num_return_sequences, a left-padded
batch; :func:`conformance.generation.random_sampling_case`), writes a peaked random checkpoint, runs
every backend's default ``generate`` and counts the new tokens where a backend differs from the first.
Every draw is the same integer stream in every backend; a difference can only come from a near-tie, two
candidates whose noisy scores ``score - log(-log u)`` lie within the backends' float rounding. A
difference makes the rest of that row diverge, so runs with a difference are counted too.

Runs go in fresh processes of ``--chunk`` runs each (one process that loads hundreds of models in three
frameworks grows without bound, and once died with a segfault after more than 40 runs); run ``i`` draws from
``default_rng([seed, i])`` whatever its chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_chunk(backends: list[str], vocab: tuple[int, int], seed: int, runs: range) -> dict:
    from gpt2_multi.backends import Driver
    from gpt2_multi.conformance.generation import (
        count_differences,
        make_generation_checkpoint,
        random_sampling_case,
    )

    totals = dict(tokens=0, differing=0, runs_with_difference=0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in runs:
            config, case = random_sampling_case(np.random.default_rng([seed, i]), vocab)
            path = make_generation_checkpoint(Path(tmp) / f"m{i}", seed=i, config=config)
            outs = {b: Driver(b, path).generate(case.input_ids, case.attention_mask, **case.kwargs).sequences
                    for b in backends}
            compared, differ = count_differences(outs, case.input_ids.shape[1])
            totals["tokens"] += compared
            totals["differing"] += differ
            totals["runs_with_difference"] += bool(differ)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--backend", default="pt,tf,flax")
    parser.add_argument("--vocab", default="50,400", help="vocabulary size range low,high")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=25, help="runs per fresh process")
    parser.add_argument("--start", type=int, default=None, help=argparse.SUPPRESS)  # a child: runs start..start+runs
    args = parser.parse_args()
    backends = args.backend.split(",")
    vocab = tuple(int(v) for v in args.vocab.split(","))
    if args.start is not None:
        print(json.dumps(run_chunk(backends, vocab, args.seed, range(args.start, args.start + args.runs))))
        return
    totals = dict(tokens=0, differing=0, runs_with_difference=0)
    start = time.perf_counter()
    for first in range(0, args.runs, args.chunk):
        n = min(args.chunk, args.runs - first)
        child = subprocess.run([sys.executable, __file__, "--runs", str(n), "--start", str(first), "--seed",
                                str(args.seed), "--backend", args.backend, "--vocab", args.vocab],
                               capture_output=True, text=True, check=False)
        if child.returncode:
            raise SystemExit(f"runs {first}..{first + n} failed ({child.returncode}):\n{child.stderr[-3000:]}")
        for key, value in json.loads(child.stdout.strip().splitlines()[-1]).items():
            totals[key] += value
        print(f"runs {first + n}/{args.runs}: {totals}", file=sys.stderr, flush=True)
    tokens, differing = totals["tokens"], totals["differing"]
    print(f"{args.runs} random runs, backends {', '.join(backends)} (each compared with {backends[0]}), "
          f"{time.perf_counter() - start:.0f} s")
    print(f"sampled tokens compared: {tokens}; differing: {differing} ({differing / max(tokens, 1):.2e}); "
          f"runs with a difference: {totals['runs_with_difference']} of {args.runs}")


if __name__ == "__main__":
    main()
