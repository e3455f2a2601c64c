"""The one-shot projection of a model's target layers — the "not iterative" rows of the paper's Table 2 —
shared by :func:`lowrank.compress` and the one-shot methods of the training loop
(:mod:`lowrank.methods.oneshot`, :mod:`lowrank.methods.tt`).

* :func:`measure_statistics` — what a method measures on calibration data (:data:`lowrank.method_table.STATISTICS`):
  the diagonal Fisher (:func:`lowrank.fisher.diagonal_fisher`, one forward: ``forward(model, batch) →
  FisherBatch``, by default :func:`lowrank.fisher.default_forward`, which returns the batch's labels that an
  empirical Fisher needs) or the input second moments (:func:`lowrank.activations.input_second_moments`).
* rank rules for a ``params_fraction``: :func:`uniform_ranks` (each layer keeps that fraction of itself) and
  :func:`energy_ranks` (one energy threshold β for every layer — IEHT's rule, Eq. 8, applied once — on the
  spectrum each method truncates, :func:`spectrum`); :func:`tt_caps` for tensor trains.
* :func:`project_targets` — the projection itself (Eq. 4, 5, 7; TT-SVD / FWTTM).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn as nn

from .activations import input_second_moments
from .fisher import diagonal_fisher, row_weights
from .layers import as_linear, factorization_pays
from .linalg import auto_ridge, select_rank
from .method_table import METHOD_TABLE
from .surgery import CompressionReport, compress_model, compress_model_tt
from .tt import max_tt_ranks, tt_num_params, tt_ranks_for, tt_shape_for
from .utils import make_generator

__all__ = ["RANK_RULES", "Projection", "batch_size", "measure_statistics", "pick_fisher_estimator", "spectrum",
           "uniform_ranks", "energy_ranks", "check_rank_one_fits", "tt_caps", "project_targets"]

#: how a ``params_fraction`` becomes per-layer ranks
RANK_RULES = ("uniform", "energy")


# ------------------------------------------------------------------------------------------ statistics
def batch_size(batch: Any) -> int | None:
    """The number of samples of a batch (a tensor, an ``(inputs, targets)`` pair or a dict of tensors with the
    samples on the first axis), or ``None`` when it has no such axis."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    if isinstance(batch, Mapping):
        return next((int(v.shape[0]) for v in batch.values() if isinstance(v, torch.Tensor) and v.dim()), None)
    if isinstance(batch, (tuple, list)) and batch:
        return batch_size(batch[0])
    return None


def pick_fisher_estimator(model: nn.Module, modules: Mapping[str, nn.Module], first: Any,
                          forward: Callable[[nn.Module, Any], Any], fisher_method: str = "auto") -> str:
    """``fisher_method``, or for ``auto`` the estimator of :func:`lowrank.fisher.diagonal_fisher` that can run
    this model: ``hooks`` needs every target's input to carry the batch on its first axis (windowed attention
    folds windows into it); else ``loop``, exact for any layout. Raises before any statistic when ``hooks``
    was asked for and cannot run. ``first``: one calibration batch, run once through ``forward``."""
    if fisher_method in ("func", "loop"):
        return fisher_method
    bsz = batch_size(first)
    folded: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, args, out, n=n: folded.append(n)
                                     if args[0].dim() < 2 or args[0].shape[0] != bsz else None)
             for n, m in modules.items()]
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            forward(model, first)
    finally:
        for h in hooks:
            h.remove()
        for m, t in modes.items():
            m.training = t
    if not folded:
        return "hooks"
    if fisher_method == "hooks":
        raise ValueError(f"fisher_method='hooks' cannot run this model: {folded[0]!r} receives inputs whose first "
                         f"axis is not the batch ({bsz}); allowed here: fisher_method='auto', 'loop' or 'func'")
    return "loop"


def measure_statistics(method: str, model: nn.Module, names: list[str], calibration: Iterable | None,
                       forward: Callable[[nn.Module, Any], Any], *, likelihood: str = "categorical",
                       labels: str = "true", random_state: int = 0, estimator: str = "hooks",
                       max_samples: int | None = None
                       ) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None]:
    """``(fisher, moments)`` that ``method`` projects with (``None`` for what it does not use).

    ``fisher``: name → the ``(out, in)`` diagonal Fisher of each target weight (float64), summed over the
    calibration samples (labels drawn from the model, ``true``, or the batch's, ``empirical``; Eq. 6).
    ``moments``: name → the ``(in, in)`` input second moment (float64), padding tokens left out.
    ``forward(model, batch)`` runs one batch (already on the model's device) and returns a
    :class:`lowrank.fisher.FisherBatch` or the outputs: the one forward of both statistics."""
    statistic = METHOD_TABLE[method].statistic
    fisher = moments = None
    if statistic in ("fisher", "fisher_rows"):
        fisher = diagonal_fisher(model, calibration, names, forward, likelihood=likelihood, labels=labels,
                                 method=estimator, generator=make_generator(random_state), dtype=torch.float64,
                                 max_samples=max_samples)
    elif statistic == "input_moments":
        mask = lambda b: b.get("attention_mask") if isinstance(b, Mapping) else None  # noqa: E731
        moments = input_second_moments(model, calibration, {n: model.get_submodule(n) for n in names}, forward,
                                       mask=mask)
    return fisher, moments


