"""Proximal operators of the rank and the (mirror-)proximal gradient iteration of the paper's Eq. (9).

The rank prox in the Euclidean metric
--------------------------------------
``prox_{c rank}(Y) = argmin_Z 1/2 ||Z - Y||_F^2 + c rank(Z)`` with ``c = alpha * lambda > 0``.
For a fixed rank ``k`` the best ``Z`` is the truncated SVD of ``Y`` (Eckart--Young), with value
``1/2 sum_{i>k} s_i^2 + c k``. Going from ``k`` to ``k+1`` changes the value by ``c - s_{k+1}^2 / 2``,
which is increasing in ``k`` because the ``s_i`` are sorted, so the objective is minimised by keeping
exactly the singular values with ``s_i^2 / 2 > c``:

    prox_{alpha lambda rank}(Y) = sum_{s_i > sqrt(2 alpha lambda)} s_i u_i v_i^T,

hard thresholding at ``tau = sqrt(2 alpha lambda)`` (not ``sqrt(alpha lambda)``). When
``s_i = tau`` exactly both choices are minimisers: the prox is set valued and the iteration below
must *select* one element (``tie_break``).

The rank prox in the Fisher metric (rows)
-----------------------------------------
Eq. (9) with ``F_n(W) = 1/2 ||I_n^{1/2} W||_F^2`` (``I_n`` positive definite, ``m x m``, acting on
the rows of ``W``) has Bregman term ``D_{F_n}(W, W_n) = 1/2 ||I_n^{1/2} (W - W_n)||_F^2`` and
gradient term ``<W, G>``, ``G = grad L(W_n)``. Completing the square,

    1/alpha D_{F_n}(W, W_n) + <W, G> = 1/(2 alpha) ||I_n^{1/2} W - Y||_F^2 + const,
    Y = I_n^{1/2} W_n - alpha I_n^{-1/2} G = I_n^{1/2} (W_n - alpha I_n^{-1} G).

``W -> Z = I_n^{1/2} W`` is a bijection that preserves rank, so
``W_{n+1} = I_n^{-1/2} prox_{alpha lambda rank}(Y)``: a hard threshold of the singular values of
``I_n^{1/2}(W_n - alpha I_n^{-1} G)`` at ``sqrt(2 alpha lambda)``, mapped back by ``I_n^{-1/2}``.
Consequently every non-zero singular value of ``I_n^{1/2} W_{n+1}`` -- with the metric of
step ``n``, not of the limit -- is ``>= sqrt(2 alpha_n lambda)``. The strong-convexity modulus of
``F_n`` is ``sigma_n = lambda_min(I_n)`` and ``grad F_n`` is ``lambda_max(I_n)``-Lipschitz.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol, Sequence

import numpy as np

from theory.deep_linear import Backtracking, GlobalLipschitz

__all__ = [
    "TIE_RTOL",
    "DESCENT_GAP_RTOL",
    "TieBreak",
    "hard_threshold",
    "ThresholdResult",
    "MetricAt",
    "prox_rank",
    "prox_rank_fisher",
    "rank_prox_objective",
    "EuclideanMetric",
    "ConvergingMetric",
    "ConstantFraction",
    "RandomFraction",
    "FixedStep",
    "ProxRun",
    "proximal_gradient",
    "OIALRRun",
    "oialr",
    "smallest_nonzero",
    "tangent_residual",
]

TieBreak = Literal["keep", "drop", "adversarial"]
_TIE_BREAKS = ("keep", "drop", "adversarial")
Params = tuple[np.ndarray, ...]

# Default tie band of :func:`hard_threshold`: ``|s^2/2 - alpha_lam| <= TIE_RTOL * alpha_lam`` is a tie.
TIE_RTOL = 1e-12
# Slack of the backtracking certificate in :func:`proximal_gradient`: a trial step is accepted when its
# descent-lemma gap is ``<= DESCENT_GAP_RTOL * max(1, |L(W_n)|)`` (rounding in the loss evaluation).
DESCENT_GAP_RTOL = 1e-12


def _check_tie_break(tie_break: str) -> str:
    if tie_break not in _TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {_TIE_BREAKS}, got {tie_break!r}")
    return tie_break


def smallest_nonzero(values: np.ndarray) -> float:
    """Smallest strictly positive entry (``nan`` when there is none: the bound is then vacuous)."""
    values = np.asarray(values, dtype=float)
    pos = values[values > 0.0]
    return float(pos.min()) if pos.size else float("nan")


@dataclass(frozen=True)
class ThresholdResult:
    """Outcome of one hard threshold: the new matrix, the kept singular values and the number of ties."""

    Z: np.ndarray
    kept: np.ndarray
    ties: int


def hard_threshold(
    Y: np.ndarray,
    alpha_lam: float,
    tie_break: TieBreak = "keep",
    reference: np.ndarray | None = None,
    tie_rtol: float = TIE_RTOL,
) -> ThresholdResult:
    """Select an element of ``prox_{alpha_lam * rank}(Y)``: keep singular values with ``s^2/2 > alpha_lam``.

    Singular values with ``|s^2/2 - alpha_lam| <= tie_rtol * alpha_lam`` are ties (both choices are
    minimisers). ``tie_break`` selects: ``"keep"`` all ties, ``"drop"`` all ties, or
    ``"adversarial"``: whichever of the two is farther from ``reference`` (the current iterate),
    a legitimate but unhelpful element of the argmin set.
    """
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2:
        raise ValueError(f"Y must be a 2-D array, got shape {Y.shape}")
    alpha_lam = float(alpha_lam)
    if not np.isfinite(alpha_lam) or alpha_lam < 0.0:
        raise ValueError(f"alpha_lam must be a finite number >= 0, got {alpha_lam!r}")
    _check_tie_break(tie_break)
    if not (np.isfinite(tie_rtol) and tie_rtol >= 0.0):
        raise ValueError(f"tie_rtol must be a finite number >= 0, got {tie_rtol!r}")
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    half_sq = 0.5 * s**2
    tie = np.abs(half_sq - alpha_lam) <= tie_rtol * alpha_lam
    tie &= s > 0.0
    keep_strict = (half_sq > alpha_lam) & ~tie
    n_ties = int(tie.sum())

    def build(mask: np.ndarray) -> np.ndarray:
        return (U[:, mask] * s[mask]) @ Vt[mask]

    if n_ties == 0 or tie_break == "drop":
        mask = keep_strict
    elif tie_break == "keep":
        mask = keep_strict | tie
    else:
        if reference is None:
            raise ValueError("tie_break='adversarial' needs reference (the current iterate), got None")
        with_ties, without = keep_strict | tie, keep_strict
        far_with = np.linalg.norm(build(with_ties) - reference)
        far_without = np.linalg.norm(build(without) - reference)
        mask = with_ties if far_with >= far_without else without
    return ThresholdResult(build(mask), s[mask].copy(), n_ties)


def prox_rank(Y: np.ndarray, alpha_lam: float, tie_break: TieBreak = "keep") -> np.ndarray:
    """Euclidean prox of ``alpha_lam * rank`` (hard threshold at ``sqrt(2 alpha_lam)``; module docstring)."""
    if tie_break == "adversarial":
        raise ValueError("tie_break='adversarial' needs the current iterate; use hard_threshold(reference=...)")
    return hard_threshold(Y, alpha_lam, tie_break).Z


def rank_prox_objective(Z: np.ndarray, Y: np.ndarray, alpha_lam: float, rank_rtol: float = 1e-10) -> float:
    """``1/2 ||Z - Y||_F^2 + alpha_lam * rank(Z)`` (numerical rank relative to ``sigma_max(Z)``)."""
    Z = np.asarray(Z, dtype=float)
    s = np.linalg.svd(Z, compute_uv=False)
    r = int(np.sum(s > rank_rtol * max(s.max(initial=0.0), 1e-300))) if s.size and s.max() > 0 else 0
    return 0.5 * float(np.linalg.norm(Z - Y) ** 2) + float(alpha_lam) * r


@dataclass(frozen=True)
class MetricAt:
    """``I_n`` at one step, with the square roots the Fisher prox needs."""

    matrix: np.ndarray
    sqrt: np.ndarray
    inv_sqrt: np.ndarray
    lam_min: float
    lam_max: float

    @staticmethod
    def of(matrix: np.ndarray) -> "MetricAt":
        matrix = np.asarray(matrix, dtype=float)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"metric must be a square matrix, got shape {matrix.shape}")
        if not np.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(matrix).max())):
            raise ValueError("metric must be symmetric")
        sym = 0.5 * (matrix + matrix.T)
        d, Q = np.linalg.eigh(sym)
        if d.min() <= 0.0:
            raise ValueError(f"metric must be positive definite, got lambda_min = {d.min()!r}")
        return MetricAt(sym, (Q * np.sqrt(d)) @ Q.T, (Q / np.sqrt(d)) @ Q.T, float(d.min()), float(d.max()))


class Metric(Protocol):
    def at(self, n: int) -> MetricAt | None: ...

    def limit(self) -> MetricAt | None: ...


@dataclass(frozen=True)
class EuclideanMetric:
    """``F_n = 1/2 ||W||_F^2``: the classical proximal gradient method (``sigma_n = 1``)."""

    def at(self, n: int) -> None:
        return None

    def limit(self) -> None:
        return None


@dataclass
class ConvergingMetric:
    """``I_n = I + rate^n * P`` with ``I`` positive definite and ``P`` positive semidefinite.

    ``I_n -> I`` geometrically (the proposition's ``I_n -> I``), and ``lambda_min(I_n) >=
    lambda_min(I)``, so ``alpha_min <= lambda_min(I) / L`` satisfies the step condition at every ``n``.
    ``perturbation=None`` (or ``rate=0``) gives the constant metric ``I_n = I``.
    """

    limit_matrix: np.ndarray
    perturbation: np.ndarray | None = None
    rate: float = 0.5
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._limit = MetricAt.of(self.limit_matrix)
        if not (0.0 <= float(self.rate) < 1.0):
            raise ValueError(f"rate must be in [0, 1), got {self.rate!r}")
        if self.perturbation is not None:
            P = np.asarray(self.perturbation, dtype=float)
            if P.shape != self._limit.matrix.shape:
                raise ValueError(f"perturbation must have shape {self._limit.matrix.shape}, got {P.shape}")
            if np.linalg.eigvalsh(0.5 * (P + P.T)).min() < -1e-12 * max(1.0, np.abs(P).max()):
                raise ValueError("perturbation must be positive semidefinite")
            self.perturbation = 0.5 * (P + P.T)

    def at(self, n: int) -> MetricAt:
        if self.perturbation is None or self.rate == 0.0:
            return self._limit
        weight = self.rate**n
        # Below rounding level the perturbation is invisible: reuse the limit (and its cache).
        if weight * np.abs(self.perturbation).max() <= 1e-17 * self._limit.lam_min:
            return self._limit
        if n not in self._cache:
            self._cache[n] = MetricAt.of(self._limit.matrix + weight * self.perturbation)
        return self._cache[n]

    def limit(self) -> MetricAt:
        return self._limit


class StepRule(Protocol):
    def __call__(self, n: int, sigma_n: float, lipschitz_n: float) -> float: ...


@dataclass(frozen=True)
class ConstantFraction:
    """``alpha_n = fraction * sigma_n / L_n``; ``fraction <= 1`` is the paper's step condition."""

    fraction: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.fraction) and self.fraction > 0.0):
            raise ValueError(f"fraction must be a finite number > 0, got {self.fraction!r}")

    def __call__(self, n: int, sigma_n: float, lipschitz_n: float) -> float:
        return self.fraction * sigma_n / lipschitz_n


