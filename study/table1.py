"""Table 1 of the paper: zero-shot vs fine-tuned accuracy of SVD and FWSVD on the MLP layers, ours beside
the paper's, and its claim (a): FWSVD beats SVD zero-shot and the gap mostly closes after fine-tuning.

Reads ``runs/table1`` — one group of one-shot runs per pre-trained base, ``runs/table1/<base>/<run>/``
(``digits_k0`` … ``mnist1d_k2``: seed k is both the base's pre-training seed and the run's
``train.random_state``; ``text``: one base, seed 0) —, the bases ``runs/pretrain`` (the full model's
row) and the paper's numbers ``reports/paper/table1.csv``; notebook ``notebooks/01_table1_zero_shot.py``
writes the tables and the figure.

Zero-shot accuracy is a run's ``start`` record (right after the projection), fine-tuned its final one;
a run with ``train.epochs == 0`` is zero-shot only and has no fine-tuned value. Besides the default FWSVD
(Fisher summed per output row, true Fisher), the vision groups hold two zero-shot ablations of how the
claim is read — the other axis (``fwsvd_axis = columns``) and the empirical Fisher
(``fisher_labels = empirical``) — each a separate row and a separate verdict.

Claim (a) is decided per dataset by 95 % t intervals over seeds (:mod:`study.intervals`), never by one
run: per seed, the mean zero-shot gap FWSVD − SVD over the ranks both were run at; and per seed, half of
that gap minus the absolute mean fine-tuned gap at the ranks both were fine-tuned at (positive when the
gap closes by more than half).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .families import METHOD_ORDER, ONE_SHOT
from .intervals import Interval, decide_interval, t_interval
from .registry import Artifact, Inputs, register
from .runs import BASES
from .style import method_colors, no_runs_axes
from .verdicts import Verdict, per_dataset
from .writers import include_figure, include_table, new_figure, no_runs_table

__all__ = ["SWEEP", "NOTEBOOK", "OURS", "WIDE", "PAPER", "ABLATION", "FIGURE", "SVD", "FWSVD", "COLUMNS",
           "EMPIRICAL", "ABLATIONS", "VARIANT_ORDER", "method_variant", "seed_cells", "paired_gaps",
           "seed_means", "closing_margins", "decide_claim_a", "paper_table1", "paper_table1_long", "paper_gaps",
           "table1_table", "table1_wide", "table1_ablation", "table1_figure", "verdict_table1",
           "verdict_ablation", "ARTIFACT"]

NOTEBOOK = "01_table1_zero_shot"
SWEEP = "table1"
#: the paper's Table 1, copied by hand (reports/paper/README.md), relative to the reports folder
PAPER_CSV = "paper/table1.csv"
#: the zero-shot projection table of the `projection_table` stage (lowrank.projection_table)
PROJECTION_TABLE = "projection_minilm"
OURS, WIDE, PAPER, ABLATION = "table1_ours", "table1_wide", "table1_paper", "table1_ablation"   # tables
FIGURE = "table1_zero_shot"

#: the method variants of Table 1's rows: the two projections claim (a) compares, and the two ablations
SVD, FWSVD = "svd", "fwsvd"
COLUMNS, EMPIRICAL = "fwsvd (columns)", "fwsvd (empirical Fisher)"
VARIANT_ORDER = (SVD, FWSVD, COLUMNS, EMPIRICAL)
#: the ablation variants of claim (a) → the name their verdict's label carries
ABLATIONS = {COLUMNS: "FWSVD columns", EMPIRICAL: "empirical Fisher"}
#: the FWSVD settings the ablations vary, with the defaults of lowrank.methods.oneshot (absent = default)
_DEFAULT_SETTINGS = {"fwsvd_axis": "rows", "fisher_labels": "true"}
_REQUIRED = ("dataset", "method", "rank", "random_state", "epochs", "start_accuracy", "accuracy")
_SEED_TEXT = "base and run seed"
#: the columns of :func:`table1_table` (and of :func:`paper_table1_long`)
_LONG_COLUMNS = ["dataset", "method", "rank", "% MLP params", "zero-shot", "zero-shot std", "fine-tuned",
                 "fine-tuned std", "n", "n fine-tuned"]


# ------------------------------------------------------------------------------------------ the paper's Table 1
def paper_table1(reports_dir: str | Path = "reports") -> pd.DataFrame:
    """The paper's Table 1 (``reports/paper/table1.csv``): phase, method, pct_params, accuracy."""
    path = Path(reports_dir) / PAPER_CSV
    if not path.is_file():
        return pd.DataFrame(columns=["phase", "method", "pct_params", "accuracy", "source"])
    return pd.read_csv(path)


