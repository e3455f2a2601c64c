"""Jobs on a SLURM cluster through submitit: the executors, the resources of ``params.yaml``, waiting and
cancelling, and a sweep's runs as one job array.

    python -m lowrank sweep params:fig2.digits_k0 --out runs/fig2/digits_k0 --executor slurm

Kinds of executor (:data:`KINDS`): ``local`` runs in this process (no submitit); ``submitit-local`` runs each
job in a child process through submitit's ``LocalExecutor`` (the SLURM path without a scheduler: the same
pickled call, log folder and result files); ``slurm`` submits with ``sbatch``. What a job asks for comes
from ``params.yaml``'s ``resources:`` section (:func:`resources_for`); docs/cluster.md has the walk-through.

SLURM's job states: submitit reads them with ``sacct``, which needs job accounting. A cluster without it
(a one-node test cluster) answers only ``scontrol``, so :func:`slurm_state` asks ``scontrol`` first and
``sacct`` (through submitit) once SLURM has forgotten the job.
"""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

__all__ = ["KINDS", "RESOURCE_KEYS", "JobFailed", "resources_for", "make_executor", "submit", "wait_for",
           "slurm_state", "JobRegistry", "run_sweep"]

KINDS = ("local", "submitit-local", "slurm")
#: resources of a job: key → (type, what is allowed); submitit's AutoExecutor names, ``partition`` aside
RESOURCE_KEYS: dict[str, tuple[type, str]] = {
    "cpus_per_task": (int, "a positive int"),
    "mem_gb": (float, "a positive number of GB"),
    "gpus_per_node": (int, "an int >= 0"),
    "tasks_per_node": (int, "a positive int (DDP: one task that runs torchrun, or one per GPU)"),
    "timeout_min": (int, "a positive int of minutes"),
    "partition": (str, "a partition name, or null for the cluster's default"),
}
#: job states after which a job without a result file never produces one
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
                          "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"})
#: seconds between two looks at a running job
POLL_S = 1.0


class JobFailed(RuntimeError):
    """A job ended without a result: the thing it ran, its job id, its final state and its log."""


def _check_resources(res: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in res.items():
        if key not in RESOURCE_KEYS:
            raise ValueError(f"{where}: unknown key {key!r}; allowed: {', '.join(RESOURCE_KEYS)}")
        kind, allowed = RESOURCE_KEYS[key]
        if key == "partition":
            ok = value is None or (isinstance(value, str) and value != "")
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                float(value).is_integer() if kind is int else True) and (
                value >= 0 if key == "gpus_per_node" else value > 0)
        if not ok:
            raise ValueError(f"{where}: {key}={value!r}; allowed: {allowed}")
        out[key] = value if value is None or key == "partition" else kind(value)
    return out


def resources_for(params: Mapping[str, Any], name: str, profile: str | None = None) -> dict[str, Any]:
    """What the job of ``name`` (a stage, ``group@item`` of a foreach group, or a sweep's top-level key)
    asks for: ``resources.default``, then ``resources.stages.<group>``, then ``resources.stages.<name>``,
    each under the active profile's section (:func:`lowrank.config.resolve_spec`: the profile wins)."""
    from .config import merge, resolve_spec

    if "resources" not in params:      # a project without the section: the cluster's defaults
        return {}
    section = resolve_spec(params, "resources", profile, source="params.yaml")
    unknown = set(section) - {"default", "stages"}
    if unknown:
        raise ValueError(f"params.yaml: resources: unknown keys {sorted(unknown)}; allowed: default, stages, "
                         "small, paper")
    stages = section.get("stages") or {}
    res = _check_resources(section.get("default") or {}, "resources.default")
    for key in dict.fromkeys([name.split("@")[0], name]):
        if key in stages:
            res = merge(res, _check_resources(stages[key] or {}, f"resources.stages.{key}"))
    return res


def make_executor(kind: str, folder: str | Path, name: str, resources: Mapping[str, Any]):
    """A submitit executor for one job (or one array) called ``name``, logging into ``folder/<job id>``."""
    import submitit

    if kind not in KINDS[1:]:
        raise ValueError(f"executor={kind!r}; allowed here: {', '.join(KINDS[1:])}")
    ex = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster="slurm" if kind == "slurm" else "local")
    res = dict(resources)
    partition = res.pop("partition", None)
    if kind == "slurm":
        if partition:
            res["slurm_partition"] = partition
    else:   # one machine: its processes share the CPUs and memory, nothing to reserve
        res = {k: v for k, v in res.items() if k in ("timeout_min", "gpus_per_node", "tasks_per_node")}
    ex.update_parameters(name=name, **res)
    return ex


