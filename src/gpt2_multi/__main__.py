"""``python -m gpt2_multi`` runs the ``gpt2-multi`` command."""

import sys

from gpt2_multi.cli import main

sys.exit(main())
