"""Small-profile datasets: offline and CPU-sized stand-ins for the paper's tasks.

* ``digits``: scikit-learn's 8×8 handwritten digits, items ``(x[1, 8, 8] in [0, 1], y)``, 10 classes,
  stratified 75/25 train/test split;
* ``mnist1d``: the ``mnist1d`` package's procedurally generated 1-D digits (40 samples long),
  items ``(x[1, 40], y)``, 10 classes, stratified 80/20 split;
* both take ``validation_fraction``: a stratified validation split of that share of the whole set, carved out
  of the train split (the test split never changes), fixed by the dataset's ``random_state``, not the run's;
* ``text``: the offline analogue of GLUE (the corpus of :mod:`lowrank.data.corpus`), tokenized items
  ``{"input_ids", "attention_mask", ["token_type_ids"], "labels"}``, padded per batch by
  :class:`PadCollate`; :class:`TokenizedTextDataset` is shared with GLUE (:mod:`lowrank.data.paper`).
"""
from __future__ import annotations

import functools
import importlib.metadata
import io
import os
import random
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..utils import atomic_write_bytes
from .base import ArrayDataset, _cache_dir, _check_positive_int, _check_random_state, _stratified_split
from .corpus import _TEXT_PER_LABEL, TEXT_LIBRARIES, TEXT_SPLITS, text_split
from .registry import _check_split, register

__all__ = ["digits_dataset", "mnist1d_arrays", "mnist1d_dataset", "PadCollate", "TokenizedTextDataset",
           "text_dataset"]


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    x.flags.writeable = False  # shared by every call through the cache
    y = bunch.target.astype(np.int64)
    y.flags.writeable = False
    return x, y


def _split_indices(name: str, y: np.ndarray, split: str, random_state: int, test_fraction: float,
                   validation_fraction: float) -> np.ndarray:
    """The rows of ``split``: a stratified train/test split, then (``validation_fraction`` > 0) a stratified
    validation share of the whole set drawn from the train part, so the test rows are the same with or
    without a validation split."""
    _check_split(name, split)
    _check_random_state(random_state)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"{name}: test_fraction must be in (0, 1), got {test_fraction!r}")
    if not 0.0 <= validation_fraction < 1.0 - test_fraction:
        raise ValueError(f"{name}: validation_fraction must be in [0, 1 - test_fraction) = [0, {1 - test_fraction:g}),"
                         f" got {validation_fraction!r}")
    if split == "validation" and validation_fraction == 0.0:
        raise ValueError(f"{name}: split 'validation' needs dataset_args.validation_fraction > 0")
    train_idx, test_idx = _stratified_split(y, (1.0 - test_fraction, test_fraction), random_state)
    if split == "test":
        return test_idx
    if validation_fraction == 0.0:
        return train_idx
    n_val = int(round(validation_fraction * len(y)))
    rest, val = _stratified_split(y[train_idx], (1.0 - n_val / len(train_idx), n_val / len(train_idx)), random_state)
    return train_idx[val] if split == "validation" else train_idx[rest]


@register("digits", splits=("train", "validation", "test"), num_classes=10)
def digits_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                   test_fraction: float = 0.25, validation_fraction: float = 0.0) -> ArrayDataset:
    """scikit-learn's 1797 8×8 digits as ``(x[1, 8, 8], y)``; pixel values 0..16 scaled to [0, 1].

    The digits ship inside scikit-learn, so ``cache_dir`` is unused (kept for a uniform signature).
    """
    x, y = _digits_arrays()
    idx = _split_indices("digits", y, split, random_state, test_fraction, validation_fraction)
    return ArrayDataset(
        torch.from_numpy(x[idx]).unsqueeze(1), torch.from_numpy(y[idx]), idx, [str(c) for c in range(10)]
    )


_MNIST1D_DEFAULT_SAMPLES = 5000