def slurm_state(job) -> str:
    """SLURM's state of ``job`` (``scontrol show job``; ``sacct`` through submitit once scontrol has forgotten
    it, MinJobAge seconds after the end)."""
    res = subprocess.run(["scontrol", "show", "job", "-o", str(job.job_id)], capture_output=True, text=True)
    for field in res.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return job.watcher.get_state(job.job_id, mode="force")


def wait_for(job, what: str) -> Any:
    """The result of ``job`` once it ends; :class:`JobFailed` naming ``what``, the job, its state and its log
    when it ended without one (failed, cancelled, timed out, pre-empted)."""
    import submitit

    def failed(state: str, detail: str = "") -> JobFailed:
        return JobFailed(f"{what} failed: job {job.job_id} ended {state}; log: {job.paths.stdout} "
                         f"(and .err){detail}")

    slurm = isinstance(job, submitit.SlurmJob)
    while True:
        if job.paths.result_pickle.exists() or (not slurm and job.done()):
            try:
                return job.result()
            except submitit.core.utils.FailedJobError as err:
                raise failed("with an error", f"\n{str(err)[-3000:]}") from None
            except submitit.core.utils.UncompletedJobError as err:
                raise failed("without a result", f"\n{str(err)[-1000:]}") from None
        if slurm:
            state = slurm_state(job).split()[0]
            if state in FINAL_STATES:
                time.sleep(2 * POLL_S)         # a completed job's result file may trail its state
                if not job.paths.result_pickle.exists():
                    raise failed(state)
        time.sleep(POLL_S)


class JobRegistry:
    """The jobs one command submitted, so that Ctrl-C cancels those and no other (``scancel <id>``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.jobs: list = []

    def add(self, job) -> None:
        with self._lock:
            self.jobs.append(job)

    def cancel_all(self) -> list[str]:
        """Cancel every registered job not yet finished; returns their ids."""
        with self._lock:
            jobs = [j for j in self.jobs if not j.paths.result_pickle.exists()]
        for job in jobs:
            job.cancel(check=False)
        return [str(j.job_id) for j in jobs]


def submit(kind: str, folder: str | Path, name: str, resources: Mapping[str, Any], fn: Callable, *args,
           registry: JobRegistry | None = None):
    """Submit ``fn(*args)`` as one job called ``name``; the submitit job."""
    job = make_executor(kind, folder, name, resources).submit(fn, *args)
    if registry is not None:
        registry.add(job)
    return job


def _one_run(spec: Mapping[str, Any], out: str, cache_dir: str | None) -> dict[str, Any]:
    from .experiment import run_experiment

    return run_experiment(dict(spec), out, cache_dir=cache_dir, progress=False)


def run_sweep(specs: Mapping[str, Mapping[str, Any]], out_dir: str | Path, *, kind: str, resources: Mapping[str, Any],
              name: str, log_dir: str | Path, cache_dir: str | Path | None = None,
              report: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """A group's runs (:func:`lowrank.config.resolve_group`) as one job array, one task per run, each into
    ``out_dir/<run>/`` as :func:`lowrank.experiment.run_group` writes them; returns run → final metrics.
    Every spec is validated before anything is submitted; Ctrl-C cancels the array's tasks."""
    from .experiment import validate_group

    validate_group(specs, "run_sweep")
    runs: Sequence[str] = list(specs)
    out = Path(out_dir).resolve()
    ex = make_executor(kind, log_dir, name, resources)
    jobs = ex.map_array(_one_run, [specs[r] for r in runs], [str(out / r) for r in runs],
                        [None if cache_dir is None else str(Path(cache_dir).resolve())] * len(runs))
    registry = JobRegistry()
    for job in jobs:
        registry.add(job)
    report(f"{name}: {len(jobs)} runs as job array {str(jobs[0].job_id).split('_')[0]} (logs: {Path(log_dir)})")
    try:
        return {run: wait_for(job, f"run {run!r}") for run, job in zip(runs, jobs)}
    except KeyboardInterrupt:
        report(f"cancelling jobs {', '.join(registry.cancel_all())}")
        raise
