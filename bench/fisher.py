"""Per-sample diagonal Fisher (``lowrank.fisher.diagonal_fisher``): samples per second of the three
exact methods, and what the hooks method's batch-gradient check costs.

    python -m bench.fisher [--quick] [--threads 1] [--device cuda] [--models vit_digits,minilm,vit_b16]

Candidates, timed round-robin in one process, on one batch with true-Fisher labels drawn from the
same generator state (so every candidate computes the same quantity):

* ``hooks``: the default method, with the check that Σ_b G_b equals autograd's batch gradient
  summed from the per-sample blocks it forms anyway (``_BATCH_GRAD_CHECK = "fused"``);
* ``hooks_gemm_check``: the same with the check recomputing gᵀx by one more GEMM per layer (the
  unoptimised path);
* ``hooks_no_check``: the check skipped, only to price it;
* ``func``: ``torch.func.vmap(grad(...))``; ``loop``: one autograd call per sample;
* ``func_eager`` / ``loop_eager``: the same two on a copy of the model whose attention is written
  out (matmul, softmax, matmul) instead of ``scaled_dot_product_attention``, which has no vmap
  batching rule: under ``func`` it runs as a loop over samples.

The first ``func`` call on a model also traces it (tens of seconds on a Hugging Face model); it is
reported apart (``first_call_s``) and not in the medians. MiniLM runs without an attention mask
(all tokens real): ``vmap`` cannot trace the data-dependent branch of the mask's preparation in
``transformers``, so ``func`` would refuse it.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

import lowrank.fisher as fisher_mod
from lowrank.fisher import diagonal_fisher
from lowrank.models import build_model
from lowrank.surgery import find_linear_layers
from lowrank.utils import make_generator, resolve_device, set_random_state

from .common import base_parser, interleaved, machine, setup_threads, write_report

METHODS = ("hooks", "hooks_gemm_check", "hooks_no_check", "func", "loop", "func_eager", "loop_eager")


def timm_eager(model):
    m = copy.deepcopy(model)
    for mod in m.modules():
        if hasattr(mod, "fused_attn"):
            mod.fused_attn = False
    return m


def cases(quick: bool, vit_depth: int) -> dict[str, dict[str, Any]]:
    return {
        "vit_digits": {"build": lambda: build_model("vit_digits", num_classes=10), "targets": "vit_all",
                       "batch": 64, "input": lambda b, g: torch.randn(b, 1, 8, 8, generator=g), "classes": 10,
                       "eager": timm_eager},
        "minilm": {"build": lambda: build_model("minilm", num_classes=6), "targets": "bert_all",
                   "batch": 4 if quick else 8, "classes": 6,
                   "input": lambda b, g: {"input_ids": torch.randint(1000, 20000, (b, 128), generator=g)},
                   "eager": lambda m: (set_random_state(0), build_model("minilm", num_classes=6,
                                                                         attn_implementation="eager"))[1]},
        "vit_b16": {"build": lambda: build_model("vit_b16", num_classes=10, pretrained=False, depth=vit_depth),
                    "targets": "vit_all", "batch": 2 if quick else 4, "classes": 10, "depth": vit_depth,
                    "input": lambda b, g: torch.randn(b, 3, 224, 224, generator=g), "eager": timm_eager},
    }


def run_method(model, loader, names, method: str, device) -> dict[str, torch.Tensor]:
    check = {"hooks_gemm_check": "gemm", "hooks_no_check": "off"}.get(method, "fused")
    saved = fisher_mod._BATCH_GRAD_CHECK
    fisher_mod._BATCH_GRAD_CHECK = check
    try:
        return diagonal_fisher(model, loader, names, method=method.split("_")[0], labels="true",
                               generator=make_generator(0, device))
    finally:
        fisher_mod._BATCH_GRAD_CHECK = saved


def rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float(torch.linalg.vector_norm(a[n] - b[n]) / torch.linalg.vector_norm(b[n]).clamp_min(1e-30))
               for n in b)


def main(argv=None) -> dict[str, Any]:
    parser = base_parser(__doc__)
    parser.add_argument("--models", default="vit_digits,minilm,vit_b16")
    parser.add_argument("--vit-depth", type=int, default=None, help="ViT-B/16 blocks (default 1 quick, 2 full)")
    args = parser.parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    depth = args.vit_depth or (1 if args.quick else 2)
    repeats = 3 if args.quick else 5
    report: dict[str, Any] = {"machine": machine(device),
                              "config": {"quick": args.quick, "repeats": repeats, "vit_b16_depth": depth,
                                         "labels": "true", "accumulation": "float32"}, "models": {}}
    for name in args.models.split(","):
        case = cases(args.quick, depth)[name]
        set_random_state(0)
        model = case["build"]().to(device)
        g = make_generator(0)
        x = case["input"](case["batch"], g)
        y = torch.randint(0, case["classes"], (case["batch"],), generator=g)
        if isinstance(x, dict):
            batch = {k: v.to(device) for k, v in x.items()} | {"labels": y.to(device)}
        else:
            batch = (x.to(device), y.to(device))
        loader = [batch]
        names = list(find_linear_layers(model, case["targets"]))
        eager = case["eager"](model).to(device)
        # F821 silenced: ruff resolves this lambda after the loop's `del model, eager`; it runs before it.
        pick = lambda m: eager if m.endswith("_eager") else model  # noqa: E731, F821
        results = {m: run_method(pick(m), loader, names, m, device) for m in METHODS}
        t = interleaved({m: (lambda m=m: run_method(pick(m), loader, names, m, device)) for m in METHODS},
                        repeats=repeats, warmup=0, device=device)
        b = case["batch"]
        entry = {
            "batch": b, "targets": case["targets"], "layers": len(names),
            "samples_per_s": {m: b / v["median_s"] for m, v in t.items()},
            "median_s": {m: v["median_s"] for m, v in t.items()},
            "speedup_func_vs_loop": t["loop"]["median_s"] / t["func"]["median_s"],
            "speedup_func_vs_loop_eager": t["loop_eager"]["median_s"] / t["func_eager"]["median_s"],
            "speedup_hooks_vs_loop": t["loop"]["median_s"] / t["hooks"]["median_s"],
            "check_share_gemm": 1 - t["hooks_no_check"]["median_s"] / t["hooks_gemm_check"]["median_s"],
            "check_share_fused": 1 - t["hooks_no_check"]["median_s"] / t["hooks"]["median_s"],
            "rel_diff_vs_loop": {m: rel_diff(results[m], results["loop"]) for m in METHODS if m != "loop"},
            "goal_func_vs_loop": 3.0,
        }
        entry["met"] = max(entry["speedup_func_vs_loop"], entry["speedup_func_vs_loop_eager"]) >= 3.0
        report["models"][name] = entry
        sps = ", ".join(f"{m} {v:.1f}" for m, v in entry["samples_per_s"].items())
        print(f"[fisher] {name} (batch {b}, {len(names)} layers) samples/s: {sps}")
        print(f"[fisher] {name} func/loop speed-up {entry['speedup_func_vs_loop']:.2f}× "
              f"(eager attention {entry['speedup_func_vs_loop_eager']:.2f}×), hooks/loop "
              f"{entry['speedup_hooks_vs_loop']:.2f}×; check share gemm {100 * entry['check_share_gemm']:.0f}% → "
              f"fused {100 * entry['check_share_fused']:.0f}%; max rel. diff vs loop "
              f"{max(entry['rel_diff_vs_loop'].values()):.1e}")
        del model, eager, results
    if device.type == "cuda":
        report["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    path = write_report("fisher", report, args.out)
    print(f"[fisher] → {path}")
    return report


if __name__ == "__main__":
    main()
