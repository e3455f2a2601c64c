"""Paper-profile datasets, which need downloads (or a local copy): the paper's data and the companion paper's.

* ``cifar10``: torchvision's CIFAR-10, resized to 224 with ViT-B/16's normalization;
* ``mnist``: torchvision's MNIST, the tenBCD study's paper-profile data (companion paper, arXiv 2303.06815);
* ``imagenet``: ImageNet-2012 as an ``ImageFolder`` tree (no automatic download);
* ``glue``: a GLUE task, named ``"glue:<task>"`` (:data:`GLUE_TASKS`), tokenized like the text corpus.

When the data is neither on disk nor downloadable these raise :class:`~lowrank.data.base.DatasetUnavailable`
whose message says, in one sentence, what is missing and how to provide it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .base import (ArrayDataset, DatasetUnavailable, _cache_dir, _check_positive_int, _check_random_state,
                   _stratified_split)
from .registry import _check_split, register
from .small import TokenizedTextDataset, _default_tokenizer

__all__ = ["GLUE_TASKS", "GlueTask", "cifar10_dataset", "mnist_dataset", "imagenet_dataset", "glue_dataset"]


# timm's vit_base_patch16_224 (augreg2_in21k_ft_in1k) pretrained config: mean = std = 0.5,
# bicubic resampling, centre crop of 0.9
_VIT_MEAN = (0.5, 0.5, 0.5)
_VIT_STD = (0.5, 0.5, 0.5)
_VIT_CROP_PCT = 0.9


def _vit_transform(image_size: int, *, resize_then_crop: bool, augment: bool):
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC
    steps: list[Any] = []
    if augment:
        steps += [T.RandomResizedCrop(image_size, interpolation=bicubic), T.RandomHorizontalFlip()]
    elif resize_then_crop:
        steps += [T.Resize(int(round(image_size / _VIT_CROP_PCT)), interpolation=bicubic), T.CenterCrop(image_size)]
    else:
        steps += [T.Resize((image_size, image_size), interpolation=bicubic)]
    steps += [T.ToTensor(), T.Normalize(_VIT_MEAN, _VIT_STD)]
    return T.Compose(steps)


def _with_validation(name: str, split: str, build: Callable[[str, str], Dataset], labels: Callable[[Dataset], Any],
                     validation_fraction: float, random_state: int) -> Dataset:
    """``split`` of a dataset that ships only train and test: with ``validation_fraction`` > 0, a stratified
    share of its train split (fixed by ``random_state``) is ``validation`` and the rest ``train``."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"{name}: validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if split == "validation" and validation_fraction == 0.0:
        raise ValueError(f"{name}: split 'validation' needs dataset_args.validation_fraction > 0")
    if split == "test" or validation_fraction == 0.0:
        return build(split, split)
    train = build("train", split)   # the validation share is read with the evaluation transform
    y = np.asarray(labels(train))
    rest, val = _stratified_split(y, (1.0 - validation_fraction, validation_fraction), random_state)
    return Subset(train, (val if split == "validation" else rest).tolist())


@register("cifar10", splits=("train", "validation", "test"), num_classes=10)
def cifar10_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                    root: str | os.PathLike | None = None, download: bool = True, image_size: int = 224,
                    augment: bool = False, verify_integrity: bool = True,
                    validation_fraction: float = 0.0) -> Dataset:
    """torchvision's CIFAR-10 (``root/cifar-10-batches-py``), upsampled to ``image_size`` for ViT-B/16.

    ``verify_integrity=False`` skips torchvision's MD5 checks of the batch files (it then only
    needs them to exist); it exists for re-packed copies and small stand-ins, which can never
    match the official checksums. ``random_state`` fixes only the validation split (``validation_fraction``
    of the train split); CIFAR-10 ships its own train / test split.
    """
    _check_split("cifar10", split)
    _check_random_state(random_state)
    _check_positive_int("image_size", image_size, minimum=8)
    kw = dict(cache_dir=cache_dir, root=root, download=download, image_size=image_size,
              verify_integrity=verify_integrity)
    return _with_validation("cifar10", split,
                            lambda source, used_as: _cifar10(source, augment=augment and used_as == "train", **kw),
                            lambda d: d.targets, validation_fraction, random_state)


