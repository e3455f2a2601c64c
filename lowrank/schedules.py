"""Per-layer cut-off thresholds as a function of depth (``oialr_depth_schedule``, the paper's Figure 4).

The paper compares three schedules: constant with depth, increasing with depth, decreasing with
depth, where "increasing" means *more error tolerated in later layers* (earlier layers settle
first in training and need more flexibility at each cut, so they should lose less).

We make "error" precise per rule and keep the *mean* error over layers equal to the constant
schedule's, so the schedules redistribute the same budget instead of changing it:

* energy rules (IEHT, IFHT, TRP, FWTRP): the kept energy fraction is β, the tolerated error is
  ``e = 1 − β``; layer ℓ at relative depth ``d = ℓ / (L − 1) ∈ [0, 1]`` gets
  ``e_ℓ = e · (1/2 + d)`` (increasing) or ``e · (3/2 − d)`` (decreasing), i.e. a linear ramp from
  ½e to 3/2·e, mean e;
* the relative rule (OIALR): the cut drops σ < β·σ_max, so β itself is the tolerated error:
  ``β_ℓ = β · (1/2 + d)`` (increasing) or ``β · (3/2 − d)`` (decreasing).

Results are clipped to (0, 1]: a kept-energy fraction can never exceed 1, and a threshold of 0
would be a no-op the validators refuse.
"""
from __future__ import annotations

import re

__all__ = ["DEPTH_SCHEDULES", "layer_depths", "layer_thresholds"]

DEPTH_SCHEDULES = ("constant", "increasing", "decreasing")
_EPS = 1e-6


def layer_depths(names: list[str]) -> dict[str, float]:
    """Relative depth in [0, 1] of each layer name, from the first integer in it (block index).

    Layers without an index (or a model with a single block) get depth 0.5; layers of one block
    share its depth.
    """
    idx = {}
    for n in names:
        m = re.search(r"\.(\d+)\.", f".{n}.")
        idx[n] = int(m.group(1)) if m else None
    blocks = sorted({i for i in idx.values() if i is not None})
    if len(blocks) <= 1:
        return {n: 0.5 for n in names}
    lo, hi = blocks[0], blocks[-1]
    return {n: 0.5 if i is None else (i - lo) / (hi - lo) for n, i in idx.items()}


def layer_thresholds(names: list[str], beta: float, schedule: str, rule: str) -> dict[str, float]:
    """β per layer for a schedule (see module docstring). ``rule`` is ``energy`` or ``relative``."""
    if schedule not in DEPTH_SCHEDULES:
        raise ValueError(f"oialr_depth_schedule={schedule!r}; allowed: {', '.join(DEPTH_SCHEDULES)}")
    if rule not in ("energy", "relative"):
        raise ValueError(f"rule={rule!r}; allowed: 'energy', 'relative'")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"threshold={beta!r} is outside the allowed range (0, 1]")
    depths = layer_depths(names)
    out = {}
    for n, d in depths.items():
        scale = 1.0 if schedule == "constant" else (0.5 + d if schedule == "increasing" else 1.5 - d)
        if rule == "energy":
            b = 1.0 - (1.0 - beta) * scale
        else:
            b = beta * scale
        out[n] = min(1.0, max(_EPS, b))
    return out
