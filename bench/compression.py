"""Cost of the periodic compression steps against the training they interrupt.

    python -m bench.compression [--quick] [--threads 1] [--device cuda] [--models minilm,vit_b16]

Per model (MiniLM-L6 for the paper's BERT runs, ViT-B/16 at random init with ``--vit-depth`` blocks
for its ViT runs; every target layer of ``bert_all`` / ``vit_all``):

* ``step``: one AdamW training step, dense and in the ``U S Vᵀ`` form at full rank (right after
  the conversion) and at 10% of the target parameters;
* ``cut``: one IEHT cut (``lowrank.methods.iht.cut_low_rank_layer`` on every layer: SVD of the
  k×k core in float64, rotation, energy rule at β = 0.95) plus the optimizer rebuild, at full rank
  (the first cut, the most expensive) and at 10%;
* ``batched_svd``: the cut's SVDs stacked by shape into one ``torch.linalg.svd`` call, against the
  per-layer loop (same singular values), to decide whether batching pays;
* ``ifht_fisher``: the extra work of an IFHT cut: the true Fisher row weights (``diagonal_fisher``, float64,
  hooks) taken on the ``LowRankLinear`` layers, against the earlier paths through a dense copy of the model
  (:func:`ifht_fisher_cost`), scaled to ``fisher_samples = 256``;
* ``trp``: one TRP truncation (``truncate_dense``: full float64 SVD of every dense target
  weight), and the randomized alternative ``torch.svd_lowrank`` at the rank the exact rule picks
  (+10 oversampling, 4 power iterations): its time and its excess Frobenius error.

The share of training wall time is ``cost / (cost + ν · step)`` at the paper's frequencies ν
(Tables 3–5: BERT cuts every 10–1000 steps, ViT every 2–25 epochs, TRP every 10–50,000 steps),
with the step measured at this script's batch size (smaller than the paper's 32–128, so the shares
are upper bounds). ν = 1 (a cut after every step) is reported too.
"""
from __future__ import annotations

import copy
import statistics
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lowrank.fisher import diagonal_fisher
from lowrank.layers import LowRankLinear
from lowrank.linalg import robust_svd, select_rank, truncated_svd
from lowrank.methods.iht import cut_low_rank_layer
from lowrank.methods.trp import truncate_dense
from lowrank.models import build_model, classifier_logits
from lowrank.surgery import find_linear_layers, replace_module, to_low_rank
from lowrank.utils import make_generator, resolve_device, set_random_state

from .common import base_parser, clock, fraction_rank, interleaved, machine, setup_threads, write_report

