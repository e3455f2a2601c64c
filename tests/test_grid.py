"""params.yaml's grid and dvc.yaml's stages resolve to what they resolved to before the grid was introduced.

``tests/data/grid_snapshot.json`` holds, for both profiles, every run spec and every group that a stage of
dvc.yaml names (``python -m lowrank run|sweep params:<key>``, ``python -m tenbcd params:<key>``) and every
stage section the CLI reads, resolved through the library's public path (:mod:`lowrank.config`), and each
DVC stage's command and outputs as DVC renders them. It was written from the hand-expanded params.yaml (a
stub per seed) before the grid replaced it; the grid must give the same run names (in the same order), the
same keys and the same values, and the stages the same commands and outputs (dvc.lock and the committed
evidence name them). A change that alters a spec on purpose rewrites the snapshot
(``python -m tests.test_grid --write``) and says so in its commit.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from lowrank.config import PROFILES, load_params, resolve_group, resolve_spec

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "data" / "grid_snapshot.json"
#: sections read by `python -m lowrank <command>` or lowrank.cluster outside any run stage's `params:<key>`
SECTIONS = ("corpus", "projection_table", "example_hf_trainer", "resources")
_REF = re.compile(r"python -m (lowrank (run|sweep)|tenbcd) params:(\S+)")


def dvc_stages(root: Path = ROOT) -> dict[str, dict[str, list[str]]]:
    """Stage name → its commands and output paths, as DVC renders dvc.yaml (``foreach`` expanded)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        out = {}
        for stage in repo.index.stages:
            cmd = stage.cmd
            out[stage.addressing] = {"cmd": [cmd] if isinstance(cmd, str) else list(cmd),
                                     "outs": sorted(str(o.def_path) for o in stage.outs)}
    return dict(sorted(out.items()))


def resolved_specs(stages: dict[str, dict[str, list[str]]], params_path: Path = ROOT / "params.yaml") -> dict:
    """Profile → ``run:<key>`` / ``sweep:<key>`` / ``section:<key>`` → the resolved spec (a group: a list of
    ``[run name, spec]`` in run order)."""
    params = load_params(params_path)
    refs = sorted({(m.group(2) or "run", m.group(3)) for s in stages.values() for c in s["cmd"]
                   for m in _REF.finditer(c)})
    out: dict[str, dict] = {}
    for profile in PROFILES:
        specs: dict = {}
        for kind, key in refs:
            if kind == "sweep":
                specs[f"sweep:{key}"] = [[n, s] for n, s in resolve_group(params, key, profile).items()]
            else:
                specs[f"run:{key}"] = resolve_spec(params, key, profile)
        for key in SECTIONS:
            specs[f"section:{key}"] = resolve_spec(params, key, profile)
        out[profile] = specs
    return out


def snapshot(root: Path = ROOT) -> dict:
    stages = dvc_stages(root)
    # JSON round trip: tuples and the like compare as the snapshot stores them
    return json.loads(json.dumps({"stages": stages, "specs": resolved_specs(stages, root / "params.yaml")}))


@pytest.fixture(scope="module")
def now() -> dict:
    return snapshot()


@pytest.fixture(scope="module")
def before() -> dict:
    return json.loads(SNAPSHOT.read_text())


def test_every_run_and_group_resolves_as_before(now: dict, before: dict) -> None:
    for profile in PROFILES:
        old, new = before["specs"][profile], now["specs"][profile]
        assert sorted(new) == sorted(old), f"{profile}: the resolved refs differ"
        for key in old:
            if key.startswith("sweep:"):
                # the run names and their order first (a group runs them in this order), then each spec
                assert [n for n, _ in new[key]] == [n for n, _ in old[key]], f"{profile} {key}: run names"
                for (name, a), (_, b) in zip(new[key], old[key]):
                    assert a == b, f"{profile} {key}.{name}"
            else:
                assert new[key] == old[key], f"{profile} {key}"


def test_every_stage_has_its_command_and_outputs_as_before(now: dict, before: dict) -> None:
    assert sorted(now["stages"]) == sorted(before["stages"])
    for name, old in before["stages"].items():
        assert now["stages"][name] == old, name


def test_the_snapshot_covers_every_kind_of_run() -> None:
    """Not vacuous: the snapshot holds the per-seed groups of both datasets, single runs and sections."""
    specs = json.loads(SNAPSHOT.read_text())["specs"]["small"]
    for key in ("sweep:repeats.digits_k2", "sweep:repeats.mnist1d_k0", "sweep:fig2.digits_k1",
                "run:pretrain.mnist1d_k1", "run:fig3.ieht_95", "run:tenbcd.digits", "section:resources"):
        assert key in specs, key
    assert len([k for k in specs if k.startswith("sweep:")]) >= 30


def _lines(snap: dict) -> str:
    """The snapshot as JSON with one line per stage and per run (a diff names what changed)."""
    def one(v) -> str:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def block(items: list[str], indent: str) -> str:
        return ("\n" + indent) + (",\n" + indent).join(items)

    stages = block([f"{one(k)}:{one(v)}" for k, v in snap["stages"].items()], " ")
    profiles = []
    for profile, specs in snap["specs"].items():
        refs = []
        for key, spec in specs.items():
            if isinstance(spec, list):
                refs.append(f"{one(key)}:[" + block([one(r) for r in spec], "   ") + "]")
            else:
                refs.append(f"{one(key)}:{one(spec)}")
        profiles.append(f"{one(profile)}:{{" + block(refs, "  ") + "}")
    return '{"stages":{' + stages + '},\n"specs":{' + block(profiles, " ") + "}}\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_grid --write   (rewrites tests/data/grid_snapshot.json)")
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(_lines(snapshot()))
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}")
