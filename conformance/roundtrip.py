"""Cross-backend round trips: load in backend A, save with A's ``save_pretrained``, load in B, compare.

For every ordered pair (A, B) of installed backends, including A == B, the outputs of B on
the re-saved checkpoint must equal A's outputs on the original one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from gpt2_multi import backends as registry
from gpt2_multi.conformance.cases import Case
from gpt2_multi.conformance.runner import Comparison, compare


def save(backend: str, model, directory: Path) -> None:
    """Every stack's ``save_pretrained`` writes safetensors + config.json under HF PyTorch names."""
    model.save_pretrained(str(directory))


def round_trips(checkpoint: Path, case: Case, backends: list[str]) -> list[Comparison]:
    rows: list[Comparison] = []
    def run(backend: str, path: Path) -> dict:
        ops = registry.get(backend).ops
        return ops.forward(ops.load(path, case.architecture), case.inputs, case.flags, case.past_chunks)

    originals = {b: run(b, checkpoint) for b in backends}
    with tempfile.TemporaryDirectory(prefix="gpt2-multi-roundtrip-") as tmp:
        for a in backends:
            model = registry.get(a).ops.load(checkpoint, case.architecture)
            saved = Path(tmp) / a
            save(a, model, saved)
            for b in backends:
                got = run(b, saved)
                rows += compare(case, f"{a}->{b}", got, a, originals[a], "float32")
    return rows
