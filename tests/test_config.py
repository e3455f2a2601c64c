"""params.yaml access: profiles, stage sections, and run specs with `inherit:` (lowrank/config.py, cli.py)."""
from __future__ import annotations

import pytest
import yaml

from lowrank.cli import _load_spec
from lowrank.config import load_params, stage_params

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
}


def _write(tmp_path, profile):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**PARAMS, "profile": profile}))
    return str(path)


def test_small_profile_inherits_and_child_wins(tmp_path):
    spec = _load_spec("params:sweep.a", _write(tmp_path, "small"))
    assert spec == {"dataset": "digits", "train": {"epochs": 10, "lr": 0.001}, "method": "svd",
                    "method_args": {"rank": 4}}


def test_paper_profile_applies_each_level_in_order(tmp_path):
    path = _write(tmp_path, "paper")
    spec = _load_spec("params:sweep.a", path)
    # the base's paper section switches dataset and lr; the run's own epochs (10) are not undone by it;
    # the run's paper section wins over everything
    assert spec == {"dataset": "cifar10", "train": {"epochs": 10, "lr": 0.0001}, "method": "svd",
                    "method_args": {"rank": 32}}
    assert _load_spec("params:sweep.b", path)["train"] == {"epochs": 250, "lr": 0.0001}
    assert stage_params(load_params(path), "stage") == {"n": 2}


def test_bad_specs_are_refused(tmp_path):
    path = _write(tmp_path, "small")
    with pytest.raises(ValueError, match="cycle"):
        _load_spec("params:sweep.loop", path)
    with pytest.raises(ValueError, match="no key 'sweep.zzz'"):
        _load_spec("params:sweep.zzz", path)
    with pytest.raises(ValueError, match="neither an existing"):
        _load_spec(str(tmp_path / "missing.yaml"), path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, "profile": "huge"}))
    with pytest.raises(ValueError, match="profile='huge'"):
        load_params(bad)


def test_the_project_params_resolve_under_both_profiles(tmp_path):
    """Every run spec of the real params.yaml resolves and validates under both profiles."""
    from lowrank.experiment import SPEC_DEFAULTS, validate_spec

    with open("params.yaml", encoding="utf-8") as fh:
        real = yaml.safe_load(fh)
    sweeps = ["pretrain", "table1", "table1_text", "fig2", "fig3", "fig4", "fig5", "budget", "repeats"]
    for profile in ("small", "paper"):
        path = tmp_path / f"params_{profile}.yaml"
        path.write_text(yaml.safe_dump({**real, "profile": profile}))
        for sweep in sweeps:
            for name in real[sweep]:
                spec = _load_spec(f"params:{sweep}.{name}", str(path))
                assert set(spec) <= set(SPEC_DEFAULTS), (profile, sweep, name, set(spec) - set(SPEC_DEFAULTS))
                validate_spec({**spec, "base": None})   # the base file exists only after its stage ran


def test_a_spec_file_with_a_profile_section_follows_the_params_profile(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({"inherit": "base", "method": "svd", "paper": {"method": "fwsvd"}}))
    assert _load_spec(str(spec), _write(tmp_path, "paper"))["method"] == "fwsvd"
    assert _load_spec(str(spec), _write(tmp_path, "small"))["method"] == "svd"
    alone = tmp_path / "alone.yaml"
    alone.write_text(yaml.safe_dump({"method": "svd", "paper": {"method": "fwsvd"}}))
    assert _load_spec(str(alone), _write(tmp_path, "paper"))["method"] == "fwsvd"
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"method": "svd"}))
    assert _load_spec(str(plain), str(tmp_path / "no-params.yaml")) == {"method": "svd"}
