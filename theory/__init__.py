"""Numerical and symbolic checks of the paper's Section 4 (Proposition 4.3) and Appendix B.1.1.

``deep_linear``: toy problems; ``prox``: the rank prox and Eq. (9); ``claims``: each claim as a
predicate, with the counterexamples and corrected statements; ``experiment``: the runs the theory
notebook shows; ``symbolic`` (sympy) and ``plots`` (matplotlib) are imported on demand.
"""
from theory.claims import ClaimCheck, claim_table, evaluate_run
from theory.deep_linear import (
    Backtracking,
    DeepLinear,
    GlobalLipschitz,
    LeastSquares,
    random_deep_linear,
    random_least_squares,
    random_spd,
    reduced_rank_regression,
)
from theory.experiment import deep_linear_rank_reduction, proposition_runs
from theory.prox import (
    ConstantFraction,
    ConvergingMetric,
    EuclideanMetric,
    FixedStep,
    ProxRun,
    RandomFraction,
    hard_threshold,
    oialr,
    prox_rank,
    prox_rank_fisher,
    proximal_gradient,
)

__all__ = [
    "Backtracking",
    "ClaimCheck",
    "ConstantFraction",
    "ConvergingMetric",
    "DeepLinear",
    "EuclideanMetric",
    "FixedStep",
    "GlobalLipschitz",
    "LeastSquares",
    "ProxRun",
    "RandomFraction",
    "claim_table",
    "deep_linear_rank_reduction",
    "evaluate_run",
    "hard_threshold",
    "oialr",
    "proposition_runs",
    "prox_rank",
    "prox_rank_fisher",
    "proximal_gradient",
    "random_deep_linear",
    "random_least_squares",
    "random_spd",
    "reduced_rank_regression",
]
