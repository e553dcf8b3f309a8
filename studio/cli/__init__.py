"""The ``studio`` command line: generated from the config dataclasses (``schema``), commands in ``main``."""

from studio.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
