"""One-shot projections at a fixed size, then fine-tuning: the "not iterative" rows of the paper's Table 2.

``svd`` (Eq. 4), ``fwsvd`` (Eq. 5 with row-summed diagonal Fisher), ``tfwsvd`` (Eq. 5 with the full
diagonal Fisher; multi-start ALS run until a sweep changes the objective by at most ``tfwsvd_tol``
relative, :func:`lowrank.linalg.element_weighted_projection`), ``asvd`` (Eq. 7, activation-aware). The
projection happens once, before the first step, on the pre-trained base; the rest of the budget fine-tunes.

FWSVD's axis (``fwsvd_axis``): Hsu et al. write a layer as ``y = x W`` with ``W`` (in × out) and weight its
rows; the paper sums the diagonal Fisher "column-wise, making the approximation identical for each row".
With PyTorch's ``(out, in)`` layout, ``rows`` (default) gives each output neuron one weight (the Fisher
summed over the inputs) and ``columns`` each input one weight — the other reading, kept as an ablation.

Size: ``rank`` (one rank for every target layer, the paper's form) or ``params_fraction`` — the compressed
target layers' parameters (factors and biases) over the dense ones, met with per-layer ranks by
``rank_rule``: ``uniform`` (the largest rank of each layer that keeps at most that fraction of it) or
``energy`` (one energy threshold β for every layer, the largest β whose ranks fit the budget: the rank rule
of IEHT, Eq. 8, applied once — so a one-shot run can sit at any size an iterative run reaches, and differ
from it only in being one-shot). Statistics, rank rules and the projection are :mod:`lowrank.projection`'s,
the same code :func:`lowrank.compress` runs.

What trains (``train``):

* ``factors`` (default): the compiled form ``A·B`` with both factors trainable — the usual
  fine-tuning of a factorised model, ``k(m + n)`` trainable numbers per layer;
* ``core``: the paper's loops' form, ``U S Vᵀ`` with ``U``, ``V`` frozen and only ``S`` trained
  (``k²`` trainable per layer); compiled to ``A·B`` at the end.

Every non-target parameter (embeddings, norms, attention when only MLPs are targets, the head)
trains in both cases, as in every other method.
"""
from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar, Literal

import torch

from ..configs import FisherLabels, Fraction, Interval, NonNegativeFloat, PositiveInt, setting
from ..data import move_batch
from ..fisher import default_forward
from ..loop import Change, Loop
from ..method_table import METHOD_TABLE, method_names
from ..projection import RANK_RULES, measure_statistics, pick_fisher_estimator, project_targets
from ..surgery import compile_model
from .base import Method, MethodConfig, register

__all__ = ["OneShotConfig", "OneShot"]


@dataclasses.dataclass(frozen=True)
class OneShotConfig(MethodConfig):
    """The keys of the one-shot projections (Eq. 4, 5 and 7 of the paper) and their fine-tuning."""

    rank: PositiveInt | None = setting(None, "one rank for every target layer (or params_fraction)")
    params_fraction: Fraction | None = setting(None, "compressed / dense parameters of the target layers (or rank)")
    rank_rule: Literal[RANK_RULES] = setting("uniform", "how params_fraction becomes per-layer ranks")
    train: Literal["factors", "core"] = setting("factors", "what fine-tunes: both factors, or S with U, V frozen")
    fisher_labels: FisherLabels = setting("true", "labels of the Fisher of fwsvd / tfwsvd")
    fwsvd_axis: Literal["rows", "columns"] = setting("rows", "one FWSVD weight per output (rows) or per input")
    tfwsvd_tol: Annotated[float, Interval(0, 1, high_open=True)] = setting(
        1e-6, "TFWSVD's ALS stops when a sweep changes the objective by at most this, relative")
    asvd_ridge: NonNegativeFloat = setting(1e-4, "ridge on ASVD's input second moment, relative to its mean diagonal")

    only_for: ClassVar[dict[str, tuple[str, ...]]] = {"fisher_labels": ("fwsvd", "tfwsvd"), "fwsvd_axis": ("fwsvd",),
                                                      "tfwsvd_tol": ("tfwsvd",), "asvd_ridge": ("asvd",)}

    def check(self, *, given: frozenset[str], name: str) -> None:
        if (self.rank is None) == (self.params_fraction is None):
            raise ValueError(f"give exactly one of rank and params_fraction (got rank={self.rank!r}, "
                             f"params_fraction={self.params_fraction!r})")
        if self.rank is not None and "rank_rule" in given:
            raise ValueError(f"rank_rule={self.rank_rule!r} applies to params_fraction only; with rank="
                             f"{self.rank} every layer gets that rank")
        if self.params_fraction is not None and self.params_fraction >= 1:
            raise ValueError(f"params_fraction={self.params_fraction!r} keeps the dense model; allowed: (0, 1)")
        if self.rank_rule == "energy" and self.fwsvd_axis == "columns":
            # the energy spectra are those of compress(): row-weighted; a column-weighted run would pick its
            # ranks on another matrix than the one it projects
            raise ValueError("rank_rule='energy' with fwsvd_axis='columns' is not supported; allowed: "
                             "fwsvd_axis='rows', or rank / rank_rule='uniform'")


@register(*method_names(family="projection"))
class OneShot(Method):
    config_class = OneShotConfig

    def setup(self, loop: Loop) -> Change:
        c = {**self.keys, **self.cfg}
        names = loop.target_names
        fisher, moments = calibration_statistics(self.name, loop, c["fisher_labels"])
        kwargs = ({"tol": c["tfwsvd_tol"]} if self.name == "tfwsvd" else {"ridge": c["asvd_ridge"]}
                  if self.name == "asvd" else {"axis": c["fwsvd_axis"]} if self.name == "fwsvd" else {})
        proj = project_targets(loop.model, names, self.name, rank=c["rank"], params_fraction=c["params_fraction"],
                               rank_rule=c["rank_rule"], fisher=fisher, moments=moments,
                               form="factorized" if c["train"] == "factors" else "low_rank", projection_kwargs=kwargs)
        loop.sync_structure(names)
        self.skipped = proj.skipped
        self.energy_beta = proj.energy_beta
        return self.record(loop, loop.module_ranks(), event="project")

    def finalize(self, loop: Loop) -> None:
        compile_model(loop.model)


def calibration_statistics(method: str, loop: Loop, labels: str) -> tuple[dict | None, dict | None]:
    """:func:`lowrank.projection.measure_statistics` on the loop's calibration batches, through the Fisher
    forward of :func:`lowrank.compress` (:func:`lowrank.fisher.default_forward`; the estimator its ``auto``
    picks): ``(fisher, moments)``, ``None`` for what ``method`` does not measure."""
    if not METHOD_TABLE[method].needs_calibration:
        return None, None
    forward = lambda model, batch: default_forward(model, move_batch(batch, loop.device))  # noqa: E731
    names = loop.target_names
    estimator = "hooks"
    if METHOD_TABLE[method].fisher:
        with torch.random.fork_rng(devices=[]):   # a DataLoader's iterator draws its seed from the global RNG
            first = next(iter(loop.calibration_loader()))
        estimator = pick_fisher_estimator(loop.model, {n: loop.model.get_submodule(n) for n in names}, first,
                                          forward)
    return measure_statistics(method, loop.model, names, loop.calibration_loader(), forward, labels=labels,
                              random_state=loop.random_state, estimator=estimator)
