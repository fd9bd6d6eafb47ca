"""Exceptions of the checkpoint layer. Each message names the file, key or shape at fault."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model (corrupt file, missing key, wrong shape)."""


class MissingWeightsError(CheckpointError, FileNotFoundError):
    """A directory holds no weights file this package can read."""