def _cifar10(split: str, *, cache_dir, root, download: bool, image_size: int, augment: bool,
             verify_integrity: bool) -> Dataset:
    from torchvision.datasets import CIFAR10

    root = Path(root) if root is not None else _cache_dir(cache_dir) / "cifar10"
    cls = CIFAR10 if verify_integrity else _unchecked_cifar10_class()
    transform = _vit_transform(image_size, resize_then_crop=False, augment=augment)
    try:
        return cls(str(root), train=split == "train", transform=transform, download=False)
    except RuntimeError as missing:
        if not download:
            raise DatasetUnavailable(
                f"CIFAR-10 not found (or not matching torchvision's checksums) under {root} and download=False; "
                f"pass download=True on a machine with internet, or copy the extracted cifar-10-batches-py folder "
                f"there and pass root=..."
            ) from missing
    try:
        return cls(str(root), train=split == "train", transform=transform, download=True)
    except (OSError, RuntimeError, ValueError) as failed:
        raise DatasetUnavailable(
            f"CIFAR-10 not found under {root} and could not be downloaded ({type(failed).__name__}: no network?); "
            f"download it on a machine with internet and pass root=<folder holding cifar-10-batches-py>"
        ) from failed


@register("mnist", splits=("train", "test"), num_classes=10)
def mnist_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                  root: str | os.PathLike | None = None, download: bool = True) -> ArrayDataset:
    """torchvision's MNIST (``root/MNIST/raw``) as ``(x[1, 28, 28] in [0, 1], y)``, its own 60k / 10k split.

    The paper profile's dataset of the tenBCD study (the companion paper, arXiv 2303.06815, trains
    MLPs on MNIST). ``random_state`` is unused: MNIST ships its split. Offline, copy the four raw
    ``*-idx?-ubyte`` files into ``root/MNIST/raw`` and pass ``download=False``.
    """
    _check_split("mnist", split)
    _check_random_state(random_state)
    from torchvision.datasets import MNIST

    root = Path(root) if root is not None else _cache_dir(cache_dir) / "mnist"
    try:
        ds = MNIST(str(root), train=split == "train", download=False)
    except RuntimeError as missing:
        if not download:
            raise DatasetUnavailable(
                f"MNIST not found under {root / 'MNIST' / 'raw'} and download=False; pass download=True on a "
                f"machine with internet, or copy the four raw idx files there") from missing
        try:
            ds = MNIST(str(root), train=split == "train", download=True)
        except (OSError, RuntimeError, ValueError) as failed:
            raise DatasetUnavailable(
                f"MNIST not found under {root} and could not be downloaded ({type(failed).__name__}: no network?); "
                f"download it on a machine with internet and pass root=<folder holding MNIST/raw>") from failed
    x = ds.data.to(torch.float32).div(255.0).unsqueeze(1)
    y = ds.targets.to(torch.int64)
    return ArrayDataset(x, y, np.arange(len(y)), [str(c) for c in range(10)])


def _unchecked_cifar10_class() -> type:
    from torchvision.datasets import CIFAR10

    class UncheckedCIFAR10(CIFAR10):
        # torchvision's check_integrity(path, None) only tests that the file exists
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return UncheckedCIFAR10


@register("imagenet", splits=("train", "validation", "test"), num_classes=1000)
def imagenet_dataset(split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                     root: str | os.PathLike | None = None, image_size: int = 224,
                     augment: bool = False, validation_fraction: float = 0.0) -> Dataset:
    """ImageNet-2012 as a torchvision ``ImageFolder``: ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``.

    Evaluation transform: bicubic resize to ``image_size / 0.9``, centre crop, ViT normalization
    (timm's pretrained config for ViT-B/16). ``"test"`` reads ``val/``: ImageNet's test labels were never
    released, so the validation set is what papers, this one included, report as test accuracy; our
    ``"validation"`` split is therefore a stratified ``validation_fraction`` of ``train/`` (fixed by
    ``random_state``), so that points are never chosen on the images they are scored on.
    """
    _check_split("imagenet", split)
    _check_random_state(random_state)
    _check_positive_int("image_size", image_size, minimum=8)
    return _with_validation("imagenet", split,
                            lambda source, used_as: _imagenet(source, cache_dir=cache_dir, root=root,
                                                              image_size=image_size,
                                                              augment=augment and used_as == "train"),
                            lambda d: d.targets, validation_fraction, random_state)


