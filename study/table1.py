"""Table 1 of the paper: zero-shot vs fine-tuned accuracy of SVD and FWSVD on the MLP layers, ours beside
the paper's, and its claim (a): FWSVD beats SVD zero-shot and the gap mostly closes after fine-tuning.

Reads ``runs/table1`` (one-shot ``svd`` / ``fwsvd`` runs at several ranks), the bases ``runs/pretrain``
(the full model's row) and the paper's numbers ``reports/paper/table1.csv``; notebook
``notebooks/01_table1_zero_shot.py`` writes the tables and the figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .families import METHOD_ORDER, ONE_SHOT, sort_labels
from .registry import Artifact, Inputs, register
from .runs import BASES
from .style import method_colors, no_runs_axes
from .verdicts import NOISE_SWEEP, Noise, Verdict, decide, per_dataset
from .writers import include_figure, include_table, new_figure, no_runs_table

__all__ = ["SWEEP", "NOTEBOOK", "OURS", "WIDE", "PAPER", "FIGURE", "paper_table1", "paper_table1_long",
           "table1_table", "table1_wide", "table1_figure", "verdict_table1", "ARTIFACT"]

NOTEBOOK = "01_table1_zero_shot"
SWEEP = "table1"
#: the paper's Table 1, copied by hand (reports/paper/README.md), relative to the reports folder
PAPER_CSV = "paper/table1.csv"
#: the zero-shot projection table of the `projection_table` stage (lowrank.projection_table)
PROJECTION_TABLE = "projection_minilm"
OURS, WIDE, PAPER = "table1_ours", "table1_wide", "table1_paper"       # tables
FIGURE = "table1_zero_shot"


def paper_table1(reports_dir: str | Path = "reports") -> pd.DataFrame:
    """The paper's Table 1 (``reports/paper/table1.csv``): phase, method, pct_params, accuracy."""
    path = Path(reports_dir) / PAPER_CSV
    if not path.is_file():
        return pd.DataFrame(columns=["phase", "method", "pct_params", "accuracy", "source"])
    return pd.read_csv(path)


def paper_table1_long(paper: pd.DataFrame, label: str = "the paper (ViT-B/16)") -> pd.DataFrame:
    """The paper's Table 1 in the long form of :func:`table1_table` (``dataset`` = ``label``)."""
    if paper.empty:
        return no_runs_table(SWEEP, f"reports/{PAPER_CSV} not found")
    wide = paper.pivot_table(index=["method", "pct_params"], columns="phase", values="accuracy").reset_index()
    wide = wide.rename(columns={"pct_params": "% MLP params"}).assign(dataset=label, rank=np.nan, n=1)
    order = {m: i for i, m in enumerate(METHOD_ORDER + ("full model",))}
    wide = wide.assign(_o=wide["method"].map(lambda m: order.get(m, 99))).sort_values(["_o", "% MLP params"])
    return wide[["dataset", "method", "rank", "% MLP params", "zero-shot", "fine-tuned", "n"]].reset_index(drop=True)


