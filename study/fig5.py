"""Figure 5 of the paper (its Appendix D): global vs local rank selection, per-layer energy thresholds
(IEHT, IFHT) against one threshold over the spectra of all layers (globalIEHT, globalIFHT), and its claim
(e): local beats global.

Reads ``runs/fig5``; notebook ``notebooks/05_fig5_global_vs_local.py`` writes the figure and tables
(:mod:`study.pareto`).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from .fronts import compare_fronts
from .pareto import pareto_artifact
from .registry import register
from .verdicts import Noise, Verdict, decide_fronts, front_comparison_text, per_dataset_verdicts

__all__ = ["NOTEBOOK", "SWEEP", "FIGURE", "BEST_AT_BUDGET", "FRONTS", "verdict_local_vs_global", "ARTIFACT"]

NOTEBOOK = "05_fig5_global_vs_local"
SWEEP = "fig5"
FIGURE = "fig5_global_vs_local"
BEST_AT_BUDGET, FRONTS = "fig5_best_at_budget", "fig5_fronts"        # tables
#: (local, global) pairs claim (e) compares: per-layer thresholds against one over all layers' spectra
PAIRS = (("ieht", "global_ieht"), ("ifht", "global_ifht"))


def verdict_local_vs_global(points: pd.DataFrame, noise: Noise) -> list[Verdict]:
    """Claim (e), per dataset of ``runs/fig5``: IEHT − global IEHT and IFHT − global IFHT fronts at
    matched sizes, each decided by :func:`decide_fronts` (inconclusive when it covers too little of the
    sizes the pair shares). Reproduced when every available pair favours local beyond the noise; not
    reproduced when any pair favours global beyond it."""
    statement = "(e) local rank selection beats global"
    paper_txt = ("Appendix D, Figure 5: globalIEHT 'does not perform well'; globalIFHT 'underperforms, though not "
                 "significantly'")

    def one_dataset(ds: Any, lab: str, d: pd.DataFrame) -> Verdict:
        cmps = {}
        for loc, glo in PAIRS:
            a, b = d[d["method"] == loc], d[d["method"] == glo]
            if not a.empty and not b.empty:
                cmps[(loc, glo)] = compare_fronts(a, b)
        if not cmps:
            return Verdict(lab, statement, paper_txt, "no runs", f"{ds}: no local/global pair with runs")
        ev = f"{ds}: " + "; ".join(front_comparison_text(c, x, y) for (x, y), c in cmps.items())
        decisions = [decide_fronts(c, noise.tolerance) for c in cmps.values()]
        if any(v == "not reproduced" for v in decisions):
            verdict = "not reproduced"
        elif all(v == "reproduced" for v in decisions):
            verdict = "reproduced"
        else:
            verdict = next(v for v in decisions if v.startswith("inconclusive"))
        return Verdict(lab, statement, paper_txt, verdict, ev,
                       effect="; ".join(f"{x}: {c['mean_gap']:+.4f}" for (x, _), c in cmps.items()),
                       sizes="; ".join(f"{x}: {c['n_compared']}/{c['n_grid']} budgets" for (x, _), c in cmps.items()),
                       datasets=str(ds))

    return per_dataset_verdicts(points, "(e)", statement, paper_txt, SWEEP, one_dataset)


ARTIFACT = register(pareto_artifact(
    "fig5", "Figure 5", notebook=NOTEBOOK, sweep=SWEEP, figure=FIGURE, tables=(BEST_AT_BUDGET, FRONTS),
    claim="(e)", verdict=verdict_local_vs_global,
    heading="## (e) Figure 5: global vs local rank selection"))