def mnist1d_arrays(cache_dir: str | os.PathLike | None = None, *, num_samples: int = _MNIST1D_DEFAULT_SAMPLES,
                   rebuild: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Generate (or read from the ``.npz`` cache) the full MNIST-1D set: ``x[N, 40]`` float32, ``y[N]``.

    The arrays come from ``mnist1d.data.make_dataset`` with the package's default generation
    parameters (its own fixed random state included), never from a download; only ``num_samples``
    changes (5000 is the package default; it must be a multiple of the 10 classes). The package's
    own 80/20 split is discarded: :func:`mnist1d_dataset` makes a stratified one.
    """
    _check_positive_int("num_samples", num_samples, minimum=100)
    if num_samples % 10:
        raise ValueError(f"num_samples must be a multiple of 10 (one share per class), got {num_samples!r}")
    version = importlib.metadata.version("mnist1d")
    path = _cache_dir(cache_dir) / f"mnist1d-{version}-n{num_samples}.npz"
    if path.exists() and not rebuild:
        with np.load(path) as f:
            return f["x"], f["y"]

    import mnist1d.data

    args = mnist1d.data.get_dataset_args()
    args.num_samples = int(num_samples)
    # make_dataset re-keys the global numpy and python generators; restore them so that building
    # the data never changes what the caller's own randomness produces
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = mnist1d.data.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    atomic_write_bytes(path, buf.getvalue())
    return x, y


@register("mnist1d", splits=("train", "validation", "test"), num_classes=10)
def mnist1d_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                    num_samples: int = _MNIST1D_DEFAULT_SAMPLES, test_fraction: float = 0.2,
                    validation_fraction: float = 0.0) -> ArrayDataset:
    """MNIST-1D as ``(x[1, 40], y)`` with a stratified train/test split fixed by ``random_state``."""
    x, y = mnist1d_arrays(cache_dir, num_samples=num_samples)
    idx = _split_indices("mnist1d", y, split, random_state, test_fraction, validation_fraction)
    return ArrayDataset(
        torch.from_numpy(x[idx]).unsqueeze(1), torch.from_numpy(y[idx]), idx, [str(c) for c in range(10)]
    )



class PadCollate:
    """Pads a list of token-dict items to the longest in the batch (padding is on the right).

    A class rather than a closure so that ``DataLoader(num_workers > 0)`` can pickle it.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, items: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        out: dict[str, torch.Tensor] = {}
        for key in items[0]:
            if key == "labels":
                out[key] = torch.stack([it[key] for it in items])
                continue
            fill = self.pad_token_id if key == "input_ids" else 0
            batch = torch.full((len(items), longest), fill, dtype=torch.long)
            for row, it in enumerate(items):
                batch[row, : len(it[key])] = it[key]
            out[key] = batch
        return out


class TokenizedTextDataset(Dataset):
    """Texts (or text pairs) tokenized once, unpadded; :attr:`collate_fn` pads each batch.

    Items are ``{"input_ids", "attention_mask", ["token_type_ids"], "labels"}`` (1-D long tensors,
    ``labels`` a 0-d long tensor, or float for a regression task such as GLUE STS-B).
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int | float], tokenizer: Any, *,
                 max_length: int = 128, text_pairs: Sequence[str] | None = None):
        _check_positive_int("max_length", max_length, minimum=8)
        if len(texts) != len(labels):
            raise ValueError(f"texts and labels must have the same length, got {len(texts)} and {len(labels)}")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"text_pairs must match texts in length, got {len(text_pairs)} and {len(texts)}")
        self.texts = list(texts)
        self.text_pairs = None if text_pairs is None else list(text_pairs)
        enc = tokenizer(self.texts, self.text_pairs, truncation=True, max_length=int(max_length))
        self.keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        self.encoded = {k: enc[k] for k in self.keys}
        is_float = any(isinstance(v, float) for v in labels)
        self.labels = torch.tensor(list(labels), dtype=torch.float32 if is_float else torch.long)
        self.max_length = int(max_length)
        pad_id = tokenizer.pad_token_id
        self.collate_fn = PadCollate(0 if pad_id is None else pad_id)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {k: torch.tensor(self.encoded[k][i], dtype=torch.long) for k in self.keys}
        item["labels"] = self.labels[i]
        return item


def _default_tokenizer(tokenizer: Any) -> Any:
    if tokenizer is None or isinstance(tokenizer, str):
        from ..models import build_tokenizer  # lazy: only the text tasks need transformers

        return build_tokenizer("minilm" if tokenizer is None else tokenizer)
    return tokenizer


@register("text", splits=TEXT_SPLITS, num_classes=len(TEXT_LIBRARIES))
def text_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                 tokenizer: Any = None, max_length: int = 128,
                 per_label: int = _TEXT_PER_LABEL) -> TokenizedTextDataset:
    """One split of the text corpus, tokenized (default tokenizer: MiniLM's, see ``lowrank.models``)."""
    _check_split("text", split)
    _check_random_state(random_state)
    _check_positive_int("max_length", max_length, minimum=8)
    texts, labels = text_split(split, cache_dir=cache_dir, random_state=random_state, per_label=per_label)
    ds = TokenizedTextDataset(texts, labels, _default_tokenizer(tokenizer), max_length=max_length)
    ds.classes = list(TEXT_LIBRARIES)
    return ds

