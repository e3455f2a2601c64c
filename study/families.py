"""The method families of the paper's Table 2 (one-shot vs iterative) and the order methods are listed in,
shared by every table, figure and verdict of Table 1 and Figures 2–5."""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["ONE_SHOT", "ITERATIVE", "IHT_FAMILY", "METHOD_ORDER", "label_key", "sort_labels"]

#: one-shot projections (projection once, then fine-tuning): the paper's "not iterative" rows of Table 2
ONE_SHOT = ("svd", "fwsvd", "tfwsvd", "asvd", "ttm", "fwttm")
#: sparsify-during-training methods compared against the one-shot family in Figure 2
ITERATIVE = ("oialr", "ieht", "ifht", "trp", "fwtrp")
#: methods of Algorithms 1–2 (U S Vᵀ form, convert then cut), local and global
IHT_FAMILY = ("oialr", "ieht", "ifht", "global_ieht", "global_ifht")
METHOD_ORDER = ("dense", "svd", "fwsvd", "tfwsvd", "asvd", "ttm", "fwttm", "trp", "fwtrp", "oialr", "ieht", "ifht",
                "global_ieht", "global_ifht")

_SCHEDULE_ORDER = {"increasing": 0, "constant": 1, "decreasing": 2}


def label_key(label: Any) -> tuple:
    """Order labels by method (:data:`METHOD_ORDER`), then schedule (increasing, constant, decreasing)."""
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    parts = str(label).split(" · ")
    sched = min((_SCHEDULE_ORDER.get(p, 9) for p in parts), default=9)
    return (order.get(parts[0], len(order)), sched, str(label))


def sort_labels(labels: Iterable[str]) -> list[str]:
    return sorted(dict.fromkeys(labels), key=label_key)
