"""Tensor-train one-shot compression, then fine-tuning: the "TTM [61]" and "FWTTM [63]" rows of the paper's Table 2.

``ttm``: every target Linear becomes a :class:`~lowrank.layers.TTLinear` fitted by TT-SVD (Oseledets
2011); ``fwttm``: fitted to FWSVD's row-weighted objective (Fisher summed over the input axis, one
weight per output neuron) by :func:`lowrank.tt.row_weighted_tt`, Pletnev et al. 2023. As for the other
one-shot methods (:mod:`lowrank.methods.oneshot`) the projection happens once, before the first step,
on the pre-trained base, and the rest of the budget fine-tunes.

What trains: *all* cores of every train (there is no frozen basis), plus every non-target parameter,
as in every other method. The train is already the inference form, so ``finalize`` has nothing to
compile. A layer whose train would not store fewer numbers than the dense weight stays dense.

Keys: ``tt_rank`` (bond-rank cap, every bond), ``tt_cores`` (number of cores ``d``; each layer gets
the balanced split :func:`lowrank.tt.tt_shape_for`), ``fisher_labels`` (as ``fwsvd``),
``fwttm_sweeps`` (ALS sweeps of FWTTM).

Per-layer rank logs (:meth:`lowrank.train.Trainer.module_ranks`) show a train's largest bond rank;
the ``project`` event of the rank trajectory also holds every layer's full tuple of bond ranks.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..configs import FisherLabels, PositiveInt, setting
from ..loop import Change, Loop
from ..method_table import method_names
from ..projection import project_targets
from .base import Method, MethodConfig, register
from .oneshot import calibration_statistics

__all__ = ["TTConfig", "TensorTrain"]


@dataclasses.dataclass(frozen=True)
class TTConfig(MethodConfig):
    """The keys of TTM and FWTTM (the paper's Table 2)."""

    tt_rank: PositiveInt = setting(None, "bond-rank cap of every bond (no default: give it)")
    tt_cores: PositiveInt = setting(3, "cores d per train (lowrank.tt.tt_shape_for's balanced split)")
    fisher_labels: FisherLabels = setting("true", "labels of FWTTM's Fisher")
    fwttm_sweeps: PositiveInt = setting(10, "ALS sweeps of FWTTM")

    only_for: ClassVar[dict[str, tuple[str, ...]]] = {"fisher_labels": ("fwttm",), "fwttm_sweeps": ("fwttm",)}


@register(*method_names(family="tensor_train"))
class TensorTrain(Method):
    config_class = TTConfig

    def setup(self, loop: Loop) -> Change:
        c = {**self.keys, **self.cfg}
        names = loop.target_names
        # the same Fisher as fwsvd (oneshot.py); the projection reduces it to FWSVD's row weights
        fisher, _ = calibration_statistics(self.name, loop, c["fisher_labels"])
        proj = project_targets(loop.model, names, self.name, rank=c["tt_rank"], fisher=fisher, tt_cores=c["tt_cores"],
                               tt_sweeps=c["fwttm_sweeps"])
        loop.sync_structure(names)
        self.skipped = proj.skipped
        return self.record(loop, loop.module_ranks(), event="project",
                           tt_ranks={n: list(r) for n, r in proj.report.ranks.items()})
