"""Loading ``runs/`` for every paper artifact (Table 1, Figures 2–5): one row per finished run, per
evaluation record, per rank event.

Run folders (``runs/<sweep>/<run>/``, written by :mod:`lowrank.train`) hold ``metrics.json`` (final
numbers and the validated ``spec``), ``log.jsonl`` (one record per evaluation: ``start`` right after
the method's setup — the zero-shot accuracy of a one-shot projection —, one ``epoch`` record per
epoch, ``final`` after compilation) and ``ranks.json`` (each layer's rank at every convert / cut /
project / truncate / compile event). A run is identified by its spec (method, method_args, train
budget), never by its folder name; a folder without ``metrics.json`` (a run still going) is skipped. Here
on the committed evidence (``runs`` for this checkout's own runs):

>>> from study.runs import load_runs, load_points
>>> runs = load_runs("reports/evidence/runs", "fig2")       # one row per finished run, spec fields flattened
>>> points = load_points("reports/evidence/runs", "fig2")   # one row per evaluation (log.jsonl record)
>>> len(points) > len(runs) > 0
True

``runs_dir`` may also be a sequence of folders searched in order, a run found in an earlier one hiding the
same run (same path below the sweep) in a later one: ``("runs", "reports/evidence/runs")`` reads this
checkout's runs and, for the sweeps it did not run, the committed evidence of the extended parameter set
(:mod:`study.evidence`). Every row says where it came from (``evidence``: read from a folder after the
first).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from .families import IHT_FAMILY

__all__ = ["BASES", "RunsDirs", "run_roots", "read_run", "load_runs", "load_points", "load_rank_trajectories",
           "borrowed_runs", "bases_of", "same_base_files"]

#: the sweep of pre-trained bases every compression run starts from (the paper's Table 3, "Base Training")
BASES = "pretrain"

_RECORD_FIELDS = ("kind", "step", "epoch", "train_loss", "eval_loss", "accuracy", "params_total", "params_target",
                  "params_target_compiled", "compression_ratio_target", "params_total_compiled",
                  "compression_ratio_total", "lr", "val_accuracy", "val_loss")
_RUN_KEYS = ("run", "sweep", "path", "method", "setting", "dataset", "model", "epochs", "random_state",
             "schedule", "rank", "synthetic", "evidence", "base_sha256")

#: one run folder, or several searched in order (the first that has a run wins)
RunsDirs = Union[str, Path, Sequence[Union[str, Path]]]


def run_roots(runs_dir: RunsDirs) -> tuple[Path, ...]:
    """``runs_dir`` as a tuple of folders, in search order (empty entries dropped)."""
    dirs = [runs_dir] if isinstance(runs_dir, (str, Path)) else list(runs_dir)
    roots = tuple(Path(d) for d in dirs if str(d))
    if not roots:
        raise ValueError(f"runs_dir={runs_dir!r}: no folder to read runs from")
    return roots


def _flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key))
        elif isinstance(v, Mapping):
            out[key] = "{}"
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)   # hashable, so runs group and deduplicate
        else:
            out[key] = v
    return out


def _format_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _setting(method_args: Mapping[str, Any]) -> str:
    """A short label of a run's method settings, e.g. ``oialr_frequency=2, oialr_threshold=0.95``."""
    items = [(k, v) for k, v in sorted(method_args.items()) if k != "targets"]
    return ", ".join(f"{k}={_format_value(v)}" for k, v in items) or "defaults"


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}: skipping a line that is not JSON", stacklevel=3)
    return records


