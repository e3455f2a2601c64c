"""``params.yaml`` access: the single place configuration comes from.

``params.yaml`` has a ``profile`` key (``small`` | ``paper``) and one section per pipeline stage. A
stage section may hold a ``paper:`` sub-section whose keys override the section under the ``paper``
profile, so switching profile is one key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["PROFILES", "load_params", "stage_params"]

PROFILES = ("small", "paper")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"params file {str(path)!r} does not exist")
    with open(path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(params).__name__}")
    profile = params.get("profile", "small")
    if profile not in PROFILES:
        raise ValueError(f"{path}: profile={profile!r}; allowed: {', '.join(PROFILES)}")
    return params


def stage_params(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """The section for ``stage`` with the active profile's overrides applied (profile keys removed)."""
    if stage not in params:
        raise ValueError(f"params: no section {stage!r}; sections: {sorted(k for k in params if k != 'profile')}")
    section = dict(params[stage] or {})
    overrides = {p: section.pop(p, None) for p in PROFILES}
    active = overrides.get(params.get("profile", "small"))
    if active:
        section.update(active)
    return section
