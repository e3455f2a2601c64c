"""The committed evidence of the extended parameter set: the small files of its runs, kept in git.

    python -m study.evidence --runs runs --out reports/evidence     # the `evidence` stage of dvc.yaml

Why: ``make repro`` has an hour on two cores, and the whole study takes longer. The stages of dvc.yaml marked
``meta: {set: extended}`` (the text chain, the budget axis, Figure 2's method families, Figures 4 and 5, the
companion paper's tenBCD study) run
only in ``make repro-extended`` (or a plain ``dvc repro``); ``make repro`` runs the rest, which decides
claim (b) on both datasets with intervals. So that the report and the notebooks still cover every claim, the
extended runs' ``metrics.json``, ``log.jsonl`` and ``ranks.json`` (never their weights; for the tenBCD study
its ``metrics.json`` and ``history.json``) are copied into ``reports/evidence/runs/<sweep>/...`` and committed,
with a manifest saying which machine and which sources made them (the ``lowrank`` library's and the ``tenbcd``
package's hashes). A sweep is read from ``runs/`` first and from here for the runs this checkout lacks
(:mod:`study.runs`); REPORT.md says, per sweep, which of the two it read.

The run folders copied are the ``runs/`` outputs of the extended stages, read from DVC's own resolution of
dvc.yaml (:func:`extended_run_folders`), so the list is never written twice.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["EXTENDED", "FILES", "MANIFEST", "extended_run_folders", "library_hash", "collect", "add_folders",
           "manifest_text", "main"]

#: the ``meta.set`` of dvc.yaml's stages that ``make repro`` leaves to ``make repro-extended``
EXTENDED = "extended"
#: what is kept of a run: its numbers and its rank history, not its weights (history.json: a tenBCD study's curves)
FILES = ("metrics.json", "log.jsonl", "ranks.json", "history.json")
#: the packages whose source hashes the manifest records: the library, and the companion paper's tenBCD
PACKAGES = ("lowrank", "tenbcd")
#: the manifest's name inside the evidence folder
MANIFEST = "MANIFEST.json"


def extended_run_folders(repo_root: str | Path = ".") -> list[str]:
    """The run folders (outputs under ``runs/``) of dvc.yaml's stages whose ``meta.set`` is :data:`EXTENDED`,
    from DVC's resolution of dvc.yaml (``foreach`` expanded)."""
    from dvc.repo import Repo

    folders = []
    with Repo(str(repo_root)) as repo:
        for stage in repo.index.stages:
            meta = getattr(stage, "meta", None) or {}
            if isinstance(meta, dict) and meta.get("set") == EXTENDED:
                folders += [Path(o.def_path).as_posix() for o in stage.outs
                            if Path(o.def_path).as_posix().startswith("runs/")]
    return sorted(folders)


