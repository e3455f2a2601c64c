"""``dvc repro`` with parallel workers: the stages of dvc.yaml, level by level, N at a time.

    python -m study.pipeline --jobs 2                 # what `make repro` runs (skips `bench`)
    python -m study.pipeline --jobs 2 --skip ''       # every stage, the benchmarks included
    python -m study.pipeline --dry                    # print what is stale
    python -m study.pipeline --jobs 2 --with extended # also the extended set (`make repro-extended`)
    python -m study.pipeline --write-grid             # only rewrite grid.yaml from params.yaml's `grid:`

The compression stages iterate ``grid.yaml``: params.yaml's ``grid:`` expanded into each sweep's groups
(:func:`lowrank.config.expand_grid`), written by :func:`write_grid` (every run of this module first refreshes it;
tests/test_grid.py checks that the committed file is current), since DVC's ``foreach`` reads lists, not rules.

Why: the sweeps are dozens of independent single-threaded runs (``train.threads: 1``), and plain
``dvc repro`` executes one stage at a time, so on a 2-core machine half of it idles. DVC (3.x) lets
several ``dvc repro -s <stage>`` processes run at once: it holds the repository lock only while it
reads and writes ``dvc.lock``, not while a stage's command runs. So we schedule the stage graph
ourselves — a stage starts when the stages it depends on are done, the longest remaining chain of
expected seconds first (``meta: {cost_s: …}`` hints in dvc.yaml) — with a pool of ``--jobs`` workers. Each
stage is reproduced by DVC itself, so its lock entry, cache and outputs are exactly what ``dvc repro`` would
leave; a final plain ``dvc repro`` of the same targets finds nothing left to do (or reproduces what went stale
while the stages ran).

Parameter sets: a stage whose ``meta`` says ``set: extended`` (the text chain, the budget axis, Figure 2's
families, Figures 4 and 5) is left out unless ``--with extended`` asks for it. Unlike ``--skip``, the stages
downstream of it still run, on its committed outputs (the report and the notebooks read the extended runs from
``reports/evidence``, :mod:`study.evidence`); DVC is then asked stage by stage (``--single-item``), and the
closing check is ``dvc status`` of the stages that ran, since a plain ``dvc repro`` would also reproduce the
left-out stages upstream.

Executors (:mod:`study.executors`): ``--executor local`` (the default) runs each stage in a worker thread
here; ``--executor slurm`` submits each ready stage as a SLURM job (submitit) that runs the same
``dvc repro --single-item <stage>`` on the shared filesystem, with the resources of ``params.yaml``'s
``resources:``; ``--jobs`` is then the number of jobs in flight. A failed job stops the pipeline (the jobs
running finish; nothing downstream starts) and names the stage and its log; a re-run resubmits what is still
stale. Ctrl-C cancels the jobs this pipeline submitted. docs/cluster.md walks the paper profile through it.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from .executors import KINDS, make_runner

__all__ = ["stage_graph", "stale_stages", "time_left_s", "reproduce", "set_profile", "grid_text", "write_grid",
           "GRID_FILE"]

#: dvc.yaml's ``vars``: the groups of every sweep of params.yaml's grid (:func:`write_grid`)
GRID_FILE = "grid.yaml"

# DVC retries a busy repository lock only briefly; two workers finishing together can collide.
_LOCK_MESSAGES = ("Unable to acquire lock", "lock is busy")
_LOCK_RETRIES = 20


#: cost of a stage without a ``meta: {cost_s: …}`` hint in dvc.yaml
DEFAULT_COST_S = 10.0
#: the parameter set of a stage without ``meta: {set: …}``: what ``make repro`` runs
CORE = "core"


def stage_graph(skip: set[str] = frozenset(), costs: dict[str, float] | None = None,
                sets: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Stage name → the stages it depends on, without the ``skip`` stages (a name or a foreach group)
    and everything downstream of them. ``costs``, when given, is filled with each stage's
    ``meta.cost_s`` (expected seconds; :data:`DEFAULT_COST_S` without one); ``sets`` with its
    ``meta.set`` (:data:`CORE` without one)."""
    from dvc.repo import Repo

    with Repo() as repo:
        graph = repo.index.graph                  # edge (stage, dependency)
        names = {s: s.addressing for s in graph.nodes}
        deps = {names[s]: sorted(names[d] for d in graph.successors(s)) for s in graph.nodes}
        for s in graph.nodes:
            meta = getattr(s, "meta", None) or {}
            meta = meta if isinstance(meta, dict) else {}
            if costs is not None:
                costs[names[s]] = float(meta.get("cost_s", DEFAULT_COST_S))
            if sets is not None:
                sets[names[s]] = str(meta.get("set", CORE))
    unknown = set(skip) - set(deps) - {n.split("@")[0] for n in deps}
    if unknown:
        raise ValueError(f"--skip: {sorted(unknown)} are not stages of dvc.yaml; stages: {sorted(deps)}")
    dropped: dict[str, bool] = {}

    def drop(n: str) -> bool:
        if n not in dropped:
            dropped[n] = n in skip or n.split("@")[0] in skip or any(drop(d) for d in deps[n])
        return dropped[n]

    return {n: d for n, d in deps.items() if not drop(n)}


