"""``studio data fetch``: put the Fashion-MNIST IDX files where the loader finds them.

Order: files already present; Debian's ``dataset-fashion-mnist`` (when running as root
with apt-get); a download from the dataset's official URLs into the studio cache;
otherwise a one-line error saying how to pass ``--data-dir``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from studio import StudioError
from studio.files import atomic_path
from studio.data.fashion_mnist import FILES, cache_dir, find_data_dir, read_idx

OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
EXPECTED_COUNTS = {"train": 60000, "test": 10000}


def _have() -> Path | None:
    try:
        return find_data_dir()
    except StudioError:
        return None


def _apt_install() -> bool:
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    cmd = ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            return False
    return _have() is not None


def _download(dest: Path, base_url: str = OFFICIAL_URL, timeout: float = 60) -> bool:
    dest.mkdir(parents=True, exist_ok=True)
    for split, names in FILES.items():
        for name in names:
            target = dest / name
            if target.is_file():
                continue
            try:
                with atomic_path(target) as tmp:  # a killed download never leaves a half file
                    with urllib.request.urlopen(base_url + name, timeout=timeout) as r, open(tmp, "wb") as f:
                        shutil.copyfileobj(r, f)
                    if len(read_idx(tmp)) != EXPECTED_COUNTS[split]:
                        raise StudioError(f"{name}: unexpected image count")
            except (OSError, StudioError):
                return False
    return True


def fetch_fashion_mnist() -> Path:
    """Ensure the four IDX files exist; return their directory."""
    found = _have()
    if found is None and _apt_install():
        found = _have()
    if found is None and _download(cache_dir()):
        found = _have()
    if found is None:
        raise StudioError(
            "could not obtain Fashion-MNIST (no apt as root, download failed); download the four "
            f"IDX .gz files from {OFFICIAL_URL} yourself and pass --data-dir DIR"
        )
    return found
