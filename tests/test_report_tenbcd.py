"""Tables, figures and verdicts of the tenBCD study (study/tenbcd.py) on a real, tiny run, and notebook 07."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from tenbcd import BASELINES, run_tenbcd_experiment
from study import tenbcd as rt

from .notebook_runner import execute_notebook

TINY = {"dataset": "digits", "hidden": [16], "tt_cores": 2, "compression_ratios": [1.0, 0.3, 0.1], "threads": 1,
        "seeds": [0, 1, 2],
        "tenbcd": {"fixed": {"iterations": 6, "eval_every": 3}, "grid": {"alpha_uv": [0.003, 1.0]}},
        "baselines": {name: {"fixed": {"epochs": 2, "eval_every": 1}, "grid": {"lr": [0.001, 0.01]}}
                      for name in BASELINES}}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run_tenbcd_experiment(TINY, runs / "tenbcd" / "digits", progress=False)
    return runs


def test_load_and_table(tiny_runs: Path) -> None:
    df, hist = rt.load_tenbcd(tiny_runs)
    # one row per method, CR and seed; every tenBCD run (2 configurations + 2 more seeds, per CR) has a history
    assert len(df) == 4 * 3 * 3 and set(hist) == {"digits"} and len(hist["digits"]) == 3 * (2 + 2)
    assert set(df["n_test"]) == {449} and list(df["method"].cat.categories)[0] == "tenbcd"
    table = rt.tenbcd_table(df)
    assert len(table) == 4 * 3 and list(table["bond rank"])[0] == "dense" and table["bond rank"].iloc[-1].isdigit()
    # the interval column is the t interval of the seeds' test accuracies, recomputed with scipy
    g = df[(df["method"] == "tenbcd") & (df["cr"] == 1.0)]["test_acc"].to_numpy(float)
    lo, hi = scipy.stats.t.interval(0.95, len(g) - 1, loc=g.mean(), scale=scipy.stats.sem(g))
    row = table[(table["method"] == "tenBCD") & (table["CR"] == "1.000")].iloc[0]
    assert row["test accuracy [95 % t]"] == f"{g.mean():.3f} [{lo:.3f}, {hi:.3f}]"
    empty, _ = rt.load_tenbcd(tiny_runs / "nothing")
    assert empty.empty and "status" in rt.tenbcd_table(empty).columns


def test_a_dataset_is_read_from_the_first_root_that_has_it(tiny_runs: Path, tmp_path: Path) -> None:
    """The report reads this checkout's runs, then the committed evidence of the extended set."""
    import shutil

    evidence = tmp_path / "evidence"
    shutil.copytree(tiny_runs / "tenbcd", evidence / "tenbcd")
    only_evidence, _ = rt.load_tenbcd([tmp_path / "no_runs", evidence])
    pd.testing.assert_frame_equal(only_evidence, rt.load_tenbcd(tiny_runs)[0])
    m = json.loads((evidence / "tenbcd" / "digits" / "metrics.json").read_text())
    m["n_test"] = 1
    (evidence / "tenbcd" / "digits" / "metrics.json").write_text(json.dumps(m))
    assert set(rt.load_tenbcd([tiny_runs, evidence])[0]["n_test"]) == {449}      # the checkout's runs win
    assert set(rt.load_tenbcd([tmp_path / "no_runs", evidence])[0]["n_test"]) == {1}


def test_rate_check_is_the_summed_decrease(tiny_runs: Path) -> None:
    _, hist = rt.load_tenbcd(tiny_runs)
    for h in hist["digits"]:
        t = h["history"]
        r = rt.rate_check(t, h["alpha"], h["alpha_uv"])
        assert list(r["k"]) == list(range(1, len(t["iteration"])))
        # summing the per-iteration decrease gives Φ₀ − Φ_k ≥ Σ_j D_j ≥ λ Σ_j ‖ΔP_j‖² ≥ λ k min_j ‖ΔP_j‖²
        lam = min(h["alpha"], h["alpha_uv"]) / 2
        obj0 = t["objective"][0]
        summed = np.cumsum(np.asarray(t["prox"][1:], float))
        # each iteration's sufficient decrease holds up to the report's own rounding allowance (verdict (g1)):
        # slack ≥ −SLACK_TOLERANCE·max(|Φ|, 1), and Φ_k ≤ Φ₀; summing k of them sums k allowances
        allowance = rt.SLACK_TOLERANCE * max(abs(obj0), 1.0)
        k = r["k"].to_numpy()
        assert np.all(summed <= obj0 - r["objective"].to_numpy() + k * allowance)
        assert np.all(lam * np.cumsum(r["dP2"].to_numpy()) <= summed * (1 + 1e-12))
        assert np.all(r["min_dP2"] <= r["bound"] + k * allowance / lam)


def test_decrease_margin_is_read_from_the_objective(tiny_runs: Path) -> None:
    """(g1)'s power: the margin is the decrease over the guaranteed D_k, recomputed here from the objective
    history and D_k alone (not from the recorded slack)."""
    df, hist = rt.load_tenbcd(tiny_runs)
    least = np.inf
    for h in hist["digits"]:
        t = h["history"]
        r = rt.rate_check(t, h["alpha"], h["alpha_uv"])
        obj, prox = np.asarray(t["objective"], float), np.asarray(t["prox"][1:], float)
        expected = (obj[:-1] - obj[1:]) / prox
        # slack and objective are float64 sums of the same terms: agreement to the rounding of Φ over D_k
        np.testing.assert_allclose(r["margin"], expected, rtol=0, atol=1e-9 * max(1.0, float(np.abs(obj).max()))
                                   / float(prox.min()))
        assert (r["margin"] >= 1 - 1e-6).all()                 # (g1) holds on these runs
        least = min(least, float(r["margin"].min()))
    g1 = {x.claim: x for x in rt.verdict_tenbcd(df, hist)}["(g1)"]
    assert f"by a factor of {least:.1f} at least" in g1.evidence


