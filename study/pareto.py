"""The Pareto figure and tables of Figures 2–5 of the paper: every point faint, each method's front as
steps, one panel per dataset; the fronts read at fixed budgets; every front point with the run it comes
from. The construction is the paper's Appendix C (:mod:`study.fronts`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .families import label_key, sort_labels
from .fronts import best_at, best_point, front_values, pareto_front, pareto_points, selection
from .style import method_colors, no_runs_axes, percent_log_axis
from .registry import Artifact, from_points
from .verdicts import NOISE_SWEEP, Noise, Verdict
from .writers import include_figure, include_table, new_figure, no_runs_table

if TYPE_CHECKING:
    from .registry import Inputs

__all__ = ["BUDGETS", "with_label", "pareto_figure", "best_at_budget_table", "fronts_table", "best_accuracy_metric",
           "best_accuracy_metrics", "front_section", "pareto_artifact"]

#: budgets (fraction of target parameters) at which fronts are read off; the paper's claim (b) is at 4–7%
BUDGETS = (0.04, 0.05, 0.06, 0.07, 0.10, 0.20)


def with_label(df: pd.DataFrame, columns: Sequence[str], name: str = "label", sep: str = " · ") -> pd.DataFrame:
    """``df`` with a column joining ``columns`` as text (e.g. method · schedule), to group or colour by."""
    if df.empty:
        return df.assign(**{name: pd.Series(dtype=str)})
    return df.assign(**{name: df[list(columns)].astype(str).agg(sep.join, axis=1)})


def pareto_figure(points: pd.DataFrame, *, title: str, hue: str = "method", sweep: str = "",
                  x: str = "compression_ratio_target", facet: str = "dataset",
                  window: tuple[float, float] | None = None) -> Figure:
    """All Pareto points (faint) and each ``hue`` group's front (steps), one panel per ``facet`` value,
    x = % of target parameters on a log axis, y = test accuracy. A front's points are chosen on validation
    accuracy when every point has one (:func:`study.fronts.selection`). With ``window`` (fractions of target
    parameters), a second row zooms on it: the sizes a claim is about, on an accuracy axis fitted to them."""
    p = pareto_points(points)
    facets = sorted(p[facet].dropna().unique(), key=str) if not p.empty else []
    rows = 2 if window is not None and facets else 1
    fig, axes = new_figure(rows, max(1, len(facets)), width=6.0, height=4.2)
    if not facets:
        no_runs_axes(axes[0, 0], f"no runs in runs/{sweep}" if sweep else "no runs")
        axes[0, 0].set_xlabel("% of target parameters")
        axes[0, 0].set_ylabel("test accuracy")
        fig.suptitle(title)
        return fig
    chosen = selection(p)
    y = chosen.get("y", "accuracy")
    colors = method_colors(p[hue].astype(str))
    handles: dict[str, Any] = {}
    for col, fv in enumerate(facets):
        d = p[p[facet] == fv]
        fronts = {lab: (g, pareto_front(g, x, y)) for lab in sort_labels(d[hue].astype(str))
                  for g in [d[d[hue].astype(str) == lab]]}
        for row in range(rows):
            ax = axes[row, col]
            for lab, (g, f) in fronts.items():
                c = colors[lab]
                ax.scatter(100 * g[x], g["accuracy"], s=10, alpha=0.25, color=c, linewidths=0)
                xs = np.append(100 * f[x].to_numpy(), 100 * max(d[x].max(), f[x].max()))
                ys = np.append(f["accuracy"].to_numpy(), f["accuracy"].to_numpy()[-1])
                k = g["run"].nunique()
                (line,) = ax.step(xs, ys, where="post", color=c, lw=1.8)
                ax.plot(100 * f[x], f["accuracy"], "o", color=c, ms=3.5)
                handles.setdefault(lab, (line, k))
            percent_log_axis(ax)
            ax.set_xlabel("% of target parameters (log scale)")
            ax.set_ylabel("test accuracy" + (" (points chosen on validation)" if chosen else ""))
            if row == 0:
                ax.set_title(f"dataset: {fv}", fontsize=11)
            else:
                _zoom(ax, [f for _, f in fronts.values()], x, window)
                ax.set_title(f"dataset: {fv}, zoomed on {100 * window[0]:g}–{100 * window[1]:g}% "
                             "of target parameters", fontsize=10)
    fig.legend([h for h, _ in handles.values()],
               [f"{lab} ({k} run{'s' if k != 1 else ''})" for lab, (_, k) in handles.items()],
               loc="outside lower center", ncols=min(5, len(handles)), fontsize=10, frameon=False)
    fig.suptitle(title)
    return fig


def _zoom(ax: Any, fronts: Sequence[pd.DataFrame], x: str, window: tuple[float, float]) -> None:
    """Limit ``ax`` to ``window`` (fractions, widened by 10 % either side) and to the test accuracies the
    fronts reach there (padded by a tenth of their range, at least 0.01)."""
    from matplotlib.ticker import FixedLocator

    lo, hi = window[0] / 1.1, window[1] * 1.1
    ax.set_xlim(100 * lo, 100 * hi)
    ax.xaxis.set_major_locator(FixedLocator(np.arange(np.ceil(100 * lo), np.floor(100 * hi) + 1)))
    inside = [f.loc[(f[x] >= lo) & (f[x] <= hi), "accuracy"] for f in fronts if len(f)]
    vals = pd.concat(inside) if inside else pd.Series(dtype=float)
    if len(vals):
        pad = max(0.01, 0.1 * float(vals.max() - vals.min()))
        ax.set_ylim(float(vals.min()) - pad, min(1.0, float(vals.max()) + pad))


def _group_fronts(points: pd.DataFrame, facet: str,
                  hue: str) -> list[tuple[Any, Any, pd.DataFrame, pd.DataFrame]] | None:
    """``(facet value, hue value, its Pareto points, its front)`` per group, in order of appearance, the fronts
    chosen as :func:`study.fronts.selection` says; ``None`` when there are no Pareto points at all."""
    p = pareto_points(points)
    if p.empty:
        return None
    y = selection(p).get("y", "accuracy")
    return [(fv, lab, g, pareto_front(g, y=y)) for (fv, lab), g in p.groupby([facet, hue], sort=False)]


def best_at_budget_table(points: pd.DataFrame, *, hue: str = "method", sweep: str = "",
                         budgets: Sequence[float] = BUDGETS, facet: str = "dataset") -> pd.DataFrame:
    """Per (``facet``, ``hue``): runs, points, the smallest % of target parameters reached, the test accuracy
    of the best model at or below each budget and of the best model overall (best on validation when every
    point has a validation accuracy: :func:`study.fronts.selection`)."""
    groups = _group_fronts(points, facet, hue)
    if groups is None:
        return no_runs_table(sweep)
    chosen = selection(pareto_points(points))
    rows = []
    for fv, lab, g, f in groups:
        row = {facet: fv, hue: lab, "runs": g["run"].nunique(), "points": len(g),
               "min % params": 100 * g["compression_ratio_target"].min()}
        vals = front_values(f, budgets, **chosen)
        for b, v in zip(budgets, vals):
            row[f"best acc ≤{100 * b:g}%"] = v
        row["best acc (any)"] = best_point(g)["accuracy"]
        rows.append(row)
    df = pd.DataFrame(rows)
    df["_k"] = [(str(f),) + label_key(h) for f, h in zip(df[facet], df[hue])]
    return df.sort_values("_k").drop(columns="_k").reset_index(drop=True)


def fronts_table(points: pd.DataFrame, *, hue: str = "method", sweep: str = "", facet: str = "dataset") -> pd.DataFrame:
    """Every front point: ``facet``, ``hue``, % of target parameters, accuracy, and where it came from."""
    groups = _group_fronts(points, facet, hue)
    if groups is None:
        return no_runs_table(sweep)
    parts = []
    for fv, lab, g, f in groups:
        parts.append(pd.DataFrame({facet: fv, hue: lab, "% params": 100 * f["compression_ratio_target"],
                                   "accuracy": f["accuracy"], "val. accuracy": f.get("val_accuracy", np.nan),
                                   "run": f["run"], "setting": f["setting"],
                                   "epoch": f["epoch"], "kind": f["kind"]}))
    return pd.concat(parts, ignore_index=True)


def best_accuracy_metric(points: pd.DataFrame, sweep: str, budget: float) -> dict[str, dict[str, float]]:
    """The entry ``<sweep>_best_accuracy_le_<budget %>pct`` of ``reports/metrics/summary.json``:
    ``{"<dataset>/<method>": best accuracy at ≤ budget}`` over the compressed points (rounded to 4 digits; a
    method without a point that small is left out)."""
    p = pareto_points(points, compressed_only=True)
    chosen = selection(p)
    return {f"{sweep}_best_accuracy_le_{round(100 * budget)}pct": {
        f"{ds}/{m}": round(v, 4) for (ds, m), g in p.groupby(["dataset", "method"])
        if np.isfinite(v := best_at(g, budget, **chosen))} if not p.empty else {}}


def best_accuracy_metrics(sweep: str, budget: float) -> Callable[[Inputs], dict[str, dict[str, float]]]:
    """The metrics function of a Pareto artifact (:class:`study.registry.Artifact`): :func:`best_accuracy_metric`
    of its sweep."""
    return lambda inputs: best_accuracy_metric(inputs.points(sweep), sweep, budget)


def front_section(heading: str, notebook: str, table: str, figure: str, caption: str) -> Callable[[Path], list[str]]:
    """The REPORT.md section of a Pareto artifact: its heading, its best-at-budget table, its figure."""
    def section(reports_dir: Path) -> list[str]:
        return [heading, "", include_table(reports_dir, table, notebook), include_figure(reports_dir, figure, caption)]
    return section


def pareto_artifact(name: str, paper: str, *, notebook: str, sweep: str, figure: str, tables: tuple[str, str],
                    claim: str, verdict: Callable[[pd.DataFrame, Noise], list[Verdict]], heading: str,
                    metric_budget: float | None = None,
                    borrowed: Mapping[str, tuple[str, ...]] | None = None) -> Artifact:
    """The registry entry of a Pareto figure (Figures 3–5): one sweep (and the repeats, for the noise), one
    figure, its best-at-budget and fronts tables, a claim decided on the sweep's points and those of the runs
    it ``borrowed`` from other sweeps (:meth:`study.registry.Inputs.figure_points`), a REPORT.md section
    (``heading``, the best-at-budget table, the figure), and optionally the best-accuracy metric."""
    inputs = tuple(dict.fromkeys([f"runs/{NOISE_SWEEP}"] + [f"runs/{o}" for o in (borrowed or {})]))
    return Artifact(name, paper, "experiment", notebook=notebook, sweeps=(sweep,), inputs=inputs,
                    figures=(figure,), tables=tables, claims=(claim,),
                    verdicts=from_points(verdict, sweep, borrowed),
                    metrics=None if metric_budget is None else best_accuracy_metrics(sweep, metric_budget),
                    section=front_section(heading, notebook, tables[0], figure, f"{paper} (the paper)"))
