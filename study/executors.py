"""Where :mod:`study.pipeline` runs a stage: in a worker thread of this machine (``local``, the default), or
as a job through submitit (``slurm``; ``submitit-local`` is the same path on this machine without a
scheduler). The job runs the very function the local worker runs (``dvc repro --single-item <stage>``, with
its retries on DVC's repository lock) in the repository on the shared filesystem, so DVC records every
output as it would locally; the scheduler (dependency order, priorities) is the pipeline's, unchanged.
What each job asks for comes from ``params.yaml``'s ``resources:`` (:func:`lowrank.cluster.resources_for`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from lowrank.cluster import KINDS, JobRegistry, resources_for, submit, wait_for

__all__ = ["KINDS", "StageRunner", "make_runner"]


class StageRunner:
    """``runner(stage)`` → (stage, seconds): ``repro(stage)`` as a job of ``kind``, waited for in the calling
    worker thread; the job's name is the stage's, its log ``log_dir/<job id>/``."""

    def __init__(self, kind: str, repro: Callable[[str], tuple[str, float]], log_dir: str | Path,
                 params: dict, profile: str | None = None, report: Callable[[str], None] = print):
        self.kind, self.repro, self.log_dir, self.report = kind, repro, Path(log_dir), report
        self.params, self.profile = params, profile
        self.registry = JobRegistry()

    def check(self, stages) -> None:
        """Every stage's resources resolve (bad keys or values fail here, before any job is submitted)."""
        for stage in stages:
            resources_for(self.params, stage, self.profile)

    def __call__(self, stage: str) -> tuple[str, float]:
        t0 = time.perf_counter()
        job = submit(self.kind, self.log_dir, stage, resources_for(self.params, stage, self.profile),
                     self.repro, stage, registry=self.registry)
        self.report(f"  submitted {stage}: job {job.job_id}")
        wait_for(job, f"stage {stage!r}")
        return stage, time.perf_counter() - t0

    def cancel(self) -> list[str]:
        """Cancel the jobs this runner submitted and that have not finished; returns their ids."""
        return self.registry.cancel_all()


def make_runner(kind: str, repro: Callable[[str], tuple[str, float]], log_dir: str | Path = "logs/pipeline",
                params_path: str | Path = "params.yaml", profile: str | None = None):
    """``repro`` itself for ``local``; a :class:`StageRunner` otherwise."""
    if kind not in KINDS:
        raise ValueError(f"--executor {kind!r}; allowed: {', '.join(KINDS)}")
    if kind == "local":
        return repro
    from lowrank.config import load_params

    params = load_params(params_path) if Path(params_path).exists() else {}
    return StageRunner(kind, repro, Path(log_dir).resolve(), params, profile)
