"""Rounding bounds for the theory tests (numpy, float64), on top of :mod:`tests.tolerances`.

The a-priori bounds and what ``margin`` absorbs are stated there; the theory tests use a margin of 16
throughout (:data:`MARGIN`). What this module adds is cancellation: combining already-rounded
quantities (a difference of losses, an objective made of terms that cancel) adds ``eps`` times the
*sizes of the quantities*, not of the result, and the least-squares losses and descent-lemma gaps of
:mod:`theory.deep_linear` built from it. Measured errors sit one to three orders below these bounds;
the errors a bug causes (a wrong threshold, rank or sign) many orders above.
"""
from __future__ import annotations

import numpy as np

from tests.tolerances import EPS64 as EPS, factorization_rounding, sum_rounding

MARGIN = 16.0


def cancellation_slack(*terms: float, margin: float = MARGIN) -> float:
    """Rounding of a sum/difference of the already-rounded ``terms``: ``margin eps sum|terms|``."""
    return margin * EPS * float(sum(abs(float(t)) for t in terms))


def sum_slack(n: int, abs_sum: float, margin: float = MARGIN) -> float:
    """:func:`tests.tolerances.sum_rounding` at the theory tests' margin, as a float."""
    return float(sum_rounding(int(n), float(abs_sum), margin))


def factorization_slack(size: int, norm: float, margin: float = MARGIN) -> float:
    """:func:`tests.tolerances.factorization_rounding` at the theory tests' margin (SVD / eigh / QR / solve)."""
    return factorization_rounding(int(size), norm, margin)


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


def least_squares_descent_slack(problem, W: np.ndarray, D: np.ndarray, lipschitz: float,
                                margin: float = MARGIN) -> float:
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
