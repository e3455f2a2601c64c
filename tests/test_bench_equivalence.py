"""Every optimisation the benchmarks measure computes what the unoptimised path computes.

* the hooks Fisher's batch-gradient check summed from the per-sample blocks ("fused") gives the
  same Fisher as the GEMM check, and still refuses a weight used outside its module's forward;
* per-sample blocks in the model's precision with float64 accumulation match a float64 reference
  and the loop method;
* the benchmark candidates that claim to be the same function are (rebuild vs factorised, 3-D vs
  2-D input, oneDNN packed vs ``F.linear``, the training form's S gradient vs the rebuilt W's);
* the helpers the ratios rest on (rank for a parameter fraction, the interleaved timer, the
  summary writer) do what they say.
"""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lowrank.fisher as fisher_mod
from bench.common import fraction_rank, interleaved, write_report
from bench.layer import onednn_linear
from bench.summary import write_summary
from lowrank.fisher import diagonal_fisher
from lowrank.layers import FactorizedLinear, LowRankLinear
from lowrank.utils import make_generator, set_random_state


class TokenMLP(nn.Module):
    """Two Linears over (B, T, d) tokens, a mean over tokens, a head: several positions per sample."""

    def __init__(self, d=6, h=10, c=4, outside=False):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(d, h), nn.Linear(h, d), nn.Linear(d, c)
        self.outside = outside

    def forward(self, x):
        z = self.fc2(torch.tanh(self.fc1(x)))
        if self.outside:  # fc1's weight also used directly, as weight tying would
            z = z + 0.5 * F.linear(x, self.fc1.weight)[..., : z.shape[-1]]
        return self.head(z.mean(dim=1))


def token_batches(dtype, key=0, n_batches=2, b=5, t=7, d=6, c=4):
    g = make_generator(key)
    return [(torch.randn(b, t, d, generator=g, dtype=dtype), torch.randint(0, c, (b,), generator=g))
            for _ in range(n_batches)]


def with_check(mode, fn):
    saved = fisher_mod._BATCH_GRAD_CHECK
    fisher_mod._BATCH_GRAD_CHECK = mode
    try:
        return fn()
    finally:
        fisher_mod._BATCH_GRAD_CHECK = saved


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("labels", ["empirical", "true"])
def test_fused_check_gives_the_same_fisher_as_the_gemm_check(dtype, labels):
    set_random_state(0)
    model = TokenMLP().to(dtype)
    loader = token_batches(dtype)
    run = lambda: diagonal_fisher(model, loader, ["fc1", "fc2"], labels=labels,  # noqa: E731
                                  generator=make_generator(3), dtype=dtype)
    fused, gemm, off = (with_check(m, run) for m in ("fused", "gemm", "off"))
    for name in ("fc1", "fc2"):
        assert torch.equal(fused[name], gemm[name])
        assert torch.equal(fused[name], off[name])


@pytest.mark.parametrize("mode", ["fused", "gemm"])
@pytest.mark.parametrize("tokens", [7, 1])
def test_check_still_refuses_a_weight_used_outside_its_forward(mode, tokens):
    set_random_state(0)
    model = TokenMLP(outside=True).double()
    loader = token_batches(torch.float64, t=tokens)
    with pytest.raises(RuntimeError, match="do not add up to the batch gradient"):
        with_check(mode, lambda: diagonal_fisher(model, loader, ["fc1"], dtype=torch.float64))
    assert not model.fc1._forward_hooks
    # without the outside use the same call passes
    model.outside = False
    with_check(mode, lambda: diagonal_fisher(model, loader, ["fc1"], dtype=torch.float64))


def test_float32_products_with_float64_accumulation_match_references():
    set_random_state(1)
    model = TokenMLP()
    loader = token_batches(torch.float32, key=4)
    hooks = diagonal_fisher(model, loader, ["fc1", "fc2"], dtype=torch.float64)
    loop = diagonal_fisher(model, loader, ["fc1", "fc2"], method="loop", dtype=torch.float64)
    exact = diagonal_fisher(model.double(), [(x.double(), y) for x, y in loader], ["fc1", "fc2"],
                            dtype=torch.float64)
    for name in ("fc1", "fc2"):
        assert hooks[name].dtype == torch.float64
        torch.testing.assert_close(hooks[name], exact[name], rtol=1e-5, atol=0)
        torch.testing.assert_close(hooks[name], loop[name], rtol=1e-5, atol=0)