def stale_stages(names: list[str]) -> set[str]:
    """The stages among ``names`` that ``dvc status`` reports as changed (or never run); asked in this process
    (what ``dvc status --json`` prints is this dict), which spares a second DVC start-up."""
    if not names:
        return set()
    from dvc.repo import Repo

    with Repo() as repo:
        return set(repo.status(targets=list(names))) & set(names)


def time_left_s(remaining: set[str], deps: dict[str, list[str]], costs: dict[str, float], jobs: int) -> float:
    """Expected seconds until the ``remaining`` stages are done on ``jobs`` workers, from their ``meta.cost_s``:
    the larger of their summed cost shared by the workers and their longest chain of dependent stages."""
    chain: dict[str, float] = {}

    def longest(n: str) -> float:
        if n not in chain:
            chain[n] = costs.get(n, DEFAULT_COST_S) + max((longest(d) for d in deps.get(n, ()) if d in remaining),
                                                          default=0.0)
        return chain[n]

    total = sum(costs.get(n, DEFAULT_COST_S) for n in remaining)
    return max(total / jobs, max((longest(n) for n in remaining), default=0.0))


def _minutes(seconds: float) -> str:
    return f"about {seconds / 60:.0f} min" if seconds >= 90 else f"about {seconds:.0f} s"


def _downstream(stale: set[str], deps: dict[str, list[str]]) -> set[str]:
    """``stale`` and every stage that depends on one of them (what a run will hand to DVC at most)."""
    out = set(stale)
    changed = True
    while changed:
        changed = False
        for n, ds in deps.items():
            if n not in out and any(d in out for d in ds):
                out.add(n)
                changed = True
    return out


