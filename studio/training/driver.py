"""The driver: one run of a method, from its resolved config to its artefact."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from studio.files import write_json

CONFIG = "config.json"


def write_resolved_config(out_dir, config) -> None:
    """Every run writes its resolved config beside its outputs (``config.json``)."""
    write_json(Path(out_dir) / CONFIG, asdict(config))
