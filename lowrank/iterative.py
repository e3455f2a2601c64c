"""The iterative methods (OIALR, IEHT, IFHT and their global variants: the paper's Algorithms 1–2; TRP and
FWTRP: its Algorithms 3–4) in *your* training loop, and as a Hugging Face ``TrainerCallback``.

>>> import torch
>>> import torch.nn.functional as F
>>> import lowrank
>>> model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
>>> batches = [(torch.randn(8, 16), torch.randint(0, 4, (8,))) for _ in range(4)]
>>> compressor = lowrank.IterativeCompressor(model, method="ieht", targets=["0", "2"], oialr_threshold=0.9,
...                                          oialr_frequency=1, oialr_type="epoch", delay=1)
>>> optimizer = compressor.optimizer(torch.optim.AdamW, lr=1e-3)
>>> for epoch in range(3):
...     for x, y in batches:
...         loss = F.cross_entropy(model(x), y)
...         optimizer.zero_grad()
...         loss.backward()
...         compressor.before_optimizer_step()             # TRP / FWTRP: the nuclear-norm sub-gradient
...         optimizer.step()
...         if compressor.step_end():                      # cuts of oialr_type="step", TRP's truncations
...             optimizer = compressor.optimizer_after_change(optimizer)
...     if compressor.epoch_end():                         # conversion and cuts of oialr_type="epoch"
...         optimizer = compressor.optimizer_after_change(optimizer)
>>> [record["event"] for record in compressor.trajectory]
['convert', 'cut', 'cut']
>>> compiled = compressor.compile()                        # the inference form (A·B)

:class:`IterativeCompressor` is the one driver of a method's hooks, for a user's loop and for
:class:`lowrank.train.Trainer` (:meth:`IterativeCompressor.driving`): it calls them after every step and epoch
(never at or after ``last_step`` / ``last_epoch``), keeps the :class:`~lowrank.loop.Change` a hook returns, and
applies the optimizer policy once (:meth:`~IterativeCompressor.optimizer_after_change`, :mod:`lowrank.optim_state`).
The algorithms are the method strategies (:mod:`lowrank.methods`). ``step_end()`` and ``epoch_end()`` count from 1,
as ``Trainer`` does, so ``delay`` and ``oialr_frequency`` mean what they mean in a run spec. Targets are
``nn.Linear`` or transformers' ``Conv1D`` layers.

TRP / FWTRP train dense weights: evaluate :meth:`~IterativeCompressor.scored_model` (the truncated, compiled copy
whose size is the model's) rather than the training model. A compressor built by the user runs in one process
(under ``torchrun``, use ``python -m lowrank run``).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn

from .layers import LowRankLinear, is_linear_like
from .loop import Change, Loop
from .method_table import method_names
from .methods import build_method
from .methods.base import Method
from .optim_state import ADAM_STATE_POLICIES, SECOND_MOMENT_RULES, update_optimizer_after_change
from .surgery import find_linear_layers, target_ranks

__all__ = ["ITERATIVE_METHODS", "IterativeCompressor", "LowRankTrainerCallback"]

#: the methods a user's loop can drive (one-shot methods: :func:`lowrank.compress`)
ITERATIVE_METHODS = method_names(iterative=True)
#: those that measure a Fisher on calibration batches (IFHT's cuts, FWTRP's truncations)
FISHER_METHODS = method_names(iterative=True, fisher=True)


class _OwnLoop:
    """The :class:`lowrank.loop.Loop` of a user's single-process loop: the model and its target layers, the
    step and epoch counters, calibration batches, and the no-op synchronisation of one process."""

    is_main = True

    def __init__(self, compressor: "IterativeCompressor", model: nn.Module, target_names: list[str],
                 calibration: Iterable | None, random_state: int):
        self._compressor = compressor
        self.model = model
        self.target_names = target_names
        self._calibration = calibration
        self.random_state = random_state
        self.step = 0
        self.epoch = 0
        self.device = next(model.parameters()).device

    def sync_structure(self, names: list[str]) -> None:
        """One process: nothing to synchronise."""

    def broadcast_object(self, obj: Any) -> Any:
        return obj

    def module_ranks(self) -> dict[str, int]:
        return target_ranks(self.model, self.target_names)

    def calibration_loader(self) -> Iterable:
        return self._calibration

    def lr_at(self, step: int) -> float:
        """The learning rate of the watched optimizer's first group (TRP's ``nuclear_norm_mode: step``)."""
        opt = self._compressor.watched_optimizer
        if opt is None:
            raise ValueError("nuclear_norm_mode='step' needs the learning rate: build the optimizer with "
                             "compressor.optimizer(...) or pass it to compressor.watch(optimizer)")
        return float(opt.param_groups[0]["lr"])


class IterativeCompressor:
    """Drive one of :data:`ITERATIVE_METHODS` from a user's loop (module docstring).

    ``method_args`` are the run-spec keys of the method (``oialr_threshold``, ``oialr_frequency``,
    ``oialr_type``, ``delay``, ``oialr_min_rank_percent``, ``oialr_depth_schedule``, ``max_cut_fraction``,
    ``cut_until``; IFHT also ``fisher_labels``, ``fisher_samples``; TRP ``trp_threshold``, ``trp_frequency``,
    ``nuclear_norm_weight``, …), validated by the method before any work. ``calibration``: batches for the
    Fisher of :data:`FISHER_METHODS` (required by them, refused by the others). ``targets``: as
    :func:`lowrank.compress` (default ``"auto"``). ``last_step`` / ``last_epoch``: when the loop ends, if
    known (then nothing is converted, cut or truncated after it: nothing would train the result).
    """

    def __init__(self, model: nn.Module, method: str = "ieht", *, targets: Any = "auto",
                 calibration: Iterable | None = None, optimizer_state_after_cut: str = "carry",
                 second_moment_after_cut: str = "rotate_squares", random_state: int = 0,
                 last_step: int | None = None, last_epoch: int | None = None, **method_args: Any):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        if method not in ITERATIVE_METHODS:
            raise ValueError(f"method={method!r} is not an iterative method this class drives; allowed: "
                             f"{', '.join(ITERATIVE_METHODS)} (one-shot methods: lowrank.compress)")
        if optimizer_state_after_cut not in ADAM_STATE_POLICIES:
            raise ValueError(f"optimizer_state_after_cut={optimizer_state_after_cut!r}; allowed: "
                             f"{', '.join(ADAM_STATE_POLICIES)}")
        if second_moment_after_cut not in SECOND_MOMENT_RULES:
            raise ValueError(f"second_moment_after_cut={second_moment_after_cut!r}; allowed: "
                             f"{', '.join(SECOND_MOMENT_RULES)}")
        weighted = method in FISHER_METHODS
        if weighted and calibration is None:
            raise ValueError(f"method={method!r} measures a Fisher at every cut; pass calibration=<batches>")
        if not weighted and calibration is not None:
            raise ValueError(f"method={method!r} uses no calibration data; pass calibration=None")
        if isinstance(random_state, bool) or not isinstance(random_state, int) or random_state < 0:
            raise ValueError(f"random_state={random_state!r} must be an int ≥ 0")
        for key, value in (("last_step", last_step), ("last_epoch", last_epoch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{key}={value!r} must be a positive int or None")
        built = build_method(method, method_args)          # validates every key and value
        target_names = list(find_linear_layers(model, targets, include_factorized=True))
        for n in target_names:
            layer = model.get_submodule(n)
            if not (is_linear_like(layer) or isinstance(layer, LowRankLinear)):
                raise ValueError(f"{n}: is a {type(layer).__name__}; the iterative methods start from dense "
                                 f"nn.Linear / transformers Conv1D (or U S Vᵀ) layers")
        self._attach(built, _OwnLoop(self, model, target_names, calibration, random_state),
                     optimizer_state_after_cut, second_moment_after_cut, False, last_step, last_epoch)
        self.note(self.method.setup(self.loop))   # delay = 0 converts now

    @classmethod
    def driving(cls, method: Method, loop: Loop, *, optimizer_state_after_cut: str = "carry",
                second_moment_after_cut: str = "rotate_squares", distributed: bool = False,
                last_step: int | None = None, last_epoch: int | None = None) -> "IterativeCompressor":
        """The compressor of the library's own loop (:class:`lowrank.train.Trainer`): ``method`` (any
        registered strategy, already validated) reads ``loop``; ``distributed``: the loop runs under
        ``torch.distributed`` (the cut's optimizer state is then computed on rank 0 and broadcast). The Trainer
        calls ``method.setup`` itself (before it builds its optimizer) and then :meth:`watch`."""
        self = cls.__new__(cls)
        self._attach(method, loop, optimizer_state_after_cut, second_moment_after_cut, distributed, last_step,
                     last_epoch)
        return self

    def _attach(self, method: Method, loop: Loop, policy: str, second_moment: str, distributed: bool,
                last_step: int | None, last_epoch: int | None) -> None:
        self.method = method
        self.loop = loop
        self.policy, self.second_moment, self.distributed = policy, second_moment, distributed
        self.last_step, self.last_epoch = last_step, last_epoch
        self._rotations: dict[int, tuple] = {}
        self.changed = False
        self._synced = self._trainable()
        self.watched_optimizer: torch.optim.Optimizer | None = None

    def note(self, change: Change | None) -> bool:
        """Keep a hook's :class:`~lowrank.loop.Change` (its rotations) for the next :meth:`optimizer_after_change`;
        ``True`` when there was one."""
        if change is None:
            return False
        self._rotations.update(change.rotations)
        self.changed = True
        return True

    # ---------------------------------------------------------------- the user's calls
    @property
    def model(self) -> nn.Module:
        return self.loop.model

    @property
    def target_names(self) -> list[str]:
        return self.loop.target_names

    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def epoch(self) -> int:
        return self.loop.epoch

    @property
    def kind(self) -> str:
        """``"step"`` or ``"epoch"``: when the method converts and cuts (``oialr_type``; TRP truncates at steps)."""
        return getattr(self.method, "kind", "step")

    def ranks(self) -> dict[str, int]:
        """Current rank of every target layer (TRP: the rank of its last truncation)."""
        return self.method.ranks(self.loop)

    @property
    def trajectory(self) -> list[dict]:
        """One record per conversion / cut / truncation: step, epoch, event and every layer's rank."""
        return self.method.trajectory

    def before_optimizer_step(self) -> None:
        """Call after the backward pass, before the optimizer step (TRP adds its nuclear-norm sub-gradient;
        the other methods do nothing here)."""
        self.method.before_optimizer_step(self.loop)

    def step_end(self, step: int | None = None) -> bool:
        """Call after every optimizer step (``step``: steps completed, from 1; give it when resuming);
        ``True`` when parameters were replaced (then call :meth:`optimizer_after_change`). Nothing happens at or
        after ``last_step``."""
        if (isinstance(self.loop, _OwnLoop) and getattr(self.method, "nn_mode", None) == "step"
                and self.watched_optimizer is None):
            self.loop.lr_at(self.loop.step)               # refused before any work: the error says what to do
        self.loop.step = self.loop.step + 1 if step is None else int(step)
        if self.last_step is not None and self.loop.step >= self.last_step:
            return False
        return self.note(self.method.after_step(self.loop))

    def epoch_end(self, epoch: int | None = None) -> bool:
        """Call after every epoch (``epoch``: epochs completed, from 1); ``True`` when parameters were
        replaced. Nothing happens at or after ``last_epoch``."""
        self.loop.epoch = self.loop.epoch + 1 if epoch is None else int(epoch)
        if self.last_epoch is not None and self.loop.epoch >= self.last_epoch:
            return False
        return self.note(self.method.after_epoch(self.loop))

    def _trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def param_groups(self, weight_decay: float = 0.0) -> list[dict]:
        """The library's grouping (:class:`lowrank.train.Trainer`): weight decay on trainable tensors with
        ≥ 2 dimensions (the dense weights, the ``S`` cores), none on biases and norms."""
        named = list(self._trainable().items())
        return [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": weight_decay},
                {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}]

    @staticmethod
    def group_of(p: nn.Parameter) -> int:
        """The group of :meth:`param_groups` a parameter belongs to (0: decayed, 1: not)."""
        return 0 if p.ndim >= 2 else 1

    def watch(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """From now on, changes are measured against the model's current parameters, which ``optimizer``
        optimises (after building or loading it); returns ``optimizer``."""
        self._synced = self._trainable()
        self._rotations = {}
        self.changed = False
        self.watched_optimizer = optimizer
        return optimizer

    def optimizer(self, cls: type[torch.optim.Optimizer] = torch.optim.AdamW, *, weight_decay: float = 0.0,
                  **kwargs: Any) -> torch.optim.Optimizer:
        """``cls(self.param_groups(weight_decay), **kwargs)`` over the current trainable parameters."""
        return self.watch(cls(self.param_groups(weight_decay), **kwargs))

    def optimizer_after_change(self, optimizer: Any, *, group_of: Any = None) -> Any:
        """Swap the replaced parameters into ``optimizer`` in place, each into the group of the parameter it
        replaced, and set their state by the policy (:func:`lowrank.optim_state.update_optimizer_after_change`);
        returns ``optimizer``, so schedulers and wrappers holding it (Hugging Face's ``AcceleratedOptimizer``) stay
        valid. Harmless when nothing changed. ``group_of(p)`` places a new parameter without a predecessor in the
        optimizer (default: it is left out, as its predecessor was)."""
        update_optimizer_after_change(
            optimizer, self.model, self._synced, self._rotations, policy=self.policy,
            second_moment=self.second_moment, group_of=group_of, is_main=self.loop.is_main,
            broadcast=self.loop.broadcast_object if self.distributed else None)
        return self.watch(optimizer)

    def scored_model(self) -> tuple[nn.Module, dict[str, int]]:
        """``(model, ranks)`` to evaluate: the training model, or for TRP / FWTRP between truncations the
        truncated, compiled copy (so that an accuracy comes with the size of the model that produced it)."""
        scored = self.method.scoring_model(self.loop)
        return scored if scored is not None else (self.model, self.ranks())

    def compile(self) -> dict[str, nn.Module]:
        """End of the paper's algorithms (the method's ``finalize``): every ``U S Vᵀ`` layer becomes ``A·B``
        (or dense where ``A·B`` does not pay); TRP truncates once more and compiles. Returns name → new layer."""
        before = {n: self.model.get_submodule(n) for n in self.target_names}
        self.method.finalize(self.loop)
        return {n: m for n in self.target_names if (m := self.model.get_submodule(n)) is not before[n]}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed loop needs besides the model and optimizer: the counters and the method's state."""
        return {"step": self.step, "epoch": self.epoch, "method": self.method.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loop.step, self.loop.epoch = int(state["step"]), int(state["epoch"])
        self.method.load_state_dict(state["method"])


def _callback_base():
    try:
        from transformers import TrainerCallback
    except ImportError:  # pragma: no cover - transformers is a dependency of the project
        return object
    return TrainerCallback


class LowRankTrainerCallback(_callback_base()):
    """A ``transformers.TrainerCallback`` that drives an :class:`IterativeCompressor` inside
    ``transformers.Trainer``: ``before_optimizer_step`` before every optimizer step (after Hugging Face's
    gradient clipping), ``step_end`` after every optimizer step, ``epoch_end`` after every epoch, and the
    Trainer's own optimizer edited in place after a change (so its LR scheduler stays attached); as in
    :class:`lowrank.train.Trainer`, nothing happens after the last step / epoch.
    ``compile_at_end=True`` compiles to ``A·B`` when training ends.

    Build the compressor *before* the ``transformers.Trainer`` (a ``delay=0`` conversion then happens before
    the Trainer creates its optimizer)."""

    def __init__(self, compressor: IterativeCompressor, *, compile_at_end: bool = False):
        if not isinstance(compressor, IterativeCompressor):
            raise ValueError(f"compressor must be an IterativeCompressor, got {type(compressor).__name__}")
        self.compressor = compressor
        self.compile_at_end = compile_at_end

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.compressor.before_optimizer_step()
        return control

    # As lowrank.train.Trainer: no conversion or cut after the last step / epoch (nothing would train after it).
    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.compressor.last_step = getattr(state, "max_steps", 0) or None
        if self.compressor.kind == "step" and self.compressor.step_end(state.global_step):
            self.compressor.optimizer_after_change(optimizer)
        return control

    def on_epoch_end(self, args, state, control, optimizer=None, **kwargs):
        self.compressor.last_epoch = getattr(args, "num_train_epochs", None)
        if self.compressor.kind == "epoch" and self.compressor.epoch_end(round(state.epoch)):
            self.compressor.optimizer_after_change(optimizer)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.compile_at_end:
            self.compressor.compile()
        return control
