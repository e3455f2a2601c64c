"""The rank prox (Euclidean and Fisher metric) and the iteration of the paper's Eq. (9)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.theory.rounding import factorization_slack, sum_slack
from tests.theory.strategies import theory_settings
from theory.deep_linear import GlobalLipschitz, LeastSquares, random_spd
from theory.prox import (
    ConstantFraction,
    ConvergingMetric,
    FixedStep,
    MetricAt,
    RandomFraction,
    hard_threshold,
    oialr,
    prox_rank,
    prox_rank_fisher,
    proximal_gradient,
    rank_prox_objective,
    tangent_residual,
)

shapes = st.tuples(st.integers(1, 5), st.integers(1, 5))


def _truncation(Y: np.ndarray, k: int) -> np.ndarray:
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    return (U[:, :k] * s[:k]) @ Vt[:k]


def _prox_objective_slack(Y: np.ndarray, *values: float) -> float:
    """Rounding of ``rank_prox_objective(Z, Y, c)`` for a truncated SVD ``Z`` of ``Y`` (each of ``values``).

    ``Z`` is exact for ``Y + E`` with ``|E| <~ max(m, n) eps |Y|`` (backward-stable SVD), which moves
    ``1/2 |Z - Y|^2`` by at most ``|Z - Y| |E| <= |Y|_F |E|``; the norm sums ``m n`` squares. Counted
    twice: both sides of a comparison carry it.
    """
    return (2.0 * factorization_slack(max(Y.shape), float(np.linalg.norm(Y)) ** 2)
            + sum_slack(Y.size + 1, sum(map(abs, values))))


@theory_settings(300)
@given(shape=shapes, key=st.integers(0, 2**16), log_c=st.floats(-4.0, 2.0))
def test_prox_rank_is_the_minimum_over_all_ranks(shape, key, log_c) -> None:
    """Eckart--Young reduces the prox to a choice of rank; the prox must pick the best one."""
    rng = np.random.default_rng(key)
    Y = rng.standard_normal(shape) * rng.uniform(0.1, 3.0)
    c = 10.0**log_c
    Z = prox_rank(Y, c)
    value = rank_prox_objective(Z, Y, c)
    candidates = [rank_prox_objective(_truncation(Y, k), Y, c) for k in range(min(shape) + 1)]
    np.testing.assert_allclose(value, min(candidates), rtol=0, atol=_prox_objective_slack(Y, value, min(candidates)))
    # Nothing nearby or random does better either (the global minimum, up to the rounding of both sides).
    for _ in range(5):
        near = rank_prox_objective(Z + 1e-3 * rng.standard_normal(shape), Y, c)
        assert value <= near + _prox_objective_slack(Y, value, near)
        far = rank_prox_objective(rng.standard_normal(shape), Y, c)
        assert value <= far + _prox_objective_slack(Y, value, far)


@theory_settings(300)
@given(shape=shapes, key=st.integers(0, 2**16), log_c=st.floats(-4.0, 2.0))
def test_prox_rank_threshold_is_sqrt_two_c(shape, key, log_c) -> None:
    rng = np.random.default_rng(key)
    Y = rng.standard_normal(shape) * 2.0
    c = 10.0**log_c
    res = hard_threshold(Y, c)
    s = np.linalg.svd(Y, compute_uv=False)
    tau = np.sqrt(2.0 * c)
    np.testing.assert_allclose(res.kept, s[s > tau])
    np.testing.assert_allclose(np.linalg.svd(res.Z, compute_uv=False)[: res.kept.size], res.kept)


def test_threshold_is_not_sqrt_alpha_lambda() -> None:
    """A singular value between sqrt(c) and sqrt(2c) must be dropped: keeping it costs more."""
    c = 1.0
    Y = np.array([[1.2]])  # 1 < 1.2 < sqrt(2)
    assert prox_rank(Y, c)[0, 0] == 0.0
    assert rank_prox_objective(np.zeros((1, 1)), Y, c) < rank_prox_objective(Y, Y, c)


def test_tie_breaking_selects_an_element_of_the_argmin() -> None:
    Y = np.array([[2.0]])
    c = 2.0  # 2^2 / 2 = c: both 0 and Y are minimisers
    keep, drop = hard_threshold(Y, c, "keep"), hard_threshold(Y, c, "drop")
    assert keep.ties == drop.ties == 1
    assert keep.Z[0, 0] == 2.0 and drop.Z[0, 0] == 0.0
    assert rank_prox_objective(keep.Z, Y, c) == rank_prox_objective(drop.Z, Y, c)
    far = hard_threshold(Y, c, "adversarial", reference=np.array([[2.0]]))
    assert far.Z[0, 0] == 0.0
    with pytest.raises(ValueError, match="reference"):
        hard_threshold(Y, c, "adversarial")
    with pytest.raises(ValueError, match="tie_break"):
        hard_threshold(Y, c, "random")


def _eq9_rank(W, kappa):
    """Numerical rank of a candidate ``W = I^{-1/2} Z`` with ``rank Z = k``.

    Rounding in the product leaves spurious singular values of at most
    ``(m + k) eps |I^{-1/2}| |Z| <= 2 max(m, n) eps sqrt(kappa(I)) |W|``, the threshold (with MARGIN). Over
    2,000 draws of this file's strategy the spurious ones stay below 1e-2 of it and the kept ones above 1e6.
    """
    s = np.linalg.svd(W, compute_uv=False)
    return int(np.sum(s > factorization_slack(2 * max(W.shape), np.sqrt(kappa) * float(np.linalg.norm(W)))))


def _eq9_objective(W, Wn, G, alpha, lam, I, kappa):
    D = W - Wn
    return 0.5 / alpha * float(np.vdot(D, I @ D)) + float(np.vdot(W, G)) + lam * _eq9_rank(W, kappa)


def _eq9_slack(W, Wn, G, alpha, lam, I, kappa, metric, Y, y_scale, minimiser):
    """Rounding of ``_eq9_objective`` at ``W`` (and, for a computed ``minimiser``, its distance to the exact one).

    Evaluation: the terms cancel, so the error is ``(m + m n) eps`` times their absolute sizes. A computed
    minimiser ``I^{-1/2} trunc_k(Y)`` is exact for ``Y + E``, ``|E| <~ max(m, n) eps kappa(I) y_scale`` (SVD
    backward error; the metric square roots are accurate to ``m eps kappa`` relative). In the coordinates
    ``Z = I^{1/2} W`` the objective is ``1/(2 alpha) |Z - Y|^2 + lam k + const``, and comparing the two
    truncations gives a change of at most ``2 (|tail| + |E|) |E| / alpha``, ``tail = Z - Y`` -- with no
    dependence on the singular gap. A matrix that is not a minimiser is only rounded off its rank:
    ``|grad| max(m, n) eps |W|``.
    """
    D = W - Wn
    m, n = W.shape
    terms = 0.5 / alpha * float(np.vdot(np.abs(D), np.abs(I) @ np.abs(D))) + float(np.vdot(np.abs(W), np.abs(G)))
    evaluation = sum_slack(m + m * n + 2, terms + lam * _eq9_rank(W, kappa))
    if minimiser:
        E = factorization_slack(max(m, n), kappa * y_scale)
        tail = float(np.linalg.norm(metric.sqrt @ W - Y))
        return evaluation + 2.0 / alpha * (tail + E) * E
    grad = float(np.linalg.norm(I @ D / alpha + G))
    return evaluation + grad * factorization_slack(max(m, n), float(np.linalg.norm(W)))


@theory_settings(200)
@given(
    shape=shapes,
    key=st.integers(0, 2**16),
    log_cond=st.floats(0.0, 4.0),
    log_scale=st.floats(-3.0, 3.0),
    log_alpha=st.floats(-2.0, 1.0),
    log_lam=st.floats(-3.0, 1.0),
)
def test_fisher_prox_minimises_eq9(shape, key, log_cond, log_scale, log_alpha, log_lam) -> None:
    """W_{n+1} = I^{-1/2} prox(I^{1/2}(W_n - alpha I^{-1} G)) minimises Eq. (9) with F = 1/2 |I^{1/2} W|^2."""
    rng = np.random.default_rng(key)
    m, n = shape
    I = random_spd(rng, m, 10.0**log_cond, 10.0**log_scale)
    metric = MetricAt.of(I)
    Wn = rng.standard_normal(shape)
    G = rng.standard_normal(shape) * 10.0**log_scale
    alpha, lam = 10.0**log_alpha, 10.0**log_lam * 10.0**log_scale
    W = prox_rank_fisher(Wn, G, alpha, lam, metric).Z
    kappa = metric.lam_max / metric.lam_min
    # |Y| <= |I^{1/2}| |W_n| + alpha |I^{-1/2}| |G|: the size of Y's terms (they may cancel).
    y_scale = (np.sqrt(metric.lam_max) * float(np.linalg.norm(Wn))
               + alpha * float(np.linalg.norm(G)) / np.sqrt(metric.lam_min))
    args = (Wn, G, alpha, lam, I, kappa)
    best = _eq9_objective(W, *args)
    Y = metric.sqrt @ Wn - alpha * metric.inv_sqrt @ G
    best_err = _eq9_slack(W, *args, metric, Y, y_scale, minimiser=True)
    # For each rank k the optimum is the truncated SVD in Z = I^{1/2} W coordinates.
    per_rank = [metric.inv_sqrt @ _truncation(Y, k) for k in range(min(m, n) + 1)]
    values = [_eq9_objective(C, *args) for C in per_rank]
    k_best = int(np.argmin(values))
    np.testing.assert_allclose(
        best, values[k_best], rtol=0,
        atol=best_err + _eq9_slack(per_rank[k_best], *args, metric, Y, y_scale, minimiser=True)
    )
    # The Euclidean prox step is feasible for Eq. (9) and cannot do better.
    euclid = prox_rank(Wn - alpha * G, alpha * lam)
    assert best <= (_eq9_objective(euclid, *args) + best_err
                    + _eq9_slack(euclid, *args, metric, Y, y_scale, minimiser=False))
    for _ in range(3):
        near = W + 1e-4 * rng.standard_normal(shape)
        assert best <= (_eq9_objective(near, *args) + best_err
                        + _eq9_slack(near, *args, metric, Y, y_scale, minimiser=False))


def test_fisher_prox_with_identity_metric_is_the_euclidean_prox() -> None:
    rng = np.random.default_rng(3)
    Wn, G = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    a = prox_rank_fisher(Wn, G, 0.3, 0.5, MetricAt.of(np.eye(4))).Z
    b = prox_rank_fisher(Wn, G, 0.3, 0.5, None).Z
    # The metric's square roots are the identity up to eigh's rounding, so Y agrees up to a backward
    # error of size 4 eps |Y|; the kept part of its SVD moves by that times 1 + s_1 / (s_k - s_{k+1}).
    s = np.linalg.svd(Wn - 0.3 * G, compute_uv=False)
    k = int(np.sum(s**2 / 2 > 0.3 * 0.5))
    gap = (s[k - 1] - (s[k] if k < s.size else 0.0)) if k else np.inf
    np.testing.assert_allclose(a, b, rtol=0, atol=factorization_slack(4, s[0] * (1.0 + s[0] / gap)))


def test_tangent_residual_is_zero_exactly_on_the_normal_space() -> None:
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    V = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    W = (U[:, :2] * [3.0, 1.0]) @ V[:, :2].T
    normal = U[:, 2:] @ rng.standard_normal((3, 2)) @ V[:, 2:].T
    # The computed singular subspaces of W are off by ~ 5 eps |W| / gap (gap s_2 - s_3 = 1 - 0), which
    # leaks that fraction of G into its tangent part; the projections add 5 eps |G|.
    def subspace_err(G):
        return factorization_slack(5, (1.0 + 3.0 / 1.0) * float(np.linalg.norm(G)))

    assert tangent_residual(W, normal, 2) <= subspace_err(normal)
    tangent = U[:, :2] @ rng.standard_normal((2, 4))
    np.testing.assert_allclose(
        tangent_residual(W, normal + tangent, 2), np.linalg.norm(tangent), rtol=0, atol=subspace_err(normal + tangent)
    )
    assert tangent_residual(np.zeros((5, 4)), tangent, 0) == 0.0


def test_run_records_are_consistent() -> None:
    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 4))
    problem = LeastSquares(A, rng.standard_normal((6, 3)))
    I = random_spd(rng, 4, 20.0, 5.0)
    run = proximal_gradient(
        problem, (rng.standard_normal((4, 3)),), 0.3, RandomFraction(0.5, 1.0, 2), GlobalLipschitz(problem.lipschitz),
        [ConvergingMetric(I, np.eye(4), 0.5)], max_iter=50, min_iter=50,
    )
    assert run.n_steps == 50 and len(run.iterates) == 51
    np.testing.assert_allclose(run.path_length[-1], run.step_norm.sum())
    for n in range(run.n_steps):
        D = run.iterates[n + 1][0] - run.iterates[n][0]
        np.testing.assert_allclose(run.step_norm[n], np.linalg.norm(D))
        In = I + 0.5**n * np.eye(4)
        # A quadratic form: 4 + 12 products per term, bounded by |D|^T |I_n| |D|.
        quad_err = sum_slack(4 + D.size, 0.5 * float(np.vdot(np.abs(D), np.abs(In) @ np.abs(D))))
        np.testing.assert_allclose(run.bregman[n], 0.5 * np.vdot(D, In @ D), rtol=0, atol=quad_err)
        # eigh and eigvalsh (different LAPACK drivers) agree up to their backward error, absolutely (Weyl).
        eig_err = factorization_slack(4, float(np.linalg.norm(In, 2)))
        np.testing.assert_allclose(run.sigma[n], np.linalg.eigvalsh(In).min(), rtol=0, atol=eig_err)
    np.testing.assert_allclose(run.objective, run.loss + 0.3 * run.rank)


def test_bad_inputs_raise_value_errors() -> None:
    problem = LeastSquares(np.eye(2), np.ones((2, 1)))
    W0 = (np.zeros((2, 1)),)
    L = GlobalLipschitz(1.0)
    with pytest.raises(ValueError, match="alpha_lam"):
        hard_threshold(np.eye(2), -1.0)
    with pytest.raises(ValueError, match="2-D"):
        hard_threshold(np.ones(3), 1.0)
    with pytest.raises(ValueError, match="positive definite"):
        MetricAt.of(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="symmetric"):
        MetricAt.of(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="rate"):
        ConvergingMetric(np.eye(2), None, 1.5)
    with pytest.raises(ValueError, match="positive semidefinite"):
        ConvergingMetric(np.eye(2), -np.eye(2))
    with pytest.raises(ValueError, match="fraction"):
        ConstantFraction(0.0)
    with pytest.raises(ValueError, match="low"):
        RandomFraction(0.9, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        FixedStep(-1.0)
    with pytest.raises(ValueError, match="lam"):
        proximal_gradient(problem, W0, -1.0, ConstantFraction(), L)
    with pytest.raises(ValueError, match="block shapes"):
        proximal_gradient(problem, (np.zeros((3, 1)),), 1.0, ConstantFraction(), L)
    with pytest.raises(ValueError, match="max_iter"):
        proximal_gradient(problem, W0, 1.0, ConstantFraction(), L, max_iter=-1)
    with pytest.raises(ValueError, match="min_iter"):
        proximal_gradient(problem, W0, 1.0, ConstantFraction(), L, max_iter=5, min_iter=6)
    with pytest.raises(ValueError, match="metrics"):
        proximal_gradient(problem, W0, 1.0, ConstantFraction(), L, metrics=[ConvergingMetric(np.eye(3))])
    with pytest.raises(ValueError, match="smoothness"):
        proximal_gradient(problem, W0, 1.0, ConstantFraction(), 1.0)
    with pytest.raises(ValueError, match="steps returned"):
        proximal_gradient(problem, W0, 1.0, lambda n, s, l: -1.0, L)
    with pytest.raises(ValueError, match="exactly one of beta and lam"):
        oialr(problem, np.zeros((2, 1)), 1)
    with pytest.raises(ValueError, match="beta"):
        oialr(problem, np.zeros((2, 1)), 1, beta=1.5)
    with pytest.raises(ValueError, match="inner"):
        oialr(problem, np.zeros((2, 1)), 1, lam=0.1, inner="newton")
