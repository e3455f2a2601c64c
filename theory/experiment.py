"""Section 4's deep-linear-network argument, as a small experiment.

The paper (Section 4, "The Deep Linear Network Example") argues that iterative rank reduction --
the proximal gradient method of Eq. (9) on ``L + lambda rank`` -- guides training towards low-rank
minima, whereas the usual pipeline trains the full model and truncates its SVD once. This module
runs both on teacher--student deep linear regression and reports, at the *same* final rank:

* ``iterative``: Eq. (9) on the factors with ``lambda * sum_i rank(W_i)`` (local smoothness certified
  by backtracking, :mod:`theory.deep_linear`), data loss of the end-to-end product;
* ``oneshot_product``: train with ``lambda = 0``, then truncate the end-to-end matrix to the rank
  reached by ``iterative`` (Eckart--Young in the Euclidean metric, Eq. (4) of the paper);
* ``oneshot_layers``: the same, truncating every factor to that rank (what layer-wise compression does);
* ``optimal``: the global optimum over matrices of that rank (reduced-rank regression), a floor
  no method can beat.

All losses are the data term ``1/(2p) ||W X - Y||^2`` without weight decay, so they are comparable.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from theory.deep_linear import (
    Backtracking,
    random_deep_linear,
    random_orthogonal,
    reduced_rank_regression,
    secant_lipschitz,
)
from theory.prox import ConstantFraction, proximal_gradient

__all__ = ["truncate", "deep_linear_rank_reduction"]


def truncate(W: np.ndarray, rank: int) -> np.ndarray:
    """Best rank-``rank`` approximation in the Frobenius norm (Eckart--Young)."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 0:
        raise ValueError(f"rank must be an int >= 0, got {rank!r}")
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    return (U[:, :rank] * s[:rank]) @ Vt[:rank]


def _one_run(
    random_state: int,
    d: int,
    depth: int,
    samples: int,
    teacher_rank: int,
    input_condition: float,
    noise: float,
    lam: float,
    weight_decay: float,
    step_fraction: float,
    max_iter: int,
    init_scale: float,
) -> dict:
    rng = np.random.default_rng(random_state)
    net, W_true = random_deep_linear(rng, d, depth, samples, teacher_rank, input_condition, noise, weight_decay)
    # Orthogonal factors above the prox threshold: a start below it is pruned to the critical point 0.
    init = tuple(init_scale * random_orthogonal(rng, d) for _ in range(depth))
    # Backtracking only ever increases L_n; starting from a secant estimate avoids a first step with
    # an optimistic alpha whose threshold sqrt(2 alpha lambda) would prune every direction at once.
    start = secant_lipschitz(net, init)

    def run(lmbda: float):
        return proximal_gradient(
            net, init, lmbda, ConstantFraction(step_fraction), Backtracking(start), max_iter=max_iter, tol=1e-9
        )

    full = run(0.0)
    it = run(lam)
    W_full = net.product(full.final)
    W_it = net.product(it.final)
    s_it = np.linalg.svd(W_it, compute_uv=False)
    rank = int(np.sum(s_it > 1e-8 * max(s_it[0], 1e-300))) if s_it.size and s_it[0] > 0 else 0
    layer_ranks = [int(b.size) for b in it.metric_singular_values[-1]] if it.metric_singular_values else []
    W_layers = net.product([truncate(F, rank) for F in full.final])
    loss = net.data_loss_of_product
    return {
        "random_state": int(random_state),
        "rank": rank,
        "layer_ranks": layer_ranks,
        "teacher_rank": int(teacher_rank),
        "loss_full": loss(W_full),
        "loss_iterative": loss(W_it),
        "loss_oneshot_product": loss(truncate(W_full, rank)),
        "loss_oneshot_layers": loss(W_layers),
        "loss_optimal": loss(reduced_rank_regression(net.X, net.Y, rank)),
        "loss_least_squares": loss(net.product_minimizer()),
        "iterations_full": full.n_steps,
        "iterations_iterative": it.n_steps,
        "final_step_full": float(full.step_norm[-1]),
        "final_step_iterative": float(it.step_norm[-1]),
        "converged": bool(full.converged and it.converged),
        "objective_nonincreasing": bool(np.all(np.diff(it.objective)
                                               <= 1e-12 * np.maximum(1.0, np.abs(it.objective[:-1])))),
    }


