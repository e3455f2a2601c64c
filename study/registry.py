"""The paper artifacts this study reproduces (Table 1, Figures 2–5, Proposition 4.3, the tenBCD companion
study, the walkthrough), each registered once by the module that makes it.

An :class:`Artifact` says which notebook makes it, which sweeps of ``runs/`` it owns or reads, which files
it writes under ``reports/`` and how its claims are decided. Everything that used to repeat these by hand
is derived from :data:`ARTIFACTS`: REPORT.md and ``reports/metrics/summary.json`` (:mod:`study.report`),
the inventory of sweeps (:func:`sweeps`), and the tests that check ``dvc.yaml``'s notebook stages against
them. The pattern is the method registry of :mod:`lowrank.methods`: each artifact module ends with
``ARTIFACT = register(Artifact("fig2", "Figure 2", "experiment", notebook=..., sweeps=..., figures=...,
tables=..., claims=..., verdicts=..., metrics=..., section=...))`` (see :mod:`study.fig2`), and importing
:mod:`study` registers them all:

>>> import study
>>> from study.registry import ARTIFACTS
>>> fig2 = ARTIFACTS["fig2"]
>>> fig2.paper, fig2.notebook, fig2.claims
('Figure 2', '02_fig2_pareto', ('(b)', '(c)'))
>>> fig2.reads()[0]                        # the folder of its first sweep
'runs/fig2'

:class:`Inputs` is what the verdict, metrics and REPORT.md functions of the artifacts receive: the run
folders, each sweep loaded once however many artifacts read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from .runs import (BASES, RunsDirs, bases_of, borrowed_runs, load_points, load_rank_trajectories, load_runs,
                   run_roots, same_base_files)
from .verdicts import NOISE_SWEEP, Noise, Verdict, noise_level, single_seed

__all__ = ["Artifact", "ARTIFACTS", "Inputs", "register", "artifacts", "sweeps", "claim_order", "from_points",
           "KINDS"]

#: what an artifact's claims rest on, in the order REPORT.md lists the verdicts: the paper's experiments
#: (by claim letter), its theory, then the companion paper; the walkthrough decides no claim
KINDS = ("experiment", "theory", "companion", "walkthrough")


@dataclass(frozen=True)
class Artifact:
    """One table / figure / claim of the paper and everything the repository says about it."""

    name: str                                   # short key: "fig2"
    paper: str                                  # what of the paper it reproduces: "Figure 2"
    kind: str                                   # one of KINDS
    notebook: str | None = None                 # notebooks/<notebook>.py makes its figures and tables
    #: compression-run sweeps it owns: runs/<sweep>/ written by `python -m lowrank run` stages
    #: (REPORT.md lists them under "Runs found")
    sweeps: tuple[str, ...] = ()
    #: what else it reads, as paths from the repository root (another artifact's sweep, another stage's table)
    inputs: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()               # stems under reports/<figures_dir>/ (PNG + PDF)
    tables: tuple[str, ...] = ()                # stems under reports/<tables_dir>/ (CSV + Markdown)
    figures_dir: str = "figures"
    tables_dir: str = "tables"
    claims: tuple[str, ...] = ()                # the claim labels its verdicts carry: "(b)", "(c)"
    verdicts: Callable[[Inputs], list[Verdict]] | None = field(default=None, compare=False)
    metrics: Callable[[Inputs], dict[str, Any]] | None = field(default=None, compare=False)
    #: its part of REPORT.md (lines, joined with newlines), from the reports folder
    section: Callable[[Path], list[str]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {KINDS}")
        if bool(self.claims) != (self.verdicts is not None):
            raise ValueError(f"{self.name}: claims and a verdict function go together")

    def outputs(self) -> list[str]:
        """The files its notebook writes, relative to the reports folder."""
        return ([f"{self.figures_dir}/{s}.{ext}" for s in self.figures for ext in ("png", "pdf")]
                + [f"{self.tables_dir}/{s}.{ext}" for s in self.tables for ext in ("csv", "md")])

    def reads(self) -> list[str]:
        """Every input path from the repository root: its own sweeps' folders, then the other inputs."""
        return [f"runs/{s}" for s in self.sweeps] + list(self.inputs)


#: name → artifact, in registration order (use :func:`artifacts` for the notebook order)
ARTIFACTS: dict[str, Artifact] = {}


def register(artifact: Artifact) -> Artifact:
    """Add ``artifact`` to :data:`ARTIFACTS` (once per name; no sweep has two owners); returns it."""
    if artifact.name in ARTIFACTS:
        raise ValueError(f"artifact {artifact.name!r} is registered twice")
    owners = {s: a.name for a in ARTIFACTS.values() for s in a.sweeps}
    shared = [s for s in artifact.sweeps if s in owners or s == BASES]
    if shared:
        raise ValueError(f"{artifact.name}: sweeps {shared} already belong to "
                         f"{sorted({owners.get(s, 'the bases') for s in shared})}")
    ARTIFACTS[artifact.name] = artifact
    return artifact


