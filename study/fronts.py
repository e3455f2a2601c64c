"""Pareto fronts, the construction behind Figures 2–5 of the paper (its Appendix C): every epoch's
evaluation of every run is a point (fraction of target parameters → accuracy), and a method's front is
the upper-left envelope, the best accuracy reached at or below each fraction of parameters:

>>> import pandas as pd
>>> from study.fronts import pareto_front, pareto_points
>>> points = pd.DataFrame({"kind": ["epoch", "epoch", "epoch", "start"],
...                        "compression_ratio_target": [0.2, 0.3, 0.5, 0.1],
...                        "accuracy": [0.80, 0.78, 0.90, 0.95]})
>>> front = pareto_front(pareto_points(points), "compression_ratio_target", "accuracy")
>>> front[["compression_ratio_target", "accuracy"]].values.tolist()  # (0.3, 0.78) dominated; "start" no point
[[0.2, 0.8], [0.5, 0.9]]

Two fronts are compared at matched sizes only (:func:`compare_fronts`): a front is read at a budget
only where its method was evaluated within :data:`MATCH_RTOL` below that budget, so a value is never
carried across a size range the method was not evaluated at.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["POINT_KINDS", "MATCH_RTOL", "pareto_points", "selection", "best_point", "pareto_front", "front_values",
           "best_at", "evaluated_near", "matched_values", "shared_budgets", "compare_fronts"]

#: records that are points of a Pareto figure (Appendix C: the evaluation after every epoch)
POINT_KINDS = ("epoch", "final")
#: how far below a budget, relative to it, a method's nearest evaluation may lie for its front to be read
#: at that budget in a comparison (:func:`compare_fronts`). Relative, so that it means the same at 5 % as
#: at 60 % of the parameters; 10 % is small against the span of the figures (a few percent to the full
#: model, about two decades on their logarithmic axis), so two models within it count as the same size,
#: while a wider one would pair models whose sizes differ visibly on those axes
MATCH_RTOL = 0.10
#: sizes are ratios of integer parameter counts computed in floating point: equal sizes of two runs may
#: differ in the last bits, so comparisons of sizes allow this relative slack
_SIZE_SLACK = 1e-12


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


def selection(*points: pd.DataFrame) -> dict[str, str]:
    """How fronts of ``points`` choose their points, as keyword arguments of :func:`compare_fronts` and its
    kin: on validation accuracy, scored on test accuracy, when every point of every frame has a validation
    accuracy (runs with a validation split); else ``{}``, on test accuracy (runs made before the split existed:
    such a front reads the test set twice, and the report says so)."""
    frames = [p for p in points if len(p)]
    if frames and all("val_accuracy" in p and p["val_accuracy"].notna().all() for p in frames):
        return {"y": "val_accuracy", "report": "accuracy"}
    return {}


def best_point(points: pd.DataFrame) -> pd.Series:
    """The best model of ``points`` (a non-empty frame), chosen as :func:`selection` says: by validation
    accuracy when every point has one, else by test accuracy."""
    return points.loc[points[selection(points).get("y", "accuracy")].idxmax()]


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
                 y: str = "accuracy", report: str | None = None) -> np.ndarray:
    """The front read at each budget: best ``y`` among its points with ``x ≤ budget`` (NaN below its first
    point). With ``report``, the point is chosen by ``y`` and its ``report`` column is returned: a front chosen
    on validation accuracy and scored on test accuracy (``y="val_accuracy", report="accuracy"``)."""
    b = np.asarray(budgets, dtype=float)
    if front.empty:
        return np.full(b.shape, np.nan)
    xs = front[x].to_numpy(dtype=float)
    ys = front[y if report is None else report].to_numpy(dtype=float)
    idx = np.searchsorted(xs, b * (1 + 1e-12), side="right") - 1
    return np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan)


def best_at(df: pd.DataFrame, budget: float, x: str = "compression_ratio_target", y: str = "accuracy",
            report: str | None = None) -> float:
    """Best ``y`` among the rows with ``x ≤ budget`` (NaN when none); with ``report``, that row's ``report``."""
    return float(front_values(pareto_front(df, x, y), [budget], x, y, report)[0])


