"""One experiment = one model, one dataset, one method, one training budget → ``runs/<name>/``.

A spec (JSON/YAML mapping; the DVC sweeps generate them from ``params.yaml``)::

    {"dataset": "digits", "model": "vit_digits", "model_args": {},
     "base": "runs/pretrain_digits/model.pt",          # null = train from scratch (pre-training)
     "targets": "vit_all",
     "method": "ieht", "method_args": {"oialr_threshold": 0.95, "oialr_frequency": 2},
     "calibration_samples": 256,
     "train_samples": null,                             # a fixed subset of the train split (short budgets)
     "train": {"epochs": 30, "lr": 1e-3, ...}}

Everything is validated before any data is loaded or any model built (unknown names, thresholds
outside (0, 1], non-positive frequencies, a delay beyond the run, ...). Outputs: ``metrics.json``,
``log.jsonl`` (one line per evaluation), ``ranks.json`` (per-layer rank trajectory), ``model.pt``
(the compiled model's structure and state dict), ``checkpoint.pt`` (for resuming; removed at the end
unless ``keep_checkpoint``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .data import DATASETS, calibration_subset, get_dataset, has_validation, num_classes
from .methods import METHODS, build_method
from .models import MODELS, build_model
from .surgery import TARGET_PRESETS
from .train import Trainer, apply_structure, validate_train_config
from .utils import file_sha256, set_random_state

__all__ = ["SPEC_DEFAULTS", "validate_spec", "run_experiment", "run_group", "load_base"]

SPEC_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "dataset_args": {},
    "model": "vit_digits",
    "model_args": {},
    "base": None,
    "targets": "vit_all",
    "method": "dense",
    "method_args": {},
    "calibration_samples": 256,
    "train_samples": None,
    "train": {},
    "keep_checkpoint": False,
}


def validate_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - set(SPEC_DEFAULTS)
    if unknown:
        raise ValueError(f"experiment: unknown keys {sorted(unknown)}; allowed: {sorted(SPEC_DEFAULTS)}")
    s = {**SPEC_DEFAULTS, **spec}
    base_name = str(s["dataset"]).split(":")[0]
    if base_name not in DATASETS:
        raise ValueError(f"dataset={s['dataset']!r} is not a known dataset; allowed: {sorted(DATASETS)}")
    if s["model"] not in MODELS:
        raise ValueError(f"model={s['model']!r} is not a known model; allowed: {sorted(MODELS)}")
    if s["method"] not in METHODS:
        raise ValueError(f"method={s['method']!r} is not a known method; allowed: {sorted(METHODS)}")
    if isinstance(s["targets"], str) and s["targets"] not in (*TARGET_PRESETS, "auto") and "*" not in s["targets"] \
            and "." not in s["targets"]:
        raise ValueError(f"targets={s['targets']!r} is neither a preset ({sorted(TARGET_PRESETS)}) nor a pattern nor 'auto'")
    if isinstance(s["calibration_samples"], bool) or not isinstance(s["calibration_samples"], int) \
            or s["calibration_samples"] < 1:
        raise ValueError(f"calibration_samples={s['calibration_samples']!r} must be a positive int")
    if s["train_samples"] is not None and (isinstance(s["train_samples"], bool)
                                           or not isinstance(s["train_samples"], int) or s["train_samples"] < 1):
        raise ValueError(f"train_samples={s['train_samples']!r} must be a positive int or null (whole split)")
    s["train"] = validate_train_config(dict(s["train"]))
    build_method(s["method"], dict(s["method_args"]))  # validates the method's keys and ranges
    if s["base"] is not None and not Path(s["base"]).is_file():
        raise ValueError(f"base={s['base']!r} is not an existing model file (run its pre-training stage first)")
    return s


def load_base(model: torch.nn.Module, path: str | Path) -> None:
    """Load a pre-trained base: a ``.safetensors`` file of the dense model's state dict (the committed bases),
    or a ``model.pt`` of a pre-training run (its structure and state dict)."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path)))
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    apply_structure(model, state.get("structure", {}))
    model.load_state_dict(state["model"])


def run_experiment(spec: Mapping[str, Any], out_dir: str | Path, *, cache_dir: str | Path | None = None,
                   progress: bool = True) -> dict[str, Any]:
    s = validate_spec(spec)
    out = Path(out_dir)
    method = build_method(s["method"], dict(s["method_args"]))
    set_random_state(s["train"]["random_state"])
    ds_args = dict(s["dataset_args"])
    train_set = get_dataset(s["dataset"], "train", cache_dir=cache_dir, **ds_args)
    # the paper evaluates on the test split after every epoch (Appendix C); so do we, except on GLUE,
    # whose test labels are hidden (the GLUE literature, [63] included, reports the validation split)
    eval_split = "validation" if str(s["dataset"]).startswith("glue:") else "test"
    eval_set = get_dataset(s["dataset"], eval_split, cache_dir=cache_dir, **ds_args)
    # points are chosen on a validation split where the dataset has one (digits / MNIST-1D with a
    # validation_fraction, the text corpus); the test split is then only reported
    val_set = (get_dataset(s["dataset"], "validation", cache_dir=cache_dir, **ds_args)
               if eval_split == "test" and has_validation(s["dataset"], ds_args) else None)
    calib = calibration_subset(train_set, min(s["calibration_samples"], len(train_set)),
                               random_state=s["train"]["random_state"])
    if s["train_samples"] is not None and s["train_samples"] < len(train_set):
        # a short fine-tuning budget: one fixed subset (drawn with state 0, not the run's random_state),
        # so every method and every repeat fine-tunes on the same examples
        train_set = calibration_subset(train_set, s["train_samples"], random_state=0)
    model = build_model(s["model"], num_classes=num_classes(s["dataset"]), **dict(s["model_args"]))
    base_sha256 = None
    if s["base"] is not None:
        load_base(model, s["base"])
        base_sha256 = file_sha256(s["base"])
    targets = s["targets"]
    if isinstance(targets, str) and targets in TARGET_PRESETS:
        targets = TARGET_PRESETS[targets]
    trainer = Trainer(model, method, train_set, eval_set, s["train"], targets=targets, calib_set=calib,
                      out_dir=out, progress=progress, val_set=val_set)
    final = trainer.fit()
    trainer.write_outputs(final, {"dataset": s["dataset"], "model": s["model"], "spec": s,
                                  "base_sha256": base_sha256})
    if not s["keep_checkpoint"] and trainer.checkpoint_path is not None and trainer.checkpoint_path.exists() \
            and trainer.is_main:
        trainer.checkpoint_path.unlink()
    return final


def run_group(specs: Mapping[str, Mapping[str, Any]], out_dir: str | Path, *, cache_dir: str | Path | None = None,
              progress: bool = True) -> dict[str, dict[str, Any]]:
    """Run a group of experiments (:func:`lowrank.config.resolve_group`) one after another in this process,
    each into ``out_dir/<name>/``; returns name → final metrics. Every spec is validated before the first
    run starts, so a bad key in the last run fails in seconds, not after the others."""
    from tqdm.auto import tqdm

    if not specs:
        raise ValueError("run_group: no runs given")
    for name, spec in specs.items():
        try:
            validate_spec(spec)
        except ValueError as err:
            raise ValueError(f"run {name!r}: {err}") from None
    out = Path(out_dir)
    finals: dict[str, dict[str, Any]] = {}
    for name, spec in tqdm(list(specs.items()), desc="runs", unit="run", disable=not progress):
        finals[name] = run_experiment(spec, out / name, cache_dir=cache_dir, progress=progress)
    return finals
