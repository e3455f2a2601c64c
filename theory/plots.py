"""Figures and tables for the theory notebook (Proposition 4.3 of the paper), written atomically.

Figures go to PNG and PDF through :func:`lowrank.utils.atomic_write_bytes` (rendered into memory
first, so an interrupted run never leaves half a file); tables go to CSV and Markdown through
:func:`lowrank.utils.atomic_write_text`.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lowrank.utils import atomic_write_bytes, atomic_write_text  # noqa: E402
from theory.prox import ProxRun  # noqa: E402

__all__ = [
    "save_figure",
    "write_table",
    "plot_objective",
    "plot_path_length",
    "plot_singular_values",
    "plot_rank_reduction",
]


def save_figure(fig: plt.Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``fig`` as ``name.png`` and ``name.pdf`` under ``out_dir``; returns the paths."""
    if not name or "/" in name:
        raise ValueError(f"name must be a plain file stem, got {name!r}")
    out = Path(out_dir)
    paths = []
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        # no CreationDate: the same figure gives the same bytes, so DVC sees no change
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf"
                    else None)
        path = out / f"{name}.{fmt}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def _markdown(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[Mapping[str, object]], out_dir: str | Path, name: str) -> tuple[Path, Path, str]:
    """Write ``rows`` as ``name.csv`` and ``name.md``; returns both paths and the Markdown text."""
    if not rows:
        raise ValueError("rows must contain at least one row, got an empty sequence")
    columns = list(rows[0].keys())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out = Path(out_dir)
    md = _markdown(rows, columns)
    atomic_write_text(out / f"{name}.csv", buf.getvalue())
    atomic_write_text(out / f"{name}.md", md)
    return out / f"{name}.csv", out / f"{name}.md", md


def plot_objective(runs: Mapping[str, ProxRun]) -> plt.Figure:
    """``(L + lambda rank)(W_n) - min`` per iteration (Proposition 4.3, claim 1)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, run in runs.items():
        gap = run.objective - run.objective.min()
        ax.semilogy(np.arange(gap.size), np.maximum(gap, 1e-16), label=label)
    ax.set_xlabel("iteration n")
    ax.set_ylabel(r"$\Phi(W_n) - \min_k \Phi(W_k)$,  $\Phi = L + \lambda\,\mathrm{rank}$")
    ax.set_title("Prop. 4.3, claim 1: objective is non-increasing")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_path_length(runs: Mapping[str, ProxRun]) -> plt.Figure:
    """Cumulative path length ``sum_{k<n} |W_{k+1} - W_k|`` (claim 2) and the increments."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, run in runs.items():
        ax1.plot(run.path_length, label=label)
        ax2.semilogy(np.maximum(run.step_norm, 1e-17), label=label)
    ax1.set_xlabel("iteration n")
    ax1.set_ylabel(r"$\sum_{k<n} \|W_{k+1} - W_k\|_F$")
    ax1.set_title("Prop. 4.3, claim 2: finite path length")
    ax2.set_xlabel("iteration n")
    ax2.set_ylabel(r"$\|W_{n+1} - W_n\|_F$")
    ax2.set_title("increments (geometric tail)")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def _pad(seqs: Sequence[np.ndarray]) -> np.ndarray:
    width = max((s.size for s in seqs), default=0)
    out = np.full((len(seqs), max(width, 1)), np.nan)
    for i, s in enumerate(seqs):
        out[i, : s.size] = s
    return out


def plot_singular_values(run: ProxRun, label: str) -> plt.Figure:
    """Singular-value trajectories with the bounds of claim 4 drawn in.

    Left: non-zero singular values of ``I_n^{1/2} W_{n+1}`` with the printed bound
    ``sqrt(alpha_min lambda)`` and the sharp ``sqrt(2 alpha_min lambda)``. Right: singular values of
    ``W_n`` with the printed "and thus" bound ``sqrt(sigma_max(I) alpha_min lambda)`` and the corrected
    ``sqrt(2 alpha_min lambda / sigma_max(I))``.
    """
    lim = run.limit_metrics[0]
    lam_max = 1.0 if lim is None else lim.lam_max
    a, lam = run.alpha_min, run.lam
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    metric_sv = _pad([blocks[0] for blocks in run.metric_singular_values])
    steps = np.arange(1, metric_sv.shape[0] + 1)
    ax1.semilogx(steps, metric_sv, color="C0", lw=1)
    ax1.axhline(np.sqrt(a * lam), color="C3", ls="--", label=r"printed $\sqrt{\alpha_{\min}\lambda}$")
    ax1.axhline(np.sqrt(2 * a * lam), color="C2", ls="-", label=r"sharp $\sqrt{2\alpha_{\min}\lambda}$")
    ax1.set_xlabel("iteration n")
    ax1.set_ylabel(r"non-zero $\sigma_i(\mathcal{I}_n^{1/2} W_{n+1})$")
    ax1.set_title(f"Prop. 4.3, claim 4 (first part), {label}")
    ax1.legend(fontsize=8)
    sv = _pad([s[0] for s in run.singular_values])
    ranks = run.rank
    for i in range(sv.shape[1]):
        vals = np.where(i < ranks, sv[:, i], np.nan)
        ax2.semilogx(np.arange(1, sv.shape[0] + 1), vals, color="C0", lw=1)
    ax2.axhline(np.sqrt(lam_max * a * lam), color="C3", ls="--",
                label=r"printed $\sqrt{\sigma_{\max}(\mathcal{I})\alpha_{\min}\lambda}$")
    ax2.axhline(np.sqrt(2 * a * lam / lam_max), color="C2", ls="-",
                label=r"corrected $\sqrt{2\alpha_{\min}\lambda/\sigma_{\max}(\mathcal{I})}$")
    ax2.set_xlabel("iteration n + 1")
    ax2.set_ylabel(r"non-zero $\sigma_i(W_n)$")
    ax2.set_title(f"Prop. 4.3, claim 4 ('and thus'), {label}")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_rank_reduction(result: Mapping) -> plt.Figure:
    """Bar chart of the deep-linear experiment: loss at equal rank per method and random state."""
    runs = result["runs"]
    keys = [
        ("loss_iterative", "iterative (Eq. 9)"),
        ("loss_oneshot_product", "one-shot, product SVD"),
        ("loss_oneshot_layers", "one-shot, per-layer SVD"),
        ("loss_optimal", "rank-r optimum"),
    ]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(runs))
    width = 0.8 / len(keys)
    for j, (k, label) in enumerate(keys):
        ax.bar(x + j * width, [r[k] for r in runs], width, label=label)
    ax.plot(x + 0.4 - width / 2, [r["loss_full"] for r in runs], "k_", ms=20, label="full rank (trained)")
    ax.set_xticks(x + 0.4 - width / 2, [f"state {r['random_state']}\nrank {r['rank']}" for r in runs])
    ax.set_ylabel(r"data loss $\frac{1}{2p}\|W X - Y\|^2$")
    lo = min(r["loss_full"] for r in runs)
    ax.set_ylim(0.9 * lo, None)
    ax.set_title("Section 4: iterative rank reduction vs one-shot truncation (deep linear nets)")
    ax.legend(fontsize=8)
    return fig