def paper_table1_long(paper: pd.DataFrame, label: str = "the paper (ViT-B/16)") -> pd.DataFrame:
    """The paper's Table 1 in the long form of :func:`table1_table` (``dataset`` = ``label``; one value per
    cell, so no spread)."""
    if paper.empty:
        return no_runs_table(SWEEP, f"reports/{PAPER_CSV} not found")
    wide = paper.pivot_table(index=["method", "pct_params"], columns="phase", values="accuracy").reset_index()
    wide = wide.rename(columns={"pct_params": "% MLP params"}).assign(
        dataset=label, rank=np.nan, **{"zero-shot std": np.nan, "fine-tuned std": np.nan}, n=1,
        **{"n fine-tuned": 1})
    order = {m: i for i, m in enumerate(METHOD_ORDER + ("full model",))}
    wide = wide.assign(_o=wide["method"].map(lambda m: order.get(m, 99))).sort_values(["_o", "% MLP params"])
    return wide[_LONG_COLUMNS].reset_index(drop=True)


def paper_gaps(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's own Table 1 gaps FWSVD − SVD at each of its sizes (``pct_params``): ``zero-shot gap``
    and ``fine-tuned gap`` (empty when the file is absent or lacks a method or phase)."""
    cols = ["pct_params", "zero-shot gap", "fine-tuned gap"]
    if paper.empty:
        return pd.DataFrame(columns=cols)
    piv = paper[paper["method"].isin([SVD, FWSVD])].pivot_table(
        index="pct_params", columns=["phase", "method"], values="accuracy", aggfunc="mean")
    need = [(ph, m) for ph in ("zero-shot", "fine-tuned") for m in (SVD, FWSVD)]
    if any(c not in piv.columns for c in need):
        return pd.DataFrame(columns=cols)
    piv = piv[need].dropna()
    gaps = pd.DataFrame({"pct_params": piv.index,
                         "zero-shot gap": piv[("zero-shot", FWSVD)] - piv[("zero-shot", SVD)],
                         "fine-tuned gap": piv[("fine-tuned", FWSVD)] - piv[("fine-tuned", SVD)]})
    return gaps.reset_index(drop=True)


# ------------------------------------------------------------------------------------------ our runs, per seed
def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def method_variant(method: str, settings: Mapping[str, Any]) -> str:
    """The row label of a run of Table 1: the method, followed by the FWSVD settings that differ from their
    defaults (``fwsvd (columns)``, ``fwsvd (empirical Fisher)``); a missing setting is the default."""
    parts = []
    axis = settings.get("fwsvd_axis")
    if not _is_missing(axis) and axis != _DEFAULT_SETTINGS["fwsvd_axis"]:
        parts.append(str(axis))
    labels = settings.get("fisher_labels")
    if not _is_missing(labels) and labels != _DEFAULT_SETTINGS["fisher_labels"]:
        parts.append(f"{labels} Fisher")
    return f"{method} ({', '.join(parts)})" if parts else str(method)


def _variants(runs: pd.DataFrame) -> pd.Series:
    """:func:`method_variant` of every run, from ``method`` and the flattened ``spec.method_args.*``."""
    settings = runs[[f"spec.method_args.{k}" for k in _DEFAULT_SETTINGS if f"spec.method_args.{k}" in runs.columns]]
    settings = settings.rename(columns=lambda c: c.removeprefix("spec.method_args."))
    return pd.Series([method_variant(m, s) for m, s in zip(runs["method"], settings.to_dict("records"))],
                     index=runs.index, dtype=object)


def _bases(runs: pd.DataFrame) -> pd.Series:
    """The pre-trained base of every run: ``spec.base``, else the run's group folder (``digits_k1/svd_r8`` →
    ``digits_k1``) — the number of distinct bases is what the evidence reports."""
    group = runs["run"].astype(str).map(lambda r: r.rsplit("/", 1)[0] if "/" in r else "") \
        if "run" in runs.columns else pd.Series("", index=runs.index)
    if "spec.base" in runs.columns:
        return runs["spec.base"].where(runs["spec.base"].notna(), group).astype(str)
    return group


def seed_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 1's runs of one-shot methods, one row per (dataset, method variant, rank, seed): ``% MLP params``
    (the ``start`` record's fraction of target parameters), ``zero-shot`` (mean start accuracy of the cell's
    runs), ``fine-tuned`` (mean final accuracy of its runs with ``epochs > 0``; NaN when all are zero-shot
    only: their final accuracy is their start, not a fine-tuned value), ``base`` and ``runs``.

    The seed is the run's ``train.random_state``, which in ``runs/table1`` is also its base's pre-training
    seed; a run without a seed or an epoch count cannot be placed, and is an error."""
    cols = ["dataset", "method", "rank", "seed", "base", "% MLP params", "zero-shot", "fine-tuned", "runs"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    missing = [c for c in _REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"Table 1's runs lack the columns {missing} (study.runs.load_runs writes them)")
    one = runs[runs["method"].isin(ONE_SHOT)]
    if one.empty:
        return pd.DataFrame(columns=cols)
    for c, why in (("random_state", "the seed to pair SVD and FWSVD by"),
                   ("epochs", "whether the run was fine-tuned (epochs > 0) or is zero-shot only")):
        bad = one[one[c].isna()]
        if len(bad):
            names = bad["run"].tolist() if "run" in bad.columns else bad.index.tolist()
            raise ValueError(f"runs {names[:5]} have no spec.train.{c} ({why})")
    ratio = pd.Series(np.nan, index=one.index, dtype=float)
    for c in ("compression_ratio_target", "start_compression_ratio_target"):
        if c in one.columns:
            # the start record's size is the projection's; the final one is the same for a one-shot run
            ratio = pd.to_numeric(one[c], errors="coerce").fillna(ratio)
    fine_tuned = pd.to_numeric(one["accuracy"], errors="coerce").where(one["epochs"].astype(float) > 0)
    d = pd.DataFrame({"dataset": one["dataset"], "method": _variants(one), "rank": one["rank"],
                      "seed": one["random_state"], "base": _bases(one), "% MLP params": 100 * ratio,
                      "zero-shot": pd.to_numeric(one["start_accuracy"], errors="coerce"), "fine-tuned": fine_tuned})
    cells = d.groupby(["dataset", "method", "rank", "seed"], dropna=False).agg(
        base=("base", "first"), pct=("% MLP params", "mean"), zs=("zero-shot", "mean"),
        ft=("fine-tuned", "mean"), runs=("zero-shot", "size")).reset_index()
    return cells.rename(columns={"pct": "% MLP params", "zs": "zero-shot", "ft": "fine-tuned"})[cols]


#: the row order of every table: Table 1's variants, the other methods, the full model last
_ROW_ORDER = {m: i for i, m in enumerate(VARIANT_ORDER + tuple(m for m in METHOD_ORDER if m not in VARIANT_ORDER)
                                         + ("full model",))}


def _order(method: str) -> int:
    return _ROW_ORDER.get(method, len(_ROW_ORDER))


def table1_table(runs: pd.DataFrame, pretrain: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our Table 1 in long form, one row per (dataset, method variant, rank): % of MLP (target) parameters,
    zero-shot and fine-tuned accuracy averaged over seeds (each seed's value first averaged over its runs,
    :func:`seed_cells`), their standard deviations over seeds, ``n`` (seeds with a zero-shot value) and
    ``n fine-tuned`` (seeds with a fine-tuned run). The full model's row comes from a ``dense`` run in the
    sweep if there is one (zero-shot = its start, fine-tuned = its final), else from the pre-training runs
    of that dataset (one per base)."""
    if runs.empty:
        return no_runs_table(SWEEP)
    cells = seed_cells(runs)
    rows = []
    for (ds, m, r), g in cells.groupby(["dataset", "method", "rank"], dropna=False):
        rows.append({"dataset": ds, "method": m, "rank": r, "% MLP params": g["% MLP params"].mean(),
                     "zero-shot": g["zero-shot"].mean(), "zero-shot std": g["zero-shot"].std(ddof=1),
                     "fine-tuned": g["fine-tuned"].mean(), "fine-tuned std": g["fine-tuned"].std(ddof=1),
                     "n": int(g["zero-shot"].notna().sum()), "n fine-tuned": int(g["fine-tuned"].notna().sum())})
    for ds in sorted(runs["dataset"].dropna().unique(), key=str):
        rows += _full_model_rows(ds, runs, pretrain)
    if not rows:
        return no_runs_table(SWEEP, "no svd/fwsvd runs")
    df = pd.DataFrame(rows, columns=_LONG_COLUMNS)
    df["_o"] = df["method"].map(_order)
    return df.sort_values(["dataset", "_o", "% MLP params"]).drop(columns="_o").reset_index(drop=True)


def _full_model_rows(ds: Any, runs: pd.DataFrame, pretrain: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The full model's row of one dataset: a ``dense`` run of the sweep, else its pre-training runs."""
    dense = runs[(runs["dataset"] == ds) & (runs["method"] == "dense")]
    if not dense.empty:
        return [{"dataset": ds, "method": "full model", "rank": np.nan, "% MLP params": 100.0,
                 "zero-shot": dense["start_accuracy"].mean(), "zero-shot std": dense["start_accuracy"].std(ddof=1),
                 "fine-tuned": dense["accuracy"].mean(), "fine-tuned std": dense["accuracy"].std(ddof=1),
                 "n": len(dense), "n fine-tuned": len(dense)}]
    if pretrain is not None and not pretrain.empty and (pretrain["dataset"] == ds).any():
        pre = pretrain[pretrain["dataset"] == ds]
        return [{"dataset": ds, "method": "full model", "rank": np.nan, "% MLP params": 100.0,
                 "zero-shot": pre["accuracy"].mean(), "zero-shot std": pre["accuracy"].std(ddof=1),
                 "fine-tuned": np.nan, "fine-tuned std": np.nan, "n": len(pre), "n fine-tuned": 0}]
    return []


def table1_wide(long: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: one row per (dataset, phase, method), one column per % of parameters (means over
    seeds); a row without any value (a zero-shot-only variant's fine-tuned row) is left out."""
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


def table1_ablation(long: pd.DataFrame) -> pd.DataFrame:
    """The ablation of claim (a)'s reading, from :func:`table1_table`: per dataset, rank and FWSVD variant
    (``fwsvd (columns)``, ``fwsvd (empirical Fisher)``) its zero-shot mean, std over seeds and ``n``, beside
    the default FWSVD's and SVD's zero-shot means at the same rank."""
    if "status" in long.columns:
        return long
    abl = long[long["method"].isin(list(ABLATIONS))]
    if abl.empty:
        return no_runs_table(SWEEP, "no FWSVD ablation runs (fwsvd_axis = columns, fisher_labels = empirical)")
    ref = {m: long[long["method"] == m].set_index(["dataset", "rank"])["zero-shot"] for m in (FWSVD, SVD)}
    out = abl.rename(columns={"method": "variant"})[["dataset", "rank", "% MLP params", "variant", "zero-shot",
                                                      "zero-shot std", "n"]].copy()
    for m, s in ref.items():
        out[f"{m} zero-shot"] = [s.get((ds, r), np.nan) for ds, r in zip(out["dataset"], out["rank"])]
    out["_o"] = out["variant"].map(_order)
    return out.sort_values(["dataset", "rank", "_o"]).drop(columns="_o").reset_index(drop=True)


# ------------------------------------------------------------------------------------------ the figure
def table1_figure(ours: pd.DataFrame, paper: pd.DataFrame, title: str) -> Figure:
    """Zero-shot (left) and fine-tuned (right) accuracy vs % of MLP parameters, one row of panels for
    the paper's values and one per dataset of ours (both in the long form of :func:`table1_table`; ours
    with ± one standard deviation over seeds, the ablation variants as open markers); the dotted line is
    the full model."""
    sources: list[tuple[str, pd.DataFrame | None]] = []
    if "status" not in paper.columns and not paper.empty:
        sources += [(str(ds), g) for ds, g in paper.groupby("dataset", sort=False)]
    if "status" in ours.columns or ours.empty:
        sources.append(("ours", None))
    else:
        sources += [(f"ours: {ds}", g) for ds, g in ours.groupby("dataset", sort=True)]
    fig, axes = new_figure(len(sources), 2, width=5.0, height=3.4)
    for i, (name, d) in enumerate(sources):
        for j, phase in enumerate(("zero-shot", "fine-tuned")):
            ax = axes[i, j]
            ax.set_title(f"{name} — {phase}", fontsize=10)
            if d is None:
                no_runs_axes(ax, f"no runs in runs/{SWEEP}")
                continue
            _plot_phase(ax, d, phase)
    fig.suptitle(title)
    return fig


def _plot_phase(ax: Any, d: pd.DataFrame, phase: str) -> None:
    """One panel of :func:`table1_figure`: every method variant with a value in ``phase``, and the full model."""
    labels = sorted((m for m in d["method"].unique() if m != "full model"), key=_order)
    colors = method_colors(labels)
    for m in labels:
        g = d[d["method"] == m].sort_values("% MLP params").dropna(subset=[phase])
        if g.empty:
            continue
        err = g[f"{phase} std"] if f"{phase} std" in g.columns else None
        ablation = m in ABLATIONS
        ax.errorbar(g["% MLP params"], g[phase], yerr=err, fmt="s--" if ablation else "o-", color=colors[m],
                    mfc="none" if ablation else colors[m], capsize=3, label=m.upper() if not ablation else m)
    full = d.loc[d["method"] == "full model", phase].dropna()
    if len(full):
        ax.axhline(float(full.iloc[0]), color="0.4", ls=":", lw=1.2, label="full model")
    ax.set_xlabel("% of MLP parameters")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------------ claim (a)
def paired_gaps(cells: pd.DataFrame, variant: str, reference: str = SVD, phase: str = "zero-shot") -> pd.DataFrame:
    """``variant − reference`` in ``phase`` at every (seed, rank) where both have a value (one dataset's
    :func:`seed_cells`): ``seed``, ``rank``, ``% MLP params``, ``gap``. Pairing within a seed compares two
    projections of the same base, so the base's own luck cancels."""
    if phase not in ("zero-shot", "fine-tuned"):
        raise ValueError(f"phase={phase!r}: 'zero-shot' or 'fine-tuned'")
    if cells["dataset"].nunique() > 1:
        raise ValueError(f"paired_gaps takes one dataset's cells, got {sorted(map(str, cells['dataset'].unique()))}")
    a = cells[cells["method"] == variant][["seed", "rank", "% MLP params", phase]]
    b = cells[cells["method"] == reference][["seed", "rank", phase]]
    m = a.merge(b, on=["seed", "rank"], suffixes=("", "_ref"))
    m["gap"] = m[phase] - m[f"{phase}_ref"]
    m = m.dropna(subset=["gap", "rank"])
    return m[["seed", "rank", "% MLP params", "gap"]].sort_values(["seed", "rank"]).reset_index(drop=True)


def seed_means(gaps: pd.DataFrame) -> pd.Series:
    """The per-seed effect: the mean gap of each seed over its ranks (:func:`paired_gaps`), by seed."""
    return gaps.groupby("seed")["gap"].mean().sort_index()


def closing_margins(zero_shot: pd.DataFrame, fine_tuned: pd.DataFrame) -> pd.DataFrame:
    """The second half of claim (a), per seed: at the ranks where both methods were fine-tuned, ``margin`` =
    half the mean zero-shot gap − |mean fine-tuned gap| (positive when fine-tuning closes more than half of
    the zero-shot gap). The zero-shot gap is taken at those same ranks, so that a size without a fine-tuned
    pair (the text base's zero-shot-only ranks) does not enter the comparison. Columns: ``seed``,
    ``ranks``, ``zero-shot gap``, ``fine-tuned gap``, ``margin``."""
    both = fine_tuned.merge(zero_shot, on=["seed", "rank"], suffixes=("_ft", "_zs"))
    rows = []
    for s, g in both.groupby("seed"):
        zs, ft = float(g["gap_zs"].mean()), float(g["gap_ft"].mean())
        rows.append({"seed": s, "ranks": len(g), "zero-shot gap": zs, "fine-tuned gap": ft,
                     "margin": zs / 2 - abs(ft)})
    return pd.DataFrame(rows, columns=["seed", "ranks", "zero-shot gap", "fine-tuned gap", "margin"])


def _reason(verdict: str) -> str:
    """The reason inside ``inconclusive (…)``, as :func:`study.intervals.decide_interval` words it."""
    prefix = "inconclusive ("
    return verdict[len(prefix):-1] if verdict.startswith(prefix) and verdict.endswith(")") else verdict


def decide_claim_a(zero_shot: Interval, closing: Interval) -> str:
    """Claim (a) from its two intervals over seeds: the zero-shot gap FWSVD − SVD and the closing margin
    (:func:`closing_margins`). ``reproduced`` when both lie above 0, ``not reproduced`` when either lies
    below 0, ``no runs`` without a zero-shot pair, else ``inconclusive (…)`` naming each undecided part
    with :func:`study.intervals.decide_interval`'s reason."""
    first, second = decide_interval(zero_shot), decide_interval(closing)
    if first == "no runs":
        return "no runs"
    if "not reproduced" in (first, second):
        return "not reproduced"
    if first == second == "reproduced":
        return "reproduced"
    undecided = []
    if first != "reproduced":
        undecided.append(f"zero-shot gap: {_reason(first)}")
    if second == "no runs":
        undecided.append("closing after fine-tuning: no rank at which both were fine-tuned")
    elif second != "reproduced":
        undecided.append(f"closing after fine-tuning: {_reason(second)}")
    return f"inconclusive ({'; '.join(undecided)})"


_STATEMENT_A = "(a) FWSVD beats SVD zero-shot; the gap mostly closes after fine-tuning"
_PAPER_A = ("Table 1: FWSVD beats SVD zero-shot (e.g. 0.6982 vs 0.4126 at 47.8% of MLP parameters), and "
            "after fine-tuning the two are within about 0.02 of each other")
_STATEMENTS = {COLUMNS: "(a) FWSVD with one Fisher weight per input (fwsvd_axis = columns: the other reading of "
                        "the paper's sum) also beats SVD zero-shot",
               EMPIRICAL: "(a) FWSVD with the empirical Fisher (the given labels, Eq. 6) also beats SVD zero-shot"}
_PAPER_ABLATION = ("not in the paper: its Table 1 has one FWSVD; this ablation asks whether claim (a) rests on "
                   "which axis the Fisher is summed over or which labels it is taken at")


def _paper_text(paper: pd.DataFrame | None) -> str:
    """What the paper claims, with its own Table 1 gaps (``reports/paper/table1.csv``) when they are there."""
    gaps = paper_gaps(paper) if paper is not None else pd.DataFrame()
    if gaps.empty:
        return _PAPER_A
    zs, ft = float(gaps["zero-shot gap"].mean()), float(gaps["fine-tuned gap"].mean())
    per = ", ".join(f"{p:g}%: {z:+.3f} / {f:+.3f}" for p, z, f in
                    zip(gaps["pct_params"], gaps["zero-shot gap"], gaps["fine-tuned gap"]))
    return (f"{_PAPER_A} (its gaps FWSVD − SVD over {len(gaps)} sizes: zero-shot mean {zs:+.4f}, fine-tuned "
            f"mean {ft:+.4f}, half the first − |the second| = {zs / 2 - abs(ft):+.4f}; zero-shot / fine-tuned at "
            f"{per})")


def _seeds_text(seeds: Any) -> str:
    vals = sorted(seeds)
    return ", ".join(f"{int(s)}" if float(s).is_integer() else f"{s}" for s in vals) + f" ({_SEED_TEXT})"


def _bases_text(cells: pd.DataFrame) -> str:
    n = cells["base"].nunique()
    return f"{n} base{'s' if n != 1 else ''}"


def _per_seed_text(values: pd.Series, counts: pd.Series | None = None) -> str:
    return ", ".join(f"seed {int(s)}: {v:+.4f}" + (f" ({int(counts[s])} ranks)" if counts is not None else "")
                     for s, v in values.items())


def _per_rank_text(gaps: pd.DataFrame) -> str:
    """``r=8: +0.123`` per rank: the gap averaged over the seeds that have the rank."""
    by = gaps.groupby("rank")["gap"].mean()
    return ", ".join(f"r={r:g}: {v:+.3f}" for r, v in by.items()) or "none"


def _sizes_text(gaps: pd.DataFrame) -> str:
    """The ranks compared and their % of MLP parameters (``r = 8, 32 (6.2, 25.0 % of MLP params)``)."""
    by = gaps.groupby("rank")["% MLP params"].mean()
    if by.empty:
        return ""
    ranks = ", ".join(f"{r:g}" for r in by.index)
    pcts = ", ".join(f"{p:.1f}" if np.isfinite(p) else "?" for p in by.to_numpy())
    return f"r = {ranks} ({pcts} % of MLP params)"


def _verdict_a(ds: Any, label: str, cells: pd.DataFrame, paper_txt: str) -> Verdict:
    """Claim (a) on one dataset's :func:`seed_cells`: both intervals over seeds, and the evidence."""
    zs_gaps = paired_gaps(cells, FWSVD, SVD, "zero-shot")
    if zs_gaps.empty:
        return Verdict(label, _STATEMENT_A, paper_txt, "no runs",
                       f"{ds}: no rank at which both SVD and the default FWSVD have a zero-shot value",
                       datasets=str(ds))
    ft_gaps = paired_gaps(cells, FWSVD, SVD, "fine-tuned")
    zs_iv = t_interval(seed_means(zs_gaps).to_numpy(dtype=float))
    closing = closing_margins(zs_gaps, ft_gaps)
    close_iv = t_interval(closing["margin"].to_numpy(dtype=float))
    ev = (f"{ds}, {_bases_text(cells)}: zero-shot FWSVD − SVD {zs_iv.text()}; per seed (mean over its ranks): "
          f"{_per_seed_text(seed_means(zs_gaps), zs_gaps.groupby('seed').size())}; per rank (mean over seeds): "
          f"{_per_rank_text(zs_gaps)}. Fine-tuned FWSVD − SVD per rank (mean over seeds): {_per_rank_text(ft_gaps)}")
    if closing.empty:
        ev += "; no rank at which both were fine-tuned (zero-shot-only runs have no fine-tuned value)"
    else:
        ev += (f"; half the zero-shot gap − |fine-tuned gap| at the fine-tuned ranks {close_iv.text()}; per seed: "
               f"{_per_seed_text(closing.set_index('seed')['margin'])}")
    ev += ". Rule: both 95 % t intervals over seeds above 0 (at least 3 seeds)"
    return Verdict(label, _STATEMENT_A, paper_txt, decide_claim_a(zs_iv, close_iv), ev,
                   effect=zs_iv.effect_text(), interval=zs_iv.bounds_text(), sizes=_sizes_text(zs_gaps),
                   datasets=str(ds), seeds=_seeds_text(zs_gaps["seed"].unique()))


def verdict_ablation(ds: Any, cells: pd.DataFrame, variant: str) -> Verdict:
    """The ablation of claim (a)'s reading on one dataset's :func:`seed_cells`: per seed, the mean zero-shot
    gap ``variant − SVD`` over the ranks the variant was run at (8 and 32), its 95 % t interval over seeds and
    :func:`study.intervals.decide_interval`; the default FWSVD − SVD at the same ranks is in the evidence."""
    if variant not in ABLATIONS:
        raise ValueError(f"variant={variant!r} is not an ablation of claim (a): {list(ABLATIONS)}")
    label = f"(a) {ds}, {ABLATIONS[variant]}"
    gaps = paired_gaps(cells, variant, SVD, "zero-shot")
    if gaps.empty:
        return Verdict(label, _STATEMENTS[variant], _PAPER_ABLATION, "no runs",
                       f"{ds}: no rank at which both {variant} and SVD have a zero-shot value", datasets=str(ds))
    iv = t_interval(seed_means(gaps).to_numpy(dtype=float))
    default = paired_gaps(cells, FWSVD, SVD, "zero-shot")
    default = default[default["rank"].isin(gaps["rank"].unique())]
    vs_default = paired_gaps(cells, variant, FWSVD, "zero-shot")
    ev = (f"{ds}, {_bases_text(cells)}: zero-shot {variant} − SVD {iv.text()}; per seed (mean over its ranks): "
          f"{_per_seed_text(seed_means(gaps), gaps.groupby('seed').size())}; per rank (mean over seeds): "
          f"{_per_rank_text(gaps)}; the default FWSVD − SVD at the same ranks: {_per_rank_text(default)}; "
          f"{variant} − the default FWSVD: {_per_rank_text(vs_default)}")
    return Verdict(label, _STATEMENTS[variant], _PAPER_ABLATION, decide_interval(iv), ev, effect=iv.effect_text(),
                   interval=iv.bounds_text(), sizes=_sizes_text(gaps), datasets=str(ds),
                   seeds=_seeds_text(gaps["seed"].unique()))


def verdict_table1(runs: pd.DataFrame, paper: pd.DataFrame | None = None) -> list[Verdict]:
    """Claim (a) of the paper's Table 1, per dataset of ``runs/table1`` (label ``(a) digits`` …): the 95 % t
    interval over seeds of the zero-shot gap FWSVD − SVD and of the closing margin (:func:`decide_claim_a`);
    then, for each dataset that has them, the ablation verdicts (:func:`verdict_ablation`, labels
    ``(a) digits, FWSVD columns`` and ``(a) digits, empirical Fisher``). ``paper``: the paper's Table 1, whose
    own gaps are quoted."""
    paper_txt = _paper_text(paper)
    cells = seed_cells(runs)
    cells = cells[cells["method"].isin(list(VARIANT_ORDER))]
    if cells.empty:
        return [Verdict("(a)", _STATEMENT_A, paper_txt, "no runs", f"no svd/fwsvd runs in runs/{SWEEP}")]
    out = []
    for ds, lab, d in per_dataset(cells, "(a)"):
        out.append(_verdict_a(ds, lab, d, paper_txt))
        out += [verdict_ablation(ds, d, v) for v in ABLATIONS if (d["method"] == v).any()]
    return out


def verdicts(inputs: Inputs) -> list[Verdict]:
    return verdict_table1(inputs.runs(SWEEP), paper_table1(inputs.reports_dir))


def section(reports_dir: Path) -> list[str]:
    return [
        "## (a) Table 1: zero-shot vs fine-tuned, SVD vs FWSVD (MLP layers only)",
        "",
        "Ours (zero-shot = evaluation right after the projection; fine-tuned = after the fine-tuning budget; "
        "means over the seeds of each dataset — one base per seed —, the spreads in "
        f"[`tables/{OURS}.md`](tables/{OURS}.md); a zero-shot-only run has no fine-tuned value). Claim (a) is "
        "decided per dataset by 95 % t intervals over seeds of the zero-shot gap FWSVD − SVD and of half that "
        "gap minus the fine-tuned gap:",
        "",
        include_table(reports_dir, WIDE, NOTEBOOK),
        "The ablation of how claim (a) reads FWSVD (zero-shot only): the Fisher summed over the other axis "
        "(`fwsvd_axis = columns`) and the empirical Fisher (`fisher_labels = empirical`), beside the default "
        "FWSVD and SVD at the same rank:",
        "",
        include_table(reports_dir, ABLATION, NOTEBOOK),
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
    inputs=(f"runs/{BASES}", f"reports/{PAPER_CSV}", f"reports/tables/{PROJECTION_TABLE}.md"),
    figures=(FIGURE,), tables=(OURS, WIDE, PAPER, ABLATION), claims=("(a)",), verdicts=verdicts, section=section))
