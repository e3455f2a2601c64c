"""What every notebook of ``notebooks/`` does first: resolve its folders from its papermill parameters, and say
which runs it lacks.

Relative paths are taken from the repository root (the folder above this package), so a notebook
behaves the same when papermill runs it from the root (the DVC stages) and when JupyterLab runs it
from ``notebooks/``. The package is installed in the project's virtual environment (``pip install
-e .``), so the notebooks import it from anywhere.

The defaults of every notebook's ``parameters`` cell are the explorer's: read this checkout's ``runs/`` first
and the committed evidence (:data:`EVIDENCE_DIR`) for the runs it lacks, and write into :data:`EXPLORE_OUT`,
a git-ignored folder, so that running a notebook in JupyterLab never rewrites a tracked file. The DVC stages
pass ``-p out_dir reports`` (the tracked reports).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, NamedTuple, Sequence, Union

import pandas as pd

__all__ = ["ROOT", "EVIDENCE_DIR", "EXPLORE_OUT", "Folders", "folders", "foreach_items", "missing_groups",
           "missing_line", "report_missing", "publish_figure_or_missing"]

ROOT = Path(__file__).resolve().parent.parent
#: the committed runs of the extended parameter set (:mod:`study.evidence`), read after ``runs/``
EVIDENCE_DIR = "reports/evidence/runs"
#: where a notebook writes by default: git-ignored (``.gitignore``: ``build/``), never a tracked file
EXPLORE_OUT = "build/reports"


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
    print((f"runs: {runs_dir}" + (f" (then the committed evidence {evidence_dir})" if str(evidence_dir) else "")
           + " | " if str(runs_dir) else "") + f"outputs: {out_dir}")
    return Folders((runs, _here(evidence_dir)) if str(evidence_dir) else runs, out, out / "figures", out / "tables")


def _roots(runs: Union[str, Path, Sequence[Union[str, Path]]]) -> tuple[Path, ...]:
    return (Path(runs),) if isinstance(runs, (str, Path)) else tuple(Path(r) for r in runs if str(r))


def foreach_items(ref: str, root: Path = ROOT) -> dict[str, object]:
    """Key → item of a dvc.yaml ``foreach: ${a.b}``: the mapping ``a.b`` of params.yaml or of the ``vars`` files
    (grid.yaml: the grid's groups), without starting DVC."""
    import yaml

    data = yaml.safe_load((root / "params.yaml").read_text())
    for extra in yaml.safe_load((root / "dvc.yaml").read_text()).get("vars") or []:
        if isinstance(extra, str) and (root / extra).is_file():
            data.update(yaml.safe_load((root / extra).read_text()) or {})
    node = data
    for part in str(ref).strip("${} ").split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return {str(k): v for k, v in node.items()} if isinstance(node, dict) else {}


def _render(path: str, key: str, item: object) -> str:
    """``path`` with a foreach stage's ``${key}`` and ``${item.<field>}`` filled in."""
    fields = item if isinstance(item, dict) else {}
    return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(fields.get(m.group(1), m.group(0))),
                  path.replace("${key}", key))


def _groups(sweep: str, root: Path = ROOT) -> list[tuple[str, str]]:
    """(folder below ``runs/<sweep>/``, the dvc.yaml stage that makes it) for every stage whose outputs are
    under ``runs/<sweep>/``: a ``foreach`` stage gives one per key it iterates (:func:`foreach_items`)."""
    import yaml

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    prefix = f"runs/{sweep}/"
    found = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        outs = [o if isinstance(o, str) else next(iter(o)) for o in body.get("outs", [])]
        items = foreach_items(stage["foreach"], root) if "foreach" in stage else {None: None}
        for key, item in items.items():
            for out in (o if key is None else _render(o, key, item) for o in outs):
                if out.startswith(prefix):
                    found.append((out[len(prefix):], name if key is None else f"{name}@{key}"))
    return found


def _has_runs(folder: Path) -> bool:
    return folder.is_dir() and next(folder.rglob("metrics.json"), None) is not None


def missing_groups(runs: Union[str, Path, Sequence[Union[str, Path]]], sweep: str,
                   root: Path = ROOT) -> list[tuple[str, str]]:
    """The groups of ``runs/<sweep>`` (folder, stage) with no finished run in any of the ``runs`` folders."""
    roots = _roots(runs)
    return [(rel, stage) for rel, stage in _groups(sweep, root)
            if not any(_has_runs(r / sweep / rel) for r in roots)]


def missing_line(sweep: str, missing: list[tuple[str, str]], root: Path = ROOT) -> str:
    """One line naming the missing run folders of ``sweep`` and the command that makes them (every group of a
    ``foreach`` stage missing: the stage's glob)."""
    groups = {stage.split("@")[0] for _, stage in _groups(sweep, root) if "@" in stage}
    whole = [g for g in sorted(groups) if {s for _, s in _groups(sweep, root) if s.startswith(g + "@")}
             <= {s for _, s in missing}]
    rest = [(rel, s) for rel, s in missing if s.split("@")[0] not in whole]
    names = ([f"runs/{sweep}/*" + (f" ({g})" if g != sweep else "") for g in whole]
             + [f"runs/{sweep}/{rel}" for rel, _ in rest])
    targets = [f"'{g}@*'" for g in whole] + [s for _, s in rest]
    glob = " --glob" if whole else ""
    return (f"missing {', '.join(names)}: make {'it' if len(missing) == 1 else 'them'} "
            f"with `dvc repro{glob} {' '.join(targets)}`")


def report_missing(runs: Union[str, Path, Sequence[Union[str, Path]]], *sweeps: str) -> list[str]:
    """Print one line per sweep of ``sweeps`` that lacks runs (in ``runs/`` and the evidence) with the command
    that makes them; returns the lines (none when every group has runs)."""
    lines = [missing_line(s, m) for s in sweeps if (m := missing_groups(runs, s))]
    for line in lines:
        print(line)
    return lines


def publish_figure_or_missing(rows: pd.DataFrame, path_without_suffix: str | Path, draw: Callable[[], object],
                              sweeps: Sequence[str], runs: Union[str, Path, Sequence[Union[str, Path]]] = ()) -> str:
    """``draw()`` published as ``<path>.{png,pdf}`` when ``rows`` (the data it plots) is not empty; otherwise a
    figure whose only text says that there are no runs and which command makes them — never empty axes under a
    title that claims data. Returns ``"figure"`` or the line printed."""
    import matplotlib.pyplot as plt

    from .writers import publish_figure

    if len(rows):
        fig = draw()
        publish_figure(fig, path_without_suffix)
        plt.close(fig)
        return "figure"
    missing = [missing_line(s, m) for s in sweeps if (m := missing_groups(runs, s))] if runs else []
    line = "; ".join(missing) or f"no runs in {', '.join(f'runs/{s}' for s in sweeps)}"
    print(f"{Path(path_without_suffix).name}: not drawn, {line}")
    fig, ax = plt.subplots(figsize=(8, 1.2))
    ax.axis("off")
    ax.text(0.0, 0.5, f"No runs to draw.\n{line}", fontsize=9, va="center", wrap=True)
    publish_figure(fig, path_without_suffix)
    plt.close(fig)
    return line
