"""The pipeline and the sweeps as jobs (lowrank/cluster.py, study/executors.py): through submitit's local
executor in the ordinary suite, and against a real SLURM (tests marked ``slurm``; scripts/slurm-local.sh
starts a one-node cluster) where one answers. Each compares its results with the local executor's."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lowrank.cluster import JobFailed, resources_for
from study import pipeline

ROOT = Path(__file__).resolve().parents[1]

# three dependent stages; each appends the SLURM job it ran in (none locally) to jobs.log, which DVC does not track
DVC_YAML = """
stages:
  a:
    cmd: {log} a >> jobs.log && python -c "print(sum(range(10)))" > a.txt
    outs: [a.txt]
  b:
    cmd: {log} b >> jobs.log && python -c "import sys; print(2 * int(open('a.txt').read()))" > b.txt
    deps: [a.txt]
    outs: [b.txt]
  c:
    cmd: {log} c >> jobs.log && cat a.txt b.txt > c.txt
    deps: [b.txt]
    outs: [c.txt]
""".replace("{log}", "python -c \"import os, sys; print(sys.argv[1], os.environ.get('SLURM_JOB_ID', 'none'))\"")
PARAMS = {"profile": "small",
          "resources": {"default": {"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 5},
                        "stages": {"b": {"mem_gb": 0.5}}, "paper": {"default": {"gpus_per_node": 1}}}}


def _slurm_absent() -> str | None:
    """Why the `slurm` tests cannot run here, or None."""
    if shutil.which("sbatch") is None:
        return "SLURM is absent (no sbatch; scripts/slurm-local.sh starts a one-node cluster)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"no SLURM controller answers `scontrol ping` ({(ping.stdout + ping.stderr).strip()[:120]})"
    return None


def _project(path: Path, dvc_yaml: str = DVC_YAML) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=path, check=True)
    (path / "dvc.yaml").write_text(dvc_yaml)
    (path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return path


@pytest.fixture()
def env(monkeypatch):
    """`dvc` of this interpreter on PATH; a job imports this checkout's packages (it runs in the project)."""
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _reproduce(path: Path, monkeypatch, executor: str) -> dict:
    monkeypatch.chdir(path)
    timings = pipeline.reproduce(jobs=2, skip=set(), executor=executor, log_dir=path / "logs")
    assert sorted(n for n, _ in timings) == ["a", "b", "c"]
    assert pipeline.stale_stages(["a", "b", "c"]) == set()        # DVC recorded every stage
    lock = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    return {n: lock[n]["outs"] for n in lock}


def _jobs(path: Path) -> dict[str, str]:
    return dict(line.split() for line in (path / "jobs.log").read_text().splitlines())


def test_resources_default_then_group_then_stage_and_the_profile_wins():
    params = {"profile": "small", "resources": {
        "default": {"cpus_per_task": 1, "mem_gb": 4, "timeout_min": 60},
        "stages": {"fig2": {"mem_gb": 8}, "fig2@digits_k0": {"timeout_min": 90}},
        "paper": {"default": {"gpus_per_node": 1, "mem_gb": 32}, "stages": {"fig2": {"partition": "gpu"}}}}}
    assert resources_for(params, "fig2@digits_k0") == {"cpus_per_task": 1, "mem_gb": 8.0, "timeout_min": 90}
    assert resources_for(params, "report") == {"cpus_per_task": 1, "mem_gb": 4.0, "timeout_min": 60}
    # the paper section over the shared one at each level: its default's mem_gb loses to the shared fig2's
    assert resources_for(params, "fig2@x", "paper") == {"cpus_per_task": 1, "mem_gb": 8.0, "timeout_min": 60,
                                                       "gpus_per_node": 1, "partition": "gpu"}
    assert resources_for({"profile": "small"}, "a") == {}
    with pytest.raises(ValueError, match=r"resources.stages.fig2: unknown key 'gpus'; allowed: cpus_per_task"):
        resources_for({"resources": {"stages": {"fig2": {"gpus": 1}}}}, "fig2@a")
    with pytest.raises(ValueError, match=r"resources.default: cpus_per_task=0; allowed: a positive int"):
        resources_for({"resources": {"default": {"cpus_per_task": 0}}}, "a")
    with pytest.raises(ValueError, match=r"cpus_per_task=1.5; allowed"):
        resources_for({"resources": {"default": {"cpus_per_task": 1.5}}}, "a")


