"""Symbolic checks: KL = 1/2 d^T I d + O(d^3), the rank-prox threshold, the Pythagorean identity."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, strategies as st

from tests.theory.strategies import theory_settings
from theory.prox import prox_rank
from theory.symbolic import (
    diagonal_prox_bruteforce,
    kl_expansion_categorical,
    kl_expansion_gaussian,
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
    assert 0.5 * (prox_value - y) ** 2 + c * (prox_value != 0.0) <= objective.min() + 1e-12
    tau = np.sqrt(2.0 * c)
    if abs(abs(y) - tau) > 1e-9:  # away from the tie both minimisers coincide
        assert prox_value == pytest.approx(best, abs=1e-3)
        assert prox_rank(np.array([[y]]), c)[0, 0] == pytest.approx(prox_value, abs=1e-12)


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
    np.testing.assert_allclose(Z - np.diag(z_diag), 0.0, atol=1e-12)
    z_value = 0.5 * float(np.sum((z_diag - y) ** 2)) + c * int(np.sum(np.abs(z_diag) > 1e-12))
    np.testing.assert_allclose(z_value, value, rtol=1e-12, atol=1e-12)
    tau = np.sqrt(2.0 * c)
    if np.all(np.abs(np.abs(y) - tau) > 1e-9):
        np.testing.assert_allclose(z_diag, x_brute, atol=1e-12)


@theory_settings(50)
@given(key=st.integers(0, 2**16), support=st.integers(4, 8))
def test_generalised_pythagorean_identity_for_m_projection(key: int, support: int) -> None:
    res = pythagorean_m_projection(key, support=support)
    assert res["moment_gap"] < 1e-10
    assert res["pythagoras_max_residual"] < 1e-10
    assert res["nested_residual"] < 1e-10
    assert res["iterated_vs_direct"] < 1e-8
    # Control: the identity is specific to the projection, not a tautology.
    assert res["control_min_residual"] > 1e-8


def test_bad_inputs_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="classes"):
        kl_expansion_categorical(1)
    with pytest.raises(ValueError, match="c must be"):
        diagonal_prox_bruteforce(np.ones(2), 0.0)
    with pytest.raises(ValueError, match="at most 16"):
        diagonal_prox_bruteforce(np.ones(17), 1.0)
    with pytest.raises(ValueError, match="dims"):
        pythagorean_m_projection(0, support=4, dims=(4, 2))
