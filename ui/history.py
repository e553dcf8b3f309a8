"""FID history of the models folder: ``fid_history.json``, one record per evaluation.

Appends take a lock and rewrite the file atomically (temporary file, then rename), so a
crash never leaves half a history and concurrent evaluations do not lose records.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

HISTORY = "fid_history.json"
COLUMNS = ("time", "model", "kind", "steps", "guidance", "reference", "n", "fid", "seconds")
_lock = threading.Lock()


def read_history(models_dir) -> list[dict]:
    path = Path(models_dir) / HISTORY
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []  # unreadable: shown as empty; the next append keeps a copy beside it
    return records if isinstance(records, list) else []


def append_record(models_dir, record: dict) -> list[dict]:
    path = Path(models_dir) / HISTORY
    with _lock:
        if path.is_file():
            try:
                json.loads(path.read_text())
            except json.JSONDecodeError:
                os.replace(path, path.with_suffix(f".corrupt-{int(time.time())}.json"))
        records = read_history(models_dir) + [{k: record.get(k) for k in COLUMNS}]
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(records, indent=2))
        os.replace(tmp, path)
    return records


def last_fid(models_dir, model: str) -> dict | None:
    runs = [r for r in read_history(models_dir) if r.get("model") == model]
    return runs[-1] if runs else None
