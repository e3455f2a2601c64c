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
unless ``keep_checkpoint``). ``metrics.json`` is written last: it marks a finished run.

Run integrity (:func:`run_identity`): a run is identified by its validated spec, the bytes of its base
model and the library's source. The checkpoint records that identity and a resume with another one is
refused; a folder whose ``metrics.json`` has the same identity is a finished run and is not redone; a
run folder is locked (``flock``) while a process writes it, and a second process is refused at once.
With ``OPFACT_RUN_CACHE=<dir>`` (``study.pipeline`` sets ``cache/runs``) the checkpoint lives in
``<dir>/<identity>/`` and a finished run's outputs are kept there too, so a run whose folder DVC deleted
before re-running its stage resumes (or is restored) from there.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import torch

from . import __version__
from .configs import Config, PositiveInt, setting
from .data import DATASETS, calibration_subset, get_dataset, has_validation, num_classes
from .methods import METHODS, build_method
from .models import MODELS, build_model
from .surgery import TARGET_PRESETS
from .train import Trainer, apply_structure, validate_train_config
from .utils import _atomic_path, file_sha256, set_random_state

__all__ = ["RunSpec", "SPEC_DEFAULTS", "RUN_CACHE_ENV", "RUN_OUTPUTS", "validate_spec", "run_identity", "run_lock",
           "run_experiment", "validate_group", "run_group", "load_base"]

#: environment variable naming the persistent run cache (module docstring)
RUN_CACHE_ENV = "OPFACT_RUN_CACHE"
#: a finished run's files; ``metrics.json`` last, the completion marker
RUN_OUTPUTS = ("log.jsonl", "ranks.json", "model.pt", "metrics.json")

@dataclass(frozen=True)
class RunSpec(Config):
    """One experiment's spec (module docstring); its ``train`` and ``method_args`` are checked by their own
    configs (:class:`lowrank.train.TrainConfig`, the method's :attr:`~lowrank.methods.Method.config_class`)."""

    dataset: str = setting("digits", "a registered dataset (lowrank.data); 'name:task' names a task of it")
    dataset_args: Mapping[str, Any] = setting({}, "keywords of the dataset's loader")
    model: str = setting("vit_digits", "a registered model (lowrank.models)")
    model_args: Mapping[str, Any] = setting({}, "keywords of the model's builder")
    base: str | os.PathLike | None = setting(None, "the pre-trained base (.safetensors, or a run's model.pt); null = "
                                                   "train from scratch (pre-training)")
    targets: Any = setting("vit_all", "layers to compress: a preset, a pattern, 'auto', or what lowrank.surgery takes")
    method: str = setting("dense", "a registered method (lowrank.methods)")
    method_args: Mapping[str, Any] = setting({}, "the method's keys")
    calibration_samples: PositiveInt = setting(256, "training examples the Fisher / activation statistics see")
    train_samples: PositiveInt | None = setting(None, "a fixed subset of the train split (short budgets); null = all")
    train: Mapping[str, Any] = setting({}, "the training keys (lowrank.train.TrainConfig)")
    keep_checkpoint: bool = setting(False, "keep checkpoint.pt in the run folder after the run")

    label: ClassVar[str] = "experiment"

    def check(self, *, given: frozenset[str]) -> None:
        base_name = self.dataset.split(":")[0]
        if base_name not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r} is not a known dataset; allowed: {sorted(DATASETS)}")
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r} is not a known model; allowed: {sorted(MODELS)}")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not a known method; allowed: {sorted(METHODS)}")
        if isinstance(self.targets, str) and self.targets not in (*TARGET_PRESETS, "auto") and "*" not in self.targets \
                and "." not in self.targets:
            raise ValueError(f"targets={self.targets!r} is neither a preset ({sorted(TARGET_PRESETS)}) nor a pattern "
                             f"nor 'auto'")
        _check_keyword_args("dataset_args", self.dataset_args, DATASETS[base_name], f"dataset {base_name!r}")
        validate_train_config(dict(self.train))
        build_method(self.method, dict(self.method_args))  # validates the method's keys and ranges
        if self.base is not None and not Path(self.base).is_file():
            raise ValueError(f"base={self.base!r} is not an existing model file (run its pre-training stage first)")


#: the spec's keys with their defaults
SPEC_DEFAULTS: dict[str, Any] = RunSpec.defaults()


def validate_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with every default filled in (its ``train`` too), after :class:`RunSpec`'s checks."""
    s = RunSpec.from_mapping(spec).to_dict()
    s["train"] = validate_train_config(dict(s["train"]))
    return s


def _check_keyword_args(key: str, args: Any, target: Any, label: str) -> None:
    """``args`` must be a mapping of keywords ``target`` (a dataset loader) accepts."""
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = sorted(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
                     or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is not p.empty))
    reserved = {"split", "cache_dir", "random_state", "task"}   # set by get_dataset itself
    unknown = sorted(set(args) - (set(allowed) - reserved))
    if unknown:
        raise ValueError(f"{key}: unknown keys {unknown} for {label}; allowed: {sorted(set(allowed) - reserved)}")


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 of the library's Python source (paths and bytes): a resume or a cached result needs the same code."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def run_identity(s: Mapping[str, Any]) -> dict[str, str]:
    """What makes a run's numbers (of a validated spec): ``spec`` (hash of the spec, ``keep_checkpoint``
    left out), ``base`` (hash of the base model's bytes), ``code`` (hash of the library's source),
    ``version``, and ``key``, one hash of all four (the run cache's folder name)."""
    spec = {k: v for k, v in s.items() if k != "keep_checkpoint"}
    ident = {"spec": hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16],
             "base": file_sha256(s["base"])[:16] if s["base"] is not None else "none",
             "code": _code_digest()[:16], "version": __version__}
    ident["key"] = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
    return ident