@dataclass
class RandomFraction:
    """``alpha_n = f_n * sigma_n / L_n`` with ``f_n ~ U[low, high]`` drawn once per ``n`` from ``random_state``."""

    low: float
    high: float = 1.0
    random_state: int = 0
    _fractions: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (0.0 < self.low <= self.high):
            raise ValueError(f"need 0 < low <= high, got low={self.low!r}, high={self.high!r}")
        self._rng = np.random.default_rng(self.random_state)

    def __call__(self, n: int, sigma_n: float, lipschitz_n: float) -> float:
        while len(self._fractions) <= n:
            self._fractions.append(float(self._rng.uniform(self.low, self.high)))
        return self._fractions[n] * sigma_n / lipschitz_n


@dataclass(frozen=True)
class FixedStep:
    """``alpha_n = alpha`` regardless of ``sigma_n / L_n`` (used to violate the step condition on purpose)."""

    alpha: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.alpha) and self.alpha > 0.0):
            raise ValueError(f"alpha must be a finite number > 0, got {self.alpha!r}")

    def __call__(self, n: int, sigma_n: float, lipschitz_n: float) -> float:
        return self.alpha


def tangent_residual(W: np.ndarray, G: np.ndarray, rank: int) -> float:
    """``dist(0, G + lambda * d rank(W))`` for the limiting subdifferential of the rank.

    At a rank-``r`` matrix ``W = U_r S V_r^T`` the (Frechet and limiting) subdifferential of the rank
    is the normal space of the rank-``r`` manifold, ``{Y : U_r^T Y = 0, Y V_r = 0}``, a linear space
    (so ``lambda > 0`` does not matter). The distance of ``-G`` to it is the norm of the tangent
    part ``G - (Id - U_r U_r^T) G (Id - V_r V_r^T)``; it vanishes exactly at critical points of
    ``L + lambda rank``. ``W = 0`` is always critical.
    """
    if rank <= 0:
        return 0.0
    U, _, Vt = np.linalg.svd(W, full_matrices=False)
    return _tangent_norm(U, Vt, G, rank)


