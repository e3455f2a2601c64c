"""Figure 3 of the paper: Pareto fronts of a language model (BERT-base on GLUE in the paper; the real
pretrained MiniLM-L6 on the offline text task in the small profile), and its claim (h): with short
fine-tuning, one-shot projection does at least as well as iterative compression (Section 5.2).

Reads ``runs/fig3``; notebook ``notebooks/03_fig3_bert_glue.py`` writes the figure and tables with the
code of Figure 2 (:mod:`study.pareto`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .families import ITERATIVE, ONE_SHOT, label_key
from .fronts import best_point, compare_fronts, selection
from .pareto import pareto_artifact
from .registry import register
from .verdicts import Noise, Verdict, decide_fronts, front_comparison_text, per_dataset_verdicts

__all__ = ["NOTEBOOK", "SWEEP", "PARETO", "BEST_AT_BUDGET", "FRONTS", "verdict_language_model", "ARTIFACT"]

NOTEBOOK = "03_fig3_bert_glue"
SWEEP = "fig3"
PARETO = "fig3_pareto"                                               # figure
BEST_AT_BUDGET, FRONTS = "fig3_best_at_budget", "fig3_fronts"        # tables
#: the budget of the summary metric (reports/metrics/summary.json): best accuracy at any size
METRIC_BUDGET = 1.0


def verdict_language_model(points: pd.DataFrame, noise: Noise) -> list[Verdict]:
    """Claim (h), per dataset of ``runs/fig3``: under a short fine-tuning budget one-shot projections
    are at least as good as the iterative methods (front of the one-shot family minus that of the
    iterative family, at matched sizes over the budgets both reach). Reproduced when one-shot is ahead
    beyond the noise, not reproduced when iterative is ahead beyond it, inconclusive when the matched
    sizes cover too little of the shared range (:func:`decide_fronts`)."""
    statement = ("(h) on the language model, with short fine-tuning, one-shot projection does at least as well as "
                 "iterative")
    paper_txt = ("Section 5.2, Figure 3 (BERT on GLUE): 'minimal difference' between the fronts, and 'the superior "
                 "performance of non-iterative methods like FWSVD and TFWSVD' attributed to the short budget")

    def one_dataset(ds: Any, lab: str, d: pd.DataFrame) -> Verdict:
        one, it = d[d["method"].isin(ONE_SHOT)], d[d["method"].isin(ITERATIVE)]
        if one.empty or it.empty:
            return Verdict(lab, statement, paper_txt, "no runs",
                           f"{ds}: no {'one-shot' if one.empty else 'iterative'} runs in runs/fig3")
        cmp = compare_fronts(one, it, **selection(one, it))
        per = ", ".join(f"{m} best {(b := best_point(g))['accuracy']:.4f} at {100 * b['compression_ratio_target']:.1f}%"
                        for m, g in sorted(d.groupby("method"), key=lambda kv: label_key(kv[0])))
        ev = (f"{ds}: {front_comparison_text(cmp, 'one-shot', 'iterative')}; per method: {per}; the tolerance "
              f"{noise.tolerance:.4f} comes from the repeats sweep")
        return Verdict(lab, statement, paper_txt, decide_fronts(cmp, noise.tolerance), ev,
                       effect=f"{cmp['mean_gap']:+.4f}" if np.isfinite(cmp["mean_gap"]) else "–",
                       sizes=f"{cmp['n_compared']}/{cmp['n_grid']} budgets (coverage {100 * cmp['coverage']:.0f}%)",
                       datasets=str(ds))

    return per_dataset_verdicts(points, "(h)", statement, paper_txt, SWEEP, one_dataset)


ARTIFACT = register(pareto_artifact(
    "fig3", "Figure 3", notebook=NOTEBOOK, sweep=SWEEP, figure=PARETO, tables=(BEST_AT_BUDGET, FRONTS),
    claim="(h)", verdict=verdict_language_model, metric_budget=METRIC_BUDGET,
    heading="## (h) Figure 3: the language model (MiniLM on the offline text task; BERT on GLUE in the paper)"))
