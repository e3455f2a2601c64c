"""Toy problems: exact smoothness of least squares, gradients of deep linear networks, backtracking."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tests.theory.rounding import (
    factorization_slack,
    least_squares_descent_slack,
    sum_slack,
)
from tests.theory.strategies import theory_settings
from theory.deep_linear import (
    Backtracking,
    DeepLinear,
    GlobalLipschitz,
    LeastSquares,
    random_deep_linear,
    random_least_squares,
    random_orthogonal,
    random_spd,
    reduced_rank_regression,
    secant_lipschitz,
)
from theory.prox import DESCENT_GAP_RTOL, ConstantFraction, proximal_gradient


@theory_settings(200)
@given(
    m=st.integers(1, 6), n=st.integers(1, 6), extra=st.integers(0, 4), cond=st.floats(1.0, 100.0),
    ridge=st.floats(0.0, 2.0), key=st.integers(0, 2**16),
)
def test_least_squares_lipschitz_constant_is_exact(m, n, extra, cond, ridge, key) -> None:
    """L = sigma_max(A)^2 + ridge is attained along the top right singular vector of A, never exceeded."""
    rng = np.random.default_rng(key)
    problem = random_least_squares(rng, m, n, extra, cond, ridge=ridge)
    L = problem.lipschitz
    W = rng.standard_normal((m, n))
    (G,) = problem.grad((W,))
    _, _, Vt = np.linalg.svd(problem.A)
    D_top = np.outer(Vt[0], rng.standard_normal(n))
    for D in (D_top, rng.standard_normal((m, n))):
        curvature = problem.loss((W + D,)) - problem.loss((W,)) - np.vdot(G, D)
        # The three terms cancel: their rounding, not |curvature|, sets the slack.
        assert curvature <= 0.5 * L * np.vdot(D, D) + least_squares_descent_slack(problem, W, D, L)
    top = problem.loss((W + D_top,)) - problem.loss((W,)) - np.vdot(G, D_top)
    # Equal in exact arithmetic; the error of Vt[0] enters the Rayleigh quotient only at second order.
    np.testing.assert_allclose(
        top, 0.5 * L * np.vdot(D_top, D_top), rtol=0, atol=least_squares_descent_slack(problem, W, D_top, L)
    )
    # The secant estimate is a Rayleigh quotient of the Hessian: never above the exact constant.
    assert secant_lipschitz(problem, (W,)) <= L * (1 + 1e-6)


def _fd_grad(problem, params, eps=1e-6):
    grads = []
    for b, P in enumerate(params):
        g = np.zeros_like(P)
        for idx in np.ndindex(P.shape):
            plus = [p.copy() for p in params]
            minus = [p.copy() for p in params]
            plus[b][idx] += eps
            minus[b][idx] -= eps
            g[idx] = (problem.loss(tuple(plus)) - problem.loss(tuple(minus))) / (2 * eps)
        grads.append(g)
    return grads


@theory_settings(40)
@given(d=st.integers(1, 4), depth=st.integers(1, 3), wd=st.floats(0.0, 0.1), key=st.integers(0, 2**16))
def test_deep_linear_gradient_matches_finite_differences(d, depth, wd, key) -> None:
    rng = np.random.default_rng(key)
    net, _ = random_deep_linear(rng, d, depth, 20, min(2, d), 5.0, 0.2, wd)
    params = tuple(rng.standard_normal((d, d)) * 0.7 for _ in range(depth))
    for g, fd in zip(net.grad(params), _fd_grad(net, params)):
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)
    # The moment form of the loss equals the definition on the samples.
    W = net.product(params)
    direct = 0.5 * np.linalg.norm(W @ net.X - net.Y) ** 2 / net.X.shape[1]
    direct += 0.5 * wd * sum(np.vdot(p, p) for p in params)
    np.testing.assert_allclose(net.loss(params), direct, rtol=0, atol=_moment_form_slack(net, W, params))


def _moment_form_slack(net: DeepLinear, W: np.ndarray, params) -> float:
    """Rounding of the moment form ``1/2 (<W XX^T/p, W> - 2 <W, YX^T/p> + |Y|^2/p)`` against ``1/(2p) |W X - Y|^2``.

    The moment form's terms cancel (to the loss): each is a chain of ``p`` (moments), ``d_in`` (``W XX^T``)
    and ``d_out d_in`` (inner product) terms bounded by the same products of absolute values; the direct
    form sums ``d_out p`` squared residuals, each a sum of ``d_in + 1`` terms bounded by ``|W||X| + |Y|``.
    """
    X, Y = net.X, net.Y
    p = X.shape[1]
    aW, aX, aY = np.abs(W), np.abs(X), np.abs(Y)
    moment = (float(np.vdot(aW @ (aX @ aX.T / p), aW)) + 2.0 * float(np.vdot(aW, aY @ aX.T / p))
              + float(np.vdot(Y, Y)) / p)
    direct = float(np.vdot(np.abs(W @ X - Y), aW @ aX + aY)) / p
    reg = net.weight_decay * sum(float(np.vdot(F, F)) for F in params)
    n_terms = p + X.shape[0] + W.size + Y.size + 3
    return sum_slack(n_terms, 0.5 * (moment + direct) + reg)


def test_deep_linear_supports_rectangular_widths() -> None:
    rng = np.random.default_rng(0)
    net = DeepLinear(rng.standard_normal((3, 10)), rng.standard_normal((2, 10)), (3, 5, 4, 2), 0.01)
    assert net.block_shapes == ((5, 3), (4, 5), (2, 4))
    params = tuple(rng.standard_normal(s) for s in net.block_shapes)
    for g, fd in zip(net.grad(params), _fd_grad(net, params)):
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)


def test_a_global_constant_is_not_valid_for_deep_networks_but_backtracking_is() -> None:
    """The descent-lemma gap of a deep net exceeds zero with a too-small constant; backtracking repairs it."""
    rng = np.random.default_rng(0)
    net, _ = random_deep_linear(rng, 4, 3, 30, 2, 10.0, 0.3)
    init = tuple(random_orthogonal(rng, 4) for _ in range(3))
    naive = proximal_gradient(net, init, 0.0, ConstantFraction(1.0), GlobalLipschitz(1.0), max_iter=3)
    assert naive.descent_gap[0] > 1.0
    assert not np.all(np.diff(naive.loss) <= 0.0)
    certified = proximal_gradient(net, init, 0.0, ConstantFraction(1.0), Backtracking(1.0), max_iter=10)
    # Backtracking's own acceptance rule, with its constant (the check repeats the solver's comparison).
    assert np.all(certified.descent_gap <= DESCENT_GAP_RTOL * np.maximum(1.0, np.abs(certified.loss[:-1])))
    assert certified.lipschitz[0] > 1.0
    assert np.all(np.diff(certified.lipschitz) >= 0.0)


@theory_settings(100)
@given(d=st.integers(2, 6), rank=st.integers(0, 6), key=st.integers(0, 2**16))
def test_reduced_rank_regression_is_the_rank_constrained_optimum(d, rank, key) -> None:
    rank = min(rank, d)
    rng = np.random.default_rng(key)
    X = rng.standard_normal((d, 30)) * np.linspace(0.1, 2.0, d)[:, None]
    Y = rng.standard_normal((d, 30))
    W = reduced_rank_regression(X, Y, rank)
    W_ls = Y @ np.linalg.pinv(X)
    # W = U_r (U_r^T W_ls): the products leave spurious singular values of d eps |W_ls| (the rule of
    # numpy's default rank tolerance, with MARGIN); over 2,000 draws the r-th true one is >= 5e9 times it.
    assert np.linalg.matrix_rank(W, tol=factorization_slack(d, np.linalg.norm(W_ls, 2))) <= rank

    def loss(M):
        return np.linalg.norm(M @ X - Y) ** 2

    def loss_err(M):
        """Rounding of loss(M) (residuals: d + 1 terms, then 30 d squares), plus M's own rounding off rank r
        (first order in the gradient: d eps |M|)."""
        r = M @ X - Y
        grad = 2.0 * float(np.linalg.norm(r @ X.T))
        return 2.0 * sum_slack(d + 1 + r.size, float(np.vdot(np.abs(r), np.abs(M) @ np.abs(X) + np.abs(Y)))) + grad * (
            factorization_slack(d, float(np.linalg.norm(M)))
        )

    # W's distance to the exact optimum. The loss is stationary on the rank-r manifold there, so errors
    # that keep the rank count at second order: pinv(X) is accurate to dW = d eps kappa(X) |W| (cost
    # |X|^2 dW^2), and the SVD of W_ls X picks the subspace to d eps |W_ls X| / gap, which costs at most
    # 2 d eps |W_ls X|^2 whatever the gap. (The part off the manifold is in loss_err.)
    dW = factorization_slack(d, np.linalg.cond(X) * float(np.linalg.norm(W)))
    solve_err = (float(np.linalg.norm(X, 2)) ** 2 * dW**2
                 + 2.0 * factorization_slack(d, float(np.linalg.norm(W_ls @ X, 2)) ** 2))
    base = loss(W)
    base_err = loss_err(W) + solve_err
    U, s, Vt = np.linalg.svd(W_ls)
    trunc = (U[:, :rank] * s[:rank]) @ Vt[:rank]
    assert base <= loss(trunc) + base_err + loss_err(trunc)
    for _ in range(5):
        Q = rng.standard_normal((d, rank)) @ rng.standard_normal((rank, d))
        assert base <= loss(Q) + base_err + loss_err(Q)
        if rank:
            # Perturbations inside the column space keep the rank <= r.
            Ur = np.linalg.svd(W)[0][:, :rank]
            near = W + 1e-4 * Ur @ rng.standard_normal((rank, d))
            assert base <= loss(near) + base_err + loss_err(near)


@theory_settings(100)
@given(size=st.integers(1, 8), cond=st.floats(1.0, 1e4), log_scale=st.floats(-3.0, 3.0), key=st.integers(0, 2**16))
def test_random_spd_has_the_requested_spectrum(size, cond, log_scale, key) -> None:
    scale = 10.0**log_scale
    M = random_spd(np.random.default_rng(key), size, cond, scale)
    eig = np.linalg.eigvalsh(M)
    # Building M = Q diag Q^T and eigvalsh each err by size eps |M| = size eps scale, absolutely (Weyl):
    # relative to the smallest eigenvalue that is size eps cond.
    err = 2.0 * factorization_slack(size, scale)
    np.testing.assert_allclose(eig.max(), scale, rtol=0, atol=err)
    np.testing.assert_allclose(eig.min(), scale / cond if size > 1 else scale, rtol=0, atol=err)


def test_bad_inputs_raise_value_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="B must be"):
        LeastSquares(np.eye(2), np.ones((3, 1)))
    with pytest.raises(ValueError, match="ridge"):
        LeastSquares(np.eye(2), np.ones((2, 1)), ridge=-1.0)
    with pytest.raises(ValueError, match="widths"):
        DeepLinear(np.ones((2, 4)), np.ones((2, 4)), (2,))
    with pytest.raises(ValueError, match="Y must have shape"):
        DeepLinear(np.ones((2, 4)), np.ones((3, 4)), (2, 2))
    with pytest.raises(ValueError, match="condition"):
        random_spd(rng, 3, 0.5)
    with pytest.raises(ValueError, match="size"):
        random_spd(rng, 0, 2.0)
    with pytest.raises(ValueError, match="target_rank"):
        random_least_squares(rng, 2, 2, target_rank=3)
    with pytest.raises(ValueError, match="teacher_rank"):
        random_deep_linear(rng, 3, teacher_rank=4)
    with pytest.raises(ValueError, match="rank"):
        reduced_rank_regression(np.ones((2, 3)), np.ones((2, 3)), -1)
    with pytest.raises(ValueError, match="factor"):
        Backtracking(1.0, factor=1.0)
    with pytest.raises(ValueError, match="lipschitz"):
        GlobalLipschitz(0.0)
