"""The parallel `dvc repro` wrapper (study/pipeline.py) on a throw-away DVC project."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from study import pipeline

DVC_YAML = """
stages:
  a:
    cmd: >-
      python -c "import time; open('a.t','w').write(repr(time.time())); time.sleep(1.5);
      open('a.t','a').write(' '+repr(time.time()))" && echo a > a.txt
    outs: [a.txt, a.t]
  b:
    cmd: >-
      python -c "import time; open('b.t','w').write(repr(time.time())); time.sleep(1.5);
      open('b.t','a').write(' '+repr(time.time()))" && echo b > b.txt
    outs: [b.txt, b.t]
  c:
    cmd: cat a.txt b.txt > c.txt
    deps: [a.txt, b.txt]
    outs: [c.txt]
  d:
    cmd: echo d > d.txt
    outs: [d.txt]
"""


@pytest.fixture()
def project(tmp_path, monkeypatch):
    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ.get("PATH", ""))
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _interval(path: Path) -> tuple[float, float]:
    start, end = path.read_text().split()
    return float(start), float(end)


def test_graph_priorities_and_skip(project):
    deps = pipeline.stage_graph(set())
    assert deps == {"a": [], "b": [], "c": ["a", "b"], "d": []}
    prio = pipeline._priorities(deps)
    assert prio["a"] > prio["d"] and prio["c"] == (1, 0)      # a feeds c: it goes first
    assert set(pipeline.stage_graph({"b"})) == {"a", "d"}       # b and everything that needs it
    with pytest.raises(ValueError, match="not stages"):
        pipeline.stage_graph({"nope"})


def test_reproduce_runs_independent_stages_together_and_leaves_dvc_clean(project):
    timings = pipeline.reproduce(jobs=2, skip=set())
    assert sorted(n for n, _ in timings) == ["a", "b", "c", "d"]
    assert (project / "c.txt").read_text() == "a\nb\n"
    (a0, a1), (b0, b1) = _interval(project / "a.t"), _interval(project / "b.t")
    assert max(a0, b0) < min(a1, b1), "a and b did not run at the same time"
    status = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True, check=True)
    assert status.stdout.strip() in ("{}", "")
    # nothing stale: a second call runs nothing
    assert pipeline.reproduce(jobs=2, skip=set()) == []
    # one changed input re-runs exactly that stage and what is downstream of it
    (project / "b.txt").write_text("changed\n")
    assert sorted(n for n, _ in pipeline.reproduce(jobs=2, skip=set())) == ["b", "c"]


def test_reproduce_sets_the_run_cache_for_its_stages_only(project, monkeypatch):
    """The stages see ``OPFACT_RUN_CACHE``; the caller's process does not keep it (a later run in that
    process would otherwise restore a cached finished run instead of running)."""
    seen = []
    monkeypatch.setattr(pipeline, "_repro_one",
                        lambda n: (seen.append(os.environ.get("OPFACT_RUN_CACHE")), (n, 0.0))[1])
    pipeline.reproduce(jobs=1, skip=set())
    assert seen and set(seen) == {"cache/runs"}
    assert "OPFACT_RUN_CACHE" not in os.environ
    monkeypatch.setenv("OPFACT_RUN_CACHE", "elsewhere")
    (project / "b.txt").write_text("changed again\n")
    seen.clear()
    pipeline.reproduce(jobs=1, skip=set())
    assert set(seen) == {"elsewhere"} and os.environ["OPFACT_RUN_CACHE"] == "elsewhere"   # a user's choice stands


def test_reproduce_validates_jobs(project):
    with pytest.raises(ValueError, match="jobs"):
        pipeline.reproduce(jobs=0)


EXTENDED_YAML = """
stages:
  long:
    meta: {set: extended}
    cmd: echo fresh > evidence.txt && echo w > weights.bin
    outs:
      - weights.bin
      - evidence.txt: {cache: false}
  report:
    cmd: cat evidence.txt > report.txt
    deps: [evidence.txt]
    outs: [report.txt]
