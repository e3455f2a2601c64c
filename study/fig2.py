"""Figure 2 of the paper: Pareto fronts of every compression method on the digits ViT, with what the paper
says around it: the epoch-budget sweep (trainability, Section 5.1), the spread over repeats (our noise
level) and the per-layer rank trajectories (OIALR's "large initial cut", described in words only), and its
claims (b) iterative methods beat one-shot projection at 4–7% of target parameters and (c) energy cuts
(IEHT) beat OIALR's σ_max cut.

Also our measurement of the training protocol (``runs/protocol``: IEHT under a constant vs a cosine learning
rate, crossed with the Adam-state policies after a cut, :func:`protocol_table`).

Reads ``runs/fig2``, ``runs/budget``, ``runs/repeats`` and ``runs/protocol``; notebook ``notebooks/02_fig2_pareto.py`` writes
the tables and figures (the Pareto ones with :mod:`study.pareto`).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .families import IHT_FAMILY, ITERATIVE, METHOD_ORDER, ONE_SHOT, label_key
from .fronts import best_at, compare_fronts
from .pareto import best_accuracy_metrics
from .registry import Artifact, Inputs, register
from .style import method_colors, no_runs_axes
from .verdicts import (NOISE_SWEEP, Noise, Verdict, decide, decide_fronts, front_comparison_text,
                       per_dataset_verdicts)
from .writers import include_figure, include_table, new_figure, no_runs_table

__all__ = ["NOTEBOOK", "SWEEP", "BUDGET_SWEEP", "REPEATS_SWEEP", "PARETO", "BEST_AT_BUDGET", "FRONTS",
           "FIRST_CUT", "RANK_TRAJECTORIES", "BUDGET", "REPEATS", "PROTOCOL_SWEEP", "PROTOCOL", "protocol_table",
           "budget_table", "budget_figure",
           "repeats_table", "repeats_figure", "pick_trajectory_runs", "trajectory_figure", "first_cut_table",
           "verdict_iterative_vs_oneshot", "verdict_energy_vs_sigma_max", "ARTIFACT"]

NOTEBOOK = "02_fig2_pareto"
SWEEP = "fig2"
BUDGET_SWEEP = "budget"               # SVD and IEHT at 1×, 3× and 10× the epoch budget
REPEATS_SWEEP = NOISE_SWEEP           # the same specs at several random states: the noise level of every verdict
PARETO = "fig2_pareto"                # figure
BEST_AT_BUDGET, FRONTS = "fig2_best_at_budget", "fig2_fronts"        # tables
FIRST_CUT = "fig2_first_cut"          # table
RANK_TRAJECTORIES = "fig2_rank_trajectories"                          # figure
BUDGET, REPEATS = "fig2_budget", "fig2_repeats"                      # a figure and a table each
PROTOCOL_SWEEP = "protocol"           # IEHT: learning-rate schedule × Adam state after a cut
PROTOCOL = "fig2_protocol"            # table
#: the budget of the summary metric (reports/metrics/summary.json): best accuracy at ≤ 10% of target parameters
METRIC_BUDGET = 0.10


def budget_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Final accuracy and % of target parameters per (dataset, method, setting, epochs); ``budget`` is
    the epochs relative to the smallest budget of the same method on the same dataset (a longer run
    may space its cuts differently, so its setting may differ)."""
    if runs.empty:
        return no_runs_table(BUDGET_SWEEP)
    g = runs.groupby(["dataset", "method", "setting", "epochs"], dropna=False).agg(
        n=("run", "size"), accuracy=("accuracy", "mean"), pct=("compression_ratio_target", "mean")).reset_index()
    g["pct"] *= 100
    g["budget"] = g["epochs"] / g.groupby(["dataset", "method"])["epochs"].transform("min")
    g["_k"] = [(str(d),) + label_key(m) + (e,) for d, m, e in zip(g["dataset"], g["method"], g["epochs"])]
    g = g.sort_values("_k").drop(columns="_k").reset_index(drop=True)
    g = g.rename(columns={"pct": "% target params"})
    return g[["dataset", "method", "setting", "epochs", "budget", "n", "accuracy", "% target params"]]


