"""The training loop of pre-training, dense baselines and every compression method.

    python -m lowrank run spec.yaml --out runs/ieht                               # one process
    torchrun --nproc_per_node 2 -m lowrank run spec.yaml --out runs/ieht         # DDP (gloo on CPU)

:class:`Trainer` is a :class:`lowrank.loop.Loop`. It drives its method (:mod:`lowrank.methods`) through
:class:`lowrank.iterative.IterativeCompressor`, the driver of users' loops too, which calls the hooks (never a
cut after the last step or epoch) and applies the optimizer policy after a change (:mod:`lowrank.optim_state`).
What the loop fixes for fair comparisons (the paper's Table 3 "Base Training" and Appendix C):

* AdamW; weight decay on trainable tensors with ≥ 2 dimensions (dense weights and ``S`` cores), not on biases
  and norms;
* learning rate: constant after an optional linear warm-up, or warm-up then cosine decay
  (``lr_schedule: cosine``), set from the step count (it survives optimizer edits and resumes);
* data order: epoch ``e`` shuffles with a generator fixed by ``(random_state, e)``, so a resumed run sees the
  batches an uninterrupted one would;
* an evaluation after every epoch, logged as one JSON line whose accuracy and parameter counts come from one
  model: the training model, or the truncated, compiled copy of TRP / FWTRP
  (:meth:`~lowrank.methods.base.Method.scoring_model`);
* atomic checkpoints (module structure, model, optimizer, method state, RNG states), loaded with
  ``weights_only=True``.

Under ``torchrun`` each process takes its slice of every global batch, gradients are averaged by one all-reduce
per step, and methods cut on rank 0 and broadcast (:meth:`Trainer.sync_structure`): SVDs on different ranks can
differ in sign and rounding.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .configs import Config, Interval, NonNegativeFloat, NonNegativeInt, PositiveInt, setting
from .data import batch_targets, collate_of, make_loader, move_batch
from .iterative import IterativeCompressor
from .layers import FactorizedLinear, LowRankLinear, TTLinear
from .models import classifier_logits
from .optim_state import ADAM_STATE_POLICIES, SECOND_MOMENT_RULES
from .surgery import count_parameters, find_linear_layers, replace_module, target_ranks
from .tt import TTShape
from .utils import atomic_save, atomic_write_json, atomic_write_text, make_generator, resolve_device, set_random_state

__all__ = ["TrainConfig", "TRAIN_DEFAULTS", "validate_train_config", "Trainer", "module_structure", "apply_structure",
           "broadcast_module"]

@dataclass(frozen=True)
class TrainConfig(Config):
    """A run's training keys (its spec's ``train``): the loop's budget and policies (module docstring)."""

    epochs: NonNegativeInt = setting(30, "passes over the train split; 0 = evaluation only (a one-shot projection "
                                         "scored zero-shot)")
    batch_size: PositiveInt = setting(64, "global batch (split across processes under torchrun)")
    eval_batch_size: PositiveInt = setting(512, "batch of the evaluations")
    lr: Annotated[float, Interval(low=0, low_open=True, finite=True)] = setting(1e-3, "AdamW's base learning rate")
    weight_decay: NonNegativeFloat = setting(0.05, "AdamW's decoupled weight decay (tensors with ≥ 2 dimensions)")
    lr_schedule: Literal["cosine", "constant"] = setting("constant", "constant after the warm-up, or cosine to 0")
    warmup_steps: NonNegativeInt = setting(0, "linear warm-up steps")
    grad_clip: Annotated[float, Interval(low=0, low_open=True)] | None = setting(1.0, "total gradient-norm clip; "
                                                                                     "null = none")
    checkpoint_every_steps: NonNegativeInt = setting(0, "a checkpoint every this many steps (0: at epoch ends only)")
    random_state: NonNegativeInt = setting(0, "seed of the data order, the Fisher's labels and the initialisation")
    device: str = setting("auto", "'auto', 'cpu', 'cuda' or 'cuda:<i>'")
    threads: PositiveInt | None = setting(None, "torch intra-op threads; null = torch's default")
    optimizer_state_after_cut: Literal[ADAM_STATE_POLICIES] = setting("carry", "Adam's state of a rotated / cut S")
    second_moment_after_cut: Literal[SECOND_MOMENT_RULES] = setting("rotate_squares", "the carried second moment's "
                                                                                      "approximation")

    label: ClassVar[str] = "train"
    key_prefix: ClassVar[str] = "train."
    quote_choices: ClassVar[bool] = True


