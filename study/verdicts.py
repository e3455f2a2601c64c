"""How every claim of the paper (Table 1, Figures 2–5, Proposition 4.3) and its companion (tenBCD) is
decided: a :class:`Verdict` per claim, against the noise level of the repeats sweep.

Claim verdicts are one of ``reproduced``, ``not reproduced``, ``inconclusive (...)`` or ``no runs``. A
difference counts as real only when it exceeds the noise tolerance: twice the standard deviation of a
difference of two runs, ``2·√2·σ``, where σ is the pooled standard deviation of the final accuracy over
the repeats sweep (``runs/repeats``: the same spec at several ``train.random_state`` values); without
repeats a fixed tolerance of one accuracy point is used, and the report says so.

A comparison of two Pareto fronts (:func:`study.fronts.compare_fronts`, at matched sizes only) decides
a claim only when it covers enough of the sizes the two fronts share (:data:`MIN_COVERAGE`); otherwise
the verdict is ``inconclusive (coverage …)``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .fronts import pareto_points, selection
from .intervals import MIN_SEEDS, Interval, decide_interval, front_gap_interval

__all__ = ["DEFAULT_TOLERANCE", "NOISE_SWEEP", "Noise", "Verdict", "VERDICT_COLUMNS", "verdict_frame", "GLANCE_CELL",
           "GLANCE_COLUMNS", "shorten", "glance_row", "glance_frame", "verdict_sections", "noise_level", "decide",
           "per_dataset", "per_dataset_verdicts", "seed_directions", "decision", "MIN_COVERAGE", "covered",
           "coverage_verdict", "decide_fronts", "front_comparison_text", "single_seed", "seeds_of",
           "front_gap_over_seeds", "decide_over_seeds", "over_seeds_text", "seeds_text"]

#: tolerance when no repeats exist: one accuracy point
DEFAULT_TOLERANCE = 0.01
#: the sweep whose spread over random states is the noise level of every verdict (run by Figure 2's notebook)
NOISE_SWEEP = "repeats"
#: the least coverage (budgets compared at matched sizes / budgets of the grid) a front comparison needs to
#: decide a claim: below half, the mean gap describes a minority of the sizes the two fronts share, and
#: cannot stand for the fronts over their shared range
MIN_COVERAGE = 0.5


@dataclass
class Noise:
    """Pooled standard deviation ``sigma`` of final accuracy over repeats and the decision ``tolerance``."""

    sigma: float
    tolerance: float
    source: str


@dataclass
class Verdict:
    """One claim's verdict. ``effect`` (oriented so that positive is what the paper claims), ``interval``
    (its 95 % interval over seeds, with the method and the number of seeds), ``sizes`` (the sizes compared
    and the coverage), ``datasets`` and ``seeds`` (which seeds vary) are the columns of REPORT.md's verdict
    table; ``evidence`` holds every other number that decides it."""

    claim: str
    statement: str
    paper: str
    verdict: str
    evidence: str
    effect: str = ""
    interval: str = ""
    sizes: str = ""
    datasets: str = ""
    seeds: str = ""

    def as_row(self) -> dict[str, str]:
        return asdict(self)


#: the columns of the verdict table (REPORT.md and :func:`verdict_frame`), in order, with their headers
VERDICT_COLUMNS = {"claim": "claim", "verdict": "verdict", "effect": "effect", "interval": "95 % interval",
                   "sizes": "sizes compared (coverage)", "datasets": "datasets", "seeds": "seeds"}


#: the widest cell of REPORT.md's verdict table (characters): the table is read at a glance, on one screen
GLANCE_CELL = 120
#: the columns of REPORT.md's verdict table, in order
GLANCE_COLUMNS = ("claim", "the paper says", "verdict", "effect [95 % interval]", "seeds", "regime")


def shorten(text: str, width: int = GLANCE_CELL) -> str:
    """``text`` on one line, cut at a word boundary to at most ``width`` characters (an ellipsis marks a cut)."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[:width - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def glance_row(v: Verdict) -> dict[str, str]:
    """One row of the verdict table: the verdict's word(s), without the reason (kept in the claim's section)."""
    paper = v.statement.split(") ", 1)[-1] if v.statement.startswith("(") else v.statement
    effect = " ".join(x for x in (v.effect, v.interval) if x) or "–"
    regime = "; ".join(x for x in (v.datasets, v.sizes) if x) or "–"
    cells = {"claim": v.claim, "the paper says": paper, "verdict": v.verdict.split(" (")[0],
             "effect [95 % interval]": effect, "seeds": v.seeds or "–", "regime": regime}
    return {k: shorten(cells[k]) for k in GLANCE_COLUMNS}


