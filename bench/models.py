"""Whole models, dense vs compressed: inference of the compiled model (``FactorizedLinear`` in every
target layer) and one training step in the ``U S Vᵀ`` form, as ratios measured in one process.

    python -m bench.models [--quick] [--threads 1] [--device cuda] [--models vit_digits,minilm,vit_b16]

Models (random inputs: timing does not depend on the data):

* ``vit_digits``: the small profile's ViT (width 64, depth 4), 8×8 images;
* ``minilm``: the pretrained MiniLM-L6 classifier (width 384, depth 6), 128-token sequences;
* ``vit_b16``: timm's ViT-B/16 at random init, batch 64, with ``--vit-depth`` of its 12 blocks (all
  blocks are identical, so the per-block ratio is the model's, up to the patch embedding and the
  head, which the FLOP count includes); the full depth costs about 30 s per forward on 2 cores.

Every target Linear (``vit_all`` / ``bert_all``) is projected by a truncated SVD at the rank that
keeps 50%, 25% or 10% of its parameters (``lowrank.surgery.compress_model``). The FLOP limit of a
model is its FLOP count compressed / dense (``torch.utils.flop_counter``: matrix products, the
attention's included, which no factorisation shrinks). Elementwise work (softmax, GELU, layer norms,
residual adds) is not in that count and does not shrink either, so each model also gets an
Amdahl limit: ``1 − s + s·r`` with ``s`` the measured share of the dense forward's time spent
inside the target Linears and ``r`` their parameter (= FLOP) ratio, the best a factorisation that
ran every target layer exactly at its FLOP limit could do.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lowrank.models import build_model, classifier_logits
from lowrank.surgery import compress_model, count_parameters, find_linear_layers
from lowrank.utils import make_generator, resolve_device, set_random_state

from .common import (base_parser, clock, count_flops, fraction_rank, interleaved, machine, retain_freed_memory,
                     setup_threads, write_report)

FRACTIONS = (0.5, 0.25, 0.1)


def model_cases(quick: bool, vit_depth: int) -> dict[str, dict[str, Any]]:
    return {
        "vit_digits": {"build": lambda: build_model("vit_digits", num_classes=10), "targets": "vit_all",
                       "batch": 256, "train_batch": 64, "kind": "image", "shape": (1, 8, 8), "classes": 10},
        "minilm": {"build": lambda: build_model("minilm", num_classes=6), "targets": "bert_all",
                   "batch": 8 if quick else 32, "train_batch": 8, "kind": "text", "tokens": 128, "classes": 6},
        "vit_b16": {"build": lambda: build_model("vit_b16", num_classes=10, pretrained=False, depth=vit_depth),
                    "targets": "vit_all", "batch": 64, "train_batch": 16, "kind": "image",
                    "shape": (3, 224, 224), "classes": 10, "depth": vit_depth},
    }


def make_batch(case: dict[str, Any], batch: int, device: torch.device, key: int = 0):
    gen = make_generator(key, device)
    y = torch.randint(0, case["classes"], (batch,), generator=gen, device=device)
    if case["kind"] == "image":
        return torch.randn((batch, *case["shape"]), generator=gen, device=device), y
    ids = torch.randint(1000, 20000, (batch, case["tokens"]), generator=gen, device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": y}


def compressed(model: nn.Module, targets: str, fraction: float, form: str) -> nn.Module:
    m = copy.deepcopy(model)
    core = form == "low_rank"
    compress_model(m, targets, method="svd", form=form,
                   rank=lambda name, layer: fraction_rank(layer.out_features, layer.in_features, fraction, core=core))
    return m


def target_time_share(model: nn.Module, names: list[str], fn: Callable[[], Any], repeats: int,
                      device: torch.device) -> float:
    """Median share of one call's wall time spent inside the named modules' forwards."""
    inside = [0.0]
    starts: dict[int, float] = {}

    def pre(mod, args):
        starts[id(mod)] = clock(device)

    def post(mod, args, out):
        inside[0] += clock(device) - starts[id(mod)]

    handles = []
    for n in names:
        mod = model.get_submodule(n)
        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    shares = []
    try:
        fn()
        for _ in range(repeats):
            inside[0] = 0.0
            t0 = clock(device)
            fn()
            shares.append(inside[0] / (clock(device) - t0))
    finally:
        for h in handles:
            h.remove()
    shares.sort()
    return shares[len(shares) // 2]


def inference(case: dict[str, Any], dense: nn.Module, repeats: int, device: torch.device) -> list[dict[str, Any]]:
    batch = make_batch(case, case["batch"], device)
    one = make_batch(case, 1, device)
    variants = {"dense": dense.eval()}
    for p in FRACTIONS:
        variants[f"{p:g}"] = compressed(dense, case["targets"], p, "factorized").eval()
    names = list(find_linear_layers(dense, case["targets"]))
    with torch.no_grad():
        flops = {k: count_flops(lambda m=m: classifier_logits(m, one)) for k, m in variants.items()}
        t = interleaved({k: (lambda m=m: classifier_logits(m, batch)) for k, m in variants.items()},
                        repeats=repeats, device=device)
        share = target_time_share(dense, names, lambda: classifier_logits(dense, batch), max(3, repeats // 2), device)
    base = count_parameters(dense, names)
    rows = []
    for p in FRACTIONS:
        k = f"{p:g}"
        after = count_parameters(variants[k], names, original=base)
        ratio = t[k]["median_s"] / t["dense"]["median_s"]
        limit = flops[k] / flops["dense"]
        amdahl = 1 - share + share * after.ratio_target
        rows.append({"fraction": p, "target_param_ratio": after.ratio_target, "flop_limit": limit,
                     "ratio_vs_dense": ratio, "over_limit": ratio / limit, "target_time_share": share,
                     "amdahl_limit": amdahl, "over_amdahl_limit": ratio / amdahl,
                     "median_ms": 1e3 * t[k]["median_s"], "dense_median_ms": 1e3 * t["dense"]["median_s"]})
    return rows


def training(case: dict[str, Any], dense: nn.Module, repeats: int, device: torch.device,
             fraction: float = 0.1) -> dict[str, Any]:
    batch = make_batch(case, case["train_batch"], device, key=1)
    y = batch[1] if isinstance(batch, tuple) else batch["labels"]
    models = {"dense": copy.deepcopy(dense).train(),
              "low_rank": compressed(dense, case["targets"], fraction, "low_rank").train()}

    def stepper(model: nn.Module) -> Callable[[], None]:
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(classifier_logits(model, batch), y).backward()
            opt.step()
        return step

    t = interleaved({k: stepper(m) for k, m in models.items()}, repeats=repeats, device=device)
    names = list(find_linear_layers(dense, case["targets"]))
    base = count_parameters(dense, names)
    after = count_parameters(models["low_rank"], names, original=base)
    ratio = t["low_rank"]["median_s"] / t["dense"]["median_s"]
    return {"fraction": fraction, "target_param_ratio": after.ratio_target, "ratio_vs_dense": ratio,
            "goal": 0.7, "met": ratio <= 0.7, "median_ms": 1e3 * t["low_rank"]["median_s"],
            "dense_median_ms": 1e3 * t["dense"]["median_s"], "batch": case["train_batch"]}


def main(argv=None) -> dict[str, Any]:
    parser = base_parser(__doc__)
    parser.add_argument("--models", default="vit_digits,minilm,vit_b16")
    parser.add_argument("--vit-depth", type=int, default=None, help="ViT-B/16 blocks (default 1 quick, 2 full)")
    parser.add_argument("--retained-models", default="vit_b16",
                        help="models measured again with freed memory retained (CPU; '' for none); the "
                             "default is the one whose activations exceed glibc's 32 MiB mmap threshold")
    args = parser.parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    depth = args.vit_depth or (1 if args.quick else 2)
    cases = model_cases(args.quick, depth)
    repeats = 3 if args.quick else 5
    report: dict[str, Any] = {"machine": machine(device), "config": {"quick": args.quick, "repeats": repeats,
                                                                      "vit_b16_depth": depth},
                              "models": {}}
    for name in args.models.split(","):
        case = cases[name]
        set_random_state(0)
        dense = case["build"]().to(device)
        entry = {"batch": case["batch"], "targets": case["targets"],
                 "inference": inference(case, dense, repeats, device),
                 "training": training(case, dense, max(3, repeats - 2), device)}
        if device.type == "cuda":
            entry["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        report["models"][name] = entry
        for r in entry["inference"]:
            print(f"[models] {name} {100 * r['fraction']:3.0f}%: compiled/dense {r['ratio_vs_dense']:.3f} "
                  f"(FLOP limit {r['flop_limit']:.3f}, {r['over_limit']:.2f}× limit; "
                  f"Amdahl limit {r['amdahl_limit']:.3f}, {r['over_amdahl_limit']:.2f}×)")
        tr = entry["training"]
        print(f"[models] {name} train step U·S·Vᵀ at {100 * tr['target_param_ratio']:.0f}% target params: "
              f"{tr['ratio_vs_dense']:.3f}× dense")
        del dense
    # Retaining freed memory cannot be undone in the process, so this pass comes last.
    again = [n for n in args.retained_models.split(",") if n and n in args.models.split(",")]
    if device.type == "cpu" and again and retain_freed_memory():
        for name in again:
            case = cases[name]
            set_random_state(0)
            rows = inference(case, case["build"]().to(device), repeats, device)
            report["models"][name]["inference_retained"] = rows
            for r in rows:
                print(f"[models] {name} {100 * r['fraction']:3.0f}% (freed memory retained): compiled/dense "
                      f"{r['ratio_vs_dense']:.3f} ({r['over_limit']:.2f}× FLOP limit, "
                      f"{r['over_amdahl_limit']:.2f}× Amdahl limit)")
    path = write_report("models", report, args.out)
    print(f"[models] → {path}")
    return report


if __name__ == "__main__":
    main()
