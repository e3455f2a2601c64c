"""params.yaml access: profiles, stage sections, and run specs with `inherit:` (lowrank/config.py)."""
from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from lowrank.config import (BASE_PATHS, GROUP_KEY, PROFILES, expand_grid, grid_node, load_group, load_params,
                            load_spec, merge, resolve_group, resolve_spec, stage_params)

PARAMS = {
    "profile": "small",
    "base": {"dataset": "digits", "train": {"epochs": 30, "lr": 0.001},
             "paper": {"dataset": "cifar10", "train": {"epochs": 250, "lr": 0.0001}}},
    "derived": {"inherit": "base", "train": {"epochs": 10}},
    "sweep": {
        "a": {"inherit": "derived", "method": "svd", "method_args": {"rank": 4},
              "paper": {"method_args": {"rank": 32}}},
        "b": {"inherit": "base", "method": "ieht"},
        "loop": {"inherit": "sweep.loop"},
    },
    "stage": {"n": 1, "paper": {"n": 2}},
    "groups": {
        "k1": {"inherit": "derived", "train": {"random_state": 1}, "paper": {"train": {"lr": 0.01}},
               "runs": {"a": {"method": "svd", "method_args": {"rank": 4}, "paper": {"method_args": {"rank": 32}}},
                        "b": {"inherit": "sweep.b", "train": {"epochs": 5}}}},
        "empty": {"inherit": "base", "runs": {}},
        "nested": {"runs": {"a": {"runs": {"b": {}}}}},
        "slash": {"runs": {"a/b": {}}},
    },
}


def _write(tmp_path, profile):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**PARAMS, "profile": profile}))
    return str(path)


def test_small_profile_inherits_and_child_wins(tmp_path):
    spec = load_spec("params:sweep.a", _write(tmp_path, "small"))
    assert spec == {"dataset": "digits", "train": {"epochs": 10, "lr": 0.001}, "method": "svd",
                    "method_args": {"rank": 4}}


def test_paper_profile_applies_each_level_in_order(tmp_path):
    path = _write(tmp_path, "paper")
    spec = load_spec("params:sweep.a", path)
    # the base's paper section switches dataset and lr; the run's own epochs (10) are not undone by it;
    # the run's paper section wins over everything
    assert spec == {"dataset": "cifar10", "train": {"epochs": 10, "lr": 0.0001}, "method": "svd",
                    "method_args": {"rank": 32}}
    assert load_spec("params:sweep.b", path)["train"] == {"epochs": 250, "lr": 0.0001}
    assert stage_params(load_params(path), "stage") == {"n": 2}


def test_bad_specs_are_refused(tmp_path):
    path = _write(tmp_path, "small")
    with pytest.raises(ValueError, match="cycle"):
        load_spec("params:sweep.loop", path)
    with pytest.raises(ValueError, match="no key 'sweep.zzz'"):
        load_spec("params:sweep.zzz", path)
    with pytest.raises(ValueError, match="neither an existing"):
        load_spec(str(tmp_path / "missing.yaml"), path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, "profile": "huge"}))
    with pytest.raises(ValueError, match="profile='huge'"):
        load_params(bad)


def test_a_group_shares_its_keys_and_each_run_keeps_its_own(tmp_path):
    """resolve_group: the resolved group (inherit, profile section) under each run's own resolved keys."""
    small = load_group("params:groups.k1", _write(tmp_path, "small"))
    assert list(small) == ["a", "b"]
    assert small["a"] == {"dataset": "digits", "train": {"epochs": 10, "lr": 0.001, "random_state": 1},
                          "method": "svd", "method_args": {"rank": 4}}
    # run b inherits the whole of `base` (epochs 30), but its own epochs win over both; the group's seed stays
    assert small["b"] == {"dataset": "digits", "train": {"epochs": 5, "lr": 0.001, "random_state": 1},
                          "method": "ieht"}
    paper = resolve_group(PARAMS, "groups.k1", "paper")
    assert paper["a"]["method_args"] == {"rank": 32} and paper["a"]["dataset"] == "cifar10"
    # the group's paper lr (0.01) is under run b's inherited base, whose own paper section sets 0.0001
    assert paper["a"]["train"] == {"epochs": 10, "lr": 0.01, "random_state": 1}
    assert paper["b"]["train"] == {"epochs": 5, "lr": 0.0001, "random_state": 1}
    for key, match in (("groups.empty", f"{GROUP_KEY!r} must be a non-empty"), ("groups.nested", "do not nest"),
                       ("groups.slash", "plain folder name"), ("sweep.a", f"{GROUP_KEY!r} must be")):
        with pytest.raises(ValueError, match=match):
            resolve_group(PARAMS, key)


