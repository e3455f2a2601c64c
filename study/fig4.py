"""Figure 4 of the paper: Pareto fronts per cutoff schedule with depth (the tolerated error of each cut
constant, increasing or decreasing with the layer's depth), and its claim (d): increasing ≥ constant ≥
decreasing.

Reads ``runs/fig4`` (``spec.method_args.oialr_depth_schedule``) on the three bases of each vision dataset
(digits, MNIST-1D), and the constant schedule from the decisive sweep (``runs/repeats``: its IEHT β = 0.8 is
this figure's constant setting, the same spec on the same bases, so it is run once); notebook
``notebooks/04_fig4_depth_schedules.py`` writes the figure and tables (:mod:`study.pareto`, one front per
method · schedule, seed 0) and decides the claim over the seeds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .fronts import compare_fronts, pareto_points, selection
from .intervals import MIN_SEEDS
from .pareto import pareto_artifact
from .registry import register
from .verdicts import (NOISE_SWEEP, Noise, Verdict, coverage_verdict, covered, decide, decide_over_seeds,
                       front_comparison_text, front_gap_over_seeds, over_seeds_text, seeds_of, seeds_text,
                       single_seed)

__all__ = ["NOTEBOOK", "SWEEP", "FIGURE", "BEST_AT_BUDGET", "FRONTS", "BORROWED", "SCHEDULES",
           "verdict_depth_schedules", "ARTIFACT"]

NOTEBOOK = "04_fig4_depth_schedules"
SWEEP = "fig4"
FIGURE = "fig4_depth_schedules"
BEST_AT_BUDGET, FRONTS = "fig4_best_at_budget", "fig4_fronts"        # tables
#: the depth schedules (``spec.method_args.oialr_depth_schedule``) in the order claim (d) ranks them
SCHEDULES = ("increasing", "constant", "decreasing")
#: the runs of other sweeps that are this figure's settings (:meth:`study.registry.Inputs.figure_points`):
#: the constant schedule is the decisive sweep's IEHT β = 0.8 on the same bases
BORROWED = {NOISE_SWEEP: ("ieht_80",)}
#: the pairs of schedules compared, (better, worse) as the claim orders them; the last decides it
PAIRS = (("increasing", "constant"), ("constant", "decreasing"), ("increasing", "decreasing"))


def _over_seeds(lab: str, ds: object, m: str, by: dict[str, pd.DataFrame], statement: str,
                paper_txt: str) -> Verdict:
    """Claim (d) for one (dataset, method) with at least three seeds: every pair's front gap over seeds
    (95 % t interval, each seed's fronts from its own runs); not reproduced when any pair's interval lies
    below zero, otherwise the verdict of increasing − decreasing's interval."""
    present = [s for s, g in by.items() if not g.empty]
    ivs = {(x, y): front_gap_over_seeds(by[x], by[y]) for x, y in PAIRS if x in present and y in present}
    ev = f"{ds} {m}: " + "; ".join(over_seeds_text(iv, ps, x, y) for (x, y), (iv, ps) in ivs.items())
    decisions = {k: decide_over_seeds(iv, ps) for k, (iv, ps) in ivs.items()}
    extremes = PAIRS[-1]
    if any(d == "not reproduced" for d in decisions.values()):
        verdict = "not reproduced"
    elif extremes in decisions:
        verdict = decisions[extremes]
    else:
        verdict = f"inconclusive (schedules missing: {', '.join(sorted(set(by) - set(present)))})"
    iv, ps = ivs.get(extremes, (None, None))
    return Verdict(lab, statement, paper_txt, verdict, ev,
                   effect=f"increasing − decreasing {iv.effect_text()}" if iv is not None else "–",
                   interval=iv.bounds_text() if iv is not None else "–",
                   sizes=("; ".join(f"{x} vs {y}: coverage per seed "
                                    + ", ".join(f"{r['seed']}: {100 * r['coverage']:.0f}%" for _, r in p.iterrows())
                                    for (x, y), (_, p) in ivs.items())),
                   datasets=str(ds), seeds=seeds_text(ps) if ps is not None else "–")


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
        seeds = seeds_of(d)
        if len(seeds) >= MIN_SEEDS:
            out.append(_over_seeds(lab, ds, m, by, statement, paper_txt))
            continue
        cmps = {(x, y): compare_fronts(by[x], by[y], **selection(by[x], by[y]))
                for x, y in PAIRS if x in present and y in present}
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
        if seeds:
            verdict = single_seed(verdict, len(seeds))
        ext = cmps.get(extremes)
        out.append(Verdict(lab, statement, paper_txt, verdict, ev,
                           effect=(f"increasing − decreasing {ext['mean_gap']:+.4f}"
                                   if ext is not None and np.isfinite(ext["mean_gap"]) else "–"),
                           sizes=(f"{ext['n_compared']}/{ext['n_grid']} budgets (coverage {100 * ext['coverage']:.0f}%)"
                                  if ext is not None else "–"), datasets=str(ds)))
    return out


ARTIFACT = register(pareto_artifact(
    "fig4", "Figure 4", notebook=NOTEBOOK, sweep=SWEEP, figure=FIGURE, tables=(BEST_AT_BUDGET, FRONTS),
    claim="(d)", verdict=verdict_depth_schedules, borrowed=BORROWED,
    heading="## (d) Figure 4: cutoff schedules with depth"))
