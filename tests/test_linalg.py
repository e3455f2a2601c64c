"""Projection core: Eckart–Young, rank rules, weighted projections, bad input."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, strategies as st

from lowrank import linalg as L
from lowrank.utils import make_generator, set_random_state

from .tolerances import factorization_rounding, sum_rounding

dims = st.integers(min_value=2, max_value=12)

#: the relative slack lowrank.linalg.select_rank grants the energy rule (β = 1 must not demand more than
#: the rounded total energy); mirrored here so the test states exactly what the rule guarantees
SELECT_RANK_SLACK = 1e-12


def random_matrix(m, n, key, dtype=torch.float64, decay=None):
    g = make_generator(key)
    W = torch.randn(m, n, generator=g, dtype=dtype)
    if decay is not None:
        U, _, Vh = torch.linalg.svd(W, full_matrices=False)
        s = torch.tensor([decay ** i for i in range(min(m, n))], dtype=dtype)
        W = (U * s) @ Vh
    return W


@given(m=dims, n=dims, key=st.integers(0, 10_000), data=st.data())
def test_eckart_young_error_matches_scipy(m, n, key, data):
    W = random_matrix(m, n, key)
    k = data.draw(st.integers(1, min(m, n)))
    f = L.truncated_svd(W, k)
    s = scipy.linalg.svdvals(W.numpy())
    err = torch.linalg.norm(W - f.matrix()).item()
    # backward-stable SVDs (torch's and scipy's) and the U S Vh product: absolute error ≲ max(m, n)·eps·‖W‖
    # (Weyl), margin 16; absolute, since the tail itself may be 0 (k = min(m, n))
    tol = factorization_rounding(max(m, n), float(W.norm()))
    assert err == pytest.approx(math.sqrt((s[k:] ** 2).sum()), abs=tol)
    # singular values: each moves by ≲ max(m, n)·eps·σ_max, so the bound is absolute (small σ have a larger
    # relative error), margin 16
    np.testing.assert_allclose(f.S.numpy(), s[:k], rtol=0, atol=factorization_rounding(max(m, n), s[0]))
    # optimality against random rank-k competitors
    g = make_generator(key + 1)
    for _ in range(3):
        X = torch.randn(m, k, generator=g, dtype=W.dtype) @ torch.randn(k, n, generator=g, dtype=W.dtype)
        other = torch.linalg.norm(W - X).item()
        # rounding of err (above) and of the m·n-term norm of W − X, margin 4
        assert other >= err - tol - sum_rounding(m * n, other)


@given(s=st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=30),
       beta=st.floats(0.01, 1.0), min_rank_frac=st.floats(0.0, 1.0))
def test_energy_rule_is_minimal_and_respects_min_rank(s, beta, min_rank_frac):
    S = torch.tensor(sorted(s, reverse=True), dtype=torch.float64)
    min_rank = max(1, int(min_rank_frac * len(s)))
    k = L.select_rank(S, "energy", beta=beta, min_rank=min_rank)
    assert min_rank <= k <= len(s)
    e = (S ** 2).cumsum(0)
    total = e[-1].item()
    if total > 0:
        # select_rank accepts e[k-1] ≥ β·total·(1 − 1e-12) (its own slack for β = 1); the cumsum of n ≤ 30
        # non-negative terms is recomputed here, relative rounding ≲ n·eps (margin 4)
        assert e[k - 1].item() >= beta * total * (1 - SELECT_RANK_SLACK - sum_rounding(len(s), 1.0))
        if k > min_rank:  # minimal: one fewer does not hold enough energy
            assert e[k - 2].item() < beta * total


@given(s=st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=30),
       beta=st.floats(0.01, 1.0), min_rank=st.integers(1, 3))
def test_relative_rule_keeps_exactly_sigma_above_beta_max(s, beta, min_rank):
    S = torch.tensor(sorted(s, reverse=True), dtype=torch.float64)
    min_rank = min(min_rank, len(s))
    k = L.select_rank(S, "relative", beta=beta, min_rank=min_rank)
    declared = int((S >= beta * S.max()).sum()) if S.max() > 0 else 0
    assert k == min(max(declared, min_rank), len(s))


def test_fixed_rule_and_min_rank_from_percent():
    S = torch.linspace(5, 1, 10)
    assert L.select_rank(S, "fixed", rank=3) == 3
    assert L.select_rank(S, "fixed", rank=3, min_rank=5) == 5
    assert L.min_rank_from_percent((100, 40), 0.02) == 1
    assert L.min_rank_from_percent((768, 3072), 0.02) == 16


@given(m=st.integers(2, 6), n=st.integers(2, 6), key=st.integers(0, 10_000), data=st.data())
def test_row_weighted_projection_is_exact_optimum(m, n, key, data):
    """The objective value equals the Eckart–Young tail of scipy's singular values of D·W (the scaled
    problem), and no nearby rank-k matrix does better (local optimality on the rank-k manifold)."""
    W = random_matrix(m, n, key)
    g = make_generator(key + 7)
    w = torch.rand(m, generator=g, dtype=torch.float64) * 10 + 1e-3
    k = data.draw(st.integers(1, min(m, n)))
    f = L.row_weighted_projection(W, w, k, eps=0.0)
    err = L.weighted_error(W, f.matrix(), w[:, None]).item()
    d = np.sqrt(w.numpy())
    DW = d[:, None] * W.numpy()
    s = scipy.linalg.svdvals(DW)
    # err is a squared norm of the scaled residual: the SVD's backward error max(m, n)·eps·‖DW‖ enters
    # through 2·‖tail‖·δ + δ² ≤ 2·‖DW‖·δ, so the absolute bound is ∝ eps·‖DW‖_F² (margin 16)
    tol = factorization_rounding(max(m, n), np.linalg.norm(DW) ** 2)
    assert err == pytest.approx((s[k:] ** 2).sum(), abs=tol)
    # rank test: the product U S Vh carries trailing singular values ≲ max(m, n)·eps·σ_max, margin 16
    assert torch.linalg.matrix_rank(f.matrix(), rtol=factorization_rounding(max(m, n), 1.0)).item() <= k
    # independent check: local perturbations on the rank-k manifold never improve the objective
    A, B = f.U * f.S, f.Vh
    for _ in range(5):
        dA = 1e-3 * torch.randn(A.shape, generator=g, dtype=W.dtype)
        dB = 1e-3 * torch.randn(B.shape, generator=g, dtype=W.dtype)
        assert L.weighted_error(W, (A + dA) @ (B + dB), w[:, None]).item() >= err - 2 * tol  # both rounded as above


def test_row_weighted_projection_brute_force_rank1():
    """Rank 1, 3×2: parametrise the row space direction v = (cos t, sin t); the optimum for a fixed v is
    the weighted least-squares fit of each row, which is independent of the weights (each row is fitted
    on its own), so the objective is Σ w_i ‖W_i − (W_i·v) v‖²; minimise over a fine grid of t."""
    W = torch.tensor([[3.0, 1.0], [0.5, 2.0], [-1.0, 1.5]], dtype=torch.float64)
    w = torch.tensor([0.2, 5.0, 1.0], dtype=torch.float64)
    f = L.row_weighted_projection(W, w, 1, eps=0.0)
    best = min(
        float((w[:, None] * (W - (W @ v)[:, None] * v[None, :]) ** 2).sum())
        for t in np.linspace(0, np.pi, 20001)
        for v in [torch.tensor([np.cos(t), np.sin(t)], dtype=torch.float64)]
    )
    assert L.weighted_error(W, f.matrix(), w[:, None]).item() == pytest.approx(best, rel=1e-6)


def test_column_weighted_projection_matches_transposed_rows():
    W = random_matrix(7, 5, 3)
    w = torch.rand(5, dtype=torch.float64) + 0.1
    a = L.row_weighted_projection(W, w, 2, axis="columns").matrix()
    b = L.row_weighted_projection(W.T.contiguous(), w, 2, axis="rows").matrix().T
    torch.testing.assert_close(a, b)


@pytest.mark.filterwarnings("ignore:.*TFWSVD.*max_iter:RuntimeWarning")   # tol=0 runs to the bound on purpose
@given(m=st.integers(3, 10), n=st.integers(3, 10), key=st.integers(0, 10_000), solver=st.sampled_from(["em", "als"]),
       data=st.data())
def test_element_weighted_solver_is_monotone(m, n, key, solver, data):
    W = random_matrix(m, n, key)
    g = make_generator(key + 3)
    F = torch.rand(m, n, generator=g, dtype=torch.float64) ** 3 * 100
    k = data.draw(st.integers(1, min(m, n) - 1))
    hist: list[float] = []
    f = L.element_weighted_projection(W, F, k, solver=solver, max_iter=60, tol=0.0, history=hist)
    diffs = np.diff(hist)
    # Both solvers are exactly monotone in exact arithmetic (history is the returned run's trajectory).
    # Rounding: each objective is a sum of m·n non-negative terms (relative m·n·eps), and the step's
    # SVD / k×k solves perturb the iterate by ≲ eps·‖W‖, which moves Σ F (W − X)² by
    # ≲ eps·(objective + max F·‖W‖²); scale = both, margin 4.
    # (ALS's ridge 1e-10·(‖W‖²/mn + 1) can only break monotonicity at second order in the step, below this.)
    tol = sum_rounding(m * n, hist[0] + float(F.max()) * float(W.norm()) ** 2)
    assert (diffs <= tol).all(), (hist, tol)
    # result is rank ≤ k (trailing singular values of U S Vh ≲ max(m, n)·eps·σ_max, margin 16) and no worse
    # than the FWSVD start (the same rounding as the steps)
    assert torch.linalg.matrix_rank(f.matrix(), rtol=factorization_rounding(max(m, n), 1.0)).item() <= k
    assert L.weighted_error(W, f.matrix(), F).item() <= hist[0] + tol


@given(m=st.integers(2, 10), n=st.integers(2, 10), key=st.integers(0, 10_000), c=st.floats(0.1, 100.0),
       solver=st.sampled_from(["em", "als"]), data=st.data())
def test_element_weighted_with_uniform_weights_is_svd(m, n, key, c, solver, data):
    W = random_matrix(m, n, key)
    k = data.draw(st.integers(1, min(m, n)))
    # random_starts=0: the property is that ALS keeps the optimal SVD start (a random start that converges
    # to the same optimum may win the tie by a rounding-level objective while its factors differ more)
    f = L.element_weighted_projection(W, torch.full((m, n), c, dtype=torch.float64), k, solver=solver,
                                      **({"random_starts": 0} if solver == "als" else {}))
    s = torch.linalg.svdvals(W)
    # SVD rounding max(m, n)·eps·σ₁ (margin 16), amplified in the rank-k truncation by σ₁/gap (the
    # rank-k subspace moves by eps·‖W‖/gap; the start is FWSVD of c·W, the reference the SVD of W)
    gap = float(s[k - 1] - s[k]) if k < min(m, n) else math.inf
    tol = factorization_rounding(max(m, n), float(s[0])) * (1 + float(s[0]) / gap)
    if solver == "als":
        # ALS's ridge r = 1e-10·(‖W‖²/mn + 1) (lowrank.linalg.element_weighted_projection) shrinks the i-th
        # singular component by σᵢ·r/(σᵢ² + r): at its fixed point an absolute bias ≤ r/σ_k, margin 4
        ridge = 1e-10 * (float(W.norm()) ** 2 / W.numel() + 1.0)
        tol += 4 * ridge / float(s[k - 1])
    torch.testing.assert_close(f.matrix(), L.truncated_svd(W, k).matrix(), rtol=0, atol=tol)


def test_element_weighted_beats_row_weighted_on_its_own_objective():
    W = random_matrix(20, 15, 11)
    F = torch.rand(20, 15, dtype=torch.float64) ** 4
    row = L.row_weighted_projection(W, F.sum(1), 4)
    full = L.element_weighted_projection(W, F, 4)
    assert L.weighted_error(W, full.matrix(), F) < L.weighted_error(W, row.matrix(), F)


@given(m=st.integers(2, 8), n=st.integers(2, 8), key=st.integers(0, 10_000), data=st.data())
def test_activation_aware_projection_is_optimal(m, n, key, data):
    W = random_matrix(m, n, key)
    g = make_generator(key + 5)
    X = torch.randn(n, 3 * n, generator=g, dtype=torch.float64) * torch.logspace(-2, 1, n, dtype=torch.float64)[:, None]
    C = X @ X.T
    k = data.draw(st.integers(1, min(m, n)))
    f = L.activation_aware_projection(W, C, k, ridge=0.0)
    err = torch.linalg.norm((W - f.matrix()) @ X).item() ** 2
    # closed form through scipy: C = L Lᵀ, optimum error = Σ_{i>k} σᵢ(W L)²
    Lc = scipy.linalg.cholesky(C.numpy(), lower=True)
    s = scipy.linalg.svdvals(W.numpy() @ Lc)
    # Cholesky + SVD of W L + the solve by L: backward error n·eps·‖WL‖ per factorization, and the solve
    # X L = Vh has forward error ∝ κ(L) (up to 1e3·cond(randn) here: X's rows span 1e-2 … 10); the squared
    # norm turns δ into ≲ 2‖WL‖·δ. So the bound is ∝ eps·κ(L)·‖WL‖_F², margin 16
    tol = factorization_rounding(n, np.linalg.cond(Lc) * (s ** 2).sum())
    assert err == pytest.approx((s[k:] ** 2).sum(), abs=tol)
    # and it is no worse than the Euclidean projection on this objective (err carries the rounding above)
    e_svd = torch.linalg.norm((W - L.truncated_svd(W, k).matrix()) @ X).item() ** 2
    assert err <= e_svd + tol


def test_activation_aware_handles_singular_covariance_with_ridge():
    W = random_matrix(6, 8, 2)
    X = torch.randn(8, 3, dtype=torch.float64)  # rank-3 covariance in 8 dims
    f = L.activation_aware_projection(W, X @ X.T, 3, ridge=1e-6)
    assert torch.isfinite(f.matrix()).all()
    # with 3 input directions, rank 3 reproduces the outputs on the data almost exactly
    assert torch.linalg.norm((W - f.matrix()) @ X) < 1e-2 * torch.linalg.norm(W @ X)


def test_randomized_svd_accuracy_on_decaying_spectrum():
    W = random_matrix(300, 200, 5, dtype=torch.float32, decay=0.9)
    for k in (5, 20, 50):
        exact = torch.linalg.norm(W - L.truncated_svd(W, k).matrix())
        set_random_state(0)
        approx = torch.linalg.norm(W - L.truncated_svd(W, k, randomized=True).matrix())
        assert approx <= exact * 1.05


def test_orthonormalize_keeps_the_matrix():
    g = make_generator(1)
    f = L.LowRankFactors(torch.randn(9, 3, generator=g, dtype=torch.float64),
                         torch.rand(3, generator=g, dtype=torch.float64),
                         torch.randn(3, 7, generator=g, dtype=torch.float64))
    o = L.orthonormalize(f)
    torch.testing.assert_close(o.matrix(), f.matrix())
    torch.testing.assert_close(o.U.T @ o.U, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(o.Vh @ o.Vh.T, torch.eye(3, dtype=torch.float64))
    assert (o.S[:-1] >= o.S[1:]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    W = random_matrix(8, 6, 0, dtype=dtype)
    F = torch.rand(8, 6, dtype=dtype)
    for method, kw in [("svd", {}), ("fwsvd", {"fisher": F}), ("tfwsvd", {"fisher": F}),
                       ("asvd", {"second_moment": torch.eye(6, dtype=dtype)})]:
        assert L.project(W, method, 2, **kw).matrix().dtype == dtype


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("rank", [0, -1, 7, 2.5, True])
def test_bad_rank_is_refused_with_its_name(rank):
    W = torch.randn(6, 8)
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.fc1.*rank"):
        L.truncated_svd(W, rank, name="blocks.0.mlp.fc1")


@pytest.mark.parametrize("beta", [0.0, -0.1, 1.5, float("nan")])
def test_bad_beta_is_refused(beta):
    with pytest.raises(ValueError, match=r"fc2: beta.*\(0, 1\]"):
        L.select_rank(torch.ones(4), "energy", beta=beta, name="fc2")


def test_unknown_rule_and_method_are_refused():
    with pytest.raises(ValueError, match="rule='energi'.*energy"):
        L.select_rank(torch.ones(4), "energi", beta=0.5)
    with pytest.raises(ValueError, match="method='fwsvdd'.*fwsvd"):
        L.project(torch.randn(3, 3), "fwsvdd", 1)


def test_nonfinite_weight_and_negative_fisher_and_shape_mismatch():
    W = torch.randn(5, 4)
    W[1, 2] = float("nan")
    with pytest.raises(ValueError, match="layerA: weight has 1 non-finite"):
        L.truncated_svd(W, 2, name="layerA")
    W = torch.randn(5, 4)
    F = torch.rand(5, 4)
    F[0, 0] = -1
    with pytest.raises(ValueError, match="layerB.*negative"):
        L.element_weighted_projection(W, F, 2, name="layerB")
    with pytest.raises(ValueError, match=r"layerC.*shape \(4, 5\), expected \(5, 4\)"):
        L.element_weighted_projection(W, torch.rand(4, 5), 2, name="layerC")
    with pytest.raises(ValueError, match=r"layerD.*second_moment.*\(4, 4\)"):
        L.activation_aware_projection(W, torch.eye(5), 2, name="layerD")
    with pytest.raises(ValueError, match="layerE.*row weights has shape"):
        L.row_weighted_projection(W, torch.ones(4), 2, name="layerE")


def test_svd_failure_is_retried_in_float64_then_raised(monkeypatch):
    real = torch.linalg.svd
    calls = []

    def flaky(A, full_matrices=True):
        calls.append(A.dtype)
        if A.dtype == torch.float32:
            raise torch.linalg.LinAlgError("did not converge")
        return real(A, full_matrices=full_matrices)

    monkeypatch.setattr(torch.linalg, "svd", flaky)
    W = torch.randn(6, 4)
    f = L.truncated_svd(W, 2)
    assert calls == [torch.float32, torch.float64] and f.U.dtype == torch.float32
    torch.testing.assert_close(f.S, real(W.double(), full_matrices=False)[1][:2].float())

    def broken(A, full_matrices=True):
        raise torch.linalg.LinAlgError("did not converge")

    monkeypatch.setattr(torch.linalg, "svd", broken)
    with pytest.raises(RuntimeError, match="layerF: SVD .* also after retrying in float64"):
        L.truncated_svd(W, 2, name="layerF")


@given(m=st.integers(2, 8), n=st.integers(2, 8), key=st.integers(0, 10_000), axis=st.sampled_from(["rows", "columns"]),
       data=st.data())
def test_project_fwsvd_sums_out_the_axis_it_weights(m, n, key, axis, data):
    W = random_matrix(m, n, key)
    F = torch.rand(m, n, generator=make_generator(key + 1), dtype=torch.float64)
    k = data.draw(st.integers(1, min(m, n)))
    got = L.project(W, "fwsvd", k, fisher=F, axis=axis).matrix()
    want = L.row_weighted_projection(W, F.sum(1) if axis == "rows" else F.sum(0), k, axis=axis).matrix()
    assert torch.equal(got, want)   # the same reduction and the same call: bit-identical
