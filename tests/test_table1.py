"""Table 1 of the paper and its claim (a) (study/table1.py): the per-seed cells of ``runs/table1`` (zero-shot-only
runs never give a fine-tuned value), the long / wide / ablation tables, the verdict of claim (a) by 95 % t
intervals over seeds (reproduced / not reproduced / inconclusive / no runs) with its interval checked against
scipy independently, the ablation verdicts, and the notebook end to end on synthetic runs.

The synthetic runs follow ``runs/table1/<base>/<run>/`` (one base per seed, seed = the run's
``train.random_state``); :func:`write_table1_runs` writes them with :func:`tests.helpers.write_run` and returns
the accuracies it wrote, from which the tests compute their references.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from study import table1
from study.registry import Inputs
from study.runs import load_runs

from .helpers import MLP_LAYERS, ratio_of, write_run, write_synthetic_runs

ROOT = Path(__file__).resolve().parents[1]
RANKS = (4, 8, 16, 32)          # the fine-tuned SVD / FWSVD ranks of a vision base
ABLATION_RANKS = (8, 32)        # the zero-shot-only ablation runs
needs_papermill = pytest.mark.skipif(importlib.util.find_spec("papermill") is None, reason="papermill is not installed")


# ------------------------------------------------------------------------------------------ synthetic runs
def _per_seed(value: float | Sequence[float], seeds: Sequence[int]) -> dict[int, float]:
    if isinstance(value, (int, float)):
        return {s: float(value) for s in seeds}
    if len(value) != len(seeds):
        raise ValueError(f"{len(value)} values for {len(seeds)} seeds")
    return dict(zip(seeds, map(float, value)))


def _one_run(run_dir: Path, *, dataset: str, seed: int, method: str, method_args: dict, epochs: int,
             zero_shot: float, fine_tuned: float) -> None:
    """One Table 1 run on the base of ``seed``; an epochs-0 run ends where it started (its final = its start)."""
    ranks = {n: min(method_args["rank"], min(s)) for n, s in MLP_LAYERS.items()}
    write_run(run_dir, method=method, method_args=method_args, epochs=epochs, random_state=seed, dataset=dataset,
              layers=MLP_LAYERS, start=(zero_shot, ranks), epoch_records=[(fine_tuned, ranks)] * epochs,
              trajectory=[{"step": 0, "epoch": 0, "event": "project", "ranks": ranks}])
    # one base per seed, as in runs/table1/<dataset>_k<seed>/
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["spec"]["base"] = f"runs/pretrain/{dataset}_k{seed}/model.pt"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def write_table1_runs(root: Path, *, datasets: Sequence[str] = ("digits",), seeds: Sequence[int] = (0, 1, 2),
                      fwsvd_gain: float | Sequence[float] = 0.1, ft_gap: float | Sequence[float] = 0.0,
                      ablation_gain: Mapping[str, float] | None = None, noise: float = 0.002, epochs: int = 2,
                      ranks: Sequence[int] = RANKS, ablation_ranks: Sequence[int] = ABLATION_RANKS) -> pd.DataFrame:
    """``root/table1/<dataset>_k<seed>/<run>``: SVD and FWSVD fine-tuned at ``ranks`` (FWSVD ahead zero-shot by
    ``fwsvd_gain``, fine-tuned by ``ft_gap``; a scalar or one value per seed), and the zero-shot-only ablations
    (``epochs = 0``) at ``ablation_ranks`` ahead of SVD by ``ablation_gain[variant]``; small Gaussian noise on
    every accuracy. Returns what was written: dataset, variant, rank, seed, zero-shot, fine-tuned (NaN for the
    zero-shot-only runs), pct."""
    ablation_gain = {table1.COLUMNS: 0.05, table1.EMPIRICAL: 0.08} if ablation_gain is None else ablation_gain
    gain, ftg = _per_seed(fwsvd_gain, seeds), _per_seed(ft_gap, seeds)
    written = []
    for ds in datasets:
        for seed in seeds:
            rng = np.random.default_rng(1000 * seed + len(ds))
            group = root / "table1" / f"{ds}_k{seed}"
            svd_zs = {}
            for r in ranks:
                pct = 100 * ratio_of({n: min(r, min(s)) for n, s in MLP_LAYERS.items()}, MLP_LAYERS)
                svd_zs[r] = 0.3 + 0.005 * r + noise * rng.standard_normal()
                svd_ft = 0.9 + noise * rng.standard_normal()
                for m, zs, ft in (("svd", svd_zs[r], svd_ft),
                                  ("fwsvd", svd_zs[r] + gain[seed] + noise * rng.standard_normal(),
                                   svd_ft + ftg[seed] + noise * rng.standard_normal())):
                    _one_run(group / f"{m}_r{r}", dataset=ds, seed=seed, method=m, method_args={"rank": r},
                             epochs=epochs, zero_shot=zs, fine_tuned=ft)
                    written.append({"dataset": ds, "variant": m, "rank": r, "seed": seed, "zero-shot": zs,
                                    "fine-tuned": ft, "pct": pct})
            for variant, key, value in ((table1.COLUMNS, "fwsvd_axis", "columns"),
                                        (table1.EMPIRICAL, "fisher_labels", "empirical")):
                if variant not in ablation_gain:
                    continue
                for r in ablation_ranks:
                    zs = svd_zs[r] + ablation_gain[variant] + noise * rng.standard_normal()
                    _one_run(group / f"{variant.split(' (')[0]}_{value}_r{r}", dataset=ds, seed=seed, method="fwsvd",
                             method_args={"rank": r, key: value}, epochs=0, zero_shot=zs, fine_tuned=zs)
                    written.append({"dataset": ds, "variant": variant, "rank": r, "seed": seed, "zero-shot": zs,
                                    "fine-tuned": np.nan, "pct": np.nan})
    return pd.DataFrame(written)


def reference_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """The t interval of the mean, computed here from scipy's t distribution (not study.intervals)."""
    a = np.asarray(values, dtype=float)
    lo, hi = scipy.stats.t.interval(level, len(a) - 1, loc=a.mean(), scale=scipy.stats.sem(a))
    return float(a.mean()), float(lo), float(hi)


