"""FID history of the models folder: ``fid_history.json``, one record per evaluation.

An append holds the history's inter-process lock (``studio.files.locked``) for its whole
read-modify-write and replaces the file atomically, so a crash never leaves half a history and
concurrent evaluations, from threads or from several app processes, never lose a record. An
unreadable history is kept aside (``fid_history.corrupt-<time>.json``) and a new one started.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from studio.files import locked, write_json

HISTORY = "fid_history.json"
COLUMNS = ("time", "model", "kind", "steps", "guidance", "reference", "n", "fid", "kid", "kid_std", "precision",
           "recall", "agreement", "judge_top1", "seconds", "note")  # records from before KID lack the later metrics


def _read(path: Path) -> list[dict] | None:
    """The records, [] if there is no file, None if the file is unreadable."""
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return records if isinstance(records, list) else None


def read_history(models_dir) -> list[dict]:
    return _read(Path(models_dir) / HISTORY) or []


def append_record(models_dir, record: dict) -> list[dict]:
    path = Path(models_dir) / HISTORY
    with locked(path):
        records = _read(path)
        if records is None:
            os.replace(path, path.with_name(f"fid_history.corrupt-{int(time.time())}.json"))
            records = []
        records.append({k: record.get(k) for k in COLUMNS})
        write_json(path, records)
    return records


def last_fid(models_dir, model: str) -> dict | None:
    runs = [r for r in read_history(models_dir) if r.get("model") == model]
    return runs[-1] if runs else None