RUN_SWEEPS = ["pretrain", "table1", "table1_text", "fig2", "fig3", "fig4", "fig5", "budget", "repeats", "protocol",
              "regime"]


def _entries(params, sweep):
    """(key, node) of every entry of ``sweep``; a grid sweep's groups as lowrank.config expands them."""
    grid = expand_grid(params)
    if sweep in grid:
        return [(k, grid_node(params, sweep, g["dataset"], g["seed"])) for k, g in grid[sweep].items()]
    return list(params[sweep].items())


def _runs_of(params, sweep, profile):
    """(name, resolved spec, the run's own node, the mapping it merges onto) of every run of ``sweep``: a
    group's runs (``runs:``) as `python -m lowrank sweep` resolves them, else the sweep's entries."""
    for key, node in _entries(params, sweep):
        if GROUP_KEY in node:
            shared = resolve_spec(params, {k: v for k, v in node.items() if k != GROUP_KEY}, profile)
            for name, spec in resolve_group(params, f"{sweep}.{key}", profile).items():
                yield f"{key}/{name}", spec, node[GROUP_KEY][name], shared
        else:
            yield key, resolve_spec(params, f"{sweep}.{key}", profile), node, None


@pytest.fixture(scope="module")
def real_params():
    return load_params("params.yaml")


def test_the_project_params_resolve_under_both_profiles(real_params, tmp_path):
    """Every run spec of the real params.yaml resolves and validates under both profiles."""
    from lowrank.experiment import SPEC_DEFAULTS, validate_spec

    for profile in PROFILES:
        path = tmp_path / f"params_{profile}.yaml"
        path.write_text(yaml.safe_dump({**real_params, "profile": profile}))
        for sweep in RUN_SWEEPS:
            for name, spec, _, _ in _runs_of(real_params, sweep, profile):
                if "/" in name:   # a group's run: what `python -m lowrank sweep` runs
                    assert spec == load_group(f"params:{sweep}.{name.split('/')[0]}", str(path))[name.split("/")[1]]
                else:             # what `python -m lowrank run` runs
                    assert spec == load_spec(f"params:{sweep}.{name}", str(path))
                assert set(spec) <= set(SPEC_DEFAULTS), (profile, sweep, name, set(spec) - set(SPEC_DEFAULTS))
                validate_spec({**spec, "base": None})   # the base file exists only after its stage ran


@pytest.mark.parametrize("profile, name", [("small", "mnist1d"), ("small", "digits"), ("paper", "mnist1d"),
                                           ("paper", "digits")])
def test_the_project_tenbcd_specs_validate(real_params, profile, name):
    from tenbcd import validate_tenbcd_experiment

    validate_tenbcd_experiment(resolve_spec(real_params, f"tenbcd.{name}", profile))


def _leaves(node, prefix=()):
    """(path, value) of every non-mapping value; an empty mapping has no leaves (it merges as nothing)."""
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _at(node, path):
    for k in path:
        node = node[k]
    return node


def _sets(node, path) -> bool:
    """Whether ``node`` sets ``path``: it has the path, or a non-mapping value at a prefix of it."""
    for k in path:
        if k not in node:
            return False
        node = node[k]
        if not isinstance(node, dict):
            return True
    return True


