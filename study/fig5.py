"""Figure 5 of the paper (its Appendix D): global vs local rank selection, per-layer energy thresholds
(IEHT, IFHT) against one threshold over the spectra of all layers (globalIEHT, globalIFHT), and its claim
(e): local beats global.

Reads ``runs/fig5`` (the global methods, the three bases of each vision dataset) and the local ones from the
decisive sweep (``runs/repeats``: its IEHT and IFHT β = 0.8 are this figure's local settings, the same specs
on the same bases, so each is run once); notebook ``notebooks/05_fig5_global_vs_local.py`` writes the figure
and tables (:mod:`study.pareto`, seed 0) and decides the claim over the seeds.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from .fronts import compare_fronts, selection
from .pareto import pareto_artifact
from .registry import register
from .intervals import MIN_SEEDS
from .verdicts import (NOISE_SWEEP, Noise, Verdict, decide_fronts, decide_over_seeds, front_comparison_text,
                       front_gap_over_seeds, over_seeds_text, per_dataset_verdicts, seeds_of, seeds_text,
                       single_seed)

__all__ = ["NOTEBOOK", "SWEEP", "FIGURE", "BEST_AT_BUDGET", "FRONTS", "BORROWED", "PAIRS", "verdict_local_vs_global",
           "ARTIFACT"]

NOTEBOOK = "05_fig5_global_vs_local"
SWEEP = "fig5"
FIGURE = "fig5_global_vs_local"
BEST_AT_BUDGET, FRONTS = "fig5_best_at_budget", "fig5_fronts"        # tables
#: (local, global) pairs claim (e) compares: per-layer thresholds against one over all layers' spectra
PAIRS = (("ieht", "global_ieht"), ("ifht", "global_ifht"))
#: the runs of other sweeps that are this figure's settings (:meth:`study.registry.Inputs.figure_points`):
#: the local methods are the decisive sweep's IEHT and IFHT β = 0.8 on the same bases
BORROWED = {NOISE_SWEEP: ("ieht_80", "ifht_80")}


def _combine(decisions: list[str]) -> str:
    """Not reproduced when any pair goes against the claim, reproduced when every pair supports it, else the
    first inconclusive pair's reason."""
    if any(v == "not reproduced" for v in decisions):
        return "not reproduced"
    if all(v == "reproduced" for v in decisions):
        return "reproduced"
    return next(v for v in decisions if v not in ("reproduced", "not reproduced"))


def verdict_local_vs_global(points: pd.DataFrame, noise: Noise) -> list[Verdict]:
    """Claim (e), per dataset of ``runs/fig5``: IEHT − global IEHT and IFHT − global IFHT fronts at
    matched sizes, each decided by :func:`decide_fronts` (inconclusive when it covers too little of the
    sizes the pair shares). Reproduced when every available pair favours local beyond the noise; not
    reproduced when any pair favours global beyond it. With at least three seeds each pair is decided by its
    front gap's 95 % t interval over seeds instead; with fewer, at most "inconclusive"
    (:func:`study.verdicts.single_seed`)."""
    statement = "(e) local rank selection beats global"
    paper_txt = ("Appendix D, Figure 5: globalIEHT 'does not perform well'; globalIFHT 'underperforms, though not "
                 "significantly'")

    def one_dataset(ds: Any, lab: str, d: pd.DataFrame) -> Verdict:
        present = [(loc, glo) for loc, glo in PAIRS
                   if not d[d["method"] == loc].empty and not d[d["method"] == glo].empty]
        if not present:
            return Verdict(lab, statement, paper_txt, "no runs", f"{ds}: no local/global pair with runs")
        seeds = seeds_of(d)
        if len(seeds) >= MIN_SEEDS:
            ivs = {(x, y): front_gap_over_seeds(d[d["method"] == x], d[d["method"] == y]) for x, y in present}
            ev = f"{ds}: " + "; ".join(over_seeds_text(iv, ps, x, y) for (x, y), (iv, ps) in ivs.items())
            return Verdict(lab, statement, paper_txt, _combine([decide_over_seeds(iv, ps) for iv, ps in ivs.values()]),
                           ev, effect="; ".join(f"{x}: {iv.effect_text()}" for (x, _), (iv, _) in ivs.items()),
                           interval="; ".join(f"{x}: {iv.bounds_text()}" for (x, _), (iv, _) in ivs.items()),
                           sizes="; ".join(f"{x}: coverage per seed "
                                           + ", ".join(f"{r['seed']}: {100 * r['coverage']:.0f}%"
                                                       for _, r in ps.iterrows())
                                           for (x, _), (_, ps) in ivs.items()),
                           datasets=str(ds), seeds=seeds_text(next(iter(ivs.values()))[1]))
        cmps = {(x, y): compare_fronts(a, b, **selection(a, b))
                for x, y in present for a, b in [(d[d["method"] == x], d[d["method"] == y])]}
        ev = f"{ds}: " + "; ".join(front_comparison_text(c, x, y) for (x, y), c in cmps.items())
        verdict = _combine([decide_fronts(c, noise.tolerance) for c in cmps.values()])
        if seeds:
            verdict = single_seed(verdict, len(seeds))
        return Verdict(lab, statement, paper_txt, verdict, ev,
                       effect="; ".join(f"{x}: {c['mean_gap']:+.4f}" for (x, _), c in cmps.items()),
                       sizes="; ".join(f"{x}: {c['n_compared']}/{c['n_grid']} budgets" for (x, _), c in cmps.items()),
                       datasets=str(ds))

    return per_dataset_verdicts(points, "(e)", statement, paper_txt, SWEEP, one_dataset)


ARTIFACT = register(pareto_artifact(
    "fig5", "Figure 5", notebook=NOTEBOOK, sweep=SWEEP, figure=FIGURE, tables=(BEST_AT_BUDGET, FRONTS),
    claim="(e)", verdict=verdict_local_vs_global, borrowed=BORROWED,
    heading="## (e) Figure 5: global vs local rank selection"))
