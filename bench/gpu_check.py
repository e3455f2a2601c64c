"""One command for a GPU machine: the ``cuda`` tests, then the benchmark ratios of ``reports/bench/`` on CUDA.

    python -m bench.gpu_check                        # on the GPU machine: PYTHONPATH=. , nothing installed
    python -m bench.gpu_check --time-limit 300       # stop starting new steps after 300 s (default 360)
    python -m bench.gpu_check --only tests,layer -k fisher
    python -m bench.gpu_check --dry-run --out /tmp/x # the same on the CPU (OPFACT_CUDA_TESTS_DEVICE=cpu), to test it

Steps, in order (``--only`` picks some): ``tests`` (``pytest -m cuda tests/test_cuda.py``, its counts read from a
JUnit XML), then each benchmark script of ``bench.__main__.SCRIPTS`` with ``--quick --device cuda`` (one thread
on the host, as ``python -m bench`` does), each in its own process with what is left of the time limit as its
timeout. A step that would start after the limit is recorded as not run. Writes ``OUT/<script>.json`` (the
scripts' own reports), ``OUT/gpu_check.json`` (every step's exit status, wall time and the environment: torch,
CUDA, the device, and the optional packages found) and ``OUT/SUMMARY.md`` (``bench.summary`` over ``OUT``).
Exit status: 0 when every step that ran passed, 1 otherwise.

The GPU machine is not ours: its Python and torch differ from the pinned ones, and it receives only the
working tree (no ``.venv``, no MiniLM weights: the benchmarks build random-init models of the same shapes).
So this script uses the standard library only, and detects what the environment has instead of assuming it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from .__main__ import SCRIPTS

REPO = Path(__file__).resolve().parents[1]
STEPS = ("tests",) + SCRIPTS
DEFAULT_OUT = REPO / "reports" / "bench" / "cuda"
OPTIONAL = ("timm", "transformers", "safetensors", "tqdm", "yaml", "numpy", "scipy", "sklearn", "hypothesis",
            "tensorly", "mnist1d")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="run everything on the CPU (the tests via "
                   "OPFACT_CUDA_TESTS_DEVICE=cpu): checks the script, measures nothing about a GPU")
    p.add_argument("--out", type=Path, default=None, help=f"report folder (default {DEFAULT_OUT.relative_to(REPO)}; "
                   "a dry run must name one, so that it never overwrites the GPU figures)")
    p.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {list(STEPS)}")
    p.add_argument("-k", dest="keyword", default=None, help="pytest -k expression for the tests step")
    p.add_argument("--time-limit", type=float, default=360.0, help="seconds; no step starts after it (default 360)")
    args = p.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in STEPS]
    if bad or not only:
        p.error(f"--only={args.only!r}: unknown steps {bad}; allowed: {list(STEPS)}")
    if not args.time_limit > 0:
        p.error(f"--time-limit={args.time_limit}: must be > 0 seconds")
    if args.dry_run and args.out is None:
        p.error("--dry-run needs --out (a dry run must not overwrite the GPU figures in "
                f"{DEFAULT_OUT.relative_to(REPO)})")
    args.only = only
    args.out = (args.out or DEFAULT_OUT).resolve()
    return args


def environment(device: str) -> dict:
    """What this machine has: detected in a child process, so that a broken torch cannot stop the report."""
    probe = ("import json, torch; d = {'torch': torch.__version__, 'cuda_available': torch.cuda.is_available(), "
             "'cuda': torch.version.cuda}\n"
             "if torch.cuda.is_available():\n"
             "    p = torch.cuda.get_device_properties(0)\n"
             "    d.update(device_name=p.name, capability=f'{p.major}.{p.minor}', memory_gib=p.total_memory / 2**30,"
             " device_count=torch.cuda.device_count())\n"
             "print(json.dumps(d))")
    env = {"python": platform.python_version(), "platform": platform.platform(), "requested_device": device,
           "packages": {m: importlib.util.find_spec(m) is not None for m in OPTIONAL}}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=child_env({}))
    env.update(json.loads(r.stdout) if r.returncode == 0 else {"torch_error": r.stderr[-2000:]})
    return env


def child_env(extra: dict) -> dict:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return env


def junit_counts(path: Path) -> dict:
    """Counts of a pytest JUnit XML (passed, failed, errors, skipped) and the skip / failure messages."""
    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "problems": []}
    for s in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            out[key] += int(s.get(key, 0))
        for case in s.iter("testcase"):
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    out["problems"].append({"test": f"{case.get('classname')}::{case.get('name')}", "kind": child.tag,
                                            "message": (child.get("message") or "")[:300]})
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    return out


def run_step(name: str, args: argparse.Namespace, device: str, timeout: float) -> dict:
    t0 = time.perf_counter()
    if name == "tests":
        xml = Path(tempfile.mkdtemp()) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/test_cuda.py",
               f"--junitxml={xml}"] + (["-k", args.keyword] if args.keyword else [])
        extra = {"OPFACT_CUDA_TESTS_DEVICE": "cpu"} if args.dry_run else {}
    else:
        cmd = [sys.executable, "-m", f"bench.{name}", "--quick", "--device", device, "--out", str(args.out)]
        cmd += [] if name == "layer" else ["--threads", "1"]
        extra = {}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=child_env(extra), timeout=timeout)
        rc, tail = r.returncode, (r.stdout + r.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        tail = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))[-3000:]
    step = {"step": name, "command": " ".join(cmd[1:]), "rc": rc, "wall_s": time.perf_counter() - t0,
            "output_tail": tail}
    if name == "tests":
        step["counts"] = junit_counts(xml)
    return step


def main(argv=None) -> int:
    args = parse_args(argv)
    device = "cpu" if args.dry_run else "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = {"dry_run": args.dry_run, "time_limit_s": args.time_limit, "environment": environment(device), "steps": []}
    if not args.dry_run and not report["environment"].get("cuda_available"):
        print("[gpu_check] no CUDA device: nothing to measure (use --dry-run to check the script on the CPU)")
        report["steps"] = [{"step": s, "rc": "not run (no CUDA device)"} for s in args.only]
        _write(args, report, start)
        return 1
    for name in args.only:
        left = args.time_limit - (time.perf_counter() - start)
        if left <= 0:
            report["steps"].append({"step": name, "rc": "not run (time limit)"})
            continue
        step = run_step(name, args, device, left)
        report["steps"].append(step)
        counts = step.get("counts") or {}
        extra = (f": {counts.get('passed', 0)} passed, {counts.get('failures', 0) + counts.get('errors', 0)} failed, "
                 f"{counts.get('skipped', 0)} skipped") if name == "tests" else ""
        print(f"[gpu_check] {name}: exit {step['rc']} after {step['wall_s']:.0f} s{extra}", flush=True)
    _write(args, report, start)
    ran = [s for s in report["steps"] if not str(s["rc"]).startswith("not run")]
    return 0 if ran and all(s["rc"] == 0 for s in ran) else 1


def _write(args: argparse.Namespace, report: dict, start: float) -> None:
    """``gpu_check.json`` with the standard library only (temp file + rename), then the summary, whose failure
    (say ``lowrank`` cannot import on this machine) is recorded rather than raised."""
    report["wall_s"] = time.perf_counter() - start
    if any(s["step"] != "tests" and s["rc"] == 0 for s in report["steps"]):
        try:
            from .summary import write_summary
            report["summary"] = str(write_summary(args.out, command="python -m bench.gpu_check"
                                                  + (" --dry-run" if args.dry_run else "")))
        except Exception as e:  # noqa: BLE001 - the JSON must be written whatever the summary does
            report["summary_error"] = f"{type(e).__name__}: {e}"
    path = args.out / "gpu_check.json"
    fd, tmp = tempfile.mkstemp(dir=args.out, prefix=".gpu_check.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=1, default=str)
    os.replace(tmp, path)
    print(f"[gpu_check] → {path}")


if __name__ == "__main__":
    sys.exit(main())