def glance_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """REPORT.md's verdict table: one row per claim, every cell at most :data:`GLANCE_CELL` characters."""
    return pd.DataFrame([glance_row(v) for v in verdicts], columns=list(GLANCE_COLUMNS))


def verdict_sections(verdicts: Sequence[Verdict]) -> list[str]:
    """The numbers behind each verdict, one Markdown section per claim (REPORT.md, below the verdict table)."""
    lines: list[str] = []
    for v in verdicts:
        lines += [f"### {v.claim}", "", f"- **The paper claims:** {v.statement}" + (f" ({v.paper})" if v.paper else ""),
                  f"- **Verdict:** {v.verdict}"]
        lines += [f"- **{h}:** {getattr(v, k)}" for k, h in VERDICT_COLUMNS.items()
                  if k not in ("claim", "verdict") and getattr(v, k)]
        lines += [f"- **Our numbers:** {v.evidence}" if v.evidence else "- **Our numbers:** –", ""]
    return lines


def verdict_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """The verdict table: claim, verdict, effect, interval, sizes, datasets, seeds, and our numbers."""
    cols = list(VERDICT_COLUMNS.values()) + ["our numbers"]
    return pd.DataFrame([{**{h: getattr(v, k) or "–" for k, h in VERDICT_COLUMNS.items()}, "our numbers": v.evidence}
                         for v in verdicts], columns=cols)


def noise_level(repeats: pd.DataFrame) -> Noise:
    """From the repeats sweep: σ² pooled over the groups of identical specs (same dataset, method,
    setting, epochs) with ≥ 2 random_states; tolerance ``2·√2·σ`` (two standard deviations of the
    difference of two runs). Without repeats: :data:`DEFAULT_TOLERANCE`."""
    if not repeats.empty:
        var, dof = 0.0, 0
        for _, g in repeats.groupby(["dataset", "method", "setting", "epochs"], dropna=False):
            a = g["accuracy"].dropna().to_numpy(dtype=float)
            if a.size >= 2:
                var += float(np.var(a, ddof=1)) * (a.size - 1)
                dof += a.size - 1
        if dof:
            sigma = math.sqrt(var / dof)
            return Noise(sigma, 2 * math.sqrt(2) * sigma,
                         f"pooled std of final accuracy over runs/repeats σ = {sigma:.4f} ({dof} degrees of "
                         f"freedom); tolerance 2·√2·σ = {2 * math.sqrt(2) * sigma:.4f}")
    return Noise(float("nan"), DEFAULT_TOLERANCE,
                 f"no repeats (runs/repeats): fixed tolerance of {DEFAULT_TOLERANCE:.2f} accuracy; the true noise "
                 f"level is unknown")


def decide(diff: float, tol: float) -> str:
    """``reproduced`` when ``diff > tol``, ``not reproduced`` when ``diff < −tol``, else inconclusive."""
    if not np.isfinite(diff):
        return "no runs"
    if diff > tol:
        return "reproduced"
    if diff < -tol:
        return "not reproduced"
    return f"inconclusive (within noise: |{diff:+.4f}| ≤ {tol:.4f})"


def per_dataset(df: pd.DataFrame, claim: str) -> Iterator[tuple[Any, str, pd.DataFrame]]:
    """``(dataset, label, rows of that dataset)`` for each dataset of ``df``, sorted; the label is the claim,
    followed by the dataset when there are several (``(b) digits``): one verdict per dataset."""
    dsets = sorted(df["dataset"].dropna().unique(), key=str) if not df.empty else []
    for ds in dsets:
        yield ds, (f"{claim} {ds}" if len(dsets) > 1 else claim), df[df["dataset"] == ds]