def read_run(run_dir: str | Path, sweep: str = "", root: str | Path | None = None) -> dict[str, Any] | None:
    """One finished run as a flat dict (``None`` when ``metrics.json`` is missing or unreadable).

    Keys: ``run`` (folder relative to the sweep), ``sweep``, ``path``, ``method``, ``setting`` (label
    of ``spec.method_args``), ``dataset``, ``model``, ``epochs`` and ``random_state`` (from
    ``spec.train``), ``schedule`` (``oialr_depth_schedule``, ``constant`` by default for the
    methods that have one), ``rank`` (the one-shot rank), every scalar of ``metrics.json``,
    ``start_accuracy`` / ``start_compression_ratio_target`` (the ``start`` record: the zero-shot
    numbers of a one-shot method), and the whole spec flattened as ``spec.<key>.<key>``.
    """
    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not mpath.is_file():
        return None
    try:
        metrics = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError):
        warnings.warn(f"{mpath}: unreadable, skipped", stacklevel=2)
        return None
    spec = metrics.get("spec") or {}
    margs = dict(spec.get("method_args") or {})
    train = dict(spec.get("train") or {})
    method = metrics.get("method") or spec.get("method") or "unknown"
    schedule = margs.get("oialr_depth_schedule")
    if schedule is None and method in IHT_FAMILY + ("trp", "fwtrp"):
        schedule = "constant"
    rel = run_dir.relative_to(root).as_posix() if root is not None else run_dir.name
    row: dict[str, Any] = {
        "run": rel, "sweep": sweep, "path": str(run_dir), "method": method, "setting": _setting(margs),
        "dataset": metrics.get("dataset", spec.get("dataset")), "model": metrics.get("model", spec.get("model")),
        "epochs": train.get("epochs"), "random_state": train.get("random_state"), "schedule": schedule,
        "rank": margs.get("rank"), "synthetic": bool(metrics.get("synthetic", False)), "evidence": False,
    }
    for k, v in metrics.items():
        if k not in ("spec",) and not isinstance(v, (Mapping, list, tuple)) and k not in row:
            row[k] = v
    start = next((r for r in _read_jsonl(run_dir / "log.jsonl") if r.get("kind") == "start"), None)
    row["start_accuracy"] = start.get("accuracy") if start else np.nan
    row["start_compression_ratio_target"] = start.get("compression_ratio_target") if start else np.nan
    row.update(_flatten(spec, "spec"))
    return row


def _run_dirs(runs_dir: RunsDirs, sweep: str) -> list[tuple[Path, Path, bool]]:
    """(sweep root, run folder, from a later folder) of every finished run, the first folder's run winning
    over a later one's at the same path below the sweep."""
    found: dict[str, tuple[Path, Path, bool]] = {}
    for i, base in enumerate(run_roots(runs_dir)):
        root = base / sweep
        if not root.is_dir():
            continue
        for p in sorted(q.parent for q in root.rglob("metrics.json")):
            found.setdefault(p.relative_to(root).as_posix(), (root, p, i > 0))
    return [found[k] for k in sorted(found)]


def load_runs(runs_dir: RunsDirs, sweep: str) -> pd.DataFrame:
    """One row per finished run of ``runs_dir/sweep`` (see :func:`read_run`; several folders: see the
    module's docstring); empty (with the key columns) when the sweep is absent."""
    rows = []
    for root, d, later in _run_dirs(runs_dir, sweep):
        if (r := read_run(d, sweep, root)) is not None:
            r["evidence"] = later
            rows.append(r)
    if not rows:
        return pd.DataFrame(columns=list(_RUN_KEYS) + ["accuracy", "compression_ratio_target", "start_accuracy"])
    return pd.DataFrame(rows).sort_values("run", kind="mergesort").reset_index(drop=True)


def borrowed_runs(runs: pd.DataFrame, names: tuple[str, ...] | list[str], bases: set[str]) -> pd.DataFrame:
    """The rows of ``runs`` (another sweep's :func:`load_runs`) named ``<base>/<name>``, for every base of
    ``bases`` (the first folder of a run: ``digits_k0``) and name of ``names``: a figure's setting that the
    other sweep already runs with the same spec on the same bases, so that it is run once, not twice (the
    tests check the specs agree)."""
    if runs.empty:
        return runs
    wanted = {f"{b}/{n}" for b in bases for n in names}
    return runs[runs["run"].isin(wanted)].reset_index(drop=True)


