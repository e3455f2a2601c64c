"""Floating-point tolerances for the numerical tests: derived from the problem, never tuned to a printout.

A tolerance here bounds the *rounding* by which two correct computations of the same quantity may
differ (another algorithm, another BLAS/LAPACK kernel or CPU, another summation order or thread
count). It is written as an expression of the things that set it, after the standard a-priori
bounds (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., ch. 3, 4, 10, 19):

* a sum or dot product of ``n`` terms, in any order (blocked, pairwise, with FMA), is off by at
  most about ``n · eps · Σ|terms|`` (recursive summation: ``(n − 1) · eps/2 · Σ|terms|``);
* a backward-stable SVD / QR / Cholesky / triangular solve of an ``m × n`` matrix ``A`` is exact for a
  matrix within about ``max(m, n) · eps · ‖A‖``: singular values move by at most that (Weyl),
  singular subspaces by that over the gap to the next singular value.

``margin`` absorbs the unknown small constants of those bounds and the few rounded operations around
the kernel (a factor 4–64, stated at each use). The bounds are worst cases: measured errors are
typically ``√n`` and more below them, and errors caused by a bug are many orders above them.
"""
from __future__ import annotations

import torch

EPS64 = torch.finfo(torch.float64).eps  # 2.2e-16: unit roundoff ×2 of float64
EPS32 = torch.finfo(torch.float32).eps  # 1.2e-7:  unit roundoff ×2 of float32


def sum_rounding(n: int, scale, margin: float = 4.0, eps: float = EPS64):
    """Bound on the rounding of a sum/dot of ``n`` terms whose absolute values add up to ``scale``.

    For a sum of non-negative terms ``scale`` is the sum itself, so this is a relative bound. ``scale``
    may be a tensor (an entrywise bound, e.g. ``|A| @ |B|`` for the product ``A @ B``).
    """
    return margin * n * eps * scale


def factorization_rounding(size: int, norm: float, margin: float = 16.0, eps: float = EPS64) -> float:
    """Backward error of a stable SVD / QR / Cholesky / solve of a matrix with largest dimension
    ``size`` and norm ``norm``: the absolute error of its singular values, and of a product of its
    factors (e.g. ``U S Vᵀ`` against the matrix)."""
    return margin * size * eps * float(norm)
