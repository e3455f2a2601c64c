"""Fisher row weights (FWSVD, IFHT, FWTRP): the per-sample Gram path against the full diagonal, and the limit.

    python -m bench.fisher_rows [--quick] [--threads 1] [--device cuda]

Candidates, timed round-robin in one process on the same batch and the same true-Fisher label draws:

* ``full_then_rows``: the full (out, in) diagonal by the hooks method, then its row sums (the path IFHT
  took before ``reduce``);
* ``rows``: ``diagonal_fisher(..., reduce="rows")``: ‖row i of G_b‖² = g_iᵀ (x xᵀ) g_i from each sample's
  T × T Gram matrix, no (out, in) per-sample gradient;
* ``forward_backward``: one forward and one backward of the same summed loss over the same samples,
  with gradients for the target weights only: the floor any per-sample estimator stands on.

Ratios (``speedup_rows_vs_full``, ``rows_vs_limit``) are what this reports; absolute times depend on the
machine. MiniLM is run at 64 and 128 tokens (all real, as in ``bench.fisher``), the digits ViT at its 16.
"""
from __future__ import annotations

from typing import Any

import torch

from lowrank.fisher import default_forward, diagonal_fisher, row_weights
from lowrank.models import build_model
from lowrank.surgery import find_linear_layers
from lowrank.utils import make_generator, resolve_device, set_random_state

from .common import base_parser, interleaved, machine, setup_threads, write_report


def cases(quick: bool) -> dict[str, dict[str, Any]]:
    minilm = lambda tokens: {  # noqa: E731
        "build": lambda: build_model("minilm", num_classes=6), "targets": "bert_all", "classes": 6,
        "batch": 8 if quick else 16, "tokens": tokens,
        "input": lambda b, g: {"input_ids": torch.randint(1000, 20000, (b, tokens), generator=g)}}
    return {
        "vit_digits": {"build": lambda: build_model("vit_digits", num_classes=10), "targets": "vit_all",
                       "batch": 64, "tokens": 17, "classes": 10,
                       "input": lambda b, g: torch.randn(b, 1, 8, 8, generator=g)},
        "minilm_64": minilm(64),
        "minilm_128": minilm(128),
    }


def full_then_rows(model, loader, names):
    F = diagonal_fisher(model, loader, names, labels="true", generator=make_generator(0))
    return {n: row_weights(F[n]) for n in names}


def rows(model, loader, names):
    return diagonal_fisher(model, loader, names, labels="true", generator=make_generator(0), reduce="rows")


def forward_backward(model, loader, names):
    weights = [model.get_submodule(n).weight for n in names]
    flags = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in flags:
            p.requires_grad_(False)
        for w in weights:
            w.requires_grad_(True)
        fb = default_forward(model, loader[0])
        logits = fb.outputs
        y = torch.multinomial(torch.softmax(logits.detach(), -1), 1, generator=make_generator(0))[:, 0]
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        return torch.autograd.grad(loss, weights)
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)


def main(argv=None) -> dict[str, Any]:
    parser = base_parser(__doc__)
    parser.add_argument("--models", default="vit_digits,minilm_64,minilm_128")
    args = parser.parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    repeats = 3 if args.quick else 5
    report: dict[str, Any] = {"machine": machine(device), "config": {"quick": args.quick, "repeats": repeats,
                                                                     "labels": "true"}, "models": {}}
    for name in args.models.split(","):
        case = cases(args.quick)[name]
        set_random_state(0)
        model = case["build"]().to(device).eval()
        g = make_generator(0)
        x = case["input"](case["batch"], g)
        y = torch.randint(0, case["classes"], (case["batch"],), generator=g)
        batch = ({k: v.to(device) for k, v in x.items()} | {"labels": y.to(device)} if isinstance(x, dict)
                 else (x.to(device), y.to(device)))
        loader = [batch]
        names = list(find_linear_layers(model, case["targets"]))
        a, b = full_then_rows(model, loader, names), rows(model, loader, names)
        agree = max(float((a[n] - b[n]).abs().max() / a[n].abs().max()) for n in names)
        # F821 silenced: ruff resolves these lambdas after the loop's `del model`; they run before it.
        cands = {"full_then_rows": lambda: full_then_rows(model, loader, names),  # noqa: F821
                 "rows": lambda: rows(model, loader, names),  # noqa: F821
                 "forward_backward": lambda: forward_backward(model, loader, names)}  # noqa: F821
        t = interleaved(cands, repeats=repeats, warmup=1, device=device)
        med = {k: v["median_s"] for k, v in t.items()}
        entry = {"batch": case["batch"], "tokens": case["tokens"], "layers": len(names), "median_s": med,
                 "speedup_rows_vs_full": med["full_then_rows"] / med["rows"],
                 "rows_vs_limit": med["rows"] / med["forward_backward"],
                 "full_vs_limit": med["full_then_rows"] / med["forward_backward"],
                 "max_rel_diff_rows_vs_full": agree,
                 "goals": {"rows_vs_limit": 1.5, "speedup_rows_vs_full_minilm_64": 3.0}}
        report["models"][name] = entry
        print(f"[fisher_rows] {name}: rows {entry['speedup_rows_vs_full']:.2f}× faster than full-then-rows; "
              f"rows / forward+backward {entry['rows_vs_limit']:.2f}× (full: {entry['full_vs_limit']:.2f}×); "
              f"max rel. diff {agree:.1e}")
        del model
    path = write_report("fisher_rows", report, args.out)
    print(f"[fisher_rows] → {path}")
    return report


if __name__ == "__main__":
    main()
