"""Symbolic (sympy) and small numerical checks of the information-geometric facts the paper relies on.

* :func:`kl_expansion_categorical`, :func:`kl_expansion_gaussian` -- the second-order expansion
  ``KL(p_theta || p_{theta + d}) = 1/2 d^T I(theta) d + O(|d|^3)`` behind Eqs. (5)-(6) and the choice
  ``F_n = 1/2 ||.||^2_{I(W_n)}`` in Eq. (9), as a series in ``t`` along ``d = t v``.
* :func:`scalar_rank_prox` -- the prox of ``c * rank`` on a scalar is hard thresholding at ``sqrt(2 c)``
  (derived, not assumed), and :func:`diagonal_prox_bruteforce` for diagonal matrices.
* :func:`pythagorean_m_projection` -- the generalised Pythagorean theorem for the m-projection onto an
  exponential family (Section 3.1 of the paper), checked numerically on a finite sample space,
  including the nested (iterative pruning) form.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import sympy as sp

__all__ = [
    "SeriesCheck",
    "kl_expansion_categorical",
    "kl_expansion_gaussian",
    "scalar_rank_prox",
    "diagonal_prox_bruteforce",
    "ExponentialFamily",
    "m_projection",
    "moment_rounding_floor",
    "kl_divergence",
    "pythagorean_m_projection",
]


@dataclass(frozen=True)
class SeriesCheck:
    """Coefficients of ``KL(p_theta || p_{theta + t v})`` in powers of ``t``, and the Fisher form."""

    order0: sp.Expr
    order1: sp.Expr
    order2: sp.Expr
    fisher_quadratic: sp.Expr  # 1/2 v^T I(theta) v
    order3: sp.Expr
    fisher: sp.Matrix

    @property
    def second_order_matches(self) -> bool:
        return sp.simplify(sp.cancel(sp.together(self.order2 - self.fisher_quadratic))) == 0

    @property
    def lower_orders_vanish(self) -> bool:
        return sp.simplify(self.order0) == 0 and sp.simplify(sp.cancel(sp.together(self.order1))) == 0


def _series_coefficients(expr: sp.Expr, t: sp.Symbol, order: int) -> list[sp.Expr]:
    ser = sp.series(expr, t, 0, order + 1).removeO()
    ser = sp.expand(ser)
    return [sp.simplify(ser.coeff(t, k)) for k in range(order + 1)]


def kl_expansion_categorical(classes: int = 3) -> SeriesCheck:
    """Softmax model ``p_k(theta) = exp(theta_k) / sum_j exp(theta_j)`` with ``classes`` logits.

    ``z_k = exp(theta_k) > 0`` stand for the exponentials so that every coefficient is a rational
    function and the comparison is exact. The Fisher information is computed from its definition
    ``E_p[grad log p grad log p^T]`` (the paper's Section 2), not from the known ``diag(p) - p p^T``.
    """
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an int >= 2, got {classes!r}")
    z = sp.symbols(f"z0:{classes}", positive=True)
    v = sp.symbols(f"v0:{classes}", real=True)
    t = sp.Symbol("t", real=True)
    total = sum(z)
    p = [zk / total for zk in z]
    shifted = [zk * sp.exp(t * vk) for zk, vk in zip(z, v)]
    total_t = sum(shifted)
    q = [sk / total_t for sk in shifted]
    kl = sum(pk * (sp.log(pk) - sp.log(qk)) for pk, qk in zip(p, q))
    kl = sp.expand_log(kl, force=True)
    c0, c1, c2, c3 = _series_coefficients(kl, t, 3)
    # d log p_k / d theta_j = [k == j] - p_j
    score = [[(1 if k == j else 0) - p[j] for j in range(classes)] for k in range(classes)]
    fisher = sp.Matrix(classes, classes,
                       lambda i, j: sp.cancel(sum(p[k] * score[k][i] * score[k][j] for k in range(classes))))
    vec = sp.Matrix(v)
    quad = sp.cancel((vec.T * fisher * vec)[0, 0] / 2)
    return SeriesCheck(c0, c1, c2, quad, c3, fisher)


def kl_expansion_gaussian() -> SeriesCheck:
    """Gaussian ``N(mu, s^2)`` with ``theta = (mu, s)``, ``s > 0``: KL and Fisher by symbolic integration."""
    x = sp.Symbol("x", real=True)
    mu, a = sp.symbols("mu a", real=True)
    s = sp.Symbol("s", positive=True)
    b = sp.Symbol("b", real=True)
    t = sp.Symbol("t", positive=True)

    def logpdf(m, sd):
        return -((x - m) ** 2) / (2 * sd**2) - sp.log(sd) - sp.log(2 * sp.pi) / 2

    pdf = sp.exp(logpdf(mu, s))

    def expect(expr):
        return sp.simplify(sp.integrate(sp.expand(expr) * pdf, (x, -sp.oo, sp.oo)))

    # KL(p_theta || p_{theta + t (a, b)}) by integration; s + t b > 0 for small t.
    s2 = sp.Symbol("s2", positive=True)
    kl_general = expect(logpdf(mu, s) - logpdf(mu + t * a, s2))
    kl = kl_general.subs(s2, s + t * b)
    c0, c1, c2, c3 = _series_coefficients(kl, t, 3)
    score = [sp.diff(logpdf(mu, s), mu), sp.diff(logpdf(mu, s), s)]
    fisher = sp.Matrix(2, 2, lambda i, j: expect(score[i] * score[j]))
    vec = sp.Matrix([a, b])
    quad = sp.simplify((vec.T * fisher * vec)[0, 0] / 2)
    return SeriesCheck(c0, c1, c2, quad, c3, fisher)


@dataclass(frozen=True)
class ScalarProx:
    """The scalar prox of ``c * rank``: threshold and the prox as a piecewise expression."""

    threshold: sp.Expr
    prox: sp.Expr
    y: sp.Symbol
    c: sp.Symbol


def scalar_rank_prox() -> ScalarProx:
    """Derive ``prox_{c rank}(y) = argmin_x 1/2 (x - y)^2 + c [x != 0]`` for ``c = alpha lambda > 0``.

    Two candidates: ``x = 0`` with value ``y^2 / 2``; and ``x != 0``, where the objective is
    ``1/2 (x - y)^2 + c``, stationary at ``x = y`` (solved below) with value ``c``. Keeping wins iff
    ``y^2 / 2 > c``; the boundary ``y^2 / 2 = c`` solved for ``y > 0`` is the threshold.
    """
    x = sp.Symbol("x", real=True)
    y = sp.Symbol("y", real=True)
    c = sp.Symbol("c", positive=True)
    (x_star,) = sp.solve(sp.diff((x - y) ** 2 / 2 + c, x), x)
    value_keep = ((x_star - y) ** 2 / 2 + c).simplify()
    value_drop = (y**2 / 2).simplify()
    y_pos = sp.Symbol("y_pos", positive=True)
    roots = sp.solve(sp.Eq(value_drop.subs(y, y_pos), value_keep), y_pos)
    if len(roots) != 1:
        raise RuntimeError(f"expected one positive threshold, sympy returned {roots}")
    threshold = sp.simplify(roots[0])
    prox = sp.Piecewise((x_star, sp.Abs(y) > threshold), (0, True))
    return ScalarProx(threshold, prox, y, c)


def diagonal_prox_bruteforce(y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Minimise ``1/2 ||x - y||^2 + c * #{x_i != 0}`` over all ``2^k`` supports (``x_i = y_i`` on the support).

    For a diagonal matrix ``diag(y)`` this is the prox of ``c * rank`` restricted to diagonal
    matrices; by von Neumann's trace inequality the unrestricted prox of a diagonal matrix is
    diagonal, so the two agree.
    """
    y = np.asarray(y, dtype=float).ravel()
    if y.size > 16:
        raise ValueError(f"y must have at most 16 entries for brute force, got {y.size}")
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"c must be a finite number > 0, got {c!r}")
    best_x, best = np.zeros_like(y), 0.5 * float(y @ y)
    for support in itertools.product((False, True), repeat=y.size):
        mask = np.array(support, dtype=bool)
        val = 0.5 * float(np.sum(y[~mask] ** 2)) + c * int(mask.sum())
        if val < best:
            best, best_x = val, np.where(mask, y, 0.0)
    return best_x, best


