"""Contract tests: one test per observable behaviour, parametrised over every installed backend.

The helpers of ``tests/`` (``tiny``, ``fixture_cases``) are importable from here too.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
