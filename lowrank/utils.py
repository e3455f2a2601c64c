"""Small shared helpers: reproducible random state, atomic file writes, device/dtype resolution.

Everything that writes a file in this project goes through :func:`atomic_write_text` /
:func:`atomic_write_bytes` / :func:`atomic_save` so an interrupted run never leaves a
half-written output behind (write to a temporary file in the same directory, then rename).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

__all__ = [
    "set_random_state",
    "make_generator",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_save",
    "resolve_device",
    "file_sha256",
]


def set_random_state(key: int) -> None:
    """Fix Python's, NumPy's and PyTorch's global generators to ``key`` (CPU and CUDA)."""
    if not isinstance(key, int) or key < 0:
        raise ValueError(f"random_state must be a non-negative int, got {key!r}")
    random.seed(key)
    np.random.seed(key % 2**32)
    torch.manual_seed(key)


def make_generator(key: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A private ``torch.Generator`` fixed to ``key`` (does not touch the global state)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(key))
    return g


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (``os.umask`` sets it to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``; on success it is fsynced, given the mode a plain ``open`` would
    give (``mkstemp`` makes it 0600), and renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (``allow_nan=False``: a NaN or an infinity is refused, as strict readers would refuse it)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file and a rename."""
    with _atomic_path(path) as tmp:
        torch.save(obj, tmp)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` → CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def file_sha256(path: str | Path) -> str:
    """The content hash a run records of its base, so that runs made from different base files are never
    compared as if they shared one."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
