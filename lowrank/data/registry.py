"""The dataset registry: one table holding, per dataset, its loader, its splits and its class count.

Each loader module registers its datasets where it defines them::

    @register("digits", splits=("train", "test"), num_classes=10)
    def digits_dataset(split, *, cache_dir=None, random_state=0, ...): ...

A dataset with tasks (``glue``) registers ``num_classes`` as a mapping task → classes and is named
``"<dataset>:<task>"``. :func:`get_dataset` and :func:`num_classes` read only this table;
:data:`DATASETS` (name → loader) and :data:`SPLITS` (name → splits) are read-only views of it.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from torch.utils.data import Dataset

__all__ = ["DatasetInfo", "REGISTRY", "DATASETS", "SPLITS", "register", "get_dataset", "has_validation",
           "num_classes"]


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset: ``loader(split, *, cache_dir, random_state, **kwargs)``, its split
    names, and its number of classes (1 for a regression task), or task → classes for a dataset with tasks."""

    loader: Callable[..., Dataset]
    splits: tuple[str, ...]
    num_classes: int | Mapping[str, int]

    @property
    def tasks(self) -> Mapping[str, int] | None:
        return self.num_classes if isinstance(self.num_classes, Mapping) else None


#: name → :class:`DatasetInfo`, in registration order (the import order of the loader modules)
REGISTRY: dict[str, DatasetInfo] = {}


def register(name: str, *, splits: tuple[str, ...], num_classes: int | Mapping[str, int]):
    """Decorator: register a loader as dataset ``name``."""
    def deco(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        REGISTRY[name] = DatasetInfo(loader, tuple(splits), num_classes)
        return loader
    return deco


class _Column(Mapping):
    """Read-only view name → one field of :data:`REGISTRY`."""

    def __init__(self, field: str):
        self._field = field

    def __getitem__(self, name: str) -> Any:
        return getattr(REGISTRY[name], self._field)

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


#: name → loader
DATASETS: Mapping[str, Callable[..., Dataset]] = _Column("loader")
#: name → split names
SPLITS: Mapping[str, tuple[str, ...]] = _Column("splits")


def _check_split(name: str, split: str) -> None:
    allowed = REGISTRY[name].splits
    if split not in allowed:
        raise ValueError(f"split={split!r} is not a split of {name!r}; allowed values: {list(allowed)}")


def _parse_name(name: str) -> tuple[str, str | None]:
    if not isinstance(name, str):
        raise ValueError(f"name must be a str, got {name!r}")
    base, _, task = name.partition(":")
    allowed = sorted(REGISTRY) + [f"{n}:{t}" for n, info in sorted(REGISTRY.items()) if info.tasks
                                  for t in sorted(info.tasks)]
    info = REGISTRY.get(base)
    if info is None or (info.tasks is not None) != bool(task) or (task and task not in info.tasks):
        raise ValueError(f"name={name!r} is not a known dataset; allowed values: {allowed}")
    return base, task or None


def get_dataset(name: str, split: str, *, cache_dir: str | os.PathLike | None = None, random_state: int = 0,
                **kwargs: Any) -> Dataset:
    """Build dataset ``name`` (``"digits"``, ``"glue:sst2"``, ...) for ``split``; ``kwargs`` go to its builder."""
    base, task = _parse_name(name)
    _check_split(base, split)
    if task is not None:
        kwargs["task"] = task
    return REGISTRY[base].loader(split, cache_dir=cache_dir, random_state=random_state, **kwargs)


def num_classes(name: str) -> int:
    """Number of classes (1 for the GLUE regression task STS-B) of a registered dataset."""
    base, task = _parse_name(name)
    info = REGISTRY[base]
    return info.tasks[task] if task is not None else info.num_classes


def has_validation(name: str, dataset_args: Mapping[str, Any] | None = None) -> bool:
    """Whether dataset ``name`` built with ``dataset_args`` has a ``validation`` split: it must be one of its
    registered splits and, for a loader that carves it out on request (``validation_fraction``), be asked for."""
    base, _ = _parse_name(name)
    info = REGISTRY[base]
    if "validation" not in info.splits:
        return False
    param = inspect.signature(info.loader).parameters.get("validation_fraction")
    return param is None or float((dataset_args or {}).get("validation_fraction", param.default)) > 0.0