def _repro_one(name: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    for attempt in range(_LOCK_RETRIES):
        # no --quiet: it silences DVC's errors too, the lock message included, and a busy lock would
        # then look like a failed stage (exit 255, no text)
        res = subprocess.run(["dvc", "repro", "--single-item", name], capture_output=True, text=True)
        if res.returncode == 0:
            return name, time.perf_counter() - t0
        text = res.stdout + res.stderr
        if not any(m in text for m in _LOCK_MESSAGES):
            raise RuntimeError(f"stage {name!r} failed (exit {res.returncode}):\n{text[-4000:]}")
        time.sleep(0.5 + 0.25 * attempt)
    raise RuntimeError(f"stage {name!r}: the DVC repository lock stayed busy after {_LOCK_RETRIES} tries")


def _priorities(deps: dict[str, list[str]], costs: dict[str, float] | None = None) -> dict[str, tuple[float, int]]:
    """(seconds of the longest chain from this stage to the end, number of stages downstream): the
    critical path starts first (list scheduling by the longest remaining path, with the ``meta.cost_s``
    hints as durations; every stage counts 1 without hints)."""
    users: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            users[d].append(n)
    chain: dict[str, float] = {}
    below: dict[str, set[str]] = {}

    def walk(n: str) -> None:
        if n in chain:
            return
        for u in users[n]:
            walk(u)
        own = 1.0 if costs is None else costs.get(n, DEFAULT_COST_S)
        chain[n] = own + max((chain[u] for u in users[n]), default=0)
        below[n] = set(users[n]).union(*(below[u] for u in users[n])) if users[n] else set()

    for n in deps:
        walk(n)
    return {n: (chain[n], len(below[n])) for n in deps}


def set_profile(profile: str, path: str | Path = "params.yaml") -> str:
    """Make ``profile`` the ``profile:`` of ``path`` (the one line; the file is rewritten atomically only when it
    changes, as ``dvc exp run -S profile=...`` would); returns the profile it had."""
    from lowrank.config import PROFILES
    from lowrank.utils import atomic_write_text

    if profile not in PROFILES:
        raise ValueError(f"--profile {profile!r}; allowed: {', '.join(PROFILES)}")
    text = Path(path).read_text()
    line = re.search(r"^profile:[ \t]*(\w+)[ \t]*$", text, flags=re.M)
    if line is None:
        raise ValueError(f"{path}: no top-level `profile: <name>` line to set")
    if line.group(1) != profile:
        atomic_write_text(path, text[:line.start(1)] + profile + text[line.end(1):])
    return line.group(1)


def grid_text(params_path: str | Path = "params.yaml") -> str:
    """The text of :data:`GRID_FILE` for ``params_path``: ``groups: {sweep: {group: {sweep, dataset, seed}}}``
    (:func:`lowrank.config.expand_grid`), one group a line, in the grid's order."""
    from lowrank.config import expand_grid, load_params

    lines = [f"# Generated from {Path(params_path).name}'s `grid:` by `python -m study.pipeline --write-grid`; "
             "do not edit.", "# dvc.yaml's compression stages iterate these groups (`foreach: ${groups.<sweep>}`).",
             "groups:"]
    for sweep, groups in expand_grid(load_params(params_path)).items():
        lines.append(f"  {sweep}:")
        lines += [f"    {name}: {{sweep: {g['sweep']}, dataset: {g['dataset']}, seed: {g['seed']}}}"
                  for name, g in groups.items()]
    return "\n".join(lines) + "\n"


def write_grid(params_path: str | Path = "params.yaml", path: str | Path = GRID_FILE) -> bool:
    """Write :func:`grid_text` to ``path`` if it differs (atomically); returns whether it did. A project without
    ``params_path`` or without a ``grid:`` in it has no grid file to write."""
    from lowrank.config import GRID_KEY, load_params
    from lowrank.utils import atomic_write_text

    if not Path(params_path).is_file() or GRID_KEY not in load_params(params_path):
        return False
    text = grid_text(params_path)
    if Path(path).exists() and Path(path).read_text() == text:
        return False
    atomic_write_text(path, text)
    return True


def reproduce(jobs: int = 2, skip: set[str] = frozenset({"bench"}), dry: bool = False,
              include: set[str] = frozenset(), executor: str = "local",
              log_dir: str | Path = "logs/pipeline") -> list[tuple[str, float]]:
    """Reproduce every stale stage (except ``skip``, and except the stages of a parameter set other than
    :data:`CORE` and ``include``) with ``jobs`` workers; returns (stage, seconds). ``executor`` says where a
    stage runs (:mod:`study.executors`; ``log_dir`` holds the jobs' logs).

    A stage starts as soon as the stages it depends on are finished. It is handed to DVC when ``dvc
    status`` found it stale at the start or when something upstream of it ran; DVC then re-checks it
    (a stage whose inputs came out unchanged is skipped in a second or two).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a positive int")
    # runs keep checkpoints and results where DVC does not delete them (lowrank.experiment): a killed pipeline
    # resumes; set for this call only, so a caller's later runs in the same process are not cached
    with _env_default("OPFACT_RUN_CACHE", "cache/runs"):
        return _reproduce(jobs, skip, dry, include, executor, log_dir)


@contextlib.contextmanager
def _env_default(key: str, value: str):
    """``os.environ[key] = value`` unless set, for the duration of the block."""
    had = key in os.environ
    os.environ.setdefault(key, value)
    try:
        yield
    finally:
        if not had:
            os.environ.pop(key, None)


def _reproduce(jobs: int, skip, dry: bool, include, executor: str, log_dir) -> list[tuple[str, float]]:
    run = make_runner(executor, _repro_one, log_dir)
    costs: dict[str, float] = {}
    sets: dict[str, str] = {}
    deps = stage_graph(set(skip), costs, sets)
    unknown = set(include) - set(sets.values())
    if unknown:
        raise ValueError(f"--with: {sorted(unknown)} are not parameter sets of dvc.yaml (meta.set); "
                         f"sets: {sorted(set(sets.values()))}")
    left_out = {n for n in deps if sets.get(n, CORE) not in {CORE, *include}}
    targets = sorted(set(deps) - left_out)
    stale = stale_stages(targets)
    prio = _priorities(deps, costs)
    to_run = _downstream(stale, {n: deps[n] for n in targets}) & set(targets)
    print(f"{len(stale)} of {len(targets)} stages stale" + (f": {', '.join(sorted(stale))}" if stale else "")
          + (f"; {len(left_out)} left to other parameter sets" if left_out else ""), flush=True)
    if to_run:
        print(f"{len(to_run)} stages to run (the stale ones and what depends on them): "
              f"{_minutes(time_left_s(to_run, deps, costs, jobs))} with {jobs} worker{'s' if jobs > 1 else ''} "
              "(dvc.yaml's meta.cost_s)", flush=True)
    if dry:
        return []
    if run is not _repro_one:
        run.check(targets)
        print(f"{executor} jobs' logs: {run.log_dir}/<job id>/", flush=True)
    done: set[str] = set(left_out)   # never run here: their committed outputs stand
    ran: set[str] = set()
    timings: list[tuple[str, float]] = []
    running: dict = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool, _cancel_on_interrupt(run):
        while len(done) < len(deps):
            progressed = True
            while progressed:             # settle every ready stage that needs no run
                progressed = False
                for n in deps:
                    if n in done or n in running.values() or not all(d in done for d in deps[n]):
                        continue
                    if n not in stale and not any(d in ran for d in deps[n]):
                        done.add(n)
                        progressed = True
            ready = sorted((n for n in deps if n not in done and n not in running.values()
                            and all(d in done for d in deps[n])), key=lambda n: (-prio[n][0], -prio[n][1], n))
            for n in ready[:max(0, jobs - len(running))]:
                running[pool.submit(run, n)] = n
            if not running:
                if len(done) < len(deps):
                    raise RuntimeError(f"pipeline stuck: {sorted(set(deps) - done)} never became ready")
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                n = running.pop(fut)
                name, seconds = fut.result()      # a failed stage raises here, after its worker stopped
                done.add(n)
                ran.add(n)
                timings.append((name, seconds))
                left = to_run - done - set(running.values())
                eta = time_left_s(left | set(running.values()), deps, costs, jobs)
                print(f"  done {name} ({seconds:.1f} s; {len(done - left_out)}/{len(targets)}"
                      + (f"; {_minutes(eta)} left" if left or running else "") + ")", flush=True)
    if not left_out:
        # the same targets through plain `dvc repro`: a no-op unless something went stale while the stages ran
        # (a source file edited meanwhile), which it then reproduces one stage at a time
        subprocess.run(["dvc", "repro", "--quiet", *targets], check=True)
        return timings
    # with stages left out, a plain `dvc repro` would reproduce them as upstream of ours: check with `dvc
    # status` instead, and reproduce what went stale meanwhile one stage at a time, upstream first
    for n in sorted(stale_stages(targets), key=lambda n: (-prio[n][0], n)):
        timings.append(run(n))
    still = stale_stages(targets)
    if still:
        raise RuntimeError(f"stages still stale after the pipeline: {sorted(still)}")
    return timings


@contextlib.contextmanager
def _cancel_on_interrupt(run):
    """Ctrl-C cancels the jobs ``run`` submitted (a local worker's `dvc` gets the terminal's SIGINT itself)."""
    try:
        yield
    except KeyboardInterrupt:
        if run is not _repro_one:
            print(f"cancelling jobs {', '.join(run.cancel()) or '(none running)'}", flush=True)
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m study.pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="parallel stages (default 2)")
    ap.add_argument("--skip", default="bench",
                    help="comma-separated stages (or foreach groups) to leave out, with everything that needs "
                         "them (default: bench; '' for none)")
    ap.add_argument("--with", dest="include", default="",
                    help="comma-separated parameter sets (meta.set of dvc.yaml) to run besides the core one "
                         "(default: none; `extended` for the whole study)")
    ap.add_argument("--dry", action="store_true", help="only print what is stale")
    ap.add_argument("--executor", default="local", choices=KINDS,
                    help="where a stage runs: local worker threads (default), slurm jobs (submitit), or "
                         "submitit-local (the job path on this machine)")
    ap.add_argument("--log-dir", default="logs/pipeline", help="the jobs' logs, one folder per job id")
    ap.add_argument("--profile", default=None,
                    help="set params.yaml's `profile` (small | paper) before anything runs (default: as it is)")
    ap.add_argument("--write-grid", action="store_true",
                    help=f"only rewrite {GRID_FILE} from params.yaml's `grid:` (every run refreshes it first)")
    args = ap.parse_args(argv)
    if write_grid():
        print(f"{GRID_FILE}: rewritten from params.yaml's grid", flush=True)
    if args.write_grid:
        return 0
    if args.profile is not None:
        before = set_profile(args.profile)
        if before != args.profile:
            print(f"params.yaml: profile {before} -> {args.profile}", flush=True)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    include = {s.strip() for s in args.include.split(",") if s.strip()}
    t0 = time.perf_counter()
    timings = reproduce(args.jobs, skip, args.dry, include, args.executor, args.log_dir)
    if not args.dry:
        busy = sum(t for _, t in timings)
        print(f"pipeline: {len(timings)} stages in {time.perf_counter() - t0:.0f} s with {args.jobs} "
              f"{'workers' if args.executor == 'local' else args.executor + ' jobs in flight'} "
              f"({busy:.0f} s of stage time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
