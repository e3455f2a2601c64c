"""Datasets: a registry name → loader returning ``torch`` Datasets, plus DataLoader and batch helpers.

Usage:

>>> from lowrank.data import get_dataset, make_loader, calibration_subset
>>> from lowrank.utils import make_generator
>>> train = get_dataset("digits", "train", random_state=0)
>>> loader = make_loader(train, batch_size=128, shuffle=True, generator=make_generator(0))
>>> calib = calibration_subset(train, 256, random_state=0)      # Fisher / activation statistics
>>> x, y = next(iter(loader))
>>> tuple(x.shape), tuple(y.shape), len(calib)
((128, 1, 8, 8), (128,), 256)

Modules (everything public is re-exported here):

* :mod:`~lowrank.data.registry` — the one table of datasets (loader, splits, class count),
  :func:`get_dataset` and :func:`num_classes`;
* :mod:`~lowrank.data.small` — the ``small`` profile (offline, CPU-sized): ``digits``, ``mnist1d``,
  ``text`` (tokenized, padded per batch);
* :mod:`~lowrank.data.corpus` — the offline text corpus behind ``text``: docstring paragraphs of six
  installed libraries, labelled by library, stratified 70/15/15 train/validation/test split;
* :mod:`~lowrank.data.paper` — the ``paper`` profile (downloads): ``cifar10`` (resized to 224, ViT
  normalization), ``mnist``, ``imagenet`` (an ``ImageFolder`` tree) and ``glue:<task>`` (tokenized).
  When the data is neither on disk nor downloadable these raise :class:`DatasetUnavailable` whose
  message says, in one sentence, what is missing and how to provide it;
* :mod:`~lowrank.data.batches` — :func:`make_loader`, :func:`calibration_subset`, and
  :func:`batch_targets` / :func:`move_batch`, which hide tuple (image) vs dict (text) batches;
* :mod:`~lowrank.data.localtext` — :func:`load_local_text`: calibration text from the user's own text
  file or ``datasets`` folder, with the samples held out from calibration (for perplexity);
* :mod:`~lowrank.data.base` — the error type, argument checks, the cache folder, :class:`ArrayDataset`.

Image datasets yield ``(input, target)`` tuples; text datasets yield dicts whose ``"labels"`` key
matches the keyword of Hugging Face's classification heads.

The ``random_state`` argument fixes the train/test split (and nothing else): the same value always
gives the same split, on any machine with the same package versions.
"""
from __future__ import annotations

from .base import ArrayDataset, DatasetUnavailable, default_cache_dir
from .registry import DATASETS, REGISTRY, SPLITS, DatasetInfo, get_dataset, has_validation, num_classes, register
from .corpus import TEXT_LIBRARIES, TEXT_SPLITS, build_text_corpus, corpus_stats, text_split, text_split_indices
# importing the loader modules registers their datasets, in this order
from .small import PadCollate, TokenizedTextDataset, digits_dataset, mnist1d_arrays, mnist1d_dataset, text_dataset
from .paper import GLUE_TASKS, GlueTask, cifar10_dataset, glue_dataset, imagenet_dataset, mnist_dataset
from .batches import batch_targets, calibration_subset, collate_of, make_loader, move_batch
from .localtext import LocalText, load_local_text

__all__ = [
    "DatasetUnavailable",
    "DatasetInfo",
    "REGISTRY",
    "register",
    "DATASETS",
    "SPLITS",
    "GLUE_TASKS",
    "GlueTask",
    "TEXT_LIBRARIES",
    "TEXT_SPLITS",
    "get_dataset",
    "has_validation",
    "num_classes",
    "make_loader",
    "collate_of",
    "calibration_subset",
    "batch_targets",
    "move_batch",
    "default_cache_dir",
    "ArrayDataset",
    "TokenizedTextDataset",
    "PadCollate",
    "digits_dataset",
    "mnist1d_arrays",
    "mnist1d_dataset",
    "build_text_corpus",
    "text_split_indices",
    "text_split",
    "text_dataset",
    "corpus_stats",
    "cifar10_dataset",
    "mnist_dataset",
    "imagenet_dataset",
    "glue_dataset",
    "LocalText",
    "load_local_text",
]
