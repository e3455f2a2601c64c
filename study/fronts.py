"""Pareto fronts, the construction behind Figures 2–5 of the paper (its Appendix C): every epoch's
evaluation of every run is a point (fraction of target parameters → accuracy), and a method's front is
the upper-left envelope, the best accuracy reached at or below each fraction of parameters::

    from study.fronts import pareto_front, pareto_points
    front = pareto_front(pareto_points(points), "compression_ratio_target", "accuracy")
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["POINT_KINDS", "pareto_points", "pareto_front", "front_values", "best_at", "compare_fronts"]

#: records that are points of a Pareto figure (Appendix C: the evaluation after every epoch)
POINT_KINDS = ("epoch", "final")


def pareto_points(points: pd.DataFrame, compressed_only: bool = False) -> pd.DataFrame:
    """The records that are points of a Pareto figure: ``epoch`` and ``final`` evaluations with a
    finite accuracy and compression (``compressed_only`` also drops the dense ones, ratio ≥ 1)."""
    if points.empty:
        return points
    p = points[points["kind"].isin(POINT_KINDS)]
    p = p[np.isfinite(p["accuracy"].astype(float)) & np.isfinite(p["compression_ratio_target"].astype(float))]
    if compressed_only:
        p = p[p["compression_ratio_target"] < 1.0 - 1e-9]
    return p


def pareto_front(df: pd.DataFrame, x: str = "compression_ratio_target", y: str = "accuracy") -> pd.DataFrame:
    """The upper-left envelope of the points ``(x, y)``: the rows no other row dominates (another row
    with ``x' ≤ x`` and ``y' ≥ y``, one of them strict), sorted by ``x``; of identical points the first
    is kept. Reading the front at a budget ``b`` gives the best ``y`` among the rows with ``x ≤ b``.
    Rows with a missing ``x`` or ``y`` are ignored."""
    d = df[pd.notna(df[x]) & pd.notna(df[y])] if len(df) else df
    if d.empty:
        return d.iloc[0:0].copy()
    xs = d[x].to_numpy(dtype=float)
    ys = d[y].to_numpy(dtype=float)
    order = np.lexsort((np.arange(len(d)), -ys, xs))   # x ascending, y descending, first occurrence first
    keep, best = [], -np.inf
    for i in order:
        if ys[i] > best:
            keep.append(i)
            best = ys[i]
    return d.iloc[keep].copy()


def front_values(front: pd.DataFrame, budgets: Sequence[float] | np.ndarray, x: str = "compression_ratio_target",
                 y: str = "accuracy") -> np.ndarray:
    """The front read at each budget: best ``y`` among its points with ``x ≤ budget`` (NaN below its first point)."""
    b = np.asarray(budgets, dtype=float)
    if front.empty:
        return np.full(b.shape, np.nan)
    xs = front[x].to_numpy(dtype=float)
    ys = front[y].to_numpy(dtype=float)
    idx = np.searchsorted(xs, b * (1 + 1e-12), side="right") - 1
    return np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan)


def best_at(df: pd.DataFrame, budget: float, x: str = "compression_ratio_target", y: str = "accuracy") -> float:
    """Best ``y`` among the rows with ``x ≤ budget`` (NaN when none)."""
    return float(front_values(pareto_front(df, x, y), [budget], x, y)[0])


def compare_fronts(a: pd.DataFrame, b: pd.DataFrame, *, x: str = "compression_ratio_target", y: str = "accuracy",
                   budgets: Sequence[float] | None = None, n_grid: int = 25) -> dict[str, Any]:
    """Front of ``a`` minus front of ``b``, read at budgets where both are defined.

    Default budgets: ``n_grid`` log-spaced values over the range of ``x`` both sets of points cover,
    from the larger of the two smallest ``x`` to the smaller of the two largest (one budget when the
    ranges do not overlap: then the best of the more compressed set is compared with the other's
    first point). Returns ``budgets``, ``a``, ``b``, ``gaps`` (arrays), ``mean_gap`` (NaN when nothing
    is comparable), ``gap_at_lo`` (the gap at the most compressed common budget), ``lo``, ``hi``."""
    fa, fb = pareto_front(a, x, y), pareto_front(b, x, y)
    empty = {"budgets": np.array([]), "a": np.array([]), "b": np.array([]), "gaps": np.array([]),
             "mean_gap": np.nan, "gap_at_lo": np.nan, "lo": np.nan, "hi": np.nan}
    if fa.empty or fb.empty:
        return empty
    if budgets is None:
        xa, xb = a[x].dropna().astype(float), b[x].dropna().astype(float)
        lo = max(fa[x].min(), fb[x].min())
        hi = max(lo, min(xa.max(), xb.max()))
        grid = np.geomspace(lo, hi, n_grid) if hi > lo else np.array([lo])
    else:
        grid = np.asarray(budgets, dtype=float)
    va, vb = front_values(fa, grid, x, y), front_values(fb, grid, x, y)
    ok = np.isfinite(va) & np.isfinite(vb)
    if not ok.any():
        return {**empty, "lo": float(grid.min()), "hi": float(grid.max())}
    g = grid[ok]
    gaps = va[ok] - vb[ok]
    return {"budgets": g, "a": va[ok], "b": vb[ok], "gaps": gaps, "mean_gap": float(np.mean(gaps)),
            "gap_at_lo": float(gaps[np.argmin(g)]), "lo": float(g.min()), "hi": float(g.max())}
