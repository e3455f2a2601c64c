"""Shared helpers of the benchmark scripts: interleaved timing, machine description, report files.

    python -m bench.layer --quick        # one benchmark (see each script's docstring)
    python -m bench --quick              # all of them, then reports/bench/SUMMARY.md

Every number the benchmarks report is a *ratio measured inside one process run*: the candidates
(dense vs factorised, naive vs optimised) run round-robin, in alternating order, and each
candidate's median is taken. On a machine shared with other jobs the absolute times drift by
tens of percent between minutes; drift that hits all candidates of one round alike cancels in the
ratio. Absolute times are recorded too, for orientation only.

``torch.utils.benchmark.Timer`` is not used for the rounds: its ``timeit`` warms up (at least two
extra calls) before every measurement, which triples the cost of the slow candidates (a ViT-B/16
forward) and breaks the round-robin. The clock below synchronises the accelerator like Timer's.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import ctypes.util
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from lowrank.utils import atomic_write_json

__all__ = ["REPORT_DIR", "clock", "interleaved", "machine", "retain_freed_memory", "peak_rss_mib", "reset_peak_rss",
           "count_flops", "write_report", "base_parser", "setup_threads", "fraction_rank"]

REPORT_DIR = Path(__file__).resolve().parents[1] / "reports" / "bench"


def clock(device: torch.device | str = "cpu") -> float:
    """Wall time after the device's queued work is done (a no-op sync on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def interleaved(candidates: Mapping[str, Callable[[], Any]], *, repeats: int = 7, warmup: int = 1,
                device: torch.device | str = "cpu") -> dict[str, dict[str, Any]]:
    """Median seconds per call of each candidate, measured round-robin.

    Odd rounds run the candidates in reverse order so that none always follows the same one
    (a candidate that leaves caches cold or memory fragmented would otherwise bias its successor).
    """
    names = list(candidates)
    first: dict[str, float] = {}
    for name in names:
        for i in range(warmup):
            t0 = clock(device)
            candidates[name]()
            if i == 0:
                first[name] = clock(device) - t0
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = clock(device)
            candidates[name]()
            samples[name].append(clock(device) - t0)
    return {n: {"median_s": statistics.median(v), "min_s": min(v), "samples_s": v, "first_s": first.get(n)}
            for n, v in samples.items()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str:
    cfg = torch.__config__.show()
    for key in ("BLAS_INFO", "LAPACK_INFO"):
        for part in cfg.replace(",", "\n").splitlines():
            if part.strip().startswith(key):
                return part.strip()
    return "unknown"


def machine(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on, including the load other jobs put on the machine."""
    dev = torch.device(device)
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "blas": _blas(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "gpu_measured": dev.type == "cuda",
    }
    try:
        info["load_average_1m"] = os.getloadavg()[0]
    except OSError:
        info["load_average_1m"] = None
    return info


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def retain_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory instead of returning it to the kernel.

    By default glibc serves every block above 32 MiB with a fresh ``mmap`` and unmaps it on free,
    so a (3152, 3072) float32 output (38.7 MB) is page-faulted and zeroed by the kernel on every
    call: about 14 ms on the 2-core reference machine, as long as the whole second GEMM of a 10%
    factorisation. Caching allocators (jemalloc, tcmalloc) avoid this; this switch does the same
    for glibc, for this process only. Returns False where it cannot apply (not glibc).
    """
    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    except (OSError, AttributeError):
        return False
    return bool(ok)


def peak_rss_mib() -> float:
    """Peak resident set of this process since it started or since :func:`reset_peak_rss`.

    Linux's ``VmHWM`` where available (it can be reset), else ``ru_maxrss`` (KiB on Linux, bytes
    on macOS; never reset).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if platform.system() == "Darwin" else 1)


def reset_peak_rss() -> bool:
    """Start a new peak-memory window (Linux): return freed heap memory to the kernel, then reset
    ``VmHWM`` to the current resident set, so the next :func:`peak_rss_mib` covers only what runs
    after this call. False where it cannot (the peak then still counts everything before)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        if name:
            ctypes.CDLL(name).malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except (OSError, AttributeError):
        return False


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call as counted by ``torch.utils.flop_counter`` (matrix products; 2 per FMA)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def fraction_rank(out_features: int, in_features: int, fraction: float, *, core: bool = False) -> int:
    """Largest rank whose factorisation stores at most ``fraction`` of the dense ``m·n`` numbers
    (``core=True`` also counts the k×k trained core of the training form)."""
    m, n = out_features, in_features
    k = max(1, int(fraction * m * n / (m + n)))
    while k > 1 and k * (m + n) + (k * k if core else 0) > fraction * m * n:
        k -= 1
    return k


def write_report(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    path = (out_dir or REPORT_DIR) / f"{name}.json"
    atomic_write_json(path, payload)
    return path


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (about a minute)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    p.add_argument("--out", type=Path, default=REPORT_DIR, help="folder of the JSON reports")
    return p


def setup_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
