"""The library on an accelerator: the same computations on the ``accel_device`` (conftest) as on the CPU.

Every test here is marked ``cuda``: without a GPU it is skipped with the reason; ``bench/gpu_check.py`` runs
them on a GPU machine, and its CPU dry run (``OPFACT_CUDA_TESTS_DEVICE=cpu``, tested in
``tests/test_gpu_check.py``) runs them here on the CPU so that they cannot rot between GPU sessions.

References are computed on the CPU in float64. The device computes in float64 too where the check is a
numerical identity (the device code must give the same numbers up to rounding), and in float32 for the
training runs, which assert the method's invariants rather than bit equality.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from lowrank.fisher import diagonal_fisher
from lowrank.layers import FactorizedLinear, LowRankLinear, TTLinear
from lowrank.linalg import project
from lowrank.surgery import compress_model, count_parameters, to_low_rank
from lowrank.utils import make_generator, set_random_state

from . import models_small
from .tolerances import EPS64, factorization_rounding, sum_rounding

pytestmark = [pytest.mark.cuda, pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")]

D = torch.float64
REPO = Path(__file__).resolve().parents[1]


def _on(x, device):
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _linear(out_f: int, in_f: int, seed: int = 0) -> nn.Linear:
    set_random_state(seed)
    return nn.Linear(in_f, out_f).to(D)


# ------------------------------------------------------------------------------------------ layers


@pytest.mark.parametrize("kind", ["low_rank", "factorized", "tt"])
def test_layers_forward_and_backward_match_the_cpu(kind, accel_device):
    lin = _linear(18, 24)
    build = {"low_rank": lambda: LowRankLinear.from_linear(lin, 5),
             "factorized": lambda: FactorizedLinear.from_linear(lin, 5),
             "tt": lambda: TTLinear.from_linear(lin, 2)}[kind]
    cpu = build()
    dev = copy.deepcopy(cpu).to(accel_device)
    x = torch.randn(7, 3, 24, generator=make_generator(1), dtype=D)
    y_cpu = cpu(x)
    y_dev = dev(x.to(accel_device))
    assert y_dev.device.type == accel_device.type
    y_cpu.square().sum().backward()
    y_dev.square().sum().backward()
    # products of depth ≤ 3 over inner dimensions ≤ 24, float64 (another kernel, another order)
    tol = sum_rounding(3 * 24, 1.0, 16)
    torch.testing.assert_close(y_dev.cpu(), y_cpu, rtol=tol, atol=tol * float(y_cpu.detach().abs().max()))
    for (n, p_cpu), (_, p_dev) in zip(cpu.named_parameters(), dev.named_parameters()):
        if p_cpu.grad is None:
            assert p_dev.grad is None, n
            continue
        g = p_cpu.grad
        torch.testing.assert_close(p_dev.grad.cpu(), g, rtol=tol, atol=tol * float(g.abs().max()) * 4)


# ------------------------------------------------------------------------------------------ surgery


@pytest.mark.parametrize("form", ["factorized", "low_rank"])
def test_surgery_on_a_vit_matches_the_cpu(form, accel_device):
    set_random_state(0)
    model, targets = models_small.vit()
    model = model.to(D).eval()
    x = torch.randn(4, 1, 8, 8, generator=make_generator(2), dtype=D)
    cpu = copy.deepcopy(model)
    dev = copy.deepcopy(model).to(accel_device)
    compress_model(cpu, targets, method="svd", rank=4, form=form)
    compress_model(dev, targets, method="svd", rank=4, form=form)
    assert count_parameters(dev) == count_parameters(cpu)
    assert all(p.device.type == accel_device.type for p in dev.parameters())
    with torch.no_grad():
        want, got = cpu(x), dev(x.to(accel_device)).cpu()
    # SVD on another backend: factors agree up to the backward error of a 32 × 64 SVD (singular gaps of a
    # random init are far from zero), then two blocks of float64 products
    tol = factorization_rounding(64, 1.0, 64) + sum_rounding(8 * 64, 1.0, 16)
    torch.testing.assert_close(got, want, rtol=1e-7, atol=max(tol, 1e3 * EPS64) * float(want.abs().max()))


def test_full_rank_conversion_is_exact_on_the_device(accel_device):
    set_random_state(0)
    model, targets = models_small.vit()
    model = model.to(D).to(accel_device).eval()
    x = torch.randn(3, 1, 8, 8, generator=make_generator(3), dtype=D).to(accel_device)
    with torch.no_grad():
        before = model(x)
        to_low_rank(model, targets)
        after = model(x)
    assert all(isinstance(model.get_submodule(n), LowRankLinear) for n in targets)
    # U S Vᵀ at full rank reproduces W up to the backward error of its SVD (64-dim weights, norm ~ 1)
    tol = factorization_rounding(64, 1.0, 64) * 8 * 4
    torch.testing.assert_close(after, before, rtol=0, atol=tol * float(before.abs().max()))


# ------------------------------------------------------------------------------------------ projections


@pytest.mark.parametrize("method", ["svd", "fwsvd", "asvd"])
def test_projections_match_the_cpu(method, accel_device):
    g = make_generator(4)
    W = torch.randn(20, 30, generator=g, dtype=D)
    kw = {}
    if method == "fwsvd":
        kw["fisher"] = torch.rand(20, 30, generator=g, dtype=D) + 0.1
    if method == "asvd":
        X = torch.randn(30, 50, generator=g, dtype=D)
        kw["second_moment"] = X @ X.T
    want = project(W, method, 6, **kw).matrix()
    got = project(W.to(accel_device), method, 6, **{k: v.to(accel_device) for k, v in kw.items()}).matrix()
    assert got.device.type == accel_device.type
    # the rank-6 truncation of a random 20 × 30 matrix: the relative gap σ₆ − σ₇ is O(0.1), so the subspaces
    # move by the backward error over that gap
    tol = factorization_rounding(50, float(torch.linalg.matrix_norm(W, 2)), 64) / 0.01
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=tol)


# ------------------------------------------------------------------------------------------ Fisher


@pytest.mark.parametrize("low_rank", [False, True])
@pytest.mark.parametrize("reduce", ["none", "rows"])
def test_fisher_on_the_device_matches_the_cpu_loop(low_rank, reduce, accel_device):
    set_random_state(0)
    model, targets = models_small.vit()
    model = model.to(D)
    if low_rank:
        for n in targets:
            from lowrank.surgery import replace_module
            replace_module(model, n, LowRankLinear.from_linear(model.get_submodule(n), 4))
    g = make_generator(5)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=D)
    y = torch.randint(0, 10, (6,), generator=g)
    cpu_loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    dense = copy.deepcopy(model)
    if low_rank:
        from lowrank.surgery import replace_module
        for n in targets:
            replace_module(dense, n, dense.get_submodule(n).to_linear())
    want = diagonal_fisher(dense, cpu_loader, targets, method="loop", dtype=D, reduce=reduce)
    dev = copy.deepcopy(model).to(accel_device)
    dev_loader = [tuple(t.to(accel_device) for t in b) for b in cpu_loader]
    got = diagonal_fisher(dev, dev_loader, targets, method="hooks", dtype=D, reduce=reduce)
    for n in targets:
        assert got[n].device.type == accel_device.type
        # the bar for the Fisher estimators: 1e-6 relative in float64 (rounding is ~1e-12)
        err = float((got[n].cpu() - want[n]).abs().max() / want[n].abs().max())
        assert err <= 1e-6, (n, err)


# ------------------------------------------------------------------------------------------ the Trainer


def _teacher_data(n: int, seed: int):
    """8 × 8 one-channel images labelled by a fixed random linear teacher: learnable, and no download."""
    g = make_generator(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    teacher = torch.randn(64, 10, generator=make_generator(99))
    return torch.utils.data.TensorDataset(x, (x.reshape(n, -1) @ teacher).argmax(dim=1))


@pytest.mark.parametrize("method,args", [
    ("ieht", {"oialr_threshold": 0.9, "oialr_frequency": 4, "oialr_type": "step", "delay": 2}),
    ("trp", {"trp_threshold": 0.8, "trp_frequency": 5, "nuclear_norm_weight": 1e-3}),
])
def test_iterative_run_through_the_trainer(method, args, accel_device):
    from lowrank.data import calibration_subset
    from lowrank.methods import build_method
    from lowrank.models import build_model
    from lowrank.train import Trainer

    set_random_state(0)
    model = build_model("vit_digits", num_classes=10, embed_dim=32, depth=2, num_heads=2)
    train, test = _teacher_data(256, 0), _teacher_data(128, 1)
    m = build_method(method, args)
    trainer = Trainer(model, m, train, test, {"epochs": 2, "lr": 1e-3, "batch_size": 32, "random_state": 0,
                                              "device": str(accel_device)},
                      targets="blocks.*", calib_set=calibration_subset(train, 32), progress=False)
    final = trainer.fit()
    assert trainer.device.type == accel_device.type
    assert all(p.device.type == accel_device.type for p in trainer.model.parameters())
    assert 0.0 <= final["accuracy"] <= 1.0 and final["eval_loss"] == final["eval_loss"]   # not NaN
    assert final["compression_ratio_target"] < 1, final   # the cuts (or TRP's truncation) took effect


def test_ddp_two_processes_on_one_device(accel_device, tmp_path):
    """tests/ddp_worker.py under torchrun with two ranks on the same device (gloo: NCCL refuses two ranks on
    one GPU); both ranks end bit for bit identical."""
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("the DDP worker trains on digits, which needs scikit-learn")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on this machine")
    from lowrank.experiment import run_experiment

    cache = tmp_path / "cache"
    run_experiment({"dataset": "digits", "model": "vit_digits", "model_args": {"embed_dim": 32, "depth": 2,
                    "num_heads": 2}, "method": "dense",
                    "train": {"epochs": 1, "lr": 3e-3, "batch_size": 32, "device": str(accel_device)}},
                   tmp_path / "base", cache_dir=cache, progress=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(REPO / "tests" / "ddp_worker.py"),
                    str(tmp_path / "base" / "model.pt"), str(cache), str(tmp_path / "ddp")],
                   env=env, check=True, cwd=REPO, capture_output=True, timeout=300)
    r0 = json.loads((tmp_path / "ddp" / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "ddp" / "rank1.json").read_text())
    assert r0["cuts"] and r0["cuts"] == r1["cuts"]
    assert r0["final_params_checksum"] == r1["final_params_checksum"]
