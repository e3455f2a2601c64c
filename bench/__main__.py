"""Run every benchmark, each in a fresh process, then write ``reports/bench/SUMMARY.md``.

    python -m bench --quick          # about 5 minutes on 2 shared cores
    python -m bench                  # larger batches, more repeats, 1 and 2 threads (about 15 minutes)
    python -m bench --only layer,fisher

Each script runs in its own process because some switch process-wide state that cannot be undone
(``bench.common.retain_freed_memory``). Everything but the layer benchmark runs on one thread:
on a machine shared with other jobs, a two-thread GEMM waits at every barrier for whichever thread
was descheduled, which makes two-thread ratios swing by 2× between runs; the full layer benchmark
measures one and two threads so both are on record.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from .summary import write_summary

SCRIPTS = ("layer", "models", "compression", "fisher", "fisher_rows", "memory", "tt")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--only", default=",".join(SCRIPTS))
    args = p.parse_args(argv)
    failed = []
    for name in args.only.split(","):
        cmd = [sys.executable, "-m", f"bench.{name}", "--device", args.device]
        cmd += ["--quick"] if args.quick else []
        cmd += [] if name == "layer" else ["--threads", "1"]
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, check=False).returncode
        print(f"[bench] {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    command = "python -m bench" + (" --quick" if args.quick else "")
    print(f"[bench] summary → {write_summary(command=command)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
