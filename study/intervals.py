"""Seed-level statistics of the study: 95 % intervals over seeds, and the rule that turns one into a verdict.

An effect that decides a claim is measured once per seed — for a comparison of two methods' fronts, the
mean gap at matched sizes (:func:`study.fronts.compare_fronts`) between the runs of one seed — and the
verdict rests on the interval of its mean over seeds, never on one run:

* :func:`t_interval` — Student's t interval ``mean ± t_{n−1, 1−α/2} · s/√n`` (the default: exact for
  normal per-seed effects, and with 3–10 seeds a bootstrap's percentiles are too coarse to trust);
* :func:`bootstrap_interval` — scipy's BCa bootstrap over seeds, for a check that does not assume
  normality;
* :func:`decide_interval` — ``reproduced`` when the interval lies above zero, ``not reproduced`` when it
  lies below, ``inconclusive`` otherwise or with fewer than :data:`MIN_SEEDS` seeds, always with the
  interval in the text.

Effects are oriented so that a positive value is what the paper claims (for claim (b): iterative − one-shot).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from .fronts import MATCH_RTOL, compare_fronts

__all__ = ["LEVEL", "MIN_SEEDS", "Interval", "t_interval", "bootstrap_interval", "decide_interval",
           "per_seed_front_gaps", "front_gap_interval"]

#: the confidence level of every interval of the study
LEVEL = 0.95
#: the fewest seeds an interval may decide a claim with (the study's protocol: at least 3)
MIN_SEEDS = 3


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` per-seed effects and its ``level`` confidence interval ``[lo, hi]``, by ``method``."""

    mean: float
    lo: float
    hi: float
    n: int
    method: str
    level: float = LEVEL

    def effect_text(self) -> str:
        """The mean, ``+0.0123`` (``–`` without seeds): the effect column of a verdict."""
        return f"{self.mean:+.4f}" if self.n and np.isfinite(self.mean) else "–"

    def bounds_text(self) -> str:
        """``[−0.0040, +0.0290] (95 % t, 3 seeds)``, or why there is no interval: the interval column."""
        if self.n == 0:
            return "no seeds"
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            return f"none ({self.n} seed{'s' if self.n != 1 else ''})"
        return f"[{self.lo:+.4f}, {self.hi:+.4f}] ({100 * self.level:.0f} % {self.method}, {self.n} seeds)"

    def text(self) -> str:
        """``+0.0123 [−0.0040, +0.0290] (95 % t interval, 3 seeds)``."""
        if self.n == 0:
            return "no seeds"
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            return f"{self.mean:+.4f} ({self.n} seed{'s' if self.n != 1 else ''}: no interval)"
        return (f"{self.mean:+.4f} [{self.lo:+.4f}, {self.hi:+.4f}] ({100 * self.level:.0f} % {self.method} "
                f"interval, {self.n} seed{'s' if self.n != 1 else ''})")


def _values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    if not np.isfinite(a).all():
        raise ValueError(f"per-seed effects must be finite, got {a.tolist()}")
    return a


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} must be in (0, 1)")


def _too_few(values: Sequence[float] | np.ndarray, level: float, method: str) -> tuple[np.ndarray, Interval | None]:
    """The checked values, and the interval when there are fewer than 2 of them (none to estimate a
    spread from: NaN bounds, and a NaN mean without values); ``None`` when an interval can be computed."""
    _check_level(level)
    a = _values(values)
    if a.size == 0:
        return a, Interval(math.nan, math.nan, math.nan, 0, method, level)
    if a.size < 2:
        return a, Interval(float(a.mean()), math.nan, math.nan, int(a.size), method, level)
    return a, None


def t_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Interval:
    """Student's t interval for the mean of ``values`` (one per seed); ``lo = hi = NaN`` below 2 values
    (a spread cannot be estimated from one seed)."""
    a, few = _too_few(values, level, "t")
    if few is not None:
        return few
    n, mean = int(a.size), float(a.mean())
    half = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1)) * float(a.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, "t", level)


