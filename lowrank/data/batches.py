"""From a dataset to batches, for any dataset here: the ``DataLoader`` (with the dataset's own padding
collate), a calibration subset, and the two helpers that hide tuple vs dict batches from a training loop.

Image datasets yield ``(input, target)`` tuples; text datasets yield dicts whose ``"labels"`` key
matches the keyword of Hugging Face's classification heads.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..utils import make_generator
from .base import _check_positive_int, _check_random_state

__all__ = ["make_loader", "collate_of", "calibration_subset", "batch_targets", "move_batch"]


def collate_of(dataset: Dataset) -> Callable | None:
    """The dataset's own ``collate_fn`` (looking through ``Subset`` wrappers), or ``None``."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return getattr(dataset, "collate_fn", None)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, num_workers: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A ``DataLoader`` using the dataset's own ``collate_fn`` when it has one (text padding).

    Shuffling always draws from a private generator — ``make_generator(0)`` unless one is given —
    so the batch order never depends on the global torch state.
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("num_workers", num_workers, minimum=0)
    if shuffle and generator is None:
        generator = make_generator(0)
    return DataLoader(
        dataset, batch_size=int(batch_size), shuffle=shuffle, generator=generator if shuffle else None,
        num_workers=int(num_workers), drop_last=drop_last, collate_fn=collate_of(dataset),
    )


def calibration_subset(dataset: Dataset, n: int, random_state: int = 0) -> Subset:
    """``n`` distinct items drawn uniformly without replacement (sorted indices), e.g. for Fisher estimates."""
    _check_positive_int("n", n)
    _check_random_state(random_state)
    if n > len(dataset):
        raise ValueError(f"n must be at most len(dataset)={len(dataset)}, got {n}")
    rng = np.random.default_rng(int(random_state))
    idx = np.sort(rng.choice(len(dataset), size=int(n), replace=False))
    return Subset(dataset, idx.tolist())


def batch_targets(batch: Any) -> torch.Tensor:
    """The targets of a batch from any dataset here: ``batch[1]`` for tuples, ``batch["labels"]`` for dicts."""
    if isinstance(batch, Mapping):
        if "labels" not in batch:
            raise ValueError(f"batch has no 'labels' key; it has {sorted(batch)}")
        return batch["labels"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[1]
    raise ValueError(f"batch must be an (inputs, targets) pair or a dict with 'labels', got {type(batch).__name__}")


def move_batch(batch: Any, device: str | torch.device) -> Any:
    """The batch with every tensor moved to ``device`` (tuples, lists and dicts are rebuilt)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_batch(v, device) for v in batch)
    return batch