def artifacts() -> list[Artifact]:
    """Every artifact in notebook order (00 … 07; REPORT.md's sections follow it)."""
    return sorted(ARTIFACTS.values(), key=lambda a: a.notebook or "")


def sweeps() -> dict[str, str | None]:
    """Sweep folder of ``runs/`` → the notebook that reads it: the bases first (read by every sweep, owned
    by none), then each artifact's sweeps in notebook order."""
    out: dict[str, str | None] = {BASES: None}
    for a in artifacts():
        out.update({s: a.notebook for s in a.sweeps})
    return out


def claim_order() -> list[Artifact]:
    """The artifacts that decide claims, in REPORT.md's order: by :data:`KINDS`, then by first claim."""
    return sorted((a for a in ARTIFACTS.values() if a.verdicts is not None),
                  key=lambda a: (KINDS.index(a.kind), a.claims[0]))


class Inputs:
    """The run folders and reports an artifact's verdicts, metrics and REPORT.md section read; each sweep
    is loaded once, whichever artifacts read it."""

    def __init__(self, runs_dir: RunsDirs = "runs", reports_dir: str | Path = "reports"):
        # runs_dir: one folder, or several searched in order (this checkout's runs, then the committed
        # evidence of the extended parameter set: study.runs); ``primary`` is the first, where runs are made
        self.runs_dir = run_roots(runs_dir)
        self.primary = self.runs_dir[0]
        self.reports_dir = Path(reports_dir)
        self._memo: dict[Any, Any] = {}
        #: runs left out of a comparison because they were made from another base file (study.runs.same_base_files)
        self.left_out: list[str] = []

    def note_left_out(self, notes: list[str]) -> None:
        self.left_out += [n for n in notes if n not in self.left_out]

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` the first time ``key`` is asked for, the same object afterwards."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def runs(self, sweep: str) -> pd.DataFrame:
        return self.memo(("runs", sweep), lambda: load_runs(self.runs_dir, sweep))

    def points(self, sweep: str) -> pd.DataFrame:
        return self.memo(("points", sweep), lambda: load_points(self.runs_dir, sweep, self.runs(sweep)))

    def figure_points(self, sweep: str, borrowed: Mapping[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
        """The points of ``runs/<sweep>`` and of the runs it borrows: ``{other sweep: (run names, …)}``, the
        runs ``<base>/<name>`` of the other sweep on the bases this sweep uses
        (:func:`study.runs.borrowed_runs`); a borrowed point keeps its own ``sweep`` and ``run``."""
        own = self.points(sweep)
        bases = bases_of(self.runs(sweep))
        parts = [own]
        for other, names in (borrowed or {}).items():
            # a borrowed run counts only if it was made from the same base file as this sweep's runs
            runs, notes = same_base_files(borrowed_runs(self.runs(other), names, bases), self.runs(sweep),
                                          f"runs of runs/{other} borrowed by runs/{sweep}",
                                          f"dvc repro {sweep}@{{base}} {other}@{{base}}")
            self.note_left_out(notes)
            parts.append(load_points(self.runs_dir, other, runs))
        parts = [p for p in parts if not p.empty]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else own)

    def trajectories(self, sweep: str) -> pd.DataFrame:
        return self.memo(("trajectories", sweep),
                         lambda: load_rank_trajectories(self.runs_dir, sweep, self.runs(sweep)))

    @property
    def noise(self) -> Noise:
        """The noise level every verdict uses (from the repeats sweep, :func:`study.verdicts.noise_level`)."""
        return self.memo("noise", lambda: noise_level(self.runs(NOISE_SWEEP)))


def from_points(verdict: Callable[[pd.DataFrame, Noise], list[Verdict]], sweep: str,
                borrowed: Mapping[str, tuple[str, ...]] | None = None) -> Callable[[Inputs], list[Verdict]]:
    """The verdict function of an artifact whose claim is decided on one sweep's evaluation points (and those
    of the runs it ``borrowed``, :meth:`Inputs.figure_points`): ``verdict(points, noise level)``. Such a sweep
    runs each setting once per seed; with fewer seeds than :data:`study.intervals.MIN_SEEDS` no interval
    exists and a verdict is at most "inconclusive" (:func:`study.verdicts.single_seed`), whatever the noise
    rule reads."""
    def decide(inputs: Inputs) -> list[Verdict]:
        points = inputs.figure_points(sweep, borrowed)
        seeds = sorted(points["random_state"].dropna().unique()) if len(points) else []
        n = len(seeds)
        out = []
        for v in verdict(points, inputs.noise):
            v.verdict = single_seed(v.verdict, max(n, 1))
            v.interval = v.interval or (f"none ({n} seed{'s' if n != 1 else ''})" if n else "–")
            v.seeds = v.seeds or (", ".join(str(s) for s in seeds) + " (one run per setting)" if n else "–")
            out.append(v)
        return out

    return decide
