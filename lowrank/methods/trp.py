"""Trained Rank Pruning (TRP, Xu et al. 2020) and its Fisher-weighted variant FWTRP: the paper's
Algorithms 3 and 4.

The weights stay dense during training. Every ``trp_frequency`` steps each target weight is hard
thresholded by the energy rule — the smallest head of singular values holding ≥ β of Σσ² is kept:

    TRP:    U S Vᵀ = svd(W),        W ← U_k S_k V_kᵀ,          G ← U_k V_kᵀ
    FWTRP:  U S Vᵀ = svd(T W),      W ← T⁻¹ U_k S_k V_kᵀ,      G ← U_k V_kᵀ

with ``T = diag(√r)`` from the Fisher row weights ``r`` of the current ``W`` (the FWSVD projection,
:func:`lowrank.linalg.row_weighted_projection`; the box's ``svd(T̃ S_i)`` means the layer's weight),
estimated from ``fisher_samples`` calibration examples. ``G`` is the nuclear-norm sub-gradient
(∂‖W‖_* ∋ U Vᵀ over the kept singular directions).

The nuclear-norm term (``nuclear_norm_mode``). The TRP paper trains ``L(W) + λ Σ_l ‖W_l‖_*`` by
stochastic sub-gradient descent: the sub-gradient ``λ G`` is part of the loss gradient, so it goes
through the optimizer at every step. Appendix B.3 of the paper says "with nuclear norm gradients
saved, and subsequently each nuclear_norm_frequency, gradient steps are performed". We implement:

* ``gradient`` (default; the TRP paper's regulariser): before every optimizer step ``λ G`` is added
  to each target weight's gradient (so AdamW scales it like the loss gradient); ``G`` is saved at
  every truncation and refreshed every ``nuclear_norm_frequency`` steps from the current ``W`` (the
  same rule and, for FWTRP, the row weights of the last truncation: no extra Fisher);
* ``step`` (Algorithm 3 read literally): every ``nuclear_norm_frequency`` steps a plain step
  ``W ← W − lr · λ · G`` with the last saved ``G``. With Table 3's λ = 3e-4 and lr 1e-4 this moves the
  weights by ~1e-8 per application: in that reading the term is inert, and TRP is periodic truncation.

``nuclear_norm_frequency`` defaults to ``trp_frequency // 2``, as in Tables 3–5.

Scoring (:meth:`TrainedRankPruning.scoring_model`). Between truncations the weights re-grow to full
rank, so the model being trained is dense; an evaluation scores a truncated, compiled copy (the same
truncation and compile as the end of the run), so that every logged accuracy comes with the size of
the model that produced it. Training continues on the dense weights.

Compile (end of Algorithms 3–4): training after the last truncation makes ``W`` full rank again, so
the compile step applies the same truncation once more and factorises ``W = (U√S)(√S Vᵀ)`` at that
rank — a layer stays dense when ``k(m + n) ≥ m n``. The reported accuracy is that of the compiled
model.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn

from ..configs import FisherLabels, Fraction, NonNegativeFloat, PositiveInt, setting
from ..layers import FactorizedLinear, factorization_pays, linear_shape
from ..linalg import LowRankFactors, min_rank_from_percent, robust_svd, select_rank
from ..loop import Loop
from ..method_table import METHOD_TABLE, method_names
from ..schedules import DEPTH_SCHEDULES, layer_thresholds
from ..surgery import replace_module
from .base import Method, MethodConfig, register
from .iht import check_fisher_samples, fisher_row_weights

__all__ = ["TRPConfig", "TrainedRankPruning", "truncate_dense"]


def out_in(layer: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """``t`` (the layer's weight, or a tensor of its layout: its gradient) as an ``(out, in)`` view: itself for
    an ``nn.Linear``, its transpose for transformers' ``Conv1D``, which stores ``(in, out)``
    (:func:`lowrank.layers.as_linear`). A view: writing into it writes the layer's tensor."""
    return t if isinstance(layer, nn.Linear) else t.mT


def truncate_dense(W: torch.Tensor, beta: float, min_rank: int, row_w: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Energy truncation of a dense weight (Euclidean, or in the Fisher row metric): ``(W_k, G, k)``."""
    Wd = W.detach().double()
    if row_w is None:
        U, S, Vh = robust_svd(Wd)
        k = select_rank(S, "energy", beta=beta, min_rank=min_rank)
        W_k = (U[:, :k] * S[:k]) @ Vh[:k]
    else:
        d = torch.sqrt(row_w.double() + 1e-8 * row_w.double().mean().clamp_min(1e-300))
        U, S, Vh = robust_svd(d[:, None] * Wd)
        k = select_rank(S, "energy", beta=beta, min_rank=min_rank)
        W_k = ((U[:, :k] * S[:k]) @ Vh[:k]) / d[:, None]
    G = U[:, :k] @ Vh[:k]
    return W_k.to(W.dtype), G.to(W.dtype), k


@dataclasses.dataclass(frozen=True)
class TRPConfig(MethodConfig):
    """The keys of TRP and FWTRP (Algorithms 3–4 of the paper)."""

    trp_threshold: Fraction = setting(0.95, "β of the energy rule of every truncation")
    trp_frequency: PositiveInt = setting(50, "truncate every this many steps")
    nuclear_norm_weight: NonNegativeFloat = setting(3e-4, "λ of the nuclear-norm term")
    nuclear_norm_frequency: PositiveInt | None = setting(None, "steps between nuclear-norm updates; null = "
                                                               "trp_frequency // 2")
    nuclear_norm_mode: Literal["gradient", "step"] = setting("gradient", "how λ G is applied (module docstring)")
    oialr_depth_schedule: Literal[DEPTH_SCHEDULES] = setting("constant", "β per layer by depth (lowrank.schedules)")
    oialr_min_rank_percent: Fraction = setting(0.02, "no layer below ⌈percent · min(m, n)⌉, never below 1")
    fisher_labels: FisherLabels = setting("true", "labels of FWTRP's Fisher")
    fisher_samples: PositiveInt | None = setting(None, "calibration examples per Fisher; null = all of them")

    only_for: ClassVar[dict[str, tuple[str, ...]]] = {"fisher_labels": ("fwtrp",), "fisher_samples": ("fwtrp",)}


@register(*method_names(family="trp"))
class TrainedRankPruning(Method):
    config_class = TRPConfig

    def __init__(self, name: str, cfg: dict[str, Any]):
        super().__init__(name, cfg)
        c = self.config
        self.beta = float(c.trp_threshold)
        self.freq = c.trp_frequency
        self.nn_weight = float(c.nuclear_norm_weight)
        self.nn_freq = c.nuclear_norm_frequency or max(1, self.freq // 2)
        self.nn_mode = c.nuclear_norm_mode
        self.schedule = c.oialr_depth_schedule
        self.min_rank_percent = float(c.oialr_min_rank_percent)
        self.fisher_samples = c.fisher_samples
        self.weighted = METHOD_TABLE[name].fisher
        self.fisher_labels = c.fisher_labels
        self.current: dict[str, int] = {}
        self.G: dict[str, torch.Tensor] = {}
        self.row_w: dict[str, torch.Tensor] = {}   # FWTRP: the row weights of the last truncation
        self.compiled = False

    def check_budget(self, *, steps: int, epochs: int, calibration_samples: int) -> None:
        if self.weighted:
            check_fisher_samples(calibration_samples, self.fisher_samples)

    def rank_floor(self, loop: Loop) -> dict[str, int]:
        """``oialr_min_rank_percent`` as ranks: ``max(1, ⌈percent · min(m, n)⌉)`` per target layer."""
        return {n: min_rank_from_percent(tuple(loop.model.get_submodule(n).weight.shape), self.min_rank_percent)
                for n in loop.target_names}

    # ------------------------------------------------------------------ the truncation
    def _truncation(self, loop: Loop, model, row_w: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
        """The energy truncation of every target weight of ``model``: ``(W_k, G, k)`` per layer, ``(out, in)``."""
        names = loop.target_names
        betas = layer_thresholds(names, self.beta, self.schedule, "energy")
        Wk, G, ranks = {}, {}, {}
        for n in names:
            layer = model.get_submodule(n)
            mr = min_rank_from_percent(tuple(layer.weight.shape), self.min_rank_percent)
            Wk[n], G[n], ranks[n] = truncate_dense(out_in(layer, layer.weight), betas[n], mr, row_w.get(n))
        return Wk, G, ranks

    def _row_weights(self, loop: Loop, model=None) -> dict[str, torch.Tensor]:
        if not self.weighted:
            return {}
        return fisher_row_weights(loop, loop.target_names, model, samples=self.fisher_samples,
                                  labels=self.fisher_labels)

    def _truncate_all(self, loop: Loop) -> dict[str, int]:
        names = loop.target_names
        ranks = {}
        if loop.is_main:
            self.row_w = self._row_weights(loop)
            Wk, self.G, ranks = self._truncation(loop, loop.model, self.row_w)
            with torch.no_grad():
                for n in names:
                    layer = loop.model.get_submodule(n)
                    out_in(layer, layer.weight).copy_(Wk[n])
        loop.sync_structure(names)
        self.current = loop.broadcast_object(ranks)
        if self.nn_mode == "gradient":
            self.G = loop.broadcast_object(self.G)  # every rank adds the same sub-gradient
        return self.current

    def _refresh_subgradient(self, loop: Loop) -> None:
        """``G`` of the current (re-grown) weights, by the truncation rule, without changing them."""
        if loop.is_main:
            _, self.G, _ = self._truncation(loop, loop.model, self.row_w)
        self.G = loop.broadcast_object(self.G)

    # ------------------------------------------------------------------ hooks
    def before_optimizer_step(self, loop: Loop) -> None:
        if self.nn_mode != "gradient" or self.nn_weight == 0 or not self.G:
            return
        for n, G in self.G.items():
            layer = loop.model.get_submodule(n)
            w = layer.weight
            if w.grad is not None:
                out_in(layer, w.grad).add_(G.to(device=w.device, dtype=w.dtype), alpha=self.nn_weight)

    def after_step(self, loop: Loop) -> None:
        t = loop.step
        if t % self.freq == 0:
            ranks = self._truncate_all(loop)
            self.record(loop, ranks, event="truncate")
        elif t % self.nn_freq == 0 and self.current and self.nn_weight > 0 and self.nn_mode == "gradient":
            self._refresh_subgradient(loop)
        if t % self.nn_freq == 0 and self.current and self.nn_weight > 0 and self.nn_mode == "step":
            lr = loop.lr_at(t)
            with torch.no_grad():
                for n, G in self.G.items():  # G lives on the main rank only; the others receive W below
                    layer = loop.model.get_submodule(n)
                    out_in(layer, layer.weight).sub_(lr * self.nn_weight * G.to(loop.device))
            loop.sync_structure(loop.target_names)
        return None  # parameters keep their identity and shape: the optimizer state stays valid

    def ranks(self, loop: Loop) -> dict[str, int]:
        if not self.current:
            return loop.module_ranks()
        mods = {n: loop.model.get_submodule(n) for n in loop.target_names}
        return {n: (m.rank if isinstance(m, FactorizedLinear) else self.current[n]) for n, m in mods.items()}

    def scoring_model(self, loop: Loop):
        """Before the first truncation the model is dense and is scored as it is; after it (and before the
        compile) a copy truncated and compiled exactly as :meth:`finalize` would (module docstring)."""
        if not self.current or self.compiled:
            return None
        model = copy.deepcopy(loop.model)
        row_w = self._row_weights(loop, model) if loop.is_main else {}
        Wk, _, ranks = self._truncation(loop, model, row_w)
        self._compile(model, Wk, ranks)
        return model, ranks

    def _compile(self, model, Wk: dict[str, torch.Tensor], ranks: dict[str, int]) -> None:
        """Write each truncated ``(out, in)`` weight ``Wk`` and factorise it at its rank where that pays."""
        for n, k in ranks.items():
            layer = model.get_submodule(n)
            with torch.no_grad():
                out_in(layer, layer.weight).copy_(Wk[n])
            m, i = linear_shape(layer)
            if not factorization_pays(m, i, k):
                continue
            U, S, Vh = robust_svd(out_in(layer, layer.weight.detach()))
            f = LowRankFactors(U[:, :k], S[:k], Vh[:k])
            b = layer.bias.detach() if layer.bias is not None else None
            replace_module(model, n, FactorizedLinear.from_factors(f, b))

    def finalize(self, loop: Loop) -> None:
        ranks = self._truncate_all(loop)
        self.record(loop, ranks, event="compile")
        layers = {n: loop.model.get_submodule(n) for n in ranks}
        Wk = {n: out_in(layer, layer.weight.detach()) for n, layer in layers.items()}
        self._compile(loop.model, Wk, ranks)
        self.compiled = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "current": self.current, "G": self.G, "row_w": self.row_w,
                "compiled": self.compiled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.current = dict(state.get("current", {}))
        self.G = dict(state.get("G", {}))
        self.row_w = dict(state.get("row_w", {}))
        self.compiled = bool(state.get("compiled", False))
