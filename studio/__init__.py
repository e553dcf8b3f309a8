"""Distillation studio: the shared core (data, backbone, training loop, sampling, CLI)."""

__version__ = "0.1.0"


class StudioError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2."""
