"""IterativeCompressor in a user's loop reproduces the library's Trainer run (same conversion, cuts, ranks,
Adam state after a cut, compiled weights); the optimizer is edited in place; the Hugging Face callback
drives it through the hooks transformers.Trainer calls; bad input is refused before any work."""
from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from lowrank import FactorizedLinear, LowRankLinear
from lowrank.iterative import IterativeCompressor, LowRankTrainerCallback
from lowrank.methods import build_method
from lowrank.models import classifier_logits
from lowrank.train import Trainer

from . import models_small as ms


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


ARGS = {"oialr_threshold": 0.8, "oialr_frequency": 1, "oialr_type": "epoch", "delay": 1}
CFG = {"epochs": 4, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.05, "grad_clip": None, "random_state": 0,
       "device": "cpu"}


@pytest.mark.parametrize("policy", ["carry", "reset"])
def test_user_loop_reproduces_the_trainer(policy):
    torch.manual_seed(0)
    base, names = ms.vit()
    train, test = _data(), _data(32, seed=1)
    cfg = {**CFG, "optimizer_state_after_cut": policy}

    ref_model = copy.deepcopy(base)
    ref = Trainer(ref_model, build_method("ieht", ARGS), train, test, cfg, targets="auto", progress=False)
    ref.fit()

    model = copy.deepcopy(base)
    comp = IterativeCompressor(model, "ieht", optimizer_state_after_cut=policy, **ARGS)
    opt = comp.optimizer(torch.optim.AdamW, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    model.train()
    for epoch in range(cfg["epochs"]):
        for x, y in ref.train_loader(epoch):          # the same batches in the same order
            loss = F.cross_entropy(classifier_logits(model, x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            comp.step_end()
        if epoch + 1 < cfg["epochs"] and comp.epoch_end():   # as Trainer: no cut after the last epoch
            opt = comp.optimizer_after_change(opt)
    comp.compile()

    assert [(r["epoch"], r["event"], r["ranks"]) for r in comp.trajectory] == \
        [(r["epoch"], r["event"], r["ranks"]) for r in ref.method.trajectory]
    assert [r["event"] for r in comp.trajectory] == ["convert", "cut", "cut"]
    sa, sb = model.state_dict(), ref_model.state_dict()
    assert sa.keys() == sb.keys()
    # the same float operations on the same tensors in the same order (AdamW updates each tensor
    # elementwise, so the order of parameters in a group does not enter): bit-identical results
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)
    assert all(isinstance(model.get_submodule(n), FactorizedLinear) for n in names)


TRP_ARGS = {"trp_threshold": 0.9, "trp_frequency": 2, "nuclear_norm_weight": 1e-3}


@pytest.mark.parametrize("mode", ["gradient", "step"])
def test_user_loop_reproduces_the_trainers_trp_run(mode):
    """TRP (Algorithm 3) in a user's loop: the nuclear-norm sub-gradient before the optimizer step, truncations
    at steps, never at the last one, the compiled model — bit-identical to the library's Trainer."""
    torch.manual_seed(0)
    base, names = ms.vit()
    train, test = _data(), _data(32, seed=1)
    args = {**TRP_ARGS, "nuclear_norm_mode": mode}
    ref_model = copy.deepcopy(base)
    ref = Trainer(ref_model, build_method("trp", args), train, test, CFG, targets="auto", progress=False)
    ref.fit()

    model = copy.deepcopy(base)
    total = CFG["epochs"] * len(ref.epoch_batches(0))
    comp = IterativeCompressor(model, "trp", last_step=total, **args)
    opt = comp.optimizer(torch.optim.AdamW, lr=CFG["lr"], weight_decay=CFG["weight_decay"])
    model.train()
    for epoch in range(CFG["epochs"]):
        for x, y in ref.train_loader(epoch):
            loss = F.cross_entropy(classifier_logits(model, x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            comp.before_optimizer_step()
            opt.step()
            assert not comp.step_end()                  # TRP keeps its parameters: nothing to swap
        comp.epoch_end()
        scored, ranks = comp.scored_model()
        assert scored is not model                      # the truncated, compiled copy of the current weights
        factored = {n: scored.get_submodule(n).rank for n in names
                    if isinstance(scored.get_submodule(n), FactorizedLinear)}
        assert factored and all(ranks[n] == k for n, k in factored.items())
    assert [r["step"] for r in comp.trajectory if r["event"] == "truncate"] == list(range(2, total, 2))
    replaced = comp.compile()
    assert set(replaced) == {n for n in names if isinstance(model.get_submodule(n), FactorizedLinear)} != set()
    assert [(r["step"], r["event"], r["ranks"]) for r in comp.trajectory] == \
        [(r["step"], r["event"], r["ranks"]) for r in ref.method.trajectory]
    sa, sb = model.state_dict(), ref_model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_fwtrp_needs_calibration_and_step_mode_needs_an_optimizer():
    torch.manual_seed(0)
    model, _ = ms.vit()
    with pytest.raises(ValueError, match=r"method='fwtrp' measures a Fisher at every cut; pass calibration"):
        IterativeCompressor(model, "fwtrp", **TRP_ARGS)
    comp = IterativeCompressor(model, "trp", **{**TRP_ARGS, "trp_frequency": 1, "nuclear_norm_frequency": 1,
                                                "nuclear_norm_mode": "step"})
    x, y = ms.image_batches()[0]
    F.cross_entropy(model(x), y).backward()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"nuclear_norm_mode='step' needs the learning rate"):
        comp.step_end()                                  # would truncate, then take a nuclear-norm step of size lr
    assert comp.step == 0 and not comp.trajectory        # refused before any work
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_optimizer_is_edited_in_place_and_state_carried():
    torch.manual_seed(0)
    model, names = ms.vit()
    comp = IterativeCompressor(model, "ieht", oialr_threshold=0.7, oialr_type="step", oialr_frequency=2, delay=0)
    assert all(isinstance(model.get_submodule(n), LowRankLinear) for n in names)   # delay 0: converted at once
    opt = comp.optimizer(torch.optim.AdamW, lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    x, y = ms.image_batches()[0]
    changed_at = []
    for step in range(1, 5):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if comp.step_end():
            changed_at.append(step)
            assert comp.optimizer_after_change(opt) is opt
            layer = model.get_submodule(names[0])
            in_opt = [p for g in opt.param_groups for p in g["params"]]
            trainable = [p for p in model.parameters() if p.requires_grad]
            assert {id(p) for p in in_opt} == {id(p) for p in trainable}  # exactly the live parameters
            assert len(in_opt) == len(trainable)
            assert {id(p) for p in opt.state} <= {id(p) for p in in_opt}  # no state of dead parameters
            assert sum(p is layer.S for p in opt.param_groups[0]["params"]) == 1   # S in the decay group
            k = layer.rank
            # carried, not reset: the moments in the new k×k basis, the step count kept
            assert opt.state[layer.S]["exp_avg"].shape == (k, k)
            assert int(opt.state[layer.S]["step"]) == step
            assert sched.optimizer is opt
    assert changed_at == [2, 4]


def test_callback_follows_the_hooks_of_transformers_trainer():
    from transformers import TrainerControl, TrainerState, TrainingArguments  # noqa: F401
    torch.manual_seed(0)
    model, names = ms.bert()
    comp = IterativeCompressor(model, "ieht", oialr_threshold=0.8, oialr_type="epoch", delay=1)
    cb = LowRankTrainerCallback(comp, compile_at_end=True)
    opt = comp.optimizer(torch.optim.AdamW, lr=1e-3)
    state, control = TrainerState(), TrainerControl()
    args = types.SimpleNamespace(num_train_epochs=4)          # the TrainingArguments field the callback reads
    batch = ms.token_batches()[0]
    for epoch in (1, 2, 3, 4):
        out = model(**batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        state.global_step += 1
        cb.on_step_end(args, state, control, model=model, optimizer=opt)
        state.epoch = float(epoch)
        cb.on_epoch_end(args, state, control, model=model, optimizer=opt)
    # converted after epoch 1, cut after 2 and 3, nothing after the last (as the library's Trainer)
    assert [(r["epoch"], r["event"]) for r in comp.trajectory] == [(1, "convert"), (2, "cut"), (3, "cut")]
    cb.on_train_end(None, state, control, model=model)
    assert all(isinstance(model.get_submodule(n), (FactorizedLinear, torch.nn.Linear)) for n in names)
    assert any(isinstance(model.get_submodule(n), FactorizedLinear) for n in names)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "svd"}, r"method='svd' is not an iterative method this class drives; allowed: oialr, ieht, .*trp"),
    ({"method": "ieht", "last_step": 0}, r"last_step=0 must be a positive int or None"),
    ({"method": "ieht", "oialr_threshold": 1.5}, r"oialr_threshold=1.5 is outside the allowed range \(0, 1\]"),
    ({"method": "ieht", "bogus": 1}, r"unknown config keys \['bogus'\]"),
    ({"method": "ieht", "optimizer_state_after_cut": "keep"}, r"optimizer_state_after_cut='keep'; allowed"),
    ({"method": "ifht"}, r"method='ifht' measures a Fisher at every cut; pass calibration"),
    ({"method": "ieht", "fisher_samples": 4}, r"does not use keys \['fisher_samples'\]"),
])
def test_bad_arguments(kwargs, match):
    torch.manual_seed(0)
    model, _ = ms.vit()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=match):
        IterativeCompressor(model, **kwargs)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_ifht_with_calibration():
    torch.manual_seed(0)
    model, names = ms.vit()
    comp = IterativeCompressor(model, "ifht", calibration=ms.image_batches(), oialr_threshold=0.8, delay=0)
    opt = comp.optimizer(torch.optim.AdamW, lr=1e-3)
    assert comp.epoch_end()
    comp.optimizer_after_change(opt)
    full = {n: min(model.get_submodule(n).weight.shape) for n in names}
    assert [r["event"] for r in comp.trajectory] == ["convert", "cut"]
    assert all(comp.ranks()[n] < full[n] for n in names)