@dataclass(frozen=True)
class ExponentialFamily:
    """``q_theta(x) = exp(theta^T T(x) - psi(theta))`` on a finite sample space (rows of ``stats``)."""

    stats: np.ndarray  # (S, d)

    def __post_init__(self) -> None:
        T = np.asarray(self.stats, dtype=float)
        if T.ndim != 2 or T.shape[0] < 2:
            raise ValueError(f"stats must be (S, d) with S >= 2, got shape {T.shape}")
        object.__setattr__(self, "stats", T)

    def dist(self, theta: np.ndarray) -> np.ndarray:
        logits = self.stats @ np.asarray(theta, dtype=float)
        logits = logits - logits.max()
        w = np.exp(logits)
        return w / w.sum()

    def mean(self, theta: np.ndarray) -> np.ndarray:
        return self.dist(theta) @ self.stats

    def fisher(self, theta: np.ndarray) -> np.ndarray:
        q = self.dist(theta)
        centred = self.stats - q @ self.stats
        return (centred * q[:, None]).T @ centred


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(p || q) = sum p log(p / q)`` with ``0 log 0 = 0``."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))


EPS = float(np.finfo(float).eps)


def moment_rounding_floor(family: ExponentialFamily, theta: np.ndarray) -> float:
    """What rounding leaves of ``E_q[T] - E_p[T]`` near the optimum ``theta``, entry-wise.

    Error model: ``q_i = exp(l_i - l_max) / Z`` with logits ``l = T theta`` carries a relative error of
    about ``(|l_i - l_max| + S) eps`` (the exponent's rounding is amplified by its size, the
    normalisation adds ``S``); each mean is then a sum of ``S`` terms ``q_i T_ij`` with
    ``sum q_i = 1``, adding ``S eps max|T|``. Together ``(2 S + 4 + spread(l)) eps max|T|``. A margin
    of 16: repeated exact Newton steps at the optimum of 2,000 random families (4-8 points, 2-3
    statistics) jitter up to 6x that model, never more.
    """
    S = family.stats.shape[0]
    spread = float(np.ptp(family.stats @ np.asarray(theta, dtype=float)))
    return 16.0 * (2 * S + 4 + spread) * EPS * float(np.abs(family.stats).max())