def _imagenet(split: str, *, cache_dir, root, image_size: int, augment: bool) -> Dataset:
    from torchvision.datasets import ImageFolder

    root = Path(root) if root is not None else _cache_dir(cache_dir) / "imagenet"
    folder = root / ("train" if split == "train" else "val")
    has_classes = folder.is_dir() and any(p.is_dir() for p in folder.iterdir())
    if not has_classes:
        raise DatasetUnavailable(
            f"ImageNet {split} images not found: expected one folder per class under {folder}; ImageNet cannot be "
            f"downloaded automatically, so get ILSVRC2012 from image-net.org, extract train/ and val/ as one "
            f"folder per class (wnid) and pass root=<folder holding train and val>"
        )
    transform = _vit_transform(image_size, resize_then_crop=True, augment=augment and split == "train")
    return ImageFolder(str(folder), transform=transform)


@dataclass(frozen=True)
class GlueTask:
    text_key: str
    pair_key: str | None
    num_labels: int  # 1 = regression (STS-B)


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("sentence", None, 2),
    "sst2": GlueTask("sentence", None, 2),
    "mrpc": GlueTask("sentence1", "sentence2", 2),
    "qqp": GlueTask("question1", "question2", 2),
    "stsb": GlueTask("sentence1", "sentence2", 1),
    "mnli": GlueTask("premise", "hypothesis", 3),
    "qnli": GlueTask("question", "sentence", 2),
    "rte": GlueTask("sentence1", "sentence2", 2),
    "wnli": GlueTask("sentence1", "sentence2", 2),
}
_GLUE_HUB_ID = "nyu-mll/glue"  # where the Hub keeps GLUE now; the legacy name "glue" redirects here
_DATA_FILE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@register("glue", splits=("train", "validation", "test"),
          num_classes={task: spec.num_labels for task, spec in GLUE_TASKS.items()})
def glue_dataset(split: str, *, task: str, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                 tokenizer: Any = None, max_length: int = 128,
                 data_files: Mapping[str, str | os.PathLike] | None = None) -> TokenizedTextDataset:
    """A GLUE task, tokenized like the text corpus (``"labels"`` float for STS-B, else class ids).

    By default the task comes from the Hugging Face Hub (``datasets.load_dataset("nyu-mll/glue",
    task)``, cached in the usual Hugging Face cache). ``data_files`` maps split names to local CSV /
    JSON / parquet files with GLUE's columns and goes through the same tokenization; those are
    prepared under ``cache_dir``. MNLI's ``validation`` / ``test`` mean the *matched* sets. GLUE's
    test labels are hidden (-1), so the paper's scores are on ``validation``.
    """
    if task not in GLUE_TASKS:
        raise ValueError(f"task={task!r} is not a GLUE task; allowed values: {sorted(GLUE_TASKS)}")
    _check_split("glue", split)
    _check_random_state(random_state)
    _check_positive_int("max_length", max_length, minimum=8)
    spec = GLUE_TASKS[task]
    hf_split = f"{split}_matched" if task == "mnli" and split != "train" else split

    import datasets

    if data_files is not None:
        if split not in data_files:
            raise ValueError(f"data_files has no entry for split={split!r}; it has {sorted(data_files)}")
        suffix = Path(data_files[split]).suffix.lower()
        if suffix not in _DATA_FILE_FORMATS:
            raise ValueError(f"data_files[{split!r}] must end in one of {sorted(_DATA_FILE_FORMATS)}, got {suffix!r}")
        hf = datasets.load_dataset(
            _DATA_FILE_FORMATS[suffix], data_files={hf_split: str(data_files[split])}, split=hf_split,
            cache_dir=str(_cache_dir(cache_dir) / "hf-datasets"),
        )
    else:
        try:
            hf = datasets.load_dataset(_GLUE_HUB_ID, task, split=hf_split)
        except OSError as failed:  # ConnectionError, and DatasetNotFoundError via FileNotFoundError
            raise DatasetUnavailable(
                f"GLUE task {task!r} is not in the local Hugging Face datasets cache and could not be downloaded "
                f"(no network or offline mode); run datasets.load_dataset({_GLUE_HUB_ID!r}, {task!r}) once on a "
                f"machine with internet and reuse its HF_HOME cache, or pass data_files={{split: local file}}"
            ) from failed
    missing = [k for k in (spec.text_key, spec.pair_key, "label") if k is not None and k not in hf.column_names]
    if missing:
        raise ValueError(f"GLUE {task!r} data lacks columns {missing}; it has {hf.column_names}")
    labels = [float(v) for v in hf["label"]] if spec.num_labels == 1 else [int(v) for v in hf["label"]]
    ds = TokenizedTextDataset(
        hf[spec.text_key], labels, _default_tokenizer(tokenizer), max_length=max_length,
        text_pairs=None if spec.pair_key is None else hf[spec.pair_key],
    )
    ds.task = task
    return ds

