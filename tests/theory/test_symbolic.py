"""Symbolic checks: KL = 1/2 d^T I d + O(d^3), the rank-prox threshold, the Pythagorean identity."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, strategies as st

from tests.theory.rounding import cancellation_slack, factorization_slack, sum_slack
from tests.theory.strategies import theory_settings
from theory.prox import TIE_RTOL, prox_rank
from theory.symbolic import (
    ExponentialFamily,
    diagonal_prox_bruteforce,
    kl_expansion_categorical,
    kl_expansion_gaussian,
    m_projection,
    moment_rounding_floor,
    pythagorean_m_projection,
    scalar_rank_prox,
)


@pytest.mark.parametrize("classes", [2, 3])
def test_kl_expansion_categorical_softmax(classes: int) -> None:
    check = kl_expansion_categorical(classes)
    assert check.lower_orders_vanish
    assert check.second_order_matches
    # The remainder is genuinely cubic: the expansion is not exact at second order.
    assert sp.simplify(check.order3) != 0
    # The Fisher information from its definition is diag(p) - p p^T.
    z = sorted(check.fisher.free_symbols, key=lambda s: s.name)
    p = sp.Matrix([zi / sum(z) for zi in z])
    assert sp.simplify(check.fisher - (sp.diag(*p) - p * p.T)) == sp.zeros(classes, classes)


def test_kl_expansion_gaussian() -> None:
    check = kl_expansion_gaussian()
    assert check.lower_orders_vanish
    assert check.second_order_matches
    s = sp.Symbol("s", positive=True)
    assert sp.simplify(check.fisher - sp.diag(1 / s**2, 2 / s**2)) == sp.zeros(2, 2)
    assert sp.simplify(check.order3) != 0


def test_scalar_rank_prox_threshold_is_derived_as_sqrt_two_alpha_lambda() -> None:
    res = scalar_rank_prox()
    alpha, lam = sp.symbols("alpha lambda", positive=True)
    assert sp.simplify(res.threshold.subs(res.c, alpha * lam) - sp.sqrt(2 * alpha * lam)) == 0
    # Not the sqrt(alpha lambda) a reader might expect from the paper's bound.
    assert sp.simplify(res.threshold.subs(res.c, alpha * lam) - sp.sqrt(alpha * lam)) != 0


@lru_cache(maxsize=1)
def _scalar_prox_numeric():
    res = scalar_rank_prox()
    return sp.lambdify((res.y, res.c), res.prox, "numpy")


@theory_settings(200)
@given(y=st.floats(-5.0, 5.0), log_c=st.floats(-3.0, 1.0))
def test_scalar_prox_matches_grid_minimisation_and_matrix_prox(y: float, log_c: float) -> None:
    c = 10.0**log_c
    prox_value = float(_scalar_prox_numeric()(y, c))
    grid = np.concatenate([np.linspace(-6.0, 6.0, 24001), [0.0, y]])
    objective = 0.5 * (grid - y) ** 2 + c * (grid != 0.0)
    best = grid[np.argmin(objective)]
    # The grid holds 0 and y, whose objectives y^2/2 and c are computed exactly as for the prox; the
    # prox (|y| > sqrt(2) sqrt(c)) can pick the worse of the two only by the rounding of y^2/2 vs c.
    decide = cancellation_slack(0.5 * y**2, c)
    assert 0.5 * (prox_value - y) ** 2 + c * (prox_value != 0.0) <= objective.min() + decide
    # Away from the tie, decided by the sign of y^2/2 - c: outside its rounding and hard_threshold's
    # tie band (where prox_rank keeps and the sympy prox drops), both minimisers coincide.
    if abs(0.5 * y**2 - c) > decide + TIE_RTOL * c:
        assert prox_value == pytest.approx(best, abs=1e-3)  # the grid spacing is 5e-4
        # The 1x1 SVD reproduces y up to its backward error.
        assert prox_rank(np.array([[y]]), c)[0, 0] == pytest.approx(prox_value, rel=0,
                                                                    abs=factorization_slack(1, abs(y)))


@theory_settings(200)
@given(
    y=st.lists(st.floats(-4.0, 4.0), min_size=1, max_size=8),
    log_c=st.floats(-3.0, 1.0),
)
def test_diagonal_prox_equals_bruteforce_over_supports(y, log_c) -> None:
    c = 10.0**log_c
    y = np.asarray(y)
    x_brute, value = diagonal_prox_bruteforce(y, c)
    Z = prox_rank(np.diag(y), c)
    z_diag = np.diag(Z)
    k = y.size
    # SVD backward error of diag(y): off-diagonal entries and dropped entries are at most this, kept
    # entries (>= sqrt(2c) >= 0.04) far above it.
    svd_err = factorization_slack(k, float(np.abs(y).max()))
    np.testing.assert_allclose(Z - np.diag(z_diag), 0.0, rtol=0, atol=svd_err)
    z_value = 0.5 * float(np.sum((z_diag - y) ** 2)) + c * int(np.sum(np.abs(z_diag) > svd_err))
    # Both values sum k non-negative terms (in different orders); at a near tie each choice may leave
    # the gap |y_i^2/2 - c|, at most hard_threshold's tie band TIE_RTOL c per entry.
    value_err = sum_slack(k, 0.5 * float(y @ y) + c * k) + k * TIE_RTOL * c
    np.testing.assert_allclose(z_value, value, rtol=0, atol=value_err)
    # Away from every tie (decided by the sign of y_i^2/2 - c, up to value_err) the supports agree.
    if np.all(np.abs(0.5 * y**2 - c) > value_err):
        np.testing.assert_allclose(z_diag, x_brute, rtol=0, atol=svd_err)


@theory_settings(50)
@given(key=st.integers(0, 2**16), support=st.integers(4, 8))
def test_generalised_pythagorean_identity_for_m_projection(key: int, support: int) -> None:
    res = pythagorean_m_projection(key, support=support)
    # Every bound is derived in pythagorean_m_projection from the solver's stopping rule (the moment
    # gap it reached) and the rounding of the KL sums, so none depends on the CPU that ran it.
    assert res["moment_gap"] <= res["moment_tol"]
    assert res["pythagoras_within_bounds"], res
    assert res["nested_residual"] <= res["nested_bound"]
    assert res["iterated_vs_direct"] <= res["iterated_bound"]
    # The bounds certify the identity to near machine precision (they come out about 1e-13 for KL
    # values of order 1), not a vacuous one ...
    assert max(res["pythagoras_bound"], res["nested_bound"], res["iterated_bound"]) < 1e-9
    # ... and the control is specific to the projection: off it, the residual is far above that level.
    assert res["control_min_residual"] > 1e3 * res["pythagoras_bound"]


def test_m_projection_matches_moments_from_a_badly_scaled_start() -> None:
    # Where an objective-only line search stalls: once the Newton decrease |g|^2 / (2 lambda) is below
    # eps |psi| the damped step is rejected; the gradient test lets Newton converge to the floor.
    rng = np.random.default_rng(279)
    T = rng.standard_normal((6, 3))
    p = rng.dirichlet(np.ones(6))
    family = ExponentialFamily(20.0 * T[:, :2])
    theta = m_projection(family, p)
    assert np.abs(family.mean(theta) - p @ family.stats).max() <= moment_rounding_floor(family, theta)
    with pytest.raises(RuntimeError, match="moment gap"):
        m_projection(family, p, iters=1)


def test_bad_inputs_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="classes"):
        kl_expansion_categorical(1)
    with pytest.raises(ValueError, match="c must be"):
        diagonal_prox_bruteforce(np.ones(2), 0.0)
    with pytest.raises(ValueError, match="at most 16"):
        diagonal_prox_bruteforce(np.ones(17), 1.0)
    with pytest.raises(ValueError, match="dims"):
        pythagorean_m_projection(0, support=4, dims=(4, 2))
