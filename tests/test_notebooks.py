"""The report notebooks 00–05 and 07: papermill parameters, stored without outputs and in sync with their
generator, and the fast ones executed end to end (02 on synthetic runs and on no runs at all, 00 live)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from tests.test_report import write_synthetic_runs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["00_walkthrough", "01_table1_zero_shot", "02_fig2_pareto", "03_fig3_bert_glue",
             "04_fig4_depth_schedules", "05_fig5_global_vs_local", "07_tenbcd"]
needs_papermill = pytest.mark.skipif(importlib.util.find_spec("papermill") is None, reason="papermill is not installed")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_parameterised_and_stored_without_outputs(name: str) -> None:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert 'runs_dir = "runs"' in tagged[0].source and 'out_dir = "reports"' in tagged[0].source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    text = "".join(c.source for c in nb.cells)
    paper = "Companion paper (arXiv 2303.06815)" if name == "07_tenbcd" else "(the paper)"
    assert paper in text, "every figure is titled with the paper figure it reproduces"


def test_notebooks_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "notebooks" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0


def _execute(name: str, tmp_path: Path, **parameters) -> Path:
    import papermill as pm

    out = tmp_path / "out"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                        parameters={"out_dir": str(out), **parameters}, kernel_name="python3", cwd=str(ROOT),
                        progress_bar=False)
    return out


def _assert_figures(out: Path, stems: list[str]) -> None:
    for stem in stems:
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"


@needs_papermill
def test_fig2_notebook_on_synthetic_runs(tmp_path: Path) -> None:
    runs = write_synthetic_runs(tmp_path / "runs")
    out = _execute("02_fig2_pareto", tmp_path, runs_dir=str(runs))
    _assert_figures(out, ["fig2_pareto", "fig2_budget", "fig2_repeats", "fig2_rank_trajectories"])
    best = pd.read_csv(out / "tables" / "fig2_best_at_budget.csv")
    assert list(best["method"]) == ["svd", "fwsvd", "tfwsvd", "trp", "fwtrp", "oialr", "ieht", "ifht"]
    at7 = best.set_index("method")["best acc ≤7%"]
    assert at7["ieht"] > at7["svd"]
    cuts = pd.read_csv(out / "tables" / "fig2_first_cut.csv").set_index("method")
    assert cuts.loc["oialr", "first_cut_mean"] > cuts.loc["ieht", "first_cut_mean"]
    assert sorted(pd.read_csv(out / "tables" / "fig2_budget.csv")["budget"].unique()) == [1.0, 3.0]
    assert (pd.read_csv(out / "tables" / "fig2_repeats.csv")["n"] == 3).all()
    for stem in ("fig2_best_at_budget", "fig2_fronts", "fig2_budget", "fig2_repeats", "fig2_first_cut"):
        assert (out / "tables" / f"{stem}.md").read_text().startswith("|")


@needs_papermill
def test_fig2_notebook_without_runs_says_so(tmp_path: Path) -> None:
    out = _execute("02_fig2_pareto", tmp_path, runs_dir=str(tmp_path / "absent"))
    _assert_figures(out, ["fig2_pareto", "fig2_budget", "fig2_repeats", "fig2_rank_trajectories"])
    for stem in ("fig2_best_at_budget", "fig2_fronts", "fig2_budget", "fig2_repeats", "fig2_first_cut"):
        assert "no runs" in (out / "tables" / f"{stem}.md").read_text()


@needs_papermill
def test_walkthrough_runs_live_and_checks_eckart_young(tmp_path: Path) -> None:
    out = _execute("00_walkthrough", tmp_path, runs_dir=str(tmp_path / "runs"), ranks=[2, 8], tfwsvd_max_iter=10,
                   calibration_samples=128, eval_samples=128, core_train_steps=5)
    _assert_figures(out, ["walkthrough_projection_kl", "walkthrough_energy_vs_sigma_max", "walkthrough_ieht_cut"])
    proj = pd.read_csv(out / "tables" / "walkthrough_projection_kl.csv")
    assert len(proj) == 6 and set(proj["method"]) == {"svd", "fwsvd", "tfwsvd"}
    # SVD is the Frobenius-optimal projection at every rank (Eckart–Young)
    for _, g in proj.groupby("rank"):
        g = g.set_index("method")
        assert g.loc["svd", "rel. Frobenius error"] <= g["rel. Frobenius error"].min() + 1e-6
    rules = pd.read_csv(out / "tables" / "walkthrough_cut_rules.csv")
    assert (rules["energy kept"] >= 0).all() and rules["rank kept"].between(1, 384).all()
    steps = pd.read_csv(out / "tables" / "walkthrough_ieht_cut.csv").set_index("step")
    lhs, rhs = (float(v) for v in steps.loc["4. drop the tail", "value"].split(" vs "))
    assert lhs == pytest.approx(rhs, rel=1e-3)
