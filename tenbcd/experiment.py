"""The tenBCD study run by ``python -m tenbcd``: tenBCD against gradient baselines on the same tensor-train MLP
over compression ratios, each method tuned alike on a validation split (the companion paper's, arXiv
2303.06815, MNIST experiment, made a fair comparison).

    python -m tenbcd params:tenbcd.mnist1d --out runs/tenbcd/mnist1d

The protocol, per dataset:

1. a stratified ``validation_fraction`` of the training data is held out (split by ``random_state``); the
   inputs are standardised with the statistics of the remaining training part;
2. per compression ratio and per method (:data:`METHODS`: tenBCD and the baselines of
   :data:`tenbcd.baselines.BASELINES`), every configuration of the method's ``grid`` trains on the
   training part with the first seed of ``seeds``; each run is evaluated on the validation set at
   ``iterations / eval_every`` (tenBCD) or ``epochs / eval_every`` (baselines) checkpoints, and the
   (configuration, checkpoint) with the highest validation accuracy is chosen (ties: the earlier
   checkpoint, then the earlier configuration). Every method's grid has the same number of configurations
   and the same number of checkpoints (refused otherwise): equal tuning effort;
3. the chosen configuration trains to the chosen checkpoint once more with every other seed (the seed sets
   the initial weights and the mini-batch order); training, validation and test accuracy, the wall time of
   training and its multiply-adds (:mod:`tenbcd.cost`) are recorded per seed.

The test set is read at the chosen checkpoint only: it never takes part in a choice.

:data:`TENBCD_EXPERIMENT_DEFAULTS` lists every key (``params.yaml``: ``tenbcd.<name>``);
:func:`run_tenbcd_experiment` writes ``metrics.json`` (the choices and the per-seed results) and
``history.json`` (every run's curves: tenBCD's objective and decrease terms for claims (g1), (g2)).
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from lowrank.utils import atomic_write_json, resolve_device
from .algorithm import (DTYPE, TT_INITS, TenBCDConfig, _is_int, _is_number, dense_num_params, rank_for_compression,
                        run_tenbcd)
from .baselines import BASELINES, train_baseline
from .cost import machine

__all__ = ["METHODS", "TENBCD_EXPERIMENT_DEFAULTS", "validate_tenbcd_experiment", "expand_grid",
           "choose_checkpoint", "split_validation", "run_tenbcd_experiment"]

#: every method of the study: tenBCD and the gradient baselines
METHODS = ("tenbcd", *BASELINES)

#: TenBCDConfig's keys that the experiment sets itself (from the dataset, the CR and the seed)
_TENBCD_SET_BY_EXPERIMENT = ("widths", "tt_cores", "tt_rank", "random_state", "init_scale", "tt_init")
_TENBCD_KEYS = tuple(k for k in TenBCDConfig.__dataclass_fields__ if k not in _TENBCD_SET_BY_EXPERIMENT)
#: the keys of a baseline's ``fixed`` and ``grid`` (optimizer and loss come from the baseline's name)
_BASELINE_KEYS = ("epochs", "eval_every", "lr", "weight_decay", "momentum", "batch_size")
_BASELINE_DEFAULTS = {"epochs": 40, "eval_every": 4, "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.0,
                      "batch_size": 128}

TENBCD_EXPERIMENT_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist1d",
    "dataset_args": {},
    "hidden": [256, 256],
    "tt_cores": 3,
    "compression_ratios": [1.0, 0.77, 0.34, 0.09, 0.02],
    # the dataset's own seed (MNIST-1D's generation, digits' train/test split) and the validation split's
    "random_state": 0,
    "validation_fraction": 0.2,
    # the first seed selects the configuration; every seed is reported at it
    "seeds": [0, 1, 2],
    # the initial weights, shared by every method: He-normal × init_scale, and the TT cores' start
    "init_scale": 0.3,
    "tt_init": "rescaled",
    "device": "auto",
    # CPU threads (null: torch's default). One thread lets a tenBCD run share a 2-core machine with
    # another pipeline stage without oversubscription.
    "threads": None,
    # per method: `fixed` settings and a `grid` (key -> list of values; the product is searched)
    "tenbcd": {"fixed": {}, "grid": {}},
    "baselines": {name: {"fixed": {}, "grid": {}} for name in BASELINES},
}

_DATASET_ARGS = {"mnist1d": ("num_samples", "test_fraction"), "digits": ("test_fraction",),
                 "mnist": ("root", "download")}   # mnist: the paper profile (downloads)


def _err(msg: str) -> ValueError:
    return ValueError(f"tenbcd experiment: {msg}")


def expand_grid(grid: Mapping[str, list]) -> list[dict[str, Any]]:
    """The configurations of a grid (key -> list of values): their product, in the order of the keys and
    values as written (one empty configuration for an empty grid)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _method_block(s: Mapping[str, Any], method: str) -> Mapping[str, Any]:
    return s["tenbcd"] if method == "tenbcd" else s["baselines"][method]