BETA = 0.95
FISHER_SAMPLES = 256
STEPS_PER_EPOCH = {"cifar10 (batch 64)": 50_000 // 64, "imagenet (batch 128)": 1_281_167 // 128}


def cases(quick: bool, vit_depth: int) -> dict[str, dict[str, Any]]:
    return {
        "minilm": {"build": lambda: build_model("minilm", num_classes=6), "targets": "bert_all",
                   "batch": 8 if quick else 32, "classes": 6, "fisher_batch": 4 if quick else 8,
                   "input": lambda b, g: {"input_ids": torch.randint(1000, 20000, (b, 128), generator=g),
                                          "attention_mask": torch.ones(b, 128, dtype=torch.long)},
                   "paper": {"ieht_steps": (1, 10, 25, 50, 100, 500, 1000), "trp_steps": (1, 10, 50, 100, 500)}},
        "vit_b16": {"build": lambda: build_model("vit_b16", num_classes=10, pretrained=False, depth=vit_depth),
                    "targets": "vit_all", "batch": 16, "classes": 10, "fisher_batch": 2 if quick else 4,
                    "depth": vit_depth, "input": lambda b, g: torch.randn(b, 3, 224, 224, generator=g),
                    "paper": {"ieht_epochs": (2, 4, 8, 10, 25), "trp_steps": (1, 50, 100, 500, 1000, 5000)}},
    }


def make_batch(case, b: int, device, key: int = 0):
    g = make_generator(key)
    x = case["input"](b, g)
    y = torch.randint(0, case["classes"], (b,), generator=g)
    if isinstance(x, dict):
        return {k: v.to(device) for k, v in x.items()} | {"labels": y.to(device)}
    return x.to(device), y.to(device)


def stepper(model: nn.Module, batch) -> Callable[[], None]:
    model.train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
    y = batch[1] if isinstance(batch, tuple) else batch["labels"]

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(classifier_logits(model, batch), y).backward()
        opt.step()
    return step


def low_rank_copy(dense: nn.Module, targets: str, fraction: float | None) -> nn.Module:
    m = copy.deepcopy(dense)
    layers = to_low_rank(m, targets)
    if fraction is not None:
        for layer in layers.values():
            k = fraction_rank(layer.out_features, layer.in_features, fraction, core=True)
            cut_low_rank_layer(layer, lambda s, k=k: k)
    return m


def time_cuts(model: nn.Module, names: list[str], repeats: int, device) -> dict[str, Any]:
    """One IEHT cut of every layer plus the optimizer rebuild, on a fresh copy each time (a cut
    changes the layers)."""
    times, ranks = [], {}
    for _ in range(repeats):
        m = copy.deepcopy(model)
        opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-5)
        layers = {n: m.get_submodule(n) for n in names}
        t0 = clock(device)
        for n, layer in layers.items():
            floor = max(1, -(-2 * min(layer.out_features, layer.in_features) // 100))
            rule = lambda s, f=floor: select_rank(s, "energy", beta=BETA, min_rank=min(f, s.numel()))  # noqa: E731
            before, after = cut_low_rank_layer(layer, rule)
            ranks[n] = (before, after)
        old = opt.state
        opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-5)
        for group in opt.param_groups:
            for q in group["params"]:
                if q in old:
                    opt.state[q] = old[q]
        times.append(clock(device) - t0)
    return {"median_s": statistics.median(times), "samples_s": times,
            "mean_rank_before": statistics.mean(r[0] for r in ranks.values()),
            "mean_rank_after": statistics.mean(r[1] for r in ranks.values())}


def batched_svd(model: nn.Module, names: list[str], repeats: int, device) -> dict[str, Any]:
    cores = [model.get_submodule(n).S.detach().double() for n in names]
    groups: dict[tuple, list[torch.Tensor]] = {}
    for c in cores:
        groups.setdefault(tuple(c.shape), []).append(c)
    stacks = [torch.stack(g) for g in groups.values()]

    def loop():
        return [robust_svd(c)[1] for c in cores]

    def batched():
        return [torch.linalg.svd(s, full_matrices=False)[1] for s in stacks]
    a = torch.cat(loop())
    b = torch.cat([s.reshape(-1) for s in batched()])
    t = interleaved({"loop": loop, "batched": batched}, repeats=repeats, device=device)
    return {"shapes": {str(k): len(v) for k, v in groups.items()},
            "loop_s": t["loop"]["median_s"], "batched_s": t["batched"]["median_s"],
            "speedup": t["loop"]["median_s"] / t["batched"]["median_s"],
            "max_singular_value_diff": float((torch.sort(a).values - torch.sort(b).values).abs().max())}


def ifht_fisher_cost(case, model: nn.Module, names: list[str], device) -> dict[str, Any]:
    """The extra work of an IFHT cut (``lowrank.methods.iht.fisher_row_weights``), timed three ways,
    interleaved in one process:

    * ``rows``: what IFHT does now, the Fisher row sums taken on the ``LowRankLinear`` layers as they are
      (T × T Gram matrices, no per-sample (out, in) gradient, no copy of the model);
    * ``copy_rows``: the same row sums on a dense copy of the model (its ``LowRankLinear`` layers rebuilt as
      Linears at every cut), the previous path;
    * ``copy_full``: a dense copy and the full per-sample diagonal summed to rows afterwards, the path whose
      cost (38 s per cut on MiniLM) opened the performance issue.

    Per-sample times are scaled to ``fisher_samples = 256``; the dense copy is paid once per cut.
    """
    b = case["fisher_batch"]
    batch = make_batch(case, b, device, key=2)

    def dense_copy() -> nn.Module:
        dense = copy.deepcopy(model)
        for n in names:
            layer = dense.get_submodule(n)
            if isinstance(layer, LowRankLinear):
                replace_module(dense, n, layer.to_linear())
        return dense

    t0 = clock(device)
    dense = dense_copy()
    t_copy = clock(device) - t0
    out: dict[str, Any] = {}

    def fisher(target: nn.Module, reduce: str, key: str):
        def run():
            res = diagonal_fisher(target, [batch], names, labels="true", generator=make_generator(0, device),
                                  dtype=torch.float64, reduce=reduce)
            out[key] = res if reduce == "rows" else {n: f.sum(dim=1) for n, f in res.items()}
        return run

    t = interleaved({"rows": fisher(model, "rows", "rows"), "copy_rows": fisher(dense, "rows", "copy_rows"),
                     "copy_full": fisher(dense, "none", "copy_full")}, repeats=2, device=device)
    per_sample = {k: v["median_s"] / b for k, v in t.items()}
    rel = max(float((out[k][n] - out["copy_full"][n]).abs().max() / out["copy_full"][n].abs().max())
              for k in ("rows", "copy_rows") for n in names)
    per_cut = per_sample["rows"] * FISHER_SAMPLES
    before = t_copy + per_sample["copy_full"] * FISHER_SAMPLES
    copy_rows = t_copy + per_sample["copy_rows"] * FISHER_SAMPLES
    return {"copy_s": t_copy, "per_sample_s": per_sample, "samples": FISHER_SAMPLES,
            "per_cut_s": per_cut, "per_cut_s_copy_rows": copy_rows, "per_cut_s_before": before,
            "speedup_vs_before": before / per_cut, "speedup_vs_copy_rows": copy_rows / per_cut,
            "max_rel_diff": rel}


def trp_cost(dense: nn.Module, names: list[str], repeats: int, device) -> dict[str, Any]:
    weights = [dense.get_submodule(n).weight.detach() for n in names]
    floor = [max(1, -(-2 * min(w.shape) // 100)) for w in weights]
    ks: list[int] = []
    last: dict[str, list] = {}

    def full():
        last["full"] = [truncate_dense(w, BETA, f) for w, f in zip(weights, floor)]
        ks[:] = [e[2] for e in last["full"]]

    def randomized():
        last["randomized"] = [truncated_svd(w.double(), k, randomized=True, oversample=10, niter=4)
                              for w, k in zip(weights, ks)]
    full()  # the rank the exact rule picks is the randomized SVD's target
    t = interleaved({"full": full, "randomized": randomized}, repeats=repeats, warmup=0, device=device)
    excess, rel = [], []
    for w, (w_k, _, k), f in zip(weights, last["full"], last["randomized"]):
        wd, wk = w.double(), w_k.double()
        opt_err = float(torch.linalg.matrix_norm(wd - wk))
        rnd_err = float(torch.linalg.matrix_norm(wd - f.matrix()))
        excess.append(rnd_err / max(opt_err, 1e-300) - 1)
        rel.append(float(torch.linalg.matrix_norm(f.matrix() - wk) / torch.linalg.matrix_norm(wk)))
    return {"full_s": t["full"]["median_s"], "randomized_s": t["randomized"]["median_s"],
            "speedup_randomized": t["full"]["median_s"] / t["randomized"]["median_s"],
            "mean_rank_fraction": statistics.mean(k / min(w.shape) for k, w in zip(ks, weights)),
            "max_excess_frobenius_error": max(excess), "mean_excess_frobenius_error": statistics.mean(excess),
            "max_rel_diff_to_exact_truncation": max(rel)}


def share(cost: float, step: float, nu: int) -> float:
    return cost / (cost + nu * step)


def main(argv=None) -> dict[str, Any]:
    parser = base_parser(__doc__)
    parser.add_argument("--models", default=None, help="default minilm,vit_b16 (minilm with --quick: the "
                        "ViT's epoch-spaced cuts are far below the goal either way)")
    parser.add_argument("--vit-depth", type=int, default=None, help="ViT-B/16 blocks (default 1 quick, 2 full)")
    args = parser.parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    depth = args.vit_depth or (1 if args.quick else 2)
    repeats = 3 if args.quick else 5
    report: dict[str, Any] = {"machine": machine(device), "config": {"quick": args.quick, "repeats": repeats,
                                                                      "beta": BETA, "vit_b16_depth": depth},
                              "models": {}}
    for name in (args.models or ("minilm" if args.quick else "minilm,vit_b16")).split(","):
        case = cases(args.quick, depth)[name]
        set_random_state(0)
        dense = case["build"]().to(device)
        names = list(find_linear_layers(dense, case["targets"]))
        full = low_rank_copy(dense, case["targets"], None)
        tenth = low_rank_copy(dense, case["targets"], 0.1)
        batch = make_batch(case, case["batch"], device)
        steps = interleaved({"dense": stepper(dense, batch), "low_rank_full": stepper(full, batch),
                             "low_rank_10": stepper(tenth, batch)}, repeats=max(3, repeats - 2), device=device)
        step = {k: v["median_s"] for k, v in steps.items()}
        cut_full = time_cuts(full, names, repeats, device)
        cut_10 = time_cuts(tenth, names, repeats, device)
        entry: dict[str, Any] = {
            "batch": case["batch"], "layers": len(names), "step_s": step,
            "cut_full_rank": cut_full, "cut_10": cut_10,
            "batched_svd_full_rank": batched_svd(full, names, repeats, device),
            "batched_svd_10": batched_svd(tenth, names, repeats, device),
            "ifht_fisher": ifht_fisher_cost(case, tenth, names, device),
            "trp": trp_cost(dense, names, 1 if args.quick else 3, device),
        }
        paper = case["paper"]
        shares: dict[str, Any] = {}
        first, steady = cut_full["median_s"], cut_10["median_s"]
        ifht = steady + entry["ifht_fisher"]["per_cut_s"]
        st = step["low_rank_10"]
        ifht_before = steady + entry["ifht_fisher"]["per_cut_s_before"]
        costs = {"ieht_first_cut": (first, st), "ieht_cut": (steady, st), "ifht_cut": (ifht, st),
                 "ifht_cut_before": (ifht_before, st)}
        for label, (cost, per_step) in costs.items():
            shares[f"{label}_every_step"] = share(cost, per_step, 1)
            if "ieht_steps" in paper:
                shares[f"{label}_every_nu_steps"] = {nu: share(cost, per_step, nu) for nu in paper["ieht_steps"]
                                                     if nu > 1}
            for data, spe in STEPS_PER_EPOCH.items() if "ieht_epochs" in paper else ():
                shares[f"{label}_every_nu_epochs_{data}"] = {nu: share(cost, per_step, nu * spe)
                                                             for nu in paper["ieht_epochs"]}
        shares["trp_every_nu_steps"] = {nu: share(entry["trp"]["full_s"], step["dense"], nu)
                                        for nu in paper["trp_steps"]}
        entry["share_of_training"] = shares
        # the target: SVD + cut + optimizer reshape at the paper's frequencies (the IFHT Fisher and
        # the one-off first cut at full rank are reported beside it)
        paper_shares = [v for k, d in shares.items() if k.startswith(("ieht_cut_every_nu", "trp_"))
                        for nu, v in d.items() if nu != 1]
        entry["max_share_at_paper_frequencies"] = max(paper_shares)
        entry["goal"] = 0.05
        entry["met"] = entry["max_share_at_paper_frequencies"] <= 0.05
        report["models"][name] = entry
        print(f"[compression] {name}: step dense {step['dense']:.2f}s, U·S·Vᵀ full {step['low_rank_full']:.2f}s, "
              f"10% {step['low_rank_10']:.2f}s; cut full rank {first:.3f}s, at 10% {steady:.3f}s; "
              f"IFHT Fisher {entry['ifht_fisher']['per_cut_s']:.1f}s/cut (dense copy + full diagonal: "
              f"{entry['ifht_fisher']['per_cut_s_before']:.1f}s); TRP {entry['trp']['full_s']:.2f}s "
              f"(randomized {entry['trp']['randomized_s']:.2f}s, excess error ≤ "
              f"{100 * entry['trp']['max_excess_frobenius_error']:.2f}%)")
        print(f"[compression] {name}: batched SVD speed-up {entry['batched_svd_full_rank']['speedup']:.2f}× "
              f"(full rank), {entry['batched_svd_10']['speedup']:.2f}× (10%)")
        for k, d in shares.items():
            if isinstance(d, dict):
                print(f"[compression] {name}: {k}: " + ", ".join(f"ν={nu}: {100 * v:.2f}%" for nu, v in d.items()))
            else:
                print(f"[compression] {name}: {k}: {100 * d:.1f}%")
        del dense, full, tenth
    if device.type == "cuda":
        report["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    path = write_report("compression", report, args.out)
    print(f"[compression] → {path}")
    return report


if __name__ == "__main__":
    main()