def test_the_project_resources_resolve_for_every_stage_under_both_profiles():
    from lowrank.config import PROFILES, load_params

    params = load_params(ROOT / "params.yaml")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for profile in PROFILES:
        for stage in stages:
            res = resources_for(params, stage, profile)
            assert res["timeout_min"] > 0 and res["cpus_per_task"] >= 1, (profile, stage, res)
    assert resources_for(params, "fig2@digits_k0", "paper")["gpus_per_node"] == 1      # a GPU per run group
    assert resources_for(params, "fig2@digits_k0", "small")["gpus_per_node"] == 0
    assert resources_for(params, "report", "paper")["gpus_per_node"] == 0
    assert set((params["resources"].get("stages") or {})) <= set(stages)
    assert set(params["resources"]["paper"]["stages"]) <= set(stages)


def test_set_profile_rewrites_only_the_profile_line(tmp_path):
    path = tmp_path / "params.yaml"
    text = "# profile: small is the default\nprofile: small\nfig2:\n  profile: small\n"
    path.write_text(text)
    assert pipeline.set_profile("paper", path) == "small"
    assert path.read_text() == text.replace("\nprofile: small", "\nprofile: paper", 1)
    with pytest.raises(ValueError, match=r"--profile 'huge'; allowed: small, paper"):
        pipeline.set_profile("huge", path)


def test_submitit_local_jobs_reproduce_what_the_local_workers_do(tmp_path, monkeypatch, env):
    """The same stages through submitit's LocalExecutor (the job path: pickled call, log folder per job) give
    the outputs, byte for byte (DVC's md5 in dvc.lock), of the local workers."""
    local = _reproduce(_project(tmp_path / "local"), monkeypatch, "local")
    jobs = _reproduce(_project(tmp_path / "jobs"), monkeypatch, "submitit-local")
    assert jobs == local
    assert (tmp_path / "jobs" / "c.txt").read_text() == "45\n90\n"
    logs = [d for d in (tmp_path / "jobs" / "logs").iterdir() if d.name.isdigit()]   # (submitit's own: %j)
    assert len(logs) == 3 and all(list(d.glob("*_log.out")) for d in logs)    # one log folder per job


def test_a_failed_job_names_its_stage_and_log_and_nothing_downstream_runs(tmp_path, monkeypatch, env):
    path = _project(tmp_path / "p", DVC_YAML.replace('python -c "import sys; print(2',
                                                     'python -c "import sys; sys.exit(3); print(2'))
    monkeypatch.chdir(path)
    with pytest.raises(JobFailed, match=r"stage 'b' failed: job \S+ ended with an error; log: \S+_log.out") as err:
        pipeline.reproduce(jobs=2, skip=set(), executor="submitit-local", log_dir=path / "logs")
    log = Path(str(err.value).split("log: ")[1].split()[0])
    assert log.exists() and log.parent.parent == path / "logs"
    assert (path / "a.txt").exists() and not (path / "c.txt").exists()
    assert pipeline.stale_stages(["a", "b", "c"]) == {"b", "c"}                # a re-run resubmits them


def _tiny_group(cache: Path) -> dict:
    spec = {"dataset": "digits", "model": "vit_digits", "model_args": {"embed_dim": 16, "depth": 1, "num_heads": 2},
            "method": "dense", "train": {"epochs": 1, "lr": 3e-3, "batch_size": 64, "threads": 1}}
    return {"s0": spec, "s1": {**spec, "train": {**spec["train"], "random_state": 1}}}


def _sweep_equals_run_group(tmp_path, kind):
    from lowrank.cluster import run_sweep
    from lowrank.experiment import run_group

    cache = tmp_path / "cache"
    group = _tiny_group(cache)
    here = run_group(group, tmp_path / "here", cache_dir=cache, progress=False)
    jobs = run_sweep(group, tmp_path / "jobs", kind=kind, resources={"cpus_per_task": 1, "mem_gb": 2,
                     "timeout_min": 10}, name="tiny", log_dir=tmp_path / "logs", cache_dir=cache)
    # one thread, the same random_state: the same floats in another process; only the clock differs
    def timeless(final): return {k: v for k, v in final.items() if k != "wall_seconds"}
    assert {r: timeless(f) for r, f in jobs.items()} == {r: timeless(f) for r, f in here.items()}
    for run in group:
        written = [timeless(json.loads((tmp_path / where / run / "metrics.json").read_text()))
                   for where in ("jobs", "here")]
        assert written[0] == written[1]
    return jobs


