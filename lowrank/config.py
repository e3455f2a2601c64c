"""``params.yaml`` access: the single place configuration comes from.

``params.yaml`` has a ``profile`` key (``small`` | ``paper``) and one mapping per pipeline stage or run.
Two constructs are resolved here, and only here, by :func:`resolve_spec`:

* ``inherit: <dotted.key>`` — start from another mapping of ``params.yaml`` (a shared budget), so a
  sweep states only what it changes;
* ``paper:`` / ``small:`` sub-mappings — settings that apply under that profile only, so switching
  profile is one key.

Usage::

    from lowrank.config import load_params, resolve_spec
    params = load_params("params.yaml")
    spec = resolve_spec(params, "fig2.svd_r4")                  # under params["profile"]
    spec = resolve_spec(params, "fig2.svd_r4", "paper")         # under another profile
    spec = load_spec("params:fig2.svd_r4", "params.yaml")        # what `python -m lowrank run` reads
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["PROFILES", "GROUP_KEY", "load_params", "merge", "resolve_spec", "resolve_group", "stage_params",
           "load_spec", "load_group"]

PROFILES = ("small", "paper")
#: the key of a run group (:func:`resolve_group`): name → run spec, the group's other keys shared by all
GROUP_KEY = "runs"


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


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """The one merge rule: ``over`` on top of ``base``, recursively.

    A key whose value is a mapping on both sides (``train``, ``method_args``) merges key by key;
    any other value of ``over`` (a scalar, a list, ``None``) replaces ``base``'s whole. An empty
    mapping therefore changes nothing (``null`` replaces). Neither argument is modified; values not
    merged are shared, not copied.
    """
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _lookup(params: Mapping[str, Any], dotted: str, source: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"no key {dotted!r} in {source} (missing {part!r})")
        node = node[part]
    return node


def resolve_spec(params: Mapping[str, Any], ref: str | Mapping[str, Any], profile: str | None = None, *,
                 source: str = "params.yaml") -> dict[str, Any]:
    """The mapping ``ref`` of ``params`` with ``inherit:`` and the profile's section resolved.

    ``ref`` is a dotted key of ``params`` (``"fig2.svd_r4"``) or a mapping (a spec read from a file);
    ``profile`` defaults to ``params["profile"]`` (else ``small``); ``source`` names ``params`` in
    error messages. Each mapping resolves as

        resolved(node) = merge(merge(resolved(parent), node's own keys), node[profile])

    with :func:`merge` the one merge rule, ``parent`` the mapping named by ``node["inherit"]`` (none:
    an empty mapping) and ``node[profile]`` its ``small:`` / ``paper:`` section (none: empty). So the
    precedence is, lowest first: the parent (with its own profile section applied), the node's own
    keys, the node's profile section — a run's own setting (say ``train.epochs``) is never undone by
    its base's section. The ``inherit`` key and every profile section are removed from the result;
    profile sections are read at the top level of each mapping only (not inside ``train:``).
    """
    profile = params.get("profile", "small") if profile is None else profile
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}; allowed: {', '.join(PROFILES)}")
    label = ref if isinstance(ref, str) else "(mapping)"
    spec = _lookup(params, ref, source) if isinstance(ref, str) else ref
    if not isinstance(spec, dict):
        raise ValueError(f"spec {label!r} must hold a mapping, got {type(spec).__name__}")

    def resolve(node: Mapping[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
        node = dict(node)
        key = node.pop("inherit", None)
        sections = {p: node.pop(p, None) for p in PROFILES}
        if key is not None:
            if key in seen:
                raise ValueError(f"spec {label!r}: inherit cycle through {key!r}")
            parent = _lookup(params, key, source)
            if not isinstance(parent, dict):
                raise ValueError(f"spec {label!r}: inherit={key!r} is not a mapping in {source}")
            node = merge(resolve(parent, seen + (key,)), node)
        if sections[profile]:
            node = merge(node, sections[profile])
        return node

    return resolve(spec, ())


def resolve_group(params: Mapping[str, Any], ref: str | Mapping[str, Any], profile: str | None = None, *,
                  source: str = "params.yaml") -> dict[str, dict[str, Any]]:
    """A run group: name → resolved run spec, for a mapping with a ``runs:`` key (:data:`GROUP_KEY`).

    A group states once what its runs share (dataset, base, budget, seed) and, under ``runs:``, each
    run's own keys (usually method and method_args)::

        seeds:
          digits_k0:
            inherit: budget_digits
            base: runs/pretrain/digits_k0/model.pt
            train: {random_state: 0}
            runs: {svd_r4: {method: svd, method_args: {rank: 4}}, ieht_90: {method: ieht, ...}}

    Each run resolves as ``merge(resolved group without runs, resolve_spec(run))``: the group (with its
    ``inherit`` and profile section) first, then the run's own keys, which may say ``inherit:`` and have a
    profile section of their own. Why groups: one process runs them all, so a sweep of short runs pays
    the import of torch and timm (about 5 s) and DVC's stage overhead once per group, not once per run.
    """
    label = ref if isinstance(ref, str) else "(mapping)"
    group = resolve_spec(params, ref, profile, source=source)
    runs = group.pop(GROUP_KEY, None)
    if not isinstance(runs, dict) or not runs:
        raise ValueError(f"group {label!r}: {GROUP_KEY!r} must be a non-empty mapping of run name → spec, "
                         f"got {runs!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, node in runs.items():
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"group {label!r}: run name {name!r} must be a plain folder name")
        if not isinstance(node, dict):
            raise ValueError(f"group {label!r}: run {name!r} must be a mapping, got {type(node).__name__}")
        if GROUP_KEY in node:
            raise ValueError(f"group {label!r}: run {name!r} has its own {GROUP_KEY!r} (groups do not nest)")
        out[name] = merge(group, resolve_spec(params, node, profile, source=source))
    return out


def stage_params(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """The section for ``stage`` resolved under the active profile (:func:`resolve_spec`)."""
    if stage not in params:
        raise ValueError(f"params: no section {stage!r}; sections: {sorted(k for k in params if k != 'profile')}")
    section = params[stage] or {}
    if not isinstance(section, dict):
        raise ValueError(f"params: section {stage!r} must be a mapping, got {type(section).__name__}")
    return resolve_spec(params, section)


def _read_ref(ref: str, params_path: str | Path) -> tuple[dict[str, Any], str | dict[str, Any]]:
    """(params, what to resolve) for ``params:<dotted.key>`` or a YAML/JSON file (see :func:`load_spec`)."""
    if ref.startswith("params:"):
        return load_params(params_path), ref[len("params:"):]
    path = Path(ref)
    if not path.is_file():
        raise ValueError(f"spec {ref!r} is neither an existing YAML/JSON file nor 'params:<key>'")
    with open(path, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)
    if not isinstance(spec, dict):
        raise ValueError(f"spec {ref!r} must hold a mapping, got {type(spec).__name__}")
    uses_params = spec.get("inherit") is not None or any(spec.get(p) is not None for p in PROFILES)
    return (load_params(params_path) if uses_params else {}), spec


def load_group(ref: str, params_path: str | Path = "params.yaml") -> dict[str, dict[str, Any]]:
    """A run group named on the command line (``params:<dotted.key>`` or a file), resolved
    (:func:`resolve_group`): what ``python -m lowrank sweep`` reads."""
    params, node = _read_ref(ref, params_path)
    return resolve_group(params, node, source=str(params_path))


def load_spec(ref: str, params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """A run spec named on the command line, resolved (:func:`resolve_spec`).

    ``ref`` is ``params:<dotted.key>`` (a mapping inside ``params_path``) or a YAML/JSON file. A file
    that says ``inherit:`` or has profile sections follows ``params_path`` (its profile and its
    mappings); any other file is used as it is, and ``params_path`` need not exist.
    """
    params, node = _read_ref(ref, params_path)
    return resolve_spec(params, node, source=str(params_path))
