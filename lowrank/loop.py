"""The loop that drives a compression method, as the method sees it, and what a method's hook returns.

A method (:mod:`lowrank.methods`) reads the loop through :class:`Loop` only. Two loops implement it: the
library's :class:`lowrank.train.Trainer` and the single-process loop of
:class:`lowrank.iterative.IterativeCompressor` (a user's own loop). A hook that replaces parameters returns a
:class:`Change`; the driver (:class:`~lowrank.iterative.IterativeCompressor`) applies the optimizer policy
(:func:`lowrank.optim_state.update_optimizer_after_change`) once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, runtime_checkable

import torch
import torch.nn as nn

__all__ = ["Loop", "Change"]


@runtime_checkable
class Loop(Protocol):
    """What a method may read and call on the loop that drives it."""

    model: nn.Module                 #: the model being trained, changed in place by the method
    target_names: list[str]          #: the layers the method compresses
    device: torch.device
    step: int                        #: optimizer steps done (from 1 after the first)
    epoch: int                       #: epochs done
    random_state: int                #: seeds the labels a Fisher draws (with the step)
    is_main: bool                    #: the process that computes SVDs and cuts (rank 0; always true alone)

    def calibration_loader(self) -> Iterable:
        """Batches for a Fisher or activation statistic."""

    def module_ranks(self) -> dict[str, int]:
        """The current rank of every target layer (:func:`lowrank.surgery.target_ranks`)."""

    def sync_structure(self, names: list[str]) -> None:
        """Give every process the main process's shapes and values of ``names`` (after a change)."""

    def broadcast_object(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process."""

    def lr_at(self, step: int) -> float:
        """The learning rate at ``step``."""


@dataclass
class Change:
    """What a hook did to the trainable parameters: it replaced some (the optimizer must follow), and for a
    cut core ``S'`` with ``S = Ua S' Vaᵀ``, ``rotations[id(S')] = (S, Ua, Va)`` (the ``carry`` policy moves
    ``S``'s Adam state into the new basis). ``ranks``: every target layer's rank after the change."""

    ranks: dict[str, int] = field(default_factory=dict)
    rotations: dict[int, tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