#: the training keys with their defaults
TRAIN_DEFAULTS: dict[str, Any] = TrainConfig.defaults()


def validate_train_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with every default filled in, after :class:`TrainConfig`'s checks."""
    return TrainConfig.from_mapping(cfg).to_dict()


# ------------------------------------------------------------------------------------------ structure
def module_structure(model: nn.Module) -> dict[str, list]:
    """Name → ``[kind, in, out, rank, bias]`` for every factorised layer (what a checkpoint needs to
    rebuild the current shapes before loading a state dict). A tensor train records
    ``[out_modes, in_modes, bond ranks]`` (lists) in the rank slot."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LowRankLinear):
            out[name] = ["low_rank", m.in_features, m.out_features, m.rank, m.bias is not None]
        elif isinstance(m, FactorizedLinear):
            out[name] = ["factorized", m.in_features, m.out_features, m.rank, m.bias is not None]
        elif isinstance(m, TTLinear):
            out[name] = ["tt", m.in_features, m.out_features,
                         [list(m.shape.out_modes), list(m.shape.in_modes), list(m.ranks)], m.bias is not None]
    return out


def apply_structure(model: nn.Module, structure: dict[str, list]) -> None:
    """Replace layers by empty factorised shells of the recorded shapes (inverse of :func:`module_structure`)."""
    for name, (kind, n, m, k, bias) in structure.items():
        old = model.get_submodule(name)
        p = next(old.parameters())
        if kind == "tt":
            out_modes, in_modes, ranks = k
            new = TTLinear(TTShape(tuple(out_modes), tuple(in_modes)), tuple(ranks), bias=bias,
                           device=p.device, dtype=p.dtype)
        else:
            cls = LowRankLinear if kind == "low_rank" else FactorizedLinear
            new = cls(n, m, k, bias=bias, device=p.device, dtype=p.dtype)
        replace_module(model, name, new)


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def broadcast_module(module: nn.Module) -> None:
    """Make every rank hold rank 0's parameters of ``module`` (shapes must already agree)."""
    if _is_dist():
        for p in module.parameters():
            dist.broadcast(p.data, 0)


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    n: int


