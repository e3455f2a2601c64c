"""The notebooks: one jupytext percent script per registered artifact (notebooks/NN_name.py), each with one
papermill ``parameters`` cell and prose in markdown cells, stable under a JupyterLab save (jupytext round
trip); and the fast ones executed end to end as their DVC stages run them (02 on synthetic runs and on no
runs at all, 04 and 05 on three seeds with borrowed runs, 00 live)."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from study import ARTIFACTS, artifacts, fig2, fig4, fig5, walkthrough

from study.notebook import EVIDENCE_DIR, EXPLORE_OUT

from .helpers import WINDOW_PATH, path_run, write_synthetic_runs
from .notebook_runner import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [a.notebook for a in artifacts() if a.notebook]
needs_papermill = pytest.mark.skipif(importlib.util.find_spec("papermill") is None, reason="papermill is not installed")


def _read(name: str):
    import jupytext

    return jupytext.read(ROOT / "notebooks" / f"{name}.py")


def test_every_notebook_belongs_to_an_artifact_and_nothing_else_is_stored() -> None:
    stored = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    assert stored == sorted(NOTEBOOKS), "one notebooks/NN_name.py per registered artifact"
    assert len(set(NOTEBOOKS)) == len(NOTEBOOKS) == len(ARTIFACTS)
    assert not list((ROOT / "notebooks").glob("*.ipynb")), "notebooks are stored as .py; the .ipynb is built"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_a_parameterised_percent_script(name: str) -> None:
    import jupytext
    import nbformat

    text = (ROOT / "notebooks" / f"{name}.py").read_text()
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    params = tagged[0].source
    # exploring writes into the git-ignored build/ folder; the DVC stages pass `-p out_dir reports`
    assert f'out_dir = "{EXPLORE_OUT}' in params
    if name not in ("00_walkthrough", "06_theory"):
        # this checkout's runs first, then the committed evidence
        assert 'runs_dir = "runs"' in params and f'evidence_dir = "{EVIDENCE_DIR}"' in params
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    # what jupytext writes back from the notebook it read is the file as stored
    assert jupytext.writes(nb, fmt="py:percent") == text
    code = "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "from study import" in code, "a notebook calls into its artifact module"
    paper = "Companion paper (arXiv 2303.06815)" if name == "07_tenbcd" else "(the paper)"
    if name != "06_theory":   # the theory notebook's figures are titled by theory/plots.py
        assert paper in code, "every figure is titled with the paper figure it reproduces"


def _execute(name: str, tmp_path: Path, **parameters) -> Path:
    out = tmp_path / "out"
    execute_notebook(name, tmp_path, out_dir=str(out), **parameters)
    return out


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_jupyterlab_save_leaves_the_notebook_unchanged(name: str, tmp_path: Path) -> None:
    """JupyterLab opens and saves a .py notebook through jupytext's contents manager, with the metadata of the
    kernel it started (the installed ``python3`` kernelspec's display name): the file written is the file
    stored, so opening a notebook neither marks it modified nor makes its DVC stage stale."""
    pytest.importorskip("jupyter_server")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_server.services.contents.largefilemanager import LargeFileManager
    from jupytext.sync_contentsmanager import build_sync_jupytext_contents_manager_class

    for f in (f"{name}.py", "jupytext.toml"):
        shutil.copy(ROOT / "notebooks" / f, tmp_path / f)
    cm = build_sync_jupytext_contents_manager_class(LargeFileManager)(root_dir=str(tmp_path))
    model = cm.get(f"{name}.py", content=True, type="notebook")
    spec = KernelSpecManager().get_kernel_spec("python3")
    model["content"]["metadata"]["kernelspec"] = {"display_name": spec.display_name, "language": spec.language,
                                                  "name": "python3"}
    model["content"]["metadata"]["language_info"] = {"name": "python", "version": "3.11"}
    cm.save(model, f"{name}.py")
    assert (tmp_path / f"{name}.py").read_bytes() == (ROOT / "notebooks" / f"{name}.py").read_bytes()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_default_outputs_are_git_ignored(name: str) -> None:
    """A notebook run with its default ``out_dir`` writes only where git does not look."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    params = next(c for c in _read(name).cells if "parameters" in c.metadata.get("tags", [])).source
    out_dir = re.search(r'^out_dir = "([^"]+)"', params, flags=re.M).group(1)
    probes = [f"{out_dir}/figures/x.png", f"{out_dir}/tables/x.csv", f"{out_dir}/x.md"]
    ignored = subprocess.run(["git", "check-ignore", *probes], cwd=ROOT, capture_output=True, text=True).stdout
    assert ignored.split() == probes


@needs_papermill
def test_a_notebook_with_its_defaults_reads_the_evidence_from_notebooks_and_writes_nothing_tracked(
        tmp_path: Path) -> None:
    """Run as JupyterLab runs it (from ``notebooks/``, default runs and evidence): Figure 5 is drawn from the
    committed evidence, the runs it lacks are named with their command, and no tracked file changes."""
    if not (ROOT / EVIDENCE_DIR / fig5.SWEEP).is_dir():
        pytest.skip("no committed evidence of Figure 5")
    before = _git("status", "--porcelain")
    executed = execute_notebook(fig5.NOTEBOOK, tmp_path, cwd=ROOT / "notebooks", out_dir=str(tmp_path / "out"))
    assert _git("status", "--porcelain") == before
    text = executed.read_text()
    best = pd.read_csv(tmp_path / "out" / "tables" / f"{fig5.BEST_AT_BUDGET}.csv")
    assert {"global_ieht", "global_ifht"} <= set(best["method"]), "Figure 5's own runs, read from the evidence"
    if not any(any((root / "repeats").glob("*/*/metrics.json")) for root in (ROOT / "runs", ROOT / EVIDENCE_DIR)):
        assert "dvc repro --glob 'repeats@*'" in text, "the missing decisive runs are named with their command"
    else:
        assert {"ieht", "ifht"} <= set(best["method"]), "the decisive sweep's local runs, borrowed from the evidence"


def _assert_outputs(out: Path, artifact) -> None:
    """Every file the registry says the notebook writes is there (figures: a real PNG / PDF)."""
    for rel in artifact.outputs():
        assert (out / rel).stat().st_size > (1000 if rel.startswith("figures/") else 0), rel


@needs_papermill
def test_fig2_notebook_on_synthetic_runs(tmp_path: Path) -> None:
    runs = write_synthetic_runs(tmp_path / "runs")
    out = _execute(fig2.NOTEBOOK, tmp_path, runs_dir=str(runs), evidence_dir="")
    _assert_outputs(out, fig2.ARTIFACT)
    best = pd.read_csv(out / "tables" / f"{fig2.BEST_AT_BUDGET}.csv")
    digits = best[best["dataset"] == "digits"]
    assert list(digits["method"]) == ["svd", "fwsvd", "tfwsvd", "trp", "fwtrp", "oialr", "ieht", "ifht"]
    # the second dataset's panel holds the decisive sweep's seed-0 runs only
    assert list(best.loc[best["dataset"] == "mnist1d", "method"]) == ["svd", "ieht", "ifht"]
    at7 = digits.set_index("method")["best acc ≤7%"]
    assert at7["ieht"] > at7["svd"]
    cuts = pd.read_csv(out / "tables" / f"{fig2.FIRST_CUT}.csv").query("dataset == 'digits'").set_index("method")
    assert cuts.loc["oialr", "first_cut_mean"] > cuts.loc["ieht", "first_cut_mean"]
    budget = pd.read_csv(out / "tables" / f"{fig2.BUDGET}.csv")
    # 11 epochs from the decisive sweep, 22 and 44 from the budget sweep; digits only, as the budget sweep
    assert list(budget["epochs"]) == [11, 22, 44] and set(budget["dataset"]) == {"digits"}
    assert (budget["seeds"] == 3).all() and (budget["decision"] == "above 0").all()
    decisive = pd.read_csv(out / "tables" / f"{fig2.DECISIVE}.csv")
    main = decisive[decisive["comparison"] == "iterative − one-shot"]
    assert list(main["dataset"]) == ["digits", "mnist1d"] and (main["decision"] == "above 0").all()
    assert (pd.read_csv(out / "tables" / f"{fig2.REPEATS}.csv")["n"] == 3).all()
    for stem in fig2.ARTIFACT.tables:
        assert (out / "tables" / f"{stem}.md").read_text().startswith("|")


@needs_papermill
def test_fig2_notebook_without_runs_says_so(tmp_path: Path) -> None:
    out = _execute(fig2.NOTEBOOK, tmp_path, runs_dir=str(tmp_path / "absent"), evidence_dir="")
    _assert_outputs(out, fig2.ARTIFACT)
    for stem in fig2.ARTIFACT.tables:
        assert "no runs" in (out / "tables" / f"{stem}.md").read_text()
    # no empty axes under a title that claims data: each figure is a note naming the command that makes its runs
    text = (tmp_path / f"{fig2.NOTEBOOK}.ipynb").read_text()
    for stem in (fig2.PARETO, fig2.BUDGET, fig2.REPEATS, fig2.RANK_TRAJECTORIES):
        assert f"{stem}: not drawn, missing runs/" in text
    assert "dvc repro --glob 'repeats@*'" in text and "dvc repro --glob 'budget@*'" in text


def test_missing_runs_are_named_per_group_with_their_stage(tmp_path: Path) -> None:
    """The groups of a sweep are dvc.yaml's stages writing under runs/<sweep>/ (one per group of a
    foreach stage); a group counts as present in any of the folders searched, once one of its runs finished."""
    from lowrank.config import expand_grid, load_params
    from study.notebook import missing_groups, report_missing

    keys = list(expand_grid(load_params(ROOT / "params.yaml"))[fig2.REPEATS_SWEEP])
    first, second = tmp_path / "runs", tmp_path / "evidence"
    (first / "repeats" / keys[0] / "svd").mkdir(parents=True)
    (first / "repeats" / keys[0] / "svd" / "metrics.json").write_text("{}")
    (second / "repeats" / keys[1] / "going").mkdir(parents=True)     # a run still going: no metrics.json
    missing = missing_groups((first, second), "repeats")
    assert [rel for rel, _ in missing] == keys[1:] and [s for _, s in missing] == [f"repeats@{k}" for k in keys[1:]]
    (line,) = report_missing((first, second), "repeats")
    assert (f"runs/repeats/{keys[1]}" in line
            and line.endswith("`dvc repro " + " ".join(f"repeats@{k}" for k in keys[1:]) + "`"))
    assert report_missing((tmp_path / "absent",), "repeats") == [
        "missing runs/repeats/*: make them with `dvc repro --glob 'repeats@*'`"]


def test_an_empty_figure_is_never_drawn(tmp_path: Path) -> None:
    from study.notebook import publish_figure_or_missing

    def draw():
        raise AssertionError("drawn without data")

    line = publish_figure_or_missing(pd.DataFrame(), tmp_path / "fig", draw, ["repeats"], tmp_path / "absent")
    assert "dvc repro --glob 'repeats@*'" in line and (tmp_path / "fig.png").stat().st_size > 1000


def _seeded_figure_runs(root: Path, own: dict[str, dict], borrowed: dict[str, dict]) -> Path:
    """The pipeline's layout for Figures 4 / 5 on three bases: ``<sweep>/digits_k<k>/<name>`` for the figure's
    own runs and the decisive sweep's runs it borrows, plus a decisive run it must not borrow."""
    for k in range(3):
        for (sweep, runs) in (("fig4" if "ieht_increasing" in own else "fig5", own), ("repeats", borrowed)):
            for name, (method, args, scale) in runs.items():
                path_run(root / sweep / f"digits_k{k}" / name, method, args, WINDOW_PATH,
                         scale=scale * (1 + 0.1 * k), random_state=k)
        path_run(root / "repeats" / f"digits_k{k}" / "ieht_90", "ieht", {"oialr_threshold": 0.9}, WINDOW_PATH,
                 scale=0.5, random_state=k)
    return root


@needs_papermill
@pytest.mark.parametrize("artifact", [fig4, fig5], ids=["fig4", "fig5"])
def test_schedule_and_global_notebooks_borrow_the_decisive_runs_and_decide_over_seeds(artifact, tmp_path: Path) -> None:
    """Figures 4 and 5 read their constant / local settings from the decisive sweep (the same specs): the
    tables show seed 0's fronts, one run per front, the borrowed ones included and nothing else borrowed, and
    the notebook's verdict is the registry's, over three seeds."""
    from study.registry import Inputs

    if artifact is fig4:
        own = {f"ieht_{s}": ("ieht", {"oialr_threshold": 0.8, "oialr_depth_schedule": s}, sc)
               for s, sc in (("increasing", 0.015), ("decreasing", 0.03))}
        borrowed = {"ieht_80": ("ieht", {"oialr_threshold": 0.8}, 0.02)}
        labels = ["ieht · constant", "ieht · decreasing", "ieht · increasing"]
    else:
        own = {f"global_{m}": (f"global_{m}", {"oialr_threshold": 0.8}, 0.03) for m in ("ieht", "ifht")}
        borrowed = {f"{m}_80": (m, {"oialr_threshold": 0.8}, 0.02) for m in ("ieht", "ifht")}
        labels = ["global_ieht", "global_ifht", "ieht", "ifht"]
    runs = _seeded_figure_runs(tmp_path / "runs", own, borrowed)
    out = _execute(artifact.NOTEBOOK, tmp_path, runs_dir=str(runs), evidence_dir="")
    _assert_outputs(out, artifact.ARTIFACT)
    best = pd.read_csv(out / "tables" / f"{artifact.BEST_AT_BUDGET}.csv")
    hue = "label" if artifact is fig4 else "method"
    assert sorted(best[hue]) == labels and (best["runs"] == 1).all()          # seed 0 only, ieht_90 not borrowed
    (v,) = artifact.ARTIFACT.verdicts(Inputs(runs, out))
    assert v.verdict == "reproduced" and "3 seeds" in v.interval and v.seeds.startswith("0, 1, 2")


@needs_papermill
def test_walkthrough_runs_live_and_checks_eckart_young(tmp_path: Path) -> None:
    out = _execute(walkthrough.NOTEBOOK, tmp_path, ranks=[2, 8], tfwsvd_tol=1e-4,
                   calibration_samples=128, eval_samples=128, core_train_steps=5)
    _assert_outputs(out, walkthrough.ARTIFACT)
    proj = pd.read_csv(out / "tables" / f"{walkthrough.PROJECTION_KL}.csv")
    assert len(proj) == 6 and set(proj["method"]) == {"svd", "fwsvd", "tfwsvd"}
    # SVD is the Frobenius-optimal projection at every rank (Eckart–Young)
    for _, g in proj.groupby("rank"):
        g = g.set_index("method")
        assert g.loc["svd", "rel. Frobenius error"] <= g["rel. Frobenius error"].min() + 1e-6
    rules = pd.read_csv(out / "tables" / f"{walkthrough.CUT_RULES}.csv")
    assert (rules["energy kept"] >= 0).all() and rules["rank kept"].between(1, 384).all()
    steps = pd.read_csv(out / "tables" / f"{walkthrough.IEHT_CUT}.csv").set_index("step")
    lhs, rhs = (float(v) for v in steps.loc["4. drop the tail", "value"].split(" vs "))
    assert lhs == pytest.approx(rhs, rel=1e-3)


def test_every_parameter_a_stage_passes_is_one_the_notebook_has() -> None:
    """papermill injects an unknown ``-p name`` silently: a stage's parameters must be the notebook's own."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    checked = 0
    for stage in stages.values():
        for var in stage.get("vars") or []:
            if not isinstance(var, dict) or "nb" not in var:
                continue
            params = next(c for c in _read(var["nb"]).cells if "parameters" in c.metadata.get("tags", [])).source
            own = set(re.findall(r"^(\w+) = ", params, flags=re.M))
            passed = set(re.findall(r"-p (\w+) ", str(var.get("args", "")) + " "))
            assert passed <= own, f"{var['nb']}: the stage passes {sorted(passed - own)}, not parameters of it"
            checked += 1
    assert checked == len(NOTEBOOKS)
