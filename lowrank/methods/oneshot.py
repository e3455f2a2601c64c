"""One-shot projections at a fixed size, then fine-tuning: the "not iterative" rows of the paper's Table 2.

``svd`` (Eq. 4), ``fwsvd`` (Eq. 5 with row-summed diagonal Fisher), ``tfwsvd`` (Eq. 5 with the full
diagonal Fisher; multi-start ALS run until a sweep changes the objective by at most ``tfwsvd_tol``
relative, :func:`lowrank.linalg.element_weighted_projection`), ``asvd`` (Eq. 7, activation-aware). The projection happens once, before the first
step, on the pre-trained base; the rest of the budget fine-tunes.

FWSVD's axis (``fwsvd_axis``): Hsu et al. write a layer as ``y = x W`` with ``W`` (in × out) and weight its
rows; the paper sums the diagonal Fisher "column-wise, making the approximation identical for each row".
With PyTorch's ``(out, in)`` layout, ``rows`` (default) gives each output neuron one weight (the Fisher
summed over the inputs) and ``columns`` each input one weight — the other reading, kept as an ablation.

Size: ``rank`` (one rank for every target layer, the paper's form) or ``params_fraction`` — the compressed
target layers' parameters (factors and biases) over the dense ones, met with per-layer ranks by
``rank_rule``: ``uniform`` (the largest rank of each layer that keeps at most that fraction of it) or
``energy`` (one energy threshold β for every layer, the largest β whose ranks fit the budget: the rank rule
of IEHT, Eq. 8, applied once — so a one-shot run can sit at any size an iterative run reaches, and differ
from it only in being one-shot). The choice is :func:`lowrank.api.compress`'s, on the same spectra.

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

from ..activations import input_second_moments
from ..configs import FisherLabels, Fraction, Interval, NonNegativeFloat, PositiveInt, setting
from ..data import move_batch
from ..fisher import default_forward, diagonal_fisher
from ..surgery import compile_model, compress_model, find_linear_layers
from ..utils import make_generator
from .base import Method, MethodConfig, register

#: how ``params_fraction`` becomes per-layer ranks (:func:`lowrank.api.compress`'s rules)
RANK_RULES = ("uniform", "energy")

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


@register("svd", "fwsvd", "tfwsvd", "asvd")
class OneShot(Method):
    config_class = OneShotConfig

    def setup(self, trainer) -> bool:
        c = {**self.keys, **self.cfg}
        names = trainer.target_names
        fisher = moments = None
        forward = lambda model, batch: default_forward(model, move_batch(batch, trainer.device))  # noqa: E731
        if self.name in ("fwsvd", "tfwsvd"):
            fisher = diagonal_fisher(trainer.model, trainer.calibration_loader(), names, forward,
                                     likelihood="categorical", labels=c["fisher_labels"],
                                     generator=make_generator(trainer.cfg["random_state"]), dtype=torch.float64)
            fisher = {n: f.to(trainer.model.get_submodule(n).weight.dtype) for n, f in fisher.items()}
        if self.name == "asvd":
            moments = input_second_moments(
                trainer.model, trainer.calibration_loader(), {n: trainer.model.get_submodule(n) for n in names},
                lambda model, batch: trainer.forward(model, move_batch(batch, trainer.device)),
                mask=lambda b: b.get("attention_mask") if isinstance(b, dict) else None)
        kwargs = ({"tol": c["tfwsvd_tol"]} if self.name == "tfwsvd" else {"ridge": c["asvd_ridge"]}
                  if self.name == "asvd" else {"axis": c["fwsvd_axis"]} if self.name == "fwsvd" else {})
        rank = c["rank"] if c["rank"] is not None else self._ranks_for_fraction(trainer, names, fisher, moments, kwargs)
        rep = compress_model(trainer.model, {"include": names}, method=self.name, rank=rank, fisher=fisher,
                             second_moments=moments, form="factorized" if c["train"] == "factors" else "low_rank",
                             projection_kwargs=kwargs)
        trainer.sync_structure(names)
        self.skipped = rep.skipped
        self.record(trainer, trainer.module_ranks(), event="project")
        return True

    def _ranks_for_fraction(self, trainer, names, fisher, moments, kwargs) -> dict[str, int]:
        """Per-layer ranks that meet ``params_fraction`` under ``rank_rule`` (:func:`lowrank.api.compress`'s
        rules, on the spectra its projection uses)."""
        from ..api import _energy_ranks, _spectrum, _uniform_ranks

        f = float(self.cfg["params_fraction"])
        layers = find_linear_layers(trainer.model, {"include": names})
        if self.cfg.get("rank_rule", "uniform") == "uniform":
            return _uniform_ranks(layers, f)
        ridge, eps = float(kwargs.get("ridge", 1e-6)), float(kwargs.get("eps", 1e-8))
        spectra = {n: _spectrum(self.name, layers[n].weight, None if fisher is None else fisher[n],
                                None if moments is None else moments[n], ridge, eps) for n in layers}
        ranks, self.energy_beta = _energy_ranks(layers, spectra, f)
        return ranks

    def finalize(self, trainer) -> None:
        compile_model(trainer.model)
