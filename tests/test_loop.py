"""The loop a method runs in (:class:`lowrank.loop.Loop`): both loops implement it, every method reads nothing
else of it, a cut returns its rotations; and the method table is what every list of method names follows."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lowrank.api import validate_compress_arguments
from lowrank.iterative import IterativeCompressor, _OwnLoop
from lowrank.loop import Change, Loop
from lowrank.method_table import METHOD_TABLE, method_names
from lowrank.methods import METHODS, IterativeHardThresholding, Method, OneShot, TensorTrain, TrainedRankPruning

from . import models_small as ms
from .test_protocol import MINIMAL, make_trainer
from .test_train import base, cache  # noqa: F401  (module fixtures: a tiny pre-trained ViT)

#: the members of the Loop protocol: its annotated attributes and its methods
LOOP_MEMBERS = set(Loop.__annotations__) | {n for n, v in vars(Loop).items() if callable(v) and not n.startswith("_")}


class StrictLoop:
    """A view of a loop that offers exactly :data:`LOOP_MEMBERS`: a method reading anything else fails."""

    def __init__(self, inner):
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name):
        if name not in LOOP_MEMBERS:
            raise AttributeError(f"a method read loop.{name}, which lowrank.loop.Loop does not offer")
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        if name not in ("step", "epoch"):
            raise AttributeError(f"a method set loop.{name}")
        setattr(self._inner, name, value)


def test_the_protocol_names_what_methods_read():
    assert {"model", "target_names", "step", "epoch", "random_state", "is_main", "calibration_loader",
            "sync_structure", "broadcast_object", "module_ranks", "lr_at", "device"} == LOOP_MEMBERS


def test_both_loops_implement_the_protocol(base, cache):  # noqa: F811
    t = make_trainer("ieht", MINIMAL["ieht"], base, cache)
    assert isinstance(t, Loop)
    model, _ = ms.vit()
    comp = IterativeCompressor(model, "ieht", **MINIMAL["ieht"])
    assert isinstance(comp.loop, _OwnLoop) and isinstance(comp.loop, Loop)
    assert not isinstance(object(), Loop)     # the check is not vacuous


@pytest.mark.parametrize("method", sorted(MINIMAL))
def test_every_method_reads_only_the_loop_protocol(method, base, cache):  # noqa: F811
    """Setup, two epochs of steps with their hooks, scoring and the compile, with the method seeing the Trainer
    only through :class:`StrictLoop`: every registered method runs."""
    t = make_trainer(method, MINIMAL[method], base, cache, epochs=2)
    loop = StrictLoop(t)
    comp = IterativeCompressor.driving(t.method, loop, last_step=t.total_steps, last_epoch=2)
    t.method.rank_floor(loop)
    t.method.setup(loop)
    opt = comp.optimizer(torch.optim.AdamW, lr=1e-3)
    for epoch in range(2):
        for batch in t.train_loader(epoch):
            opt.zero_grad()
            F.cross_entropy(t.forward(t.model, batch), batch[1]).backward()
            comp.before_optimizer_step()
            opt.step()
            if comp.step_end():
                comp.optimizer_after_change(opt)
        comp.scored_model()
        if comp.epoch_end():
            comp.optimizer_after_change(opt)
    comp.ranks()
    comp.compile()
    if METHOD_TABLE[method].iterative:
        assert any(r["event"] in ("cut", "truncate") for r in t.method.trajectory), method


def test_a_cut_returns_its_rotations():
    """IEHT's cut returns, for every target's new core ``S'``, ``(S, Ua, Va)`` with ``S' = Uaᵀ S Va`` (the change of
    variables the ``carry`` policy moves Adam's moments by) and orthonormal ``Ua``, ``Va``; and the ranks."""
    model, names = ms.vit()
    comp = IterativeCompressor(model, "ieht", oialr_threshold=0.7, delay=0)
    method = comp.method
    with torch.no_grad():    # a non-diagonal core, as after training
        for n in names:
            model.get_submodule(n).S.add_(0.1 * torch.randn_like(model.get_submodule(n).S))
    old = {n: model.get_submodule(n).S for n in names}
    change = method.cut(comp.loop)
    assert isinstance(change, Change) and change.ranks == comp.loop.module_ranks()
    assert len(change.rotations) == len(names)
    for n in names:
        new = model.get_submodule(n).S
        prev, Ua, Va = change.rotations[id(new)]
        assert prev is old[n] and new.shape[0] == change.ranks[n] < prev.shape[0]
        k = Ua.shape[1]
        eye = torch.eye(k, dtype=torch.float64)
        torch.testing.assert_close(Ua.mT @ Ua, eye)
        torch.testing.assert_close(Va.mT @ Va, eye)
        # float32 core, float64 rotation: rounding of a k-term product, ≲ k·eps32 of the largest entry (margin 8)
        want = Ua.mT @ prev.detach().double() @ Va
        tol = 8 * prev.shape[0] * torch.finfo(torch.float32).eps * float(prev.detach().abs().max())
        torch.testing.assert_close(new.detach().double(), want, rtol=0, atol=tol)


# ------------------------------------------------------------------------------ the method table
def test_the_table_is_the_registry():
    assert list(METHOD_TABLE) and set(METHOD_TABLE) == set(METHODS)
    classes = {"dense": Method, "projection": OneShot, "tensor_train": TensorTrain, "iht": IterativeHardThresholding,
               "trp": TrainedRankPruning}
    for name, info in METHOD_TABLE.items():
        assert METHODS[name] is classes[info.family], name
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        method_names(colour="red")


@pytest.mark.parametrize("method", sorted(METHOD_TABLE))
def test_the_entry_points_accept_what_the_table_says(method):
    """IterativeCompressor drives exactly the iterative methods and wants calibration data exactly for those that
    measure a Fisher; compress() takes exactly the one-shot ones and wants calibration data exactly for those that
    measure a statistic."""
    info = METHOD_TABLE[method]
    model, _ = ms.vit()
    args = {k: v for k, v in MINIMAL[method].items()}
    calib = [(torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,)))]
    if info.iterative:
        with pytest.raises(ValueError, match="calibration"):
            IterativeCompressor(model, method, calibration=None if info.fisher else calib, **args)
        IterativeCompressor(model, method, calibration=calib if info.fisher else None, **args)
    else:
        with pytest.raises(ValueError, match="not an iterative method"):
            IterativeCompressor(model, method, **args)
    one_shot = not info.iterative and info.family != "dense"
    if one_shot:
        with pytest.raises(ValueError, match="calibration"):
            validate_compress_arguments(method=method, rank=2, params_fraction=None,
                                        calibration_given=not info.needs_calibration)
        validate_compress_arguments(method=method, rank=2, params_fraction=None,
                                    calibration_given=info.needs_calibration)
    else:
        with pytest.raises(ValueError, match="iterative|not a known one-shot method"):
            validate_compress_arguments(method=method, rank=2, params_fraction=None)
