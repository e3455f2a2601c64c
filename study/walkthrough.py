"""The walkthrough of the paper's Sections 3–4 (notebook ``notebooks/00_walkthrough.py``): Figure 1 /
Eq. 4 vs Eq. 5 live (Euclidean vs information projection of one layer, scored by the KL divergence of the
model's predictions), Algorithm 1's two rank rules on a real spectrum (IEHT's energy cut vs OIALR's σ_max
cut), and one IEHT / IFHT cut step by step.

It decides no claim and reads no sweep: it runs the library (:mod:`lowrank`) in seconds, on the digits
base ``bases/digits_k0.safetensors`` (committed). This module holds its figures and the output KL.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .families import sort_labels
from .registry import Artifact, register
from .style import method_colors
from .writers import new_figure

__all__ = ["NOTEBOOK", "PROJECTION_KL", "CUT_RULES", "ENERGY_VS_SIGMA_MAX", "IEHT_CUT", "output_kl",
           "projection_kl_figure", "cut_rules_figure", "cut_step_figure", "ARTIFACT"]

NOTEBOOK = "00_walkthrough"
PROJECTION_KL = "walkthrough_projection_kl"                  # a figure and a table
CUT_RULES = "walkthrough_cut_rules"                          # table
ENERGY_VS_SIGMA_MAX = "walkthrough_energy_vs_sigma_max"      # figure
IEHT_CUT = "walkthrough_ieht_cut"                            # a figure and a table
#: the committed base it projects and cuts
BASE = "bases/digits_k0.safetensors"


def output_kl(reference_logits: Any, logits: Any) -> float:
    """Mean over samples of KL(p_reference ‖ p) between two sets of categorical logits (nats)."""
    import torch

    lp_ref = torch.log_softmax(torch.as_tensor(reference_logits, dtype=torch.float64), -1)
    lp = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), -1)
    return float((lp_ref.exp() * (lp_ref - lp)).sum(-1).mean())


def projection_kl_figure(df: pd.DataFrame, title: str) -> Figure:
    """Output KL and weighted error of the projected layer against its rank, one line per projection."""
    fig, axes = new_figure(1, 2, width=5.0, height=3.6)
    colors = method_colors(df["method"])
    for m in sort_labels(df["method"]):
        g = df[df["method"] == m].sort_values("rank")
        axes[0, 0].plot(g["rank"], g["output KL"], "o-", color=colors[m], label=m.upper())
        axes[0, 1].plot(g["rank"], g["rel. Fisher-weighted error"], "o-", color=colors[m], label=m.upper())
    axes[0, 0].set_ylabel("KL(original ‖ projected), nats / sample")
    axes[0, 1].set_ylabel("relative Fisher-weighted error")
    for ax in axes[0]:
        ax.set_xlabel("rank of the projected layer")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def cut_rules_figure(S: Any, cuts: Mapping[str, int], title: str) -> Figure:
    """A spectrum (σᵢ / σ_max, left) and its cumulative energy (right) with each rule's kept rank."""
    s = np.asarray(S, dtype=float)
    fig, axes = new_figure(1, 2, width=5.0, height=3.6)
    i = np.arange(1, s.size + 1)
    axes[0, 0].semilogy(i, s / s.max(), color="0.2", lw=1.2)
    energy = np.cumsum(s ** 2) / np.sum(s ** 2)
    axes[0, 1].plot(i, energy, color="0.2", lw=1.2)
    pal = sns.color_palette("deep", len(cuts))
    for c, (label, k) in zip(pal, cuts.items()):
        for ax in axes[0]:
            ax.axvline(k, color=c, ls="--", lw=1.2, label=f"{label}: keep {k}")
    axes[0, 0].set_ylabel("σᵢ / σ_max (log scale)")
    axes[0, 1].set_ylabel("share of the energy Σσ² in the first i values")
    for ax in axes[0]:
        ax.set_xlabel("singular value index i")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def cut_step_figure(before: Any, after: Any, title: str) -> Figure:
    """Singular values of a layer's core before and after one cut."""
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    fig, axes = new_figure(1, 1, width=6.0, height=3.6)
    ax = axes[0, 0]
    ax.semilogy(np.arange(1, b.size + 1), b, "o", ms=3, color="0.6", label=f"before: rank {b.size}")
    ax.semilogy(np.arange(1, a.size + 1), a, "o", ms=3, color="C3", label=f"after: rank {a.size}")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("singular value of the core S (log scale)")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


ARTIFACT = register(Artifact(
    "walkthrough", "Sections 3–4", "walkthrough", notebook=NOTEBOOK, inputs=(BASE,),
    figures=(PROJECTION_KL, ENERGY_VS_SIGMA_MAX, IEHT_CUT), tables=(PROJECTION_KL, CUT_RULES, IEHT_CUT)))
