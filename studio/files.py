"""Atomic writes and inter-process locks: the one home of both.

A write goes to a temporary file in the target's own folder, named for this process and call
(``.NAME.<pid>.<random>.tmp``), and ``os.replace`` then moves it over the target: a reader sees
the old file or the new one, never half of one, and two processes writing the same target at
once never share (and clobber) a temporary file. :func:`locked` holds an exclusive ``flock`` on
``PATH.lock`` for a read-modify-write cycle, across processes and threads alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import threading
from pathlib import Path

from studio import StudioError

try:
    import fcntl
except ImportError:  # not POSIX: locks fall back to this process's threads only
    fcntl = None

_thread_lock = threading.Lock()


def temp_path(path) -> Path:
    """A temporary name beside ``path``, unique to this process and call."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write (a file or a folder); on success it replaces ``path``,
    on an error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path, obj, **kwargs) -> Path:
    """``obj`` as indented JSON (``default=str`` for paths and the like), atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str, **kwargs))


@contextlib.contextmanager
def locked(path, wait: bool = True):
    """Hold an exclusive lock on ``PATH.lock`` (a kernel ``flock``: a killed holder frees it) and
    yield True; with ``wait=False``, yield False at once if another holder has it."""
    lock = Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        got = _thread_lock.acquire(blocking=wait)
        try:
            yield got
        finally:
            if got:
                _thread_lock.release()
        return
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_writable(path, what: str = "--out") -> Path:
    """Fail now, with one line, if ``path`` cannot be written later (not after an hour of work)."""
    path = Path(path)
    if path.is_dir():
        raise StudioError(f"{what} {path} is a folder; give a file name, e.g. {path / 'result.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = temp_path(path)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise StudioError(f"{what} {path} cannot be written: {e.strerror or e}") from None
    return path