def per_dataset_verdicts(points: pd.DataFrame, claim: str, statement: str, paper: str, sweep: str,
                         verdict: Callable[[Any, str, pd.DataFrame], Verdict], *,
                         compressed_only: bool = True) -> list[Verdict]:
    """One verdict per dataset on the Pareto points of ``points`` (``compressed_only``: the compressed ones):
    ``verdict(dataset, label, its points)``; a single ``no runs`` verdict when there is no such point."""
    p = pareto_points(points, compressed_only=compressed_only)
    if p.empty:
        return [Verdict(claim, statement, paper, "no runs",
                        f"no {'compressed points' if compressed_only else 'runs'} in runs/{sweep}")]
    return [verdict(ds, lab, d) for ds, lab, d in per_dataset(p, claim)]


def covered(cmp: Mapping[str, Any]) -> bool:
    """Whether a :func:`study.fronts.compare_fronts` result covers enough of its grid to decide a claim
    (coverage ≥ :data:`MIN_COVERAGE`, and at least one budget compared)."""
    return cmp["n_compared"] > 0 and cmp["coverage"] >= MIN_COVERAGE


def coverage_verdict(cmp: Mapping[str, Any]) -> str:
    """The verdict of a comparison that covers too little: ``inconclusive (coverage n/N = c% < m%)``."""
    return (f"inconclusive (coverage {cmp['n_compared']}/{cmp['n_grid']} = {100 * cmp['coverage']:.0f}% < "
            f"{100 * MIN_COVERAGE:.0f}%)")


def decide_fronts(cmp: Mapping[str, Any], tol: float) -> str:
    """The verdict of a front comparison: :func:`coverage_verdict` when it covers too little
    (:func:`covered`), else :func:`decide` on its mean gap."""
    return decide(cmp["mean_gap"], tol) if covered(cmp) else coverage_verdict(cmp)


def front_comparison_text(cmp: Mapping[str, Any], name_a: str, name_b: str) -> str:
    """The evidence of a :func:`study.fronts.compare_fronts` result: the mean gap of ``a − b`` at matched
    sizes, over how many budgets of the grid (the coverage) and where."""
    grid, rtol = cmp["grid"], 100 * cmp["match_rtol"]
    if not grid.size:
        return f"{name_a} vs {name_b}: their size ranges are too far apart to compare (no shared budget)"
    where = (f"{cmp['n_compared']}/{cmp['n_grid']} budgets (coverage {100 * cmp['coverage']:.0f}%) in "
             f"[{100 * grid.min():.2f}%, {100 * grid.max():.2f}%] of target parameters")
    if not np.isfinite(cmp["mean_gap"]):
        return f"{name_a} vs {name_b}: at none of {where} were both evaluated within {rtol:.0f}% below it"
    g = cmp["gaps"]
    return (f"{name_a} − {name_b}: mean front gap {cmp['mean_gap']:+.4f} over {where}, each front read within "
            f"{rtol:.0f}% below the budget (compared from {100 * cmp['lo']:.2f}% to {100 * cmp['hi']:.2f}%; at "
            f"{100 * cmp['lo']:.2f}%: {cmp['gap_at_lo']:+.4f}; min {g.min():+.4f}, max {g.max():+.4f})")


def single_seed(verdict: str, seeds: int = 1) -> str:
    """The verdict of an effect measured on fewer than :data:`study.intervals.MIN_SEEDS` seeds: never
    "reproduced" or "not reproduced" (no interval over seeds exists), but ``inconclusive (…)`` saying what the
    noise tolerance alone would read, so the reader sees the direction; other verdicts pass through."""
    if seeds >= MIN_SEEDS or not (verdict.startswith("reproduced") or verdict.startswith("not reproduced")):
        return verdict
    return (f"inconclusive ({seeds} seed{'s' if seeds != 1 else ''} < {MIN_SEEDS}; against the noise tolerance "
            f"alone: {verdict})")