def _tangent_norm(U: np.ndarray, Vt: np.ndarray, G: np.ndarray, rank: int) -> float:
    if rank <= 0:
        return 0.0
    Ur, Vr = U[:, :rank], Vt[:rank].T
    normal = G - Ur @ (Ur.T @ G)
    normal = normal - (normal @ Vr) @ Vr.T
    return float(np.linalg.norm(G - normal))


def prox_rank_fisher(
    W: np.ndarray,
    G: np.ndarray,
    alpha: float,
    lam: float,
    metric: MetricAt | None,
    tie_break: TieBreak = "keep",
) -> ThresholdResult:
    """One step of Eq. (9): ``argmin_W 1/alpha D_F(W, W_n) + <W, G> + lam rank(W)`` (module docstring).

    ``metric=None`` is the Euclidean case. Returns ``W_{n+1}`` in ``.Z`` and the kept singular values
    of ``I_n^{1/2} W_{n+1}`` in ``.kept``.
    """
    if metric is None:
        return hard_threshold(W - alpha * G, alpha * lam, tie_break, reference=W)
    Y = metric.sqrt @ W - alpha * (metric.inv_sqrt @ G)
    res = hard_threshold(Y, alpha * lam, tie_break, reference=metric.sqrt @ W)
    return ThresholdResult(metric.inv_sqrt @ res.Z, res.kept, res.ties)