def budget_figure(table: pd.DataFrame, title: str) -> Figure:
    """Accuracy (left) and % of target parameters (right) against the epoch budget, per method."""
    fig, axes = new_figure(1, 2, width=5.0, height=3.8)
    if "status" in table.columns:
        for ax in axes[0]:
            no_runs_axes(ax, f"no runs in runs/{BUDGET_SWEEP}")
        fig.suptitle(title)
        return fig
    colors = method_colors(table["method"])
    for (ds, m), g in table.groupby(["dataset", "method"], sort=False):
        g = g.sort_values("epochs")
        lab = f"{m} ({ds})"
        axes[0, 0].plot(g["epochs"], g["accuracy"], "o-", color=colors[m], label=lab)
        axes[0, 1].plot(g["epochs"], g["% target params"], "o-", color=colors[m], label=lab)
        for _, r in g.iterrows():
            axes[0, 0].annotate(f"{r['budget']:g}×", (r["epochs"], r["accuracy"]), textcoords="offset points",
                                xytext=(4, 4), fontsize=7, color=colors[m])
    axes[0, 0].set_ylabel("final test accuracy")
    axes[0, 1].set_ylabel("% of target parameters")
    for ax in axes[0]:
        ax.set_xlabel("training epochs")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def protocol_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of ``runs/protocol``: its learning-rate schedule and Adam-state policy after a cut (as the
    run's metrics.json records its validated spec, defaults filled in; "unrecorded" for a run made before the
    key existed), its cut setting, final accuracy and % of target parameters (of the compiled final model)."""
    if runs.empty:
        return no_runs_table(PROTOCOL_SWEEP)
    out = pd.DataFrame({
        "dataset": runs["dataset"], "run": runs["run"], "method": runs["method"], "setting": runs["setting"],
        **{key: runs[f"spec.train.{key}"].fillna("unrecorded") if f"spec.train.{key}" in runs else "unrecorded"
           for key in ("lr_schedule", "optimizer_state_after_cut")},
        "accuracy": runs["accuracy"], "% target params": 100 * runs["compression_ratio_target"]})
    return out.sort_values(["dataset", "setting", "lr_schedule", "optimizer_state_after_cut"]).reset_index(drop=True)


def repeats_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard deviation (ddof 1) over the random_state repeats of each (dataset, method, setting, epochs)."""
    if runs.empty:
        return no_runs_table(REPEATS_SWEEP)
    g = runs.groupby(["dataset", "method", "setting", "epochs"], dropna=False).agg(
        n=("run", "size"), random_states=("random_state", lambda s: ", ".join(str(v) for v in sorted(s.dropna()))),
        accuracy_mean=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
        pct_mean=("compression_ratio_target", "mean"), pct_std=("compression_ratio_target", "std")).reset_index()
    g["pct_mean"] *= 100
    g["pct_std"] *= 100
    return g.rename(columns={"pct_mean": "% params mean", "pct_std": "% params std"})


