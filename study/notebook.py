"""What every notebook of ``notebooks/`` does first: resolve its folders from its papermill parameters.

Relative paths are taken from the repository root (the folder above this package), so a notebook
behaves the same when papermill runs it from the root (the DVC stages) and when JupyterLab runs it
from ``notebooks/``. The package is installed in the project's virtual environment (``pip install
-e .``), so the notebooks import it from anywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

__all__ = ["ROOT", "Folders", "folders"]

ROOT = Path(__file__).resolve().parent.parent


class Folders(NamedTuple):
    runs: Path       # the runs a notebook reads: runs/<sweep>/<run>/
    out: Path        # the reports folder
    figures: Path    # <out>/figures (PNG + PDF)
    tables: Path     # <out>/tables (CSV + Markdown)


def folders(runs_dir: str | Path, out_dir: str | Path) -> Folders:
    """The notebook's folders from its ``runs_dir`` / ``out_dir`` parameters (relative to :data:`ROOT`)."""
    runs = Path(runs_dir) if Path(runs_dir).is_absolute() else ROOT / runs_dir
    out = Path(out_dir) if Path(out_dir).is_absolute() else ROOT / out_dir
    print(f"runs: {runs_dir} | outputs: {out_dir}")
    return Folders(runs, out, out / "figures", out / "tables")