def reference_gaps(written: pd.DataFrame, variant: str, phase: str = "zero-shot",
                   ranks: Sequence[int] | None = None) -> pd.Series:
    """Per seed, the mean over ranks of ``variant − svd`` in ``phase``, from the written accuracies."""
    piv = written.pivot_table(index=["seed", "rank"], columns="variant", values=phase)
    gap = (piv[variant] - piv["svd"]).dropna()
    if ranks is not None:
        gap = gap[gap.index.get_level_values("rank").isin(ranks)]
    return gap.groupby("seed").mean()


def _by_claim(vs: list) -> dict:
    return {v.claim: v for v in vs}


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three seeds on two datasets: FWSVD ahead zero-shot by 0.1, the fine-tuned gap ≈ 0."""
    root = tmp_path_factory.mktemp("runs")
    written = write_table1_runs(root, datasets=("digits", "mnist1d"))
    return load_runs(root, table1.SWEEP), written


# ------------------------------------------------------------------------------------------ variants and cells
def test_method_variant_labels_the_ablations_and_treats_missing_settings_as_defaults() -> None:
    assert table1.method_variant("svd", {}) == "svd"
    assert table1.method_variant("fwsvd", {"fwsvd_axis": float("nan"), "fisher_labels": None}) == "fwsvd"
    assert table1.method_variant("fwsvd", {"fwsvd_axis": "rows", "fisher_labels": "true"}) == "fwsvd"
    assert table1.method_variant("fwsvd", {"fwsvd_axis": "columns"}) == table1.COLUMNS
    assert table1.method_variant("fwsvd", {"fisher_labels": "empirical"}) == table1.EMPIRICAL
    assert table1.method_variant("fwsvd", {"fwsvd_axis": "columns", "fisher_labels": "empirical"}) == \
        "fwsvd (columns, empirical Fisher)"


def test_seed_cells_never_give_a_zero_shot_only_run_a_fine_tuned_value(three_seeds) -> None:
    runs, written = three_seeds
    assert len(runs) == 2 * 3 * (2 * len(RANKS) + 2 * len(ABLATION_RANKS))
    cells = table1.seed_cells(runs)
    assert set(cells["method"]) == set(table1.VARIANT_ORDER)
    ablation = cells[cells["method"].isin(list(table1.ABLATIONS))]
    assert ablation["fine-tuned"].isna().all() and ablation["zero-shot"].notna().all()
    # their final accuracy is their start: present in the runs, but not a fine-tuned value
    zero = runs[runs["epochs"] == 0]
    assert np.allclose(zero["accuracy"], zero["start_accuracy"])
    default = cells[cells["method"].isin(["svd", "fwsvd"])]
    assert default["fine-tuned"].notna().all() and (default["runs"] == 1).all()
    assert set(cells["base"]) == {f"runs/pretrain/{ds}_k{k}/model.pt" for ds in ("digits", "mnist1d") for k in range(3)}
    merged = cells.merge(written.rename(columns={"variant": "method"}), on=["dataset", "method", "rank", "seed"])
    assert len(merged) == len(cells)
    assert np.allclose(merged["zero-shot_x"], merged["zero-shot_y"])
    assert np.allclose(merged["fine-tuned_x"], merged["fine-tuned_y"], equal_nan=True)


def test_a_zero_shot_only_run_beside_a_fine_tuned_one_only_counts_zero_shot() -> None:
    """The text base's layout: svd_r64 (epochs 0) and svd_r64_ft (epochs 1) at the same rank and seed."""
    rows = [{"run": "text/svd_r64", "dataset": "text", "method": "svd", "rank": 64, "random_state": 0, "epochs": 0,
             "start_accuracy": 0.50, "accuracy": 0.50},
            {"run": "text/svd_r64_ft", "dataset": "text", "method": "svd", "rank": 64, "random_state": 0, "epochs": 1,
             "start_accuracy": 0.52, "accuracy": 0.80}]
    (cell,) = table1.seed_cells(pd.DataFrame(rows)).to_dict("records")
    assert cell["zero-shot"] == pytest.approx(0.51) and cell["fine-tuned"] == pytest.approx(0.80)
    assert cell["runs"] == 2 and cell["base"] == "text"