def library_hash(root: str | Path) -> str:
    """SHA-256 over the relative paths and bytes of every ``*.py`` file of the package folder ``root``
    (``lowrank``): equal hashes mean the evidence was made by the library this checkout holds."""
    h = hashlib.sha256()
    root = Path(root)
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _library_root(package: str = "lowrank") -> Path:
    """The folder of the installed ``package`` (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed (pip install -e .)")
    return Path(list(spec.submodule_search_locations)[0])


def _source_hashes(library: str | Path | None, tenbcd: str | Path | None) -> dict[str, str]:
    """``{"library_sha256": …, "tenbcd_sha256": …}`` of the given folders, or of the installed packages."""
    return {"library_sha256": library_hash(_library_root() if library is None else library),
            "tenbcd_sha256": library_hash(_library_root("tenbcd") if tenbcd is None else tenbcd)}


def _machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def _copy_runs(runs_dir: Path, folder: str, dest_root: Path) -> int:
    """Copy :data:`FILES` of every finished run (a folder with ``metrics.json``) under ``folder`` (a path
    ``runs/<sweep>/...``, ``runs_dir`` standing for ``runs``) to ``dest_root/runs/...``; returns how many. A folder
    with no finished run is an error (the evidence would silently lose a sweep)."""
    src = runs_dir / Path(folder).relative_to("runs")
    runs = sorted(p.parent for p in src.rglob("metrics.json")) if src.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"evidence: {src} holds no finished run (no metrics.json); run its stage first")
    for run in runs:
        dest = dest_root / "runs" / run.relative_to(runs_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (run / name).is_file():
                shutil.copyfile(run / name, dest / name)
    return len(runs)


def _provenance(command: str, library, tenbcd) -> dict[str, Any]:
    return {"made_by": command, "machine": _machine(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **_source_hashes(library, tenbcd)}


def _replace(out_dir: Path, new: Path) -> None:
    """``new`` becomes ``out_dir`` in one rename (the old folder is moved aside first, then removed)."""
    old = out_dir.with_name(f".{out_dir.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    new.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def collect(runs_dir: str | Path, out_dir: str | Path, folders: list[str], *, command: str,
            library: str | Path | None = None, tenbcd: str | Path | None = None) -> dict[str, Any]:
    """Copy the finished runs under each of ``folders`` into ``out_dir/runs/...`` (:func:`_copy_runs`), with
    :data:`MANIFEST`; the old ``out_dir`` is replaced in one rename. ``library`` and ``tenbcd`` are the source
    folders whose hashes the manifest records (default: the installed ``lowrank`` and ``tenbcd``)."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        counts = {folder: _copy_runs(runs_dir, folder, tmp) for folder in folders}
        manifest = {**_provenance(command, library, tenbcd), "runs_per_folder": counts}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace(out_dir, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def add_folders(runs_dir: str | Path, out_dir: str | Path, folders: list[str], *, command: str,
                library: str | Path | None = None, tenbcd: str | Path | None = None) -> dict[str, Any]:
    """Add the runs of ``folders`` to an existing evidence folder without re-making the rest (a sweep made later,
    on another machine or library than the others): each folder's provenance goes under the manifest's
    ``added`` (command, machine, time, source hashes, runs), beside the provenance of the rest. A folder already
    in the evidence is replaced whole. Written through a temporary copy and one rename, as :func:`collect`."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    if not (out_dir / MANIFEST).is_file():
        raise FileNotFoundError(f"evidence: no {MANIFEST} in {out_dir}; make the evidence with collect() first")
    manifest = json.loads((out_dir / MANIFEST).read_text())
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        staged = tmp / "staged"
        shutil.copytree(out_dir, staged)
        added = dict(manifest.get("added", {}))
        for folder in folders:
            shutil.rmtree(staged / "runs" / Path(folder).relative_to("runs"), ignore_errors=True)
            added[folder] = {**_provenance(command, library, tenbcd), "runs": _copy_runs(runs_dir, folder, staged)}
        manifest["added"] = added
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace(out_dir, staged)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def manifest_text(evidence_dir: str | Path, library: str | Path | None = None,
                  tenbcd: str | Path | None = None) -> str:
    """One paragraph for REPORT.md: where the committed evidence came from, and whether the sources that made
    it are this checkout's (empty when there is no evidence folder). A manifest from before the tenBCD study
    joined the extended set records no ``tenbcd`` hash; only the library's is compared then."""
    path = Path(evidence_dir) / MANIFEST
    if not path.is_file():
        return ""
    m = json.loads(path.read_text())
    now = _source_hashes(library, tenbcd)
    differ = [f"`{name}`" for key, name in (("library_sha256", "lowrank"), ("tenbcd_sha256", "tenbcd"))
              if key in m and m[key] != now[key]]
    same = "library_sha256" in m and not differ
    n = sum(m.get("runs_per_folder", {}).values())
    return (f"`make repro` runs the core parameter set of dvc.yaml; the sweeps read from the committed evidence "
            f"above come from the extended set (`make repro-extended`, which also rewrites the evidence). The "
            f"evidence (`{Path(evidence_dir).as_posix()}`, {n} runs without their weights: "
            f"{', '.join(f'`{k}`' for k in sorted(m.get('runs_per_folder', {})))}) was copied from those stages' "
            f"runs by `{m.get('made_by')}` on {m.get('machine')} at {m.get('utc')}; they were made with "
            + ("the sources this checkout holds (same "
               + " and ".join(f"`{n}`" for k, n in (("library_sha256", "lowrank"), ("tenbcd_sha256", "tenbcd"))
                              if k in m) + " source hash)." if same else
               f"**a different {' and '.join(differ) or '`lowrank`'} source than this checkout's**: re-run "
               "`make repro-extended` before trusting the verdicts that read it.")
            + "".join(f" The runs of `{folder}` ({a['runs']}) were added later by `{a['made_by']}` "
                      f"on {a['machine']} at {a['utc']}, with "
                      + ("this checkout's `lowrank` source." if a.get("library_sha256") == now["library_sha256"]
                         else "**a different `lowrank` source than this checkout's**.")
                      for folder, a in sorted(m.get("added", {}).items())))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m study.evidence", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs", help="the runs folder (default: runs)")
    ap.add_argument("--out", default="reports/evidence", help="the evidence folder (default: reports/evidence)")
    ap.add_argument("--add", nargs="+", metavar="FOLDER",
                    help="add only these run folders (runs/<sweep>[/<base>]) to the existing evidence")
    args = ap.parse_args(argv)
    command = "python -m study.evidence " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.add:
        m = add_folders(args.runs, args.out, args.add, command=command.strip())
        print(f"evidence: added {', '.join(args.add)} → {args.out}")
        return 0
    folders = extended_run_folders()
    m = collect(args.runs, args.out, folders, command=command.strip())
    print(f"evidence: {sum(m['runs_per_folder'].values())} runs of {len(folders)} folders → {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