"""


@pytest.fixture()
def extended_project(project):
    (project / "dvc.yaml").write_text(EXTENDED_YAML)
    (project / "evidence.txt").write_text("committed\n")     # the extended stage's committed output
    return project


def test_a_left_out_parameter_set_does_not_run_but_its_downstream_does(extended_project):
    p = extended_project
    sets: dict[str, str] = {}
    pipeline.stage_graph(set(), sets=sets)
    assert sets == {"long": "extended", "report": pipeline.CORE}
    timings = pipeline.reproduce(jobs=2, skip=set())
    assert [n for n, _ in timings] == ["report"]
    assert (p / "report.txt").read_text() == "committed\n"      # read the committed output
    assert not (p / "weights.bin").exists()                      # the extended stage never ran
    status = subprocess.run(["dvc", "status", "--json", "report"], capture_output=True, text=True, check=True)
    assert status.stdout.strip() in ("{}", "")
    # the whole study: the extended stage runs, and the report follows its new output
    timings = pipeline.reproduce(jobs=2, skip=set(), include={"extended"})
    assert [n for n, _ in timings] == ["long", "report"]
    assert (p / "report.txt").read_text() == "fresh\n"


def test_reproduce_refuses_an_unknown_parameter_set(extended_project):
    with pytest.raises(ValueError, match="parameter sets"):
        pipeline.reproduce(jobs=1, skip=set(), include={"nope"})


def test_a_stage_waits_for_a_busy_repository_lock_instead_of_failing(project):
    """Another DVC process holding the repository lock is not a failed stage: _repro_one retries until
    the lock is free (DVC's lock message must reach it, so the call cannot be --quiet)."""
    import threading

    from dvc.lock import make_lock

    lock = make_lock(project / ".dvc" / "tmp" / "lock", tmp_dir=str(project / ".dvc" / "tmp"),
                     hardlink_lock=False)
    lock.lock()
    # held well past one DVC start-up (≈ 1–2 s), so at least one try meets the busy lock; freed while
    # _repro_one is still retrying (20 tries, each a start-up plus ≥ 0.5 s of backoff)
    timer = threading.Timer(8.0, lock.unlock)
    timer.start()
    try:
        name, _ = pipeline._repro_one("d")
    finally:
        timer.join()
    assert name == "d" and (project / "d.txt").read_text() == "d\n"


def test_time_left_is_the_work_shared_by_the_workers_or_the_longest_chain():
    """a → b → c (10 s each) and d (40 s): one worker does 70 s of work; two cannot beat max(70/2, the 40 s
    of d or the 30 s chain); with many workers the longest chain (d) bounds it; done stages are not counted."""
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    costs = {"a": 10.0, "b": 10.0, "c": 10.0, "d": 40.0}
    everything = set(deps)
    assert pipeline.time_left_s(everything, deps, costs, 1) == 70.0
    assert pipeline.time_left_s(everything, deps, costs, 2) == 40.0
    assert pipeline.time_left_s(everything - {"d"}, deps, costs, 8) == 30.0    # the chain a → b → c
    assert pipeline.time_left_s({"b", "c"}, deps, costs, 8) == 20.0             # a is done
    assert pipeline.time_left_s(set(), deps, costs, 2) == 0.0


def test_write_grid_writes_the_expanded_groups_once_and_only_for_a_grid(tmp_path):
    import yaml

    params = tmp_path / "params.yaml"
    out = tmp_path / "grid.yaml"
    params.write_text("profile: small\n")
    assert not pipeline.write_grid(params, out) and not out.exists()          # no grid: nothing to write
    params.write_text("grid: {bases: {digits: [0, 2]}, sweeps: [s]}\ns: {digits: {runs: {a: {method: svd}}}}\n")
    assert pipeline.write_grid(params, out)
    assert yaml.safe_load(out.read_text()) == {"groups": {"s": {
        "digits_k0": {"sweep": "s", "dataset": "digits", "seed": 0},
        "digits_k2": {"sweep": "s", "dataset": "digits", "seed": 2}}}}
    before = out.stat().st_mtime_ns
    assert not pipeline.write_grid(params, out) and out.stat().st_mtime_ns == before   # unchanged: not rewritten