def m_projection(family: ExponentialFamily, p: np.ndarray, iters: int = 100, tol: float | None = None) -> np.ndarray:
    """``argmin_theta KL(p || q_theta)`` by Newton's method on the convex ``psi(theta) - theta^T E_p[T]``.

    The optimum matches moments, ``E_{q_theta*}[T] = E_p[T]``; the Hessian is the Fisher information.
    Stops when ``max|E_q[T] - E_p[T]| <= tol`` (default: :func:`moment_rounding_floor` at the current
    ``theta``, the level rounding allows) and raises ``RuntimeError`` when ``iters`` Newton steps do not get there.

    Steps are damped by halving until the objective decreases (global convergence). Near the optimum
    the decrease of a Newton step, about ``|g|^2 / (2 lambda)``, falls below the rounding of the
    objective itself (``eps |psi|``) once ``|g| ~ 1e-8``: from there a step is accepted when it
    reduces the gradient instead, which is where Newton converges quadratically.
    """
    target = np.asarray(p, dtype=float) @ family.stats
    theta = np.zeros(family.stats.shape[1])
    grad = family.mean(theta) - target
    for _ in range(iters):
        if np.abs(grad).max() <= (moment_rounding_floor(family, theta) if tol is None else tol):
            return theta
        H = family.fisher(theta)
        step = np.linalg.solve(H + 1e-15 * np.eye(H.shape[0]), grad)
        obj = _dual_objective(family, theta, target)
        gnorm = np.abs(grad).max()
        t = 1.0
        while t > 1e-12:
            trial = theta - t * step
            trial_grad = family.mean(trial) - target
            if _dual_objective(family, trial, target) < obj or np.abs(trial_grad).max() < gnorm:
                break
            t *= 0.5
        theta, grad = trial, trial_grad
    floor = moment_rounding_floor(family, theta) if tol is None else tol
    if np.abs(grad).max() <= floor:
        return theta
    raise RuntimeError(
        f"m_projection: moment gap {np.abs(grad).max():.3g} > tol {floor:.3g} after {iters} Newton steps"
    )


def _dual_objective(family: ExponentialFamily, theta: np.ndarray, target: np.ndarray) -> float:
    logits = family.stats @ theta
    m = logits.max()
    return float(m + np.log(np.exp(logits - m).sum()) - theta @ target)


def _kl_rounding(p: np.ndarray, q: np.ndarray) -> float:
    """Rounding bound of :func:`kl_divergence`: ``S`` terms of size ``p_i (|log p_i| + |log q_i|)``.

    ``log`` is accurate to an ulp of its result, the subtraction and product add one ulp each, and the
    sum of ``S`` terms ``S`` more (a margin of 2 on ``S + 3``).
    """
    mask = p > 0
    terms = p[mask] * (np.abs(np.log(p[mask])) + np.abs(np.log(q[mask])))
    return 2.0 * (p.size + 3) * EPS * float(terms.sum())