def deep_linear_rank_reduction(
    random_states: Sequence[int] = (0, 1, 2, 3, 4),
    d: int = 8,
    depth: int = 3,
    samples: int = 100,
    teacher_rank: int = 2,
    input_condition: float = 30.0,
    noise: float = 0.3,
    lam: float = 1.5,
    weight_decay: float = 1e-4,
    step_fraction: float = 0.9,
    max_iter: int = 2000,
    init_scale: float = 1.0,
) -> dict:
    """Iterative rank reduction vs one-shot truncation on deep linear networks (module docstring).

    Returns ``{"runs": [...], "summary": {...}, "settings": {...}}``; ``summary`` holds the mean of each
    loss over ``random_states``, how often the iterative solution's loss is within 0.1% of the
    rank-``r`` optimum (``matches_optimal``) and below each one-shot truncation, and the mean excess
    loss of the truncations over the iterative solution in percent.
    """
    random_states = [int(k) for k in random_states]
    if not random_states or any(k < 0 for k in random_states):
        raise ValueError(f"random_states must be a non-empty list of ints >= 0, got {random_states!r}")
    if not (np.isfinite(lam) and lam > 0.0):
        raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
    if not (0.0 < step_fraction < 1.0):
        raise ValueError(f"step_fraction must be in (0, 1) (strict: the corrected step condition), "
                         f"got {step_fraction!r}")
    settings = dict(
        d=d, depth=depth, samples=samples, teacher_rank=teacher_rank, input_condition=input_condition,
        noise=noise, lam=lam, weight_decay=weight_decay, step_fraction=step_fraction, max_iter=max_iter,
        init_scale=init_scale,
    )
    runs = [_one_run(k, **settings) for k in random_states]
    keys = ("loss_full", "loss_iterative", "loss_oneshot_product", "loss_oneshot_layers", "loss_optimal",
            "loss_least_squares")
    summary = {f"mean_{k}": float(np.mean([r[k] for r in runs])) for k in keys}
    summary["iterative_below_oneshot_product"] = sum(r["loss_iterative"] < r["loss_oneshot_product"] for r in runs)
    summary["iterative_below_oneshot_layers"] = sum(r["loss_iterative"] < r["loss_oneshot_layers"] for r in runs)
    summary["iterative_matches_optimal"] = sum(r["loss_iterative"] <= 1.001 * r["loss_optimal"] for r in runs)
    summary["mean_gap_oneshot_product_percent"] = float(
        100.0 * np.mean([r["loss_oneshot_product"] / r["loss_iterative"] - 1.0 for r in runs])
    )
    summary["mean_gap_oneshot_layers_percent"] = float(
        100.0 * np.mean([r["loss_oneshot_layers"] / r["loss_iterative"] - 1.0 for r in runs])
    )
    summary["rank_equals_teacher"] = sum(r["rank"] == r["teacher_rank"] for r in runs)
    summary["runs"] = len(runs)
    return {"runs": runs, "summary": summary, "settings": settings}


def proposition_runs(
    m: int = 6,
    n: int = 5,
    extra_rows: int = 4,
    a_condition: float = 3.0,
    metric_condition: float = 10.0,
    metric_scale: float = 10.0,
    lam_fraction: float = 0.1,
    alpha_fraction: float = 1.0,
    alpha_low: float = 0.5,
    random_state: int = 0,
    max_iter: int = 20000,
    oialr_beta: float = 0.3,
    oialr_steps: int = 4,
) -> dict:
    """The runs the theory notebook plots: Eq. (9) on one least-squares problem in two metrics, plus OIALR.

    ``alpha_n = f_n sigma_n / L`` with ``f_n ~ U[alpha_low * alpha_fraction, alpha_fraction]``;
    the Fisher metric is ``I_n = I + 2^{-n} P`` with ``lambda_max(I) = metric_scale`` and condition
    ``metric_condition``. ``lam = lam_fraction * sigma_max(I^{1/2} W_ls)^2 / (2 alpha_max)`` so that
    the leading direction of the unconstrained solution survives the threshold.
    """
    from theory.deep_linear import GlobalLipschitz, random_least_squares, random_spd
    from theory.prox import ConvergingMetric, EuclideanMetric, MetricAt, RandomFraction, oialr

    if not (0.0 < alpha_low <= 1.0 and alpha_fraction > 0.0):
        raise ValueError(f"need 0 < alpha_low <= 1 and alpha_fraction > 0, got {alpha_low!r}, {alpha_fraction!r}")
    if not (0.0 < lam_fraction < 1.0):
        raise ValueError(f"lam_fraction must be in (0, 1), got {lam_fraction!r}")
    rng = np.random.default_rng(random_state)
    problem = random_least_squares(rng, m, n, extra_rows, a_condition, noise=0.3)
    I = random_spd(rng, m, metric_condition, metric_scale)
    P = random_spd(rng, m, 3.0, metric_scale)
    W_ls = problem.minimizer()
    spread = np.linalg.norm(W_ls) / np.sqrt(W_ls.size)
    W0 = W_ls + 0.5 * spread * rng.standard_normal(problem.shape)
    runs = {}
    for label, metric in (("Euclidean", EuclideanMetric()), ("Fisher", ConvergingMetric(I, P, 0.5))):
        lim = metric.limit() or MetricAt.of(np.eye(m))
        alpha_max = alpha_fraction * lim.lam_min / problem.lipschitz
        lam = lam_fraction * np.linalg.norm(lim.sqrt @ W_ls, 2) ** 2 / (2.0 * alpha_max)
        steps = RandomFraction(alpha_low * alpha_fraction, alpha_fraction, random_state)
        runs[label] = proximal_gradient(
            problem, (W0,), lam, steps, GlobalLipschitz(problem.lipschitz), [metric],
            max_iter=max_iter, min_iter=min(60, max_iter),
        )
    oialr_runs = [oialr(problem, W0, oialr_steps, beta=oialr_beta, inner=inner) for inner in ("exact", "gradient_step")]
    return {"runs": runs, "oialr": oialr_runs, "problem": problem, "metric": I}
