"""Toy problems for Section 4 of the paper: least squares on one matrix and deep linear networks.

Two problem classes feed the proximal iterations of :mod:`theory.prox` (Eq. (9) of the paper):

* :class:`LeastSquares` -- ``L(W) = 1/2 ||A W - B||_F^2 + ridge/2 ||W||_F^2`` on a single matrix
  ``W`` of shape ``(m, n)``. Its gradient is globally Lipschitz with the *exact* constant
  ``L_gradL = sigma_max(A)^2 + ridge`` (the Hessian is ``Id_n (x) (A^T A + ridge Id_m)``), so the
  step-size condition of the paper's Proposition 4.3 can be met exactly. ``A`` acts on the rows
  of ``W``: it is a linear layer ``y = W^T a`` fitted to targets, and ``A^T A`` is the Fisher
  information of the Gaussian model ``B[:, j] ~ N(A W[:, j], Id)`` acting on the rows of ``W``,
  the same side as the metric ``I_n`` of the proposition's last item.
* :class:`DeepLinear` -- a deep linear network ``W = W_L ... W_1`` with loss
  ``1/(2p) ||W_L ... W_1 X - Y||_F^2 + weight_decay/2 sum_i ||W_i||_F^2`` in its factors. Its
  gradient is *not* globally Lipschitz (the loss is a polynomial of degree ``2L``), so the
  smoothness constant is estimated locally by :class:`Backtracking`.

Why backtracking is a valid replacement for a global ``L_gradL``: the proof of Proposition 4.3
(Appendix A.1 of the paper) uses the descent lemma only between consecutive iterates,
``L(W_{n+1}) <= L(W_n) + <grad L(W_n), W_{n+1} - W_n> + L_n/2 ||W_{n+1} - W_n||^2``. Backtracking
*certifies exactly that inequality* for the step actually taken (it doubles ``L_n`` and recomputes
the step until the inequality holds), so the sufficient-decrease inequality of the proof holds
verbatim with ``L_n`` in place of ``L_gradL``. With ``weight_decay > 0`` the objective is coercive and
all iterates stay in the bounded sublevel set ``{Phi <= Phi(W_0)}``. Every trial point lies within a
bounded distance of it (a trial moves by ``alpha ||grad L||`` plus the dropped singular values, each
``<= sqrt(2 alpha lambda)``, with ``alpha <= sigma / L_0``), so all trial segments stay in a compact
set ``K`` on which ``grad L`` (a polynomial map) is Lipschitz with some finite ``L_K``. Any
``L_n >= L_K`` passes the test, so doubling stops below ``max(L_0, 2 L_K)`` and
``alpha_n >= fraction * sigma / max(L_0, 2 L_K) > 0`` -- the ``alpha_min > 0`` the proposition needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = [
    "LeastSquares",
    "DeepLinear",
    "Backtracking",
    "GlobalLipschitz",
    "random_orthogonal",
    "random_spd",
    "random_least_squares",
    "random_deep_linear",
    "reduced_rank_regression",
    "secant_lipschitz",
]

Params = tuple[np.ndarray, ...]


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0.0 if allow_zero else value > 0.0
    if not np.isfinite(value) or not ok:
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def random_orthogonal(rng: np.random.Generator, size: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    size = _check_int("size", size, 1)
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.sign(np.diag(r))


def random_spd(rng: np.random.Generator, size: int, condition: float, scale: float = 1.0) -> np.ndarray:
    """Random symmetric positive-definite matrix with ``lambda_max = scale`` and
    ``lambda_max / lambda_min = condition``.

    The eigenvalues are log-spaced between ``scale / condition`` and ``scale`` (both ends always
    present when ``size >= 2``) and the eigenvectors are Haar distributed.
    """
    size = _check_int("size", size, 1)
    condition = _check_positive("condition", condition)
    if condition < 1.0:
        raise ValueError(f"condition must be >= 1, got {condition!r}")
    scale = _check_positive("scale", scale)
    if size == 1:
        eigs = np.array([scale])
    else:
        inner = np.sort(rng.uniform(0.0, 1.0, size=size - 2))
        exps = np.concatenate([[0.0], inner, [1.0]])
        eigs = scale * condition ** (-exps)
    q = random_orthogonal(rng, size)
    mat = (q * eigs) @ q.T
    return 0.5 * (mat + mat.T)


@dataclass(frozen=True)
class GlobalLipschitz:
    """A known global Lipschitz constant of ``grad L`` (used as ``L_n`` at every step)."""

    value: float

    def __post_init__(self) -> None:
        _check_positive("lipschitz", self.value)


@dataclass(frozen=True)
class Backtracking:
    """Local smoothness by backtracking: start at ``initial``; multiply by ``factor`` until the
    descent-lemma inequality between the current and the candidate iterate holds.

    ``L_n`` never decreases along a run, so the step sizes ``alpha_n = fraction * sigma_n / L_n`` are
    non-increasing and ``alpha_min`` is the last one used (see the module docstring for why this
    certificate is exactly what the paper's proof consumes).
    """

    initial: float = 1.0
    factor: float = 2.0
    max_doublings: int = 60

    def __post_init__(self) -> None:
        _check_positive("initial", self.initial)
        if not self.factor > 1.0:
            raise ValueError(f"factor must be > 1, got {self.factor!r}")
        _check_int("max_doublings", self.max_doublings, 1)


@dataclass(frozen=True)
class LeastSquares:
    """``L(W) = 1/2 ||A W - B||_F^2 + ridge/2 ||W||_F^2`` with ``W`` of shape ``(m, n)``.

    ``A`` is ``(p, m)`` and ``B`` is ``(p, n)``. The problem has one parameter block; the API works
    on tuples of blocks so that the same iteration code serves :class:`DeepLinear`.
    """

    A: np.ndarray
    B: np.ndarray
    ridge: float = 0.0

    def __post_init__(self) -> None:
        A = np.asarray(self.A, dtype=float)
        B = np.asarray(self.B, dtype=float)
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D array, got shape {A.shape}")
        if B.ndim != 2 or B.shape[0] != A.shape[0]:
            raise ValueError(f"B must be 2-D with {A.shape[0]} rows (as A), got shape {B.shape}")
        _check_positive("ridge", self.ridge, allow_zero=True)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "B", B)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.A.shape[1], self.B.shape[1])

    @property
    def block_shapes(self) -> tuple[tuple[int, int], ...]:
        return (self.shape,)

    def loss(self, params: Params) -> float:
        (W,) = params
        r = self.A @ W - self.B
        return 0.5 * float(np.vdot(r, r)) + 0.5 * self.ridge * float(np.vdot(W, W))

    def grad(self, params: Params) -> Params:
        (W,) = params
        return (self.A.T @ (self.A @ W - self.B) + self.ridge * W,)

    @property
    def lipschitz(self) -> float:
        """Exact global Lipschitz constant of ``grad L`` in the Frobenius norm: ``sigma_max(A)^2 + ridge``."""
        return float(np.linalg.norm(self.A, 2) ** 2) + self.ridge

    @property
    def lower_bound(self) -> float:
        return 0.0

    def fisher(self) -> np.ndarray:
        """Fisher information of the Gaussian model ``B[:, j] ~ N(A W[:, j], Id)`` acting on the rows of ``W``."""
        return self.A.T @ self.A + self.ridge * np.eye(self.A.shape[1])

    def minimizer(self) -> np.ndarray:
        """The unconstrained minimiser (least-norm when ``A^T A + ridge`` is singular)."""
        H = self.fisher()
        return np.linalg.lstsq(H, self.A.T @ self.B, rcond=None)[0]


@dataclass(frozen=True)
class DeepLinear:
    """Deep linear network ``x -> W_L ... W_1 x`` fitted by ``1/(2p) ||W X - Y||_F^2 + wd/2 sum ||W_i||^2``.

    ``X`` is ``(d_in, p)`` (samples are columns), ``Y`` is ``(d_out, p)``; ``widths`` lists
    ``(d_in, h_1, ..., h_{L-1}, d_out)`` and factor ``W_i`` has shape ``(widths[i], widths[i-1])``,
    PyTorch's ``(out, in)`` convention.
    """

    X: np.ndarray
    Y: np.ndarray
    widths: tuple[int, ...]
    weight_decay: float = 0.0
    _xxt: np.ndarray = field(init=False, repr=False, compare=False)
    _yxt: np.ndarray = field(init=False, repr=False, compare=False)
    _yy: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        X = np.asarray(self.X, dtype=float)
        Y = np.asarray(self.Y, dtype=float)
        widths = tuple(int(w) for w in self.widths)
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"widths must list >= 2 positive layer sizes, got {self.widths!r}")
        if X.ndim != 2 or X.shape[0] != widths[0]:
            raise ValueError(f"X must be 2-D with {widths[0]} rows (widths[0]), got shape {X.shape}")
        if Y.ndim != 2 or Y.shape != (widths[-1], X.shape[1]):
            raise ValueError(f"Y must have shape {(widths[-1], X.shape[1])}, got {Y.shape}")
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "Y", Y)
        object.__setattr__(self, "widths", widths)
        p = X.shape[1]
        # The loss only sees X and Y through these moments: iterations cost O(d^3), not O(d^2 p).
        object.__setattr__(self, "_xxt", X @ X.T / p)
        object.__setattr__(self, "_yxt", Y @ X.T / p)
        object.__setattr__(self, "_yy", float(np.vdot(Y, Y)) / p)

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def block_shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple((self.widths[i + 1], self.widths[i]) for i in range(self.depth))

    @property
    def lower_bound(self) -> float:
        return 0.0

    @staticmethod
    def product(params: Sequence[np.ndarray]) -> np.ndarray:
        W = params[0]
        for F in params[1:]:
            W = F @ W
        return W

    def data_loss_of_product(self, W: np.ndarray) -> float:
        """``1/(2p) ||W X - Y||^2`` of an end-to-end matrix, computed from the data moments."""
        return 0.5 * (float(np.vdot(W @ self._xxt, W)) - 2.0 * float(np.vdot(W, self._yxt)) + self._yy)

    def loss(self, params: Params) -> float:
        W = self.product(params)
        reg = 0.5 * self.weight_decay * sum(float(np.vdot(F, F)) for F in params)
        # Rounding can take the expanded quadratic a hair below zero at an exact fit.
        return max(self.data_loss_of_product(W), 0.0) + reg

    def grad(self, params: Params) -> Params:
        L = self.depth
        # prefix[i] = W_i ... W_1 (prefix[0] = Id), suffix[i] = W_L ... W_{i+2}
        prefix = [np.eye(self.widths[0])]
        for F in params:
            prefix.append(F @ prefix[-1])
        suffix = [np.eye(self.widths[-1])]
        for F in reversed(params[1:]):
            suffix.append(suffix[-1] @ F)
        suffix = suffix[::-1]
        G = prefix[-1] @ self._xxt - self._yxt  # gradient w.r.t. the end-to-end matrix
        grads = []
        for i in range(L):
            gi = suffix[i].T @ G @ prefix[i].T + self.weight_decay * params[i]
            grads.append(gi)
        return tuple(grads)

    def product_minimizer(self) -> np.ndarray:
        """Least-squares end-to-end matrix ``Y X^+`` (the unconstrained optimum when widths allow full rank)."""
        return np.linalg.lstsq(self._xxt, self._yxt.T, rcond=None)[0].T


def reduced_rank_regression(X: np.ndarray, Y: np.ndarray, rank: int) -> np.ndarray:
    """Global minimiser of ``||W X - Y||_F^2`` over ``rank(W) <= rank`` (reduced-rank regression).

    With ``W_ls = Y X^+`` and ``U_r`` the top-``r`` left singular vectors of the fitted values
    ``W_ls X``, the minimiser is ``U_r U_r^T W_ls``: the residual splits orthogonally into
    ``Y - W_ls X`` (fixed) and ``W_ls X - W X`` whose best rank-``r`` approximation is Eckart--Young's.
    """
    rank = _check_int("rank", rank, 0)
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    W_ls = Y @ np.linalg.pinv(X)
    U, _, _ = np.linalg.svd(W_ls @ X, full_matrices=False)
    Ur = U[:, :rank]
    return Ur @ (Ur.T @ W_ls)


def random_least_squares(
    rng: np.random.Generator,
    m: int,
    n: int,
    extra_rows: int = 0,
    condition: float = 1.0,
    target_rank: int | None = None,
    noise: float = 0.1,
    ridge: float = 0.0,
) -> LeastSquares:
    """A random :class:`LeastSquares` instance with ``kappa(A) = condition``.

    ``A`` is ``(m + extra_rows, m)`` with singular values log-spaced in ``[1/condition, 1]`` (so
    ``L_gradL = 1 + ridge`` exactly); the targets are ``B = A W_true + noise * E`` with ``W_true`` of
    rank ``target_rank`` (default ``min(m, n)``) and well separated singular values.
    """
    m = _check_int("m", m, 1)
    n = _check_int("n", n, 1)
    extra_rows = _check_int("extra_rows", extra_rows, 0)
    condition = _check_positive("condition", condition)
    if condition < 1.0:
        raise ValueError(f"condition must be >= 1, got {condition!r}")
    _check_positive("noise", noise, allow_zero=True)
    k = min(m, n) if target_rank is None else _check_int("target_rank", target_rank, 0)
    if k > min(m, n):
        raise ValueError(f"target_rank must be <= min(m, n) = {min(m, n)}, got {target_rank!r}")
    p = m + extra_rows
    s = condition ** (-np.linspace(0.0, 1.0, m)) if m > 1 else np.ones(1)
    Ua = np.linalg.qr(rng.standard_normal((p, m)))[0]
    A = (Ua * s) @ random_orthogonal(rng, m).T
    sv = np.linspace(2.0, 1.0, k) if k > 1 else np.full(k, 1.5)
    W_true = (np.linalg.qr(rng.standard_normal((m, max(k, 1))))[0][:, :k] * sv) @ np.linalg.qr(
        rng.standard_normal((n, max(k, 1)))
    )[0][:, :k].T
    B = A @ W_true + noise * rng.standard_normal((p, n))
    return LeastSquares(A, B, ridge)


def random_deep_linear(
    rng: np.random.Generator,
    d: int = 12,
    depth: int = 3,
    samples: int = 200,
    teacher_rank: int = 3,
    input_condition: float = 30.0,
    noise: float = 0.3,
    weight_decay: float = 0.0,
) -> tuple[DeepLinear, np.ndarray]:
    """A teacher--student deep linear regression and its teacher matrix.

    Inputs ``x ~ N(0, Sigma)`` with the eigenvalues of ``Sigma`` log-spaced over ``input_condition``
    (anisotropic inputs are what separates the Euclidean SVD truncation from the loss-optimal
    low-rank solution); targets ``y = W_true x + noise * e`` with ``rank(W_true) = teacher_rank``.
    """
    d = _check_int("d", d, 1)
    depth = _check_int("depth", depth, 1)
    samples = _check_int("samples", samples, 1)
    teacher_rank = _check_int("teacher_rank", teacher_rank, 0)
    if teacher_rank > d:
        raise ValueError(f"teacher_rank must be <= d = {d}, got {teacher_rank!r}")
    input_condition = _check_positive("input_condition", input_condition)
    _check_positive("noise", noise, allow_zero=True)
    cov_sqrt_eigs = input_condition ** (-0.5 * np.linspace(0.0, 1.0, d))
    Q = random_orthogonal(rng, d)
    X = (Q * cov_sqrt_eigs) @ rng.standard_normal((d, samples))
    sv = np.linspace(3.0, 1.0, teacher_rank) if teacher_rank > 1 else np.full(teacher_rank, 2.0)
    U = np.linalg.qr(rng.standard_normal((d, max(teacher_rank, 1))))[0][:, :teacher_rank]
    V = np.linalg.qr(rng.standard_normal((d, max(teacher_rank, 1))))[0][:, :teacher_rank]
    W_true = (U * sv) @ V.T
    Y = W_true @ X + noise * rng.standard_normal((d, samples))
    return DeepLinear(X, Y, (d,) * (depth + 1), weight_decay), W_true


def secant_lipschitz(problem, params: Sequence[np.ndarray], step: float = 1e-3) -> float:
    """A secant estimate ``|grad L(theta - t g) - grad L(theta)| / (t |g|)`` of the local smoothness.

    A *starting value* for :class:`Backtracking` (which certifies or increases it), so the first
    steps are not taken with a wildly optimistic step size; never a certificate by itself.
    """
    params = tuple(np.asarray(p, dtype=float) for p in params)
    g = problem.grad(params)
    g_norm = float(np.sqrt(sum(np.vdot(x, x) for x in g)))
    if g_norm == 0.0:
        return 1.0
    t = step * max(1.0, float(np.sqrt(sum(np.vdot(p, p) for p in params)))) / g_norm
    g2 = problem.grad(tuple(p - t * x for p, x in zip(params, g)))
    diff = float(np.sqrt(sum(np.vdot(a - b, a - b) for a, b in zip(g2, g))))
    return max(diff / (t * g_norm), 1e-12)