def test_a_sweep_as_a_submitit_local_job_array_equals_the_one_process_group(tmp_path, env):
    _sweep_equals_run_group(tmp_path, "submitit-local")


# --------------------------------------------------------------------------------------------------
# against a real SLURM
# --------------------------------------------------------------------------------------------------

def _scontrol(job_id: str, settle_s: float = 15) -> dict[str, str]:
    """SLURM's record of a job; a job whose result is written may still be ending (RUNNING, COMPLETING)."""
    for _ in range(int(settle_s / 0.5)):
        rec = _record(job_id)
        if rec["JobState"] not in {"RUNNING", "COMPLETING"}:
            return rec
        time.sleep(0.5)
    return _record(job_id)


def _record(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


@pytest.mark.slurm
@pytest.mark.skipif(_slurm_absent() is not None, reason=str(_slurm_absent()))
def test_slurm_jobs_reproduce_what_the_local_workers_do(tmp_path, monkeypatch, env):
    local = _reproduce(_project(tmp_path / "local"), monkeypatch, "local")
    jobs = _reproduce(_project(tmp_path / "slurm"), monkeypatch, "slurm")
    assert jobs == local
    ids = _jobs(tmp_path / "slurm")
    assert set(ids) == {"a", "b", "c"} and "none" not in ids.values()
    for stage, job_id in ids.items():
        rec = _scontrol(job_id)                          # SLURM's own record of the job
        assert (rec["JobName"], rec["JobState"], rec["ExitCode"]) == (stage, "COMPLETED", "0:0"), rec
    assert int(ids["a"]) < int(ids["b"]) < int(ids["c"])  # submitted in dependency order
    print("slurm jobs:", {s: (i, _scontrol(i)["JobState"]) for s, i in ids.items()})


@pytest.mark.slurm
@pytest.mark.skipif(_slurm_absent() is not None, reason=str(_slurm_absent()))
def test_a_sweep_as_a_slurm_job_array_equals_the_one_process_group(tmp_path, env):
    _sweep_equals_run_group(tmp_path, "slurm")
    folders = [d.name for d in (tmp_path / "logs").iterdir() if d.is_dir() and "_" in d.name]   # one per task
    assert len(folders) == 2 and len({f.split("_")[0] for f in folders}) == 1     # one array, two tasks
    for folder in folders:
        rec = _scontrol(folder)
        assert (rec["JobName"], rec["JobState"]) == ("tiny", "COMPLETED"), rec


@pytest.mark.slurm
@pytest.mark.skipif(_slurm_absent() is not None, reason=str(_slurm_absent()))
def test_ctrl_c_cancels_the_jobs_the_pipeline_submitted_and_no_other(tmp_path, env):
    path = _project(tmp_path / "p", DVC_YAML.replace("cat a.txt b.txt > c.txt", "sleep 300"))
    other = subprocess.run(["sbatch", "--parsable", "-J", "bystander", "-o", "/dev/null", "--mem=100M",
                            "--wrap", "sleep 60"], capture_output=True, text=True, check=True).stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "study.pipeline", "--executor", "slurm", "--skip", "",
                             "--log-dir", "logs"], cwd=path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "c" not in (_jobs(path) if (path / "jobs.log").exists() else {}):
            time.sleep(0.5)
        job_c = _jobs(path)["c"]
        assert _record(job_c)["JobState"] == "RUNNING"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        subprocess.run(["scancel", other])
    assert proc.returncode != 0 and f"cancelling jobs {job_c}" in out, out
    for _ in range(20):
        if _scontrol(job_c)["JobState"] == "CANCELLED":
            break
        time.sleep(0.5)
    assert _scontrol(job_c)["JobState"] == "CANCELLED"
    assert _scontrol(_jobs(path)["a"])["JobState"] == "COMPLETED"   # the finished ones stay as they were
    assert _record(other)["JobState"] in {"RUNNING", "CANCELLED"}  # not ours: only our `scancel` above
