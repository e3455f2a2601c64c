"""Rounding bounds for the theory tests: every tolerance is an expression of float64 eps and the problem.

A bound here covers the rounding by which two correct computations of the same quantity may differ
on different CPUs and BLAS/LAPACK builds (other kernels, summation orders, FMA, thread counts). It
follows the standard a-priori bounds (Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed., ch. 3, 4, 10, 19):

* a sum or dot product of ``n`` terms, in any order, is off by at most about ``n eps sum|terms|``;
* combining already-rounded quantities (a difference of losses, an objective made of terms that
  cancel) adds ``eps`` times the *sizes of the quantities*, not of the result: cancellation never
  makes an error relative to ``|a - b|``;
* a backward-stable SVD / eigh / QR / solve of a matrix with largest dimension ``size`` is exact for a
  matrix within about ``size eps ||A||``: singular values and eigenvalues move by that much
  *absolutely* (Weyl), and a product of the factors reproduces ``A`` to that.

``MARGIN`` absorbs the unknown small constants of those bounds and the few rounded operations around
a kernel. The bounds are worst cases: measured errors sit one to three orders below them, and the
errors a bug causes (a wrong threshold, rank or sign) many orders above.
"""
from __future__ import annotations

import numpy as np

EPS = float(np.finfo(float).eps)  # 2.2e-16, twice the unit roundoff of float64
MARGIN = 16.0


def cancellation_slack(*terms: float, margin: float = MARGIN) -> float:
    """Rounding of a sum/difference of the already-rounded ``terms``: ``margin eps sum|terms|``."""
    return margin * EPS * float(sum(abs(float(t)) for t in terms))


def sum_slack(n: int, abs_sum: float, margin: float = MARGIN) -> float:
    """Rounding of a sum or dot product of ``n`` terms whose absolute values add up to ``abs_sum``."""
    return margin * int(n) * EPS * float(abs_sum)


def factorization_slack(size: int, norm: float, margin: float = MARGIN) -> float:
    """Backward error of a stable SVD / eigh / QR / solve of a matrix with largest dimension ``size`` and
    norm ``norm``: the absolute error of its singular values or eigenvalues, and of a product of its factors."""
    return margin * int(size) * EPS * float(norm)


def least_squares_loss_slack(problem, W: np.ndarray, margin: float = MARGIN) -> float:
    """Rounding of :meth:`theory.deep_linear.LeastSquares.loss` at ``W``: ``1/2 |A W - B|^2 + ridge/2 |W|^2``.

    Each residual entry is a sum of ``m + 1`` terms bounded by ``R = |A| |W| + |B|``, so it is off by
    ``(m + 1) eps R``; squaring and summing ``p n`` of them adds ``p n eps |r|^2 <= p n eps <|r|, R>``.
    """
    A, B = problem.A, problem.B
    W = np.asarray(W, dtype=float)
    r = A @ W - B
    R = np.abs(A) @ np.abs(W) + np.abs(B)
    n_terms = A.shape[1] + 1 + B.size + W.size
    return sum_slack(n_terms, float(np.vdot(np.abs(r), R)) + problem.ridge * float(np.vdot(W, W)), margin)


def least_squares_descent_slack(problem, W: np.ndarray, D: np.ndarray, lipschitz: float, margin: float = MARGIN) -> float:
    """Rounding of the descent-lemma gap ``L(W + D) - L(W) - <grad L(W), D> - lipschitz/2 |D|^2`` of a least squares.

    The four terms cancel (the gap is ``<= 0`` in exact arithmetic with the exact constant), so the
    error is the sum of their rounding: the two losses, the inner product (``grad`` entries are sums of
    ``p + m + 1`` terms bounded by ``|A|^T R + ridge |W|``, then ``m n`` products), and the quadratic term
    (``|D|^2`` a sum of ``m n`` squares, ``lipschitz = sigma_max(A)^2`` from an SVD of ``A``).
    """
    A, B = problem.A, problem.B
    W, D = np.asarray(W, dtype=float), np.asarray(D, dtype=float)
    p, m = A.shape
    G_abs = np.abs(A).T @ (np.abs(A) @ np.abs(W) + np.abs(B)) + problem.ridge * np.abs(W)
    first_order = sum_slack(p + m + 1 + W.size, float(np.vdot(G_abs, np.abs(D))), margin)
    quadratic = sum_slack(max(p, m) + W.size + 2, 0.5 * float(lipschitz) * float(np.vdot(D, D)), margin)
    return (
        least_squares_loss_slack(problem, W + D, margin) + least_squares_loss_slack(problem, W, margin)
        + first_order + quadratic
    )
