"""The strategy interface every compression method implements, and the method registry.

The one training loop (:mod:`lowrank.train`) calls a method at fixed points:

* ``setup(trainer)`` — once, before the first step (one-shot projections happen here);
* ``before_optimizer_step(trainer)`` — after the backward pass, before the optimizer step (TRP adds
  its nuclear-norm sub-gradient to the loss gradient here);
* ``after_step(trainer)`` — after every optimizer step (``oialr_type: step`` cuts, TRP);
* ``after_epoch(trainer)`` — after every epoch (``oialr_type: epoch`` cuts);
* ``finalize(trainer)`` — once, after training: compile into the inference form.

A hook returns ``True`` when it replaced or reshaped parameters, so the loop rebuilds the optimizer
(see :meth:`lowrank.train.Trainer.rebuild_optimizer` for the Adam-state policy; a cut announces each
rotation with :meth:`lowrank.train.Trainer.note_rotation`). ``scoring_model(trainer)`` says which
model an evaluation scores when it is not the training model (TRP scores a truncated, compiled copy
of its dense weights), so that every logged accuracy comes with the size of the model that produced it. ``state_dict`` /
``load_state_dict`` carry whatever a method must remember across a checkpoint (rank trajectories,
whether the conversion happened); the model's module structure is saved by the trainer.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from ..configs import Config

if TYPE_CHECKING:  # pragma: no cover
    from ..train import Trainer

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
    def setup(self, trainer: "Trainer") -> bool:
        return False

    def before_optimizer_step(self, trainer: "Trainer") -> None:
        return None

    def after_step(self, trainer: "Trainer") -> bool:
        return False

    def after_epoch(self, trainer: "Trainer") -> bool:
        return False

    def finalize(self, trainer: "Trainer") -> None:
        return None

    def rank_floor(self, trainer: "Trainer") -> dict[str, int] | None:
        """The smallest rank each target layer can reach under this method (``None``: no floor it enforces;
        a one-shot method's rank is what its spec says)."""
        return None

    def scoring_model(self, trainer: "Trainer") -> tuple[Any, dict[str, int]] | None:
        """``(model, ranks)`` an evaluation must score instead of the training model, or ``None`` when the
        training model is already the scored form (its size is what its ranks compile to)."""
        return None

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"trajectory": self.trajectory}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trajectory = list(state.get("trajectory", []))

    def ranks(self, trainer: "Trainer") -> dict[str, int]:
        """Current rank of every target layer (full rank for dense layers)."""
        return trainer.module_ranks()

    def record(self, trainer: "Trainer", ranks: dict[str, int], **extra) -> None:
        self.trajectory.append({"step": trainer.step, "epoch": trainer.epoch, "ranks": dict(ranks), **extra})


register("dense")(Method)


def build_method(name: str, cfg: dict[str, Any]) -> Method:
    """Instantiate a registered method (its constructor validates ``cfg`` before any work).

    Every method module registers itself on import; ``lowrank/methods/__init__.py`` imports them all,
    and Python runs it before any submodule such as this one, so the registry is always complete.
    """
    if name not in METHODS:
        raise ValueError(f"method={name!r} is not a known method; allowed: {', '.join(sorted(METHODS))}")
    return METHODS[name](name, cfg)