def test_seed_cells_refuse_runs_they_cannot_place() -> None:
    row = {"run": "x/svd_r8", "dataset": "d", "method": "svd", "rank": 8, "random_state": 0, "epochs": 2,
           "start_accuracy": 0.5, "accuracy": 0.9}
    with pytest.raises(ValueError, match=r"lack the columns \['epochs'\]"):
        table1.seed_cells(pd.DataFrame([row]).drop(columns="epochs"))
    with pytest.raises(ValueError, match="no spec.train.random_state"):
        table1.seed_cells(pd.DataFrame([{**row, "random_state": np.nan}]))
    with pytest.raises(ValueError, match="no spec.train.epochs"):
        table1.seed_cells(pd.DataFrame([{**row, "epochs": np.nan}]))
    with pytest.raises(ValueError, match="phase"):
        table1.paired_gaps(table1.seed_cells(pd.DataFrame([row])), "fwsvd", phase="final")
    with pytest.raises(ValueError, match="not an ablation"):
        table1.verdict_ablation("d", table1.seed_cells(pd.DataFrame([row])), "svd")


# ------------------------------------------------------------------------------------------ tables
def test_long_table_has_means_stds_and_seed_counts(three_seeds) -> None:
    runs, written = three_seeds
    t = table1.table1_table(runs)
    assert list(t.columns) == ["dataset", "method", "rank", "% MLP params", "zero-shot", "zero-shot std",
                               "fine-tuned", "fine-tuned std", "n", "n fine-tuned"]
    assert len(t) == 2 * (2 * len(RANKS) + 2 * len(ABLATION_RANKS))
    for ds, m, r in (("digits", "fwsvd", 8), ("mnist1d", "svd", 32), ("digits", table1.EMPIRICAL, 8)):
        row = t[(t["dataset"] == ds) & (t["method"] == m) & (t["rank"] == r)].iloc[0]
        w = written[(written["dataset"] == ds) & (written["variant"] == m) & (written["rank"] == r)]
        assert row["zero-shot"] == pytest.approx(w["zero-shot"].mean())
        assert row["zero-shot std"] == pytest.approx(np.std(w["zero-shot"].to_numpy(), ddof=1))
        assert row["n"] == 3
        if m in table1.ABLATIONS:
            assert math.isnan(row["fine-tuned"]) and row["n fine-tuned"] == 0
        else:
            assert row["fine-tuned"] == pytest.approx(w["fine-tuned"].mean()) and row["n fine-tuned"] == 3
            assert row["% MLP params"] == pytest.approx(w["pct"].iloc[0])
    # variants in order within a dataset: svd, fwsvd, then the ablations
    digits = t[t["dataset"] == "digits"]["method"].tolist()
    assert digits == sorted(digits, key=list(table1.VARIANT_ORDER).index)