def test_the_project_runs_keep_their_own_settings(real_params):
    """Precedence on the real params.yaml: a run's profile section wins, then the run's own keys,
    whatever its base (and its base's profile section) say; what the run does not set comes from its base."""
    for profile in PROFILES:
        for sweep in RUN_SWEEPS + ["tenbcd"]:
            for name, spec, node, group in _runs_of(real_params, sweep, profile):
                where = (profile, sweep, name)
                own = {k: v for k, v in node.items() if k not in ("inherit", *PROFILES)}
                section = node.get(profile) or {}
                for path, value in _leaves(section):
                    assert _at(spec, path) == value, (where, path)
                for path, value in _leaves(own):
                    if not _sets(section, path):
                        assert _at(spec, path) == value, (where, path)
                # what the run does not set comes from its base: its own `inherit`, then (in a group) the group
                parents = ([resolve_spec(real_params, node["inherit"], profile)] if "inherit" in node else []) \
                    + ([group] if group is not None else [])
                mine = merge(own, section)
                for parent in parents:
                    for path, value in _leaves(parent):
                        if not _sets(mine, path):
                            assert _at(spec, path) == value, (where, path)
                    mine = merge(parent, mine)
                assert "inherit" not in spec and GROUP_KEY not in spec and not set(PROFILES) & set(spec)


GRID = {
    "profile": "small",
    "budget": {"train": {"epochs": 30}, "paper": {"train": {"epochs": 250}}},
    "grid": {"bases": {"digits": [0, 1, 2], "mnist1d": [3, 4]}, "sweeps": ["fig", "pre", "one"]},
    "fig": {"digits": {"inherit": "budget", "runs": {"a": {"method": "svd"}, "b": {"method": "ieht", "seeds": [0, 2]}}},
            "mnist1d": {"inherit": "budget", "train": {"epochs": 5}, "runs": {"a": {"method": "svd"}}}},
    "pre": {"mnist1d": {"method": "dense", "train": {"epochs": 7, "random_state": 9}}},
    "one": {"digits": {"seeds": [1], "runs": {"a": {"method": "svd"}}}},
}


def test_the_grid_expands_each_dataset_entry_into_one_group_per_seed():
    """Group ``<dataset>_k<seed>``: the entry, its seed as train.random_state, the base of that seed under each
    profile, and only the runs whose seeds include it; an entry's ``seeds`` restricts it."""
    assert {s: list(g) for s, g in expand_grid(GRID).items()} == {
        "fig": ["digits_k0", "digits_k1", "digits_k2", "mnist1d_k3", "mnist1d_k4"], "pre": ["mnist1d_k3", "mnist1d_k4"],
        "one": ["digits_k1"]}
    assert expand_grid(GRID)["fig"]["mnist1d_k4"] == {"sweep": "fig", "dataset": "mnist1d", "seed": 4}
    k2 = resolve_group(GRID, "fig.digits_k2")
    assert k2 == {"a": {"train": {"epochs": 30, "random_state": 2}, "base": "bases/digits_k2.safetensors",
                        "method": "svd"},
                  "b": {"train": {"epochs": 30, "random_state": 2}, "base": "bases/digits_k2.safetensors",
                        "method": "ieht"}}
    assert list(resolve_group(GRID, "fig.digits_k1")) == ["a"]          # b runs on seeds 0 and 2 only
    paper = resolve_group(GRID, "fig.mnist1d_k3", "paper")["a"]
    assert paper["base"] == BASE_PATHS["paper"].format(name="mnist1d_k3") == "runs/pretrain/mnist1d_k3/model.pt"
    assert paper["train"] == {"epochs": 5, "random_state": 3}          # the entry's own epochs beat the budget's paper
    # a single run per base (pre-training) takes the seed and no base; the seed wins over the entry's own
    assert resolve_spec(GRID, "pre.mnist1d_k4") == {"method": "dense", "train": {"epochs": 7, "random_state": 4}}
    assert grid_node(GRID, "one", "digits", 1)["train"] == {"random_state": 1}


