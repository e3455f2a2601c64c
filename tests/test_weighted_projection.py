"""TFWSVD's solver (element-weighted low-rank projection) against independent multi-start references.

The problem ``min_{rank X ≤ k} Σ F_ij (W − X)_ij²`` is non-convex with spurious local minima, so the
reference is the best of independent solvers from many starts: scipy's L-BFGS-B over the factors
``X = A B`` (another algorithm, another library) from random starts, and EM from random starts.
"""
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings, strategies as st

from lowrank import linalg as L
from lowrank.utils import make_generator

from .tolerances import sum_rounding

#: the issue's acceptance bound: the solver ends within 1 % of the best independent solution
WITHIN = 0.01


def _objective_and_gradient(x, W, F, k):
    m, n = W.shape
    A, B = x[: m * k].reshape(m, k), x[m * k:].reshape(k, n)
    FR = F * (A @ B - W)
    return float((FR * (A @ B - W)).sum()), np.concatenate([(2 * FR @ B.T).ravel(), (2 * A.T @ FR).ravel()])


def multistart_reference(W: np.ndarray, F: np.ndarray, k: int, *, starts: int = 20, seed: int = 0) -> float:
    """Best objective of L-BFGS-B over (A, B) from ``starts`` random starts and EM from as many."""
    rng = np.random.default_rng(seed)
    m, n = W.shape
    best = np.inf
    for _ in range(starts):
        x0 = rng.standard_normal(m * k + k * n) * np.sqrt(np.abs(W).mean())
        r = scipy.optimize.minimize(_objective_and_gradient, x0, args=(W, F, k), jac=True, method="L-BFGS-B",
                                    options={"maxiter": 20_000, "ftol": 1e-15, "gtol": 1e-12})
        best = min(best, r.fun)
    Wt, Ft = torch.from_numpy(W), torch.from_numpy(F)
    g = torch.Generator().manual_seed(seed)
    for _ in range(4):
        X0 = torch.randn(m, n, generator=g, dtype=torch.float64)
        init = L.truncated_svd(X0, k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # EM may stop at its bound: any value is an upper bound
            f = L.element_weighted_projection(Wt, Ft, k, solver="em", init=init, max_iter=3000, tol=1e-12)
        best = min(best, float(L.weighted_error(Wt, f.matrix(), Ft)))
    return best


def spread_problem(m, n, key):
    """A random W and element weights spread over three orders of magnitude (the issue's problems)."""
    rng = np.random.default_rng(key)
    return rng.standard_normal((m, n)), 10.0 ** (-3.0 * rng.random((m, n)))


@settings(max_examples=12)
@given(m=st.integers(5, 8), n=st.integers(4, 8), key=st.integers(0, 10_000), data=st.data())
def test_tfwsvd_is_within_one_percent_of_an_independent_multistart_optimum(m, n, key, data):
    W, F = spread_problem(m, n, key)
    k = data.draw(st.integers(1, min(m, n) - 1))
    Wt, Ft = torch.from_numpy(W), torch.from_numpy(F)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)        # the stopping rule is met: no safety bound hit
        f = L.element_weighted_projection(Wt, Ft, k)
    ours = float(L.weighted_error(Wt, f.matrix(), Ft))
    ref = multistart_reference(W, F, k)
    # The objective is a sum of m·n non-negative terms (relative rounding m·n·eps, margin 4) on top of 1 %.
    assert ours <= ref * (1 + WITHIN) + sum_rounding(m * n, ref), (ours, ref, ours / ref - 1)
    assert torch.linalg.matrix_rank(f.matrix()).item() <= k


def test_tfwsvd_beats_a_single_descent_where_that_stops_in_a_spurious_minimum():
    # The single-start descents the pipeline used (EM or ALS from FWSVD) stop far above the optimum on a
    # share of these problems (measured: 20 of 100 above 1 % for EM at 2,000 steps); the multi-start solver
    # must not. Search a fixed set for such a problem, so that the test always exercises one.
    for key in range(200):
        W, F = spread_problem(7, 6, key)
        Wt, Ft = torch.from_numpy(W), torch.from_numpy(F)
        single = L.element_weighted_projection(Wt, Ft, 1, random_starts=0, keep=1)
        ours = L.element_weighted_projection(Wt, Ft, 1)
        e_single = float(L.weighted_error(Wt, single.matrix(), Ft))
        e_ours = float(L.weighted_error(Wt, ours.matrix(), Ft))
        if e_single > 1.05 * e_ours:
            ref = multistart_reference(W, F, 1)
            assert e_ours <= ref * (1 + WITHIN) + sum_rounding(W.size, ref)
            return
    pytest.fail("no problem in the set has a spurious minimum at the FWSVD start; the premise is wrong")


@given(m=st.integers(1, 9), n=st.integers(1, 40), k=st.integers(1, 7), block=st.integers(1, 300),
       key=st.integers(0, 10_000))
def test_weighted_grams_match_a_batched_einsum(m, n, k, block, key):
    g = make_generator(key)
    w = torch.rand(m, n, generator=g, dtype=torch.float64)
    B = torch.randn(k, n, generator=g, dtype=torch.float64)
    old = L.GRAM_BLOCK_ELEMENTS
    L.GRAM_BLOCK_ELEMENTS = block                       # small blocks: exercise the blocked path
    try:
        G = L._weighted_grams(w, B)
    finally:
        L.GRAM_BLOCK_ELEMENTS = old
    ref = torch.einsum("kn,mn,ln->mkl", B, w, B)
    # each entry is a dot of n terms: rounding n·eps·Σ|terms| (margin 4)
    scale = torch.einsum("kn,mn,ln->mkl", B.abs(), w, B.abs())
    assert (G - ref).abs().le(sum_rounding(n, scale)).all()
    assert torch.equal(G, G.mT)


def test_a_run_that_hits_the_safety_bound_warns_and_names_the_layer():
    W, F = spread_problem(8, 7, 3)
    Wt, Ft = torch.from_numpy(W), torch.from_numpy(F)
    for solver in ("als", "em"):
        with pytest.warns(RuntimeWarning, match=r"layerX: TFWSVD \(" + solver + r"\) stopped at max_iter=2"):
            L.element_weighted_projection(Wt, Ft, 3, solver=solver, max_iter=2, tol=0.0, name="layerX")


def test_the_solver_is_deterministic_and_its_starts_follow_the_seed():
    W, F = spread_problem(8, 8, 5)
    Wt, Ft = torch.from_numpy(W), torch.from_numpy(F)
    a = L.element_weighted_projection(Wt, Ft, 2, seed=1).matrix()
    b = L.element_weighted_projection(Wt, Ft, 2, seed=1).matrix()
    assert torch.equal(a, b)


@pytest.mark.parametrize("key,value", [("random_starts", -1), ("screen_iter", 0), ("keep", 0), ("max_iter", 0),
                                       ("keep", 1.5), ("random_starts", True)])
def test_bad_solver_settings_are_refused_before_any_work(key, value):
    W, F = spread_problem(5, 4, 0)
    with pytest.raises(ValueError, match=f"layerY: {key}="):
        L.element_weighted_projection(torch.from_numpy(W), torch.from_numpy(F), 2, name="layerY", **{key: value})