class Trainer:
    """Runs one method on one model. See the module docstring for the policies."""

    def __init__(self, model: nn.Module, method, train_set, eval_set, cfg: dict[str, Any], *,
                 targets: Any = "vit_all", calib_set=None, out_dir: str | Path | None = None,
                 progress: bool = True, forward: Callable[[nn.Module, Any], torch.Tensor] = classifier_logits,
                 identity: dict[str, str] | None = None, checkpoint_path: str | Path | None = None,
                 val_set=None):
        self.cfg = validate_train_config(cfg)
        if self.cfg["threads"] is not None:
            # small models on a small CPU: one intra-op thread per process avoids the collapse that
            # oversubscribed spinning OpenMP threads cause when two runs share two cores
            torch.set_num_threads(self.cfg["threads"])
        self.method = method
        self.device = resolve_device(self.cfg["device"])
        self.model = model
        self.train_set, self.eval_set, self.calib_set = train_set, eval_set, calib_set
        #: held-out split on which a study chooses its points (``val_accuracy`` in every record); ``eval_set``
        #: (the test split) is only reported at the chosen points
        self.val_set = val_set
        self.targets = targets
        self.target_names = list(find_linear_layers(model, targets, include_factorized=True))
        self.original = count_parameters(model, self.target_names)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        #: what made this run (:func:`lowrank.experiment.run_identity`): recorded in, and checked against, checkpoints
        self.identity = identity
        self._checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.epoch_loss = [0.0, 0]   # sum and count of this epoch's batch losses (a resumed epoch continues them)
        self.wall_before = 0.0       # seconds spent in earlier segments of a resumed run
        self._t0 = time.perf_counter()
        self.progress = progress and (not _is_dist() or dist.get_rank() == 0)
        self.forward = forward
        #: called as ``eval_hook(model, record)`` after every evaluation with the model that produced the
        #: record (tests use it to check that a record's size is that model's size)
        self.eval_hook: Callable[[nn.Module, dict], None] | None = None
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        if self.cfg["batch_size"] % self.world_size:
            raise ValueError(f"train.batch_size={self.cfg['batch_size']} must be divisible by the number of "
                             f"processes ({self.world_size}): it is the global batch")
        if _is_dist() and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.model = self.model.to(self.device)
        self.steps_per_epoch = len(self.epoch_batches(0))
        self.total_steps = self.steps_per_epoch * self.cfg["epochs"]
        # e.g. a delay beyond the run: refused before any training
        method.check_budget(steps=self.total_steps, epochs=self.cfg["epochs"],
                            calibration_samples=len(calib_set) if calib_set is not None else 0)
        floor = method.rank_floor(self)
        #: the smallest fraction of target parameters the method can reach (its rank floor compiled), or None
        self.floor_ratio = (self.compiled_target_params(floor) / self.original.target) if floor else None
        self.optimizer: torch.optim.Optimizer | None = None
        # the one driver of a method's hooks and of the optimizer after a change, shared with users' own
        # loops (lowrank.iterative): nothing is converted, cut or truncated after the last step / epoch
        self.compressor = IterativeCompressor.driving(
            method, self, optimizer_state_after_cut=self.cfg["optimizer_state_after_cut"],
            second_moment_after_cut=self.cfg["second_moment_after_cut"], distributed=self.world_size > 1,
            last_step=self.total_steps, last_epoch=self.cfg["epochs"])
        self.log: list[dict] = []

    # ---------------------------------------------------------------- distributed
    @property
    def world_size(self) -> int:
        return dist.get_world_size() if _is_dist() else 1

    @property
    def rank(self) -> int:
        return dist.get_rank() if _is_dist() else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def random_state(self) -> int:
        return self.cfg["random_state"]

    # ---------------------------------------------------------------- optimizer
    def _param_groups(self):
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [p for n, p in named if p.ndim >= 2]
        no_decay = [p for n, p in named if p.ndim < 2]
        return [{"params": decay, "weight_decay": self.cfg["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0}]

    def build_optimizer(self) -> None:
        self.optimizer = self.compressor.watch(torch.optim.AdamW(self._param_groups(), lr=self.lr_at(self.step)))

    def rebuild_optimizer(self) -> None:
        """The optimizer after the method replaced parameters: edited in place by the compressor
        (:meth:`lowrank.iterative.IterativeCompressor.optimizer_after_change`; the policy is
        :mod:`lowrank.optim_state`'s)."""
        self.compressor.optimizer_after_change(self.optimizer, group_of=self.compressor.group_of)

    def allreduce_gradients(self) -> None:
        """Average the gradients of all trainable parameters over the processes (one flat buffer).

        An explicit all-reduce rather than the DistributedDataParallel wrapper: methods replace
        parameters during training, and a DDP reducer built for the old parameters keeps hooks on the
        survivors (it would reduce them twice, or wait for gradients that no longer exist).
        """
        if not _is_dist():
            return
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world_size
        for p, g in zip(params, _unflatten_dense_tensors(flat, grads)):
            p.grad = g

    def lr_at(self, step: int) -> float:
        base, warm = self.cfg["lr"], self.cfg["warmup_steps"]
        if warm and step < warm:
            return base * (step + 1) / warm
        if self.cfg["lr_schedule"] == "constant":
            return base
        progress = (step - warm) / max(1, self.total_steps - warm)
        return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (identity without DDP)."""
        if not _is_dist():
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, 0)
        return box[0]

    def sync_structure(self, names: list[str]) -> None:
        """Under DDP: give every rank rank 0's layer shapes and parameter values (after a cut)."""
        if not _is_dist():
            return
        box = [module_structure(self.model) if self.is_main else None]
        dist.broadcast_object_list(box, 0)
        if not self.is_main:
            for n in names:
                want = box[0].get(n)
                layer = self.model.get_submodule(n)
                if want is not None and want[0] == "low_rank" and isinstance(layer, LowRankLinear):
                    # mirror rank 0's cut: new U, S, V objects (so S's optimizer state is reset here
                    # too), the bias object kept (so is its state, as on rank 0)
                    k, ref = want[3], layer.S
                    layer.U = nn.Parameter(ref.new_empty(layer.out_features, k), requires_grad=False)
                    layer.V = nn.Parameter(ref.new_empty(layer.in_features, k), requires_grad=False)
                    layer.S = nn.Parameter(ref.new_empty(k, k))
                elif want is not None:
                    apply_structure(self.model, {n: want})
        broadcast_module(self.model)

    # ---------------------------------------------------------------- bookkeeping
    def module_ranks(self) -> dict[str, int]:
        """Rank of every target layer (:func:`lowrank.surgery.target_ranks`): the factor rank, ``min(out, in)``
        for a dense layer, the largest bond rank for a tensor train."""
        return target_ranks(self.model, self.target_names)

    def compiled_target_params(self, ranks: dict[str, int] | None = None, model: nn.Module | None = None) -> int:
        """Target-layer parameters of ``model`` (default: the training model) once compiled to ``A·B`` at
        the given (default: current) ranks — the size :func:`lowrank.surgery.compile_model` produces: a
        layer stays dense when a factorisation would not pay. A tensor train is its own compiled form: it
        counts its cores (and bias) as they are."""
        ranks = ranks or self.method.ranks(self)
        model = self.model if model is None else model
        total = 0
        for n in self.target_names:
            m = model.get_submodule(n)
            mo, mi = m.out_features, m.in_features
            if isinstance(m, TTLinear):
                total += m.num_core_params + (mo if m.bias is not None else 0)
                continue
            k = ranks[n]
            total += min(k * (mo + mi), mo * mi) + (mo if m.bias is not None else 0)
        return total

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's index batches for ``epoch``.

        One permutation per epoch from a private generator fixed by ``(random_state, epoch)``; it is
        cut into global batches of ``batch_size``, and under DDP each of ``W`` ranks takes its
        contiguous ``batch_size / W`` slice of every global batch. The mean of the ranks' mean
        gradients is then the single-process gradient of the same global batch. Under DDP a last,
        incomplete global batch is dropped (ranks must run the same number of steps).
        """
        n, B, W, r = len(self.train_set), self.cfg["batch_size"], self.world_size, self.rank
        perm = torch.randperm(n, generator=make_generator(self.cfg["random_state"] * 1_000_003 + epoch)).tolist()
        if W == 1:
            return [perm[i:i + B] for i in range(0, n, B)]
        b = B // W
        return [perm[i + r * b:i + (r + 1) * b] for i in range(0, n - B + 1, B)]

    def train_loader(self, epoch: int):
        from torch.utils.data import DataLoader
        return DataLoader(self.train_set, batch_sampler=self.epoch_batches(epoch),
                          collate_fn=collate_of(self.train_set))

    def calibration_loader(self, batch_size: int = 64):
        if self.calib_set is None:
            raise ValueError(f"method {self.method.name!r} needs a calibration set (Fisher / activations); none given")
        return make_loader(self.calib_set, batch_size)

    @torch.no_grad()
    def evaluate(self, model: nn.Module | None = None, dataset=None) -> EvalResult:
        """Loss and accuracy of ``model`` (default: the training model) on ``dataset`` (default: the
        evaluation set)."""
        model = self.model if model is None else model
        was_training = model.training
        model.eval()
        loss, correct, n = 0.0, 0, 0
        for batch in make_loader(self.eval_set if dataset is None else dataset, self.cfg["eval_batch_size"]):
            batch = move_batch(batch, self.device)
            y = batch_targets(batch)
            logits = self.forward(model, batch)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            n += int(y.numel())
        model.train(was_training)
        return EvalResult(loss / n, correct / n, n)

    def _log_eval(self, kind: str, train_loss: float | None = None) -> dict:
        model, ranks = self.compressor.scored_model()
        scored = model is not self.model
        res = self.evaluate(model)
        if not math.isfinite(res.loss):
            raise FloatingPointError(f"the evaluation loss is {res.loss} at step {self.step} (epoch {self.epoch}): "
                                     f"the model diverged; lower train.lr (now {self.cfg['lr']})")
        pc = count_parameters(model, self.target_names, original=self.original)
        compiled = self.compiled_target_params(ranks, model)
        rec = {"kind": kind, "step": self.step, "epoch": self.epoch, "train_loss": train_loss,
               "eval_loss": res.loss, "accuracy": res.accuracy, "params_total": pc.total,
               "params_target": pc.target, "params_target_compiled": compiled,
               "compression_ratio_target": compiled / self.original.target,
               "params_total_compiled": pc.total - pc.target + compiled,
               "compression_ratio_total": (pc.total - pc.target + compiled) / self.original.total,
               "lr": self.lr_at(self.step), "ranks": ranks}
        if self.val_set is not None:
            val = self.evaluate(model, self.val_set)
            rec.update(val_accuracy=val.accuracy, val_loss=val.loss)
        if scored:
            # the training form (dense, re-grown weights) beside the scored compiled copy: informative only,
            # never a point of a front (its size is not the logged one)
            dense = self.evaluate()
            rec.update(accuracy_training_form=dense.accuracy, eval_loss_training_form=dense.loss)
        self.log.append(rec)
        if self.eval_hook is not None:
            self.eval_hook(model, rec)
        if self.progress:
            tqdm.write(f"[{self.method.name}] epoch {self.epoch} step {self.step}: acc {res.accuracy:.4f} "
                       f"loss {res.loss:.4f} target params {100 * rec['compression_ratio_target']:.1f}%")
        return rec

    # ---------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        if self._checkpoint_path is not None:
            return self._checkpoint_path
        return self.out_dir / "checkpoint.pt" if self.out_dir is not None else None

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None or not self.is_main:
            return
        np_state = np.random.get_state()
        state = {
            "structure": module_structure(self.model),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "method": self.method.state_dict(),
            "step": self.step, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "log": self.log,
            "rng_torch": torch.get_rng_state(),
            "rng_numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "rng_python": random.getstate(),
            "identity": self.identity, "epoch_loss": list(self.epoch_loss),
            "wall_seconds": self.wall_before + time.perf_counter() - self._t0,
        }
        atomic_save(state, self.checkpoint_path)

    def load_checkpoint(self) -> bool:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:   # truncated zip, pickle refused, ...: the run could never resume from it
            raise ValueError(f"{path} is unreadable ({type(err).__name__}: {str(err).splitlines()[0][:200]}); delete "
                             f"it to start this run over") from None
        if state.get("identity") != self.identity:
            made_by = state.get("identity") or "(not recorded)"
            raise ValueError(f"{path} was made by run {made_by}, this run is {self.identity} (spec, base model and "
                             f"library hashes); delete it, or choose another --out, to start over")
        if not (0 <= state["epoch"] <= self.cfg["epochs"] and 0 <= state["step"] <= self.total_steps):
            raise ValueError(f"{path} is at epoch {state['epoch']}, step {state['step']}, beyond this run "
                             f"({self.cfg['epochs']} epochs, {self.total_steps} steps); delete it to start over")
        apply_structure(self.model, state["structure"])
        self.model.load_state_dict(state["model"])
        self.step, self.epoch, self.step_in_epoch = state["step"], state["epoch"], state["step_in_epoch"]
        self.log = list(state["log"])
        self.method.load_state_dict(state["method"])
        self.build_optimizer()
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_torch"].cpu())
        n = state["rng_numpy"]
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
        py = state["rng_python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        self.epoch_loss = list(state.get("epoch_loss", [0.0, 0]))
        self.wall_before = float(state.get("wall_seconds", 0.0))
        return True

    # ---------------------------------------------------------------- main loop
    def fit(self) -> dict[str, Any]:
        self._t0 = time.perf_counter()
        set_random_state(self.cfg["random_state"])
        resumed = self.load_checkpoint()
        if not resumed:
            broadcast_module(self.model)  # identical starting point on every process
            self.method.setup(self)
            self.build_optimizer()
            self._log_eval("start")
        epochs = self.cfg["epochs"]
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.method.name, disable=not self.progress,
                   leave=False)
        self.model.train()
        while self.epoch < epochs:
            if self.step_in_epoch == 0:
                self.epoch_loss = [0.0, 0]
            for i, batch in enumerate(self.train_loader(self.epoch)):
                if i < self.step_in_epoch:
                    continue  # resumed mid-epoch: these batches were already trained on
                for g in self.optimizer.param_groups:
                    g["lr"] = self.lr_at(self.step)
                batch = move_batch(batch, self.device)
                loss = F.cross_entropy(self.forward(self.model, batch), batch_targets(batch))
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"the training loss is {value} at step {self.step + 1} (epoch {self.epoch + 1}): the run "
                        f"diverged; lower train.lr (now {self.cfg['lr']}) or check the data")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.allreduce_gradients()
                self.compressor.before_optimizer_step()  # e.g. TRP's nuclear-norm sub-gradient
                if self.cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                                   self.cfg["grad_clip"])
                self.optimizer.step()
                self.step += 1
                self.step_in_epoch = i + 1
                self.epoch_loss[0] += value
                self.epoch_loss[1] += 1
                bar.update(1)
                if self.compressor.step_end(self.step):   # never after the last step
                    self.rebuild_optimizer()
                every = self.cfg["checkpoint_every_steps"]
                if every and self.step % every == 0:
                    self.save_checkpoint()
            self.epoch += 1
            self.step_in_epoch = 0
            self._log_eval("epoch", self.epoch_loss[0] / max(self.epoch_loss[1], 1))
            # no cut after the last epoch: nothing would train after it
            if self.compressor.epoch_end(self.epoch):
                self.rebuild_optimizer()
            self.save_checkpoint()
        bar.close()
        before = self._parameter_fingerprint()
        self.compressor.compile()
        last = self.log[-1] if self.log else None
        if last is not None and last["step"] == self.step and self._parameter_fingerprint() == before:
            # finalize changed nothing (no compile, no truncation): the model is the one just evaluated,
            # so the final record repeats that evaluation instead of running it again (a full test-set
            # pass: seconds for a transformer on a CPU)
            final = {**last, "kind": "final"}
            self.log.append(final)
        else:
            final = self._log_eval("final")
        final["wall_seconds"] = self.wall_before + time.perf_counter() - self._t0
        return final

    def _parameter_fingerprint(self) -> list[tuple]:
        """Names, storages and in-place version counters of every parameter and buffer: equal before
        and after a call iff the call neither replaced nor modified any of them."""
        return [(n, t.data_ptr(), t._version, tuple(t.shape))
                for n, t in [*self.model.named_parameters(), *self.model.named_buffers()]]

    def write_outputs(self, final: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """``log.jsonl``, ``ranks.json``, the compiled ``model.pt`` and, last, ``metrics.json`` (main rank only)."""
        if self.out_dir is None or not self.is_main:
            return
        metrics = {k: final[k] for k in ("accuracy", "eval_loss", "params_total", "params_target",
                                          "compression_ratio_target", "compression_ratio_total", "step", "epoch")}
        metrics.update({"method": self.method.name, "wall_seconds": final.get("wall_seconds"),
                        "original_params_total": self.original.total, "original_params_target": self.original.target,
                        "floor_compression_ratio_target": self.floor_ratio, **(extra or {})})
        atomic_write_text(self.out_dir / "log.jsonl", "".join(json.dumps(r, allow_nan=False) + "\n" for r in self.log))
        atomic_write_json(self.out_dir / "ranks.json", {"trajectory": self.method.trajectory,
                                                        "final": final["ranks"]})
        atomic_save({"structure": module_structure(self.model), "model": self.model.state_dict()},
                    self.out_dir / "model.pt")
        atomic_write_json(self.out_dir / "metrics.json", metrics)   # last: it marks the run finished