def test_projected_and_one_position_paths_unchanged_by_the_check_mode():
    g = make_generator(5)
    u = torch.linalg.qr(torch.randn(10, 3, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(6, 2, generator=g, dtype=torch.float64))[0]
    set_random_state(2)
    model = TokenMLP().double()
    for t in (7, 1):
        loader = token_batches(torch.float64, key=6, t=t)
        run = lambda: diagonal_fisher(model, loader, ["fc1", "fc2"], project={"fc1": (u, v)},  # noqa: E731
                                      dtype=torch.float64)
        a, b = with_check("fused", run), with_check("gemm", run)
        for name in ("fc1", "fc2"):
            assert torch.equal(a[name], b[name])


# ---------------------------------------------------------------- benchmark candidates


def test_rebuild_and_3d_input_equal_the_factorized_layer():
    set_random_state(3)
    lr = LowRankLinear(12, 20, 4).double()
    fz = lr.to_factorized()
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    rebuilt = F.linear(x, lr.U @ lr.S @ lr.V.mT, lr.bias)
    torch.testing.assert_close(fz(x), rebuilt)
    torch.testing.assert_close(fz(x).reshape(15, 20), fz(x.reshape(15, 12)))


def test_training_form_gradient_equals_the_rebuilt_weight_gradient():
    set_random_state(4)
    lr = LowRankLinear(16, 24, 5).double()
    x = torch.randn(9, 16, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(9, 24, dtype=torch.float64)
    lr(x).backward(gy)
    gs, gx = lr.S.grad.clone(), x.grad.clone()
    lr.S.grad, x.grad = None, None
    F.linear(x, lr.U @ lr.S @ lr.V.mT, lr.bias).backward(gy)
    torch.testing.assert_close(gs, lr.S.grad)
    torch.testing.assert_close(gx, x.grad)


def test_onednn_packed_linear_equals_f_linear():
    set_random_state(5)
    lin = nn.Linear(32, 48)
    run = onednn_linear(lin.weight, lin.bias, rows=40)
    if run is None:
        pytest.skip("oneDNN linear kernels are not available in this build")
    x = torch.randn(40, 32)
    torch.testing.assert_close(run(x), lin(x), rtol=1e-5, atol=1e-5)
    fz = FactorizedLinear.from_linear(lin, 8)
    down, up = onednn_linear(fz.down.weight, None, 40), onednn_linear(fz.up.weight, fz.up.bias, 40)
    torch.testing.assert_close(up(down(x)), fz(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize("m,n", [(3072, 768), (384, 1536), (64, 64), (10, 3)])
@pytest.mark.parametrize("p", [0.5, 0.25, 0.1, 0.02])
@pytest.mark.parametrize("core", [False, True])
def test_fraction_rank_is_the_largest_rank_within_the_budget(m, n, p, core):
    k = fraction_rank(m, n, p, core=core)
    cost = lambda r: r * (m + n) + (r * r if core else 0)  # noqa: E731
    assert k >= 1
    assert cost(k) <= p * m * n or k == 1
    assert cost(k + 1) > p * m * n


def test_interleaved_calls_each_candidate_warmup_plus_repeats_times():
    calls = {"a": 0, "b": 0}

    def make(name):
        def f():
            calls[name] += 1
        return f
    res = interleaved({"a": make("a"), "b": make("b")}, repeats=5, warmup=2)
    assert calls == {"a": 7, "b": 7}
    assert set(res) == {"a", "b"} and all(len(v["samples_s"]) == 5 for v in res.values())
    assert all(v["min_s"] <= v["median_s"] for v in res.values())


def test_summary_writes_a_table_from_partial_reports(tmp_path):
    machine = {"cpu": "cpu", "logical_cores": 2, "cpu_capability": "AVX2", "torch": "x", "blas": "b",
               "load_average_1m": 1.0, "gpu": None, "gpu_measured": False}
    fisher = {"machine": machine, "models": {"m": {
        "batch": 4, "layers": 2, "samples_per_s": {k: 1.0 for k in ("hooks", "hooks_gemm_check", "hooks_no_check",
                                                                   "func", "loop")},
        "speedup_func_vs_loop": 1.0, "check_share_gemm": 0.2, "check_share_fused": 0.05,
        "rel_diff_vs_loop": {"hooks": 1e-7}, "met": False}}}
    write_report("fisher", fisher, tmp_path)
    path = write_summary(tmp_path, command="python -m bench --quick")
    text = path.read_text()
    assert "python -m bench --quick" in text and "| m | 4 | 2 |" in text and "**missed**" in text
    assert json.loads((tmp_path / "fisher.json").read_text())["models"]["m"]["batch"] == 4


def test_summary_names_each_files_machine_when_they_differ():
    from bench.summary import _machine_lines

    m = {"cpu": "Intel", "logical_cores": 2, "cpu_capability": "AVX512", "torch": "x", "blas": "b",
         "load_average_1m": 1.0, "gpu": None, "gpu_measured": False}
    # the load average differs between runs and is not the machine: one line
    mixed, lines = _machine_lines({"layer": {"machine": m}, "tt": {"machine": {**m, "load_average_1m": 0.2}},
                                   "models": None})
    assert not mixed and len([ln for ln in lines if ln]) == 1 and lines[0].startswith("Machine: Intel")
    mixed, lines = _machine_lines({"layer": {"machine": m}, "compression": {"machine": {**m, "cpu": "AMD EPYC"}}})
    text = "\n".join(lines)
    assert mixed and "- `layer.json`: Intel" in text and "- `compression.json`: AMD EPYC" in text
    assert _machine_lines({"layer": None}) == (False, [])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retaining_freed_memory_changes_no_result():
    code = ("import torch; from bench.common import retain_freed_memory; from lowrank.utils import make_generator; "
            "a = torch.randn(300, 200, generator=make_generator(0)); ref = a @ a.T; "
            "ok = retain_freed_memory(); big = [torch.ones(3000, 3000) for _ in range(3)]; del big; "
            "print(ok, torch.equal(a @ a.T, ref))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "True"