def _evaluated(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows that are evaluations: both ``x`` and ``y`` present (as :func:`pareto_front` keeps)."""
    return points[pd.notna(points[x]) & pd.notna(points[y])] if len(points) else points


def evaluated_near(points: pd.DataFrame, budgets: Sequence[float] | np.ndarray, x: str = "compression_ratio_target",
                   rtol: float = MATCH_RTOL) -> np.ndarray:
    """Whether ``points`` hold an evaluation at each budget or at most ``rtol`` (relative) below it: some
    row with ``x`` in ``[budget·(1 − rtol), budget]``. Rows above a budget never count: reading them at
    it would credit the method with a model larger than the budget."""
    b = np.asarray(budgets, dtype=float)
    xs = np.sort(points[x].dropna().to_numpy(dtype=float)) if len(points) else np.array([])
    if xs.size == 0:
        return np.zeros(b.shape, dtype=bool)
    idx = np.searchsorted(xs, b * (1 + _SIZE_SLACK), side="right") - 1      # the largest size ≤ budget
    nearest_below = xs[np.clip(idx, 0, None)]
    return (idx >= 0) & (nearest_below >= b * (1 - rtol) * (1 - _SIZE_SLACK))


def matched_values(points: pd.DataFrame, budgets: Sequence[float] | np.ndarray, x: str = "compression_ratio_target",
                   y: str = "accuracy", rtol: float = MATCH_RTOL, report: str | None = None) -> np.ndarray:
    """The front of ``points`` read at each budget where the method was evaluated near it
    (:func:`evaluated_near`), NaN elsewhere.

    The value read is the front itself (Appendix C's upper-left envelope: the best ``y`` among the points
    with ``x ≤ budget``). Because a point within ``rtol`` below the budget is required, the value rests on
    an evaluation of a model of about that size: a smaller model's accuracy enters only when it beats
    that evaluation (and then it is what the method reached with no more than the budget), never to
    stand in for a size the method was not evaluated at, where the envelope would only carry the value
    of the last, much smaller, point. ``report``: see :func:`front_values`."""
    p = _evaluated(points, x, y)
    values = front_values(pareto_front(p, x, y), budgets, x, y, report)
    return np.where(evaluated_near(p, budgets, x, rtol), values, np.nan)


def shared_budgets(a: pd.DataFrame, b: pd.DataFrame, x: str = "compression_ratio_target", y: str = "accuracy",
                   rtol: float = MATCH_RTOL) -> np.ndarray:
    """The budgets two sets of points are compared at: the distinct sizes either set was evaluated at
    (Appendix C: every epoch's evaluation is a point), within the range where both could be read under
    :func:`evaluated_near`, from the larger of the two smallest sizes (below its own smallest size a set
    has nothing to read) to the smaller of the two largest sizes divided by ``1 − rtol`` (above that, the
    set with the smaller range has no evaluation near enough). Empty when the ranges are that far apart.

    The sizes evaluated, not an interpolation grid, because the runs say nothing between them: on a
    regular grid two fronts evaluated at the very same sizes would count as matched only where the grid
    happens to fall just above an evaluated size, and the coverage would measure how densely the sweeps
    were sampled rather than whether the two fronts were evaluated at matching sizes."""
    xa, xb = (_evaluated(d, x, y)[x].to_numpy(dtype=float) if len(d) else np.array([]) for d in (a, b))
    if xa.size == 0 or xb.size == 0:
        return np.array([])
    lo = max(xa.min(), xb.min())
    hi = min(xa.max(), xb.max()) / (1 - rtol)
    sizes = np.unique(np.concatenate([xa, xb]))
    return sizes[(sizes >= lo * (1 - _SIZE_SLACK)) & (sizes <= hi * (1 + _SIZE_SLACK))]


def compare_fronts(a: pd.DataFrame, b: pd.DataFrame, *, x: str = "compression_ratio_target", y: str = "accuracy",
                   budgets: Sequence[float] | None = None, match_rtol: float = MATCH_RTOL,
                   report: str | None = None) -> dict[str, Any]:
    """Front of ``a`` minus front of ``b`` (Appendix C's upper-left envelopes), at matched sizes only.

    The grid of budgets is ``budgets`` when given, else :func:`shared_budgets` (the sizes either set was
    evaluated at, where both could be read). A budget is compared only where both sets were evaluated
    within ``match_rtol`` (relative) below it, and each front is read there with :func:`matched_values`.
    Reading a front wherever it is defined would carry, into a size range a method was not evaluated
    at, the value of its last much smaller point (a front with points at 25 % and 62.6 % of the
    parameters would be read at 60 % from the 25 % model) and compare models of very different sizes.

    Returns ``grid`` (every budget of the grid), ``n_grid``, ``budgets`` (the compared ones), ``a``,
    ``b``, ``gaps`` (arrays over the compared budgets), ``n_compared``, ``coverage`` (``n_compared /
    n_grid``; 0 for an empty grid: nothing shared, nothing covered), ``mean_gap`` (NaN when nothing is
    compared), ``gap_at_lo`` (the gap at the smallest compared budget), ``lo``, ``hi`` (the compared
    budgets' range) and ``match_rtol``. With ``report``, each front's points are chosen by ``y`` and the
    values compared are their ``report`` column (:func:`front_values`)."""
    grid = shared_budgets(a, b, x, y, match_rtol) if budgets is None else np.asarray(budgets, dtype=float)
    va, vb = (matched_values(d, grid, x, y, match_rtol, report) for d in (a, b))
    ok = np.isfinite(va) & np.isfinite(vb)
    g, gaps = grid[ok], va[ok] - vb[ok]
    out: dict[str, Any] = {"grid": grid, "n_grid": int(grid.size), "budgets": g, "a": va[ok], "b": vb[ok],
                           "gaps": gaps, "n_compared": int(ok.sum()),
                           "coverage": float(ok.sum() / grid.size) if grid.size else 0.0,
                           "match_rtol": float(match_rtol)}
    if not ok.any():
        return {**out, "mean_gap": np.nan, "gap_at_lo": np.nan, "lo": np.nan, "hi": np.nan}
    return {**out, "mean_gap": float(np.mean(gaps)), "gap_at_lo": float(gaps[np.argmin(g)]),
            "lo": float(g.min()), "hi": float(g.max())}