def test_inside_transformers_trainer(tmp_path):
    """The Trainer's own optimizer keeps training exactly the live parameters after every change."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    torch.manual_seed(0)
    model, names = ms.bert()
    comp = IterativeCompressor(model, "ieht", oialr_threshold=0.8, oialr_type="epoch", delay=1)
    seen = []

    class Probe(TrainerCallback):
        def on_epoch_end(self, args, state, control, optimizer=None, model=None, **kwargs):
            live = {id(p) for p in model.parameters() if p.requires_grad}
            seen.append((round(state.epoch), live == {id(p) for g in optimizer.param_groups for p in g["params"]},
                         model.get_submodule(names[0]).weight.detach().clone()))

    train = [{k: v[i] for k, v in b.items()} for b in ms.token_batches(n_batches=2, batch=4) for i in range(4)]
    args = TrainingArguments(str(tmp_path), num_train_epochs=4, per_device_train_batch_size=8, learning_rate=1e-2,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    # the compressor's callback first, so that the probe sees the optimizer after each change
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      callbacks=[LowRankTrainerCallback(comp), Probe()])
    trainer.train()
    assert [(r["epoch"], r["event"]) for r in comp.trajectory] == [(1, "convert"), (2, "cut"), (3, "cut")]
    assert all(ok for _, ok, _ in seen)
    # after the last cut (epoch 3) the cores still trained in epoch 4: the weight moved
    assert not torch.equal(seen[-2][2], seen[-1][2])


# ------------------------------------------------------------------------------ transformers' Conv1D targets
_CONV1D_ARGS = {
    **{m: {"oialr_threshold": 0.5 if m == "oialr" else 0.9, "oialr_type": "step", "oialr_frequency": 2, "delay": 0}
       for m in ("oialr", "ieht", "ifht", "global_ieht", "global_ifht")},
    "trp": {"trp_threshold": 0.8, "trp_frequency": 2}, "fwtrp": {"trp_threshold": 0.8, "trp_frequency": 2},
}


@pytest.mark.parametrize("method", sorted(_CONV1D_ARGS))
def test_every_iterative_method_runs_on_gpt2_conv1d_and_reloads_bit_for_bit(method, tmp_path):
    """GPT-2's projections are transformers ``Conv1D`` (weight stored (in, out)): a few steps of each iterative
    method through IterativeCompressor cut them, the compiled model keeps GPT-2's structure (a layer that stays
    dense is a Conv1D again), and save → from_pretrained gives the same logits bit for bit."""
    import lowrank
    from lowrank.iterative import ITERATIVE_METHODS
    from lowrank.layers import as_linear

    transformers = pytest.importorskip("transformers")
    assert set(_CONV1D_ARGS) == set(ITERATIVE_METHODS)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100,
                                                                 n_positions=32)).eval()
    conv = type(model.transformer.h[0].mlp.c_fc)
    ids = torch.randint(0, 100, (4, 12), generator=torch.Generator().manual_seed(1))
    names = list(lowrank.find_linear_layers(model, "auto"))
    full = {n: min(model.get_submodule(n).weight.shape) for n in names}
    fisher = method in ("ifht", "global_ifht", "fwtrp")
    comp = IterativeCompressor(model, method, calibration=[{"input_ids": ids}] if fisher else None,
                               **_CONV1D_ARGS[method])
    opt = comp.optimizer(torch.optim.AdamW, lr=1e-3)
    for step in range(1, 6):
        opt.zero_grad()
        model(ids, labels=ids).loss.backward()
        comp.before_optimizer_step()
        opt.step()
        if comp.step_end():
            comp.optimizer_after_change(opt)
        if method in ("trp", "fwtrp") and step == 2:     # just truncated: each (out, in) weight has its rank
            for n, k in comp.ranks().items():
                s = torch.linalg.svdvals(as_linear(model.get_submodule(n)).weight.detach().double())
                # float32 storage of a rank-k matrix: the tail is rounding, ≲ n·eps32 of σ₁ (margin 8)
                assert s[k:].max() <= 8 * max(s.shape[0], 32) * torch.finfo(torch.float32).eps * s[0], n
    assert any(r["event"] in ("cut", "truncate") for r in comp.trajectory)
    assert sum(comp.ranks().values()) < sum(full.values())
    comp.compile()
    for n in names:
        assert isinstance(model.get_submodule(n), (FactorizedLinear, conv))
    lowrank.save_compressed(model, tmp_path)
    again = lowrank.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits, rtol=0, atol=0)
