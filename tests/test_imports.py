"""Import hygiene: the shared layer imports no framework; each stack imports only its own."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "flax", "transformers", "keras_hub")


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_shared_layer_imports_no_framework():
    loaded = _modules_after(
        "import gpt2_multi, gpt2_multi.checkpoint, gpt2_multi.hub, gpt2_multi.cli, gpt2_multi.backends\n"
        "from gpt2_multi import GPT2Config\n"
        "from gpt2_multi.checkpoint import load_checkpoint, save_checkpoint"
    )
    assert not loaded & set(FRAMEWORKS), loaded & set(FRAMEWORKS)