def pythagorean_m_projection(random_state: int, support: int = 6, dims: tuple[int, int] = (3, 2),
                             probes: int = 5) -> dict:
    """Generalised Pythagorean theorem for the m-projection (Section 3.1 of the paper), numerically.

    Nested exponential families ``E_2 subset E_1`` on ``support`` points: ``E_1`` uses the first
    ``dims[0]`` statistics, ``E_2`` the first ``dims[1]`` (pruning coordinates of ``theta``).
    ``p_1`` is a random point of the full simplex. With ``p* = argmin_{q in E_2} KL(p_1 || q)``, for
    every ``q in E_2``: ``KL(p_1 || q) = KL(p_1 || p*) + KL(p* || q)``. Nested form: projecting
    ``p_1`` onto ``E_1`` and then onto ``E_2`` equals projecting directly, and
    ``KL(p_1 || p_2*) = KL(p_1 || p_1*) + KL(p_1* || p_2*)``. A control replaces ``p*`` by a point of
    ``E_2`` that is not the projection, where the identity must fail.

    Each residual comes with the bound that the finite-precision projection allows (``*_bound``).
    The identity is exact algebra: for ``q = q_theta`` in the family,
    ``KL(p||q) - KL(p||p*) - KL(p*||q) = sum_i (p_i - p*_i)(log p*_i - log q_i)
    = (theta* - theta)^T (E_p[T] - E_p*[T])`` (the log-partitions cancel because ``sum p = sum p* = 1``),
    so ``|residual| <= ||theta* - theta||_1 * moment_gap`` plus the rounding of the three KLs.
    """
    rng = np.random.default_rng(random_state)
    d1, d2 = dims
    if not (1 <= d2 < d1 < support):
        raise ValueError(f"dims must satisfy 1 <= dims[1] < dims[0] < support={support}, got {dims!r}")
    T = rng.standard_normal((support, d1))
    E1 = ExponentialFamily(T)
    E2 = ExponentialFamily(T[:, :d2])
    p1 = rng.dirichlet(np.ones(support))
    theta_star = m_projection(E2, p1)
    p_star = E2.dist(theta_star)
    gap = float(np.max(np.abs(p_star @ T[:, :d2] - p1 @ T[:, :d2])))
    residuals, control, bounds = [], [], []
    for _ in range(probes):
        theta_q = 3.0 * rng.standard_normal(d2)
        q = E2.dist(theta_q)
        lhs = kl_divergence(p1, q)
        residuals.append(lhs - kl_divergence(p1, p_star) - kl_divergence(p_star, q))
        bounds.append(float(np.abs(theta_star - theta_q).sum()) * gap
                      + _kl_rounding(p1, q) + _kl_rounding(p1, p_star) + _kl_rounding(p_star, q))
        r = E2.dist(theta_star + rng.standard_normal(d2))
        control.append(lhs - kl_divergence(p1, r) - kl_divergence(r, q))
    theta1 = m_projection(E1, p1)
    p1_star = E1.dist(theta1)
    gap1 = float(np.max(np.abs(p1_star @ T - p1 @ T)))
    theta_via = m_projection(E2, p1_star)
    p2_via = E2.dist(theta_via)
    gap_via = float(np.max(np.abs(p2_via @ T[:, :d2] - p1_star @ T[:, :d2])))
    nested = kl_divergence(p1, p_star) - kl_divergence(p1, p1_star) - kl_divergence(p1_star, p_star)
    # The same identity with E_1 in place of E_2 and theta* padded with zeros (p* lies in E_1 too).
    theta_star_in_e1 = np.concatenate([theta_star, np.zeros(d1 - d2)])
    nested_bound = (float(np.abs(theta1 - theta_star_in_e1).sum()) * gap1
                    + _kl_rounding(p1, p_star) + _kl_rounding(p1, p1_star) + _kl_rounding(p1_star, p_star))
    # p2_via and p* solve E_q[T_:d2] = m for targets that differ by <= gap1; both solves stop at
    # <= their gaps. So |E_{p2_via}[T] - E_{p*}[T]| <= gap + gap1 + gap_via entry-wise; the mean map's
    # Jacobian is the Fisher H, hence ||dtheta||_2 <= sqrt(d2) (sum of gaps) / lambda_min(H), and
    # |dq_i| = q_i |(T_i - E_q T)^T dtheta| <= 2 max|T| ||dtheta||_1 (to first order; margin 2).
    lam_min = float(np.linalg.eigvalsh(E2.fisher(theta_star)).min())
    dtheta = np.sqrt(d2) * (gap + gap1 + gap_via) / lam_min
    iterated_bound = 2.0 * (2.0 * float(np.abs(T[:, :d2]).max()) * np.sqrt(d2) * dtheta) + 8.0 * support * EPS
    return {
        "moment_gap": gap,
        "moment_tol": moment_rounding_floor(E2, theta_star),
        "pythagoras_max_residual": float(np.max(np.abs(residuals))),
        "pythagoras_bound": float(np.max(bounds)),
        "pythagoras_within_bounds": bool(np.all(np.abs(residuals) <= np.asarray(bounds))),
        "control_min_residual": float(np.min(np.abs(control))),
        "nested_residual": float(abs(nested)),
        "nested_bound": float(nested_bound),
        "iterated_vs_direct": float(np.max(np.abs(p2_via - p_star))),
        "iterated_bound": float(iterated_bound),
    }
