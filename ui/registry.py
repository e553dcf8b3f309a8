"""The models folder the app serves: which pipelines it holds, and loading each one once.

Only directories below the folder that hold ``model_index.json`` (a pipeline), or a generator folder
(an EDM or consistency model, ``studio.models.generators``), are models. A name from a
client is accepted only if it is one of those (re-scanned) names and its real path, links
resolved, stays inside the folder; everything else is refused with a plain message.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from studio import StudioError
from studio.models.backbone import is_pipeline_dir, load_pipeline
from studio.models.generators import generator_kind, load_generator
from studio.models.model_info import read_model_info

MAX_DEPTH = 3


class ModelRegistry:
    def __init__(self, root, device: str = "cpu"):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise StudioError(f"models folder {root} does not exist; pass --models DIR")
        self.device = device
        self._cache: dict[str, object] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Relative names of the pipelines below the folder (never following links out of it)."""
        found = []

        def walk(d: Path, depth: int):
            for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if not self._inside(sub):
                    continue
                if is_pipeline_dir(sub) or generator_kind(sub) is not None:
                    found.append(sub.relative_to(self.root).as_posix())
                elif depth < MAX_DEPTH:
                    walk(sub, depth + 1)

        walk(self.root, 1)
        return found

    def _inside(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.root)
        except OSError:
            return False

    def path(self, name: str) -> Path:
        """The directory of model ``name``; refuses anything that is not a listed model."""
        if not isinstance(name, str) or not name or name not in self.names():
            raise StudioError(f"{name!r} is not a model in the models folder; pick one from the list")
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):  # a listed name is inside, but check again
            raise StudioError(f"{name!r} is outside the models folder")
        return path

    def info(self, name: str) -> dict:
        """Kind, recommended settings and the training config (if saved) of a model."""
        path = self.path(name)
        info = dict(read_model_info(path))
        cfg = path / "config.json"
        if cfg.is_file():
            try:
                info["config"] = json.loads(cfg.read_text())
            except json.JSONDecodeError:
                info["config"] = "unreadable config.json"
        return info

    def by_kind(self, *kinds: str) -> list[str]:
        return [n for n in self.names() if read_model_info(self.root / n)["kind"] in kinds]

    def pipeline(self, name: str):
        """The loaded pipeline (or ``ClassGenerator``), loaded once (thread-safe) and shared by all requests."""
        path = self.path(name)
        with self._lock:
            if name not in self._cache:
                load = load_generator if generator_kind(path) else load_pipeline
                self._cache[name] = load(path, device=self.device)
            return self._cache[name]
