"""What every dataset module shares: the unavailable-data error, argument checks, the cache folder,
the stratified split and :class:`ArrayDataset` (in-memory ``(x, y)`` pairs)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["DatasetUnavailable", "ArrayDataset", "default_cache_dir"]


class DatasetUnavailable(RuntimeError):
    """The data is neither on disk nor downloadable; the message says how to provide it."""


def _check_random_state(random_state: int) -> None:
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative int, got {random_state!r}")


def _check_positive_int(param: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{param} must be an int >= {minimum}, got {value!r}")


def default_cache_dir() -> Path:
    """``$OPFACT_CACHE_DIR``, else ``$XDG_CACHE_HOME/opfact``, else ``~/.cache/opfact``."""
    explicit = os.environ.get("OPFACT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "opfact"


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return default_cache_dir() if cache_dir is None else Path(cache_dir)


def _stratified_split(labels: np.ndarray, fractions: Sequence[float], random_state: int) -> list[np.ndarray]:
    """Stratified partition of ``range(len(labels))`` into ``len(fractions)`` sorted index arrays."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    sizes = [int(round(f * n)) for f in fractions]
    remaining = np.arange(n)
    parts: list[np.ndarray] = []
    for size in sizes[:-1]:
        # integer sizes: a float share such as 0.7 * 5400 would round down to 3779
        take, remaining = train_test_split(
            remaining, train_size=size, stratify=labels[remaining], random_state=int(random_state)
        )
        parts.append(np.sort(take))
    parts.append(np.sort(remaining))
    return parts



class ArrayDataset(TensorDataset):
    """``(x, y)`` pairs from in-memory tensors; ``indices`` are the rows of the full source set."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, indices: np.ndarray, classes: Sequence[str]):
        super().__init__(x, y)
        self.indices = np.asarray(indices)
        self.classes = list(classes)

    @property
    def x(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def y(self) -> torch.Tensor:
        return self.tensors[1]
