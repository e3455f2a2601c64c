"""The iterative methods (OIALR, IEHT, IFHT and their global variants: the paper's Algorithms 1–2) in
*your* training loop, and as a Hugging Face ``TrainerCallback``.

    compressor = lowrank.IterativeCompressor(model, method="ieht", oialr_threshold=0.95,
                                             oialr_frequency=10, oialr_type="epoch", delay=5)
    optimizer = compressor.optimizer(torch.optim.AdamW, lr=1e-4)
    for epoch in range(epochs):
        for x, y in loader:
            ...; optimizer.step()
            if compressor.step_end():                      # cuts of oialr_type="step"
                optimizer = compressor.optimizer_after_change(optimizer)
        if compressor.epoch_end():                         # conversion and cuts of oialr_type="epoch"
            optimizer = compressor.optimizer_after_change(optimizer)
    compressor.compile()                                   # U S Vᵀ → A·B, the inference form

:class:`IterativeCompressor` owns the conversion to ``U S Vᵀ`` at ``t = delay``, the cuts every
``oialr_frequency`` steps or epochs after it, and the optimizer-state policy; the algorithm itself is
the library's :class:`lowrank.methods.IterativeHardThresholding` (the same ``_tick``, conversion,
cut rule, depth schedules, minimum rank and global threshold as the library's runs), driven through
the small part of the training-loop interface it uses. **The library's own loop,**
:class:`lowrank.train.Trainer`, **does not use this class**: it calls the method directly, and its
numbers do not depend on anything here.

Counting: ``step_end()`` is called after every optimizer step and ``epoch_end()`` after every epoch;
each counts from 1 (the first call is "1 step / 1 epoch done"), as ``Trainer`` counts, so ``delay``
and ``oialr_frequency`` mean what they mean in a run spec. Pass ``step=`` / ``epoch=`` to set the
count explicitly (e.g. when resuming).

Optimizer after a change (:meth:`IterativeCompressor.optimizer_after_change`): the optimizer is edited
*in place* — replaced parameters are swapped in their own param group (a layer's ``S`` takes the
group of the dense weight it replaced; the new bias the group of the old bias), so schedulers and
wrappers holding the optimizer (Hugging Face's ``AcceleratedOptimizer``) stay valid; the same object
is returned. Their state follows ``optimizer_state_after_cut`` as in ``Trainer``: ``carry`` (default)
transports Adam's moments of a cut ``S`` into the new basis (:mod:`lowrank.optim_state`), ``slice``
keeps their leading block (OIALR's code), ``reset`` starts afresh; a parameter replaced without a
rotation (the conversion at ``t = delay``) starts afresh, and so does every parameter of an optimizer
whose state is not Adam's.

Single process only (no ``torch.distributed`` synchronisation: use ``python -m lowrank run`` under
torchrun for that). TRP / FWTRP (Algorithms 3–4) are not offered here.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn

from .layers import FactorizedLinear, LowRankLinear, TTLinear
from .methods import build_method
from .methods.iht import IterativeHardThresholding
from .optim_state import ADAM_STATE_KEYS, ADAM_STATE_POLICIES, SECOND_MOMENT_RULES, transport_adam_state
from .surgery import compile_model, find_linear_layers

__all__ = ["ITERATIVE_METHODS", "IterativeCompressor", "LowRankTrainerCallback"]

ITERATIVE_METHODS = ("oialr", "ieht", "ifht", "global_ieht", "global_ifht")


class IterativeCompressor:
    """Drive one of :data:`ITERATIVE_METHODS` from a user's loop (module docstring).

    ``method_args`` are the run-spec keys of the method (``oialr_threshold``, ``oialr_frequency``,
    ``oialr_type``, ``delay``, ``oialr_min_rank_percent``, ``oialr_depth_schedule``, ``max_cut_fraction``,
    ``cut_until``; IFHT also ``fisher_labels``, ``fisher_samples``), validated by the method before any
    work. ``calibration``: batches for IFHT's Fisher (required by ``ifht`` / ``global_ifht``, refused by
    the others). ``targets``: as :func:`lowrank.compress` (default ``"auto"``).
    """

    def __init__(self, model: nn.Module, method: str = "ieht", *, targets: Any = "auto",
                 calibration: Iterable | None = None, optimizer_state_after_cut: str = "carry",
                 second_moment_after_cut: str = "rotate_squares", random_state: int = 0, **method_args: Any):
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
        weighted = method in ("ifht", "global_ifht")
        if weighted and calibration is None:
            raise ValueError(f"method={method!r} measures a Fisher at every cut; pass calibration=<batches>")
        if not weighted and calibration is not None:
            raise ValueError(f"method={method!r} uses no calibration data; pass calibration=None")
        if isinstance(random_state, bool) or not isinstance(random_state, int) or random_state < 0:
            raise ValueError(f"random_state={random_state!r} must be an int ≥ 0")
        self.method = build_method(method, method_args)          # validates every key and value
        assert isinstance(self.method, IterativeHardThresholding)
        self.model = model
        self.target_names = list(find_linear_layers(model, targets, include_factorized=True))
        for n in self.target_names:
            if not isinstance(model.get_submodule(n), (nn.Linear, LowRankLinear)):
                raise ValueError(f"{n}: is a {type(model.get_submodule(n)).__name__}; the iterative methods start "
                                 f"from dense nn.Linear (or U S Vᵀ) layers")
        self._calibration = calibration
        self.calib_set = None
        self.cfg = {"random_state": random_state, "optimizer_state_after_cut": optimizer_state_after_cut,
                    "second_moment_after_cut": second_moment_after_cut}
        self.step = 0
        self.epoch = 0
        self.device = next(model.parameters()).device
        self._rotations: dict[int, tuple] = {}
        self._synced = self._trainable()
        self.changed = bool(self.method.setup(self))         # delay = 0 converts now

    # ---------------------------------------------------------------- what the method calls
    is_main = True

    def sync_structure(self, names: list[str]) -> None:
        """Single process: nothing to synchronise."""

    def note_rotation(self, new: nn.Parameter, old: nn.Parameter, Ua: torch.Tensor, Va: torch.Tensor) -> None:
        self._rotations[id(new)] = (old, Ua, Va)

    def module_ranks(self) -> dict[str, int]:
        out = {}
        for n in self.target_names:
            m = self.model.get_submodule(n)
            out[n] = m.rank if isinstance(m, (LowRankLinear, FactorizedLinear, TTLinear)) else min(m.weight.shape)
        return out

    def calibration_loader(self, batch_size: int = 64):
        return self._calibration

    # ---------------------------------------------------------------- the user's calls
    @property
    def kind(self) -> str:
        """``"step"`` or ``"epoch"``: when the method converts and cuts (``oialr_type``)."""
        return self.method.kind

    def ranks(self) -> dict[str, int]:
        """Current rank of every target layer."""
        return self.module_ranks()

    @property
    def trajectory(self) -> list[dict]:
        """One record per conversion / cut: step, epoch, event and every layer's rank."""
        return self.method.trajectory

    def step_end(self, step: int | None = None) -> bool:
        """Call after every optimizer step; ``True`` when parameters were replaced (then call
        :meth:`optimizer_after_change`)."""
        self.step = self.step + 1 if step is None else int(step)
        changed = bool(self.method.after_step(self))
        self.changed |= changed
        return changed

    def epoch_end(self, epoch: int | None = None) -> bool:
        """Call after every epoch (``epoch``: epochs completed, from 1); ``True`` when parameters were
        replaced."""
        self.epoch = self.epoch + 1 if epoch is None else int(epoch)
        changed = bool(self.method.after_epoch(self))
        self.changed |= changed
        return changed

    def _trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def param_groups(self, weight_decay: float = 0.0) -> list[dict]:
        """The library's grouping (:class:`lowrank.train.Trainer`): weight decay on trainable tensors with
        ≥ 2 dimensions (the dense weights, the ``S`` cores), none on biases and norms."""
        named = list(self._trainable().items())
        return [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": weight_decay},
                {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}]

    def optimizer(self, cls: type[torch.optim.Optimizer] = torch.optim.AdamW, *, weight_decay: float = 0.0,
                  **kwargs: Any) -> torch.optim.Optimizer:
        """``cls(self.param_groups(weight_decay), **kwargs)`` over the current trainable parameters."""
        self._synced = self._trainable()
        self._rotations = {}
        self.changed = False
        return cls(self.param_groups(weight_decay), **kwargs)

    def optimizer_after_change(self, optimizer: Any) -> Any:
        """Swap the replaced parameters into ``optimizer`` in place and set their state (module docstring);
        returns ``optimizer``. Harmless when nothing changed."""
        groups = optimizer.param_groups
        state = optimizer.state
        current = self._trainable()
        old = self._synced
        where = {id(p): gi for gi, g in enumerate(groups) for p in g["params"]}
        policy = self.cfg["optimizer_state_after_cut"]
        placed: dict[int, list[nn.Parameter]] = {}
        for name, p in current.items():
            if old.get(name) is p:
                continue
            prev = old.get(name)
            if prev is None and name.endswith(".S"):
                prev = old.get(name[:-2] + ".weight")      # the conversion: S replaces the dense weight
            if prev is None or id(prev) not in where:
                continue                                    # its predecessor was not being optimised
            placed.setdefault(where[id(prev)], []).append(p)
            rot = self._rotations.get(id(p))
            st = state.get(rot[0]) if rot is not None else None
            if rot is not None and st and policy != "reset" and set(st) <= set(ADAM_STATE_KEYS):
                new = transport_adam_state(st, rot[1], rot[2], policy=policy, like=p,
                                           second_moment=self.cfg["second_moment_after_cut"])
                if new and not torch.is_tensor(new["step"]):
                    new["step"] = torch.tensor(float(new["step"]), dtype=torch.float32)
                state[p] = new
        alive = {id(p) for p in self.model.parameters()}
        for gi, g in enumerate(groups):
            for p in g["params"]:
                if id(p) not in alive:                      # replaced: its state goes with it
                    state.pop(p, None)
            g["params"] = [p for p in g["params"] if id(p) in alive] + placed.get(gi, [])
        self._synced = current
        self._rotations = {}
        self.changed = False
        return optimizer

    def compile(self) -> dict[str, nn.Module]:
        """End of the paper's Algorithms 1–2: every ``U S Vᵀ`` layer becomes ``A·B`` (or dense where ``A·B``
        does not pay); returns name → new layer."""
        return compile_model(self.model)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed loop needs besides the model and optimizer: the counters and the method's state."""
        return {"step": self.step, "epoch": self.epoch, "method": self.method.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.method.load_state_dict(state["method"])


def _callback_base():
    try:
        from transformers import TrainerCallback
    except ImportError:  # pragma: no cover - transformers is a dependency of the project
        return object
    return TrainerCallback


class LowRankTrainerCallback(_callback_base()):
    """A ``transformers.TrainerCallback`` that drives an :class:`IterativeCompressor` inside
    ``transformers.Trainer``: ``step_end`` after every optimizer step, ``epoch_end`` after every epoch,
    and the Trainer's own optimizer edited in place after a change (so its LR scheduler stays attached);
    as in :class:`lowrank.train.Trainer`, nothing happens after the last step / epoch.
    ``compile_at_end=True`` compiles to ``A·B`` when training ends.

    Build the compressor *before* the ``transformers.Trainer`` (a ``delay=0`` conversion then happens before
    the Trainer creates its optimizer)."""

    def __init__(self, compressor: IterativeCompressor, *, compile_at_end: bool = False):
        if not isinstance(compressor, IterativeCompressor):
            raise ValueError(f"compressor must be an IterativeCompressor, got {type(compressor).__name__}")
        self.compressor = compressor
        self.compile_at_end = compile_at_end

    # As lowrank.train.Trainer: no conversion or cut after the last step / epoch (nothing would train after it).
    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        last = bool(getattr(state, "max_steps", 0)) and state.global_step >= state.max_steps
        if self.compressor.kind == "step" and not last and self.compressor.step_end(state.global_step):
            self.compressor.optimizer_after_change(optimizer)
        return control

    def on_epoch_end(self, args, state, control, optimizer=None, **kwargs):
        epoch = round(state.epoch)
        total = getattr(args, "num_train_epochs", None)
        last = total is not None and epoch >= total
        if self.compressor.kind == "epoch" and not last and self.compressor.epoch_end(epoch):
            self.compressor.optimizer_after_change(optimizer)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.compile_at_end:
            self.compressor.compile()
        return control