def bootstrap_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL, *, n_resamples: int = 9_999,
                       random_state: int = 0) -> Interval:
    """scipy's bias-corrected and accelerated bootstrap interval for the mean of ``values`` (resampling
    seeds). Identical values give the degenerate interval ``[mean, mean]``; below 2 values, NaN bounds."""
    a, few = _too_few(values, level, "BCa bootstrap")
    if few is not None:
        return few
    n, mean = int(a.size), float(a.mean())
    if np.ptp(a) == 0:
        # every resample has the same mean: the interval is the point (scipy would return NaN here)
        return Interval(mean, mean, mean, n, "BCa bootstrap", level)
    res = scipy.stats.bootstrap((a,), np.mean, confidence_level=level, n_resamples=n_resamples, method="BCa",
                                random_state=np.random.default_rng(random_state))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        # BCa's acceleration is undefined for some tiny samples (all jackknife means equal): percentiles
        res = scipy.stats.bootstrap((a,), np.mean, confidence_level=level, n_resamples=n_resamples,
                                    method="percentile", random_state=np.random.default_rng(random_state))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        return Interval(mean, lo, hi, n, "percentile bootstrap", level)
    return Interval(mean, lo, hi, n, "BCa bootstrap", level)


def decide_interval(iv: Interval, min_seeds: int = MIN_SEEDS) -> str:
    """The verdict of an effect oriented so that positive is the paper's claim: ``reproduced`` when the
    interval lies above zero, ``not reproduced`` when it lies below, else ``inconclusive (…)`` with the
    reason — the interval contains zero, or fewer than ``min_seeds`` seeds."""
    if iv.n == 0 or not np.isfinite(iv.mean):
        return "no runs"
    if iv.n < min_seeds:
        return f"inconclusive ({iv.n} seed{'s' if iv.n != 1 else ''} < {min_seeds}: {iv.text()})"
    if iv.lo > 0:
        return "reproduced"
    if iv.hi < 0:
        return "not reproduced"
    return f"inconclusive (interval contains 0: {iv.text()})"


def per_seed_front_gaps(a: pd.DataFrame, b: pd.DataFrame, *, seed: str = "random_state",
                        budgets: Sequence[float] | None = None, match_rtol: float = MATCH_RTOL,
                        x: str = "compression_ratio_target", y: str = "accuracy",
                        report: str | None = None) -> pd.DataFrame:
    """For every seed present in both ``a`` and ``b`` (the column ``seed``), the comparison of the two
    fronts built from that seed's points only: ``seed``, ``mean_gap`` (a − b at matched sizes),
    ``n_compared``, ``n_grid``, ``coverage``. Seeds are paired: the same compression seed on both sides
    (and so the same batches order where the runs share a data seed), which removes the shared noise."""
    for name, d in (("a", a), ("b", b)):
        if len(d) and seed not in d.columns:
            raise ValueError(f"{name} has no column {seed!r} (the seed to pair runs by); columns: {list(d.columns)}")
    seeds = sorted(set(a[seed].dropna()) & set(b[seed].dropna())) if len(a) and len(b) else []
    rows: list[dict[str, Any]] = []
    for s in seeds:
        cmp = compare_fronts(a[a[seed] == s], b[b[seed] == s], x=x, y=y, budgets=budgets, match_rtol=match_rtol,
                             report=report)
        rows.append({"seed": s, "mean_gap": cmp["mean_gap"], "n_compared": cmp["n_compared"],
                     "n_grid": cmp["n_grid"], "coverage": cmp["coverage"]})
    return pd.DataFrame(rows, columns=["seed", "mean_gap", "n_compared", "n_grid", "coverage"])


def front_gap_interval(a: pd.DataFrame, b: pd.DataFrame, *, min_coverage: float, level: float = LEVEL,
                       **kwargs: Any) -> tuple[Interval, pd.DataFrame]:
    """The :func:`t_interval` of the per-seed mean front gaps (:func:`per_seed_front_gaps`) over the seeds
    whose comparison covers at least ``min_coverage`` of its grid; the per-seed table (with a ``used``
    column) comes with it, so that a report can say which seeds were left out and why."""
    per_seed = per_seed_front_gaps(a, b, **kwargs)
    # astype: an empty table (no shared seed: one side has no runs) has object columns isfinite refuses
    gaps = per_seed["mean_gap"].astype(float)
    used = (per_seed["n_compared"] > 0) & (per_seed["coverage"] >= min_coverage) & np.isfinite(gaps)
    per_seed = per_seed.assign(used=used)
    return t_interval(per_seed.loc[used, "mean_gap"].to_numpy(dtype=float), level), per_seed
