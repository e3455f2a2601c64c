"""Low-rank projections of a weight matrix: the projection step of the paper's Section 3.

Every projection here solves ``min_{rank(Ŵ) ≤ k} ‖W − Ŵ‖²`` in some metric and returns the answer as
:class:`LowRankFactors` ``Ŵ = U · diag(S) · Vh``:

* :func:`truncated_svd` — the Euclidean projection, Eq. (4) (Eckart–Young), exact or randomized.
* :func:`row_weighted_projection` — FWSVD (Hsu et al. 2022): a diagonal metric that is constant along
  each row (or each column), Eq. (5) with the diagonal Fisher summed along one axis. Closed form.
* :func:`element_weighted_projection` — TFWSVD: the full diagonal Fisher, Eq. (5) with ``I ≈ diag I``.
  No closed form and non-convex (Srebro & Jaakkola 2003); multi-start alternating least squares run to a
  stopping rule on the relative change (EM kept as a reference).
* :func:`activation_aware_projection` — Eq. (7): ``min ‖(W − Ŵ) X‖`` through the input second moment.

Rank selection rules (:func:`select_rank`): ``fixed``; ``energy`` (IEHT/TRP: smallest k with
Σ_{i≤k} σᵢ² ≥ β Σ σᵢ²); ``relative`` (OIALR: keep σᵢ ≥ β σ_max) — always clamped below by a minimum rank.

Layout: PyTorch ``nn.Linear`` weights are ``(out, in)``; here ``m = out`` rows and ``n = in`` columns.
All functions are device-agnostic and keep the input dtype unless told otherwise; validation errors are
raised before any computation and name the layer (``name=``), the parameter and the allowed range.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "AUTO_RIDGES",
    "auto_ridge",
    "LowRankFactors",
    "RANK_RULES",
    "PROJECTIONS",
    "robust_svd",
    "truncated_svd",
    "select_rank",
    "min_rank_from_percent",
    "row_weighted_projection",
    "element_weighted_projection",
    "activation_aware_projection",
    "weighted_error",
    "orthonormalize",
    "project",
    "validate_weight",
    "validate_rank",
    "validate_beta",
]

RANK_RULES = ("fixed", "energy", "relative")
PROJECTIONS = ("svd", "fwsvd", "tfwsvd", "asvd")


@dataclass
class LowRankFactors:
    """``Ŵ = U @ diag(S) @ Vh`` with ``U: (m, k)``, ``S: (k,)``, ``Vh: (k, n)``.

    ``U`` and ``Vh`` are orthonormal for the Euclidean projection; for weighted projections they are
    whatever the closed form gives (call :func:`orthonormalize` to get an SVD of ``Ŵ``).
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    def matrix(self) -> torch.Tensor:
        return (self.U * self.S) @ self.Vh

    def to(self, *args, **kwargs) -> "LowRankFactors":
        return LowRankFactors(self.U.to(*args, **kwargs), self.S.to(*args, **kwargs), self.Vh.to(*args, **kwargs))


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def validate_weight(W: torch.Tensor, name: str = "weight") -> None:
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"{name}: weight must be a torch.Tensor, got {type(W).__name__}")
    if W.ndim != 2:
        raise ValueError(f"{name}: weight must be a 2-D (out, in) matrix, got shape {tuple(W.shape)}")
    if W.numel() == 0:
        raise ValueError(f"{name}: weight is empty, shape {tuple(W.shape)}")
    if not W.is_floating_point():
        raise ValueError(f"{name}: weight must be floating point, got dtype {W.dtype}")
    if not torch.isfinite(W).all():
        bad = int((~torch.isfinite(W)).sum())
        raise ValueError(f"{name}: weight has {bad} non-finite entries (NaN/Inf); all entries must be finite")


def validate_rank(rank: int, shape: tuple[int, int], name: str = "weight", param: str = "rank") -> int:
    m, n = shape
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise ValueError(f"{name}: {param} must be an int in [1, min(m, n)] = [1, {min(m, n)}], got {rank!r}")
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"{name}: {param}={rank} is outside the allowed range [1, min(m, n)] = [1, {min(m, n)}] "
                         f"for a {m}×{n} weight")
    return rank


