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
    cmd: python -c "import time; open('a.t','w').write(repr(time.time())); time.sleep(1.5); open('a.t','a').write(' '+repr(time.time()))" && echo a > a.txt
    outs: [a.txt, a.t]
  b:
    cmd: python -c "import time; open('b.t','w').write(repr(time.time())); time.sleep(1.5); open('b.t','a').write(' '+repr(time.time()))" && echo b > b.txt
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


def test_reproduce_validates_jobs(project):
    with pytest.raises(ValueError, match="jobs"):
        pipeline.reproduce(jobs=0)
