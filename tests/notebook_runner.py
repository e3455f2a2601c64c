"""Run a notebook of ``notebooks/`` the way its DVC stage does: the jupytext percent script ``NN_name.py`` is
converted with ``python -m jupytext --to ipynb`` and the notebook executed by papermill from the repository
root, with the parameters given (the rest keep the values of its ``parameters`` cell)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def execute_notebook(name: str, tmp_path: Path, cwd: Path = ROOT, **parameters: Any) -> Path:
    """Convert ``notebooks/<name>.py`` into ``tmp_path/build/<name>.ipynb``, execute it into
    ``tmp_path/<name>.ipynb`` (run from ``cwd``: the root, as the stages, or ``notebooks/``, as JupyterLab)
    and return that path."""
    import papermill as pm

    source = tmp_path / "build" / f"{name}.ipynb"
    source.parent.mkdir(parents=True, exist_ok=True)
    script = ROOT / "notebooks" / f"{name}.py"
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", str(script), "-o", str(source)],
                   check=True, cwd=ROOT)
    executed = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name="python3", cwd=str(cwd),
                        progress_bar=False)
    return executed
