"""bench/gpu_check.py, the one command for a GPU machine, checked here by its CPU dry run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.gpu_check", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_dry_run_runs_the_cuda_tests_and_a_benchmark_on_the_cpu(tmp_path):
    # every cuda test but DDP (tests/test_train.py runs DDP on the CPU already)
    r = _run("--dry-run", "--out", str(tmp_path), "--only", "tests,tt", "-k", "not ddp")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["environment"]["requested_device"] == "cpu"
    assert "torch" in report["environment"] and report["environment"]["packages"]["timm"]
    tests, tt = report["steps"]
    # the cuda tests ran (on the CPU), none skipped: the marker and the override work
    assert tests["rc"] == 0 and tests["counts"]["passed"] == tests["counts"]["tests"] >= 10
    assert tests["counts"]["skipped"] == tests["counts"]["failures"] == tests["counts"]["errors"] == 0
    assert tt["rc"] == 0 and "--device cpu" in tt["command"]
    assert json.loads((tmp_path / "tt.json").read_text())["machine"]
    assert (tmp_path / "SUMMARY.md").read_text().startswith("# Benchmarks")
    assert not list(tmp_path.glob(".gpu_check.*"))     # written through a temp file, renamed


def test_no_step_starts_after_the_time_limit(tmp_path):
    # the environment probe alone takes longer than 1 ms: nothing runs, and that is a failure, not a pass
    r = _run("--dry-run", "--out", str(tmp_path), "--only", "tests,tt", "--time-limit", "0.001")
    assert r.returncode == 1
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert [s["rc"] for s in steps] == ["not run (time limit)"] * 2
    assert not (tmp_path / "tt.json").exists()


def test_without_a_gpu_the_real_run_measures_nothing_and_says_so(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the real run would measure it")
    r = _run("--out", str(tmp_path), "--only", "tt")
    assert r.returncode == 1 and "no CUDA device" in r.stdout
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert steps == [{"step": "tt", "rc": "not run (no CUDA device)"}]


@pytest.mark.parametrize("argv,match", [
    (["--only", "tests,warp"], r"--only='tests,warp': unknown steps \['warp'\]; allowed: \['tests', 'layer'"),
    (["--time-limit", "0"], "--time-limit=0.0: must be > 0 seconds"),
    (["--dry-run"], "--dry-run needs --out"),
])
def test_bad_arguments_are_refused_before_any_work(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        gpu_check.parse_args(argv)
    assert e.value.code == 2
    import re
    assert re.search(match, capsys.readouterr().err)


def test_junit_counts_read_failures_and_skips(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1">'
                   '<testcase classname="tests.test_cuda" name="a"/>'
                   '<testcase classname="tests.test_cuda" name="b"><failure message="boom"/></testcase>'
                   '<testcase classname="tests.test_cuda" name="c"><skipped message="no CUDA"/></testcase>'
                   '<testcase classname="tests.test_cuda" name="d"/></testsuite></testsuites>')
    c = gpu_check.junit_counts(xml)
    assert (c["passed"], c["failures"], c["skipped"]) == (2, 1, 1)
    assert [p["kind"] for p in c["problems"]] == ["failure", "skipped"] and c["problems"][0]["message"] == "boom"
