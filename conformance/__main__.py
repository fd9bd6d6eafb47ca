"""``python -m gpt2_multi.conformance`` is ``gpt2-multi conform``."""

import sys

from gpt2_multi.conformance.cli import main

sys.exit(main())
