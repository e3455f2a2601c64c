"""The study registry (study/registry.py) against what repeats it: dvc.yaml's notebook and report stages,
the run sweeps of params.yaml, the notebooks, the modules' docstrings, and the claims their verdicts carry."""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from study import ARTIFACTS, artifacts
from study.registry import KINDS, Artifact, Inputs, claim_order, sweeps

ROOT = Path(__file__).resolve().parents[1]
WITH_NOTEBOOK = [a for a in artifacts() if a.notebook]


@functools.lru_cache(maxsize=None)
def resolved_stages() -> dict[str, dict]:
    """dvc.yaml's stages as DVC resolves them (``foreach`` expanded)."""
    from dvc.dvcfile import load_file
    from dvc.repo import Repo

    repo = Repo(str(ROOT))
    try:
        return dict(load_file(repo, str(ROOT / "dvc.yaml")).resolver.resolve()["stages"])
    finally:
        repo.close()


def _paths(entries) -> list[str]:
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def _cmds(spec: dict) -> list[str]:
    cmd = spec.get("cmd") or []
    return [cmd] if isinstance(cmd, str) else list(cmd)


def notebook_stage(artifact: Artifact) -> tuple[str, dict]:
    script = f"notebooks/{artifact.notebook}.py"
    found = [(n, s) for n, s in resolved_stages().items() if any(script in c for c in _cmds(s))]
    assert len(found) == 1, f"{artifact.name}: {len(found)} stages run {script}"
    return found[0]


def _covered(path: str, entries: list[str]) -> bool:
    return any(path == e or path.startswith(e.rstrip("/") + "/") for e in entries)


def test_registry_shape() -> None:
    assert [a.name for a in artifacts()] == ["walkthrough", "table1", "fig2", "fig3", "fig4", "fig5", "prop43",
                                             "tenbcd", "regime"]
    assert all(a.kind in KINDS for a in ARTIFACTS.values())
    # REPORT.md's verdict order: the paper's experiments by claim, its theory, the companion paper
    assert [a.claims[0] for a in claim_order()] == ["(a)", "(b)", "(b)", "(d)", "(e)", "(h)", "(f)", "(g1)"]
    assert list(sweeps()) == ["pretrain", "table1", "fig2", "budget", "repeats", "protocol", "fig3", "fig4", "fig5",
                              "regime"]
    stems = [(a.figures_dir, s) for a in ARTIFACTS.values() for s in a.figures] + \
            [(a.tables_dir, s) for a in ARTIFACTS.values() for s in a.tables]
    assert len(stems) == len(set(stems)), "no two artifacts write the same file"
    with pytest.raises(ValueError, match="registered twice"):
        from study.registry import register
        register(ARTIFACTS["fig2"])


@pytest.mark.parametrize("artifact", WITH_NOTEBOOK, ids=lambda a: a.name)
def test_notebook_stage_runs_the_script_and_lists_the_registry_outputs(artifact: Artifact) -> None:
    name, spec = notebook_stage(artifact)
    nb = artifact.notebook
    cmds = " && ".join(_cmds(spec))
    assert re.search(rf"jupytext\b.*--to ipynb notebooks/{nb}\.py -o notebooks/build/{nb}\.ipynb", cmds), name
    assert f"papermill notebooks/build/{nb}.ipynb cache/notebooks/{nb}.ipynb" in cmds, name
    outs = _paths(spec.get("outs"))
    assert f"cache/notebooks/{nb}.ipynb" in outs
    expected = [f"reports/{o}" for o in artifact.outputs()]
    assert [o for o in expected if not _covered(o, outs)] == [], f"{name}: outs miss registered outputs"
    listed_files = {o for o in outs if o.startswith("reports/") and Path(o).suffix}
    assert listed_files - set(expected) == set(), f"{name}: outs the registry does not know"
    deps = _paths(spec.get("deps"))
    for need in [f"notebooks/{nb}.py", "study", *artifact.reads()]:
        assert _covered(need, deps) or _read_from_evidence(need, deps, cmds), f"{name}: deps miss {need}"


def _read_from_evidence(need: str, deps: list[str], cmds: str) -> bool:
    """A core notebook reads an extended sweep from the committed evidence: it depends on the evidence folder
    and is given it (``-p evidence_dir``), and the evidence stage depends on the sweep's runs."""
    evidence_runs = [e for e in _paths(resolved_stages()["evidence"].get("deps")) if e.startswith("runs/")]
    return ("reports/evidence" in deps and "-p evidence_dir reports/evidence/runs" in cmds
            and any(_covered(e, [need]) or _covered(need, [e]) for e in evidence_runs))


def test_report_stage_reads_every_sweep_and_run_input() -> None:
    spec = resolved_stages()["report"]
    assert "python -m study.report" in " ".join(_cmds(spec))
    deps = _paths(spec.get("deps"))
    needed = {f"runs/{s}" for s in sweeps()} | {r for a in ARTIFACTS.values() for r in a.reads()
                                                 if r.startswith("runs/")}
    # a sweep the extended parameter set makes is read from its committed evidence (study/evidence.py): the
    # report depends on the evidence folder, whose stage depends on those runs
    evidence_deps = _paths(resolved_stages()["evidence"].get("deps"))
    assert "reports/evidence" in deps
    missing = [r for r in needed if not _covered(r, deps)
               and not any(_covered(e, [r]) or _covered(r, [e]) for e in evidence_deps if e.startswith("runs/"))]
    assert "study" in deps and sorted(missing) == []
    assert _paths(spec.get("outs")) == ["reports/REPORT.md"]
    assert _paths(spec.get("metrics")) == ["reports/metrics/summary.json"]