def test_wide_table_keeps_the_papers_layout_without_empty_fine_tuned_rows(three_seeds) -> None:
    runs, _ = three_seeds
    wide = table1.table1_wide(table1.table1_table(runs))
    fine = wide[wide["phase"] == "fine-tuned"]
    assert set(fine["method"]) == {"svd", "fwsvd"}, "the zero-shot-only variants have no fine-tuned row"
    assert set(wide.loc[wide["phase"] == "zero-shot", "method"]) == set(table1.VARIANT_ORDER)
    assert len([c for c in wide.columns if c.endswith("%")]) == len(RANKS)


def test_tables_on_the_shared_synthetic_runs(tmp_path: Path) -> None:
    synthetic = write_synthetic_runs(tmp_path / "runs", repeats=False)
    t1 = table1.table1_table(load_runs(synthetic, "table1"), load_runs(synthetic, "pretrain"))
    assert set(t1["dataset"]) == {"digits", "text"}
    assert (t1[t1["method"] == "full model"]["zero-shot"] == 0.9).all()
    wide = table1.table1_wide(t1)
    assert list(wide["phase"].unique()) == ["zero-shot", "fine-tuned"]
    assert "full model" in wide.columns and len(wide) == 8
    assert "no FWSVD ablation runs" in table1.table1_ablation(t1)["status"].iloc[0]
    assert "no runs" in table1.table1_table(load_runs(tmp_path / "none", "table1"))["status"].iloc[0]


def test_ablation_table_sits_beside_the_default_fwsvd_and_svd(three_seeds) -> None:
    runs, written = three_seeds
    abl = table1.table1_ablation(table1.table1_table(runs))
    assert list(abl.columns) == ["dataset", "rank", "% MLP params", "variant", "zero-shot", "zero-shot std", "n",
                                 "fwsvd zero-shot", "svd zero-shot"]
    assert len(abl) == 2 * 2 * len(ABLATION_RANKS) and (abl["n"] == 3).all()
    row = abl[(abl["dataset"] == "mnist1d") & (abl["rank"] == 32) & (abl["variant"] == table1.COLUMNS)].iloc[0]
    w = written[(written["dataset"] == "mnist1d") & (written["rank"] == 32)].groupby("variant")["zero-shot"].mean()
    assert row["zero-shot"] == pytest.approx(w[table1.COLUMNS])
    assert row["fwsvd zero-shot"] == pytest.approx(w["fwsvd"]) and row["svd zero-shot"] == pytest.approx(w["svd"])


# ------------------------------------------------------------------------------------------ claim (a)
def test_claim_a_reproduced_with_its_interval_checked_against_scipy(three_seeds) -> None:
    runs, written = three_seeds
    vs = _by_claim(table1.verdict_table1(runs, table1.paper_table1(ROOT / "reports")))
    assert list(vs) == ["(a) digits", "(a) digits, FWSVD columns", "(a) digits, empirical Fisher",
                        "(a) mnist1d", "(a) mnist1d, FWSVD columns", "(a) mnist1d, empirical Fisher"]
    v = vs["(a) digits"]
    assert v.verdict == "reproduced"
    w = written[written["dataset"] == "digits"]
    mean, lo, hi = reference_interval(reference_gaps(w, "fwsvd").to_numpy())
    assert v.effect == f"{mean:+.4f}" and mean == pytest.approx(0.1, abs=0.01)
    assert v.interval == f"[{lo:+.4f}, {hi:+.4f}] (95 % t, 3 seeds)"
    # the second half: half the zero-shot gap − |fine-tuned gap|, per seed, at the fine-tuned ranks
    zs, ft = reference_gaps(w, "fwsvd"), reference_gaps(w, "fwsvd", "fine-tuned")
    m2, lo2, hi2 = reference_interval((zs / 2 - ft.abs()).to_numpy())
    assert f"{m2:+.4f} [{lo2:+.4f}, {hi2:+.4f}] (95 % t interval, 3 seeds)" in v.evidence
    assert v.datasets == "digits" and v.seeds == "0, 1, 2 (base and run seed)"
    assert v.sizes.startswith("r = 4, 8, 16, 32 (") and "% of MLP params" in v.sizes
    assert "3 bases" in v.evidence and "r=8:" in v.evidence
    # the paper's own Table 1 gaps are quoted
    assert "over 6 sizes: zero-shot mean +0.1028" in v.paper


