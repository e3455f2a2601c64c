"""TTLinear's two forward paths (apply the cores one at a time vs form W, then one GEMM), as ratios.

    python -m bench.tt --quick --threads 1

Cases: a training step (forward + backward + AdamW) of the digits ViT with every Linear of its
blocks a TT at bond rank 4 (the Figure 2 setting), and the forward of one 768→3072 layer (the
ViT-B/16 / BERT MLP size) at bond ranks 4 and 32 with 3 cores, for 1,024 input rows. For each case:
the median time of each path, the ratio cores / dense, the multiply-add counts of both paths
(:meth:`lowrank.layers.TTLinear.contraction_costs`) and which path ``mode="auto"`` picks.
Writes ``reports/bench/tt.json``.
"""
from __future__ import annotations

from typing import Any

import torch

from lowrank.layers import TTLinear
from lowrank.models import build_model
from lowrank.surgery import TARGET_PRESETS, compress_model_tt
from lowrank.utils import make_generator, resolve_device, set_random_state

from .common import base_parser, interleaved, machine, setup_threads, write_report


def _set_mode(model: torch.nn.Module, mode: str) -> None:
    for m in model.modules():
        if isinstance(m, TTLinear):
            m.mode = mode


def _vit_step_case(device: torch.device, repeats: int) -> dict[str, Any]:
    set_random_state(0)
    model = build_model("vit_digits", num_classes=10).to(device)
    compress_model_tt(model, TARGET_PRESETS["vit_all"], method="ttm", cores=3, max_rank=4)
    g = make_generator(0)
    x = torch.randn(64, 1, 8, 8, generator=g).to(device)
    y = torch.randint(0, 10, (64,), generator=g).to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step(mode: str):
        def run():
            _set_mode(model, mode)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    res = interleaved({"cores": step("cores"), "dense": step("dense")}, repeats=repeats, device=device)
    layer = next(m for m in model.modules() if isinstance(m, TTLinear))
    rows = 64 * 17                                  # batch × tokens (16 patches + the class token)
    cores, dense = layer.contraction_costs(rows)
    return {"what": "digits ViT training step, all block Linears TT at bond rank 4",
            "cores_s": res["cores"]["median_s"], "dense_s": res["dense"]["median_s"],
            "cores_over_dense": res["cores"]["median_s"] / res["dense"]["median_s"],
            "first_layer_macs": {"cores": cores, "dense": dense},
            "auto_picks": "cores" if TTLinear.CORES_ADVANTAGE * cores < dense else "dense"}


def _layer_case(rank: int, device: torch.device, repeats: int, rows: int = 1024) -> dict[str, Any]:
    set_random_state(0)
    lin = torch.nn.Linear(768, 3072).to(device)
    layer = TTLinear.from_linear(lin, 3, max_rank=rank).to(device)
    x = torch.randn(rows, 768, generator=make_generator(1)).to(device)

    def fwd(mode: str):
        def run():
            layer.mode = mode
            with torch.no_grad():
                layer(x)
        return run

    res = interleaved({"cores": fwd("cores"), "dense": fwd("dense")}, repeats=repeats, device=device)
    cores, dense = layer.contraction_costs(rows)
    return {"what": f"768→3072 layer forward, 3 cores, bond rank {rank}, {rows} rows", "ranks": list(layer.ranks),
            "cores_s": res["cores"]["median_s"], "dense_s": res["dense"]["median_s"],
            "cores_over_dense": res["cores"]["median_s"] / res["dense"]["median_s"],
            "macs": {"cores": cores, "dense": dense},
            "auto_picks": "cores" if TTLinear.CORES_ADVANTAGE * cores < dense else "dense"}


def main(argv=None) -> dict[str, Any]:
    args = base_parser(__doc__).parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    repeats = 7 if args.quick else 15
    report = {"machine": machine(device),
              "config": {"quick": args.quick, "repeats": repeats, "cores_advantage": TTLinear.CORES_ADVANTAGE},
              "cases": [_vit_step_case(device, repeats), _layer_case(4, device, repeats),
                        _layer_case(32, device, repeats)]}
    for c in report["cases"]:
        print(f"[tt] {c['what']}: cores/dense {c['cores_over_dense']:.2f} (auto picks {c['auto_picks']})", flush=True)
    write_report("tt", report, args.out)
    return report


if __name__ == "__main__":
    main()
