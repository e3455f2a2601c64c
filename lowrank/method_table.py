"""Every compression method and what it can do: the one table from which every list of method names derives
(:func:`lowrank.compress`'s one-shot methods, :class:`lowrank.iterative.IterativeCompressor`'s iterative ones,
the study's families, IHT's default thresholds). The strategies themselves are :data:`lowrank.methods.METHODS`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MethodInfo", "METHOD_TABLE", "method_names", "STATISTICS"]

#: what a method measures on calibration data: FWSVD's row weights (the diagonal Fisher summed over each
#: output neuron's inputs, the paper's Section 3.2), the full diagonal Fisher (element weights, Eq. 5), or the
#: input second moment (Eq. 7)
STATISTICS = ("fisher_rows", "fisher", "input_moments")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    #: the strategy (one file of :mod:`lowrank.methods`): ``dense``, ``projection`` (one-shot low rank),
    #: ``tensor_train``, ``iht`` (Algorithms 1–2), ``trp`` (Algorithms 3–4)
    family: str
    #: compresses while it trains (the paper's "iterative" rows of Table 2); else projects once, then fine-tunes
    iterative: bool
    #: what it measures on calibration data (:data:`STATISTICS`), or ``None``
    statistic: str | None
    #: the compressed layer: ``dense`` (none), ``low_rank`` (``U S Vᵀ`` / ``A·B``) or ``tt`` (a tensor train)
    form: str
    #: ``layer``: each layer is cut on its own spectrum; ``global``: one threshold over all layers (Appendix D)
    threshold_scope: str | None = None
    #: the rank threshold β when a run does not give one (``oialr_threshold`` of the IHT family)
    default_threshold: float | None = None
    #: where the paper defines it
    paper: str = ""

    @property
    def needs_calibration(self) -> bool:
        return self.statistic is not None

    @property
    def fisher(self) -> bool:
        """Measures a Fisher (IFHT's cuts, FWTRP's truncations, the Fisher-weighted projections)."""
        return self.statistic in ("fisher_rows", "fisher")


def _table(*rows: MethodInfo) -> dict[str, MethodInfo]:
    return {r.name: r for r in rows}


#: in the paper's order: dense, the one-shot rows of Table 2, Algorithms 1–2 (local, then global), Algorithms 3–4
METHOD_TABLE: dict[str, MethodInfo] = _table(
    MethodInfo("dense", "dense", False, None, "dense", paper="no compression"),
    MethodInfo("svd", "projection", False, None, "low_rank", paper="Eq. 4"),
    MethodInfo("fwsvd", "projection", False, "fisher_rows", "low_rank", paper="Eq. 5, row-summed Fisher"),
    MethodInfo("tfwsvd", "projection", False, "fisher", "low_rank", paper="Eq. 5"),
    MethodInfo("asvd", "projection", False, "input_moments", "low_rank", paper="Eq. 7"),
    MethodInfo("ttm", "tensor_train", False, None, "tt", paper="Table 2, TTM"),
    MethodInfo("fwttm", "tensor_train", False, "fisher_rows", "tt", paper="Table 2, FWTTM"),
    MethodInfo("oialr", "iht", True, None, "low_rank", "layer", 0.1, "Algorithm 1, relative rule"),
    MethodInfo("ieht", "iht", True, None, "low_rank", "layer", 0.95, "Algorithm 1, Eq. 8"),
    MethodInfo("ifht", "iht", True, "fisher_rows", "low_rank", "layer", 0.95, "Algorithm 2"),
    MethodInfo("global_ieht", "iht", True, None, "low_rank", "global", 0.95, "Appendix D"),
    MethodInfo("global_ifht", "iht", True, "fisher_rows", "low_rank", "global", 0.95, "Appendix D"),
    MethodInfo("trp", "trp", True, None, "low_rank", "layer", paper="Algorithm 3"),
    MethodInfo("fwtrp", "trp", True, "fisher_rows", "low_rank", "layer", paper="Algorithm 4"),
)


def method_names(**where) -> tuple[str, ...]:
    """The names of the methods whose :class:`MethodInfo` fields (or properties) equal ``where``, in table
    order; e.g. ``method_names(iterative=True, fisher=True)``."""
    fields = set(MethodInfo.__dataclass_fields__) | {"needs_calibration", "fisher"}
    unknown = sorted(set(where) - fields)
    if unknown:
        raise ValueError(f"method_names: unknown fields {unknown}; allowed: {sorted(fields)}")
    return tuple(n for n, info in METHOD_TABLE.items() if all(getattr(info, k) == v for k, v in where.items()))