def test_claim_a_not_reproduced_when_svd_wins_zero_shot(tmp_path: Path) -> None:
    write_table1_runs(tmp_path, fwsvd_gain=-0.1)
    v = _by_claim(table1.verdict_table1(load_runs(tmp_path, table1.SWEEP)))["(a)"]
    assert v.verdict == "not reproduced" and v.effect.startswith("-0.1")


def test_claim_a_not_reproduced_when_the_gap_stays_after_fine_tuning(tmp_path: Path) -> None:
    write_table1_runs(tmp_path, fwsvd_gain=0.1, ft_gap=0.1)
    v = _by_claim(table1.verdict_table1(load_runs(tmp_path, table1.SWEEP)))["(a)"]
    assert v.verdict == "not reproduced"
    assert decide_interval_of(v.interval) == "above 0", "the zero-shot half alone holds"


def _bounds(text: str) -> tuple[float, float]:
    """``[−0.0040, +0.0290] (…)`` → (−0.004, 0.029)."""
    lo, hi = (float(x) for x in text.split("]")[0].lstrip("[").split(","))
    return lo, hi


def decide_interval_of(bounds: str) -> str:
    lo, hi = _bounds(bounds)
    return "above 0" if lo > 0 else "below 0" if hi < 0 else "contains 0"


def test_claim_a_inconclusive_when_the_zero_shot_interval_contains_zero(tmp_path: Path) -> None:
    write_table1_runs(tmp_path, fwsvd_gain=[0.05, -0.04, 0.01], noise=0.0)
    v = _by_claim(table1.verdict_table1(load_runs(tmp_path, table1.SWEEP)))["(a)"]
    assert v.verdict.startswith("inconclusive (zero-shot gap: interval contains 0: +0.0067 [")
    assert decide_interval_of(v.interval) == "contains 0"


def test_claim_a_inconclusive_with_one_seed_and_one_base(tmp_path: Path) -> None:
    write_table1_runs(tmp_path, seeds=(0,), fwsvd_gain=0.2)
    vs = table1.verdict_table1(load_runs(tmp_path, table1.SWEEP))
    assert all(v.verdict.startswith("inconclusive (") for v in vs)
    v = _by_claim(vs)["(a)"]
    assert "zero-shot gap: 1 seed < 3" in v.verdict and "closing after fine-tuning: 1 seed < 3" in v.verdict
    assert "1 base:" in v.evidence and v.interval == "none (1 seed)" and v.seeds == "0 (base and run seed)"


