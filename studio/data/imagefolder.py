"""Image folders in the Hugging Face ``imagefolder`` layout.

Either class subfolders (``root/<class>/*.png``; the folder name is the label and the
caption is "a photo of a <class>"), or a ``metadata.jsonl`` / ``metadata.csv`` with
``file_name`` and ``text`` columns. Unreadable or corrupt images are skipped and counted.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from studio import StudioError
from studio.data.captioned import CaptionedImages, captions_for

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def folder_name(class_name: str) -> str:
    """A class name as a folder name ('t-shirt/top' -> 't-shirt-top'); class subfolders written by the
    studio use it, and classes are matched across sources by it."""
    return re.sub(r"[^\w.\- ]+", "-", class_name).strip(" .") or "class"


def _read_metadata(root: Path) -> list[tuple[str, str]] | None:
    jsonl, csv_path = root / "metadata.jsonl", root / "metadata.csv"
    rows = []
    if jsonl.is_file():
        for n, line in enumerate(jsonl.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    rows.append((rec["file_name"], rec.get("text", "")))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise StudioError(f"{jsonl}:{n}: expected a JSON object with 'file_name' and 'text'") from None
        return rows
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "file_name" not in reader.fieldnames:
                raise StudioError(f"{csv_path}: needs a 'file_name' column (and 'text')")
            return [(r["file_name"], r.get("text") or "") for r in reader]
    return None


def _load(path: Path, size: int, channels: int) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BICUBIC)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    return arr[..., None] if arr.ndim == 2 else arr


def load_image_folder(root, resolution: int = 32, channels: int = 3) -> CaptionedImages:
    """Load every image under ``root`` at ``resolution`` x ``resolution`` (bicubic resize)."""
    root = Path(root)
    if not root.is_dir():
        raise StudioError(f"image folder not found: {root}")
    meta = _read_metadata(root)
    if meta is not None:
        entries = [(root / name, -1, text) for name, text in meta]
        class_names: list[str] = []
    else:
        class_names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if class_names:
            entries = [(f, y, None) for y, c in enumerate(class_names)
                       for f in sorted((root / c).rglob("*")) if f.suffix.lower() in IMAGE_EXTENSIONS]
        else:
            entries = [(f, -1, "") for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS]
    images, labels, texts, bad = [], [], [], 0
    for path, label, text in entries:
        arr = _load(path, resolution, channels)
        if arr is None:
            bad += 1
            continue
        images.append(arr)
        labels.append(label)
        texts.append(text)
    if bad:
        warnings.warn(f"skipped {bad} unreadable or corrupt image(s) in {root}", stacklevel=2)
    if not images:
        raise StudioError(f"image folder {root} is empty: no readable images found")
    labels_arr = np.asarray(labels, dtype=np.int64)
    if class_names:
        texts = captions_for(labels_arr, class_names)
    return CaptionedImages(np.stack(images), labels_arr, texts, class_names, name=str(root))