def same_base_files(frame: pd.DataFrame, like: pd.DataFrame, what: str = "runs",
                    command: str = "") -> tuple[pd.DataFrame, list[str]]:
    """The rows of ``frame`` (runs or points of one sweep) made from a base file that ``like``'s runs on the
    same base were made from (the base folder, ``digits_k0``, and the file's content hash the run recorded; an
    unrecorded hash only matches an unrecorded one; a base ``like`` has no runs on is kept: nothing to mix
    with), and a note per base whose rows were left out, naming ``what`` and the ``command`` that re-makes
    them: no comparison mixes runs made from different base files."""
    if frame.empty or like.empty or "run" not in frame or "run" not in like:
        return frame, []

    def folder(d: pd.DataFrame) -> pd.Series:
        return d["run"].astype(str).str.split("/").str[0]

    def key(d: pd.DataFrame) -> pd.Series:   # runs made before hashes were recorded have none
        sha = d["base_sha256"] if "base_sha256" in d else pd.Series("", index=d.index)
        return folder(d) + "|" + sha.fillna("").astype(str)
    ok = key(frame).isin(set(key(like))) | ~folder(frame).isin(set(folder(like)))
    notes = [f"{g['run'].nunique()} {what} on {base} made from another file of that base than the runs they "
             f"would be compared with (left out" + (f"; re-make them with `{command.format(base=base)}`" if command
                                                    else "") + ")"
             for base, g in frame[~ok].groupby(frame.loc[~ok, "run"].astype(str).str.split("/").str[0])]
    return frame[ok], notes


def bases_of(runs: pd.DataFrame) -> set[str]:
    """The bases a sweep's runs start from: the first folder of each run (``digits_k0/ieht_80`` → ``digits_k0``)."""
    return {str(r).split("/")[0] for r in runs["run"]} if len(runs) else set()


def load_points(runs_dir: RunsDirs, sweep: str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per evaluation record (``log.jsonl``) of every finished run, with the run's key columns
    (method, setting, dataset, epochs, random_state, schedule, rank) attached; ``pct_target`` is
    ``100 · compression_ratio_target``. A run without ``log.jsonl`` contributes its final metrics."""
    runs = load_runs(runs_dir, sweep) if runs is None else runs
    rows = []
    for run in runs.to_dict("records"):
        records = _read_jsonl(Path(run["path"]) / "log.jsonl")
        if not records:
            records = [{"kind": "final", **{k: run.get(k) for k in _RECORD_FIELDS if k in run}}]
        keys = {k: run.get(k) for k in _RUN_KEYS}
        for rec in records:
            row = dict(keys)
            row.update({k: rec.get(k) for k in _RECORD_FIELDS})
            ranks = rec.get("ranks") or {}
            row["ranks"] = ranks
            row["mean_rank"] = float(np.mean(list(ranks.values()))) if ranks else np.nan
            rows.append(row)
    cols = list(_RUN_KEYS) + list(_RECORD_FIELDS) + ["ranks", "mean_rank", "pct_target"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    for c in ("accuracy", "compression_ratio_target", "eval_loss", "compression_ratio_total", "val_accuracy",
              "val_loss"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["pct_target"] = 100.0 * df["compression_ratio_target"]
    return df[cols]


def load_rank_trajectories(runs_dir: RunsDirs, sweep: str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (run, rank event, layer) from ``ranks.json``: run keys + ``event_index``, ``event``
    (convert / cut / project / truncate / compile), ``step``, ``epoch``, ``layer``, ``layer_index`` and
    ``rank``."""
    runs = load_runs(runs_dir, sweep) if runs is None else runs
    rows = []
    for run in runs.to_dict("records"):
        path = Path(run["path"]) / "ranks.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            warnings.warn(f"{path}: unreadable, skipped", stacklevel=2)
            continue
        keys = {k: run.get(k) for k in _RUN_KEYS}
        for i, ev in enumerate(data.get("trajectory") or []):
            for j, (layer, rank) in enumerate((ev.get("ranks") or {}).items()):
                rows.append({**keys, "event_index": i, "event": ev.get("event", "cut"), "step": ev.get("step"),
                             "epoch": ev.get("epoch"), "layer": layer, "layer_index": j, "rank": rank})
    cols = list(_RUN_KEYS) + ["event_index", "event", "step", "epoch", "layer", "layer_index"]
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows)
