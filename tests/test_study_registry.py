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
                                             "tenbcd"]
    assert all(a.kind in KINDS for a in ARTIFACTS.values())
    # REPORT.md's verdict order: the paper's experiments by claim, its theory, the companion paper
    assert [a.claims[0] for a in claim_order()] == ["(a)", "(b)", "(d)", "(e)", "(h)", "(f)", "(g1)"]
    assert list(sweeps()) == ["pretrain", "table1", "fig2", "budget", "repeats", "protocol", "fig3", "fig4", "fig5"]
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
        assert _covered(need, deps), f"{name}: deps miss {need}"


def test_report_stage_reads_every_sweep_and_run_input() -> None:
    spec = resolved_stages()["report"]
    assert "python -m study.report" in " ".join(_cmds(spec))
    deps = _paths(spec.get("deps"))
    needed = {f"runs/{s}" for s in sweeps()} | {r for a in ARTIFACTS.values() for r in a.reads()
                                                 if r.startswith("runs/")}
    assert "study" in deps and sorted(r for r in needed if not _covered(r, deps)) == []
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