# ------------------------------------------------------------------------------------------ rank rules
def _dense_count(layer: nn.Linear) -> int:
    return layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)


def _factorized_count(m: int, n: int, k: int, bias: int) -> int:
    # what compress_model leaves: A·B when it pays, the dense layer when it does not
    return (k * (m + n) if factorization_pays(m, n, k) else m * n) + bias


def uniform_ranks(layers: Mapping[str, nn.Linear], f: float) -> dict[str, int]:
    """Each layer's largest rank ``k`` with ``k(m + n) + bias ≤ f · (mn + bias)`` (``layers``: ``(out, in)``)."""
    ranks = {}
    for name, layer in layers.items():
        m, n = layer.weight.shape
        b = layer.bias.numel() if layer.bias is not None else 0
        k = math.floor((f * (m * n + b) - b) / (m + n))
        if k < 1:
            raise ValueError(f"params_fraction={f} cannot be met with rank_rule='uniform': rank 1 of {name} "
                             f"({m}×{n}) already keeps {(m + n + b) / (m * n + b):.4f} of its parameters; allowed: "
                             f"a larger params_fraction, or rank_rule='energy' (which shares the budget across layers)")
        ranks[name] = min(k, min(m, n))
    return ranks


def spectrum(method: str, W: torch.Tensor, fisher: torch.Tensor | None, moment: torch.Tensor | None,
             ridge: float, eps: float) -> torch.Tensor:
    """The singular values ``method`` truncates: σ(W) for ``svd``; σ(D W) with FWSVD's row scaling D for
    ``fwsvd`` (and, as a closed-form stand-in, ``tfwsvd``, whose element-weighted problem has no spectrum);
    σ(W L) with ``C = L Lᵀ`` the ridged input second moment for ``asvd``. ``W`` is ``(out, in)``."""
    Wd = W.detach().double()
    if method == "svd":
        return torch.linalg.svdvals(Wd)
    if method in ("fwsvd", "tfwsvd"):
        # the scaling of lowrank.linalg.row_weighted_projection: D = diag(√(r + ε·mean r))
        r = row_weights(fisher.double()) if fisher.dim() == 2 else fisher.double()
        d = torch.sqrt(r + eps * r.mean().clamp_min(torch.finfo(torch.float64).tiny))
        return torch.linalg.svdvals(d[:, None] * Wd)
    # asvd: σ(W L)² are the eigenvalues of W C Wᵀ for C = L Lᵀ (the ridge of activation_aware_projection)
    C = moment.double()
    C = 0.5 * (C + C.mT)
    n = C.shape[0]
    C = C + ridge * (torch.trace(C) / n).clamp_min(torch.finfo(torch.float64).tiny) * torch.eye(n, dtype=C.dtype)
    ev = torch.linalg.eigvalsh(Wd @ C @ Wd.mT).flip(0).clamp_min(0)
    return ev[:min(Wd.shape)].sqrt()


def check_rank_one_fits(layers: Mapping[str, nn.Linear], f: float) -> None:
    """Refuse a fraction that rank 1 in every layer already exceeds (before any statistic is measured)."""
    total = sum(_dense_count(l) for l in layers.values())
    one = sum(_factorized_count(*l.weight.shape, 1, l.bias.numel() if l.bias is not None else 0)
              for l in layers.values())
    if one > f * total:
        raise ValueError(f"params_fraction={f} cannot be met with rank_rule='energy': rank 1 in every target layer "
                         f"already keeps {one / total:.4f} of the target parameters; allowed: a larger params_fraction")


