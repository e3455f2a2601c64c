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


def stage_refs(stages: dict[str, dict[str, list[str]]]) -> list[str]:
    """``run:<key>`` / ``sweep:<key>`` for every params key a stage's command names, then ``section:<key>``."""
    refs = sorted({f"{m.group(2) or 'run'}:{m.group(3)}" for s in stages.values() for c in s["cmd"]
                   for m in _REF.finditer(c)})
    return refs + [f"section:{key}" for key in SECTIONS]


def resolved_specs(refs: list[str], params_path: Path = ROOT / "params.yaml") -> dict:
    """Profile → ref (:func:`stage_refs`) → the resolved spec (a group: a list of ``[run name, spec]`` in run
    order), through lowrank.config's public functions."""
    params = load_params(params_path)
    out: dict[str, dict] = {}
    for profile in PROFILES:
        specs: dict = {}
        for ref in refs:
            kind, key = ref.split(":", 1)
            if kind == "sweep":
                specs[ref] = [[n, s] for n, s in resolve_group(params, key, profile).items()]
            else:
                specs[ref] = resolve_spec(params, key, profile)
        out[profile] = specs
    return json.loads(json.dumps(out))   # JSON round trip: compared as the snapshot stores them


def snapshot(root: Path = ROOT) -> dict:
    stages = dvc_stages(root)
    return {"stages": stages, "specs": resolved_specs(stage_refs(stages), root / "params.yaml")}


@pytest.fixture(scope="module")
def before() -> dict:
    return json.loads(SNAPSHOT.read_text())


def test_every_run_and_group_resolves_as_before(before: dict) -> None:
    """The refs the stages named before, resolved from today's params.yaml (the stages' refs: the next test)."""
    now = resolved_specs(list(before["specs"]["small"]))
    for profile in PROFILES:
        old, new = before["specs"][profile], now[profile]
        for key in old:
            if key.startswith("sweep:"):
                # the run names and their order first (a group runs them in this order), then each spec
                assert [n for n, _ in new[key]] == [n for n, _ in old[key]], f"{profile} {key}: run names"
                for (name, a), (_, b) in zip(new[key], old[key]):
                    assert a == b, f"{profile} {key}.{name}"
            else:
                assert new[key] == old[key], f"{profile} {key}"


def test_every_stage_has_its_command_and_outputs_as_before(before: dict) -> None:
    now = dvc_stages()
    assert sorted(now) == sorted(before["stages"])
    for name, old in before["stages"].items():
        assert now[name] == old, name
    assert stage_refs(now) == list(before["specs"]["small"])


def test_the_committed_grid_file_is_generated_from_params() -> None:
    """dvc.yaml iterates grid.yaml: it must be what params.yaml's grid expands to today."""
    from study.pipeline import GRID_FILE, grid_text

    assert (ROOT / GRID_FILE).read_text() == grid_text(ROOT / "params.yaml"), \
        f"{GRID_FILE} is stale: python -m study.pipeline --write-grid"


def test_each_group_stage_reads_its_own_datasets_budget_only() -> None:
    """Editing one dataset's budget re-runs that dataset's groups only (DVC's params of each stage)."""
    from dvc.repo import Repo

    from lowrank.config import expand_grid

    grid = expand_grid(load_params(ROOT / "params.yaml"))
    with Repo(str(ROOT)) as repo:
        params = {s.addressing: {k for d in s.deps if d.__class__.__name__ == "ParamsDependency" for k in d.params}
                  for s in repo.index.stages}
    checked = 0
    for sweep, groups in grid.items():
        for name, g in groups.items():
            keys = params[f"{sweep}@{name}"]
            other = {"digits": "mnist1d", "mnist1d": "digits"}[g["dataset"]]
            assert f"{sweep}.{g['dataset']}" in keys and not any(other in k for k in keys), (sweep, name, keys)
            checked += 1
    assert checked >= 40


def test_the_paper_values_the_docs_name_are_the_params_ones() -> None:
    """docs/pipeline.md names what a run becomes under the paper profile; it must say what params.yaml says."""
    import re

    text = (ROOT / "docs" / "pipeline.md").read_text()
    rank = re.search(r"`fig2\.digits`'s `svd_r4` is rank (\d+)", text)
    cut = re.search(r"sweep's `ieht_80` is β = ([\d.]+) cut every (\d+) epochs", text)
    assert rank and cut, "docs/pipeline.md no longer names the examples this test checks"
    params = load_params(ROOT / "params.yaml")
    assert resolve_group(params, "fig2.digits_k0", "paper")["svd_r4"]["method_args"]["rank"] == int(rank.group(1))
    ieht = resolve_group(params, "repeats.digits_k0", "paper")["ieht_80"]["method_args"]
    assert (ieht["oialr_threshold"], ieht["oialr_frequency"], ieht["oialr_type"]) == \
        (float(cut.group(1)), int(cut.group(2)), "epoch")


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
