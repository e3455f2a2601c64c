"""How the figures of every paper artifact (Table 1, Figures 2–5, the walkthrough) look: one fixed colour
per method in every figure, the log axis in plain percentages, the panel that says a sweep has no runs."""
from __future__ import annotations

from typing import Any, Iterable

import seaborn as sns

__all__ = ["method_colors", "no_runs_axes", "percent_log_axis"]


def no_runs_axes(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


_METHOD_COLORS = {"dense": "tab:gray", "svd": "tab:blue", "fwsvd": "tab:orange", "tfwsvd": "tab:olive",
                  "asvd": "tab:cyan", "trp": "tab:purple", "fwtrp": "tab:pink", "oialr": "tab:red",
                  "ieht": "tab:green", "ifht": "tab:brown", "global_ieht": "#8fd18f", "global_ifht": "#d2a98c",
                  "ttm": "#4b4b8f", "fwttm": "#c7a0e8"}


def method_colors(labels: Iterable[str]) -> dict[str, Any]:
    """A fixed colour per method name (the same in every figure); other labels get the next colours."""
    colors: dict[str, Any] = dict(_METHOD_COLORS)
    extra = [lab for lab in dict.fromkeys(labels) if lab not in colors]
    for lab, c in zip(extra, sns.color_palette("deep", max(len(extra), 1))):
        colors[lab] = c
    return colors


def percent_log_axis(ax: Any) -> None:
    """A log x axis labelled in plain percentages (1, 2, 5, 10, 20, 50, 100)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
