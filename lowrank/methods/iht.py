"""Iterative hard thresholding in the ``U S Vᵀ`` training form: OIALR, IEHT (Algorithm 1 of the paper,
arXiv 2507.09428), IFHT (its Algorithm 2), and their global variants (Appendix D).

All share the loop of the paper's Algorithm 1, over steps or epochs (``oialr_type``), with delay ``d`` and frequency ν:

* ``t < d``: train full rank;
* ``t = d``: convert every target layer to ``U S Vᵀ`` at full rank (exact), freeze ``U``, ``V``;
* ``t > d`` and ``t ≡ 0 (mod ν)``: for each layer, ``U' S' V'ᵀ = svd(S)``; ``U ← U U'``,
  ``V ← V V'``, ``S ← S'``; drop singular values by the method's rule; the cut returns its rotations
  (:class:`lowrank.loop.Change`) and the driver carries the optimizer state (:mod:`lowrank.optim_state`);
* otherwise: train ``S`` (and biases, and every non-target parameter) with ``U``, ``V`` frozen.

Rank rules (:func:`lowrank.linalg.select_rank`):

* ``oialr``: drop σ < β·σ_max ("relative"); β = ``oialr_threshold`` (paper default 0.1, Table 3 uses 0.15–0.25);
* ``ieht``: keep the smallest head holding ≥ β of the energy Σσ² ("energy"); β ∈ 0.9–0.97 in Table 3;
* ``ifht``: the same energy rule, on the *Fisher-weighted* spectrum (below);
* ``global_ieht`` / ``global_ifht``: one energy threshold over the spectra of all layers together.

IFHT algebra (Algorithm 2 writes ``svd(T̃ S)`` and ``U ← U T̃⁻¹ U'``; we make the space explicit).
The Fisher is estimated for the *dense* weight ``W = U S Vᵀ`` (per-sample, :mod:`lowrank.fisher`) and
reduced to FWSVD row weights ``r ∈ ℝ^m`` (one per output neuron). Within the current bases a cut
replaces ``S`` by ``Ŝ`` of lower rank, and its row-weighted error is

    Σᵢ rᵢ ‖(U (S − Ŝ) Vᵀ)ᵢ‖² = ‖D U (S − Ŝ) Vᵀ‖² = ‖D U (S − Ŝ)‖²    (D = diag √r, VᵀV = I)
                             = tr((S − Ŝ)ᵀ M (S − Ŝ)) = ‖T (S − Ŝ)‖²    (M = Uᵀ D² U = T², T = M^{1/2}).

So the Fisher-optimal cut of rank k' is ``Ŝ = T⁻¹ [T S]_{k'}`` (Eckart–Young in the T-scaled
space, exactly as FWSVD), and k' is chosen by the energy rule on the singular values of ``T S`` — the
layer's "Fisher energy". ``T`` is the k×k symmetric square root of ``UᵀD²U`` (it is diagonal only if
``U`` is a coordinate basis, which is how the box's ``T̃`` reads). Then we re-factorise to keep the
bases semi-orthogonal: ``T⁻¹ U'_{k'} diag(σ') V'_{k'}ᵀ = Ua diag(Sa) Vaᵀ`` (an SVD through
:func:`lowrank.linalg.orthonormalize`), ``U ← U Ua``, ``V ← V Va``, ``S ← diag(Sa)``. With uniform
Fisher ``T = c·I`` and IFHT reduces to IEHT exactly (tested).

Safeguards: a minimum rank ``max(1, ⌈oialr_min_rank_percent · min(m, n)⌉)`` (default 0.02, as OIALR),
never rank 0; an optional cap ``max_cut_fraction`` on the fraction of the current rank one update may
remove (default ``null`` = no cap, as in the paper).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn

from ..configs import FisherLabels, Fraction, NonNegativeInt, PositiveInt, setting
from ..data import move_batch
from ..fisher import default_forward, diagonal_fisher
from ..layers import LowRankLinear, conv1d_class
from ..linalg import LowRankFactors, min_rank_from_percent, orthonormalize, robust_svd, select_rank
from ..loop import Change, Loop
from ..method_table import METHOD_TABLE, method_names
from ..schedules import DEPTH_SCHEDULES, layer_thresholds
from ..surgery import compile_model, replace_module, to_low_rank
from ..utils import make_generator
from .base import Method, MethodConfig, register

__all__ = ["IHTConfig", "IterativeHardThresholding", "fisher_row_weights", "check_fisher_samples", "fisher_metric_root",
           "cut_low_rank_layer"]


def fisher_row_weights(loop: Loop, names: list[str], model: nn.Module | None = None,
                       samples: int | None = None, labels: str = "true") -> dict[str, torch.Tensor]:
    """Fisher row weights (``labels``: ``true`` or ``empirical``, the methods' ``fisher_labels`` key) of the
    current effective weights of ``names`` of ``model`` (default: the training model), from the first
    ``samples`` calibration examples (default: all of them; the methods' ``fisher_samples`` key). Each row
    weight sums the diagonal Fisher over the layer's inputs (one weight per output neuron).

    The Fisher helper takes the ``LowRankLinear`` layers as they are: the per-sample gradient with respect to
    ``W = U S Vᵀ`` is ``Γᵀ X`` from each layer's input and output gradient, so no dense copy of the model is
    made (a copy plus rebuilt Linears at every cut was most of a cut's cost on MiniLM).
    """
    target = loop.model if model is None else model
    key = loop.random_state * 7919 + loop.step
    forward = lambda model, batch: default_forward(model, move_batch(batch, loop.device))  # noqa: E731
    # row sums straight from the per-sample Gram matrices (lowrank.fisher._reduced_squares): no (out, in)
    # per-sample gradient is formed
    return diagonal_fisher(target, loop.calibration_loader(), names, forward, likelihood="categorical",
                           labels=labels, generator=make_generator(key), dtype=torch.float64, max_samples=samples,
                           reduce="rows")


def check_fisher_samples(have: int, samples: int | None) -> None:
    """Refuse, before any training, a ``fisher_samples`` larger than the calibration set (``have`` samples)."""
    if samples is None:
        return
    if samples > have:
        raise ValueError(f"fisher_samples={samples} exceeds the calibration set ({have} samples); allowed: "
                         f"1 ≤ fisher_samples ≤ {have}, or null for all of them")


def fisher_metric_root(U: torch.Tensor, r: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """``T = (Uᵀ diag(r) U)^{1/2}`` and ``T⁻¹`` (symmetric), with a relative floor ``eps`` on the
    eigenvalues so a row set with zero Fisher cannot make ``T`` singular."""
    M = (U * r[:, None]).mT @ U
    M = 0.5 * (M + M.mT)
    evals, Q = torch.linalg.eigh(M)
    floor = eps * evals.max().clamp_min(torch.finfo(M.dtype).tiny)
    root = evals.clamp_min(floor).sqrt()
    return (Q * root) @ Q.mT, (Q / root) @ Q.mT


def cut_low_rank_layer(layer: LowRankLinear, new_rank_fn, row_w: torch.Tensor | None = None, *,
                       return_rotation: bool = False):
    """Rotate the bases of ``layer`` to the SVD of its (Fisher-scaled) core and keep ``new_rank_fn(σ)``
    values. Replaces ``U``, ``S``, ``V`` with new ``nn.Parameter``s. Returns ``(old_rank, new_rank)``,
    and with ``return_rotation`` also ``(Ua, Va)`` (k × k', orthonormal columns, float64): the new bases
    are ``U Ua`` and ``V Va``, so the new core's gradient is ``Uaᵀ (∂L/∂S) Va`` (what the ``carry``
    optimizer policy rotates Adam's moments by)."""
    with torch.no_grad():
        U, S, V = layer.U.detach(), layer.S.detach(), layer.V.detach()
        work = torch.float64
        Ud, Sd, Vd = U.to(work), S.to(work), V.to(work)
        if row_w is None:
            Ux, sx, Vxh = robust_svd(Sd)
            k = new_rank_fn(sx)
            Ua, Sa, Vah = Ux[:, :k], sx[:k], Vxh[:k]
        else:
            T, Tinv = fisher_metric_root(Ud, row_w.to(work))
            Ux, sx, Vxh = robust_svd(T @ Sd)
            k = new_rank_fn(sx)
            f = orthonormalize(LowRankFactors(Tinv @ Ux[:, :k], sx[:k], Vxh[:k]))
            Ua, Sa, Vah = f.U, f.S, f.Vh
        dt = layer.S.dtype
        layer.U = nn.Parameter((Ud @ Ua).to(dt), requires_grad=False)
        layer.V = nn.Parameter((Vd @ Vah.mT).to(dt), requires_grad=False)
        layer.S = nn.Parameter(torch.diag(Sa).to(dt))
    if return_rotation:
        return S.shape[0], k, Ua, Vah.mT
    return S.shape[0], k


def layer_spectrum(layer: LowRankLinear, row_w: torch.Tensor | None) -> torch.Tensor:
    S = layer.S.detach().double()
    if row_w is None:
        return torch.linalg.svdvals(S)
    T, _ = fisher_metric_root(layer.U.detach().double(), row_w.double())
    return torch.linalg.svdvals(T @ S)


@dataclasses.dataclass(frozen=True)
class IHTConfig(MethodConfig):
    """The keys of OIALR / IEHT / IFHT and the global variants (Algorithms 1–2 of the paper)."""

    oialr_threshold: Fraction | None = setting(None, "β of the rank rule; null = 0.1 for oialr, 0.95 for the others")
    oialr_frequency: PositiveInt = setting(1, "ν: cut every ν steps or epochs")
    oialr_type: Literal["step", "epoch"] = setting("epoch", "what delay, frequency and cut_until count")
    oialr_depth_schedule: Literal[DEPTH_SCHEDULES] = setting("constant", "β per layer by depth (lowrank.schedules)")
    oialr_min_rank_percent: Fraction = setting(0.02, "no layer below ⌈percent · min(m, n)⌉, never below 1")
    delay: NonNegativeInt = setting(1, "d: train full rank until t = d, then convert to U S Vᵀ")
    max_cut_fraction: Fraction | None = setting(None, "cap on the share of a layer's rank one cut removes; null = none")
    cut_until: NonNegativeInt | None = setting(None, "ours: no cut after t = cut_until (a recovery tail); null = as "
                                                     "the paper")
    fisher_labels: FisherLabels = setting("true", "labels of the Fisher of IFHT's cuts")
    fisher_samples: PositiveInt | None = setting(None, "calibration examples per Fisher; null = all of them")

    only_for: ClassVar[dict[str, tuple[str, ...]]] = {
        "fisher_labels": ("ifht", "global_ifht"), "fisher_samples": ("ifht", "global_ifht"),
        "oialr_depth_schedule": ("oialr", "ieht", "ifht")}          # global methods: one threshold
    DEFAULT_THRESHOLD: ClassVar[dict[str, float]] = {n: i.default_threshold for n, i in METHOD_TABLE.items()
                                                     if i.family == "iht"}

    def check(self, *, given: frozenset[str], name: str) -> None:
        if self.cut_until is not None and self.cut_until <= self.delay:
            raise ValueError(f"cut_until={self.cut_until!r} must be null or an int > delay={self.delay} "
                             f"(in {self.oialr_type}s): no cut could happen otherwise")


@register(*method_names(family="iht"))
class IterativeHardThresholding(Method):
    """OIALR / IEHT / IFHT and the global variants (module docstring)."""

    config_class = IHTConfig

    def __init__(self, name: str, cfg: dict[str, Any]):
        super().__init__(name, cfg)
        c = self.config
        self.cut_until = c.cut_until
        self.fisher_samples = c.fisher_samples
        self.beta = float(c.oialr_threshold if c.oialr_threshold is not None else c.DEFAULT_THRESHOLD[name])
        self.freq = c.oialr_frequency
        self.kind = c.oialr_type
        self.schedule = c.oialr_depth_schedule
        self.min_rank_percent = float(c.oialr_min_rank_percent)
        self.delay = c.delay
        self.max_cut = c.max_cut_fraction
        self.rule = "relative" if name == "oialr" else "energy"
        self.weighted = METHOD_TABLE[name].fisher
        self.is_global = METHOD_TABLE[name].threshold_scope == "global"
        self.fisher_labels = c.fisher_labels
        self.converted = False
        self.conv1d: list[str] = []   # targets that were transformers Conv1D layers before the conversion

    def check_budget(self, *, steps: int, epochs: int, calibration_samples: int) -> None:
        horizon = steps if self.kind == "step" else epochs
        if self.delay >= horizon:
            raise ValueError(f"delay={self.delay} is beyond the run ({horizon} {self.kind}s); "
                             f"allowed: 0 ≤ delay < {horizon}")
        if self.weighted:
            check_fisher_samples(calibration_samples, self.fisher_samples)

    def rank_floor(self, loop: Loop) -> dict[str, int]:
        """``oialr_min_rank_percent`` as ranks: ``max(1, ⌈percent · min(m, n)⌉)`` per target layer."""
        return {n: min_rank_from_percent(tuple(loop.model.get_submodule(n).weight.shape), self.min_rank_percent)
                for n in loop.target_names}

    # ------------------------------------------------------------------ hooks
    def setup(self, loop: Loop) -> Change | None:
        return self._convert(loop) if self.delay == 0 else None

    def after_step(self, loop: Loop) -> Change | None:
        return self._tick(loop, loop.step) if self.kind == "step" else None

    def after_epoch(self, loop: Loop) -> Change | None:
        return self._tick(loop, loop.epoch) if self.kind == "epoch" else None

    def _tick(self, loop: Loop, t: int) -> Change | None:
        """Algorithm 1's schedule at step / epoch ``t``: convert at ``t = delay``, cut every ν after it."""
        if not self.converted:
            return self._convert(loop) if t >= self.delay else None
        if t > self.delay and t % self.freq == 0 and (self.cut_until is None or t <= self.cut_until):
            return self.cut(loop)
        return None

    def _convert(self, loop: Loop) -> Change:
        # every rank converts (same shapes); rank 0's factors are then broadcast, since SVDs on
        # different ranks may differ in sign
        conv = conv1d_class()
        self.conv1d = [n for n in loop.target_names
                       if conv is not None and isinstance(loop.model.get_submodule(n), conv)]
        to_low_rank(loop.model, {"include": loop.target_names})
        loop.sync_structure(loop.target_names)
        self.converted = True
        return self.record(loop, loop.module_ranks(), event="convert")

    # ------------------------------------------------------------------ the cut
    def _min_rank(self, layer: LowRankLinear) -> int:
        return min(layer.rank, min_rank_from_percent((layer.out_features, layer.in_features), self.min_rank_percent))

    def _cap(self, layer: LowRankLinear, k: int) -> int:
        if self.max_cut is None:
            return k
        return max(k, layer.rank - math.floor(self.max_cut * layer.rank))

    def cut(self, loop: Loop) -> Change:
        """One cut of every target layer (module docstring); returns the new ranks and each core's rotation."""
        names = loop.target_names
        layers = {n: loop.model.get_submodule(n) for n in names}
        rotations = {}
        if loop.is_main:
            row_w = (fisher_row_weights(loop, names, samples=self.fisher_samples, labels=self.fisher_labels)
                     if self.weighted else {n: None for n in names})
            if self.is_global:
                ranks = self._global_ranks(layers, row_w)
                fns = {n: (lambda s, k=k: k) for n, k in ranks.items()}
            else:
                betas = layer_thresholds(names, self.beta, self.schedule, self.rule)
                fns = {n: (lambda s, n=n: self._cap(layers[n], select_rank(
                    s, self.rule, beta=betas[n], min_rank=self._min_rank(layers[n]), name=n))) for n in names}
            for n in names:
                old = layers[n].S
                _, _, Ua, Va = cut_low_rank_layer(layers[n], fns[n], row_w[n], return_rotation=True)
                rotations[id(layers[n].S)] = (old, Ua, Va)
        loop.sync_structure(names)
        change = self.record(loop, loop.module_ranks(), event="cut")
        change.rotations = rotations
        return change

    def _global_ranks(self, layers: dict[str, LowRankLinear], row_w: dict[str, torch.Tensor | None]) -> dict[str, int]:
        """One energy threshold over all layers: keep the largest (Fisher-weighted) singular values,
        across layers, that together hold ≥ β of the total energy; each layer keeps its values above the
        resulting cut-off (clamped to its minimum rank and the cap)."""
        spectra = {n: layer_spectrum(l, row_w[n]) for n, l in layers.items()}
        allv = torch.cat(list(spectra.values()))
        k_all = select_rank(torch.sort(allv, descending=True).values, "energy", beta=self.beta)
        tau = torch.sort(allv, descending=True).values[k_all - 1]
        out = {}
        for n, s in spectra.items():
            k = int((s >= tau).sum())
            out[n] = self._cap(layers[n], min(max(k, self._min_rank(layers[n])), s.numel()))
        return out

    def finalize(self, loop: Loop) -> None:
        compiled = compile_model(loop.model)
        conv = conv1d_class()
        for n in self.conv1d:
            # a layer kept dense (A·B would not pay) takes back its Conv1D form: the model keeps its base's
            # structure, which saving and loading rely on
            if type(compiled.get(n)) is nn.Linear:
                lin = compiled[n]
                with torch.random.fork_rng(devices=[]):   # Conv1D draws an initial weight, overwritten below
                    layer = conv(lin.out_features, lin.in_features).to(lin.weight)
                with torch.no_grad():
                    layer.weight.copy_(lin.weight.mT)
                    layer.bias.copy_(lin.bias)
                replace_module(loop.model, n, layer)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "converted": self.converted, "conv1d": list(self.conv1d)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.converted = bool(state.get("converted", False))
        self.conv1d = list(state.get("conv1d", []))