def _is_worker() -> bool:
    """A non-zero rank under torchrun: it neither locks nor writes the run folder."""
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the run folder ``out`` (created) while the block runs; a second
    process is refused at once. Also checks that ``out`` is writable, before any data is loaded."""
    import fcntl

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out) as fh:
            fh.write(b"x")
    except OSError as err:
        raise ValueError(f"--out {str(out)!r} is not writable ({err.strerror}); choose a folder you can "
                         f"write") from None
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise ValueError(f"--out {str(out)!r}: another process is writing this run folder; wait for it to "
                             f"finish or choose another folder") from None
        yield
    finally:
        os.close(fd)   # releases the lock


def _from_rank_0(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process under torchrun (``obj`` itself otherwise)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def _finished(folder: Path, ident: Mapping[str, str]) -> dict[str, Any] | None:
    """``folder``'s metrics when it holds a finished run of identity ``ident``, else None."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if metrics.get("identity") != dict(ident) or not all((folder / f).is_file() for f in RUN_OUTPUTS):
        return None
    return metrics


def _link_or_copy(src: Path, dst: Path) -> None:
    with _atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _copy_outputs(src: Path, dst: Path) -> None:
    """A finished run's files from ``src`` to ``dst``, ``metrics.json`` last (hard links where possible)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in RUN_OUTPUTS:
        _link_or_copy(src / name, dst / name)


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
    # checked here, not in validate_spec: a spec for another machine (the paper profile's GPU runs) is valid
    if str(s["train"]["device"]).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={s['train']['device']!r}, but this machine has no CUDA device; allowed "
                         f"here: 'auto', 'cpu'")
    ident = run_identity(s)
    cache_root = os.environ.get(RUN_CACHE_ENV)
    entry = Path(cache_root) / ident["key"] if cache_root else None
    if _is_worker():   # rank 0 decides (finished or not) and writes; the others follow
        done = _from_rank_0(None)
        return done if done is not None else _run(s, out, ident, entry, cache_dir, progress)
    with run_lock(out):
        done = _finished(out, ident)   # a finished run is not redone
        if done is None:
            (out / "metrics.json").unlink(missing_ok=True)   # another run's result: not a completion marker now
            if entry is not None and _finished(entry, ident) is not None:
                _copy_outputs(entry, out)
                done = _finished(out, ident)
        if _from_rank_0(done) is not None:
            return done
        final = _run(s, out, ident, entry, cache_dir, progress)
        if entry is not None:
            _copy_outputs(out, entry)
        return final


def _run(s: dict[str, Any], out: Path, ident: dict[str, str] | None, entry: Path | None,
         cache_dir: str | Path | None, progress: bool) -> dict[str, Any]:
    """One validated run into ``out`` (its checkpoint in ``entry`` when given)."""
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
    try:
        model = build_model(s["model"], num_classes=num_classes(s["dataset"]), **dict(s["model_args"]))
    except TypeError as err:   # a key the builder (timm / transformers) does not take
        raise ValueError(f"model_args={dict(s['model_args'])!r} do not fit model {s['model']!r}: {err}") from None
    base_sha256 = None
    if s["base"] is not None:
        load_base(model, s["base"])
        base_sha256 = file_sha256(s["base"])
    targets = s["targets"]
    if isinstance(targets, str) and targets in TARGET_PRESETS:
        targets = TARGET_PRESETS[targets]
    trainer = Trainer(model, method, train_set, eval_set, s["train"], targets=targets, calib_set=calib,
                      out_dir=out, progress=progress, identity=ident, val_set=val_set,
                      checkpoint_path=entry / "checkpoint.pt" if entry is not None else None)
    final = trainer.fit()
    extra = {"dataset": s["dataset"], "model": s["model"], "spec": s, "base_sha256": base_sha256}
    if ident is not None:
        extra["identity"] = ident
    trainer.write_outputs(final, extra)
    ck = trainer.checkpoint_path
    if trainer.is_main and ck is not None and ck.exists():
        if not s["keep_checkpoint"]:
            ck.unlink()
        elif ck.parent != out:
            shutil.move(ck, out / "checkpoint.pt")
    return final


def validate_group(specs: Mapping[str, Mapping[str, Any]], who: str) -> None:
    """Every spec of a group valid (:func:`validate_spec`), before any run starts; the error names the run."""
    if not specs:
        raise ValueError(f"{who}: no runs given")
    for name, spec in specs.items():
        try:
            validate_spec(spec)
        except ValueError as err:
            raise ValueError(f"run {name!r}: {err}") from None


def run_group(specs: Mapping[str, Mapping[str, Any]], out_dir: str | Path, *, cache_dir: str | Path | None = None,
              progress: bool = True) -> dict[str, dict[str, Any]]:
    """Run a group of experiments (:func:`lowrank.config.resolve_group`) one after another in this process,
    each into ``out_dir/<name>/``; returns name → final metrics. Every spec is validated before the first
    run starts, so a bad key in the last run fails in seconds, not after the others."""
    from tqdm.auto import tqdm

    validate_group(specs, "run_group")
    out = Path(out_dir)
    finals: dict[str, dict[str, Any]] = {}
    for name, spec in tqdm(list(specs.items()), desc="runs", unit="run", disable=not progress):
        finals[name] = run_experiment(spec, out / name, cache_dir=cache_dir, progress=progress)
    return finals
