"""Exceptions of the checkpoint layer. Each message names the file, key or shape at fault."""

from __future__ import annotations


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint cannot be read or does not fit the model (corrupt file, missing key, wrong shape).

    A ValueError (what it has always been) and a RuntimeError: HF raises RuntimeError when weights do not fit
    a model (``load_state_dict``'s size mismatch), so ``except RuntimeError`` code written for HF catches it.
    """


class MissingWeightsError(CheckpointError, FileNotFoundError):
    """A directory holds no weights file this package can read."""
