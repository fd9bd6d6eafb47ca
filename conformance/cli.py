"""``gpt2-multi conform [CKPT]``: run the conformance suite and print the report; exit 1 on any failure."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gpt2_multi.backends import BACKENDS
from gpt2_multi.conformance import cases as case_lib
from gpt2_multi.conformance import report, runner
from gpt2_multi.conformance import training as training_lib


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="a checkpoint directory (default: the trained embedded model "
                        "gpt2-multi/tiny, a seeded random model and the config grid)")
    parser.add_argument("--golden", type=Path, help="a golden fixtures directory (hf-tiny layout) to check against too")
    parser.add_argument("--backends", help=f"comma-separated subset of {','.join(BACKENDS)} (default: every installed stack)")
    parser.add_argument("--full", action="store_true", help="every input kind for every config of the grid (slow)")
    parser.add_argument("--dtype", default="float32", choices=sorted(runner.TOLERANCES))
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--verbose", action="store_true", help="list passing cases too")
    parser.add_argument("--no-generation", action="store_true",
                        help="skip the generate() cases (greedy, beam, seeded sampling compared token for token; in "
                             "bfloat16 greedy up to a near tie, sampling and beams reported)")
    parser.add_argument("--grads", action="store_true",
                        help="gradients, gradient checkpointing and one AdamW step compared across backends "
                             "(every head, or CKPT's), after the forward and generate() cases")


def collect_cases(args: argparse.Namespace, workdir: Path, n_backends: int = 2) -> list[case_lib.Case]:
    """Golden cases (with --golden), and the pairwise cases when there are two backends to compare."""
    if n_backends < 2:
        return case_lib.golden_cases(args.golden)
    if args.checkpoint:
        cases = case_lib.checkpoint_cases(Path(args.checkpoint))
    else:
        from gpt2_multi.demo import make_demo_checkpoint

        demo = make_demo_checkpoint(workdir / "demo")
        cases = (case_lib.checkpoint_cases(_trained_model()) + case_lib.checkpoint_cases(demo)
                 + case_lib.generated_cases(full=args.full))
    if args.golden:
        cases = case_lib.golden_cases(args.golden) + cases
    return cases


def drift_cases(args: argparse.Namespace, cases: list[case_lib.Case]) -> list[str]:
    """The cases whose low-precision logits are also compared with float32 (none in a float32 run): those of
    CKPT, else of the trained model (its trained activations are what a low-precision run is for)."""
    if args.dtype == "float32":
        return []
    if args.checkpoint:  # every case but the golden ones is CKPT's
        return [c.name for c in cases if c.expected is None]
    trained = _trained_model().resolve()
    return [c.name for c in cases if c.checkpoint is not None and Path(c.checkpoint).resolve() == trained]


def _trained_model() -> Path:
    """The embedded trained model: peaked attention and trained activations, which random weights lack."""
    from gpt2_multi.demo import DEFAULT_MODEL
    from gpt2_multi.hub import resolve

    return resolve(DEFAULT_MODEL)


def run(args: argparse.Namespace) -> int:
    from gpt2_multi import backends as registry

    if args.backends:  # only the requested stacks are imported
        try:
            backends = registry.parse_backends(args.backends)
        except ValueError as err:
            print(f"gpt2-multi conform: {err}", file=sys.stderr)
            return 2
        missing = [b for b in backends if not registry.stack_available(b)]
    else:
        backends, missing = registry.available(), []
    if missing:
        print(f"gpt2-multi conform: backend(s) not available here: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not backends:
        print("gpt2-multi conform: no backend is installed (pip install 'gpt2-multi[all]')", file=sys.stderr)
        return 2
    if len(backends) < 2 and not args.golden:
        print(f"gpt2-multi conform: nothing to compare with one backend ({backends[0]}) and no golden data; "
              "name two backends or pass --golden DIR", file=sys.stderr)
        return 2
    if args.grads and len(backends) < 2:
        print("gpt2-multi conform --grads: gradients are compared between backends; name two", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpt2-multi-conform-") as tmp:
        cases = collect_cases(args, Path(tmp), len(backends))

        def progress(done: int, total: int) -> None:
            if not args.json:
                print(f"\rmodels {done}/{total}", end="", file=sys.stderr, flush=True)

        result = runner.run(cases, backends, dtype=args.dtype, workdir=Path(tmp), progress=progress,
                            drift_cases=drift_cases(args, cases))
        if not args.json:
            print(file=sys.stderr)
        if not args.no_generation:
            _run_generation(args, backends, Path(tmp), result)
    training = _run_grads(args, backends) if args.grads else None
    if args.json:
        data = json.loads(report.to_json(result))
        if training is not None:
            data["training"] = training_lib.as_dict(training)
        print(json.dumps(data, indent=2, default=float))
    else:
        print(report.to_text(result, verbose=args.verbose))
        if training is not None:
            print(training_lib.to_text(training))
    return 0 if result.passed and (training is None or training.passed) else 1


def _run_generation(args: argparse.Namespace, backends: list[str], workdir: Path, result: runner.Result) -> None:
    """generate() in every backend: HF's golden sequences (with --golden) and pairwise, on an LM checkpoint."""
    from gpt2_multi.backends import Driver
    from gpt2_multi.config import GPT2Config
    from gpt2_multi.conformance import generation
    from gpt2_multi.conformance.runner import CaseError

    runs = []  # (checkpoint, cases, dtype)
    if args.golden and (Path(args.golden) / "generation").is_dir():
        # HF's golden sequences are float32 runs: compared with float32 models, whatever the run's dtype
        runs.append((Path(args.golden) / "generation" / "model", generation.golden_generation_cases(args.golden),
                     "float32"))
    if len(backends) >= 2:
        paths = [Path(args.checkpoint)] if args.checkpoint else [
            _trained_model(), generation.make_generation_checkpoint(workdir / "generation-model")]
        for path in paths:
            config = GPT2Config.from_pretrained(path)
            if (config.architectures or ["GPT2LMHeadModel"])[0] in ("GPT2LMHeadModel", "GPT2DoubleHeadsModel"):
                cases = generation.generation_cases(config)
                if not args.checkpoint and path == paths[0]:  # the trained model's rows are named after it
                    cases = [dataclasses.replace(c, name=f"{path.name}/{c.name}") for c in cases]
                runs.append((path, cases, args.dtype))
    for path, cases, dtype in runs:
        drivers = {b: Driver(b, path, dtype) for b in backends}
        comparisons, errors = generation.run_generation(cases, drivers)
        result.generation += comparisons
        result.errors += [CaseError(case, backend, error) for case, backend, error in errors]


def _run_grads(args: argparse.Namespace, backends: list[str]):
    """``--grads``: :mod:`gpt2_multi.conformance.training` on every head (or on CKPT's head)."""
    cases = [training_lib.checkpoint_training_case(Path(args.checkpoint))] if args.checkpoint else None
    result = training_lib.run_training(backends, cases, progress=None if args.json else (
        lambda done, total: print(f"\rheads {done}/{total}", end="", file=sys.stderr, flush=True)))
    if not args.json:
        print(file=sys.stderr)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpt2-multi conform", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