def test_claim_a_on_the_text_layout_compares_the_fine_tuned_rank_only(tmp_path: Path) -> None:
    """One base, zero-shot-only runs at three ranks and one fine-tuned pair (rank 64): inconclusive, and the
    closing margin is taken at rank 64 only."""
    rows = []
    zs = {("svd", 32): 0.30, ("svd", 64): 0.40, ("svd", 128): 0.60, ("fwsvd", 32): 0.50, ("fwsvd", 64): 0.60,
          ("fwsvd", 128): 0.66}
    for (m, r), acc in zs.items():
        rows.append({"run": f"text/{m}_r{r}", "dataset": "text", "method": m, "rank": r, "random_state": 0,
                     "epochs": 0, "start_accuracy": acc, "accuracy": acc})
    for m, acc in (("svd", 0.80), ("fwsvd", 0.81)):
        rows.append({"run": f"text/{m}_r64_ft", "dataset": "text", "method": m, "rank": 64, "random_state": 0,
                     "epochs": 1, "start_accuracy": zs[(m, 64)], "accuracy": acc})
    (v,) = table1.verdict_table1(pd.DataFrame(rows))
    assert v.claim == "(a)" and v.verdict.startswith("inconclusive (zero-shot gap: 1 seed < 3")
    assert v.effect == f"{np.mean([0.2, 0.2, 0.06]):+.4f}" and "1 base:" in v.evidence
    assert f"fine-tuned ranks {0.2 / 2 - 0.01:+.4f} (1 seed: no interval)" in v.evidence, \
        "the margin at the fine-tuned rank 64 only"
    t = table1.table1_table(pd.DataFrame(rows))
    assert t.loc[t["rank"] == 64, "fine-tuned"].tolist() == pytest.approx([0.80, 0.81])
    assert t.loc[t["rank"] != 64, "fine-tuned"].isna().all()


def test_claim_a_without_a_fine_tuned_pair_is_inconclusive_not_reproduced(tmp_path: Path) -> None:
    write_table1_runs(tmp_path, epochs=0)
    v = _by_claim(table1.verdict_table1(load_runs(tmp_path, table1.SWEEP)))["(a)"]
    assert v.verdict == "inconclusive (closing after fine-tuning: no rank at which both were fine-tuned)"
    assert "no rank at which both were fine-tuned" in v.evidence


def test_claim_a_without_runs(tmp_path: Path) -> None:
    (v,) = table1.verdict_table1(load_runs(tmp_path / "none", table1.SWEEP))
    assert (v.claim, v.verdict) == ("(a)", "no runs")
    only_svd = pd.DataFrame([{"run": "a/svd_r8", "dataset": "d", "method": "svd", "rank": 8, "random_state": 0,
                              "epochs": 1, "start_accuracy": 0.5, "accuracy": 0.9}])
    (v,) = table1.verdict_table1(only_svd)
    assert v.verdict == "no runs" and "no rank at which both" in v.evidence


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-0.3, 0.3, allow_nan=False), min_size=1, max_size=6),
       st.lists(st.floats(-0.1, 0.1, allow_nan=False), min_size=6, max_size=6))
def test_claim_a_interval_and_decision_follow_the_per_seed_gaps(gains: list[float], ft: list[float]) -> None:
    """Any per-seed gains: the effect and interval are scipy's t interval of the per-seed mean gaps, and the
    verdict is reproduced exactly when both intervals lie above 0 (3+ seeds), not reproduced when one lies
    below."""
    rows = []
    for s, g in enumerate(gains):
        for r in (8, 16):
            for m, zs, acc in (("svd", 0.4, 0.9), ("fwsvd", 0.4 + g + 0.01 * (r == 16), 0.9 + ft[s])):
                rows.append({"run": f"d_k{s}/{m}_r{r}", "dataset": "d", "method": m, "rank": r, "random_state": s,
                             "epochs": 2, "start_accuracy": zs, "accuracy": acc})
    (v,) = table1.verdict_table1(pd.DataFrame(rows))
    zs = np.array(gains) + 0.005
    margin = zs / 2 - np.abs(np.array(ft[: len(gains)]))
    assert v.effect == f"{zs.mean():+.4f}"
    if len(gains) < 3:
        assert v.verdict.startswith("inconclusive (")
        return
    _, lo, hi = reference_interval(zs)
    _, lo2, hi2 = reference_interval(margin)
    if not (np.isfinite(lo) and np.isfinite(lo2)):     # identical per-seed values: no spread
        return
    assert v.interval.endswith(f"(95 % t, {len(gains)} seeds)")
    assert _bounds(v.interval) == pytest.approx((lo, hi), abs=1e-4)
    if min(abs(b) for b in (lo, hi, lo2, hi2)) < 1e-9:  # a bound at 0 up to rounding: either side is right
        return
    if hi < 0 or hi2 < 0:
        assert v.verdict == "not reproduced"
    elif lo > 0 and lo2 > 0:
        assert v.verdict == "reproduced"
    else:
        assert v.verdict.startswith("inconclusive (")


