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

from ..configs import FisherLabels, Fraction, NonNegativeFloat, PositiveInt, setting
from ..layers import FactorizedLinear, factorization_pays
from ..linalg import LowRankFactors, min_rank_from_percent, robust_svd, select_rank
from ..schedules import DEPTH_SCHEDULES, layer_thresholds
from ..surgery import replace_module
from .base import Method, MethodConfig, register
from .iht import check_fisher_samples, fisher_row_weights

__all__ = ["TRPConfig", "TrainedRankPruning", "truncate_dense"]


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


@register("trp", "fwtrp")
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
        self.weighted = name == "fwtrp"
        self.current: dict[str, int] = {}
        self.G: dict[str, torch.Tensor] = {}
        self.row_w: dict[str, torch.Tensor] = {}   # FWTRP: the row weights of the last truncation
        self.compiled = False

    def check_budget(self, trainer) -> None:
        if self.weighted:
            check_fisher_samples(trainer, self.fisher_samples)

    def rank_floor(self, trainer) -> dict[str, int]:
        """``oialr_min_rank_percent`` as ranks: ``max(1, ⌈percent · min(m, n)⌉)`` per target layer."""
        return {n: min_rank_from_percent(tuple(trainer.model.get_submodule(n).weight.shape), self.min_rank_percent)
                for n in trainer.target_names}

    # ------------------------------------------------------------------ the truncation
    def _truncation(self, trainer, model, row_w: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
        """The energy truncation of every target weight of ``model``: ``(W_k, G, k)`` per layer."""
        names = trainer.target_names
        betas = layer_thresholds(names, self.beta, self.schedule, "energy")
        Wk, G, ranks = {}, {}, {}
        for n in names:
            layer = model.get_submodule(n)
            mr = min_rank_from_percent(tuple(layer.weight.shape), self.min_rank_percent)
            Wk[n], G[n], ranks[n] = truncate_dense(layer.weight, betas[n], mr, row_w.get(n))
        return Wk, G, ranks

    def _row_weights(self, trainer, model=None) -> dict[str, torch.Tensor]:
        if not self.weighted:
            return {}
        return fisher_row_weights(trainer, trainer.target_names, model, samples=self.fisher_samples)

    def _truncate_all(self, trainer) -> dict[str, int]:
        names = trainer.target_names
        ranks = {}
        if trainer.is_main:
            self.row_w = self._row_weights(trainer)
            Wk, self.G, ranks = self._truncation(trainer, trainer.model, self.row_w)
            with torch.no_grad():
                for n in names:
                    trainer.model.get_submodule(n).weight.copy_(Wk[n])
        trainer.sync_structure(names)
        self.current = trainer.broadcast_object(ranks)
        if self.nn_mode == "gradient":
            self.G = trainer.broadcast_object(self.G)  # every rank adds the same sub-gradient
        return self.current

    def _refresh_subgradient(self, trainer) -> None:
        """``G`` of the current (re-grown) weights, by the truncation rule, without changing them."""
        if trainer.is_main:
            _, self.G, _ = self._truncation(trainer, trainer.model, self.row_w)
        self.G = trainer.broadcast_object(self.G)

    # ------------------------------------------------------------------ hooks
    def before_optimizer_step(self, trainer) -> None:
        if self.nn_mode != "gradient" or self.nn_weight == 0 or not self.G:
            return
        for n, G in self.G.items():
            w = trainer.model.get_submodule(n).weight
            if w.grad is not None:
                w.grad.add_(G.to(device=w.device, dtype=w.dtype), alpha=self.nn_weight)

    def after_step(self, trainer) -> bool:
        t = trainer.step
        if t % self.freq == 0:
            ranks = self._truncate_all(trainer)
            self.record(trainer, ranks, event="truncate")
        elif t % self.nn_freq == 0 and self.current and self.nn_weight > 0 and self.nn_mode == "gradient":
            self._refresh_subgradient(trainer)
        if t % self.nn_freq == 0 and self.current and self.nn_weight > 0 and self.nn_mode == "step":
            lr = trainer.lr_at(t)
            with torch.no_grad():
                for n, G in self.G.items():  # G lives on the main rank only; the others receive W below
                    trainer.model.get_submodule(n).weight.sub_(lr * self.nn_weight * G.to(trainer.device))
            trainer.sync_structure(trainer.target_names)
        return False  # parameters keep their identity and shape: the optimizer state stays valid

    def ranks(self, trainer) -> dict[str, int]:
        if not self.current:
            return trainer.module_ranks()
        mods = {n: trainer.model.get_submodule(n) for n in trainer.target_names}
        return {n: (m.rank if isinstance(m, FactorizedLinear) else self.current[n]) for n, m in mods.items()}

    def scoring_model(self, trainer):
        """Before the first truncation the model is dense and is scored as it is; after it (and before the
        compile) a copy truncated and compiled exactly as :meth:`finalize` would (module docstring)."""
        if not self.current or self.compiled:
            return None
        model = copy.deepcopy(trainer.model)
        row_w = self._row_weights(trainer, model) if trainer.is_main else {}
        Wk, _, ranks = self._truncation(trainer, model, row_w)
        self._compile(trainer, model, Wk, ranks)
        return model, ranks

    def _compile(self, trainer, model, Wk: dict[str, torch.Tensor], ranks: dict[str, int]) -> None:
        for n, k in ranks.items():
            layer = model.get_submodule(n)
            with torch.no_grad():
                layer.weight.copy_(Wk[n])
            m, i = layer.weight.shape
            if not factorization_pays(m, i, k):
                continue
            U, S, Vh = robust_svd(layer.weight.detach())
            f = LowRankFactors(U[:, :k], S[:k], Vh[:k])
            b = layer.bias.detach() if layer.bias is not None else None
            replace_module(model, n, FactorizedLinear.from_factors(f, b))

    def finalize(self, trainer) -> None:
        ranks = self._truncate_all(trainer)
        self.record(trainer, ranks, event="compile")
        Wk = {n: trainer.model.get_submodule(n).weight.detach() for n in ranks}
        self._compile(trainer, trainer.model, Wk, ranks)
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