def _check_block(name: str, block: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(block, Mapping) or set(block) - {"fixed", "grid"}:
        raise _err(f"{name}={block!r} must be a mapping with the keys 'fixed' and 'grid'")
    fixed, grid = dict(block.get("fixed") or {}), dict(block.get("grid") or {})
    for part, d in (("fixed", fixed), ("grid", grid)):
        bad = set(d) - set(allowed)
        if bad:
            raise _err(f"unknown keys {sorted(bad)} in {name}.{part}; allowed: {sorted(allowed)}")
    both = set(fixed) & set(grid)
    if both:
        raise _err(f"{name}: keys {sorted(both)} are both fixed and searched; give each in one place")
    for k, values in grid.items():
        if not isinstance(values, list) or not values or len(set(map(repr, values))) != len(values):
            raise _err(f"{name}.grid.{k}={values!r} must be a non-empty list of distinct values")
    return {"fixed": fixed, "grid": grid}


def _checkpoints(method: str, cfg: Mapping[str, Any]) -> int:
    """The number of evaluation points a run offers the selection (the initial point excluded)."""
    if method == "tenbcd":
        t = TenBCDConfig(widths=(1, 1), **cfg)   # the defaults of what cfg leaves out
        return math.ceil(t.iterations / t.eval_every)
    return math.ceil(cfg["epochs"] / cfg["eval_every"])


def _method_configs(s: Mapping[str, Any], method: str) -> list[dict[str, Any]]:
    """Every configuration of a method's grid, with its fixed settings and the defaults filled in."""
    block = _method_block(s, method)
    base = {} if method == "tenbcd" else dict(_BASELINE_DEFAULTS)
    return [{**base, **block["fixed"], **point} for point in expand_grid(block["grid"])]


def _check_baseline(name: str, c: Mapping[str, Any]) -> None:
    for key in ("epochs", "eval_every", "batch_size"):
        if not _is_int(c[key]) or c[key] < 1:
            raise _err(f"baselines.{name}.{key}={c[key]!r} must be an int >= 1")
    if not _is_number(c["lr"]) or c["lr"] <= 0:
        raise _err(f"baselines.{name}.lr={c['lr']!r} must be a number > 0")
    for key in ("weight_decay", "momentum"):
        if not _is_number(c[key]) or c[key] < 0:
            raise _err(f"baselines.{name}.{key}={c[key]!r} must be a number >= 0")
    if c["momentum"] and BASELINES[name][0] != "sgd":
        raise _err(f"baselines.{name}.momentum={c['momentum']!r}: only an SGD baseline has a momentum")


def validate_tenbcd_experiment(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key and value of an experiment dict (see :data:`TENBCD_EXPERIMENT_DEFAULTS`);
    returns the dict with defaults filled in. Raises ``ValueError`` naming the key, value and what
    is allowed, before any work."""
    if not isinstance(cfg, Mapping):
        raise _err(f"config must be a mapping, got {type(cfg).__name__}")
    unknown = set(cfg) - set(TENBCD_EXPERIMENT_DEFAULTS)
    if unknown:
        raise _err(f"unknown keys {sorted(unknown)}; allowed: {sorted(TENBCD_EXPERIMENT_DEFAULTS)}")
    s = {**TENBCD_EXPERIMENT_DEFAULTS, **cfg}
    if s["dataset"] not in _DATASET_ARGS:
        raise _err(f"dataset={s['dataset']!r}; allowed: {sorted(_DATASET_ARGS)}")
    if not isinstance(s["dataset_args"], Mapping) or set(s["dataset_args"]) - set(_DATASET_ARGS[s["dataset"]]):
        raise _err(f"dataset_args={s['dataset_args']!r}; allowed keys for {s['dataset']!r}: "
                   f"{list(_DATASET_ARGS[s['dataset']])}")
    hidden = s["hidden"]
    if not isinstance(hidden, (list, tuple)) or not all(_is_int(h) and h >= 1 for h in hidden):
        raise _err(f"hidden={hidden!r} must be a list of positive ints")
    crs = s["compression_ratios"]
    if not isinstance(crs, (list, tuple)) or not crs or not all(_is_number(c) and 0 < c <= 1 for c in crs):
        raise _err(f"compression_ratios={crs!r} must be a non-empty list of numbers in (0, 1]")
    if len(set(crs)) != len(crs):
        raise _err(f"compression_ratios={crs!r} has duplicates")
    if not _is_int(s["random_state"]) or s["random_state"] < 0:
        raise _err(f"random_state={s['random_state']!r} must be an int >= 0")
    vf = s["validation_fraction"]
    if not _is_number(vf) or not 0 < vf < 1:
        raise _err(f"validation_fraction={vf!r} must be a number in (0, 1)")
    seeds = s["seeds"]
    if (not isinstance(seeds, (list, tuple)) or not seeds or not all(_is_int(x) and x >= 0 for x in seeds)
            or len(set(seeds)) != len(seeds)):
        raise _err(f"seeds={seeds!r} must be a non-empty list of distinct ints >= 0")
    if not _is_number(s["init_scale"]) or s["init_scale"] <= 0:
        raise _err(f"init_scale={s['init_scale']!r} must be a number > 0")
    if s["tt_init"] not in TT_INITS:
        raise _err(f"tt_init={s['tt_init']!r}; allowed values: {list(TT_INITS)}")
    if s["threads"] is not None and (not _is_int(s["threads"]) or s["threads"] < 1):
        raise _err(f"threads={s['threads']!r} must be a positive int or null")
    if s["device"] != "auto":
        try:
            torch.device(s["device"])
        except (RuntimeError, TypeError) as err:
            raise _err(f"device={s['device']!r} is not a torch device or 'auto'") from err
    s["tenbcd"] = _check_block("tenbcd", s["tenbcd"], _TENBCD_KEYS)
    if not isinstance(s["baselines"], Mapping) or set(s["baselines"]) != set(BASELINES):
        got = sorted(s["baselines"]) if isinstance(s["baselines"], Mapping) else s["baselines"]
        raise _err(f"baselines={got!r} must name every baseline, no other: {sorted(BASELINES)}")
    s["baselines"] = {name: _check_block(f"baselines.{name}", s["baselines"][name], _BASELINE_KEYS)
                      for name in BASELINES}
    # every configuration goes through the checks it will meet at run time, now
    for point in _method_configs(s, "tenbcd"):
        TenBCDConfig(widths=(1, *hidden, 1), tt_cores=s["tt_cores"], init_scale=s["init_scale"],
                     tt_init=s["tt_init"], **point)
    for name in BASELINES:
        for point in _method_configs(s, name):
            _check_baseline(name, point)
    # equal tuning effort: as many configurations, and as many checkpoints per run, for every method
    sizes = {m: len(_method_configs(s, m)) for m in METHODS}
    if len(set(sizes.values())) != 1:
        raise _err(f"grid sizes {sizes} differ: every method gets the same number of configurations "
                   f"(equal tuning effort)")
    points = {m: sorted({_checkpoints(m, c) for c in _method_configs(s, m)}) for m in METHODS}
    if len({p for ps in points.values() for p in ps}) != 1:
        raise _err(f"validation checkpoints per run {points} differ: iterations / eval_every (tenBCD) and "
                   f"epochs / eval_every (baselines) must give every run the same number")
    return s


def split_validation(y: torch.Tensor, fraction: float, random_state: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, validation) of a stratified split of labels ``y``: ``fraction`` of every class
    (rounded as scikit-learn's ``train_test_split`` does) goes to validation."""
    from sklearn.model_selection import train_test_split

    idx = torch.arange(len(y)).numpy()
    tr, va = train_test_split(idx, test_size=fraction, stratify=y.cpu().numpy(), random_state=random_state)
    return torch.as_tensor(sorted(tr)), torch.as_tensor(sorted(va))


def _load_arrays(s: Mapping[str, Any], cache_dir, device: torch.device):
    from lowrank.data import digits_dataset, mnist1d_dataset, mnist_dataset

    build = {"mnist1d": mnist1d_dataset, "digits": digits_dataset, "mnist": mnist_dataset}[s["dataset"]]
    kw = dict(s["dataset_args"])
    train = build("train", cache_dir=cache_dir, random_state=s["random_state"], **kw)
    test = build("test", cache_dir=cache_dir, random_state=s["random_state"], **kw)
    X = train.x.reshape(len(train), -1).to(DTYPE)
    Xte = test.x.reshape(len(test), -1).to(DTYPE)
    tr, va = split_validation(train.y, s["validation_fraction"], s["random_state"])
    Xtr, Xva, ytr, yva = X[tr], X[va], train.y[tr], train.y[va]
    # standardise with the training part's statistics; constant features (digits' border pixels) keep scale 1
    mean, std = Xtr.mean(0), Xtr.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    Xtr, Xva, Xte = (Xtr - mean) / std, (Xva - mean) / std, (Xte - mean) / std
    return tuple(t.to(device) for t in (Xtr, ytr, Xva, yva, Xte, test.y))


def choose_checkpoint(runs: list[dict[str, Any]]) -> tuple[int, int]:
    """``(run index, checkpoint)`` with the highest validation accuracy over ``runs`` (each ``{"checkpoints":
    [...], "val_acc": [...]}``, the initial point excluded); ties go to the earlier checkpoint, then to the
    earlier run."""
    best: tuple[float, int, int] | None = None
    for i, r in enumerate(runs):
        for k, acc in zip(r["checkpoints"], r["val_acc"]):
            if k == 0 or acc is None:
                continue
            key = (-acc, k, i)
            if best is None or key < best:
                best = key
    if best is None:
        raise ValueError("choose_checkpoint: no run has a validation checkpoint")
    return best[2], best[1]


def _at(hist: Mapping[str, list], axis: str, k: int, key: str):
    return hist[key][hist[axis].index(k)]


class _Run:
    """One run of a method, read alike for tenBCD and the baselines: its history, the axis its checkpoints are
    counted in (``iteration`` / ``epoch``), the validation curve the choice reads and the multiply-adds of one
    step of that axis."""

    def __init__(self, method: str, history: Mapping[str, list], macs_per_step: int):
        self.history, self.macs_per_step = history, macs_per_step
        bcd = method == "tenbcd"
        self.axis = "iteration" if bcd else "epoch"
        self.keys = {"train_acc": "train_acc_tt", "val_acc": "val_acc_tt", "test_acc": "test_acc_tt",
                     "test_acc_w": "test_acc_w"} if bcd else {"train_acc": "train_acc", "val_acc": "val_acc",
                                                               "test_acc": "test_acc"}
        pts = [(k, a) for k, a in zip(history[self.axis], history[self.keys["val_acc"]]) if a is not None]
        self.curve = {"checkpoints": [k for k, _ in pts], "val_acc": [a for _, a in pts]}

    @property
    def length(self) -> int:
        return self.history[self.axis][-1]

    def at(self, k: int) -> dict[str, Any]:
        """What the run reached at checkpoint ``k``: accuracies, training seconds and multiply-adds."""
        return {"checkpoint": k, **{name: _at(self.history, self.axis, k, key) for name, key in self.keys.items()},
                "seconds": _at(self.history, self.axis, k, "seconds"), "macs": self.macs_per_step * k}


class _Study:
    """The runs of one dataset: its data (train / validation / test), the widths, and one run of a method."""

    def __init__(self, s: Mapping[str, Any], cache_dir):
        self.s = s
        self.device = resolve_device(s["device"])
        self.Xtr, self.ytr, self.Xva, self.yva, self.Xte, self.yte = _load_arrays(s, cache_dir, self.device)
        self.n_classes = int(max(int(self.ytr.max()), int(self.yva.max()), int(self.yte.max())) + 1)
        self.widths = (int(self.Xtr.shape[1]), *s["hidden"], self.n_classes)
        self.Y = F.one_hot(self.ytr, self.n_classes).to(DTYPE).mT

    def run(self, method: str, point: Mapping[str, Any], rank: int | None, seed: int,
            steps: int | None = None) -> _Run:
        """``method`` with the configuration ``point`` at bond rank ``rank`` from ``seed``, for ``steps``
        iterations (epochs) instead of the configuration's, when given."""
        s = self.s
        if method == "tenbcd":
            cfg = TenBCDConfig(widths=self.widths, tt_cores=s["tt_cores"], tt_rank=rank, random_state=seed,
                               init_scale=s["init_scale"], tt_init=s["tt_init"],
                               **{**point, **({} if steps is None else {"iterations": steps})})
            res = run_tenbcd(self.Xtr.mT, self.Y, self.Xte.mT, self.yte, cfg, X_val=self.Xva.mT, y_val=self.yva,
                             progress=False)
            return _Run(method, res["history"], res["macs_per_iteration"])
        optimizer, loss = BASELINES[method]
        res = train_baseline(self.Xtr, self.ytr, self.Xte, self.yte, self.widths, X_val=self.Xva, y_val=self.yva,
                             optimizer=optimizer, loss=loss, tt_cores=s["tt_cores"], tt_rank=rank,
                             init_scale=s["init_scale"], tt_init=s["tt_init"], random_state=seed, progress=False,
                             **{**point, **({} if steps is None else {"epochs": steps})})
        return _Run(method, res["history"], res["macs_per_epoch"])


def run_tenbcd_experiment(cfg: Mapping[str, Any], out_dir: str | Path, *, cache_dir: str | Path | None = None,
                          progress: bool = True) -> dict[str, Any]:
    """The study of one dataset (see the module docstring): for each target CR, the closest uniform bond rank
    (:func:`rank_for_compression`), each method's grid on the first seed, its choice on validation, and the
    other seeds at the choice. Writes ``metrics.json`` and ``history.json`` atomically into ``out_dir``;
    returns the metrics."""
    from tqdm.auto import tqdm

    s = validate_tenbcd_experiment(cfg)
    if s["threads"] is not None:
        torch.set_num_threads(int(s["threads"]))
    st = _Study(s, cache_dir)
    seeds = list(s["seeds"])
    configs = {m: _method_configs(s, m) for m in METHODS}
    total = len(s["compression_ratios"]) * sum(len(c) + len(seeds) - 1 for c in configs.values())
    bar = tqdm(total=total, desc=f"tenBCD study {s['dataset']}", disable=not progress)
    per_cr, grid_rows, selected, histories = [], [], [], []
    for target in s["compression_ratios"]:
        rank, cr = rank_for_compression(st.widths, s["tt_cores"], target)
        per_cr.append({"target_cr": float(target), "cr": cr, "tt_rank": rank,
                       "params": round(cr * dense_num_params(st.widths)), "dense_params": dense_num_params(st.widths)})
        for method in METHODS:
            tag = {"method": method, "target_cr": float(target)}
            runs = []
            for point in configs[method]:
                run = st.run(method, point, rank, seeds[0])
                runs.append(run)
                grid_rows.append({**tag, "config": point, "best_val_acc": max(run.curve["val_acc"][1:], default=None),
                                  "seconds": run.at(run.length)["seconds"], "macs": run.at(run.length)["macs"]})
                histories.append({**tag, "config": point, "seed": seeds[0], "role": "grid", "history": run.history})
                bar.update()
            i, k = choose_checkpoint([r.curve for r in runs])
            point = configs[method][i]
            per_seed = [{"seed": seeds[0], **runs[i].at(k)}]
            for seed in seeds[1:]:
                run = st.run(method, point, rank, seed, steps=k)
                per_seed.append({"seed": seed, **run.at(k)})
                histories.append({**tag, "config": point, "seed": seed, "role": "seed", "history": run.history})
                bar.update()
            mine = [r for r in grid_rows if r["method"] == method and r["target_cr"] == float(target)]
            selected.append({**tag, "cr": cr, "tt_rank": rank, "config": point, "checkpoint": k,
                             "unit": runs[i].axis, "per_seed": per_seed,
                             "tuning_seconds": sum(r["seconds"] for r in mine),
                             "tuning_macs": sum(r["macs"] for r in mine)})
    bar.close()
    metrics = {"dataset": s["dataset"], "widths": list(st.widths), "tt_cores": s["tt_cores"],
               "n_train": int(st.Xtr.shape[0]), "n_val": int(st.Xva.shape[0]), "n_test": int(st.Xte.shape[0]),
               "seeds": seeds, "methods": list(METHODS), "config": s, "per_cr": per_cr, "grid": grid_rows,
               "selected": selected, "device": str(st.device), "machine": machine(st.device),
               "threads": torch.get_num_threads()}
    out = Path(out_dir)
    atomic_write_json(out / "history.json", histories)
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
