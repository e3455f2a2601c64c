"""Verdicts that hold on another CPU: the decisive core sweeps re-made under another kernel setting, and every
verdict recomputed from them beside the verdict of the runs as made.

Another CPU changes summation orders (vector width, blocking); over hundreds of training steps last-bit
differences grow, so a verdict that flips under such a change was never decided. ``python -m study.stability``
re-runs the groups of ``--sweeps`` (default: the decisive sweep ``repeats`` and Table 1's ``table1``) from the
committed bases under one of :data:`KERNEL_SETTINGS` (the settings ``make test-kernels`` uses), into
``build/stability/<setting>/runs``, then writes ``reports/stability/<setting>.{json,md}``: each verdict as made
and as re-made, and whether its decision (reproduced / not reproduced / inconclusive) is the same.

    python -m study.stability --setting mkl_avx2 [--sweeps repeats,table1] [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from lowrank.utils import atomic_write_text

from .notebook import foreach_items
from .registry import Inputs
from .verdicts import decision
from .writers import markdown_table

__all__ = ["KERNEL_SETTINGS", "decision", "remake", "compare", "main"]

#: kernel settings that change summation orders the way another CPU would (tests/kernel_variation.py runs the
#: numeric tests under the same ones)
KERNEL_SETTINGS: dict[str, dict[str, str]] = {
    "base": {},
    "threads1": {"OPFACT_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "mkl_avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "mkl_sse42": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default"},
    "mkl_cbwr": {"MKL_CBWR": "COMPATIBLE"},
}


def remake(setting: str, sweeps: list[str], out: Path, jobs: int = 2) -> list[tuple[str, float]]:
    """Run every group of ``sweeps`` (dvc.yaml's ``foreach`` over grid.yaml) under ``setting`` into
    ``out/runs/<sweep>/<group>``; returns (group, seconds)."""
    env = {**os.environ, **KERNEL_SETTINGS[setting]}
    env.pop("OPFACT_RUN_CACHE", None)   # a cached run of the default setting would be restored, not re-made
    groups = [(s, k) for s in sweeps for k in foreach_items(f"groups.{s}")]
    if not groups:
        raise ValueError(f"--sweeps {sweeps}: no groups in grid.yaml; allowed: the grid's sweeps")

    def one(group: tuple[str, str]) -> tuple[str, float]:
        sweep, key = group
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lowrank", "sweep", f"params:{sweep}.{key}", "--out",
                        str(out / "runs" / sweep / key), "--cache-dir", "cache/data", "--quiet"], env=env, check=True)
        return f"{sweep}@{key}", time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, groups))


def compare(remade_runs: Path, runs: str = "runs", evidence: str = "reports/evidence/runs",
            reports: str = "reports") -> list[dict[str, str]]:
    """Every verdict from ``runs`` (then the evidence) and from ``remade_runs`` first (then the same folders):
    claim, decision as made, decision as re-made, whether they agree, and both verdicts' effects."""
    from .report import claim_verdicts

    made, _ = claim_verdicts(inputs=Inputs((runs, evidence), reports))
    again, _ = claim_verdicts(inputs=Inputs((str(remade_runs), runs, evidence), reports))
    again_by = {v.claim: v for v in again}
    rows = []
    for v in made:
        w = again_by.get(v.claim)
        rows.append({"claim": v.claim, "as made": decision(v.verdict), "effect as made": v.effect,
                     "re-made": decision(w.verdict) if w else "missing", "effect re-made": w.effect if w else "",
                     "same": "yes" if w and decision(w.verdict) == decision(v.verdict) else "NO"})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m study.stability", description=__doc__.split("\n")[0])
    ap.add_argument("--setting", default="mkl_avx2", choices=[s for s in KERNEL_SETTINGS if s != "base"])
    ap.add_argument("--sweeps", default="repeats,table1", help="comma-separated grid sweeps to re-make")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="build/stability", help="where the re-made runs go (git-ignored)")
    ap.add_argument("--reports", default="reports")
    ap.add_argument("--compare-only", action="store_true", help="recompute the comparison from runs made before")
    args = ap.parse_args(argv)
    out = Path(args.out) / args.setting
    timings = [] if args.compare_only else remake(args.setting, args.sweeps.split(","), out, args.jobs)
    rows = compare(out / "runs", reports=args.reports)
    machine = " ".join(os.uname()[4:]) + f", {os.cpu_count()} cores"
    payload = {"setting": args.setting, "env": KERNEL_SETTINGS[args.setting], "sweeps": args.sweeps.split(","),
               "machine": machine, "group_seconds": dict(timings), "verdicts": rows,
               "flipped": [r["claim"] for r in rows if r["same"] != "yes"]}
    dest = Path(args.reports) / "stability"
    atomic_write_text(dest / f"{args.setting}.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(dest / f"{args.setting}.md",
                      f"Verdicts as made and with {', '.join(payload['sweeps'])} re-made under `{args.setting}` "
                      f"({', '.join(f'{k}={v}' for k, v in payload['env'].items())}); {machine}.\n\n"
                      + markdown_table(pd.DataFrame(rows)) + "\n")
    print(f"{len(payload['flipped'])} of {len(rows)} verdicts changed: {', '.join(payload['flipped']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
