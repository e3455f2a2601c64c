"""The pre-trained bases every compression run starts from (the paper's Table 3–5 "Base Training"; offline we
train our own), and whether each one had converged: a base still improving at the end of its training would
let fine-tuning "improve" on it and confound every comparison made on it.

    from study.bases import base_table
    base_table(load_points("runs", "pretrain"))     # one row per base, with its convergence check
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CONVERGED_GAIN", "MIN_EPOCHS", "base_table"]

#: a base counts as converged when its test accuracy rose by at most this much over the last quarter of its
#: epochs: one accuracy point, the scale below which the study's single-run differences are noise (the
#: pooled seed-to-seed std of the decisive sweep is of that order)
CONVERGED_GAIN = 0.01
#: below this many epochs (evaluated once each) the last quarter holds no evaluation of its own to compare
MIN_EPOCHS = 4


def _at(epochs: pd.DataFrame, fraction: float) -> float:
    """Test accuracy after the epoch closest to ``fraction`` of the run (at least epoch 1)."""
    last = int(epochs["epoch"].max())
    e = max(1, int(round(fraction * last)))
    return float(epochs.loc[(epochs["epoch"] - e).abs().idxmin(), "accuracy"])


def base_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per base of ``runs/pretrain`` (its evaluation records, :func:`study.runs.load_points`): the
    dataset, model, seed, epochs, test accuracy at 50 %, 75 % and 100 % of its epochs, the gain over the last
    quarter and the convergence check (gain ≤ :data:`CONVERGED_GAIN`)."""
    cols = ["base", "dataset", "model", "seed", "epochs", "acc @50%", "acc @75%", "final", "last-quarter gain",
            "converged"]
    if points.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for run, g in points.groupby("run", sort=True):
        ep = g[g["kind"] == "epoch"].dropna(subset=["accuracy"])
        fin = g[g["kind"] == "final"]
        final = float(fin["accuracy"].iloc[-1]) if len(fin) else (float(ep["accuracy"].iloc[-1]) if len(ep) else np.nan)
        if ep.empty:
            # evaluation only (no training epochs): nothing to converge
            rows.append({"base": run, "dataset": g["dataset"].iloc[0], "model": g["model"].iloc[0],
                         "seed": g["random_state"].iloc[0], "epochs": 0, "acc @50%": np.nan, "acc @75%": np.nan,
                         "final": final, "last-quarter gain": np.nan, "converged": "not trained"})
            continue
        a75 = _at(ep, 0.75)
        gain = final - a75
        last = int(ep["epoch"].max())
        rows.append({"base": run, "dataset": g["dataset"].iloc[0], "model": g["model"].iloc[0],
                     "seed": g["random_state"].iloc[0], "epochs": int(ep["epoch"].max()), "acc @50%": _at(ep, 0.5),
                     "acc @75%": a75, "final": final, "last-quarter gain": gain,
                     "converged": (f"not checked: {last} epochs (evaluated once per epoch)" if last < MIN_EPOCHS
                                   else "yes" if gain <= CONVERGED_GAIN else "no: still improving")})
    return pd.DataFrame(rows, columns=cols)