def validate_beta(beta: float, name: str = "weight", param: str = "beta") -> float:
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {param} must be a number in (0, 1], got {beta!r}") from None
    if not (0.0 < b <= 1.0) or math.isnan(b):
        raise ValueError(f"{name}: {param}={beta!r} is outside the allowed range (0, 1]")
    return b


def _validate_weights_tensor(w: torch.Tensor, shape: tuple[int, ...], name: str, param: str) -> None:
    if not isinstance(w, torch.Tensor):
        raise ValueError(f"{name}: {param} must be a torch.Tensor, got {type(w).__name__}")
    if tuple(w.shape) != tuple(shape):
        raise ValueError(f"{name}: {param} has shape {tuple(w.shape)}, expected {tuple(shape)}")
    if not torch.isfinite(w).all():
        raise ValueError(f"{name}: {param} has non-finite entries; all entries must be finite and ≥ 0")
    if (w < 0).any():
        raise ValueError(f"{name}: {param} has {int((w < 0).sum())} negative entries (min {float(w.min()):.3g}); "
                         f"Fisher weights must be ≥ 0")


# --------------------------------------------------------------------------------------------------
# SVD and rank rules
# --------------------------------------------------------------------------------------------------
def robust_svd(W: torch.Tensor, name: str = "weight") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``W = U diag(S) Vh``; on a convergence failure retry once in float64, else raise.

    Never falls back to anything that is not an SVD of ``W`` (no silent re-initialisation).
    """
    try:
        return torch.linalg.svd(W, full_matrices=False)
    except torch.linalg.LinAlgError as first:
        if W.dtype == torch.float64:
            raise RuntimeError(f"{name}: SVD of the {tuple(W.shape)} weight failed to converge in float64") from first
        try:
            U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
        except torch.linalg.LinAlgError as second:
            raise RuntimeError(f"{name}: SVD of the {tuple(W.shape)} weight failed to converge, "
                               f"also after retrying in float64") from second
        return U.to(W.dtype), S.to(W.dtype), Vh.to(W.dtype)


def truncated_svd(W: torch.Tensor, rank: int, *, randomized: bool = False, oversample: int = 10,
                  niter: int = 4, name: str = "weight") -> LowRankFactors:
    """Best rank-``rank`` approximation in Frobenius (and spectral) norm — Eckart–Young, Eq. (4).

    ``randomized=True`` uses ``torch.svd_lowrank`` (Halko, Martinsson & Tropp 2011) with ``rank +
    oversample`` probe vectors and ``niter`` power iterations. Its error is within a factor
    ``(1 + ε)`` of the optimum, where ε shrinks quickly with ``niter`` when the spectrum decays; on flat
    spectra it is noticeably worse (measured in ``tests/test_linalg.py``: with the defaults the excess
    Frobenius error is below 5% on matrices whose spectrum decays, and we assert that). Use it for large
    dense matrices (TRP on wide layers), not for the small ``S`` matrices of the factorised loops.
    """
    validate_weight(W, name)
    validate_rank(rank, tuple(W.shape), name)
    if randomized:
        q = min(rank + oversample, min(W.shape))
        U, S, V = torch.svd_lowrank(W, q=q, niter=niter)
        return LowRankFactors(U[:, :rank], S[:rank], V[:, :rank].mT)
    U, S, Vh = robust_svd(W, name)
    return LowRankFactors(U[:, :rank], S[:rank], Vh[:rank])


def min_rank_from_percent(shape: tuple[int, int], percent: float, name: str = "weight") -> int:
    """``oialr_min_rank_percent`` → an integer floor: ``max(1, ceil(percent · min(m, n)))``."""
    p = validate_beta(percent, name, "min_rank_percent")
    return max(1, math.ceil(p * min(shape)))


def select_rank(S: torch.Tensor, rule: str, *, beta: float | None = None, rank: int | None = None,
                min_rank: int = 1, name: str = "weight") -> int:
    """Number of singular values to keep, given a descending spectrum ``S``.

    * ``fixed``: ``rank``.
    * ``energy``: the smallest k with Σ_{i≤k} σᵢ² ≥ β · Σ σᵢ² (IEHT, TRP; the paper's Algorithms 1, 3).
    * ``relative``: the number of σᵢ ≥ β · σ_max (OIALR, the paper's Algorithm 1).

    The result is clamped to ``[min_rank, len(S)]``; it is never 0.
    """
    if rule not in RANK_RULES:
        raise ValueError(f"{name}: rule={rule!r} is not a rank rule; allowed: {', '.join(RANK_RULES)}")
    if S.ndim != 1 or S.numel() == 0:
        raise ValueError(f"{name}: singular values must be a non-empty 1-D tensor, got shape {tuple(S.shape)}")
    full = S.numel()
    if isinstance(min_rank, bool) or not isinstance(min_rank, int) or not 1 <= min_rank <= full:
        raise ValueError(f"{name}: min_rank={min_rank!r} is outside the allowed range [1, {full}]")
    if rule == "fixed":
        if rank is None:
            raise ValueError(f"{name}: rule='fixed' needs rank in [1, {full}], got None")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= full:
            raise ValueError(f"{name}: rank={rank!r} is outside the allowed range [1, {full}]")
        k = rank
    else:
        if beta is None:
            raise ValueError(f"{name}: rule={rule!r} needs beta in (0, 1], got None")
        b = validate_beta(beta, name)
        s = S.detach().double()
        if rule == "energy":
            energy = torch.cumsum(s * s, 0)
            total = energy[-1]
            if total <= 0:
                k = 0
            else:
                # smallest k with cumulative energy ≥ β·total; a relative slack of 1e-12 keeps β = 1
                # from demanding more than the full energy because of rounding in the cumsum.
                k = int(torch.searchsorted(energy, b * total * (1 - 1e-12), right=False)) + 1
        else:
            smax = s.max()
            k = int((s >= b * smax).sum()) if smax > 0 else 0
    return int(min(max(k, min_rank), full))


# --------------------------------------------------------------------------------------------------
# weighted projections
# --------------------------------------------------------------------------------------------------
def orthonormalize(f: LowRankFactors) -> LowRankFactors:
    """Rewrite ``U diag(S) Vh`` as an SVD (orthonormal ``U``, ``Vh``, descending ``S ≥ 0``) of the same matrix.

    QR of both sides then an SVD of the k×k core: O((m+n)k²), never forms the m×n product.
    """
    Qu, Ru = torch.linalg.qr(f.U)
    Qv, Rv = torch.linalg.qr(f.Vh.mT)
    core = (Ru * f.S) @ Rv.mT
    Uc, Sc, Vch = robust_svd(core)
    return LowRankFactors(Qu @ Uc, Sc, Vch @ Qv.mT)


def row_weighted_projection(W: torch.Tensor, weights: torch.Tensor, rank: int, *,
                            axis: Literal["rows", "columns"] = "rows",
                            eps: float = 1e-8, name: str = "weight") -> LowRankFactors:
    """FWSVD (Hsu et al. 2022): ``min_{rank Ŵ ≤ k} Σ_i wᵢ ‖(W − Ŵ)_{i,:}‖²`` (``axis='rows'``).

    With ``D = diag(√(w + ε))`` the objective is ``‖D(W − Ŵ)‖_F²``, and ``Ŵ ↦ DŴ`` is a bijection of the
    rank-≤k matrices, so the optimum is exactly ``Ŵ = D⁻¹ [D W]_k`` (Eckart–Young in the scaled space):
    scale, truncate, unscale. ``axis='columns'`` weights the columns instead: ``Ŵ = [W D]_k D⁻¹``.

    Which axis: for an ``nn.Linear`` weight ``(out, in)``, a row is one output neuron. The default
    weights rows by the Fisher summed over the input axis (``fisher.row_weights``), i.e. each output
    neuron's importance — the paper's "summing the diagonal elements column-wise, making the
    approximation identical for each row". ε (relative to the mean weight) keeps rows with zero Fisher
    from making ``D`` singular; it is added before the square root and undone exactly by ``D⁻¹``.
    """
    validate_weight(W, name)
    validate_rank(rank, tuple(W.shape), name)
    if axis not in ("rows", "columns"):
        raise ValueError(f"{name}: axis={axis!r}; allowed: 'rows', 'columns'")
    size = W.shape[0] if axis == "rows" else W.shape[1]
    _validate_weights_tensor(weights, (size,), name, f"{axis[:-1]} weights")
    w = weights.to(device=W.device, dtype=W.dtype)
    scale = w.mean().clamp_min(torch.finfo(W.dtype).tiny)
    d = torch.sqrt(w + eps * scale)
    if axis == "rows":
        f = truncated_svd(d[:, None] * W, rank, name=name)
        return LowRankFactors(f.U / d[:, None], f.S, f.Vh)
    f = truncated_svd(W * d[None, :], rank, name=name)
    return LowRankFactors(f.U, f.S, f.Vh / d[None, :])


def weighted_error(W: torch.Tensor, W_hat: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ_ij F_ij (W − Ŵ)_ij²`` (``weights=None`` → squared Frobenius); broadcasts row/column weights."""
    d = (W - W_hat) ** 2
    return d.sum() if weights is None else (weights.to(d) * d).sum()


#: memory bound of one block of pairwise products in :func:`_weighted_grams` (elements)
GRAM_BLOCK_ELEMENTS = 1 << 24


def _weighted_grams(w: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``G[i] = B diag(w[i]) Bᵀ`` for every row ``i`` of ``w`` (m×n, B k×n), as GEMMs of ``w`` against the
    pairwise products ``B_a ⊙ B_b``: O(m n k²) flops like a batched einsum, but at GEMM speed. Only pairs
    with b ≥ a (blocks of rows of ``B``, ≲ GRAM_BLOCK_ELEMENTS product elements each) are formed; G is symmetric."""
    k, n = B.shape
    step = max(1, GRAM_BLOCK_ELEMENTS // max(1, k * n))
    out = torch.empty(w.shape[0], k, k, dtype=w.dtype, device=w.device)
    for a in range(0, k, step):
        P = (B[a:a + step, None, :] * B[None, a:, :]).reshape(-1, n)      # rows (a..a+step) × (a..k)
        out[:, a:a + step, a:] = (w @ P.mT).reshape(w.shape[0], -1, k - a)
    return out.triu() + out.triu(1).mT


def _als_sweeps(W: torch.Tensor, w: torch.Tensor, A: torch.Tensor, B: torch.Tensor, sweeps: int, tol: float,
                ridge: torch.Tensor,
                history: list | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Alternating exact weighted least squares on ``Ŵ = A B`` (each half-step is an exact block minimiser,
    hence monotone). Stops after ``sweeps`` sweeps, or earlier once a sweep lowers the objective by no
    more than ``tol`` relative. Returns ``A, B``, the objective and whether the stopping rule was met."""
    eye = torch.eye(A.shape[1], dtype=W.dtype, device=W.device)
    wW = w * W
    obj = weighted_error(W, A @ B, w)
    for _ in range(sweeps):
        # rows of A: (B diag(w_i) Bᵀ) a_i = B diag(w_i) W_iᵀ; columns of B: the same with the roles swapped
        A = torch.linalg.solve(_weighted_grams(w, B) + ridge * eye, (wW @ B.mT)[..., None])[..., 0]
        B = torch.linalg.solve(_weighted_grams(w.mT, A.mT) + ridge * eye, (wW.mT @ A)[..., None])[..., 0].mT
        new = weighted_error(W, A @ B, w)
        if history is not None:
            history.append(new)
        converged = bool(obj - new <= tol * obj.clamp_min(torch.finfo(W.dtype).tiny))
        obj = new
        if converged:
            return A, B, obj, True
    return A, B, obj, False


def element_weighted_projection(W: torch.Tensor, weights: torch.Tensor, rank: int, *,
                                solver: Literal["als", "em"] = "als",
                                max_iter: int = 10_000, tol: float = 1e-9, random_starts: int = 64,
                                screen_iter: int = 5, keep: int = 4, seed: int = 0,
                                init: LowRankFactors | None = None, history: list | None = None,
                                name: str = "weight") -> LowRankFactors:
    """TFWSVD: ``min_{rank Ŵ ≤ k} Σ_ij F_ij (W_ij − Ŵ_ij)²`` with the full diagonal Fisher ``F``.

    The paper's Eq. (5) with ``I ≈ diag I``. No closed form exists for general weights, and the problem is
    non-convex with spurious local minima (Srebro & Jaakkola 2003), so a single descent from the FWSVD
    start can stop far from the optimum (on random 5–8 × 4–8 problems with weights over three orders of
    magnitude: 4–55 % above the best known objective in a third of the cases). Two solvers:

    * ``als`` (default) — multi-start alternating exact weighted least squares on ``Ŵ = A B``. Each
      half-step solves one k×k system per row (column), an exact block minimiser, so every run is
      monotone. Starts: ``init`` (if given), FWSVD with the row sums of ``F``, FWSVD with the column sums,
      the SVD, and ``random_starts`` Gaussian ``B`` (generator seeded by ``seed``). When there are more
      than ``keep`` starts, each runs ``screen_iter`` sweeps and the ``keep`` best continue; every
      survivor runs until a sweep lowers its objective by at most ``tol`` relative (the stopping rule),
      and the best is returned. O(m n k²) per sweep.
    * ``em`` — Srebro & Jaakkola's EM from ``init`` (default: FWSVD), kept as a reference: with
      ``w = F / max F`` iterate ``X ← [w ⊙ W + (1 − w) ⊙ X]_k``; each step minimises a majoriser that
      touches the objective at the current iterate (the gap is ``Σ w(1−w)(X − X_t)² ≥ 0``), so it is
      monotone, but with weights spread over orders of magnitude it crawls.

    ``max_iter`` is a safety bound on the sweeps of one run (screening included), not a budget: a run that
    reaches it without meeting the stopping rule raises a ``RuntimeWarning`` that names the layer.
    ``history``, if a list, receives the returned run's objective after its start and after every sweep.
    With uniform weights the SVD start is already optimal (Eckart–Young) and ALS keeps it.
    """
    validate_weight(W, name)
    validate_rank(rank, tuple(W.shape), name)
    _validate_weights_tensor(weights, tuple(W.shape), name, "element weights (diagonal Fisher)")
    if solver not in ("als", "em"):
        raise ValueError(f"{name}: solver={solver!r}; allowed: 'als', 'em'")
    for key, value, low in (("max_iter", max_iter, 1), ("random_starts", random_starts, 0),
                            ("screen_iter", screen_iter, 1), ("keep", keep, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: {key}={value!r} must be an int ≥ {low}")
    if not tol >= 0:
        raise ValueError(f"{name}: tol={tol!r} must be ≥ 0")
    F = weights.to(device=W.device, dtype=W.dtype)
    fmax = F.max()
    if fmax <= 0:
        # All-zero Fisher: every Ŵ has objective 0; fall back to the Euclidean solution, which is the
        # limit of uniform weights.
        return truncated_svd(W, rank, name=name)
    w = F / fmax                                   # objective scaled to O(‖W‖²); reported unscaled
    tiny = torch.finfo(W.dtype).tiny
    if solver == "em":
        f = init if init is not None else row_weighted_projection(W, F.sum(1), rank, name=name)
        X = f.matrix()
        obj = weighted_error(W, X, w)
        trace = [obj]
        converged = False
        for _ in range(max_iter):
            f = truncated_svd(w * W + (1 - w) * X, rank, name=name)
            X = f.matrix()
            new = weighted_error(W, X, w)
            trace.append(new)
            converged = bool(obj - new <= tol * obj.clamp_min(tiny))
            obj = new
            if converged:
                break
        _warn_unconverged(name, "em", converged, max_iter, trace, tol)
        if history is not None:
            history.extend(float(v * fmax) for v in trace)
        return f

    starts = [] if init is None else [init]
    starts += [row_weighted_projection(W, F.sum(1), rank, name=name),
               row_weighted_projection(W, F.sum(0), rank, axis="columns", name=name),
               truncated_svd(W, rank, name=name)]
    runs = [(f.U * f.S, f.Vh) for f in starts]
    g = torch.Generator().manual_seed(seed)        # CPU generator: the same starts on every device
    for _ in range(random_starts):
        B = torch.randn(rank, W.shape[1], generator=g, dtype=torch.float64).to(W)
        A = torch.zeros(W.shape[0], rank, dtype=W.dtype, device=W.device)   # ALS solves A first
        runs.append((A, B))
    ridge = 1e-10 * (W.norm() ** 2 / W.numel() + 1.0)   # guards rows / columns whose weights are all zero
    state = []                                     # (A, B, objective, converged, trace, sweeps)
    for A, B in runs:
        trace = [weighted_error(W, A @ B, w)]
        budget = min(screen_iter, max_iter) if len(runs) > keep else max_iter
        A, B, obj, done = _als_sweeps(W, w, A, B, budget, tol, ridge, trace)
        state.append((A, B, obj, done, trace, len(trace) - 1))
    state.sort(key=lambda s: float(s[2]))          # stable: ties keep the deterministic starts first
    final = []
    for A, B, obj, done, trace, used in state[:keep]:
        if not done and used < max_iter:
            A, B, obj, done = _als_sweeps(W, w, A, B, max_iter - used, tol, ridge, trace)
        final.append((A, B, obj, done, trace))
    A, B, obj, done, trace = min(final, key=lambda s: float(s[2]))
    _warn_unconverged(name, "als", done, max_iter, trace, tol)
    if history is not None:
        history.extend(float(v * fmax) for v in trace)
    return orthonormalize(LowRankFactors(A, torch.ones(rank, dtype=W.dtype, device=W.device), B))


def _warn_unconverged(name: str, solver: str, converged: bool, max_iter: int, trace: list, tol: float) -> None:
    if not converged:
        last = float((trace[-2] - trace[-1]) / trace[-2].clamp_min(torch.finfo(trace[-1].dtype).tiny)) \
            if len(trace) > 1 else float("nan")
        warnings.warn(f"{name}: TFWSVD ({solver}) stopped at max_iter={max_iter} with a last relative decrease "
                      f"of {last:.3g} > tol={tol:g}; the result is not converged", RuntimeWarning, stacklevel=3)


#: the ridges ``ridge="auto"`` tries, smallest first (:func:`auto_ridge`)
AUTO_RIDGES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def _ridged(second_moment: torch.Tensor, ridge: float) -> torch.Tensor:
    C = second_moment.to(dtype=torch.float64)
    C = 0.5 * (C + C.mT)
    n = C.shape[0]
    scale = (torch.trace(C) / n).clamp_min(torch.finfo(torch.float64).tiny)
    return C + ridge * scale * torch.eye(n, dtype=C.dtype, device=C.device)


def auto_ridge(second_moment: torch.Tensor, name: str = "weight") -> float:
    """The smallest ridge of :data:`AUTO_RIDGES` (relative to ``tr(C)/n``) that leaves ``C`` positive definite.

    A second moment accumulated in float32 (:func:`lowrank.activations.input_second_moments`) carries
    rounding of order ``eps₃₂ · λ_max``, which a fixed ``1e-6 · tr(C)/n`` does not cover when the
    spectrum is steep (ConvNeXt's MLP inputs); a well-conditioned ``C`` keeps the smallest ridge.
    """
    for ridge in AUTO_RIDGES:
        C = _ridged(second_moment, ridge)
        if int(torch.linalg.cholesky_ex(C).info) == 0 or bool((torch.linalg.eigvalsh(C) > 0).all()):
            return ridge
    raise ValueError(f"{name}: second_moment is not positive definite for any ridge up to {AUTO_RIDGES[-1]} "
                     f"(× tr(C)/n); pass a larger one: projection_kwargs={{'ridge': …}} in lowrank.compress, "
                     f"ridge= in activation_aware_projection")


def activation_aware_projection(W: torch.Tensor, second_moment: torch.Tensor, rank: int, *,
                                ridge: float | str = 1e-6, name: str = "weight") -> LowRankFactors:
    """Eq. (7): ``min_{rank Ŵ ≤ k} ‖(W − Ŵ) X‖_F²`` given ``C = X Xᵀ`` (the ``in × in`` input second moment).

    ``‖(W − Ŵ)X‖² = tr((W − Ŵ) C (W − Ŵ)ᵀ) = ‖(W − Ŵ) L‖²`` for any ``C = L Lᵀ``; ``Ŵ ↦ ŴL`` is a
    bijection on rank-≤k matrices when ``L`` is invertible, so ``Ŵ = [W L]_k L⁻¹`` exactly.
    A ridge ``δ · tr(C)/n · I`` makes ``C`` positive definite when inputs span a subspace (common: few
    tokens, dead features); the result is then exact for the ridged objective. ``L`` is the Cholesky
    factor, or ``Q Λ^{1/2}`` from an eigendecomposition if Cholesky fails in floating point.
    ``ridge="auto"``: the smallest of :data:`AUTO_RIDGES` that makes ``C`` positive definite
    (:func:`auto_ridge`; the default of :func:`lowrank.compress`).
    """
    validate_weight(W, name)
    validate_rank(rank, tuple(W.shape), name)
    n = W.shape[1]
    if not isinstance(second_moment, torch.Tensor) or tuple(second_moment.shape) != (n, n):
        got = tuple(second_moment.shape) if isinstance(second_moment, torch.Tensor) else type(second_moment).__name__
        raise ValueError(f"{name}: second_moment must be an (in, in) = ({n}, {n}) matrix, got {got}")
    if not torch.isfinite(second_moment).all():
        raise ValueError(f"{name}: second_moment has non-finite entries")
    if ridge == "auto":
        ridge = auto_ridge(second_moment, name)
    if isinstance(ridge, (str, bool)) or not ridge >= 0:
        raise ValueError(f"{name}: ridge={ridge!r} must be ≥ 0 or 'auto'")
    C = second_moment.to(device=W.device, dtype=torch.float64)
    C = 0.5 * (C + C.mT)
    scale = (torch.trace(C) / n).clamp_min(torch.finfo(torch.float64).tiny)
    C = C + ridge * scale * torch.eye(n, dtype=C.dtype, device=C.device)
    L, info = torch.linalg.cholesky_ex(C)
    if int(info) != 0:
        evals, Q = torch.linalg.eigh(C)
        if (evals <= 0).any():
            raise ValueError(f"{name}: second_moment is not positive semi-definite enough for ridge={ridge}: "
                             f"smallest eigenvalue after the ridge is {float(evals.min()):.3g}; increase it: "
                             f"projection_kwargs={{'ridge': …}} in lowrank.compress (or 'auto'), ridge= here")
        L = Q * evals.sqrt()
    Wd = W.to(torch.float64)
    f = truncated_svd(Wd @ L, rank, name=name)
    # Vh L⁻¹ by a solve (X L = Vh) rather than an explicit inverse.
    if int(info) == 0:
        Vh = torch.linalg.solve_triangular(L, f.Vh, upper=False, left=False)
    else:
        Vh = torch.linalg.solve(L, f.Vh, left=False)
    return LowRankFactors(f.U.to(W.dtype), f.S.to(W.dtype), Vh.to(W.dtype))


def project(W: torch.Tensor, method: str, rank: int, *, fisher: torch.Tensor | None = None,
            second_moment: torch.Tensor | None = None, name: str = "weight", **kwargs) -> LowRankFactors:
    """Dispatch by name: ``svd`` | ``fwsvd`` (needs ``fisher`` of shape (out, in), reduced to row weights —
    or, with ``axis='columns'``, column weights — or those weights themselves) |
    ``tfwsvd`` (needs ``fisher`` (out, in)) | ``asvd`` (needs ``second_moment`` (in, in))."""
    if method not in PROJECTIONS:
        raise ValueError(f"{name}: method={method!r} is not a projection; allowed: {', '.join(PROJECTIONS)}")
    if method == "svd":
        return truncated_svd(W, rank, name=name, **kwargs)
    if method in ("fwsvd", "tfwsvd") and fisher is None:
        raise ValueError(f"{name}: method={method!r} needs fisher=(out, in) diagonal Fisher, got None")
    if method == "fwsvd":
        if fisher.ndim == 2:
            _validate_weights_tensor(fisher, tuple(W.shape), name, "fisher")
            # the axis the weights are constant along is summed out: rows keep one weight per output
            fisher = fisher.sum(0) if kwargs.get("axis", "rows") == "columns" else fisher.sum(1)
        return row_weighted_projection(W, fisher, rank, name=name, **kwargs)
    if method == "tfwsvd":
        return element_weighted_projection(W, fisher, rank, name=name, **kwargs)
    if second_moment is None:
        raise ValueError(f"{name}: method='asvd' needs second_moment=(in, in) input second moment, got None")
    return activation_aware_projection(W, second_moment, rank, name=name, **kwargs)
