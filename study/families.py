"""The method families of the paper's Table 2 (one-shot vs iterative) and the order methods are listed in,
shared by every table, figure and verdict of Table 1 and Figures 2–5; derived from the library's method table
(:data:`lowrank.method_table.METHOD_TABLE`)."""
from __future__ import annotations

from typing import Any, Iterable

from lowrank.method_table import METHOD_TABLE, method_names

__all__ = ["ONE_SHOT", "ITERATIVE", "IHT_FAMILY", "METHOD_ORDER", "label_key", "sort_labels"]

#: one-shot projections (projection once, then fine-tuning): the paper's "not iterative" rows of Table 2
ONE_SHOT = tuple(n for n in method_names(iterative=False) if METHOD_TABLE[n].family != "dense")
#: sparsify-during-training methods compared against the one-shot family in Figure 2 (the per-layer ones)
ITERATIVE = method_names(iterative=True, threshold_scope="layer")
#: methods of Algorithms 1–2 (U S Vᵀ form, convert then cut), local and global
IHT_FAMILY = method_names(family="iht")
#: tables and legends list the dense model, the one-shot families, then TRP before the IHT family
_FAMILY_ORDER = ("dense", "projection", "tensor_train", "trp", "iht")
METHOD_ORDER = tuple(sorted(METHOD_TABLE, key=lambda n: _FAMILY_ORDER.index(METHOD_TABLE[n].family)))

_SCHEDULE_ORDER = {"increasing": 0, "constant": 1, "decreasing": 2}


def label_key(label: Any) -> tuple:
    """Order labels by method (:data:`METHOD_ORDER`), then schedule (increasing, constant, decreasing)."""
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    parts = str(label).split(" · ")
    sched = min((_SCHEDULE_ORDER.get(p, 9) for p in parts), default=9)
    return (order.get(parts[0], len(order)), sched, str(label))


def sort_labels(labels: Iterable[str]) -> list[str]:
    return sorted(dict.fromkeys(labels), key=label_key)