@dataclass
class ProxRun:
    """Everything Proposition 4.3 talks about, recorded along one run of Eq. (9).

    Index ``n`` of per-iterate arrays runs over ``0..N`` (``W_0`` .. ``W_N``); per-step arrays run
    over ``0..N-1`` (step ``n`` maps ``W_n`` to ``W_{n+1}``).
    """

    lam: float
    iterates: list[Params]
    objective: np.ndarray  # (L + lam * sum rank)(W_n)
    loss: np.ndarray
    rank: np.ndarray  # sum of block ranks of W_n
    singular_values: list[list[np.ndarray]]  # per iterate, per block: sigma(W_n)
    critical_residual: np.ndarray  # dist(0, d(L + lam rank)(W_n))
    alpha: np.ndarray
    sigma: np.ndarray  # strong convexity modulus of F_n: min_b lambda_min(I_n^b)
    metric_max: np.ndarray  # max_b lambda_max(I_n^b)
    lipschitz: np.ndarray  # L_n used at step n (global or certified by backtracking)
    descent_gap: np.ndarray  # L(W_{n+1}) - [L(W_n) + <G, D> + L_n/2 |D|^2]  (<= 0 certifies the descent lemma)
    bregman: np.ndarray  # D_{F_n}(W_{n+1}, W_n)
    step_norm: np.ndarray  # |W_{n+1} - W_n|_F
    metric_singular_values: list[list[np.ndarray]]  # per step, per block: non-zero sigma(I_n^{1/2} W_{n+1})
    ties: np.ndarray
    limit_metrics: tuple[MetricAt | None, ...]
    lower_bound: float
    converged: bool
    tol: float

    @property
    def n_steps(self) -> int:
        return len(self.alpha)

    @property
    def alpha_min(self) -> float:
        """The largest admissible ``alpha_min`` of the proposition: ``min_n alpha_n``."""
        return float(self.alpha.min()) if self.alpha.size else float("nan")

    @property
    def path_length(self) -> np.ndarray:
        """Partial sums ``sum_{k<n} |W_{k+1} - W_k|`` (claim 2), ``n = 0..N``."""
        return np.concatenate([[0.0], np.cumsum(self.step_norm)])

    @property
    def final(self) -> Params:
        return self.iterates[-1]


