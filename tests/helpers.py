"""Helpers shared by several test modules: synthetic run folders.

The synthetic runs follow the run output contract of ``lowrank.train`` (metrics.json with the full
spec, log.jsonl with start / epoch / final records, ranks.json with the rank trajectory); their
accuracies come from simple closed-form curves, and every metrics.json says ``"synthetic": true``.
:func:`write_synthetic_runs` writes a complete ``runs/`` tree (every sweep of the pipeline).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np


def _write(path: Path, text: str) -> None:
    # plain writes: fixtures need no atomicity, and thousands of fsyncs would dominate the test time
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ------------------------------------------------------------------------------------------ synthetic runs
# the target layers of vit_digits (out, in): four blocks of qkv, proj, fc1, fc2
LAYERS = {f"blocks.{b}.{n}": shape for b in range(4)
          for n, shape in (("attn.qkv", (192, 64)), ("attn.proj", (64, 64)), ("mlp.fc1", (256, 64)),
                           ("mlp.fc2", (64, 256)))}
MLP_LAYERS = {k: v for k, v in LAYERS.items() if ".mlp." in k}


def compiled(ranks: Mapping[str, int], layers: Mapping[str, tuple[int, int]]) -> int:
    return sum(min(ranks[n] * (o + i), o * i) + o for n, (o, i) in layers.items())


def original(layers: Mapping[str, tuple[int, int]]) -> int:
    return sum(o * i + o for o, i in layers.values())


def full_ranks(layers: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    return {n: min(s) for n, s in layers.items()}


def write_run(run_dir: Path, *, method: str, method_args: dict, epochs: int, random_state: int = 0,
              dataset: str = "digits", layers: Mapping[str, tuple[int, int]] = LAYERS,
              start: tuple[float, dict] | None, epoch_records: Sequence[tuple[float, dict]],
              trajectory: Sequence[dict], write_metrics: bool = True) -> None:
    """One run folder; ``start`` / ``epoch_records`` are (accuracy, ranks) pairs."""
    orig = original(layers)
    total_other = 50_000

    def rec(kind: str, epoch: int, acc: float, ranks: dict) -> dict:
        c = compiled(ranks, layers)
        return {"kind": kind, "step": 10 * epoch, "epoch": epoch, "train_loss": 0.5, "eval_loss": 1 - acc,
                "accuracy": acc, "params_total": total_other + c, "params_target": c, "params_target_compiled": c,
                "compression_ratio_target": c / orig, "params_total_compiled": total_other + c,
                "compression_ratio_total": (total_other + c) / (total_other + orig), "lr": 1e-3, "ranks": ranks}

    log = []
    if start is not None:
        log.append(rec("start", 0, *start))
    for e, (acc, ranks) in enumerate(epoch_records, start=1):
        log.append(rec("epoch", e, acc, ranks))
    last = dict(log[-1], kind="final")
    log.append(last)
    spec = {"dataset": dataset, "dataset_args": {}, "model": "vit_digits", "model_args": {},
            "base": f"runs/pretrain/{dataset}/model.pt", "targets": "vit_all" if layers is LAYERS else "vit_mlp",
            "method": method, "method_args": method_args, "calibration_samples": 256,
            "train": {"epochs": epochs, "random_state": random_state, "lr": 1e-3, "batch_size": 64},
            "keep_checkpoint": False}
    _write(run_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    _write(run_dir / "ranks.json", json.dumps({"trajectory": list(trajectory), "final": last["ranks"]}))
    if write_metrics:
        metrics = {k: last[k] for k in ("accuracy", "eval_loss", "params_total", "params_target",
                                        "compression_ratio_target", "compression_ratio_total", "step", "epoch")}
        metrics.update({"method": method, "wall_seconds": 1.0, "original_params_total": total_other + orig,
                        "original_params_target": orig, "dataset": dataset, "model": "vit_digits", "spec": spec,
                        "synthetic": True})
        _write(run_dir / "metrics.json", json.dumps(metrics))


def ratio_of(ranks: Mapping[str, int], layers: Mapping[str, tuple[int, int]] = LAYERS) -> float:
    return compiled(ranks, layers) / original(layers)


def curve(scale: float) -> Callable[[float], float]:
    """Accuracy against the fraction of target parameters: 0.97 − 0.9·exp(−ratio/scale)."""
    return lambda r: 0.97 - 0.9 * math.exp(-r / scale)


def oneshot_run(run_dir: Path, method: str, rank: int, *, epochs: int = 4, random_state: int = 0,
                dataset: str = "digits", layers=LAYERS, zero_shot: float | None = None,
                scale: float = 0.05, noise: float = 0.003) -> None:
    rng = np.random.default_rng(random_state * 1000 + rank)
    ranks = {n: min(rank, min(s)) for n, s in layers.items()}
    final = curve(scale)(ratio_of(ranks, layers)) + noise * rng.standard_normal()
    zs = zero_shot if zero_shot is not None else 0.5 * final
    eps = [(zs + (final - zs) * (1 - 0.5 ** (e + 1)), ranks) for e in range(epochs)]
    eps[-1] = (final, ranks)
    write_run(run_dir, method=method, method_args={"rank": rank}, epochs=epochs, random_state=random_state,
              dataset=dataset, layers=layers, start=(zs, ranks), epoch_records=eps,
              trajectory=[{"step": 0, "epoch": 0, "event": "project", "ranks": ranks},
                          {"step": 10 * epochs, "epoch": epochs, "event": "compile", "ranks": ranks}])


def iterative_run(run_dir: Path, method: str, method_args: dict, cut_factors: Sequence[float], *, scale: float,
                  random_state: int = 0, dataset: str = "digits", noise: float = 0.003, delay: int = 1,
                  epochs: int | None = None) -> None:
    """Dense for ``delay`` epochs, convert, then one cut per epoch multiplying every rank by a factor;
    ``epochs`` (default: one after the last cut) pads with epochs without a cut."""
    rng = np.random.default_rng(random_state)
    full = full_ranks(LAYERS)
    ranks = dict(full)
    eps, traj = [], []
    epochs = epochs or delay + len(cut_factors) + 1
    for e in range(1, epochs + 1):
        if e == delay:
            traj.append({"step": 10 * e, "epoch": e, "event": "convert", "ranks": dict(ranks)})
        elif e > delay and e - delay - 1 < len(cut_factors):
            f = cut_factors[e - delay - 1]
            ranks = {n: max(1, int(round(k * f ** (1 + 0.1 * (i % 3))))) for i, (n, k) in enumerate(ranks.items())}
            ranks = {n: min(k, full[n]) for n, k in ranks.items()}
            traj.append({"step": 10 * e, "epoch": e, "event": "cut", "ranks": dict(ranks)})
        acc = curve(scale)(ratio_of(ranks)) + noise * rng.standard_normal()
        eps.append((acc, dict(ranks)))
    traj.append({"step": 10 * epochs, "epoch": epochs, "event": "compile", "ranks": dict(ranks)})
    write_run(run_dir, method=method, method_args=method_args, epochs=epochs, random_state=random_state,
              dataset=dataset, start=(0.97, full), epoch_records=eps, trajectory=traj)


def ranks_for(fraction: float, layers: Mapping[str, tuple[int, int]] = LAYERS) -> dict[str, int]:
    """Per-layer ranks whose compiled size is the largest at most ``fraction`` of the targets that a greedy
    fill reaches: the largest uniform rank that fits, then one more rank layer by layer while it fits (so
    the size lands within one layer's rank step below ``fraction``, as the energy rule's does)."""
    orig, full = original(layers), full_ranks(layers)
    k = 1
    while k < max(full.values()) and compiled({n: min(k + 1, full[n]) for n in layers}, layers) <= fraction * orig:
        k += 1
    ranks = {n: min(k, full[n]) for n in layers}
    for n in layers:
        trial = {**ranks, n: min(ranks[n] + 1, full[n])}
        if compiled(trial, layers) <= fraction * orig:
            ranks = trial
    return ranks


def fraction_run(run_dir: Path, method: str, fraction: float, *, epochs: int = 4, random_state: int = 0,
                 dataset: str = "digits", scale: float = 0.05, noise: float = 0.003, train: str = "factors",
                 offset: float = 0.0) -> None:
    """A one-shot run asked for ``params_fraction`` (energy rule) at the size :func:`ranks_for` gives;
    ``train: core`` and an accuracy ``offset`` (what training only S costs) as the pipeline records them."""
    rng = np.random.default_rng(random_state * 1000 + int(1e4 * fraction))
    ranks = ranks_for(fraction)
    final = curve(scale)(ratio_of(ranks)) + offset + noise * rng.standard_normal()
    eps = [(0.5 * final + 0.5 * final * (1 - 0.5 ** (e + 1)), ranks) for e in range(epochs)]
    eps[-1] = (final, ranks)
    args = {"params_fraction": fraction, "rank_rule": "energy", **({"train": "core"} if train == "core" else {})}
    write_run(run_dir, method=method, method_args=args, epochs=epochs, random_state=random_state, dataset=dataset,
              start=(0.5 * final, ranks), epoch_records=eps,
              trajectory=[{"step": 0, "epoch": 0, "event": "project", "ranks": ranks},
                          {"step": 10 * epochs, "epoch": epochs, "event": "compile", "ranks": ranks}])


def path_run(run_dir: Path, method: str, method_args: dict, sizes: Sequence[float], *, scale: float,
             random_state: int = 0, dataset: str = "digits", noise: float = 0.003, epochs: int | None = None) -> None:
    """An iterative run whose epoch ``e`` model has the size :func:`ranks_for` gives for ``sizes[e − 1]``
    (``epochs`` pads with the last size), its accuracy on :func:`curve`."""
    rng = np.random.default_rng(random_state + 7)
    epochs = epochs or len(sizes)
    eps, traj = [], [{"step": 0, "epoch": 0, "event": "convert", "ranks": full_ranks(LAYERS)}]
    for e in range(1, epochs + 1):
        ranks = ranks_for(sizes[min(e, len(sizes)) - 1])
        if e <= len(sizes):
            traj.append({"step": 10 * e, "epoch": e, "event": "cut", "ranks": ranks})
        eps.append((curve(scale)(ratio_of(ranks)) + noise * rng.standard_normal(), ranks))
    traj.append({"step": 10 * epochs, "epoch": epochs, "event": "compile", "ranks": eps[-1][1]})
    write_run(run_dir, method=method, method_args=method_args, epochs=epochs, random_state=random_state,
              dataset=dataset, start=(0.97, full_ranks(LAYERS)), epoch_records=eps, trajectory=traj)


#: the decisive sweep's one-shot sizes (params.yaml `repeats`): 4 % · (1/0.9)^j
WINDOW_FRACTIONS = (0.04, 0.0444, 0.0494, 0.0549, 0.061, 0.0677)
#: an iterative path with an evaluation near every budget of the 4–7 % window
WINDOW_PATH = (0.5, 0.25, 0.12, 0.08, 0.0695, 0.0668, 0.0605, 0.0545, 0.049, 0.0441, 0.0398)

OIALR_CUTS = (0.3, 0.8, 0.8, 0.8, 0.8)       # a large first cut, then smaller ones
ENERGY_CUTS = (0.7,) * 10


def write_synthetic_runs(root: Path, *, fwsvd_zero_shot_gain: float = 0.25, iterative_scale: float = 0.02,
                         oneshot_scale: float = 0.05, oialr_scale: float = 0.06,
                         schedule_scales: Mapping[str, float] | None = None,
                         global_scale: float = 0.03, repeats: bool = True) -> Path:
    """A complete synthetic ``runs/`` tree (every sweep of the pipeline); directory names deliberately
    do not reveal the method, which must come from the spec."""
    schedule_scales = schedule_scales or {"increasing": 0.015, "constant": 0.02, "decreasing": 0.03}
    n = 0

    def d(sweep: str) -> Path:
        nonlocal n
        n += 1
        return root / sweep / f"run{n:03d}"

    for ds in ("digits", "text"):
        write_run(root / "pretrain" / ds, method="dense", method_args={}, epochs=3, dataset=ds, start=None,
                  epoch_records=[(0.9, full_ranks(LAYERS))] * 3, trajectory=[])
    for ds in ("digits", "text"):
        for rank in (2, 4, 8, 16):
            base = 0.2 + 0.04 * rank
            oneshot_run(d("table1"), "svd", rank, dataset=ds, layers=MLP_LAYERS, zero_shot=base)
            oneshot_run(d("table1"), "fwsvd", rank, dataset=ds, layers=MLP_LAYERS,
                        zero_shot=min(0.99, base + fwsvd_zero_shot_gain))
    for m in ("svd", "fwsvd", "tfwsvd"):
        for rank in (1, 2, 4, 8, 16, 32):
            oneshot_run(d("fig2"), m, rank, scale=oneshot_scale)
    for m in ("trp", "fwtrp"):
        for t in (0.9, 0.95):
            iterative_run(d("fig2"), m, {"trp_threshold": t, "trp_frequency": 50}, ENERGY_CUTS, scale=iterative_scale)
    for t in (0.15, 0.25):
        iterative_run(d("fig2"), "oialr", {"oialr_threshold": t, "oialr_frequency": 1}, OIALR_CUTS, scale=oialr_scale)
    for m in ("ieht", "ifht"):
        for t in (0.9, 0.95):
            iterative_run(d("fig2"), m, {"oialr_threshold": t, "oialr_frequency": 1}, ENERGY_CUTS,
                          scale=iterative_scale)
    for s, sc in schedule_scales.items():
        for t in (0.9, 0.95):
            iterative_run(d("fig4"), "ieht", {"oialr_threshold": t, "oialr_depth_schedule": s}, ENERGY_CUTS, scale=sc)
    for m, sc in (("ieht", iterative_scale), ("ifht", iterative_scale), ("global_ieht", global_scale),
                  ("global_ifht", global_scale)):
        iterative_run(d("fig5"), m, {"oialr_threshold": 0.95}, ENERGY_CUTS, scale=sc)
    for k in range(3):
        for epochs in (22, 44):
            fraction_run(d("budget"), "svd", 0.04, epochs=epochs, random_state=k,
                         scale=oneshot_scale * (1.0 if epochs == 22 else 0.9))
            # the longer run spaces its cuts further apart: its method_args differ (as in the pipeline)
            path_run(d("budget"), "ieht", {"oialr_threshold": 0.8, "oialr_frequency": epochs // 11},
                     WINDOW_PATH, scale=iterative_scale, random_state=k, epochs=epochs)
    if repeats:
        for ds in ("digits", "mnist1d"):
            for k in range(3):
                for f in WINDOW_FRACTIONS:
                    fraction_run(d("repeats"), "svd", f, random_state=k, dataset=ds, scale=oneshot_scale,
                                 epochs=len(WINDOW_PATH))
                for f in WINDOW_FRACTIONS[2:5:2]:
                    fraction_run(d("repeats"), "svd", f, random_state=k, dataset=ds, scale=oneshot_scale,
                                 train="core", offset=-0.02, epochs=len(WINDOW_PATH))
                for m, t in (("ieht", 0.8), ("ieht", 0.9), ("ifht", 0.8)):
                    path_run(d("repeats"), m, {"oialr_threshold": t}, WINDOW_PATH, scale=iterative_scale,
                             random_state=k, dataset=ds)
    # a run still going: log only, no metrics.json → ignored
    write_run(root / "fig2" / "unfinished", method="ieht", method_args={}, epochs=2, start=None,
              epoch_records=[(0.5, full_ranks(LAYERS))], trajectory=[], write_metrics=False)
    return root
