"""Trained Rank Pruning (TRP, Xu et al. 2020) and its Fisher-weighted variant FWTRP: the paper's
Algorithms 3 and 4.

The weights stay dense during training. Every ``trp_frequency`` steps each target weight is hard
thresholded by the energy rule — the smallest head of singular values holding ≥ β of Σσ² is kept:

    TRP:    U S Vᵀ = svd(W),        W ← U_k S_k V_kᵀ,          G ← U_k V_kᵀ
    FWTRP:  U S Vᵀ = svd(T W),      W ← T⁻¹ U_k S_k V_kᵀ,      G ← U_k V_kᵀ

with ``T = diag(√r)`` from the Fisher row weights ``r`` of the current ``W`` (the FWSVD projection,
:func:`lowrank.linalg.row_weighted_projection`; the box's ``svd(T̃ S_i)`` means the layer's weight).
``G`` is the nuclear-norm sub-gradient (∂‖W‖_* ∋ U Vᵀ over the kept singular directions). Every
``nuclear_norm_frequency`` steps (default ``trp_frequency // 2``, as in Tables 3–5) a gradient step
``W ← W − lr · nuclear_norm_weight · G`` is taken with the last saved ``G`` (the description in
Appendix B.3: "with nuclear norm gradients saved, and subsequently each nuclear_norm_frequency,
gradient steps are performed").

Compile (end of Algorithms 3–4): training after the last truncation makes ``W`` full rank again, so
the compile step applies the same truncation once more and factorises ``W = (U√S)(√S Vᵀ)`` at that
rank — a layer stays dense when ``k(m + n) ≥ m n``. The reported accuracy is that of the compiled
model.
"""
from __future__ import annotations

from typing import Any

import torch

from ..layers import FactorizedLinear, factorization_pays
from ..linalg import LowRankFactors, min_rank_from_percent, robust_svd, select_rank
from ..schedules import DEPTH_SCHEDULES, layer_thresholds
from ..surgery import replace_module
from .base import Method, register, validate_choice, validate_fraction, validate_positive_int
from .iht import fisher_row_weights

__all__ = ["TrainedRankPruning", "truncate_dense"]


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


@register("trp", "fwtrp")
class TrainedRankPruning(Method):
    keys = {
        "targets": None,
        "trp_threshold": 0.95,
        "trp_frequency": 50,
        "nuclear_norm_weight": 3e-4,
        "nuclear_norm_frequency": None,   # default trp_frequency // 2
        "oialr_depth_schedule": "constant",
        "oialr_min_rank_percent": 0.02,
        "fisher_labels": "true",
    }

    @classmethod
    def validate(cls, name: str, cfg: dict[str, Any]) -> None:
        super().validate(name, cfg)
        c = {**cls.keys, **cfg}
        validate_fraction("trp_threshold", c["trp_threshold"])
        validate_positive_int("trp_frequency", c["trp_frequency"])
        if c["nuclear_norm_frequency"] is not None:
            validate_positive_int("nuclear_norm_frequency", c["nuclear_norm_frequency"])
        if not (isinstance(c["nuclear_norm_weight"], (int, float)) and c["nuclear_norm_weight"] >= 0):
            raise ValueError(f"nuclear_norm_weight={c['nuclear_norm_weight']!r} must be ≥ 0")
        validate_choice("oialr_depth_schedule", c["oialr_depth_schedule"], DEPTH_SCHEDULES)
        validate_fraction("oialr_min_rank_percent", c["oialr_min_rank_percent"])
        validate_choice("fisher_labels", c["fisher_labels"], ("true", "empirical"))

    def __init__(self, name: str, cfg: dict[str, Any]):
        super().__init__(name, cfg)
        c = {**self.keys, **cfg}
        self.beta = float(c["trp_threshold"])
        self.freq = int(c["trp_frequency"])
        self.nn_weight = float(c["nuclear_norm_weight"])
        self.nn_freq = int(c["nuclear_norm_frequency"] or max(1, self.freq // 2))
        self.schedule = c["oialr_depth_schedule"]
        self.min_rank_percent = float(c["oialr_min_rank_percent"])
        self.weighted = name == "fwtrp"
        self.current: dict[str, int] = {}
        self.G: dict[str, torch.Tensor] = {}

    def _truncate_all(self, trainer) -> dict[str, int]:
        names = trainer.target_names
        betas = layer_thresholds(names, self.beta, self.schedule, "energy")
        row_w = fisher_row_weights(trainer, names) if (self.weighted and trainer.is_main) else {}
        ranks = {}
        for n in names:
            layer = trainer.model.get_submodule(n)
            mr = min_rank_from_percent(tuple(layer.weight.shape), self.min_rank_percent)
            if trainer.is_main:
                W_k, G, k = truncate_dense(layer.weight, betas[n], mr, row_w.get(n))
                with torch.no_grad():
                    layer.weight.copy_(W_k)
                self.G[n] = G
                ranks[n] = k
        trainer.sync_structure(names)
        self.current = trainer.broadcast_object(ranks)
        ranks = self.current
        return ranks

    def after_step(self, trainer) -> bool:
        t = trainer.step
        if t % self.freq == 0:
            ranks = self._truncate_all(trainer)
            self.record(trainer, ranks, event="truncate")
        if t % self.nn_freq == 0 and self.current and self.nn_weight > 0:
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

    def finalize(self, trainer) -> None:
        ranks = self._truncate_all(trainer)
        self.record(trainer, ranks, event="compile")
        for n, k in ranks.items():
            layer = trainer.model.get_submodule(n)
            m, i = layer.weight.shape
            if not factorization_pays(m, i, k):
                continue
            U, S, Vh = robust_svd(layer.weight.detach())
            f = LowRankFactors(U[:, :k], S[:k], Vh[:k])
            b = layer.bias.detach() if layer.bias is not None else None
            replace_module(trainer.model, n, FactorizedLinear.from_factors(f, b))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "current": self.current, "G": self.G}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.current = dict(state.get("current", {}))
        self.G = dict(state.get("G", {}))
