"""Contract tests: one test per observable behaviour, parametrised over every installed backend.

The helpers of ``tests/`` (``tiny``, ``fixture_cases``) are importable from here too, and so is
``contract_support`` (the backend params, checkpoints, tensors and the numpy GPT-2 the contracts share).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def loaded():
    """Models loaded once per session: ``loaded(backend, path, head, **from_pretrained kwargs)``."""
    from contract_support import Models

    return Models()
