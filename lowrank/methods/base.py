"""The strategy interface every compression method implements, and the method registry.

The loop that drives a method (:class:`lowrank.loop.Loop`: the library's :class:`lowrank.train.Trainer` or a
user's loop under :class:`lowrank.iterative.IterativeCompressor`) calls it at fixed points:

* ``setup(loop)`` — once, before the first step (one-shot projections happen here);
* ``before_optimizer_step(loop)`` — after the backward pass, before the optimizer step (TRP adds
  its nuclear-norm sub-gradient to the loss gradient here);
* ``after_step(loop)`` — after every optimizer step (``oialr_type: step`` cuts, TRP);
* ``after_epoch(loop)`` — after every epoch (``oialr_type: epoch`` cuts);
* ``finalize(loop)`` — once, after training: compile into the inference form.

A hook that replaced or reshaped parameters returns a :class:`lowrank.loop.Change` (a cut names its
rotations there); the driver then applies the optimizer policy (:mod:`lowrank.optim_state`). ``None``: nothing
changed. ``scoring_model(loop)`` says which model an evaluation scores when it is not the training model (TRP
scores a truncated, compiled copy of its dense weights), so that every logged accuracy comes with the size of
the model that produced it. ``state_dict`` / ``load_state_dict`` carry whatever a method must remember across
a checkpoint (rank trajectories, whether the conversion happened); the model's module structure is saved by
the loop.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ..configs import Config

from ..loop import Change, Loop
from ..method_table import method_names

__all__ = ["Method", "MethodConfig", "METHODS", "register", "build_method"]

METHODS: dict[str, type["Method"]] = {}


def register(*names: str):
    def deco(cls):
        for n in names:
            METHODS[n] = cls
        return cls
    return deco


@dataclasses.dataclass(frozen=True)
class MethodConfig(Config):
    """A method's keys (its spec's ``method_args``): one typed config class per method class; the layers it
    compresses are the spec's ``targets``, not a method key."""

    label: ClassVar[str] = "method {name!r}"
    keys_word: ClassVar[str] = "config keys"
    #: key → the registered names that use it, for keys only some of a class's names use (e.g. the Fisher
    #: keys of the Fisher-weighted variants); the other names refuse the key rather than ignore it
    only_for: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def keys_for(cls, name: str) -> dict[str, Any]:
        """The keys (with defaults) that method ``name`` accepts: every key does something for it."""
        return {k: v for k, v in cls.defaults().items() if name in cls.only_for.get(k, (name,))}

    @classmethod
    def parse(cls, name: str, cfg: dict[str, Any]):
        """The config of method ``name`` from its keys ``cfg``: a key another name of the class uses is
        refused first, then :meth:`~lowrank.configs.Config.from_mapping`'s checks."""
        unused = sorted(k for k in set(cfg) & set(cls.defaults()) if k not in cls.keys_for(name))
        if unused:
            users = {k: list(cls.only_for[k]) for k in unused}
            raise ValueError(f"method {name!r} does not use keys {unused} (they apply to {users} only)")
        return cls.from_mapping(cfg, name=name)


class Method:
    """Base strategy: dense training, no compression (used for pre-training and the dense baseline)."""

    name = "dense"
    #: the typed config of this class's keys (a subclass names its own)
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: the keys with their defaults, and :attr:`MethodConfig.only_for`, as read from ``config_class``
    keys: ClassVar[dict[str, Any]] = {}
    only_for: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.keys, cls.only_for = cls.config_class.defaults(), cls.config_class.only_for

    @classmethod
    def keys_for(cls, name: str) -> dict[str, Any]:
        """The keys (with defaults) that method ``name`` accepts: every key does something for it."""
        return cls.config_class.keys_for(name)

    @classmethod
    def validate(cls, name: str, cfg: dict[str, Any]) -> MethodConfig:
        """Refuse unknown keys and bad values before any work; returns the typed config."""
        return cls.config_class.parse(name, cfg)

    def __init__(self, name: str, cfg: dict[str, Any]):
        self.name = name
        self.cfg = dict(cfg)
        self.config = self.validate(name, self.cfg)   # typed, defaults filled in
        self.trajectory: list[dict] = []   # per cut: {"step", "epoch", "ranks": {layer: rank}}

    # ---------------------------------------------------------------- hooks
    def setup(self, loop: Loop) -> Change | None:
        return None

    def before_optimizer_step(self, loop: Loop) -> None:
        return None

    def after_step(self, loop: Loop) -> Change | None:
        return None

    def after_epoch(self, loop: Loop) -> Change | None:
        return None

    def finalize(self, loop: Loop) -> None:
        return None

    def check_budget(self, *, steps: int, epochs: int, calibration_samples: int) -> None:
        """Refuse, before any training, settings the run cannot honour (e.g. a delay beyond the run)."""
        return None

    def rank_floor(self, loop: Loop) -> dict[str, int] | None:
        """The smallest rank each target layer can reach under this method (``None``: no floor it enforces;
        a one-shot method's rank is what its spec says)."""
        return None

    def scoring_model(self, loop: Loop) -> tuple[Any, dict[str, int]] | None:
        """``(model, ranks)`` an evaluation must score instead of the training model, or ``None`` when the
        training model is already the scored form (its size is what its ranks compile to)."""
        return None

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"trajectory": self.trajectory}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trajectory = list(state.get("trajectory", []))

    def ranks(self, loop: Loop) -> dict[str, int]:
        """Current rank of every target layer (full rank for dense layers)."""
        return loop.module_ranks()

    def record(self, loop: Loop, ranks: dict[str, int], **extra) -> Change:
        """Append a trajectory entry; returns the :class:`~lowrank.loop.Change` with these ranks."""
        self.trajectory.append({"step": loop.step, "epoch": loop.epoch, "ranks": dict(ranks), **extra})
        return Change(ranks=dict(ranks))


register(*method_names(family="dense"))(Method)


def build_method(name: str, cfg: dict[str, Any]) -> Method:
    """Instantiate a registered method (its constructor validates ``cfg`` before any work).

    Every method module registers itself on import; ``lowrank/methods/__init__.py`` imports them all,
    and Python runs it before any submodule such as this one, so the registry is always complete.
    """
    if name not in METHODS:
        raise ValueError(f"method={name!r} is not a known method; allowed: {', '.join(sorted(METHODS))}")
    return METHODS[name](name, cfg)