def table1_table(runs: pd.DataFrame, pretrain: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our Table 1 in long form: dataset, method, rank, % of MLP (target) parameters, zero-shot accuracy
    (the ``start`` record, right after the projection) and fine-tuned accuracy (``final``), averaged
    over repeats (``n``). The full model's row comes from a ``dense`` run in the sweep if there is one
    (zero-shot = its start, fine-tuned = its final), else from the pre-training run of that dataset."""
    if runs.empty:
        return no_runs_table(SWEEP)
    one = runs[runs["method"].isin(ONE_SHOT)]
    rows = []
    for (ds, m, r), g in one.groupby(["dataset", "method", "rank"], dropna=False):
        rows.append({"dataset": ds, "method": m, "rank": r,
                     "% MLP params": 100 * g["start_compression_ratio_target"].fillna(
                         g["compression_ratio_target"]).mean(),
                     "zero-shot": g["start_accuracy"].mean(), "fine-tuned": g["accuracy"].mean(), "n": len(g)})
    for ds in sorted(runs["dataset"].dropna().unique()):
        dense = runs[(runs["dataset"] == ds) & (runs["method"] == "dense")]
        if not dense.empty:
            rows.append({"dataset": ds, "method": "full model", "rank": np.nan, "% MLP params": 100.0,
                         "zero-shot": dense["start_accuracy"].mean(), "fine-tuned": dense["accuracy"].mean(),
                         "n": len(dense)})
        elif pretrain is not None and not pretrain.empty and (pretrain["dataset"] == ds).any():
            pre = pretrain[pretrain["dataset"] == ds]
            rows.append({"dataset": ds, "method": "full model", "rank": np.nan, "% MLP params": 100.0,
                         "zero-shot": pre["accuracy"].mean(), "fine-tuned": np.nan, "n": len(pre)})
    if not rows:
        return no_runs_table(SWEEP, "no svd/fwsvd runs")
    df = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_ORDER + ("full model",))}
    df["_o"] = df["method"].map(lambda m: order.get(m, 99))
    return df.sort_values(["dataset", "_o", "% MLP params"]).drop(columns="_o").reset_index(drop=True)


def table1_wide(long: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: one row per (dataset, phase, method), one column per % of parameters."""
    if "status" in long.columns:
        return long
    parts = []
    for phase in ("zero-shot", "fine-tuned"):
        d = long.assign(phase=phase, col=long["% MLP params"].map(lambda v: f"{v:.1f}%"), val=long[phase])
        parts.append(d)
    d = pd.concat(parts)
    d.loc[d["method"] == "full model", "col"] = "full model"
    wide = d.pivot_table(index=["dataset", "phase", "method"], columns="col", values="val", aggfunc="mean",
                         sort=False)
    cols = sorted([c for c in wide.columns if c != "full model"], key=lambda c: float(c[:-1]))
    cols += ["full model"] if "full model" in wide.columns else []
    wide = wide[cols].reset_index()
    wide = wide[wide["method"] != "full model"].reset_index(drop=True) if "full model" in cols else wide
    full = d[d["method"] == "full model"].set_index(["dataset", "phase"])["val"]
    if len(full):
        wide["full model"] = [full.get((ds, ph), np.nan) for ds, ph in zip(wide["dataset"], wide["phase"])]
    wide["phase"] = pd.Categorical(wide["phase"], ["zero-shot", "fine-tuned"])
    return wide.sort_values(["dataset", "phase"], kind="mergesort").reset_index(drop=True).astype({"phase": str})


def table1_figure(ours: pd.DataFrame, paper: pd.DataFrame, title: str) -> Figure:
    """Zero-shot (left) and fine-tuned (right) accuracy vs % of MLP parameters, one row of panels for
    the paper's values and one per dataset of ours (both in the long form of :func:`table1_table`);
    the dotted line is the full model."""
    sources: list[tuple[str, pd.DataFrame | None]] = []
    if "status" not in paper.columns and not paper.empty:
        sources += [(str(ds), g) for ds, g in paper.groupby("dataset", sort=False)]
    if "status" in ours.columns or ours.empty:
        sources.append(("ours", None))
    else:
        sources += [(f"ours: {ds}", g) for ds, g in ours.groupby("dataset", sort=True)]
    fig, axes = new_figure(len(sources), 2, width=5.0, height=3.4)
    colors = method_colors(ONE_SHOT)
    for i, (name, d) in enumerate(sources):
        for j, phase in enumerate(("zero-shot", "fine-tuned")):
            ax = axes[i, j]
            if d is None:
                no_runs_axes(ax, f"no runs in runs/{SWEEP}")
                ax.set_title(f"{name} — {phase}", fontsize=10)
                continue
            for m in sort_labels(d.loc[d["method"].isin(ONE_SHOT), "method"]):
                g = d[d["method"] == m].sort_values("% MLP params")
                ax.plot(g["% MLP params"], g[phase], "o-", color=colors[m], label=m.upper())
            full = d.loc[d["method"] == "full model", phase].dropna()
            if len(full):
                ax.axhline(float(full.iloc[0]), color="0.4", ls=":", lw=1.2, label="full model")
            ax.set_title(f"{name} — {phase}", fontsize=10)
            ax.set_xlabel("% of MLP parameters")
            ax.set_ylabel("test accuracy")
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


_PAPER_A = ("Table 1: FWSVD beats SVD zero-shot (e.g. 0.6982 vs 0.4126 at 47.8% of MLP parameters), and "
            "after fine-tuning the two are within about 0.02 of each other")


def _table1_gaps(t: pd.DataFrame, acc: str = "accuracy") -> tuple[pd.DataFrame, float, float]:
    """Pair SVD and FWSVD at the same % of parameters: zero-shot and fine-tuned gaps (FWSVD − SVD)."""
    piv = t.pivot_table(index="key", columns=["phase", "method"], values=acc, aggfunc="mean")
    need = [("zero-shot", "svd"), ("zero-shot", "fwsvd"), ("fine-tuned", "svd"), ("fine-tuned", "fwsvd")]
    if any(c not in piv.columns for c in need):
        return pd.DataFrame(), float("nan"), float("nan")
    piv = piv[need].dropna()
    gaps = pd.DataFrame({"zero-shot gap": piv[("zero-shot", "fwsvd")] - piv[("zero-shot", "svd")],
                         "fine-tuned gap": piv[("fine-tuned", "fwsvd")] - piv[("fine-tuned", "svd")]})
    if gaps.empty:
        return gaps, float("nan"), float("nan")
    return gaps, float(gaps["zero-shot gap"].mean()), float(gaps["fine-tuned gap"].abs().mean())


def _table1_decision(zs: float, ft_abs: float, tol: float) -> str:
    """(a): FWSVD ahead zero-shot by more than the noise, and the fine-tuned gap at most half of it
    (or within noise)."""
    if not np.isfinite(zs):
        return "no runs"
    first = decide(zs, tol)
    if first != "reproduced":
        return first
    return "reproduced" if ft_abs <= max(tol, 0.5 * zs) else "not reproduced"


def verdict_table1(runs: pd.DataFrame, noise: Noise, paper: pd.DataFrame | None = None,
                   noise_datasets: Iterable[str] | None = None) -> list[Verdict]:
    """Claim (a), per dataset of ``runs/table1``: mean zero-shot gap FWSVD − SVD over the ranks both
    were run at, and the mean absolute fine-tuned gap. ``noise_datasets``: the datasets the repeats
    (hence the tolerance) come from; a dataset outside them is flagged in the evidence."""
    statement = "(a) FWSVD beats SVD zero-shot; the gap mostly closes after fine-tuning"
    paper_txt = _PAPER_A
    if paper is not None and not paper.empty:
        pt = paper[paper["method"].isin(["svd", "fwsvd"])].assign(key=lambda d: d["pct_params"])
        _, pzs, pft = _table1_gaps(pt)
        if np.isfinite(pzs):
            paper_txt += f" (mean zero-shot gap {pzs:+.4f}, mean |fine-tuned gap| {pft:.4f})"
    one = runs[runs["method"].isin(["svd", "fwsvd"])] if not runs.empty else runs
    if one.empty:
        return [Verdict("(a)", statement, paper_txt, "no runs", "no svd/fwsvd runs in runs/table1")]
    out = []
    for ds, lab, d in per_dataset(one, "(a)"):
        long = pd.concat([
            d.assign(phase="zero-shot", acc=d["start_accuracy"]),
            d.assign(phase="fine-tuned", acc=d["accuracy"]),
        ]).assign(key=lambda x: x["rank"])
        gaps, zs, ft = _table1_gaps(long, "acc")
        if gaps.empty:
            out.append(Verdict(lab, statement, paper_txt, "no runs",
                               f"{ds}: no rank at which both SVD and FWSVD finished"))
            continue
        ahead = int((gaps["zero-shot gap"] > 0).sum())
        ev = (f"{ds}: zero-shot FWSVD − SVD mean {zs:+.4f} over {len(gaps)} ranks "
              f"(FWSVD ahead at {ahead}/{len(gaps)}; "
              f"per rank: " + ", ".join(f"r={k:g}: {v:+.3f}" for k, v in gaps["zero-shot gap"].items())
              + f"); fine-tuned mean |FWSVD − SVD| {ft:.4f} (per rank: "
              + ", ".join(f"r={k:g}: {v:+.3f}" for k, v in gaps["fine-tuned gap"].items())
              + f"); rule: zero-shot gap > tol = {noise.tolerance:.4f} and fine-tuned |gap| ≤ max(tol, half of it)")
        if noise_datasets is not None and ds not in set(noise_datasets):
            ev += f" (the tolerance comes from the repeats of {', '.join(sorted(map(str, noise_datasets))) or 'none'}: " \
                  f"no repeats of {ds})"
        out.append(Verdict(lab, statement, paper_txt, _table1_decision(zs, ft, noise.tolerance), ev))
    return out


def verdicts(inputs: Inputs) -> list[Verdict]:
    repeats = inputs.runs(NOISE_SWEEP)
    return verdict_table1(inputs.runs(SWEEP), inputs.noise, paper_table1(inputs.reports_dir),
                          set(repeats["dataset"].dropna().astype(str)))


def section(reports_dir: Path) -> list[str]:
    return [
        "## (a) Table 1: zero-shot vs fine-tuned, SVD vs FWSVD (MLP layers only)",
        "",
        "Ours (zero-shot = evaluation right after the projection; fine-tuned = after the fine-tuning budget):",
        "",
        include_table(reports_dir, WIDE, NOTEBOOK),
        f"The paper's Table 1 (ViT-B/16; `reports/{PAPER_CSV}`):",
        "",
        include_table(reports_dir, PAPER, NOTEBOOK),
        include_figure(reports_dir, FIGURE, "Table 1 (the paper)"),
        "Zero-shot projection errors of MiniLM's MLP layers (Eq. 4 / 5 / 7): see "
        f"[`tables/{PROJECTION_TABLE}.md`](tables/{PROJECTION_TABLE}.md)"
        + ("" if (reports_dir / "tables" / f"{PROJECTION_TABLE}.md").is_file() else " (not generated yet)") + ".",
        "",
    ]


ARTIFACT = register(Artifact(
    "table1", "Table 1", "experiment", notebook=NOTEBOOK, sweeps=(SWEEP,),
    inputs=(f"runs/{BASES}", f"runs/{NOISE_SWEEP}", f"reports/{PAPER_CSV}", f"reports/tables/{PROJECTION_TABLE}.md"),
    figures=(FIGURE,), tables=(OURS, WIDE, PAPER), claims=("(a)",), verdicts=verdicts, section=section))
