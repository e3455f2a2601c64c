"""Writing the figures and tables of every paper artifact (Table 1, Figures 2–5, the tenBCD study, the
walkthrough) under ``reports/``, each file atomically, and including them in REPORT.md.

Figures are matplotlib ``Figure`` objects on the Agg canvas (no pyplot state), saved as PNG (150 dpi) and
PDF; tables are DataFrames saved as CSV (full precision) and GitHub Markdown. The ``publish_*`` variants
also show the result when they run inside a notebook.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lowrank.utils import atomic_write_bytes, atomic_write_text

__all__ = ["new_figure", "save_figure", "markdown_table", "write_table", "publish_figure", "publish_table",
           "no_runs_table", "include_table", "include_figure"]


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.0, height: float = 4.0, squeeze: bool = False,
               **kwargs: Any) -> tuple[Figure, Any]:
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot state) and its axes grid."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    with sns.axes_style("whitegrid"):
        axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
    return fig, axes


def save_figure(fig: Figure, path_without_suffix: str | Path) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` (150 dpi) and ``<path>.pdf``, each atomically; returns the paths."""
    base = Path(path_without_suffix)
    paths = []
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf"
                    else None)
        path = base.with_name(f"{base.name}.{fmt}")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def _display_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
    return out.astype(object).where(pd.notna(out), None)


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """GitHub Markdown of ``df`` (no index; missing values shown as ``–``)."""
    if df.empty:
        return "| (empty) |\n|---|\n"
    d = df.copy()
    for c in d.columns:
        if not pd.api.types.is_numeric_dtype(d[c]):
            d[c] = d[c].map(lambda v: v.replace("|", "\\|").replace("\n", " ") if isinstance(v, str) else v)
    return _display_frame(d).to_markdown(index=False, floatfmt=floatfmt, missingval="–") + "\n"


def write_table(df: pd.DataFrame, path_without_suffix: str | Path, floatfmt: str = ".4g") -> list[Path]:
    """Write ``df`` as ``<path>.csv`` (full precision) and ``<path>.md`` (Markdown), each atomically."""
    base = Path(path_without_suffix)
    csv_path, md_path = base.with_name(f"{base.name}.csv"), base.with_name(f"{base.name}.md")
    atomic_write_text(csv_path, _display_frame(df).to_csv(index=False, lineterminator="\n"))
    atomic_write_text(md_path, markdown_table(df, floatfmt))
    return [csv_path, md_path]


def publish_figure(fig: Figure, path_without_suffix: str | Path) -> list[Path]:
    """:func:`save_figure`, then show the PNG when running inside IPython (a notebook)."""
    paths = save_figure(fig, path_without_suffix)
    _ipython_display("image", paths[0])
    return paths


def publish_table(df: pd.DataFrame, path_without_suffix: str | Path, floatfmt: str = ".4g") -> list[Path]:
    """:func:`write_table`, then show the Markdown when running inside IPython (a notebook)."""
    paths = write_table(df, path_without_suffix, floatfmt)
    _ipython_display("markdown", paths[1])
    return paths


def _ipython_display(kind: str, path: Path) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Image, Markdown, display
    except ImportError:  # pragma: no cover - IPython ships with the notebook stack
        return
    if get_ipython() is None:
        return
    display(Image(filename=str(path)) if kind == "image" else Markdown(Path(path).read_text()))


def no_runs_table(sweep: str, what: str = "") -> pd.DataFrame:
    """The one-row table a notebook writes when its sweep has no finished runs."""
    return pd.DataFrame({"status": [f"no runs in runs/{sweep}" + (f" ({what})" if what else "")]})


def include_table(reports_dir: Path, stem: str, notebook: str) -> str:
    """The Markdown of ``<reports_dir>/tables/<stem>.md`` for REPORT.md, or a line saying which notebook writes it."""
    md = reports_dir / "tables" / f"{stem}.md"
    if md.is_file():
        return md.read_text().rstrip() + "\n"
    return f"_(table `tables/{stem}.md` not generated yet: run `notebooks/{notebook}.py`)_\n"


def include_figure(reports_dir: Path, stem: str, caption: str) -> str:
    """A REPORT.md image link to ``figures/<stem>.png``, or a line saying it is not there yet."""
    if (reports_dir / "figures" / f"{stem}.png").is_file():
        return f"![{caption}](figures/{stem}.png)\n"
    return f"_(figure `figures/{stem}.png` not generated yet)_\n"
