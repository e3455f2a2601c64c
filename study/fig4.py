"""Figure 4 of the paper: Pareto fronts per cutoff schedule with depth (the tolerated error of each cut
constant, increasing or decreasing with the layer's depth), and its claim (d): increasing ≥ constant ≥
decreasing.

Reads ``runs/fig4`` (``spec.method_args.oialr_depth_schedule``); notebook
``notebooks/04_fig4_depth_schedules.py`` writes the figure and tables (:mod:`study.pareto`, one front per
method · schedule).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .fronts import compare_fronts, pareto_points
from .pareto import pareto_artifact
from .registry import register
from .verdicts import Noise, Verdict, coverage_verdict, covered, decide, front_comparison_text

__all__ = ["NOTEBOOK", "SWEEP", "FIGURE", "BEST_AT_BUDGET", "FRONTS", "verdict_depth_schedules", "ARTIFACT"]

NOTEBOOK = "04_fig4_depth_schedules"
SWEEP = "fig4"
FIGURE = "fig4_depth_schedules"
BEST_AT_BUDGET, FRONTS = "fig4_best_at_budget", "fig4_fronts"        # tables
#: the depth schedules (``spec.method_args.oialr_depth_schedule``) in the order claim (d) ranks them
SCHEDULES = ("increasing", "constant", "decreasing")


def verdict_depth_schedules(points: pd.DataFrame, noise: Noise) -> list[Verdict]:
    """Claim (d), per (dataset, method) of ``runs/fig4``: fronts of the increasing / constant /
    decreasing threshold schedules, compared at matched sizes. A pair whose comparison covers too little
    of the sizes the two fronts share (:func:`covered`) decides nothing. Reproduced when no decided pair
    is reversed beyond the noise and increasing beats decreasing beyond it; not reproduced when any
    decided pair is reversed beyond the noise; inconclusive (coverage) when increasing vs decreasing is
    not decided for lack of coverage."""
    statement = "(d) increasing-with-depth ≥ constant ≥ decreasing cutoff schedules"
    paper_txt = "Figure 4: 'increasing the amount of error with depth tends to perform best'; decreasing worst"
    p = pareto_points(points, compressed_only=True)
    if p.empty:
        return [Verdict("(d)", statement, paper_txt, "no runs", "no compressed points in runs/fig4")]
    out = []
    groups = list(p.groupby(["dataset", "method"], sort=True))
    for (ds, m), d in groups:
        lab = f"(d) {ds} {m}" if len(groups) > 1 else "(d)"
        by = {s: d[d["schedule"] == s] for s in SCHEDULES}
        present = [s for s, g in by.items() if not g.empty]
        if len(present) < 2:
            out.append(Verdict(lab, statement, paper_txt, "no runs",
                               f"{ds} {m}: schedules present: {', '.join(present) or 'none'}"))
            continue
        pairs = [("increasing", "constant"), ("constant", "decreasing"), ("increasing", "decreasing")]
        cmps = {(x, y): compare_fronts(by[x], by[y]) for x, y in pairs if x in present and y in present}
        ev = f"{ds} {m}: " + "; ".join(front_comparison_text(c, x, y) for (x, y), c in cmps.items())
        gaps = {k: c["mean_gap"] for k, c in cmps.items() if covered(c)}
        tol = noise.tolerance
        extremes = ("increasing", "decreasing")
        if any(g < -tol for g in gaps.values()):
            verdict = "not reproduced"
        elif extremes in gaps:
            verdict = decide(gaps[extremes], tol)
        elif extremes in cmps or not gaps:
            # the pair that decides the claim, or every pair, was compared over too few matched sizes
            verdict = coverage_verdict(cmps[extremes] if extremes in cmps else next(iter(cmps.values())))
        else:
            verdict = f"inconclusive (schedules missing: {', '.join(sorted(set(by) - set(present)))})"
        ext = cmps.get(extremes)
        out.append(Verdict(lab, statement, paper_txt, verdict, ev,
                           effect=(f"increasing − decreasing {ext['mean_gap']:+.4f}"
                                   if ext is not None and np.isfinite(ext["mean_gap"]) else "–"),
                           sizes=(f"{ext['n_compared']}/{ext['n_grid']} budgets (coverage {100 * ext['coverage']:.0f}%)"
                                  if ext is not None else "–"), datasets=str(ds)))
    return out


ARTIFACT = register(pareto_artifact(
    "fig4", "Figure 4", notebook=NOTEBOOK, sweep=SWEEP, figure=FIGURE, tables=(BEST_AT_BUDGET, FRONTS),
    claim="(d)", verdict=verdict_depth_schedules,
    heading="## (d) Figure 4: cutoff schedules with depth"))