def _norm_sq(blocks: Sequence[np.ndarray]) -> float:
    return float(sum(np.vdot(b, b) for b in blocks))


def _inner(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    return float(sum(np.vdot(x, y) for x, y in zip(a, b)))


def _numerical_rank(W: np.ndarray, s: np.ndarray) -> int:
    if s.size == 0 or s[0] == 0.0:
        return 0
    return int(np.sum(s > max(W.shape) * np.finfo(float).eps * s[0]))


class Problem(Protocol):
    block_shapes: tuple[tuple[int, int], ...]
    lower_bound: float

    def loss(self, params: Params) -> float: ...

    def grad(self, params: Params) -> Params: ...


def proximal_gradient(
    problem: Problem,
    params0: Sequence[np.ndarray],
    lam: float,
    steps: StepRule | Callable[[int, float, float], float],
    smoothness: GlobalLipschitz | Backtracking,
    metrics: Sequence[Metric] | None = None,
    max_iter: int = 1000,
    tol: float = 1e-11,
    tie_break: TieBreak = "keep",
    min_iter: int = 0,
) -> ProxRun:
    """Run the mirror-proximal gradient method of the paper's Eq. (9) on ``L + lam * sum_b rank(W_b)``.

    Each block ``W_b`` has its own metric (``EuclideanMetric`` by default, or a
    :class:`ConvergingMetric` ``I_n -> I`` acting on its rows); the Bregman term is the sum over
    blocks, so ``sigma_n = min_b lambda_min(I_n^b)``. ``steps(n, sigma_n, L_n)`` returns ``alpha_n``.
    With :class:`Backtracking`, ``L_n`` is doubled until the descent-lemma inequality between
    ``W_n`` and ``W_{n+1}`` holds (see :mod:`theory.deep_linear`). The run stops when
    ``|W_{n+1} - W_n| <= tol * max(1, |W_{n+1}|)`` (not before ``min_iter`` steps, so that a
    converging metric has reached its limit) or after ``max_iter`` steps.
    """
    lam = float(lam)
    if not (np.isfinite(lam) and lam >= 0.0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}")
    if not (np.isfinite(tol) and tol >= 0.0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    _check_tie_break(tie_break)
    if isinstance(min_iter, bool) or not isinstance(min_iter, (int, np.integer)) or not 0 <= min_iter <= max_iter:
        raise ValueError(f"min_iter must be an int in [0, max_iter={max_iter}], got {min_iter!r}")
    if not isinstance(smoothness, (GlobalLipschitz, Backtracking)):
        raise ValueError(f"smoothness must be GlobalLipschitz or Backtracking, got {smoothness!r}")
    params = tuple(np.array(p, dtype=float) for p in params0)
    shapes = tuple(problem.block_shapes)
    if tuple(p.shape for p in params) != shapes:
        raise ValueError(f"params0 must have block shapes {shapes}, got {tuple(p.shape for p in params)}")
    if metrics is None:
        metrics = tuple(EuclideanMetric() for _ in params)
    metrics = tuple(metrics)
    if len(metrics) != len(params):
        raise ValueError(f"metrics must have one entry per block ({len(params)}), got {len(metrics)}")
    for b, (met, shape) in enumerate(zip(metrics, shapes)):
        lim = met.limit()
        if lim is not None and lim.matrix.shape != (shape[0], shape[0]):
            raise ValueError(f"metrics[{b}] must act on the {shape[0]} rows of block {b}, got {lim.matrix.shape}")

    def describe(ps: Params, grads: Params, ranks: Sequence[int] | None = None):
        """Singular values, ranks and the criticality residual of one iterate (one SVD per block)."""
        svs, out_ranks, resid_sq = [], [], 0.0
        for b, (W, G) in enumerate(zip(ps, grads)):
            U, s, Vt = np.linalg.svd(W, full_matrices=False)
            r = _numerical_rank(W, s) if ranks is None else int(ranks[b])
            svs.append(s)
            out_ranks.append(r)
            resid_sq += _tangent_norm(U, Vt, G, r) ** 2
        return svs, out_ranks, float(np.sqrt(resid_sq))

    lip = smoothness.value if isinstance(smoothness, GlobalLipschitz) else smoothness.initial
    loss = problem.loss(params)
    grads = problem.grad(params)
    svs, ranks, resid = describe(params, grads)
    iterates = [params]
    rec_obj, rec_loss, rec_rank = [loss + lam * sum(ranks)], [loss], [sum(ranks)]
    rec_sv, rec_resid = [svs], [resid]
    rec = {k: [] for k in ("alpha", "sigma", "mmax", "lip", "gap", "breg", "step", "ties")}
    rec_msv: list[list[np.ndarray]] = []
    converged = False
    for n in range(max_iter):
        mats = [met.at(n) for met in metrics]
        sigma_n = min(1.0 if m is None else m.lam_min for m in mats)
        mmax_n = max(1.0 if m is None else m.lam_max for m in mats)
        doublings = 0
        while True:
            alpha = float(steps(n, sigma_n, lip))
            if not (np.isfinite(alpha) and alpha > 0.0):
                raise ValueError(f"steps returned alpha_{n} = {alpha!r}; it must be a finite number > 0")
            outs = [prox_rank_fisher(W, G, alpha, lam, m, tie_break) for W, G, m in zip(params, grads, mats)]
            new = tuple(o.Z for o in outs)
            delta = tuple(a - b for a, b in zip(new, params))
            new_loss = problem.loss(new)
            d_sq = _norm_sq(delta)
            gap = new_loss - (loss + _inner(grads, delta) + 0.5 * lip * d_sq)
            # Rounding in the loss evaluation is the only slack granted to the certificate.
            slack = DESCENT_GAP_RTOL * max(1.0, abs(loss))
            if isinstance(smoothness, GlobalLipschitz) or gap <= slack:
                break
            doublings += 1
            if doublings > smoothness.max_doublings:
                raise ValueError(
                    f"backtracking did not certify the descent lemma after {smoothness.max_doublings} "
                    f"doublings (L_n = {lip!r}); the loss is not locally smooth here"
                )
            lip *= smoothness.factor
        breg = 0.0
        for D, m in zip(delta, mats):
            breg += 0.5 * (float(np.vdot(D, D)) if m is None else float(np.vdot(D, m.matrix @ D)))
        rec["alpha"].append(alpha)
        rec["sigma"].append(sigma_n)
        rec["mmax"].append(mmax_n)
        rec["lip"].append(lip)
        rec["gap"].append(gap)
        rec["breg"].append(breg)
        rec["step"].append(np.sqrt(d_sq))
        rec["ties"].append(sum(o.ties for o in outs))
        params, loss = new, new_loss
        grads = problem.grad(params)
        # The prox output has exactly as many non-zero singular values as were kept.
        svs, ranks, resid = describe(params, grads, [o.kept.size for o in outs])
        # Recomputed from W_{n+1} (not taken from inside the prox) so claim 4 is checked independently.
        rec_msv.append(
            [
                (s if m is None else np.linalg.svd(m.sqrt @ W, compute_uv=False))[:r]
                for W, s, m, r in zip(params, svs, mats, ranks)
            ]
        )
        iterates.append(params)
        rec_obj.append(loss + lam * sum(ranks))
        rec_loss.append(loss)
        rec_rank.append(sum(ranks))
        rec_sv.append(svs)
        rec_resid.append(resid)
        if n + 1 >= min_iter and np.sqrt(d_sq) <= tol * max(1.0, np.sqrt(_norm_sq(params))):
            converged = True
            break

    return ProxRun(
        lam=lam,
        iterates=iterates,
        objective=np.asarray(rec_obj),
        loss=np.asarray(rec_loss),
        rank=np.asarray(rec_rank, dtype=int),
        singular_values=rec_sv,
        critical_residual=np.asarray(rec_resid),
        alpha=np.asarray(rec["alpha"]),
        sigma=np.asarray(rec["sigma"]),
        metric_max=np.asarray(rec["mmax"]),
        lipschitz=np.asarray(rec["lip"]),
        descent_gap=np.asarray(rec["gap"]),
        bregman=np.asarray(rec["breg"]),
        step_norm=np.asarray(rec["step"]),
        metric_singular_values=rec_msv,
        ties=np.asarray(rec["ties"], dtype=int),
        limit_metrics=tuple(met.limit() for met in metrics),
        lower_bound=float(problem.lower_bound),
        converged=converged,
        tol=float(tol),
    )


@dataclass
class OIALRRun:
    """One record per outer step ``k`` of the OIALR scheme of Appendix B.1.1 of the paper."""

    lipschitz: float
    inner: str
    loss_before: np.ndarray  # L(U_k S^k V_k^T)
    loss_star: np.ndarray  # L(U_k S_*^{k+1} V_k^T)
    loss_after: np.ndarray  # L(U_k S^{k+1} V_k^T)
    grad_s_before: np.ndarray  # |grad_S L(U_k S^k V_k^T)|
    grad_s_star: np.ndarray  # |grad_S L(U_k S_*^{k+1} V_k^T)|
    inner_product: np.ndarray  # <grad_S L(U_k S_* V_k^T), S^{k+1} - S_*>
    dist_sq: np.ndarray  # |S_*^{k+1} - S^{k+1}|^2
    lam: np.ndarray  # lambda_k
    rank_star: np.ndarray
    rank_after: np.ndarray
    sigma_min_after: np.ndarray  # smallest non-zero singular value of S^{k+1} (nan if S^{k+1} = 0)
    ranks: list[int] = field(default_factory=list)


def oialr(
    problem,
    W0: np.ndarray,
    outer_steps: int,
    beta: float | None = None,
    lam: float | None = None,
    inner: Literal["exact", "gradient_step"] = "exact",
    tie_break: TieBreak = "keep",
) -> OIALRRun:
    """OIALR as formalised in Appendix B.1.1 of the paper, on a :class:`~theory.deep_linear.LeastSquares`.

    ``U_0 = Id, V_0 = Id, S^0 = W^0``; per outer step: ``S_*^{k+1}`` is a critical point of
    ``S -> L(U_k S V_k^T)`` (``inner="exact"``: the least-squares solution in ``S``) or one gradient
    step ``S^k - grad_S / L`` (``inner="gradient_step"``); ``S^{k+1} = prox_{lambda_k rank}(S_*^{k+1})``
    (threshold ``sqrt(2 lambda_k)``); the new bases come from the SVD of ``U_k S^{k+1} V_k^T``,
    keeping only the non-zero directions (the inner rank shrinks). ``lambda_k`` is ``lam`` or, with
    ``beta``, ``(beta sigma_max(S_*))^2 / 2`` -- OIALR's "drop sigma < beta sigma_max" rule.
    """
    from theory.deep_linear import LeastSquares

    if not isinstance(problem, LeastSquares):
        raise ValueError(f"problem must be a LeastSquares instance, got {type(problem).__name__}")
    if (beta is None) == (lam is None):
        raise ValueError(f"give exactly one of beta and lam, got beta={beta!r}, lam={lam!r}")
    if beta is not None and not (0.0 < beta < 1.0):
        raise ValueError(f"beta must be in (0, 1), got {beta!r}")
    if lam is not None and not (np.isfinite(lam) and lam > 0.0):
        raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
    if inner not in ("exact", "gradient_step"):
        raise ValueError(f"inner must be 'exact' or 'gradient_step', got {inner!r}")
    if isinstance(outer_steps, bool) or not isinstance(outer_steps, (int, np.integer)) or outer_steps < 1:
        raise ValueError(f"outer_steps must be an int >= 1, got {outer_steps!r}")
    W0 = np.asarray(W0, dtype=float)
    if W0.shape != problem.shape:
        raise ValueError(f"W0 must have shape {problem.shape}, got {W0.shape}")
    A, B, ridge = problem.A, problem.B, problem.ridge
    Lg = problem.lipschitz

    def loss_of(U, S, V):
        return problem.loss((U @ S @ V.T,))

    def grad_s(U, S, V):
        (G,) = problem.grad((U @ S @ V.T,))
        return U.T @ G @ V

    m, n = problem.shape
    U, V, S = np.eye(m), np.eye(n), W0.copy()
    keys = (
        "before", "star", "after", "g_before", "g_star", "inner", "dist", "lam", "r_star", "r_after", "smin",
    )
    rec = {k: [] for k in keys}
    ranks = [int(np.linalg.matrix_rank(W0))]
    for _ in range(outer_steps):
        rec["before"].append(loss_of(U, S, V))
        g_before = grad_s(U, S, V)
        rec["g_before"].append(float(np.linalg.norm(g_before)))
        if inner == "exact":
            # Normal equations of S -> 1/2|A U S V^T - B|^2 + ridge/2 |S|^2 (V has orthonormal columns).
            AU = A @ U
            H = AU.T @ AU + ridge * np.eye(U.shape[1])
            S_star = np.linalg.lstsq(H, AU.T @ B @ V, rcond=None)[0]
        else:
            S_star = S - g_before / Lg
        rec["star"].append(loss_of(U, S_star, V))
        g_star = grad_s(U, S_star, V)
        rec["g_star"].append(float(np.linalg.norm(g_star)))
        s_star = np.linalg.svd(S_star, compute_uv=False)
        lam_k = float(lam) if lam is not None else 0.5 * (beta * s_star[0]) ** 2
        res = hard_threshold(S_star, lam_k, tie_break, reference=S)
        S_new = res.Z
        rec["after"].append(loss_of(U, S_new, V))
        rec["inner"].append(float(np.vdot(g_star, S_new - S_star)))
        rec["dist"].append(float(np.linalg.norm(S_star - S_new) ** 2))
        rec["lam"].append(lam_k)
        rec["r_star"].append(_numerical_rank(S_star, s_star))
        rec["r_after"].append(int(res.kept.size))
        rec["smin"].append(smallest_nonzero(res.kept))
        # New chart: bases of U_k S^{k+1} V_k^T restricted to its non-zero directions.
        Us, ss, Vts = np.linalg.svd(S_new, full_matrices=False)
        r = int(res.kept.size)
        if r == 0:
            # W^{k+1} = 0 has no bases; a 1-dimensional chart with S = 0 represents it and lets the
            # next inner step regrow a direction, as training would.
            ranks.append(0)
            U, V, S = U[:, :1], V[:, :1], np.zeros((1, 1))
            continue
        U, V, S = U @ Us[:, :r], V @ Vts[:r].T, np.diag(ss[:r])
        ranks.append(r)
    return OIALRRun(
        lipschitz=Lg,
        inner=inner,
        loss_before=np.asarray(rec["before"]),
        loss_star=np.asarray(rec["star"]),
        loss_after=np.asarray(rec["after"]),
        grad_s_before=np.asarray(rec["g_before"]),
        grad_s_star=np.asarray(rec["g_star"]),
        inner_product=np.asarray(rec["inner"]),
        dist_sq=np.asarray(rec["dist"]),
        lam=np.asarray(rec["lam"]),
        rank_star=np.asarray(rec["r_star"], dtype=int),
        rank_after=np.asarray(rec["r_after"], dtype=int),
        sigma_min_after=np.asarray(rec["smin"]),
        ranks=ranks,
    )
