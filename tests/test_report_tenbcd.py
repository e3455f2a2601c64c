"""Tables, figures and verdicts of the tenBCD study (study/tenbcd.py) on a real, tiny run, and notebook 07."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tenbcd import run_tenbcd_experiment
from study import tenbcd as rt

from .notebook_runner import execute_notebook

TINY = {"dataset": "digits", "hidden": [16], "tt_cores": 2, "compression_ratios": [1.0, 0.3], "threads": 1,
        "tenbcd": {"iterations": 6, "eval_every": 3}, "adamw": {"epochs": 1}}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run_tenbcd_experiment(TINY, runs / "tenbcd" / "digits", progress=False)
    return runs


def test_load_and_table(tiny_runs: Path) -> None:
    df, hist = rt.load_tenbcd(tiny_runs)
    assert list(df["target_cr"]) == [1.0, 0.3] and set(hist) == {"digits"}
    assert df["alpha"].iloc[0] == pytest.approx(0.003) and int(df["n_test"].iloc[0]) == 449
    table = rt.tenbcd_table(df)
    assert list(table["bond rank"])[0] == "dense" and table["bond rank"].iloc[1].isdigit()
    assert table["tenBCD (TT net)"].between(0, 1).all()
    empty, _ = rt.load_tenbcd(tiny_runs / "nothing")
    assert empty.empty and "status" in rt.tenbcd_table(empty).columns


def test_rate_check_is_the_summed_decrease(tiny_runs: Path) -> None:
    df, hist = rt.load_tenbcd(tiny_runs)
    r = rt.rate_check(hist["digits"]["0.3"], float(df["alpha"].iloc[0]))
    assert list(r["k"]) == list(range(1, 7))
    # summing the per-iteration decrease gives Φ₀ − Φ_k ≥ λ Σ_j ‖ΔP_j‖² ≥ λ k min_j ‖ΔP_j‖²
    lam = float(df["alpha"].iloc[0]) / 2
    obj0 = hist["digits"]["0.3"]["tenbcd"]["objective"][0]
    summed = lam * np.cumsum(r["dP2"].to_numpy())
    # each iteration's sufficient decrease holds up to the report's own rounding allowance (verdict (g1)):
    # slack ≥ −SLACK_TOLERANCE·max(|Φ|, 1), and Φ_k ≤ Φ₀; summing k of them sums k allowances
    allowance = rt.SLACK_TOLERANCE * max(abs(obj0), 1.0)
    k = r["k"].to_numpy()
    assert np.all(summed <= obj0 - r["objective"].to_numpy() + k * allowance)
    # min ≤ mean of the first k, which the line above bounds: bound + allowance/λ
    assert np.all(r["min_dP2"] <= r["bound"] + allowance / lam)


def test_decrease_margin_and_training_accuracy_are_reported(tiny_runs: Path) -> None:
    """(g1)'s power: the margin is the decrease over the guaranteed λ‖ΔP‖², recomputed here from the objective
    history alone (not from the recorded slack); and the table shows tenBCD's training accuracy."""
    df, hist = rt.load_tenbcd(tiny_runs)
    lam = float(df["alpha"].iloc[0]) / 2
    h = hist["digits"]["0.3"]["tenbcd"]
    r = rt.rate_check(hist["digits"]["0.3"], 2 * lam)
    obj, dp = np.asarray(h["objective"], float), np.asarray([np.nan if v is None else v for v in h["dP2"]], float)
    expected = (obj[:-1] - obj[1:]) / (lam * dp[1:])
    # the slack and the objective are both float64 sums of the same terms: agreement to float64 rounding of Φ
    np.testing.assert_allclose(r["margin"], expected, rtol=1e-9 * max(1.0, float(np.abs(obj).max())) / float(
        np.min(lam * dp[1:])))
    assert (r["margin"] >= 1 - 1e-6).all()                 # (g1) holds on these runs
    g1 = {x.claim: x for x in rt.verdict_tenbcd(df, hist)}["(g1)"]
    least = min(float(np.nanmin(rt.rate_check(h, 2 * lam)["margin"])) for h in hist["digits"].values())
    assert f"Its power is small: the decrease exceeds the guaranteed (α/2)‖ΔP‖² by a factor of {least:.1f} at least" \
        in g1.evidence
    table = rt.tenbcd_table(df)
    assert table["tenBCD train (TT net)"].between(0, 1).all()
    g3 = {x.claim: x for x in rt.verdict_tenbcd(df, hist)}["(g3) digits"]
    assert "train / test accuracy per CR" in g3.evidence


def test_verdicts_on_real_runs_and_on_a_broken_history(tiny_runs: Path) -> None:
    df, hist = rt.load_tenbcd(tiny_runs)
    v = {x.claim: x for x in rt.verdict_tenbcd(df, hist)}
    assert v["(g1)"].verdict == "reproduced" and v["(g2)"].verdict == "reproduced"
    g3 = v["(g3) digits"]
    assert "per CR:" in g3.evidence and "449 test examples" in g3.evidence
    # (g3) follows the sign of tenBCD − AdamW beyond the binomial tolerance
    better = df.assign(tenbcd_tt_test_acc=np.where(df["tt_rank"].notna(), 0.99, df["tenbcd_tt_test_acc"]),
                       adamw_tt_test_acc=0.5)
    worse = df.assign(tenbcd_tt_test_acc=0.1, adamw_tt_test_acc=0.9)
    assert {x.claim: x for x in rt.verdict_tenbcd(better, hist)}["(g3) digits"].verdict == "reproduced"
    assert {x.claim: x for x in rt.verdict_tenbcd(worse, hist)}["(g3) digits"].verdict == "not reproduced"
    broken = copy.deepcopy(hist)
    t = broken["digits"]["0.3"]["tenbcd"]
    t["objective"][3] = t["objective"][2] + 1.0          # an increase: sufficient decrease violated
    t["slack"][3] = -1.0
    v2 = {x.claim: x for x in rt.verdict_tenbcd(df, broken)}
    assert v2["(g1)"].verdict == "not reproduced" and v2["(g2)"].verdict == "not reproduced"
    none = rt.verdict_tenbcd(df.iloc[0:0], {})
    assert [x.verdict for x in none] == ["no runs"] * 3


def test_figures_are_written(tiny_runs: Path, tmp_path: Path) -> None:
    from study.writers import save_figure

    df, hist = rt.load_tenbcd(tiny_runs)
    for stem, fig in (("acc", rt.tenbcd_accuracy_figure(df, "Companion paper: accuracy")),
                      ("conv", rt.tenbcd_convergence_figure(df, hist, "Companion paper: convergence"))):
        paths = save_figure(fig, tmp_path / stem)
        assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.skipif(importlib.util.find_spec("papermill") is None, reason="papermill is not installed")
def test_notebook_07_on_the_tiny_run(tiny_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    execute_notebook(rt.NOTEBOOK, tmp_path, runs_dir=str(tiny_runs), out_dir=str(out))
    for rel in rt.ARTIFACT.outputs():
        assert (out / rel).stat().st_size > (1000 if rel.startswith("figures/") else 0), rel
    assert "AdamW (TT net)" in (out / "tables" / f"{rt.CR_ACCURACY}.md").read_text()
    metrics = json.loads((tiny_runs / "tenbcd" / "digits" / "metrics.json").read_text())
    assert len(metrics["per_cr"]) == 2
