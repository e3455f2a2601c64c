"""Each item of the paper's Proposition 4.3 (and the OIALR bound of its Appendix B.1.1) as a predicate.

Every predicate takes a recorded run (:class:`theory.prox.ProxRun` or :class:`theory.prox.OIALRRun`)
and returns a :class:`ClaimCheck`: whether the inequality holds, the two sides, and the worst
index. A finite run can only give finite evidence for statements about limits; the predicates for
claims 2 and 3 therefore ask for a *converged* run and say what they certify.

Findings (each proved in the docstring of the predicate that tests the corrected form):

* Claim 4, "and thus" step, is false as printed: ``sigma_min(W*) >= sqrt(sigma_max(I) alpha_min lambda)``
  fails whenever ``sigma_max(I)`` is large enough (a ``1 x 1`` counterexample is
  :func:`printed_consequence_counterexample`; the minimal one hypothesis finds is pinned in the tests).
  The correct consequence -- which is what the proof in Appendix A.1 actually derives,
  ``sigma_min(I^{-1/2}) = sigma_max(I)^{-1/2}`` -- divides by
  ``sigma_max(I)``: ``sigma_min(W*) >= sqrt(2 alpha_min lambda / sigma_max(I))``
  (:func:`claim4_consequence_corrected`).
* Claim 4, first part, holds but is loose by ``sqrt(2)``: the prox threshold is ``sqrt(2 alpha lambda)``
  (:mod:`theory.prox`), and it bounds ``I_n^{1/2} W_{n+1}`` with the metric of the *step*, reaching
  ``I^{1/2} W*`` only in the limit.
* Claims 2 and 3 are false at the boundary ``alpha_n = sigma_n / L`` that the printed condition
  allows: the sufficient-decrease constant ``(sigma_n - L alpha_n) / (2 alpha_n)`` of the proof is
  then zero, and a tie in the (set-valued) prox lets the iterates alternate forever
  (:func:`boundary_step_counterexample`). With ``alpha_n <= (1 - delta) sigma_n / L``, ``delta > 0``,
  the proof goes through (:func:`claim2_finite_length`).
* OIALR bound: the last strict inequality ``lambda_k L dr < sigma_min^2(S^{k+1}) L dr`` is false when
  no singular value is cut (``dr = 0``: ``0 < 0``); with ``<=`` (strict iff ``dr > 0``) it holds, and
  the kept singular values satisfy the sharper ``2 lambda_k < sigma_min^2``.

Slips in the printed text that do not change a verdict: Appendix A.1 writes
``sigma_n >= alpha_min / L`` where the step condition gives ``sigma_n >= L alpha_n >= L alpha_min``;
Appendix B.1.1 writes the descent lemma with ``<grad, x - y>`` instead of ``<grad, y - x>`` (harmless
there because that gradient vanishes) and ``W^{k+1} = U_k S^{k+1} V_k`` without the transpose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from theory.deep_linear import GlobalLipschitz, LeastSquares
from theory.prox import (
    ConstantFraction,
    ConvergingMetric,
    FixedStep,
    OIALRRun,
    ProxRun,
    oialr,
    proximal_gradient,
)

__all__ = [
    "ClaimCheck",
    "step_size_condition",
    "claim1_nonincreasing",
    "sufficient_decrease",
    "claim2_finite_length",
    "claim3_critical_limit",
    "claim4_metric_bound",
    "claim4_metric_bound_per_step",
    "claim4_consequence_printed",
    "claim4_consequence_corrected",
    "oialr_gradient_step_descent",
    "oialr_jump_bound",
    "printed_consequence_counterexample",
    "boundary_step_counterexample",
    "large_step_counterexample",
    "wrong_modulus_counterexample",
    "oialr_strict_counterexample",
    "evaluate_run",
    "claim_table",
]

# Relative slack for comparing floating-point quantities that are equal in exact arithmetic.
RTOL = 1e-9


@dataclass(frozen=True)
class ClaimCheck:
    """Outcome of one predicate: ``holds`` iff ``lhs <= rhs`` (or the stated relation) everywhere."""

    name: str
    holds: bool
    lhs: float
    rhs: float
    index: int
    detail: str

    def __bool__(self) -> bool:  # pragma: no cover - guard against `assert check` mistakes
        raise TypeError("use ClaimCheck.holds explicitly")


def _scale(values: np.ndarray) -> float:
    return max(1.0, float(np.max(np.abs(values)))) if np.size(values) else 1.0


def _require_steps(run: ProxRun, name: str) -> None:
    if not isinstance(run, ProxRun):
        raise ValueError(f"{name} needs a ProxRun, got {type(run).__name__}")


def step_size_condition(run: ProxRun) -> ClaimCheck:
    """The proposition's assumption ``0 < alpha_min <= alpha_n <= sigma_n / L_n`` on this run.

    ``alpha_min`` is taken as ``min_n alpha_n`` (the largest value for which the assumption holds,
    so the strongest form of claim 4). Reports the worst ratio ``alpha_n L_n / sigma_n``.
    """
    _require_steps(run, "step_size_condition")
    if run.n_steps == 0:
        return ClaimCheck("step size condition", True, 0.0, 1.0, -1, "no steps")
    ratio = run.alpha * run.lipschitz / run.sigma
    i = int(np.argmax(ratio))
    holds = bool(run.alpha_min > 0.0 and ratio[i] <= 1.0 + 1e-12)
    return ClaimCheck("step size condition", holds, float(ratio[i]), 1.0, i, "max_n alpha_n L_n / sigma_n <= 1")


def claim1_nonincreasing(run: ProxRun) -> ClaimCheck:
    """Claim 1: ``(L + lambda rank)(W_n)`` is non-increasing and (being bounded below) convergent.

    Checks ``Phi(W_{n+1}) <= Phi(W_n)`` at every step up to rounding (``1e-12`` relative to
    ``max(1, |Phi|)``) and ``Phi >= inf L`` (the problem's lower bound), which with monotonicity
    gives convergence.
    """
    _require_steps(run, "claim1_nonincreasing")
    phi = run.objective
    if phi.size < 2:
        return ClaimCheck("claim 1: non-increasing", True, 0.0, 0.0, -1, "no steps")
    # Rounding slack relative to the value at each step (not the run's maximum, which a diverging run inflates).
    atol = 1e-12 * np.maximum(1.0, np.abs(phi[:-1]))
    inc = np.diff(phi) - atol
    i = int(np.argmax(inc))
    bounded = bool(phi.min() >= run.lower_bound - 1e-12 * max(1.0, abs(phi[0])))
    holds = bool(inc[i] <= 0.0 and bounded)
    detail = (f"max increase {phi[i + 1] - phi[i]:.3e} at step {i}; min Phi {phi.min():.6g} >= lower bound "
              f"{run.lower_bound:g}: {bounded}")
    return ClaimCheck("claim 1: non-increasing", holds, float(phi[i + 1]), float(phi[i]), i, detail)


def sufficient_decrease(run: ProxRun) -> ClaimCheck:
    """The key inequality of the proof (Appendix A.1):
    ``Phi(W_{n+1}) + (sigma_n - L_n alpha_n) / (2 alpha_n) ||W_{n+1} - W_n||^2 <= Phi(W_n)``.

    It follows from comparing the prox objective at ``W_{n+1}`` and ``W_n``, the descent lemma with
    ``L_n`` and ``D_{F_n} >= sigma_n/2 ||.||^2``; it is what makes claims 2 and 3 work once its
    constant is bounded away from zero.
    """
    _require_steps(run, "sufficient_decrease")
    if run.n_steps == 0:
        return ClaimCheck("sufficient decrease", True, 0.0, 0.0, -1, "no steps")
    coef = (run.sigma - run.lipschitz * run.alpha) / (2.0 * run.alpha)
    lhs = run.objective[1:] + coef * run.step_norm**2
    viol = lhs - run.objective[:-1] - 1e-12 * np.maximum(1.0, np.abs(run.objective[:-1]))
    i = int(np.argmax(viol))
    return ClaimCheck(
        "sufficient decrease", bool(viol[i] <= 0.0), float(lhs[i]), float(run.objective[i]), i,
        "Phi_{n+1} + c_n |D_n|^2 <= Phi_n",
    )


def claim2_finite_length(run: ProxRun, window: int | None = None, rtol: float = 1e-6) -> ClaimCheck:
    """Claim 2: ``sum_n ||W_{n+1} - W_n|| < infinity``, as finite evidence.

    Holds iff the run converged (its last step fell below the stopping tolerance) *and* the tail of
    the increments decays geometrically: with ``q`` the mean contraction of ``|W_{k+1} - W_k|`` over
    the last ``window`` increments above rounding level (``1e-13 max(1, |W_N|)``), ``q < 1`` and the
    geometric remainder ``d_last q / (1 - q)`` is at most ``rtol`` times the partial sum. A path that
    alternates or whose increments decay like ``1/n`` fails both tests; a finite run cannot rule out
    misbehaviour after it stopped.

    Corrected statement (for both claims 2 and 3). If ``alpha_n <= (1 - delta) sigma_n / L`` for a
    ``delta in (0, 1)`` (instead of ``<= sigma_n / L``), then
    ``Phi(W_{n+1}) + c ||W_{n+1} - W_n||^2 <= Phi(W_n)`` with
    ``c = (sigma_n - L alpha_n) / (2 alpha_n) >= delta sigma_n / (2 alpha_n) >= delta L / (2 (1 - delta)) > 0``
    (sufficient decrease), and from the optimality condition of Eq. (9),
    ``grad L(W_{n+1}) - grad L(W_n) - alpha_n^{-1} I_n (W_{n+1} - W_n) in d Phi(W_{n+1})``, so
    ``dist(0, d Phi(W_{n+1})) <= (L + L_F / alpha_min) ||W_{n+1} - W_n||`` (relative error). These two
    conditions, continuity of ``Phi`` along the iterates' values and the KL property of ``Phi`` are the
    hypotheses of the abstract convergence theorem for KL functions of Attouch--Bolte--Svaiter (the
    paper's [9]): the sequence has finite length and converges to a critical point. At ``delta = 0``
    the constant ``c`` can vanish and the conclusion fails (:func:`boundary_step_counterexample`).
    """
    _require_steps(run, "claim2_finite_length")
    d = run.step_norm
    total = float(d.sum())
    name = "claim 2: finite length"
    if not run.converged:
        return ClaimCheck(name, False, total, float("inf"), len(d),
                          f"not converged after {len(d)} steps; partial sum {total:.4g}")
    if d.size == 0 or d[-1] == 0.0:
        return ClaimCheck(name, True, total, total, len(d), "reached a fixed point exactly")
    norm_w = float(np.sqrt(sum(np.vdot(b, b) for b in run.final)))
    # Increments below this are rounding in the prox round trip I^{-1/2}(I^{1/2} W), not motion.
    floor = 1e-13 * max(1.0, norm_w)
    significant = d[d > floor]
    if significant.size < 2:
        return ClaimCheck(name, True, 0.0, rtol * total, len(d), f"converged; sum {total:.6g}, tail at rounding level")
    w = max(2, min(significant.size, window or max(5, significant.size // 10)))
    first, last = significant[-w], significant[-1]
    q = float((last / first) ** (1.0 / (w - 1)))
    remainder = last * q / (1.0 - q) if q < 1.0 else float("inf")
    holds = bool(q < 1.0 and remainder <= rtol * total)
    detail = f"partial sum {total:.6g}, tail rate q={q:.4f}, geometric remainder {remainder:.3e}"
    return ClaimCheck(name, holds, float(remainder), rtol * total, len(d), detail)


def claim3_critical_limit(run: ProxRun, crit_rtol: float = 1e-6) -> ClaimCheck:
    """Claim 3: ``W_n -> W* in crit(L + lambda rank)``, as finite evidence.

    Holds iff the run converged, the last two iterates have the same rank, and the
    criticality residual ``dist(0, d Phi(W_N))`` (tangent part of ``grad L`` at the rank of ``W_N``,
    see :func:`theory.prox.tangent_residual`) is at most ``crit_rtol * L_N * max(1, |W_N|)``
    (gradient units). See :func:`claim2_finite_length` for the corrected step-size condition.
    """
    _require_steps(run, "claim3_critical_limit")
    name = "claim 3: converges to a critical point"
    res = float(run.critical_residual[-1])
    if not run.converged:
        return ClaimCheck(name, False, res, 0.0, len(run.step_norm), "not converged")
    norm_w = float(np.sqrt(sum(np.vdot(b, b) for b in run.final)))
    lip = float(run.lipschitz[-1]) if run.lipschitz.size else 1.0
    bound = crit_rtol * lip * max(1.0, norm_w)
    stable = bool(run.rank.size < 2 or run.rank[-1] == run.rank[-2])
    holds = bool(stable and res <= bound)
    detail = (f"residual {res:.3e} <= {bound:.3e}; rank of the last two iterates equal: {stable} "
              f"(rank {int(run.rank[-1])})")
    return ClaimCheck(name, holds, res, bound, len(run.step_norm), detail)


def _limit_sqrt(run: ProxRun, b: int) -> np.ndarray | None:
    m = run.limit_metrics[b]
    return None if m is None else m.sqrt


def _limit_lam_max(run: ProxRun, b: int) -> float:
    m = run.limit_metrics[b]
    return 1.0 if m is None else m.lam_max


def claim4_metric_bound(run: ProxRun, factor: float = 1.0) -> ClaimCheck:
    """Claim 4, first part: ``sigma_min(I^{1/2} W*) >= sqrt(factor * alpha_min * lambda)`` at ``W* ~ W_N``.

    ``factor=1`` is the printed bound; ``factor=2`` is the sharp one (the threshold is
    ``sqrt(2 alpha lambda)``). Proof of the sharp form: each step gives non-zero singular values of
    ``I_n^{1/2} W_{n+1}`` in ``{0} cup [sqrt(2 alpha_n lambda), inf) subset {0} cup [sqrt(2 alpha_min lambda), inf)``
    (:mod:`theory.prox`); singular values are continuous, ``I_n^{1/2} W_{n+1} -> I^{1/2} W*``, and the
    set is closed, so each singular value of ``I^{1/2} W*`` lies in it too. ``sigma_min`` is the
    smallest *non-zero* singular value; a zero ``W*`` makes the claim vacuous (reported as holding).
    """
    _require_steps(run, "claim4_metric_bound")
    bound = float(np.sqrt(factor * run.alpha_min * run.lam))
    worst, worst_b = float("inf"), -1
    for b, W in enumerate(run.final):
        S = _limit_sqrt(run, b)
        s = np.linalg.svd(W if S is None else S @ W, compute_uv=False)
        r = _final_rank(run, b, W)
        if r and s[r - 1] < worst:
            worst, worst_b = float(s[r - 1]), b
    label = "printed" if factor == 1.0 else f"factor {factor:g}"
    name = f"claim 4a ({label}): sigma_min(I^1/2 W*) >= sqrt({factor:g} alpha_min lambda)"
    if worst_b < 0:
        return ClaimCheck(name, True, float("nan"), bound, -1, "W* = 0: vacuous")
    holds = bool(worst >= bound * (1.0 - RTOL))
    return ClaimCheck(name, holds, worst, bound, worst_b, f"block {worst_b}: {worst:.6g} vs {bound:.6g}")


def _final_rank(run: ProxRun, b: int, W: np.ndarray) -> int:
    if run.metric_singular_values:
        return int(run.metric_singular_values[-1][b].size)
    s = np.linalg.svd(W, compute_uv=False)
    return int(np.sum(s > max(W.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0)))


def claim4_metric_bound_per_step(run: ProxRun) -> ClaimCheck:
    """The mechanism of claim 4: for every step, non-zero ``sigma(I_n^{1/2} W_{n+1}) >= sqrt(2 alpha_n lambda)``.

    Note the metric is ``I_n`` (of the step), not the limit ``I``.
    """
    _require_steps(run, "claim4_metric_bound_per_step")
    worst_ratio, worst_n = float("inf"), -1
    lhs = rhs = float("nan")
    for n, (blocks, a) in enumerate(zip(run.metric_singular_values, run.alpha)):
        bound = np.sqrt(2.0 * a * run.lam)
        for s in blocks:
            if s.size and bound > 0 and s[-1] / bound < worst_ratio:
                worst_ratio, worst_n, lhs, rhs = float(s[-1] / bound), n, float(s[-1]), float(bound)
    name = "claim 4a per step: sigma_min(I_n^1/2 W_{n+1}) >= sqrt(2 alpha_n lambda)"
    if worst_n < 0:
        return ClaimCheck(name, True, lhs, rhs, -1, "all iterates zero: vacuous")
    return ClaimCheck(name, bool(worst_ratio >= 1.0 - RTOL), lhs, rhs, worst_n,
                      f"worst ratio {worst_ratio:.6g} at step {worst_n}")


def claim4_consequence_printed(run: ProxRun) -> ClaimCheck:
    """Claim 4, "and thus" as printed: ``sigma_min(W*) >= sqrt(sigma_max(I) alpha_min lambda)``. False in general."""
    return _consequence(run, printed=True, factor=1.0)


def claim4_consequence_corrected(run: ProxRun, factor: float = 2.0) -> ClaimCheck:
    """Corrected "and thus": ``sigma_min(W*) >= sqrt(factor * alpha_min * lambda / sigma_max(I))``, ``factor <= 2``.

    Proof. ``I`` is symmetric positive definite, so ``W* = I^{-1/2} (I^{1/2} W*)`` and both have the
    same rank ``r``. For a square invertible ``M`` and any ``X``, ``sigma_k(M X) >= sigma_min(M) sigma_k(X)``
    (Courant--Fischer: ``|M X v| >= sigma_min(M) |X v|``). With ``M = I^{-1/2}``,
    ``sigma_min(I^{-1/2}) = lambda_max(I)^{-1/2} = sigma_max(I)^{-1/2}``, hence for ``k = r``
    ``sigma_min(W*) >= sigma_max(I)^{-1/2} sigma_min(I^{1/2} W*) >= sqrt(2 alpha_min lambda / sigma_max(I))``
    by the sharp first part (:func:`claim4_metric_bound`). The bound is attained: ``m = n = 1``,
    ``I = c``, a tie at the threshold gives ``W* = sqrt(2 alpha lambda / c)``. The printed version
    multiplies by ``sigma_max(I)`` instead of dividing -- the last line of the paper's proof has the
    right factor ``sigma_min(I^{-1/2})``, so the printed statement is a slip.
    """
    return _consequence(run, printed=False, factor=factor)


def _consequence(run: ProxRun, printed: bool, factor: float) -> ClaimCheck:
    _require_steps(run, "claim4 consequence")
    worst, worst_b, worst_bound = float("inf"), -1, float("nan")
    for b, W in enumerate(run.final):
        lam_max = _limit_lam_max(run, b)
        bound = (
            np.sqrt(lam_max * run.alpha_min * run.lam) if printed
            else np.sqrt(factor * run.alpha_min * run.lam / lam_max)
        )
        r = _final_rank(run, b, W)
        if r == 0:
            continue
        s = np.linalg.svd(W, compute_uv=False)[r - 1]
        if s / bound < worst:
            worst, worst_b, worst_bound = float(s / bound), b, float(bound)
            worst_s = float(s)
    if printed:
        name = "claim 4b (printed): sigma_min(W*) >= sqrt(sigma_max(I) alpha_min lambda)"
    else:
        name = f"claim 4b (corrected): sigma_min(W*) >= sqrt({factor:g} alpha_min lambda / sigma_max(I))"
    if worst_b < 0:
        return ClaimCheck(name, True, float("nan"), float("nan"), -1, "W* = 0: vacuous")
    holds = bool(worst >= 1.0 - RTOL)
    return ClaimCheck(name, holds, worst_s, worst_bound, worst_b,
                      f"block {worst_b}: {worst_s:.6g} vs {worst_bound:.6g}")


def oialr_gradient_step_descent(run: OIALRRun) -> ClaimCheck:
    """Appendix B.1.1, one gradient step in the chart: ``L(U S_* V^T) - L(U S^k V^T) <= -|grad_S|^2 / (2 L)``.

    Valid because ``S -> L(U S V^T)`` has an ``L_gradL``-Lipschitz gradient when ``U``, ``V`` have
    orthonormal columns (``|U D V^T| = |D|``). Only meaningful for ``inner="gradient_step"``.
    """
    if run.inner != "gradient_step":
        raise ValueError(f"oialr_gradient_step_descent needs inner='gradient_step', got {run.inner!r}")
    lhs = run.loss_star - run.loss_before
    rhs = -(run.grad_s_before**2) / (2.0 * run.lipschitz)
    atol = 1e-12 * _scale(run.loss_before)
    viol = lhs - rhs
    i = int(np.argmax(viol))
    return ClaimCheck("OIALR: gradient step descent", bool(viol[i] <= atol), float(lhs[i]), float(rhs[i]), i, "")


def oialr_jump_bound(run: OIALRRun, strict: bool = True) -> ClaimCheck:
    """The OIALR loss-jump chain of Appendix B.1.1 at every outer step ``k`` (``dr = rank S_* - rank S^{k+1}``):

        L(U S^{k+1} V^T) - L(U S_* V^T) <= L/2 |S_* - S^{k+1}|^2 <= lambda_k L dr  [< or <=] sigma_min^2(S^{k+1}) L dr.

    ``strict=True`` checks the printed strict last inequality; ``strict=False`` the corrected
    ``<=`` (strict iff ``dr > 0``). The first inequality needs ``grad_S L(U S_* V^T) = 0``
    (``inner="exact"``); otherwise the descent-lemma term ``<grad_S, S^{k+1} - S_*>`` is added.
    Proof of the corrected chain: descent lemma in the chart (orthonormal ``U, V``); comparing the
    prox objective at ``S^{k+1}`` and at ``S_*`` gives ``1/2 |S_* - S^{k+1}|^2 <= lambda_k dr``; each kept
    singular value exceeds the threshold ``sqrt(2 lambda_k)``, so ``lambda_k < sigma_min^2 / 2``
    when ``S^{k+1} != 0`` -- strict inequality after multiplying by ``dr`` needs ``dr > 0``.
    When ``S^{k+1} = 0`` the last term is undefined and only the first two inequalities are checked.
    """
    L = run.lipschitz
    jump = run.loss_after - run.loss_star
    first_rhs = 0.5 * L * run.dist_sq
    if run.inner != "exact":
        first_rhs = first_rhs + run.inner_product
    dr = run.rank_star - run.rank_after
    mid = run.lam * L * dr
    last = run.sigma_min_after**2 * L * dr
    atol = 1e-10 * _scale(np.concatenate([run.loss_star, run.loss_after]))
    for k in range(jump.size):
        if jump[k] > first_rhs[k] + atol:
            return ClaimCheck("OIALR jump bound", False, float(jump[k]), float(first_rhs[k]), k,
                              "descent-lemma step fails")
        if first_rhs[k] - (run.inner_product[k] if run.inner != "exact" else 0.0) > mid[k] * (1 + RTOL) + atol:
            return ClaimCheck("OIALR jump bound", False, float(first_rhs[k]), float(mid[k]), k, "prox comparison fails")
        if np.isnan(run.sigma_min_after[k]):
            continue
        ok = mid[k] < last[k] if strict else (mid[k] <= last[k] and (dr[k] == 0 or mid[k] < last[k]))
        if not ok:
            rel = "<" if strict else "<="
            return ClaimCheck(
                "OIALR jump bound", False, float(mid[k]), float(last[k]), k,
                f"lambda_k L dr {rel} sigma_min^2 L dr fails with dr = {int(dr[k])}",
            )
    label = "printed (strict)" if strict else "corrected (<=, strict iff dr > 0)"
    return ClaimCheck(f"OIALR jump bound, {label}", True, float(np.max(jump)) if jump.size else 0.0, float("nan"), -1,
                      f"{jump.size} steps")


# ----------------------------------------------------------------------------------------------
# Explicit counterexamples (the minimal ones; see tests/theory for how they were found)
# ----------------------------------------------------------------------------------------------


def printed_consequence_counterexample(max_iter: int = 200) -> ProxRun:
    """Smallest counterexample to the printed "and thus" of claim 4 (``m = n = p = 1``).

    ``L(w) = 1/2 (w - 1)^2`` (``L_gradL = 1``), ``I = 4`` so ``sigma = 4`` and the step condition allows
    ``alpha <= 4``; take ``alpha = 1``, ``lambda = 1``. The iteration ``w -> w - (w - 1)/4`` thresholded
    at ``|w| > sqrt(2 alpha lambda / I) = 1/sqrt(2)`` converges from ``w_0 = 1`` to ``W* = 1``. Printed:
    ``1 >= sqrt(4 * 1 * 1) = 2`` is false; corrected: ``1 >= sqrt(2 / 4) ~ 0.707`` holds.
    """
    problem = LeastSquares(np.array([[1.0]]), np.array([[1.0]]))
    return proximal_gradient(
        problem, (np.array([[1.0]]),), 1.0, FixedStep(1.0), GlobalLipschitz(1.0),
        [ConvergingMetric(np.array([[4.0]]))], max_iter=max_iter,
    )


def boundary_step_counterexample(steps: int = 40, delta: float = 0.0) -> ProxRun:
    """Claims 2 and 3 fail at the boundary ``alpha_n = sigma_n / L`` (``delta = 0``).

    ``L(w) = 1/2 (w - 2)^2`` (``L = 1``), Euclidean metric (``sigma = 1``), ``alpha = (1 - delta)``,
    ``lambda = 2 (1 - delta)``, ``w_0 = 0``. With ``delta = 0`` every step lands on ``y = 2``, exactly
    at the threshold ``sqrt(2 alpha lambda) = 2``: ``argmin = {0, 2}`` and both have
    ``Phi = 2``. Selecting the element farther from the current iterate (allowed by
    ``W_{n+1} in argmin``) gives ``0, 2, 0, 2, ...``: ``Phi`` is constant (claim 1 holds) but
    ``sum |W_{n+1} - W_n| = 2 n -> infinity`` and ``W_n`` does not converge. With ``delta > 0`` the
    same construction (a tie at the first step) converges.
    """
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta!r}")
    problem = LeastSquares(np.array([[1.0]]), np.array([[2.0]]))
    alpha = 1.0 - delta
    # lambda chosen so that the first step from w_0 = 0 (y = 2 alpha) is a tie: (2 alpha)^2 / 2 = alpha lambda.
    lam = 2.0 * alpha
    return proximal_gradient(
        problem, (np.array([[0.0]]),), lam, ConstantFraction(1.0 - delta), GlobalLipschitz(1.0),
        max_iter=steps, tie_break="adversarial",
    )


def large_step_counterexample(steps: int = 5) -> ProxRun:
    """Monotonicity breaks for ``alpha = 1.5 sigma / L`` -- a step plain gradient descent would accept.

    ``L(w) = 1/2 (w - 1)^2``, ``lambda = 1/2``, ``w_0 = 0``: ``y = 1.5 > sqrt(2 * 1.5 * 0.5)`` is kept,
    ``Phi`` goes from ``0.5`` to ``0.125 + 0.5 = 0.625``.
    """
    problem = LeastSquares(np.array([[1.0]]), np.array([[1.0]]))
    return proximal_gradient(problem, (np.array([[0.0]]),), 0.5, FixedStep(1.5), GlobalLipschitz(1.0), max_iter=steps)


def wrong_modulus_counterexample(steps: int = 5) -> ProxRun:
    """Using ``lambda_max(I)`` instead of ``sigma_n = lambda_min(I)`` in the step condition breaks monotonicity.

    ``L(W) = 1/2 |W - B|^2`` on ``2 x 1`` matrices, ``I = diag(1, 100)``, ``alpha = lambda_max(I) / L = 100``:
    along the first row the effective step is ``alpha / 1 = 100 > 2 / L`` and the iterates blow up.
    """
    problem = LeastSquares(np.eye(2), np.array([[1.0], [1.0]]))
    return proximal_gradient(
        problem, (np.zeros((2, 1)),), 1e-3, FixedStep(100.0), GlobalLipschitz(1.0),
        [ConvergingMetric(np.diag([1.0, 100.0]))], max_iter=steps,
    )


def oialr_strict_counterexample() -> OIALRRun:
    """The strict last inequality of the OIALR chain fails when nothing is cut (``dr = 0``).

    ``m = n = p = 1``, ``A = B = 1``, ``W_0 = 1``: ``S_* = 1`` and any ``lambda_k < 1/2`` keeps it, so
    both sides of ``lambda_k L dr < sigma_min^2 L dr`` are ``0``.
    """
    problem = LeastSquares(np.array([[1.0]]), np.array([[1.0]]))
    return oialr(problem, np.array([[1.0]]), outer_steps=1, lam=0.25)


# ----------------------------------------------------------------------------------------------
# Evaluation helpers for the notebook
# ----------------------------------------------------------------------------------------------


def evaluate_run(run: ProxRun) -> dict[str, ClaimCheck]:
    """All Proposition 4.3 predicates on one run, keyed by a short id."""
    return {
        "assumption": step_size_condition(run),
        "claim1": claim1_nonincreasing(run),
        "decrease": sufficient_decrease(run),
        "claim2": claim2_finite_length(run),
        "claim3": claim3_critical_limit(run),
        "claim4a": claim4_metric_bound(run, 1.0),
        "claim4a_sharp": claim4_metric_bound(run, 2.0),
        "claim4a_step": claim4_metric_bound_per_step(run),
        "claim4b": claim4_consequence_printed(run),
        "claim4b_corrected": claim4_consequence_corrected(run),
    }


def claim_table(runs: Sequence[ProxRun], oialr_runs: Sequence[OIALRRun] = ()) -> list[dict[str, str]]:
    """One row per claim: the printed predicate on ``runs``, the explicit counterexample, the corrected form.

    ``verdict`` is ``holds`` when the printed predicate holds on every run and the claim has no
    counterexample; otherwise ``fails (counterexample)``, followed by ``; corrected form holds``
    when the corrected predicate holds on every run and on the counterexample's setting.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs must contain at least one ProxRun, got an empty sequence")
    evals = [evaluate_run(r) for r in runs]

    def on_runs(key: str) -> bool:
        return all(e[key].holds for e in evals)

    def row(claim: str, key: str, cx_text: str, printed_cx: bool, corrected: str, corrected_holds: bool | None) -> dict:
        printed = on_runs(key) and printed_cx
        verdict = "holds" if printed else "fails (counterexample)"
        if not printed and corrected_holds:
            verdict += "; corrected form holds"
        return {
            "claim": claim,
            "printed, on these runs": "holds" if on_runs(key) else "fails",
            "counterexample": cx_text,
            "corrected form": corrected,
            "verdict": verdict,
        }

    boundary = boundary_step_counterexample()
    boundary_fixed = boundary_step_counterexample(delta=0.1)
    cx4 = printed_consequence_counterexample()
    cx4_check = claim4_consequence_printed(cx4)
    outside = not claim1_nonincreasing(large_step_counterexample()).holds and not claim1_nonincreasing(
        wrong_modulus_counterexample()
    ).holds
    rows = [
        row(
            "1. (L + lambda rank)(W_n) non-increasing and convergent", "claim1",
            "none within the assumptions"
            + ("; it fails for alpha = 1.5 sigma/L or with lambda_max(I) in place of sigma_n" if outside else ""),
            claim1_nonincreasing(boundary).holds, "as printed", None,
        )
    ]
    for key, label, pred in (
        ("claim2", "2. sum_n |W_{n+1} - W_n| < infinity", claim2_finite_length),
        ("claim3", "3. W_n -> W* in crit(L + lambda rank)", claim3_critical_limit),
    ):
        fails = not pred(boundary).holds
        rows.append(row(
            label, key,
            "alpha_n = sigma_n / L exactly and a tie in the prox: W_n = 0, 2, 0, 2, ..." if fails else "none found",
            not fails, "alpha_n <= (1 - delta) sigma_n / L, delta > 0",
            on_runs(key) and pred(boundary_fixed).holds,
        ))
    rows.append(row(
        "4a. sigma_min(I^1/2 W*) >= sqrt(alpha_min lambda)", "claim4a",
        "none (loose: the threshold is sqrt(2 alpha lambda))",
        claim4_metric_bound(cx4).holds,
        f"sharp: sqrt(2 alpha_min lambda) ({'holds' if on_runs('claim4a_sharp') else 'fails'})",
        None,
    ))
    rows.append(row(
        "4b. sigma_min(W*) >= sqrt(sigma_max(I) alpha_min lambda)", "claim4b",
        f"1x1, L = (w-1)^2/2, I = 4, alpha = lambda = 1: W* = {cx4_check.lhs:.4g} < {cx4_check.rhs:.4g}"
        if not cx4_check.holds else "none found",
        cx4_check.holds, "sigma_min(W*) >= sqrt(2 alpha_min lambda / sigma_max(I))",
        on_runs("claim4b_corrected") and claim4_consequence_corrected(cx4).holds,
    ))
    if oialr_runs:
        cx = oialr_strict_counterexample()
        strict_ok = all(oialr_jump_bound(r, strict=True).holds for r in oialr_runs)
        loose_ok = (all(oialr_jump_bound(r, strict=False).holds for r in oialr_runs)
                    and oialr_jump_bound(cx, False).holds)
        cx_fails = not oialr_jump_bound(cx, True).holds
        rows.append({
            "claim": "B.1.1 OIALR: jump <= lambda_k L dr < sigma_min^2(S^{k+1}) L dr",
            "printed, on these runs": "holds" if strict_ok else "fails",
            "counterexample": "nothing cut (dr = 0): 0 < 0" if cx_fails else "none found",
            "corrected form": "last '<' as '<=' (strict iff dr > 0); also 2 lambda_k < sigma_min^2",
            "verdict": "holds" if (strict_ok and not cx_fails)
            else "fails (counterexample)" + ("; corrected form holds" if loose_ok else ""),
        })
    return rows