def test_every_compression_sweep_of_the_pipeline_has_an_owner() -> None:
    """The `python -m lowrank run` / `sweep` stages write runs/<sweep>/...: each sweep is the bases or an artifact's."""
    written = set()
    for spec in resolved_stages().values():
        if any("python -m lowrank run " in c or "python -m lowrank sweep " in c for c in _cmds(spec)):
            written |= {o.split("/")[1] for o in _paths(spec.get("outs")) if o.startswith("runs/")}
    assert written == set(sweeps())


def test_every_study_module_names_its_paper_artifact() -> None:
    for path in sorted((ROOT / "study").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc, f"{path.name} has no docstring"
    for a in ARTIFACTS.values():
        module = ROOT / "study" / f"{a.name}.py"
        doc = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8")))
        assert a.paper.lower() in doc.lower(), f"study/{a.name}.py's docstring does not name {a.paper!r}"


def test_verdicts_carry_the_registered_claims(tmp_path: Path) -> None:
    inputs = Inputs(tmp_path / "runs", tmp_path / "reports")      # nothing there: every verdict is "no runs"
    for a in claim_order():
        verdicts = a.verdicts(inputs)
        assert verdicts and all(v.claim.startswith(a.claims) for v in verdicts), a.name
        assert all(v.verdict == "no runs" for v in verdicts), a.name


def _spec(params: dict, sweep: str, base: str, run: str, profile: str) -> dict:
    import copy

    from lowrank.config import resolve_group

    # a copy: the resolved spec may share nested mappings with ``params`` (YAML anchors), and the test edits it
    return copy.deepcopy(resolve_group(params, f"{sweep}.{base}", profile)[run])


@pytest.mark.parametrize("profile", ["small", "paper"])
def test_borrowed_runs_are_the_figures_own_settings(profile: str) -> None:
    """A figure that reads another sweep's runs as its own setting (Figure 4's constant schedule, Figure 5's
    local methods: the decisive sweep's IEHT / IFHT β = 0.8) would compare unlike runs if the specs drifted
    apart: each borrowed spec must equal the figure's own run on the same base with only the figure's axis
    (the depth schedule, local vs global) changed."""
    from lowrank.config import expand_grid, load_params
    from study import fig4, fig5

    params = load_params(ROOT / "params.yaml")
    (names4,) = fig4.BORROWED.values()
    (names5,) = fig5.BORROWED.values()
    assert names4 == ("ieht_80",) and set(names5) == {"ieht_80", "ifht_80"}
    for base in expand_grid(params)[fig4.SWEEP]:
        (sweep,) = fig4.BORROWED
        borrowed = _spec(params, sweep, base, "ieht_80", profile)
        for schedule in ("increasing", "decreasing"):
            own = _spec(params, fig4.SWEEP, base, f"ieht_{schedule}", profile)
            assert own["method_args"].pop("oialr_depth_schedule") == schedule
            assert borrowed.get("method_args", {}).get("oialr_depth_schedule", "constant") == "constant"
            assert own == borrowed, (base, schedule)
    for base in expand_grid(params)[fig5.SWEEP]:
        (sweep,) = fig5.BORROWED
        for local, glob in fig5.PAIRS:
            own = _spec(params, fig5.SWEEP, base, glob, profile)
            borrowed = _spec(params, sweep, base, f"{local}_80", profile)
            assert own.pop("method") == glob and borrowed.pop("method") == local
            assert own == borrowed, (base, local)


def test_figure_points_borrow_only_the_named_runs_on_the_sweeps_bases(tmp_path: Path) -> None:
    from .helpers import ENERGY_CUTS, iterative_run

    runs = tmp_path / "runs"
    iterative_run(runs / "fig4" / "digits_k0" / "ieht_increasing", "ieht",
                  {"oialr_threshold": 0.8, "oialr_depth_schedule": "increasing"}, ENERGY_CUTS, scale=0.02)
    for base, k in (("digits_k0", 0), ("digits_k1", 1)):       # digits_k1 is not a base of runs/fig4
        iterative_run(runs / "repeats" / base / "ieht_80", "ieht", {"oialr_threshold": 0.8}, ENERGY_CUTS,
                      scale=0.02, random_state=k)
        iterative_run(runs / "repeats" / base / "ieht_90", "ieht", {"oialr_threshold": 0.9}, ENERGY_CUTS,
                      scale=0.02, random_state=k)
    inputs = Inputs(runs, tmp_path / "reports")
    p = inputs.figure_points("fig4", {"repeats": ("ieht_80",)})
    assert set(zip(p["sweep"], p["run"])) == {("fig4", "digits_k0/ieht_increasing"), ("repeats", "digits_k0/ieht_80")}
    assert set(p.loc[p["sweep"] == "repeats", "schedule"]) == {"constant"}
    assert len(p) == len(inputs.points("fig4")) + len(load_points_of(runs, "repeats", "digits_k0/ieht_80"))
    assert inputs.figure_points("fig4").equals(inputs.points("fig4"))      # nothing borrowed: its own points


def load_points_of(runs: Path, sweep: str, run: str):
    from study.runs import load_points, load_runs

    r = load_runs(runs, sweep)
    return load_points(runs, sweep, r[r["run"] == run])