def energy_ranks(layers: Mapping[str, nn.Linear], spectra: Mapping[str, torch.Tensor],
                 f: float) -> tuple[dict[str, int], float]:
    """``(ranks, β)``: the largest energy threshold β whose ranks (the smallest head of each spectrum holding
    ≥ β of its Σσ², IEHT's rule) keep at most ``f`` of the target parameters, found exactly over the finite
    set of values where a rank changes."""
    shapes = {n: (tuple(l.weight.shape), l.bias.numel() if l.bias is not None else 0) for n, l in layers.items()}
    budget = f * sum(_dense_count(l) for l in layers.values())

    def ranks_at(beta: float) -> dict[str, int]:
        return {n: select_rank(s, "energy", beta=beta, name=n) for n, s in spectra.items()}

    def cost(ranks: Mapping[str, int]) -> int:
        return sum(_factorized_count(*shapes[n][0], k, shapes[n][1]) for n, k in ranks.items())

    # β only changes a rank where it crosses a layer's cumulative energy fraction e_l(k); search those
    cands = set()
    for s in spectra.values():
        e = torch.cumsum(s.double() ** 2, 0)
        if e[-1] > 0:
            cands.update(float(v) for v in (e / e[-1]).clamp(max=1.0))
    cands = sorted(c for c in cands if c > 0)
    lo, hi = 0, len(cands) - 1
    if not cands or cost(ranks_at(cands[0])) > budget:
        one = cost({n: 1 for n in spectra})
        raise ValueError(f"params_fraction={f} cannot be met with rank_rule='energy': rank 1 in every target layer "
                         f"already keeps {one / sum(_dense_count(l) for l in layers.values()):.4f} of the target "
                         f"parameters; allowed: a larger params_fraction")
    while lo < hi:   # largest candidate whose ranks fit the budget (cost is non-decreasing in β)
        mid = (lo + hi + 1) // 2
        if cost(ranks_at(cands[mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return ranks_at(cands[lo]), cands[lo]


def tt_caps(layers: Mapping[str, nn.Linear], f: float, cores: int) -> dict[str, int]:
    """Each layer's largest bond-rank cap whose train (``cores`` cores) keeps at most ``f`` of the layer."""
    caps = {}
    for name, layer in layers.items():
        m, n = layer.weight.shape
        b = layer.bias.numel() if layer.bias is not None else 0
        shape = tt_shape_for(m, n, cores)
        best = None
        for cap in range(1, max(max_tt_ranks(shape), default=1) + 1):
            if tt_num_params(shape, tt_ranks_for(shape, cap)) + b <= f * (m * n + b):
                best = cap
            else:
                break
        if best is None:
            one = tt_num_params(shape, tt_ranks_for(shape, 1)) + b
            raise ValueError(f"params_fraction={f} cannot be met for {name} ({m}×{n}) with {cores} TT cores: bond "
                             f"rank 1 already keeps {one / (m * n + b):.4f} of its parameters; allowed: a larger "
                             f"params_fraction or another tt_cores")
        caps[name] = best
    return caps


# ------------------------------------------------------------------------------------------ the projection
@dataclass
class Projection:
    """What :func:`project_targets` did: the surgery's report, the layers it left dense (and why), the
    energy threshold β of ``rank_rule="energy"``."""

    report: CompressionReport
    skipped: dict[str, str] = field(default_factory=dict)
    energy_beta: float | None = None


def project_targets(model: nn.Module, names: list[str], method: str, *, rank: int | Mapping[str, int] | None = None,
                    params_fraction: float | None = None, rank_rule: str = "uniform",
                    fisher: Mapping[str, torch.Tensor] | None = None, moments: Mapping[str, torch.Tensor] | None = None,
                    form: str = "factorized", projection_kwargs: Mapping[str, Any] | None = None, tt_cores: int = 3,
                    tt_sweeps: int = 10, untie: bool = False) -> Projection:
    """Project the target layers ``names`` of ``model`` in place with one-shot ``method`` at ``rank`` (one
    int, or name → int; for a tensor train the bond-rank cap) or ``params_fraction`` under ``rank_rule``.

    ``fisher`` / ``moments``: :func:`measure_statistics`'s (float64). A low-rank projection uses the Fisher
    in each weight's dtype (also for the spectra of the energy rule); FWTTM fits FWSVD's row weights of the
    float64 Fisher. ``params_fraction=1`` keeps every layer dense. ``projection_kwargs`` go to
    :func:`lowrank.linalg.project` (a ``ridge`` of ``"auto"`` is :func:`lowrank.linalg.auto_ridge`)."""
    layers = {n: as_linear(model.get_submodule(n)) for n in names}   # (out, in) weights, read-only
    kwargs = dict(projection_kwargs or {})
    if params_fraction == 1.0:
        # the dense layer is the best model within the whole budget: nothing to compress
        return Projection(CompressionReport(), {n: "params_fraction=1 keeps the dense layer" for n in names})
    if METHOD_TABLE[method].form == "tt":
        if rank is not None:
            caps = dict(rank) if isinstance(rank, Mapping) else {n: rank for n in names}
        else:
            caps = tt_caps(layers, params_fraction, tt_cores)
        rows = None if fisher is None else {n: row_weights(fisher[n].double()) for n in names}
        rep = compress_model_tt(model, {"include": names}, method=method, cores=tt_cores,
                                max_rank={n: caps[n] for n in names}, fisher=rows, sweeps=tt_sweeps, untie=untie)
        return Projection(rep, dict(rep.skipped))
    if fisher is not None:
        fisher = {n: F.to(layers[n].weight.dtype) for n, F in fisher.items()}
    beta = None
    if rank is not None:
        ranks = dict(rank) if isinstance(rank, Mapping) else {n: rank for n in names}
    elif rank_rule == "uniform":
        ranks = uniform_ranks(layers, params_fraction)
    else:
        ridge, eps = kwargs.get("ridge", 1e-6), float(kwargs.get("eps", 1e-8))
        spectra = {n: spectrum(method, layers[n].weight, None if fisher is None else fisher[n],
                               None if moments is None else moments[n],
                               auto_ridge(moments[n], n) if ridge == "auto" else float(ridge), eps)
                   for n in names}
        ranks, beta = energy_ranks(layers, spectra, params_fraction)
    rep = compress_model(model, {"include": names}, method=method, rank={n: ranks[n] for n in names},
                         fisher=fisher, second_moments=moments, form=form, projection_kwargs=kwargs, untie=untie)
    return Projection(rep, dict(rep.skipped), beta)
