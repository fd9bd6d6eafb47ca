"""Keep the frameworks' own log noise off the terminal of ``gpt2-multi`` (``--verbose`` brings it back).

TensorFlow, XLA and absl write from C++ straight to file descriptor 2, some of it before any Python
setting can reach them (``WARNING: All log messages before absl::InitializeLog() is called ...``,
``oneDNN custom operations are on ...``, ``failed call to cuInit ...``, the CPU-feature notice). Two
measures, both used only by the command line (a library never changes its user's logging):

* :func:`quiet_environment` (a context manager around a command) sets, before any framework is imported, the variables the frameworks read
  (``TF_CPP_MIN_LOG_LEVEL=3``, ``GRPC_VERBOSITY=ERROR``), unless the user set them, and raises the Python
  loggers of JAX and absl to ERROR;
* :func:`captured_stderr` runs a block (a framework's import, its first model, its first compiled call)
  with descriptor 2 sent to a temporary file, then writes back every line that is not framework noise
  (:data:`NOISE`). A Python traceback or our own message in that block still reaches the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

#: lines the frameworks print that carry nothing for a user of the command line
NOISE = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"  # absl / glog-style info and warning lines: I0000 00:00:... port.cc:153] ...
    r"|E\d{4} [\d:.]+\s+\d+ \S+:\d+\] failed call to cuInit"  # the one error line: no GPU on this machine
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .*rebuild TensorFlow"  # the CPU-feature guard
    r"|.*(?:This TensorFlow binary is optimized to use available CPU instructions)"
    r"|.*Unable to register cu(?:DNN|FFT|BLAS) factory"
    r"|.*TF-TRT Warning: Could not find TensorRT)"
)

_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
_LOGGERS = ("jax._src.xla_bridge", "absl", "tensorflow")

_quiet = False


@contextlib.contextmanager
def quiet_environment() -> Iterator[None]:
    """For the block: set the frameworks' log switches (unless the user set them), quiet their Python
    loggers and turn :func:`captured_stderr` on. Everything is restored afterwards (the command line runs
    in-process in tests); a framework imported inside keeps the log level it read."""
    global _quiet
    added = [key for key in _ENVIRONMENT if key not in os.environ]
    for key in added:
        os.environ[key] = _ENVIRONMENT[key]
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    previous, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = previous
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for key in added:
            os.environ.pop(key, None)


def is_quiet() -> bool:
    return _quiet


@contextlib.contextmanager
def captured_stderr() -> Iterator[None]:
    """Run the block with descriptor 2 captured; write back the lines that are not :data:`NOISE`.

    Does nothing outside :func:`quiet_environment` (``--verbose``, or library use: all output passes).
    """
    if not _quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not NOISE.match(line.strip())]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


__all__ = ["NOISE", "captured_stderr", "is_quiet", "quiet_environment"]
