"""``python -m conformance`` is ``gpt2-multi conform``."""

import sys

from conformance.cli import main

sys.exit(main())
