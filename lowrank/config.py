"""``params.yaml`` access: the single place configuration comes from.

``params.yaml`` has a ``profile`` key (``small`` | ``paper``) and one mapping per pipeline stage or run.
Three constructs are resolved here, and only here:

* ``inherit: <dotted.key>`` — start from another mapping of ``params.yaml`` (a shared budget), so a
  sweep states only what it changes (:func:`resolve_spec`);
* ``paper:`` / ``small:`` sub-mappings — settings that apply under that profile only, so switching
  profile is one key (:func:`resolve_spec`);
* ``grid:`` — the vision bases (dataset → seeds) and the sweeps run on each of them: such a sweep states
  each dataset's runs once, and ``<sweep>.<dataset>_k<seed>`` is that entry on the base of that seed
  (:func:`expand_grid`, :func:`grid_node`).

Usage (a group of runs, resolved under ``params["profile"]`` or another profile)::

    >>> params = {"profile": "small",
    ...           "budget": {"train": {"epochs": 30}, "paper": {"train": {"epochs": 250}}},
    ...           "grid": {"bases": {"digits": [0, 1]}, "sweeps": ["fig"]},
    ...           "fig": {"digits": {"inherit": "budget", "runs": {"svd_r4": {
    ...               "method": "svd", "method_args": {"rank": 4}, "paper": {"method_args": {"rank": 24}}}}}}}
    >>> sorted(expand_grid(params)["fig"])
    ['digits_k0', 'digits_k1']
    >>> run = resolve_group(params, "fig.digits_k1")["svd_r4"]
    >>> run["train"], run["base"], run["method_args"]
    ({'epochs': 30, 'random_state': 1}, 'bases/digits_k1.safetensors', {'rank': 4})
    >>> resolve_group(params, "fig.digits_k1", "paper")["svd_r4"]["method_args"]
    {'rank': 24}
    >>> resolve_spec(params, "budget", "paper")
    {'train': {'epochs': 250}}

``python -m lowrank run params:<key>`` reads :func:`load_spec`, ``python -m lowrank sweep params:<key>``
:func:`load_group`: the same resolution, of a key of a ``params.yaml`` file.

Every YAML file (``params.yaml``, a spec file) is read by :func:`read_yaml` the way DVC reads
``params.yaml``: ruamel.yaml's safe loader, YAML 1.2, so DVC and the code see the same values. A key
twice in one mapping is refused, and so is a plain scalar that YAML 1.1 reads otherwise (``010``: 8 or
10, ``yes``: true or a string, ``1:30``), with its line; ``1e-3`` is a float under 1.2 and is accepted.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

__all__ = ["PROFILES", "GROUP_KEY", "GRID_KEY", "BASE_PATHS", "read_yaml", "load_params", "merge", "resolve_spec",
           "resolve_group", "expand_grid", "grid_node", "base_name", "stage_params", "load_spec", "load_group"]

PROFILES = ("small", "paper")
#: the key of a run group (:func:`resolve_group`): name → run spec, the group's other keys shared by all
GROUP_KEY = "runs"
#: the key of the grid (:func:`expand_grid`): ``bases`` (dataset → seeds) and ``sweeps`` (run on every base)
GRID_KEY = "grid"
#: where the base of a grid group is, per profile: the committed bases, or the paper profile's pre-training runs
BASE_PATHS = {"small": "bases/{name}.safetensors", "paper": "runs/pretrain/{name}/model.pt"}
#: restricts a grid entry, or one run of it, to some of its dataset's seeds
SEEDS_KEY = "seeds"


_STR = "tag:yaml.org,2002:str"
_CORE = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}


@functools.lru_cache(maxsize=4096)
def _yaml_1_1(text: str) -> Any:
    """How PyYAML (YAML 1.1) reads one plain scalar."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


@functools.lru_cache(maxsize=4096)
def _yaml_1_2(text: str) -> Any:
    """How ruamel.yaml's safe loader (YAML 1.2, DVC's) reads one plain scalar."""
    return YAML(typ="safe").load(text)