def seeds_of(points: pd.DataFrame) -> list[Any]:
    """The seeds (``random_state``: the base's and the run's) of ``points``, sorted; ``[]`` when the column
    is absent (points whose seeds are unknown)."""
    if points.empty or "random_state" not in points.columns:
        return []
    return sorted(points["random_state"].dropna().unique())


def front_gap_over_seeds(a: pd.DataFrame, b: pd.DataFrame) -> tuple[Interval, pd.DataFrame]:
    """The 95 % t interval of the front gap ``a − b`` at matched sizes over the seeds both have, each seed's
    fronts built from its own runs; a seed whose comparison covers less than :data:`MIN_COVERAGE` of its
    budgets is left out (:func:`study.intervals.front_gap_interval`; its table says which). Points are chosen
    on validation when every point has a validation accuracy (:func:`study.fronts.selection`)."""
    return front_gap_interval(a, b, min_coverage=MIN_COVERAGE, **selection(a, b))


def decision(verdict: str) -> str:
    """The decision a verdict's text states: ``reproduced``, ``not reproduced``, ``inconclusive`` or the text
    itself (``no runs``, a theory verdict's own words)."""
    for word in ("not reproduced", "reproduced", "inconclusive"):
        if verdict.startswith(word):
            return word
    return verdict


def seed_directions(gaps: Any) -> str:
    """Which way per-seed effects point (positive = the paper's claim): ``seeds point 0 for, 3 against the
    paper (mean −0.0123)``; ``""`` without a finite effect."""
    g = np.asarray(gaps, dtype=float).ravel()
    g = g[np.isfinite(g)]
    if not g.size:
        return ""
    return (f"seeds point {int((g > 0).sum())} for, {int((g < 0).sum())} against the paper"
            + (f", {int((g == 0).sum())} at 0" if (g == 0).any() else "") + f" (mean {g.mean():+.4f})")


def decide_over_seeds(iv: Interval, per_seed: pd.DataFrame) -> str:
    """:func:`study.intervals.decide_interval`, or ``inconclusive (coverage …)`` when seeds were compared but
    none covers enough of its budgets; an inconclusive verdict says which way the seeds point
    (:func:`seed_directions`: the seeds used, or, when coverage left all out, every seed compared)."""
    if iv.n == 0 and len(per_seed):
        way = seed_directions(per_seed["mean_gap"])
        return (f"inconclusive (coverage: no seed's comparison covers {100 * MIN_COVERAGE:.0f}% of its "
                f"budgets" + (f"; {way}" if way else "") + ")")
    verdict = decide_interval(iv)
    if verdict.startswith("inconclusive") and verdict.endswith(")") and len(per_seed):
        way = seed_directions(per_seed.loc[per_seed["used"], "mean_gap"])
        if way:
            verdict = f"{verdict[:-1]}; {way})"
    return verdict


def over_seeds_text(iv: Interval, per_seed: pd.DataFrame, name_a: str, name_b: str) -> str:
    """``a − b over seeds: +0.0123 [−0.0040, +0.0290] (95 % t interval, 3 seeds); per seed 0: +0.0100
    (coverage 86%), …``, with the seeds left out for coverage."""
    parts = [f"{r['seed']}: {r['mean_gap']:+.4f} (coverage {100 * r['coverage']:.0f}%"
             + ("" if r["used"] else f", left out: < {100 * MIN_COVERAGE:.0f}%") + ")"
             for _, r in per_seed.iterrows()]
    return f"{name_a} − {name_b} over seeds: {iv.text()}; per seed {', '.join(parts) or 'none'}"


def seeds_text(per_seed: pd.DataFrame) -> str:
    """The seeds an interval used: ``0, 1, 2 (each the base's and the run's seed)``."""
    used = [str(s) for s in per_seed.loc[per_seed["used"], "seed"]] if len(per_seed) else []
    return f"{', '.join(used)} (each the base's and the run's seed)" if used else "–"
