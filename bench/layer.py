"""One 768→3072 layer (ViT-B/16's fc1) on 3,152 rows (16 images × 197 tokens): inference cost of the
compiled ``FactorizedLinear`` and training-step cost of ``LowRankLinear``, relative to dense.

    python -m bench.layer [--quick] [--thread-counts 1,2] [--device cuda]

Targets (the project's issue #6):

1. inference: factorised / dense within 1.5× of the FLOP limit ``k(m+n)/(mn)`` at ≥ 25% of the
   parameters and within 2× at 10% on CPU, within 1.25× on GPU;
2. training form: a step in ``U S Vᵀ`` form at ≤ 10% of the parameters costs ≤ 0.7× the dense step.

Candidates, all timed round-robin in this one process (ratios, never absolute timings):

* ``dense``: ``nn.Linear``;
* ``rebuild``: ``W = U S Vᵀ`` formed on every call, then one GEMM (the OIALR reference code);
* ``factorized``: the library's ``FactorizedLinear`` (two GEMMs, bias fused into the second);
* ``factorized_3d``: the same on the (16, 197, 768) view, i.e. the shape a transformer passes;
* ``dense_onednn`` / ``factorized_onednn`` (CPU): both through oneDNN with pre-packed weights
  (the kernels ``torch.compile``'s freezing pass uses), to separate the BLAS library's efficiency
  on skinny matrices from the factorisation itself.

The inference rounds run twice on Linux: first with glibc's default allocator, then with freed
memory retained (:func:`bench.common.retain_freed_memory`), because the default allocator
page-faults every output above 32 MiB anew on each call, a fixed cost that dense and factorised
layers pay alike and that dominates the 10% case.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lowrank.layers import LowRankLinear
from lowrank.utils import make_generator, resolve_device, set_random_state

from .common import (base_parser, fraction_rank, interleaved, machine, retain_freed_memory, setup_threads,
                     write_report)

M, N, BATCH, TOKENS = 3072, 768, 16, 197
FRACTIONS = (0.5, 0.25, 0.1)
TRAIN_FRACTIONS = (0.25, 0.1)


def goal(fraction: float, device: torch.device) -> float:
    if device.type == "cuda":
        return 1.25
    return 1.5 if fraction >= 0.25 else 2.0


def onednn_linear(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> Callable | None:
    """``x ↦ x Wᵀ + b`` through oneDNN with ``W`` packed once; None where the kernels are absent."""
    try:
        ops = torch.ops.mkldnn
        if not (torch.backends.mkldnn.is_available() and weight.device.type == "cpu"
                and weight.dtype == torch.float32):
            return None
        packed = ops._reorder_linear_weight(weight.detach(), rows)
        b = None if bias is None else bias.detach()

        def run(x: torch.Tensor) -> torch.Tensor:
            return ops._linear_pointwise(x, packed, b, "none", [], "")
        run(torch.zeros(2, weight.shape[1]))
        return run
    except (AttributeError, RuntimeError):
        return None


def inference_rounds(x: torch.Tensor, fractions, repeats: int, device: torch.device) -> list[dict[str, Any]]:
    m, n = M, N
    rows = x.shape[0]
    dense = nn.Linear(n, m, device=device).eval()
    x3 = x.reshape(BATCH, TOKENS, n)
    d_onednn = onednn_linear(dense.weight, dense.bias, rows)
    out = []
    for p in fractions:
        k = fraction_rank(m, n, p)
        lr = LowRankLinear(n, m, k, device=device).eval()
        fz = lr.to_factorized().eval()
        U, S, V, b = lr.U.detach(), lr.S.detach(), lr.V.detach(), lr.bias.detach()
        cands: dict[str, Callable] = {
            "dense": lambda: dense(x),
            "rebuild": lambda U=U, S=S, V=V, b=b: F.linear(x, U @ S @ V.mT, b),
            "factorized": lambda fz=fz: fz(x),
            "factorized_3d": lambda fz=fz: fz(x3),
        }
        down = onednn_linear(fz.down.weight, None, rows)
        up = onednn_linear(fz.up.weight, fz.up.bias, rows)
        if d_onednn is not None and down is not None and up is not None:
            cands["dense_onednn"] = lambda: d_onednn(x)
            cands["factorized_onednn"] = lambda down=down, up=up: up(down(x))
        with torch.no_grad():
            ref = fz(x)
            agree = {name: float((cands[name]().reshape(ref.shape) - ref).abs().max() / ref.abs().max())
                     for name in ("rebuild", "factorized_3d", "factorized_onednn") if name in cands}
            t = interleaved(cands, repeats=repeats, device=device)
        dense_s = t["dense"]["median_s"]
        limit = k * (m + n) / (m * n)
        ratios = {name: v["median_s"] / dense_s for name, v in t.items()}
        if "dense_onednn" in t:
            ratios["factorized_onednn_vs_dense_onednn"] = (t["factorized_onednn"]["median_s"]
                                                           / t["dense_onednn"]["median_s"])
        best_same_backend = min(ratios["factorized"], ratios.get("factorized_onednn_vs_dense_onednn", math.inf))
        out.append({
            "fraction": p, "rank": k, "flop_limit": limit, "goal_over_limit": goal(p, device),
            "median_ms": {name: 1e3 * v["median_s"] for name, v in t.items()},
            "ratio_vs_dense": ratios,
            "factorized_over_limit": ratios["factorized"] / limit,
            "best_same_backend_over_limit": best_same_backend / limit,
            "met": ratios["factorized"] / limit <= goal(p, device),
            "met_best_same_backend": best_same_backend / limit <= goal(p, device),
            "max_rel_diff_vs_factorized": agree,
        })
    return out


def training_rounds(x: torch.Tensor, fractions, repeats: int, device: torch.device) -> list[dict[str, Any]]:
    m, n = M, N
    gen = make_generator(1, device)
    grad_out = torch.randn(x.shape[0], m, generator=gen, device=device)
    xin = x.clone().requires_grad_(True)  # a mid-network layer also back-propagates to its input

    def stepper(module: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor] | None = None):
        params = [q for q in module.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        fwd = forward or module

        def step():
            opt.zero_grad(set_to_none=True)
            xin.grad = None
            fwd(xin).backward(grad_out)
            opt.step()
        return step

    dense = nn.Linear(n, m, device=device)
    out = []
    for p in fractions:
        k = fraction_rank(m, n, p, core=True)
        lr = LowRankLinear(n, m, k, device=device)
        rb = LowRankLinear(n, m, k, device=device)
        with torch.no_grad():
            for mine, theirs in zip(rb.parameters(), lr.parameters()):
                mine.copy_(theirs)

        def rebuilt(z, rb=rb):
            # the OIALR reference: U S Vᵀ formed on every forward, S trained through the product
            return F.linear(z, rb.U @ rb.S @ rb.V.mT, rb.bias)
        rebuild = stepper(rb, rebuilt)
        # the library's forward and the rebuild give the same gradient of S
        for fwd, mod in ((lr, lr), (rebuilt, rb)):
            mod.S.grad = None
            fwd(xin).backward(grad_out)
        s_diff = float((lr.S.grad - rb.S.grad).abs().max() / rb.S.grad.abs().max())
        t = interleaved({"dense": stepper(dense), "low_rank": stepper(lr), "rebuild": rebuild},
                        repeats=repeats, device=device)
        dense_s = t["dense"]["median_s"]
        limit = (k * (m + n) + k * k) / (m * n)
        ratio = t["low_rank"]["median_s"] / dense_s
        out.append({
            "fraction": p, "rank": k, "param_fraction": limit,
            "median_ms": {name: 1e3 * v["median_s"] for name, v in t.items()},
            "ratio_vs_dense": {name: v["median_s"] / dense_s for name, v in t.items()},
            "goal": 0.7, "met": ratio <= 0.7, "s_grad_rel_diff_vs_rebuild": s_diff,
        })
    return out


def main(argv=None) -> dict[str, Any]:
    parser = base_parser(__doc__)
    parser.add_argument("--thread-counts", default=None,
                        help="comma-separated torch thread counts to measure on CPU, one after the other "
                             "(default 1,2; 1 with --quick)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    counts_arg = args.thread_counts or ("1" if args.quick else "1,2")
    counts = [args.threads] if args.threads else [int(c) for c in counts_arg.split(",")]
    if device.type == "cuda":
        counts = counts[:1]
    set_random_state(0)
    repeats = 5 if args.quick else 9
    x = torch.randn(BATCH * TOKENS, N, generator=make_generator(0, device), device=device)
    report: dict[str, Any] = {"machine": machine(device),
                              "config": {"out_features": M, "in_features": N, "rows": BATCH * TOKENS,
                                         "repeats": repeats, "quick": args.quick, "thread_counts": counts}}
    report["inference"], report["training"] = [], []
    # The allocator switch cannot be undone, so every thread count runs with the default allocator
    # first, and the retained-memory rounds come last.
    phases = [("default", None)] + ([("retained", retain_freed_memory)] if device.type == "cpu" else [])
    for name, switch in phases:
        if switch is not None and not switch():
            continue
        for threads in counts:
            setup_threads(threads)
            for row in inference_rounds(x, FRACTIONS, repeats, device):
                report["inference"].append({"allocator": name, "threads": threads, **row})
            if name == "default":
                for row in training_rounds(x, TRAIN_FRACTIONS, max(3, repeats // 2), device):
                    report["training"].append({"allocator": name, "threads": threads, **row})
    if device.type == "cuda":
        report["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    path = write_report("layer", report, args.out)
    for r in report["inference"]:
        print(f"[layer] {r['threads']}t {r['allocator']:8s} {100 * r['fraction']:4.0f}% k={r['rank']:4d}: "
              f"factorized/dense {r['ratio_vs_dense']['factorized']:.3f} (limit {r['flop_limit']:.3f}, "
              f"{r['factorized_over_limit']:.2f}× limit; best same-backend {r['best_same_backend_over_limit']:.2f}×), "
              f"rebuild {r['ratio_vs_dense']['rebuild']:.2f}")
    for r in report["training"]:
        print(f"[layer] {r['threads']}t train {100 * r['fraction']:4.0f}% k={r['rank']}: low_rank/dense step "
              f"{r['ratio_vs_dense']['low_rank']:.3f}, rebuild {r['ratio_vs_dense']['rebuild']:.3f}")
    print(f"[layer] → {path}")
    return report


if __name__ == "__main__":
    main()