def repeats_figure(table: pd.DataFrame, title: str) -> Figure:
    """Final accuracy mean ± std against % of target parameters mean ± std, one point per setting."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.2)
    ax = axes[0, 0]
    if "status" in table.columns:
        no_runs_axes(ax, f"no runs in runs/{REPEATS_SWEEP}")
    else:
        colors = method_colors(table["method"])
        for _, r in table.iterrows():
            ax.errorbar(r["% params mean"], r["accuracy_mean"], xerr=np.nan_to_num(r["% params std"]),
                        yerr=np.nan_to_num(r["accuracy_std"]), fmt="o", capsize=4, color=colors[r["method"]],
                        label=f"{r['method']} ({r['setting']}; n={r['n']})")
        ax.set_xlabel("% of target parameters")
        ax.set_ylabel("final test accuracy (mean ± std)")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def pick_trajectory_runs(runs: pd.DataFrame, methods: Sequence[str] = ("oialr", "ieht", "ifht"),
                         target: float | None = None) -> dict[str, str]:
    """One run per method to show: the run whose final fraction of target parameters is closest to
    ``target`` (default: the median final fraction over these methods' runs), ties broken by accuracy."""
    d = runs[runs["method"].isin(methods)] if not runs.empty else runs
    if d.empty:
        return {}
    t = float(d["compression_ratio_target"].median()) if target is None else float(target)
    out = {}
    for m in methods:
        g = d[d["method"] == m]
        if g.empty:
            continue
        g = g.assign(_dist=(g["compression_ratio_target"] - t).abs()).sort_values(["_dist", "accuracy"],
                                                                                   ascending=[True, False])
        out[m] = g["run"].iloc[0]
    return out


def trajectory_figure(traj: pd.DataFrame, picked: Mapping[str, str], title: str) -> Figure:
    """Per-layer rank against epoch (one panel per method, one line per layer) for the picked runs."""
    methods = list(picked)
    fig, axes = new_figure(1, max(1, len(methods)), width=4.6, height=3.8, sharey=True)
    if not methods or traj.empty:
        no_runs_axes(axes[0, 0], "no oialr / ieht / ifht runs with ranks.json")
        fig.suptitle(title)
        return fig
    for ax, m in zip(axes[0], methods):
        d = traj[traj["run"] == picked[m]].sort_values(["event_index", "layer_index"])
        layers = list(dict.fromkeys(d["layer"]))
        pal = sns.color_palette("viridis", len(layers))
        for c, layer in zip(pal, layers):
            g = d[d["layer"] == layer]
            ax.step(g["epoch"], g["rank"], where="post", color=c, lw=1.2, alpha=0.9,
                    label=layer if len(layers) <= 8 else None)
            ax.plot(g["epoch"], g["rank"], ".", color=c, ms=3)
        setting = d["setting"].iloc[0] if len(d) else ""
        shade = "" if len(layers) <= 8 else f"{len(layers)} layers, dark = first, light = last"
        # one short line each: long settings would run into the neighbouring panel's title
        lines = [f"{m} ({picked[m]})", *textwrap.wrap(str(setting), 45), shade]
        ax.set_title("\n".join(line for line in lines if line), fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("rank")
        if len(layers) <= 8:
            ax.legend(fontsize=6)
    fig.suptitle(title)
    return fig


def first_cut_table(traj: pd.DataFrame, methods: Sequence[str] = IHT_FAMILY) -> pd.DataFrame:
    """How abrupt the rank reduction is: per run, the fraction of the summed rank removed by the first
    cut after conversion, the largest later cut, and the number of cuts; then means per method."""
    if traj.empty:
        return no_runs_table(SWEEP, "no ranks.json")
    d = traj[traj["method"].isin(methods)]
    rows = []
    for run, g in d.groupby("run", sort=False):
        totals = g.groupby("event_index").agg(event=("event", "first"), total=("rank", "sum")).sort_index()
        conv = totals[totals["event"] == "convert"]
        if conv.empty:
            continue
        after = totals.loc[totals.index > conv.index[0]]
        cuts = after[after["event"] == "cut"]["total"].to_numpy(dtype=float)
        if cuts.size == 0:
            continue
        seq = np.concatenate([[float(conv["total"].iloc[0])], cuts])
        frac = 1.0 - seq[1:] / seq[:-1]
        rows.append({"dataset": g["dataset"].iloc[0], "method": g["method"].iloc[0], "run": run, "first cut": frac[0],
                     "largest later cut": float(frac[1:].max()) if frac.size > 1 else np.nan,
                     "cuts": int(cuts.size), "final / converted rank": seq[-1] / seq[0]})
    if not rows:
        return no_runs_table(SWEEP, "no convert/cut events")
    per_run = pd.DataFrame(rows)
    agg = per_run.groupby(["dataset", "method"], sort=False).agg(
        runs=("run", "size"), first_cut_mean=("first cut", "mean"),
        largest_later_cut_mean=("largest later cut", "mean"),
        cuts_mean=("cuts", "mean"), final_over_converted=("final / converted rank", "mean")).reset_index()
    agg["_k"] = [(str(d),) + label_key(m) for d, m in zip(agg["dataset"], agg["method"])]
    return agg.sort_values("_k").drop(columns="_k").reset_index(drop=True)


def floor_text(runs: pd.DataFrame | None, ds: Any, budget: float) -> str:
    """Where the iterative methods' rank floor (``oialr_min_rank_percent``, compiled) lies against ``budget``:
    below the floor nothing is reachable, and just above it only at the floor."""
    col = "floor_compression_ratio_target"
    if runs is None or runs.empty or col not in runs:
        return ""
    f = runs[(runs["dataset"] == ds) & runs["method"].isin(ITERATIVE)][col].dropna()
    if f.empty:
        return ""
    lo = float(f.min())
    where = ("the budget lies below it: unreachable" if lo > budget else
             f"the budget is {budget / lo:.2f}× the floor: reachable only near the floor")
    return f"; the iterative runs' rank floor is {100 * lo:.2f}% of target parameters ({where})"


def verdict_iterative_vs_oneshot(points: pd.DataFrame, noise: Noise, budget: float = 0.07,
                                 also: Sequence[float] = (0.04, 0.05, 0.06),
                                 runs: pd.DataFrame | None = None) -> list[Verdict]:
    """Claim (b), per dataset of ``runs/fig2``: best accuracy at ≤ ``budget`` of target parameters,
    iterative family (oialr, ieht, ifht, trp, fwtrp) minus one-shot family (svd, fwsvd, tfwsvd, asvd);
    ``runs`` (optional) adds where the rank floor lies (:func:`floor_text`)."""
    statement = f"(b) iterative methods beat one-shot projection at 4–{100 * budget:g}% of target parameters"
    paper_txt = "Figure 2: 'a significant gap between methods employing iterative compression, and those not'"

    def one_dataset(ds: Any, lab: str, d: pd.DataFrame) -> Verdict:
        it, one = d[d["method"].isin(ITERATIVE)], d[d["method"].isin(ONE_SHOT)]
        if it.empty or one.empty:
            missing = "iterative" if it.empty else "one-shot"
            return Verdict(lab, statement, paper_txt, "no runs", f"{ds}: no {missing} runs in runs/fig2")
        per_method = ", ".join(f"{m} {best_at(g, budget):.4f}" for m, g in sorted(
            d.groupby("method"), key=lambda kv: METHOD_ORDER.index(kv[0]) if kv[0] in METHOD_ORDER else 99))
        a, b = best_at(it, budget), best_at(one, budget)
        others = "; ".join(f"≤{100 * x:g}%: {best_at(it, x):.4f} vs {best_at(one, x):.4f}" for x in also)
        ev = (f"{ds}: best accuracy at ≤{100 * budget:g}% of target parameters: iterative {a:.4f} vs one-shot "
              f"{b:.4f} (difference {a - b:+.4f}); {others}; per method at ≤{100 * budget:g}%: {per_method} "
              f"(nan = no point that small); smallest fractions reached: iterative "
              f"{100 * it['compression_ratio_target'].min():.2f}%, "
              f"one-shot {100 * one['compression_ratio_target'].min():.2f}%" + floor_text(runs, ds, budget))
        if not np.isfinite(a) or not np.isfinite(b):
            who = " and ".join(n for n, v in (("iterative", a), ("one-shot", b)) if not np.isfinite(v))
            return Verdict(lab, statement, paper_txt,
                           f"inconclusive (no {who} point at ≤{100 * budget:g}% of target parameters)", ev)
        return Verdict(lab, statement, paper_txt, decide(a - b, noise.tolerance), ev)

    return per_dataset_verdicts(points, "(b)", statement, paper_txt, SWEEP, one_dataset, compressed_only=False)


def verdict_energy_vs_sigma_max(points: pd.DataFrame, noise: Noise, first_cuts: pd.DataFrame | None = None
                                ) -> list[Verdict]:
    """Claim (c), per dataset of ``runs/fig2``: IEHT's front minus OIALR's at matched sizes over the
    compressed range both reach (inconclusive when that covers too little of it, :func:`decide_fronts`);
    the first-cut sizes are reported alongside (the paper's 'large initial cut')."""
    statement = "(c) energy cuts (IEHT) beat OIALR's σ_max cut"
    paper_txt = ("Section 5.1, Figure 2a: OIALR 'suffers from non-smooth rank reduction, often involving a large "
                 "initial cut'; IEHT/IFHT 'exhibit less severe rank cutoffs'")

    def cut_txt(ds: Any) -> str:
        if first_cuts is None or "status" in first_cuts.columns or first_cuts.empty:
            return ""
        fc = first_cuts[first_cuts["dataset"] == ds].set_index("method")
        parts = [f"{m} first cut removes {100 * fc.loc[m, 'first_cut_mean']:.1f}% of the rank"
                 + (f", largest later cut {100 * fc.loc[m, 'largest_later_cut_mean']:.1f}%"
                    if np.isfinite(fc.loc[m, "largest_later_cut_mean"]) else "")
                 for m in ("oialr", "ieht", "ifht") if m in fc.index]
        return ("; " + "; ".join(parts)) if parts else ""

    def one_dataset(ds: Any, lab: str, d: pd.DataFrame) -> Verdict:
        a, b = d[d["method"] == "ieht"], d[d["method"] == "oialr"]
        if a.empty or b.empty:
            missing = " and ".join(m for m, g in (("ieht", a), ("oialr", b)) if g.empty)
            return Verdict(lab, statement, paper_txt, "no runs", f"{ds}: no compressed {missing} points")
        cmp = compare_fronts(a, b)
        ev = f"{ds}: " + front_comparison_text(cmp, "IEHT", "OIALR") + cut_txt(ds)
        return Verdict(lab, statement, paper_txt, decide_fronts(cmp, noise.tolerance), ev)

    return per_dataset_verdicts(points, "(c)", statement, paper_txt, SWEEP, one_dataset)


def verdicts(inputs: Inputs) -> list[Verdict]:
    points = inputs.points(SWEEP)
    first = first_cut_table(inputs.trajectories(SWEEP))
    return (verdict_iterative_vs_oneshot(points, inputs.noise, runs=inputs.runs(SWEEP))
            + verdict_energy_vs_sigma_max(points, inputs.noise, first))


def section(reports_dir: Path) -> list[str]:
    return [
        "## (b), (c) Figure 2: Pareto fronts of every method",
        "",
        include_figure(reports_dir, PARETO, "Figure 2 (the paper)"),
        "Best accuracy at or below each fraction of target parameters:",
        "",
        include_table(reports_dir, BEST_AT_BUDGET, NOTEBOOK),
        "How abrupt the rank reduction is (fraction of the summed rank removed by the first cut after "
        "conversion, and by the largest later cut):",
        "",
        include_table(reports_dir, FIRST_CUT, NOTEBOOK),
        include_figure(reports_dir, RANK_TRAJECTORIES, "rank trajectories"),
        "### Trainability: the epoch budget",
        "",
        include_table(reports_dir, BUDGET, NOTEBOOK),
        include_figure(reports_dir, BUDGET, "budget sweep"),
        "### The training protocol: learning-rate schedule × Adam state after a cut (IEHT)",
        "",
        "The paper trains every compression run at a fixed learning rate; our earlier runs decayed it to zero "
        "(cosine), so late cuts had no rate left to recover with. After a cut the new core's Adam state is reset, "
        "carried into the new basis (first moment rotated exactly, second by rotating its squares), or sliced as "
        "the OIALR reference code does (`lowrank/optim_state.py`). One seed per cell: read differences against "
        "the noise level above.",
        "",
        include_table(reports_dir, PROTOCOL, NOTEBOOK),
        "### Spread over repeats",
        "",
        include_table(reports_dir, REPEATS, NOTEBOOK),
        include_figure(reports_dir, REPEATS, "repeats"),
    ]


ARTIFACT = register(Artifact(
    "fig2", "Figure 2", "experiment", notebook=NOTEBOOK, sweeps=(SWEEP, BUDGET_SWEEP, REPEATS_SWEEP, PROTOCOL_SWEEP),
    figures=(PARETO, BUDGET, REPEATS, RANK_TRAJECTORIES),
    tables=(BEST_AT_BUDGET, FRONTS, FIRST_CUT, BUDGET, REPEATS, PROTOCOL),
    claims=("(b)", "(c)"), verdicts=verdicts, metrics=best_accuracy_metrics(SWEEP, METRIC_BUDGET),
    section=section))
