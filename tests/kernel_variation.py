"""Make CPU dependence visible before it ships: the numeric tests under other kernels and thread counts.

The suite is derandomised, so a tolerance tighter than the floating-point differences between CPUs
passes forever on the machine it was written on and fails forever on another. This harness re-runs
the numeric tests (linalg, fisher, tt, methods, tenbcd, theory) in fresh processes under kernel and
thread settings that change summation orders the way another CPU would:

* ``threads1``: torch on one thread instead of two (``OPFACT_TORCH_THREADS``, read by
  ``tests/conftest.py``): other blockings of MKL's GEMM and of ATen's reductions;
* ``mkl_avx2`` / ``mkl_sse42``: MKL restricted to AVX2 / SSE4.2 code paths
  (``MKL_ENABLE_INSTRUCTIONS``) and ATen's vectorised kernels to the same level
  (``ATEN_CPU_CAPABILITY``), as on a CPU without AVX-512;
* ``mkl_cbwr``: MKL's conditional-numerical-reproducibility branch ``COMPATIBLE``, its most
  conservative kernels.

OpenBLAS (numpy's BLAS) is left alone on purpose: its ``OPENBLAS_*`` variables are set on some
machines to work around wrong results of old builds, and changing them is not ours to do.

For each setting it records the pytest outcome of every numeric test and a fingerprint: a few
library computations (SVD / FWSVD projections in float32, a diagonal Fisher of the digits ViT, a
TT-SVD in float64, a short AdamW run of the ViT) whose largest relative difference from the
default setting says *how much* the numerics move. Results go to ``reports/kernels/``
(JSON + Markdown, written atomically). ``make test-kernels`` runs it; it fails when a test's
outcome differs between settings or any test fails.

    python -m tests.kernel_variation [--settings base,threads1,...] [--out reports/kernels]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from study.stability import KERNEL_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
NUMERIC_TESTS = ("tests/test_linalg.py", "tests/test_fisher.py", "tests/test_tt.py", "tests/test_methods.py",
                 "tests/test_tenbcd.py", "tests/theory")
SETTINGS = KERNEL_SETTINGS   # one list of settings: study.stability re-makes verdicts under the same
# Variables of ours that a caller's environment must not leak into the base setting.
_CONTROLLED = sorted({k for env in SETTINGS.values() for k in env})


def fingerprint() -> dict[str, list[float]]:
    """A few library computations whose outputs move with kernels; each a flat list of floats."""
    import numpy as np
    import torch

    from lowrank import fisher, linalg, tt
    from lowrank.data import digits_dataset, make_loader
    from lowrank.models import vit_digits

    threads = os.environ.get("OPFACT_TORCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    out: dict[str, list[float]] = {}
    g = torch.Generator().manual_seed(0)
    W = torch.randn(192, 256, generator=g) @ torch.diag(torch.logspace(0, -3, 256))
    w = torch.rand(192, generator=g) + 0.1
    out["svd_f32_rank16"] = linalg.truncated_svd(W, 16).matrix().flatten().tolist()
    out["fwsvd_f32_rank16"] = linalg.row_weighted_projection(W, w, 16).matrix().flatten().tolist()
    shape = tt.tt_shape_for(64, 64, 3)
    W64 = torch.randn(64, 64, generator=g, dtype=torch.float64)
    out["tt_svd_f64_rank4"] = tt.tt_svd(W64, shape, max_rank=4).matrix().flatten().tolist()

    torch.manual_seed(0)
    model = vit_digits()
    data = digits_dataset("train")
    loader = make_loader(torch.utils.data.Subset(data, range(128)), batch_size=32)
    targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "blocks" in n]
    F = fisher.diagonal_fisher(model, loader, targets)
    out["fisher_rows_vit"] = torch.cat([fisher.row_weights(F[n]) for n in targets]).tolist()

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _, (x, y) in zip(range(40), make_loader(data, batch_size=64, shuffle=True,
                                                generator=torch.Generator().manual_seed(0))):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    out["adamw_40_steps_loss"] = losses
    out["adamw_40_steps_weights"] = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
    out["numpy_lstsq_f64"] = np.linalg.lstsq(np.asarray(W64[:, :32]), np.asarray(W64[:, 32]), rcond=None)[0].tolist()
    return out


def _env(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CONTROLLED}
    env.update(SETTINGS[setting])
    return env


def _run_setting(setting: str, work: Path) -> dict:
    junit = work / f"{setting}.xml"
    fp = work / f"{setting}.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *NUMERIC_TESTS],
        cwd=ROOT, env=_env(setting), capture_output=True, text=True,
    )
    tests_s = time.perf_counter() - start
    subprocess.run([sys.executable, "-m", "tests.kernel_variation", "--fingerprint", str(fp)],
                   cwd=ROOT, env=_env(setting), check=True)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[name] = kinds[0] if kinds else "passed"
    return {"env": SETTINGS[setting], "pytest_rc": proc.returncode, "tests_s": round(tests_s, 1),
            "outcomes": outcomes, "summary": proc.stdout.strip().splitlines()[-1] if proc.stdout else "",
            "fingerprint": json.loads(fp.read_text())}


def _max_rel_diff(a: list[float], b: list[float]) -> float:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), np.finfo(float).tiny))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def report(results: dict[str, dict], machine: str) -> tuple[dict, str, bool]:
    base = results["base"]
    names = sorted(set().union(*(r["outcomes"] for r in results.values())))
    moved = {n: {s: r["outcomes"].get(n, "missing") for s, r in results.items()} for n in names
             if len({r["outcomes"].get(n, "missing") for r in results.values()}) > 1}
    failed = {s: [n for n, o in r["outcomes"].items() if o in ("failure", "error")] for s, r in results.items()}
    diffs = {s: {k: _max_rel_diff(v, base["fingerprint"][k]) for k, v in r["fingerprint"].items()}
             for s, r in results.items() if s != "base"}
    ok = not moved and not any(failed.values()) and all(r["pytest_rc"] == 0 for r in results.values())
    summary = {"machine": machine, "numeric_tests": list(NUMERIC_TESTS), "ok": ok,
               "settings": {s: {"env": r["env"], "summary": r["summary"], "tests_s": r["tests_s"],
                                "failed": failed[s]} for s, r in results.items()},
               "outcome_changes": moved, "fingerprint_max_rel_diff_vs_base": diffs}
    lines = ["# Numeric tests under other kernels and thread counts", "",
             f"Machine: {machine}. Generated by `make test-kernels` (`python -m tests.kernel_variation`).", "",
             "| setting | environment | pytest | seconds |", "|---|---|---|---|"]
    for s, r in results.items():
        env = ", ".join(f"`{k}={v}`" for k, v in r["env"].items()) or "(default)"
        lines.append(f"| {s} | {env} | {r['summary']} | {r['tests_s']} |")
    lines += ["", "Tests whose outcome differs between settings: "
              + (", ".join(f"`{n}` ({moved[n]})" for n in moved) if moved else "none."), "",
              "Largest relative difference of each fingerprint from the `base` setting "
              "(max |x − x_base| / max |x_base|; 0 = bit-identical):", ""]
    keys = list(base["fingerprint"])
    lines += ["| quantity | " + " | ".join(diffs) + " |", "|---|" + "---|" * len(diffs)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{diffs[s][k]:.2e}" for s in diffs) + " |")
    return summary, "\n".join(lines) + "\n", ok


def _machine() -> str:
    import platform

    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated subset of {list(SETTINGS)} (base is always run)")
    ap.add_argument("--out", default="reports/kernels", help="output folder (JSON + Markdown)")
    ap.add_argument("--fingerprint", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fingerprint:
        _write_atomic(Path(args.fingerprint), json.dumps(fingerprint()))
        return 0
    chosen = [s.strip() for s in args.settings.split(",") if s.strip()]
    bad = [s for s in chosen if s not in SETTINGS]
    if bad:
        ap.error(f"--settings: {bad} not known; allowed values: {list(SETTINGS)}")
    chosen = ["base"] + [s for s in chosen if s != "base"]
    from tqdm import tqdm

    results = {}
    with tempfile.TemporaryDirectory() as work:
        for s in tqdm(chosen, desc="kernel settings", unit="setting"):
            results[s] = _run_setting(s, Path(work))
    summary, md, ok = report(results, _machine())
    out = ROOT / args.out
    _write_atomic(out / "kernel_variation.json", json.dumps(summary, indent=2) + "\n")
    _write_atomic(out / "kernel_variation.md", md)
    print(md)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