@pytest.mark.parametrize("edit, key, match", [
    ({}, "fig.digits", r"fig.digits is the grid entry .* name one of them: digits_k0, digits_k1"),
    ({}, "fig.digits_k3", r"no key 'fig.digits_k3' .*its groups: digits_k0"),
    ({}, "one.digits_k0", r"no key 'one.digits_k0'"),
    ({"grid": {"bases": {"digits": [0, 0]}, "sweeps": ["fig"]}}, "fig.digits_k0", "distinct seeds"),
    ({"grid": {"bases": {"digits": [0]}}}, "fig.digits_k0", "keys bases .* and sweeps"),
    ({"grid": {"bases": {"digits": [0]}, "sweeps": ["nope"]}}, "fig.digits_k0", r"sweeps=\['nope'\]"),
    ({"one": {"digits": {"seeds": [5], "runs": {}}}}, "one.digits_k1", r"seeds=\[5\]; allowed: .*\[0, 1, 2\]"),
    ({"fig": {"cifar": {}}}, "fig.cifar_k0",
     r"its keys are datasets of grid.bases \(digits, mnist1d\), not \['cifar'\]"),
])
def test_bad_grids_are_refused_with_the_key(edit, key, match):
    with pytest.raises(ValueError, match=match):
        resolve_group({**GRID, **edit}, key)


_keys = st.sampled_from("abcd")
_trees = st.recursive(st.integers(0, 3) | st.none() | st.lists(st.integers(0, 3), max_size=2),
                      lambda children: st.dictionaries(_keys, children, max_size=3), max_leaves=8)
_maps = st.dictionaries(_keys, _trees, max_size=4)


@given(_maps, _maps)
def test_merge_rule(base, over):
    """over's leaves win; base's keys that over lacks are kept; mappings merge key by key, anything
    else replaces whole; the inputs are not modified; an empty side is the identity."""
    import copy

    base0, over0 = copy.deepcopy(base), copy.deepcopy(over)
    out = merge(base, over)
    assert base == base0 and over == over0
    assert merge(base, {}) == base and merge({}, over) == over
    assert set(out) == set(base) | set(over)
    for k in out:
        if k not in over:
            assert out[k] == base[k]
        elif isinstance(over[k], dict) and isinstance(base.get(k), dict):
            assert out[k] == merge(base[k], over[k])
        else:
            assert out[k] == over[k]


def test_resolve_spec_takes_a_key_or_a_mapping_and_any_profile():
    params = {**PARAMS, "profile": "small"}
    assert resolve_spec(params, "sweep.a", "paper") == resolve_spec({**PARAMS, "profile": "paper"}, "sweep.a")
    assert resolve_spec(params, PARAMS["sweep"]["a"]) == resolve_spec(params, "sweep.a")
    assert resolve_spec({}, {"method": "svd", "paper": {"method": "fwsvd"}}) == {"method": "svd"}
    with pytest.raises(ValueError, match="profile='huge'"):
        resolve_spec(params, "sweep.a", "huge")
    with pytest.raises(ValueError, match="must hold a mapping"):
        resolve_spec(params, "stage.n")


def test_a_spec_file_with_a_profile_section_follows_the_params_profile(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({"inherit": "base", "method": "svd", "paper": {"method": "fwsvd"}}))
    assert load_spec(str(spec), _write(tmp_path, "paper"))["method"] == "fwsvd"
    assert load_spec(str(spec), _write(tmp_path, "small"))["method"] == "svd"
    alone = tmp_path / "alone.yaml"
    alone.write_text(yaml.safe_dump({"method": "svd", "paper": {"method": "fwsvd"}}))
    assert load_spec(str(alone), _write(tmp_path, "paper"))["method"] == "fwsvd"
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"method": "svd"}))
    assert load_spec(str(plain), str(tmp_path / "no-params.yaml")) == {"method": "svd"}
