"""How often seeded sampling differs between backends: the tie rate of ``generate(do_sample=True, seed=N)``.

    python benchmarks/sampling_ties.py [--runs 200] [--backend pt,tf,flax] [--vocab 50,400]

Each run draws a random config (activation, the three attention flags, sizes) and a random seeded
sampling call (temperature, top-k, top-p, repetition penalty, num_return_sequences, a left-padded
batch; :func:`conformance.generation.random_sampling_case`), writes a peaked random checkpoint, runs
every backend's default ``generate`` and counts the new tokens where a backend differs from the first.
Every draw is the same integer stream in every backend; a difference can only come from a near-tie, two
candidates whose noisy scores ``score - log(-log u)`` lie within the backends' float rounding. A
difference makes the rest of that row diverge, so runs with a difference are counted too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--backend", default="pt,tf,flax")
    parser.add_argument("--vocab", default="50,400", help="vocabulary size range low,high")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from conformance.generation import count_differences, make_generation_checkpoint, random_sampling_case
    from gpt2_multi.backends import Driver

    backends = args.backend.split(",")
    vocab = tuple(int(v) for v in args.vocab.split(","))
    rng = np.random.default_rng(args.seed)
    tokens = differing = runs_with_difference = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            config, case = random_sampling_case(rng, vocab)
            path = make_generation_checkpoint(Path(tmp) / f"m{i}", seed=i, config=config)
            outs = {b: Driver(b, path).generate(case.input_ids, case.attention_mask, **case.kwargs).sequences
                    for b in backends}
            compared, differ = count_differences(outs, case.input_ids.shape[1])
            tokens, differing = tokens + compared, differing + differ
            runs_with_difference += bool(differ)
    print(f"{args.runs} random runs, backends {', '.join(backends)} (each compared with {backends[0]}), "
          f"{time.perf_counter() - start:.0f} s")
    print(f"sampled tokens compared: {tokens}; differing: {differing} ({differing / max(tokens, 1):.2e}); "
          f"runs with a difference: {runs_with_difference} of {args.runs}")


if __name__ == "__main__":
    main()