def test_g3_is_the_seed_paired_gap_and_follows_its_interval(tiny_runs: Path) -> None:
    df, hist = rt.load_tenbcd(tiny_runs)
    per = rt.g3_effects(df, "digits", "sgd_ce")
    # recomputed: per seed, the mean over the compressed CRs of tenBCD − SGD test accuracy
    d = df[df["cr"] < 1]
    for _, r in per.iterrows():
        a = d[(d["method"] == "tenbcd") & (d["seed"] == r["seed"])].sort_values("cr")["test_acc"].to_numpy()
        b = d[(d["method"] == "sgd_ce") & (d["seed"] == r["seed"])].sort_values("cr")["test_acc"].to_numpy()
        assert r["test_gap"] == pytest.approx(float(np.mean(a - b)))
    assert list(per["seed"]) == [0, 1, 2]
    v = {x.claim: x for x in rt.verdict_tenbcd(df, hist)}
    g3 = v["(g3) digits vs SGD, cross-entropy"]
    assert g3.seeds == "0, 1, 2" and "training-accuracy gap" in g3.evidence and "multiply-adds" in g3.evidence
    assert {f"(g3) digits vs {rt.LABELS[b]}" for b in BASELINES} <= set(v)
    # the verdict follows the interval: tenBCD far better at every compressed CR → reproduced; far worse → not
    comp = (df["method"] == "tenbcd") & (df["cr"] < 1)
    noise = 0.01 * df["seed"].to_numpy(float)              # seeds differ, so the interval has a width
    better = df.assign(test_acc=np.where(comp, 0.95 + noise, 0.5))
    worse = df.assign(test_acc=np.where(comp, 0.10 + noise, 0.9))
    name = "(g3) digits vs SGD, cross-entropy"
    assert {x.claim: x for x in rt.verdict_tenbcd(better, hist)}[name].verdict == "reproduced"
    assert {x.claim: x for x in rt.verdict_tenbcd(worse, hist)}[name].verdict == "not reproduced"
    # the training-accuracy gap says whether tenBCD's deficit is one of fitting the training data
    worse_fit = df.assign(train_acc=np.where(comp, 0.5 + noise, 1.0))
    assert "fits the training data worse too" in {x.claim: x for x in rt.verdict_tenbcd(worse_fit, hist)}[name].evidence
    same_fit = df.assign(train_acc=1.0)
    assert "no sign that tenBCD fits" in {x.claim: x for x in rt.verdict_tenbcd(same_fit, hist)}[name].evidence
    # with one seed there is no interval: inconclusive, never a verdict
    one = rt.verdict_tenbcd(better[better["seed"] == 0], hist)
    assert {x.claim: x for x in one}[name].verdict.startswith("inconclusive")


def test_verdicts_on_a_broken_history(tiny_runs: Path) -> None:
    df, hist = rt.load_tenbcd(tiny_runs)
    v = {x.claim: x for x in rt.verdict_tenbcd(df, hist)}
    assert v["(g1)"].verdict == "reproduced" and v["(g2)"].verdict == "reproduced"
    broken = copy.deepcopy(hist)
    t = broken["digits"][0]["history"]
    t["objective"][3] = t["objective"][2] + 1.0          # an increase: sufficient decrease violated
    t["slack"][3] = -1.0
    v2 = {x.claim: x for x in rt.verdict_tenbcd(df, broken)}
    assert v2["(g1)"].verdict == "not reproduced" and v2["(g2)"].verdict == "not reproduced"
    none = rt.verdict_tenbcd(df.iloc[0:0], {})
    assert [x.verdict for x in none] == ["no runs"] * 3


def test_old_metrics_are_refused_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "tenbcd" / "digits").mkdir(parents=True)
    (tmp_path / "tenbcd" / "digits" / "metrics.json").write_text(json.dumps({"dataset": "digits", "per_cr": []}))
    with pytest.raises(ValueError, match="re-run"):
        rt.load_tenbcd(tmp_path)


def test_figures_are_written(tiny_runs: Path, tmp_path: Path) -> None:
    from study.writers import save_figure

    df, hist = rt.load_tenbcd(tiny_runs)
    for stem, fig in (("acc", rt.tenbcd_accuracy_figure(df, "Companion paper: accuracy")),
                      ("conv", rt.tenbcd_convergence_figure(df, hist, "Companion paper: convergence"))):
        paths = save_figure(fig, tmp_path / stem)
        assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 1000 for p in paths)
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)


@pytest.mark.skipif(importlib.util.find_spec("papermill") is None, reason="papermill is not installed")
def test_notebook_07_on_the_tiny_run(tiny_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    execute_notebook(rt.NOTEBOOK, tmp_path, runs_dir=str(tiny_runs), out_dir=str(out))
    for rel in rt.ARTIFACT.outputs():
        assert (out / rel).stat().st_size > (1000 if rel.startswith("figures/") else 0), rel
    text = (out / "tables" / f"{rt.CR_ACCURACY}.md").read_text()
    assert "SGD, cross-entropy" in text and "test accuracy [95 % t]" in text