def _ambiguous(node: Any) -> ScalarNode | None:
    """The first plain scalar under ``node`` that YAML 1.1 and 1.2 read as different values (a string
    under 1.1 that 1.2 reads as a number, ``1e-3``, is not ambiguous: 1.1's reading is the surprise)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, MappingNode):
            stack.extend(x for pair in reversed(n.value) for x in reversed(pair))
        elif isinstance(n, SequenceNode):
            stack.extend(reversed(n.value))
        elif isinstance(n, ScalarNode) and n.style is None and n.tag in _CORE:
            old = _yaml_1_1(n.value)
            if n.tag == _STR and isinstance(old, str):
                continue
            new = _yaml_1_2(n.value)
            if isinstance(old, str) and isinstance(new, (int, float)) and not isinstance(new, bool):
                continue
            if type(old) is not type(new) or old != new:
                return n
    return None


def read_yaml(path: str | Path) -> Any:
    """The YAML file ``path`` as DVC reads it (module docstring); a ``ValueError`` with the line otherwise."""
    text = Path(path).read_text(encoding="utf-8")
    loader = YAML(typ="safe")   # what DVC's parse_yaml uses: YAML 1.2, duplicate keys refused
    try:
        root = loader.compose(text)
        data = loader.load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = (err.problem or "").replace("\n", " ")
        if "duplicate key" in problem:
            raise ValueError(f"{path}{where}: {problem}; a key may appear once in a mapping") from None
        raise ValueError(f"{path}{where}: not valid YAML: {problem or err}") from None
    except YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    bad = _ambiguous(root) if root is not None else None
    if bad is not None:
        raise ValueError(f"{path}:{bad.start_mark.line + 1}: {bad.value!r} reads as {loader.load(bad.value)!r} under "
                         f"YAML 1.2 (DVC, this code) but {_yaml_1_1(bad.value)!r} under YAML 1.1; write the value "
                         f"unambiguously (quoted for a string, without a leading zero for a number)")
    return data


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"params file {str(path)!r} does not exist")
    params = read_yaml(path) or {}
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


def base_name(dataset: str, seed: int) -> str:
    """The name of the base of ``seed`` of ``dataset`` (a grid group, a folder of ``bases/`` and ``runs/``)."""
    return f"{dataset}_k{seed}"


def _grid(params: Mapping[str, Any], source: str) -> tuple[dict[str, list[int]], list[str]]:
    """(dataset → seeds, the sweeps on the bases) of ``params["grid"]``, checked; empty without a grid."""
    grid = params.get(GRID_KEY)
    if grid is None:
        return {}, []
    where = f"{source}: {GRID_KEY}"
    if not isinstance(grid, dict) or set(grid) != {"bases", "sweeps"}:
        raise ValueError(f"{where} must be a mapping with keys bases (dataset → seeds) and sweeps (a list), "
                         f"got {grid!r}")
    bases, sweeps = grid["bases"], grid["sweeps"]
    if not isinstance(bases, dict) or not bases or not all(
            isinstance(v, list) and v and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in v)
            and len(set(v)) == len(v) for v in bases.values()):
        raise ValueError(f"{where}.bases={bases!r}; allowed: a mapping dataset → list of distinct seeds (ints ≥ 0)")
    if not isinstance(sweeps, list) or not all(isinstance(w, str) and isinstance(params.get(w), dict)
                                               for w in sweeps):
        raise ValueError(f"{where}.sweeps={sweeps!r}; allowed: a list of keys of {source} holding mappings")
    return bases, sweeps


def _seeds(node: Mapping[str, Any], allowed: list[int], where: str) -> list[int]:
    """``node``'s ``seeds:`` (all of ``allowed`` without one), checked to be some of ``allowed``."""
    seeds = node.get(SEEDS_KEY, allowed)
    if not isinstance(seeds, list) or not seeds or not set(seeds) <= set(allowed):
        raise ValueError(f"{where}: {SEEDS_KEY}={seeds!r}; allowed: a non-empty list of {allowed}")
    return [k for k in allowed if k in seeds]


def expand_grid(params: Mapping[str, Any], *, source: str = "params.yaml") -> dict[str, dict[str, dict[str, Any]]]:
    """Sweep → group name → ``{"sweep", "dataset", "seed"}`` for every sweep of ``grid.sweeps``: one group per
    seed of each dataset entry (``<sweep>.<dataset>``; ``seeds:`` restricts it), in the order of
    ``grid.bases``. What dvc.yaml's run stages iterate (``python -m study.pipeline --write-grid``)."""
    bases, sweeps = _grid(params, source)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for sweep in sweeps:
        unknown = set(params[sweep]) - set(bases)
        if unknown:
            raise ValueError(f"{source}: {sweep} is in {GRID_KEY}.sweeps, so its keys are datasets of "
                             f"{GRID_KEY}.bases ({', '.join(bases)}), not {sorted(unknown)}")
        out[sweep] = {base_name(d, k): {"sweep": sweep, "dataset": d, "seed": k}
                      for d in bases if d in params[sweep]
                      for k in _seeds(params[sweep][d], bases[d], f"{source}: {sweep}.{d}")}
    return out


