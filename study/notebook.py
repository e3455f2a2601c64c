"""What every notebook of ``notebooks/`` does first: resolve its folders from its papermill parameters.

Relative paths are taken from the repository root (the folder above this package), so a notebook
behaves the same when papermill runs it from the root (the DVC stages) and when JupyterLab runs it
from ``notebooks/``. The package is installed in the project's virtual environment (``pip install
-e .``), so the notebooks import it from anywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Union

__all__ = ["ROOT", "Folders", "folders"]

ROOT = Path(__file__).resolve().parent.parent


class Folders(NamedTuple):
    runs: Union[Path, tuple[Path, ...]]   # the runs a notebook reads: runs/<sweep>/<run>/ (and the evidence)
    out: Path        # the reports folder
    figures: Path    # <out>/figures (PNG + PDF)
    tables: Path     # <out>/tables (CSV + Markdown)


def _here(path: str | Path) -> Path:
    return Path(path) if Path(path).is_absolute() else ROOT / path


def folders(runs_dir: str | Path, out_dir: str | Path, evidence_dir: str | Path = "") -> Folders:
    """The notebook's folders from its ``runs_dir`` / ``out_dir`` parameters (relative to :data:`ROOT`).
    With an ``evidence_dir`` (the committed runs of the extended parameter set, :mod:`study.evidence`),
    ``runs`` is the pair (runs, evidence), searched in that order by :func:`study.runs.load_runs`."""
    runs = _here(runs_dir)
    out = _here(out_dir)
    print(f"runs: {runs_dir}" + (f" (then the committed evidence {evidence_dir})" if str(evidence_dir) else "")
          + f" | outputs: {out_dir}")
    return Folders((runs, _here(evidence_dir)) if str(evidence_dir) else runs, out, out / "figures", out / "tables")
