"""Claim (b) of the paper decided at matched sizes over seeds: iterative methods beat one-shot projection at
4–7 % of the target parameters (Figure 2, "a significant gap between methods employing iterative
compression, and those not"), with the ablation that separates "iterative" from "what trains", and the same
gap against the training budget (Section 5.2: iterative methods need long, stable training).

The decisive sweep (``runs/repeats``) holds, per dataset and seed k (the base's pre-training seed and the
run's ``train.random_state``): one-shot SVD at the paper's uniform ranks and at ``params_fraction``s spread
over the window (energy rank rule, so it can sit at any size; the one-shot front is the better of the two at
each size), SVD with only its core S trainable (``train: core``, the form the paper's loops
train) at two of them, and the iterative methods, whose every epoch's evaluation is a point on their path
from the dense model down (Appendix C). For each seed the two fronts are compared at the budgets of the
window's grid (:func:`window_grid`) by :func:`study.intervals.per_seed_front_gaps` — a budget counts only
where both have an evaluation within :data:`study.fronts.MATCH_RTOL` below it — and the effect is the mean
over seeds with its 95 % t interval (:func:`study.intervals.front_gap_interval`), decided by
:func:`study.intervals.decide_interval`: a seed whose comparison covers less than
:data:`study.verdicts.MIN_COVERAGE` of the grid is left out, and the table says so.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .families import ITERATIVE, ONE_SHOT
from .fronts import compare_fronts, pareto_points, selection
from .intervals import Interval, decide_interval, front_gap_interval, t_interval
from .verdicts import MIN_COVERAGE

__all__ = ["WINDOW", "SEED", "roles", "window_grid", "interval_sign", "decisive_table", "budget_gaps",
           "budget_summary"]

#: the sizes claim (b) is about: 4–7 % of the target parameters (the paper's Figure 2 discussion)
WINDOW = (0.04, 0.07)
#: the column that pairs runs across methods: seed k is the base's and the compression run's
SEED = "random_state"
_FRACTION = "spec.method_args.params_fraction"
_TRAIN = "spec.method_args.train"


def roles(runs: pd.DataFrame) -> pd.Series:
    """Each run's side in the comparison: ``iterative`` (the paper's iterative family), ``one-shot`` (a
    one-shot projection whose factors both train), ``one-shot, S only`` (``train: core``), else ``other``."""
    if runs.empty:
        return pd.Series([], dtype=object)
    train = runs[_TRAIN] if _TRAIN in runs else pd.Series("factors", index=runs.index)
    out = np.where(runs["method"].isin(ITERATIVE), "iterative",
                   np.where(runs["method"].isin(ONE_SHOT),
                            np.where(train.fillna("factors") == "core", "one-shot, S only", "one-shot"), "other"))
    return pd.Series(out, index=runs.index)


def window_grid(runs: pd.DataFrame, window: tuple[float, float] = WINDOW, *, upper: bool = True) -> np.ndarray:
    """The budgets a comparison is read at: the ``params_fraction`` of every run of ``runs`` inside
    ``window`` (the sizes the one-shot runs were asked for, so each has a one-shot model within
    MATCH_RTOL below it), and the window's upper end when ``upper``. Derived from the runs, so the grid is
    what params.yaml asked for."""
    lo, hi = window
    f = pd.to_numeric(runs[_FRACTION], errors="coerce").dropna() if _FRACTION in runs and len(runs) else pd.Series([])
    grid = sorted({float(v) for v in f if lo <= v <= hi} | ({float(hi)} if upper else set()))
    return np.asarray(grid, dtype=float)


def _points_of(points: pd.DataFrame, runs: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    """The Pareto points (every epoch's evaluation and the final one) of the runs selected by ``mask``."""
    p = pareto_points(points)
    return p[p["run"].isin(set(runs.loc[mask, "run"]))]


def _row(dataset: Any, comparison: str, iv: Interval, per_seed: pd.DataFrame | None, grid: np.ndarray,
         what: str) -> dict[str, Any]:
    used = per_seed[per_seed["used"]] if per_seed is not None and "used" in per_seed else per_seed
    left = (sorted(per_seed.loc[~per_seed["used"], "seed"].tolist())
            if per_seed is not None and "used" in per_seed else [])
    return {
        "dataset": dataset, "comparison": comparison, "what": what,
        "effect": iv.mean, "lo": iv.lo, "hi": iv.hi, "seeds": iv.n,
        "per seed": ", ".join(f"{s}: {g:+.4f}" for s, g in zip(used["seed"], used["mean_gap"]))
        if used is not None and len(used) else "",
        "coverage": (", ".join(f"{s}: {c:.0%}" for s, c in zip(per_seed["seed"], per_seed["coverage"]))
                     if per_seed is not None and "coverage" in per_seed and len(per_seed) else "paired"),
        "left out": ", ".join(map(str, left)),
        "budgets": ", ".join(f"{100 * b:.2f}%" for b in grid),
        "decision": (f"no seed covers {MIN_COVERAGE:.0%} of the budgets" if iv.n == 0 and left
                     else interval_sign(iv)), "interval": iv,
        "per seed table": per_seed,   # the verdict says which way the seeds point (study.verdicts.seed_directions)
    }


def interval_sign(iv: Interval) -> str:
    """Where an effect's interval lies: ``above 0``, ``below 0``, ``contains 0``, or why there is none (fewer
    than :data:`study.intervals.MIN_SEEDS` seeds) — the words of :func:`study.intervals.decide_interval`
    without a claim attached."""
    verdict = decide_interval(iv)
    return {"reproduced": "above 0", "not reproduced": "below 0"}.get(
        verdict, "contains 0" if verdict.startswith("inconclusive (interval") else verdict)


def _paired_final(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the mean over the ``params_fraction``s both ``a`` and ``b`` ran of final accuracy a − b."""
    rows = []
    for s in sorted(set(a[SEED].dropna()) & set(b[SEED].dropna())):
        fa = a[a[SEED] == s].groupby(_FRACTION)["accuracy"].mean()
        fb = b[b[SEED] == s].groupby(_FRACTION)["accuracy"].mean()
        both = fa.index.intersection(fb.index)
        if len(both):
            rows.append({"seed": s, "mean_gap": float((fa[both] - fb[both]).mean()), "used": True,
                         "fractions": len(both)})
    return pd.DataFrame(rows, columns=["seed", "mean_gap", "used", "fractions"])


def decisive_table(runs: pd.DataFrame, points: pd.DataFrame, window: tuple[float, float] = WINDOW) -> pd.DataFrame:
    """Per dataset of the decisive sweep, every comparison of claim (b) with its effect (oriented so that
    positive favours the first side), 95 % t interval over seeds, per-seed values and coverage:

    * iterative − one-shot, and each iterative method − one-shot: fronts at the window's grid;
    * iterative − one-shot (S only): fronts at the S-only runs' sizes;
    * one-shot (S only) − one-shot: final accuracy, paired by seed and size — what training only S costs.

    Which effect explains a gap: if iterative − one-shot is negative while iterative − one-shot (S only) is
    not, training only S (not being iterative) is what loses."""
    cols = ["dataset", "comparison", "what", "effect", "lo", "hi", "seeds", "per seed", "coverage", "left out",
            "budgets", "decision", "interval"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    role = roles(runs)
    chosen = selection(pareto_points(points))
    out = []
    for ds in sorted(runs["dataset"].dropna().unique(), key=str):
        here = runs["dataset"] == ds
        one, core, it = here & (role == "one-shot"), here & (role == "one-shot, S only"), here & (role == "iterative")
        grid = window_grid(runs[one], window)
        one_p = _points_of(points, runs, one)
        sides = [("iterative − one-shot", it, "fronts, both factors trained on the one-shot side")]
        sides += [(f"{m.upper()} − one-shot", it & (runs["method"] == m), "fronts")
                  for m in sorted(runs.loc[it, "method"].unique(), key=ITERATIVE.index)]
        for name, mask, what in sides:
            iv, per_seed = front_gap_interval(_points_of(points, runs, mask), one_p, min_coverage=MIN_COVERAGE,
                                              budgets=grid, seed=SEED, **chosen)
            out.append(_row(ds, name, iv, per_seed, grid, what))
        if core.any():
            core_grid = window_grid(runs[core], window, upper=False)
            iv, per_seed = front_gap_interval(_points_of(points, runs, it), _points_of(points, runs, core),
                                              min_coverage=MIN_COVERAGE, budgets=core_grid, seed=SEED, **chosen)
            out.append(_row(ds, "iterative − one-shot (S only)", iv, per_seed, core_grid,
                            "fronts, only S trained on the one-shot side (as the paper's loops train)"))
            paired = _paired_final(runs[core], runs[one])
            iv = t_interval(paired["mean_gap"].to_numpy(dtype=float))
            out.append(_row(ds, "one-shot (S only) − one-shot", iv, paired, core_grid,
                            "final accuracy at the same size and seed: the cost of training only S"))
    return pd.DataFrame(out, columns=cols)


def budget_gaps(budget_runs: pd.DataFrame, budget_points: pd.DataFrame, repeats_runs: pd.DataFrame,
                repeats_points: pd.DataFrame, at: float = WINDOW[0]) -> pd.DataFrame:
    """Claim (b) against the training budget: per dataset, budget (epochs) and seed, the iterative front minus
    the one-shot front at ``at`` (matched sizes, :func:`study.fronts.compare_fronts`; NaN where either has
    no evaluation within MATCH_RTOL below it), and each side's best accuracy there.

    The sides are what the budget sweep runs (its one-shot settings — the one-shot front is the best of
    them — and its iterative method and threshold); the decisive sweep's runs of the same settings add its
    own budget."""
    cols = ["dataset", "epochs", "seed", "iterative", "one-shot", "gap", "iterative accuracy", "one-shot accuracy"]
    if budget_runs.empty:
        return pd.DataFrame(columns=cols)
    b_role = roles(budget_runs)
    # one-shot runs are matched by their whole setting (a rank, or a fraction and its rule); iterative ones by
    # method and threshold, since the budget sweep spaces the same cuts differently for each budget
    one_keys = set(zip(budget_runs.loc[b_role == "one-shot", "method"],
                       budget_runs.loc[b_role == "one-shot", "setting"]))
    it_keys = {(r["method"], r.get("spec.method_args.oialr_threshold"))
               for _, r in budget_runs[b_role == "iterative"].iterrows()}
    frames = [(budget_runs, budget_points)]
    if not repeats_runs.empty:
        r_role = roles(repeats_runs)
        thresholds = repeats_runs.get("spec.method_args.oialr_threshold", pd.Series(np.nan, index=repeats_runs.index))
        keep = (((r_role == "one-shot") & pd.Series([k in one_keys for k in zip(repeats_runs["method"],
                                                                                 repeats_runs["setting"])],
                                                    index=repeats_runs.index))
                | ((r_role == "iterative") & pd.Series([k in it_keys for k in zip(repeats_runs["method"], thresholds)],
                                                       index=repeats_runs.index)))
        keep &= repeats_runs["dataset"].isin(set(budget_runs["dataset"]))   # the datasets the budget axis has
        frames.append((repeats_runs[keep], repeats_points))
    rows = []
    for runs, points in frames:
        role = roles(runs)
        p = pareto_points(points)
        for (ds, ep, s), g in runs.groupby(["dataset", "epochs", SEED]):
            it, one = g[role[g.index] == "iterative"], g[role[g.index] == "one-shot"]
            if it.empty or one.empty:
                continue
            cmp = compare_fronts(p[p["run"].isin(set(it["run"]))], p[p["run"].isin(set(one["run"]))], budgets=[at],
                                 **selection(p))
            rows.append({"dataset": ds, "epochs": int(ep), "seed": s, "iterative": ", ".join(sorted(it["run"])),
                         "one-shot": ", ".join(sorted(one["run"])),
                         "gap": float(cmp["gaps"][0]) if cmp["n_compared"] else np.nan,
                         "iterative accuracy": float(cmp["a"][0]) if cmp["n_compared"] else np.nan,
                         "one-shot accuracy": float(cmp["b"][0]) if cmp["n_compared"] else np.nan})
    return pd.DataFrame(rows, columns=cols).sort_values(["dataset", "epochs", "seed"]).reset_index(drop=True)


def budget_summary(gaps: pd.DataFrame, columns: Sequence[str] = ("gap", "iterative accuracy", "one-shot accuracy")
                   ) -> pd.DataFrame:
    """Per dataset and budget: the mean of each of ``columns`` over the seeds where the gap was measured,
    with its 95 % t interval (``<column> lo`` / ``hi``), the number of seeds and the verdict on the gap."""
    rows = []
    for (ds, ep), g in gaps.groupby(["dataset", "epochs"]):
        g = g[np.isfinite(g["gap"].astype(float))]
        row: dict[str, Any] = {"dataset": ds, "epochs": int(ep), "seeds": len(g)}
        for c in columns:
            iv = t_interval(g[c].to_numpy(dtype=float))
            row.update({c: iv.mean, f"{c} lo": iv.lo, f"{c} hi": iv.hi})
            if c == "gap":
                row["decision"] = interval_sign(iv)
        rows.append(row)
    return pd.DataFrame(rows)
