"""The tenBCD study run by ``python -m lowrank tenbcd``: tenBCD vs AdamW (TT and dense) over a list of
compression ratios, the companion paper's (arXiv 2303.06815) MNIST experiment.

    python -m lowrank tenbcd params:tenbcd.mnist1d --out runs/tenbcd/mnist1d

:data:`TENBCD_EXPERIMENT_DEFAULTS` lists every key of an experiment (``params.yaml``: ``tenbcd.<name>``);
:func:`run_tenbcd_experiment` writes ``metrics.json`` and ``history.json``.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..utils import atomic_write_json, resolve_device
from .algorithm import DTYPE, TenBCDConfig, _is_int, _is_number, rank_for_compression, run_tenbcd
from .baseline import train_adamw

__all__ = ["TENBCD_EXPERIMENT_DEFAULTS", "validate_tenbcd_experiment", "run_tenbcd_experiment"]

TENBCD_EXPERIMENT_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist1d",
    "dataset_args": {},
    "hidden": [256, 256],
    "tt_cores": 3,
    "compression_ratios": [1.0, 0.77, 0.34, 0.09, 0.02],
    "random_state": 0,
    "device": "auto",
    # CPU threads (null: torch's default). One thread lets a tenBCD run share a 2-core machine with
    # another pipeline stage without oversubscription.
    "threads": None,
    # the tenBCD hyperparameters and their defaults are TenBCDConfig's (rank and random state come
    # from the compression ratio and the top-level key)
    "tenbcd": {f.name: f.default for f in fields(TenBCDConfig)
               if f.name not in ("widths", "tt_cores", "tt_rank", "random_state")},
    "adamw": {"epochs": 20, "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 128},
}

_DATASET_ARGS = {"mnist1d": ("num_samples", "test_fraction"), "digits": ("test_fraction",),
                 "mnist": ("root", "download")}   # mnist: the paper profile (downloads)


def validate_tenbcd_experiment(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key and value of an experiment dict (see :data:`TENBCD_EXPERIMENT_DEFAULTS`);
    returns the dict with defaults filled in. Raises ``ValueError`` naming the key, value and what
    is allowed."""
    if not isinstance(cfg, Mapping):
        raise ValueError(f"tenbcd experiment: config must be a mapping, got {type(cfg).__name__}")
    unknown = set(cfg) - set(TENBCD_EXPERIMENT_DEFAULTS)
    if unknown:
        raise ValueError(f"tenbcd experiment: unknown keys {sorted(unknown)}; allowed: "
                         f"{sorted(TENBCD_EXPERIMENT_DEFAULTS)}")
    s = {**TENBCD_EXPERIMENT_DEFAULTS, **cfg}
    for sub in ("tenbcd", "adamw"):
        if not isinstance(s[sub], Mapping):
            raise ValueError(f"tenbcd experiment: {sub}={s[sub]!r} must be a mapping")
        bad = set(s[sub]) - set(TENBCD_EXPERIMENT_DEFAULTS[sub])
        if bad:
            raise ValueError(f"tenbcd experiment: unknown keys {sorted(bad)} in {sub!r}; allowed: "
                             f"{sorted(TENBCD_EXPERIMENT_DEFAULTS[sub])}")
        s[sub] = {**TENBCD_EXPERIMENT_DEFAULTS[sub], **s[sub]}
    if s["dataset"] not in _DATASET_ARGS:
        raise ValueError(f"tenbcd experiment: dataset={s['dataset']!r}; allowed: {sorted(_DATASET_ARGS)}")
    if not isinstance(s["dataset_args"], Mapping) or set(s["dataset_args"]) - set(_DATASET_ARGS[s["dataset"]]):
        raise ValueError(f"tenbcd experiment: dataset_args={s['dataset_args']!r}; allowed keys for "
                         f"{s['dataset']!r}: {list(_DATASET_ARGS[s['dataset']])}")
    hidden = s["hidden"]
    if not isinstance(hidden, (list, tuple)) or not all(_is_int(h) and h >= 1 for h in hidden):
        raise ValueError(f"tenbcd experiment: hidden={hidden!r} must be a list of positive ints")
    crs = s["compression_ratios"]
    if not isinstance(crs, (list, tuple)) or not crs or not all(_is_number(c) and 0 < c <= 1 for c in crs):
        raise ValueError(f"tenbcd experiment: compression_ratios={crs!r} must be a non-empty list of numbers in (0, 1]")
    if len(set(crs)) != len(crs):
        raise ValueError(f"tenbcd experiment: compression_ratios={crs!r} has duplicates")
    if not _is_int(s["random_state"]) or s["random_state"] < 0:
        raise ValueError(f"tenbcd experiment: random_state={s['random_state']!r} must be an int >= 0")
    if s["threads"] is not None and (not _is_int(s["threads"]) or s["threads"] < 1):
        raise ValueError(f"tenbcd experiment: threads={s['threads']!r} must be a positive int or null")
    if s["device"] != "auto":
        try:
            torch.device(s["device"])
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"tenbcd experiment: device={s['device']!r} is not a torch device or 'auto'") from err
    # the tenBCD keys go through the config's own checks (widths use a placeholder input/output size)
    TenBCDConfig(widths=(1, *hidden, 1), tt_cores=s["tt_cores"], **s["tenbcd"])
    a = s["adamw"]
    for key in ("epochs", "batch_size"):
        if not _is_int(a[key]) or a[key] < (0 if key == "epochs" else 1):
            raise ValueError(f"tenbcd experiment: adamw.{key}={a[key]!r} must be an int >= {0 if key == 'epochs' else 1}")
    if not _is_number(a["lr"]) or a["lr"] <= 0:
        raise ValueError(f"tenbcd experiment: adamw.lr={a['lr']!r} must be a number > 0")
    if not _is_number(a["weight_decay"]) or a["weight_decay"] < 0:
        raise ValueError(f"tenbcd experiment: adamw.weight_decay={a['weight_decay']!r} must be a number >= 0")
    return s