def grid_node(params: Mapping[str, Any], sweep: str, dataset: str, seed: int, *,
              source: str = "params.yaml") -> dict[str, Any]:
    """The mapping ``<sweep>.<dataset>_k<seed>`` stands for: the entry ``<sweep>.<dataset>`` without its
    ``seeds:``, with ``train.random_state: <seed>`` (the base's pre-training seed is the compression run's) and,
    for a group (``runs:``), the base of that seed (:data:`BASE_PATHS`, under each profile) and only the runs
    whose ``seeds:`` include it."""
    where = f"{source}: {sweep}.{dataset}"
    bases, sweeps = _grid(params, source)
    entry = params[sweep].get(dataset) if sweep in sweeps and dataset in bases else None
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a mapping of a sweep in {GRID_KEY}.sweeps, on a dataset of "
                         f"{GRID_KEY}.bases, got {type(entry).__name__}")
    seeds = _seeds(entry, bases[dataset], where)
    if seed not in seeds:
        raise ValueError(f"{where}: seed {seed!r}; allowed: {seeds}")
    node = {k: v for k, v in entry.items() if k != SEEDS_KEY}
    node["train"] = merge(node.get("train") or {}, {"random_state": seed})
    if isinstance(node.get(GROUP_KEY), dict):
        name = base_name(dataset, seed)
        node["base"] = BASE_PATHS["small"].format(name=name)
        node["paper"] = merge(node.get("paper") or {}, {"base": BASE_PATHS["paper"].format(name=name)})
        node[GROUP_KEY] = {n: {k: v for k, v in r.items() if k != SEEDS_KEY} if isinstance(r, dict) else r
                           for n, r in node[GROUP_KEY].items()
                           if not isinstance(r, dict) or seed in _seeds(r, seeds, f"{where}.{GROUP_KEY}.{n}")}
    return node


def _grid_lookup(params: Mapping[str, Any], dotted: str, source: str) -> Any:
    """``<sweep>.<dataset>_k<seed>[.rest]`` of a grid sweep (:func:`grid_node`); None when ``dotted`` is not one."""
    bases, sweeps = _grid(params, source)
    sweep, _, rest = dotted.partition(".")
    if sweep not in sweeps or not rest:
        return None
    name, _, rest = rest.partition(".")
    if name in bases:
        raise ValueError(f"{source}: {sweep}.{name} is the grid entry of {sweep}'s groups on the {name} bases; "
                         f"name one of them: {', '.join(expand_grid(params, source=source)[sweep])}")
    groups = expand_grid(params, source=source)[sweep]
    if name not in groups:
        raise ValueError(f"no key {dotted!r} in {source} ({sweep} is a grid sweep; its groups: "
                         f"{', '.join(groups)})")
    node: Any = grid_node(params, sweep, groups[name]["dataset"], groups[name]["seed"], source=source)
    for part in rest.split(".") if rest else ():
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"no key {dotted!r} in {source} (missing {part!r})")
        node = node[part]
    return node


def _lookup(params: Mapping[str, Any], dotted: str, source: str) -> Any:
    grid = _grid_lookup(params, dotted, source)
    if grid is not None:
        return grid
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"no key {dotted!r} in {source} (missing {part!r})")
        node = node[part]
    return node


def resolve_spec(params: Mapping[str, Any], ref: str | Mapping[str, Any], profile: str | None = None, *,
                 source: str = "params.yaml") -> dict[str, Any]:
    """The mapping ``ref`` of ``params`` with ``inherit:`` and the profile's section resolved.

    ``ref`` is a dotted key of ``params`` (``"fig3.ieht_95"``) or a mapping (a spec read from a file);
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
    run's own keys (usually method and method_args); a run's own keys win over the group's:

    >>> params = {"budget": {"dataset": "digits", "train": {"epochs": 30}},
    ...           "sweep": {"k0": {"inherit": "budget", "train": {"random_state": 0},
    ...                            "runs": {"svd_r4": {"method": "svd", "method_args": {"rank": 4}},
    ...                                     "ieht_e10": {"method": "ieht", "train": {"epochs": 10}}}}}}
    >>> resolve_group(params, "sweep.k0")["ieht_e10"]
    {'dataset': 'digits', 'train': {'epochs': 10, 'random_state': 0}, 'method': 'ieht'}

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
    spec = read_yaml(path)
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
