"""The theory notebook (notebooks/06_theory.py): papermill parameters, and it executes (jupytext → papermill,
as its DVC stage) and writes the figures and tables the registry lists for Proposition 4.3."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from study import prop43
from tests.notebook_runner import execute_notebook

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / f"{prop43.NOTEBOOK}.py"


def test_notebook_is_parameterised() -> None:
    import jupytext

    nb = jupytext.read(NOTEBOOK)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = tagged[0].source
    for name in ("out_dir", "m", "n", "lam_fraction", "alpha_fraction", "random_state"):
        assert f"\n{name} = " in "\n" + params
    assert f'out_dir = "build/reports/{prop43.OUT}"' in params   # exploring never writes the tracked reports/


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("papermill") is None, reason="papermill is not installed")
def test_notebook_executes_and_writes_figures_and_tables(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    out_dir = reports / prop43.OUT
    execute_notebook(prop43.NOTEBOOK, tmp_path, out_dir=str(out_dir))
    for rel in prop43.ARTIFACT.outputs():
        assert (reports / rel).stat().st_size > (1000 if rel.endswith((".png", ".pdf")) else 0), rel
    with open(out_dir / f"{prop43.CLAIMS}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    verdicts = {r["claim"].split(".")[0]: r["verdict"] for r in rows}
    assert verdicts["1"] == "holds" and verdicts["4a"] == "holds"
    for key in ("2", "3", "4b", "B"):
        assert verdicts[key] == "fails (counterexample); corrected form holds"
    assert (out_dir / f"{prop43.CLAIMS}.md").read_text().startswith("| claim |")