def test_paper_gaps_from_the_papers_own_table() -> None:
    paper = pd.read_csv(ROOT / "reports" / "paper" / "table1.csv")
    gaps = table1.paper_gaps(paper)
    piv = paper.pivot_table(index="pct_params", columns=["phase", "method"], values="accuracy")
    ref_zs = (piv[("zero-shot", "fwsvd")] - piv[("zero-shot", "svd")]).mean()
    ref_ft = (piv[("fine-tuned", "fwsvd")] - piv[("fine-tuned", "svd")]).mean()
    assert len(gaps) == 6 and gaps["zero-shot gap"].mean() == pytest.approx(ref_zs) == pytest.approx(0.10278, abs=1e-4)
    assert gaps["fine-tuned gap"].mean() == pytest.approx(ref_ft)
    # on the paper's own numbers the closing half holds: half the zero-shot gap exceeds the fine-tuned one
    assert ref_zs / 2 - abs(ref_ft) > 0
    assert table1.paper_gaps(paper[paper["method"] != "svd"]).empty


# ------------------------------------------------------------------------------------------ the ablation
def test_ablation_verdicts_with_their_intervals(three_seeds) -> None:
    runs, written = three_seeds
    vs = _by_claim(table1.verdict_table1(runs))
    for variant, name in table1.ABLATIONS.items():
        v = vs[f"(a) mnist1d, {name}"]
        assert v.verdict == "reproduced" and v.statement.startswith("(a) ")
        mean, lo, hi = reference_interval(reference_gaps(written[written["dataset"] == "mnist1d"], variant).to_numpy())
        assert v.effect == f"{mean:+.4f}" and v.interval == f"[{lo:+.4f}, {hi:+.4f}] (95 % t, 3 seeds)"
        assert v.sizes.startswith("r = 8, 32 (") and "the default FWSVD − SVD at the same ranks" in v.evidence


def test_ablation_not_reproduced_when_the_variant_loses_to_svd(tmp_path: Path) -> None:
    write_table1_runs(tmp_path, ablation_gain={table1.COLUMNS: -0.05})
    vs = _by_claim(table1.verdict_table1(load_runs(tmp_path, table1.SWEEP)))
    assert vs["(a) digits, FWSVD columns"].verdict == "not reproduced"
    assert "(a) digits, empirical Fisher" not in vs, "no runs of a variant: no verdict for it"
    assert vs["(a)"].verdict == "reproduced"


# ------------------------------------------------------------------------------------------ registry, notebook
def test_registry_verdicts_read_the_sweep_and_the_papers_table(tmp_path: Path) -> None:
    write_table1_runs(tmp_path / "runs")
    vs = table1.verdicts(Inputs(tmp_path / "runs", ROOT / "reports"))
    assert [v.claim for v in vs] == ["(a)", "(a) digits, FWSVD columns", "(a) digits, empirical Fisher"]
    assert "zero-shot mean +0.1028" in vs[0].paper
    assert table1.ABLATION in table1.ARTIFACT.tables
    assert any(table1.ABLATION in line for line in table1.section(tmp_path / "reports"))


@needs_papermill
def test_notebook_on_synthetic_runs(tmp_path: Path) -> None:
    from .notebook_runner import execute_notebook

    runs = tmp_path / "runs"
    write_table1_runs(runs, datasets=("digits", "mnist1d"))
    out = tmp_path / "out"
    execute_notebook(table1.NOTEBOOK, tmp_path, runs_dir=str(runs), out_dir=str(out), paper_dir=str(ROOT / "reports"))
    for rel in table1.ARTIFACT.outputs():
        assert (out / rel).stat().st_size > (1000 if rel.startswith("figures/") else 0), rel
    abl = pd.read_csv(out / "tables" / f"{table1.ABLATION}.csv")
    assert set(abl["variant"]) == set(table1.ABLATIONS) and (abl["n"] == 3).all()
    ours = pd.read_csv(out / "tables" / f"{table1.OURS}.csv")
    assert {"zero-shot std", "n"} <= set(ours.columns)
    nb = json.loads((tmp_path / f"{table1.NOTEBOOK}.ipynb").read_text())
    text = json.dumps(nb)
    assert "(a) digits, FWSVD columns" in text and "reproduced" in text