def _load_arrays(s: Mapping[str, Any], cache_dir, device: torch.device):
    from ..data import digits_dataset, mnist1d_dataset, mnist_dataset

    build = {"mnist1d": mnist1d_dataset, "digits": digits_dataset, "mnist": mnist_dataset}[s["dataset"]]
    kw = dict(s["dataset_args"])
    train = build("train", cache_dir=cache_dir, random_state=s["random_state"], **kw)
    test = build("test", cache_dir=cache_dir, random_state=s["random_state"], **kw)
    Xtr = train.x.reshape(len(train), -1).to(DTYPE)
    Xte = test.x.reshape(len(test), -1).to(DTYPE)
    # standardise with train statistics; constant features (digits' border pixels) keep scale 1
    mean, std = Xtr.mean(0), Xtr.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    return Xtr.to(device), train.y.to(device), Xte.to(device), test.y.to(device)


def run_tenbcd_experiment(cfg: Mapping[str, Any], out_dir: str | Path, *, cache_dir: str | Path | None = None,
                          progress: bool = True) -> dict[str, Any]:
    """tenBCD vs AdamW over the compression ratios of ``cfg`` (the companion paper's MNIST study).

    For each target CR: the closest uniform bond rank (:func:`rank_for_compression`), a tenBCD run,
    and AdamW on the TT-parameterised MLP at that rank; AdamW on the dense MLP runs once. Writes
    ``metrics.json`` (``per_cr``: one record per target) and ``history.json`` (per target, the
    tenBCD history and both AdamW histories) atomically into ``out_dir``; returns the metrics.
    """
    s = validate_tenbcd_experiment(cfg)
    device = resolve_device(s["device"])
    if s["threads"] is not None:
        torch.set_num_threads(int(s["threads"]))
    Xtr, ytr, Xte, yte = _load_arrays(s, cache_dir, device)
    n_classes = int(max(int(ytr.max()), int(yte.max())) + 1)
    widths = (Xtr.shape[1], *s["hidden"], n_classes)
    Y = F.one_hot(ytr, n_classes).to(DTYPE).mT
    a, tb = s["adamw"], s["tenbcd"]
    adamw_kw = dict(epochs=a["epochs"], lr=a["lr"], weight_decay=a["weight_decay"], batch_size=a["batch_size"],
                    init_scale=tb["init_scale"], tt_init=tb["tt_init"], random_state=s["random_state"],
                    progress=progress)
    dense = train_adamw(Xtr, ytr, Xte, yte, widths, tt_cores=s["tt_cores"], tt_rank=None, **adamw_kw)
    per_cr, history = [], {}
    for target in s["compression_ratios"]:
        rank, cr = rank_for_compression(widths, s["tt_cores"], target)
        tcfg = TenBCDConfig(widths=widths, tt_cores=s["tt_cores"], tt_rank=rank,
                            random_state=s["random_state"], **tb)
        res = run_tenbcd(Xtr.mT, Y, Xte.mT, yte, tcfg, progress=progress)
        base = dense if rank is None else train_adamw(Xtr, ytr, Xte, yte, widths, tt_cores=s["tt_cores"],
                                                      tt_rank=rank, **adamw_kw)
        slacks = [x for x in res["history"]["slack"] if x is not None]
        per_cr.append({
            "target_cr": float(target),
            "cr": cr,
            "tt_rank": rank,
            "tenbcd_tt_test_acc": res["test_acc_tt"],
            "tenbcd_tt_train_acc": res["train_acc_tt"],
            "tenbcd_w_test_acc": res["test_acc_w"],
            "adamw_tt_test_acc": base["test_acc"],
            "adamw_dense_test_acc": dense["test_acc"],
            "final_objective": res["history"]["objective"][-1],
            "min_slack": min(slacks) if slacks else None,
            "tenbcd_seconds": res["seconds"],
            "adamw_tt_seconds": base["seconds"],
        })
        history[str(target)] = {"tenbcd": res["history"], "adamw_tt": base["history"], "adamw_dense": dense["history"]}
    metrics = {"dataset": s["dataset"], "widths": list(widths), "tt_cores": s["tt_cores"],
               "n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0]), "config": s, "per_cr": per_cr}
    out = Path(out_dir)
    atomic_write_json(out / "history.json", history)
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
