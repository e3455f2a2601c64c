"""Tensor-train matrices: TT-SVD (TTM [61], Oseledets 2011), FWTTM [63] by ALS, TTLinear, TT surgery and methods."""
import json
import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

from lowrank.data import calibration_subset, get_dataset
from lowrank.experiment import load_base, run_experiment, validate_spec
from lowrank.layers import TTLinear
from lowrank.methods import build_method
from lowrank.models import build_model
from lowrank.surgery import compress_model_tt, count_parameters, find_linear_layers
from lowrank.train import Trainer, module_structure
from lowrank.tt import (TTShape, _update_core, factorize_dim, matrix_to_tt_tensor, max_tt_ranks, row_weighted_tt,
                        tt_num_params, tt_ranks_for, tt_shape_for, tt_svd, tt_to_matrix)
from lowrank.utils import make_generator, set_random_state

from .tolerances import factorization_rounding, sum_rounding

F64 = torch.float64


def tt_rounding(W: torch.Tensor, shape: TTShape) -> float:
    """Absolute rounding of a TT-SVD and of rebuilding the matrix from its cores: d − 1 backward-stable SVDs
    of unfoldings no larger than W (max(out, in)·eps·‖W‖ each) and d − 1 core products; margin 16."""
    return factorization_rounding(shape.d * max(W.shape), float(W.norm()))


@st.composite
def tt_shapes(draw, d_min=1, d_max=3, size_max=4):
    d = draw(st.integers(d_min, d_max))
    om = tuple(draw(st.integers(1, size_max)) for _ in range(d))
    im = tuple(draw(st.integers(1, size_max)) for _ in range(d))
    return TTShape(om, im)


def randn(*shape, key=0, dtype=F64):
    return torch.randn(*shape, generator=make_generator(key), dtype=dtype)


def row_weighted_error(W, W_hat, w):
    return float((w[:, None] * (W - W_hat) ** 2).sum())


# ------------------------------------------------------------------------------------------ TT-SVD
@given(shape=tt_shapes(), key=st.integers(0, 10_000))
def test_tt_svd_is_exact_at_full_rank(shape, key):
    W = randn(shape.out_features, shape.in_features, key=key)
    dec = tt_svd(W, shape)
    assert dec.ranks == max_tt_ranks(shape)
    torch.testing.assert_close(dec.matrix(), W)
    # at full rank nothing is discarded: the bound is the norm of empty tails, exactly 0 on any CPU
    assert dec.error_bound == 0.0


@given(shape=tt_shapes(d_min=2), key=st.integers(0, 10_000), data=st.data())
def test_tt_svd_error_is_the_discarded_tail_and_obeys_theorem_2_2(shape, key, data):
    W = randn(shape.out_features, shape.in_features, key=key)
    caps = [data.draw(st.integers(1, r)) for r in max_tt_ranks(shape)]
    dec = tt_svd(W, shape, max_rank=caps)
    err2 = float(((W - dec.matrix()) ** 2).sum())
    tol = tt_rounding(W, shape)  # absolute: the tail is 0 at full rank, and rounding is ∝ eps·‖W‖, not the tail
    assert math.sqrt(err2) == pytest.approx(dec.error_bound, abs=tol)
    # Oseledets (2011) Theorem 2.2, with ε_k the best rank-r_k error of the k-th unfolding of W,
    # computed here independently of tt_svd
    T, sizes = matrix_to_tt_tensor(W, shape), shape.mode_sizes
    bound = 0.0
    for k, r in enumerate(dec.ranks, start=1):
        s = torch.linalg.svdvals(T.reshape(math.prod(sizes[:k]), -1))
        bound += float((s[r:] ** 2).sum())
    # squared norms: δ enters as 2‖W‖·δ; for d = 2 the theorem is an equality, so only rounding separates them
    assert err2 <= bound + 2 * float(W.norm()) * tol
    assert dec.num_params == tt_num_params(shape, dec.ranks) == sum(c.numel() for c in dec.cores)


@given(shape=tt_shapes(), key=st.integers(0, 10_000), rel_eps=st.floats(0.0, 0.99))
def test_tt_svd_rel_eps_meets_the_tolerance(shape, key, rel_eps):
    W = randn(shape.out_features, shape.in_features, key=key)
    dec = tt_svd(W, shape, rel_eps=rel_eps)
    # exact arithmetic guarantees ≤ rel_eps·‖W‖; the computed train adds the TT-SVD/rebuild rounding (absolute,
    # the whole error at rel_eps = 0)
    assert float((W - dec.matrix()).norm()) <= rel_eps * float(W.norm()) + tt_rounding(W, shape)


@settings(max_examples=15)
@given(shape=tt_shapes(d_min=2), key=st.integers(0, 10_000), data=st.data())
def test_tt_svd_matches_tensorly(shape, key, data):
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import tensor_train_matrix
    W = randn(shape.out_features, shape.in_features, key=key)
    caps = tt_ranks_for(shape, [data.draw(st.integers(1, r)) for r in max_tt_ranks(shape)])
    ours = tt_svd(W, shape, max_rank=list(caps))
    with tl.backend_context("pytorch"):
        theirs = tl.tt_matrix_to_matrix(tensor_train_matrix(W.reshape(*shape.out_modes, *shape.in_modes),
                                                            (1, *caps, 1)))
    # two TT-SVDs at the same ranks: each error is off by the TT-SVD rounding (Gaussian W: no near-degenerate
    # singular values at a cut, which would make the kept subspaces, and for d ≥ 3 the error, ambiguous)
    assert float((W - ours.matrix()).norm()) == pytest.approx(float((W - theirs).norm()), abs=2 * tt_rounding(W, shape))


@given(shape=tt_shapes(), data=st.data())
def test_tt_ranks_for_are_feasible_and_are_what_tt_svd_returns(shape, data):
    caps = [data.draw(st.integers(1, 20)) for _ in range(shape.d - 1)]
    ranks = tt_ranks_for(shape, caps)
    r, s = (1, *ranks, 1), shape.mode_sizes
    for k in range(1, shape.d):
        assert 1 <= r[k] <= min(caps[k - 1], max_tt_ranks(shape)[k - 1], r[k - 1] * s[k - 1], r[k + 1] * s[k])
    W = randn(shape.out_features, shape.in_features)
    assert tt_svd(W, shape, max_rank=list(ranks) or None).ranks == ranks


@given(n=st.integers(1, 5000), d=st.integers(1, 5))
def test_factorize_dim_multiplies_back_and_is_balanced(n, d):
    f = factorize_dim(n, d)
    assert len(f) == d and math.prod(f) == n and list(f) == sorted(f, reverse=True)
    largest_prime = max([p for p in range(2, n + 1) if n % p == 0 and all(p % q for q in range(2, int(p ** 0.5) + 1))],
                        default=1)
    assert f[0] <= largest_prime * f[-1]
    assert factorize_dim(768, 3) == (12, 8, 8) and factorize_dim(64, 3) == (4, 4, 4)


@pytest.mark.parametrize("call,match", [
    (lambda: factorize_dim(0, 3), "n=0 must be a positive int"),
    (lambda: factorize_dim(12, 0), "d=0 must be a positive int"),
    (lambda: factorize_dim(True, 2), "n=True"),
    (lambda: TTShape((2, 2), (3,)), "must be non-empty and of equal length"),
    (lambda: TTShape((2, 0), (3, 1)), "out_modes=.* must be positive ints"),
    (lambda: tt_svd(randn(4, 6), TTShape((2, 2), (3, 2)), max_rank=0), "max_rank=0"),
    (lambda: tt_svd(randn(4, 6), TTShape((2, 2), (3, 2)), max_rank=[2, 2]), "must have d - 1 = 1 entries"),
    (lambda: tt_svd(randn(4, 6), TTShape((2, 2), (3, 2)), rel_eps=1.5), r"rel_eps=1.5 must be a number in \[0, 1\)"),
    (lambda: tt_svd(randn(4, 5), TTShape((2, 2), (3, 2))), r"does not match"),
    (lambda: tt_svd(torch.full((4, 6), float("nan")), TTShape((2, 2), (3, 2))), "non-finite"),
    (lambda: tt_to_matrix([randn(2, 2, 2, 1)]), "boundary ranks must be 1"),
    (lambda: tt_num_params(TTShape((2, 2), (3, 2)), [1, 2]), "must have length d - 1 = 1"),
])
def test_bad_tt_inputs_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------------------ TTLinear
@settings(max_examples=20)
@given(shape=tt_shapes(), bias=st.booleans(), key=st.integers(0, 10_000), rows=st.integers(1, 5))
def test_tt_linear_at_full_rank_equals_the_dense_layer(shape, bias, key, rows):
    set_random_state(key)
    lin = nn.Linear(shape.in_features, shape.out_features, bias=bias, dtype=F64)
    tt = TTLinear.from_linear(lin, shape)
    x = randn(rows, 3, shape.in_features, key=key + 1)
    torch.testing.assert_close(tt(x), lin(x))
    assert (sum(p.numel() for p in tt.parameters())
            == tt_num_params(shape, tt.ranks) + (shape.out_features if bias else 0))
    back = tt.to_linear()
    torch.testing.assert_close(back.weight, lin.weight)
    if bias:
        torch.testing.assert_close(back.bias, lin.bias)


@settings(max_examples=30)
@given(shape=tt_shapes(d_min=2), key=st.integers(0, 10_000), cap=st.integers(1, 3),
       mode=st.sampled_from(["cores", "dense", "auto"]))
def test_tt_linear_forward_applies_the_cores_at_any_rank(shape, key, cap, mode):
    set_random_state(key)
    lin = nn.Linear(shape.in_features, shape.out_features, dtype=F64)
    tt = TTLinear.from_linear(lin, shape, max_rank=cap)
    tt.mode = mode
    assert tt.ranks == tt_ranks_for(shape, cap) and tt.rank == max(tt.ranks)
    x = randn(2, 5, shape.in_features, key=key + 1)
    W_tt = tt_to_matrix(list(tt.cores)).detach()
    torch.testing.assert_close(tt(x), x @ W_tt.T + tt.bias)
    # gradients reach every core and equal those of the dense formula
    g = randn(2, 5, shape.out_features, key=key + 2)
    (tt(x) * g).sum().backward()
    ref = [c.detach().clone().requires_grad_(True) for c in tt.cores]
    (((x @ tt_to_matrix(ref).T) * g).sum()).backward()
    for c, r in zip(tt.cores, ref):
        torch.testing.assert_close(c.grad, r.grad)


def test_tt_linear_forward_never_forms_the_dense_matrix(monkeypatch):
    import lowrank.layers as layers_mod
    tt = TTLinear.from_linear(nn.Linear(36, 24, dtype=F64), 3, max_rank=2)
    tt.mode = "cores"
    x = randn(4, 36)
    expected = x @ tt.dense_weight().detach().T + tt.bias

    def boom(*a, **k):
        raise AssertionError("forward built the dense matrix")

    monkeypatch.setattr(layers_mod, "tt_to_matrix", boom)
    torch.testing.assert_close(tt(x), expected)
    assert "ranks=(2, 2)" in repr(tt) and "out_modes=(4, 3, 2)" in repr(tt)


def test_tt_linear_auto_mode_follows_the_multiply_add_counts():
    """The dense path's count is exact and 'auto' picks the core path only when it needs under
    1/CORES_ADVANTAGE of the dense path's multiply-adds."""
    small = TTLinear(tt_shape_for(192, 64, 3), (4, 4))         # a digits-ViT qkv layer at bond rank 4
    cores, dense = small.contraction_costs(1088)
    assert dense == 1088 * 192 * 64 + sum(  # forming W: left-to-right partial products
        math.prod(small.shape.out_modes[:k + 1]) * math.prod(small.shape.in_modes[:k + 1])
        * (1, 4, 4, 1)[k] * (1, 4, 4, 1)[k + 1] for k in range(1, 3))
    assert TTLinear.CORES_ADVANTAGE * cores > dense
    big = TTLinear(tt_shape_for(4096, 4096, 3), (2, 2))
    c2, d2 = big.contraction_costs(512)
    assert TTLinear.CORES_ADVANTAGE * c2 < d2
    calls = []
    import lowrank.layers as layers_mod
    real = layers_mod.tt_to_matrix
    layers_mod.tt_to_matrix = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        small(torch.randn(1088, 64))
        assert calls == [1]                                    # dense path: W formed once
        big(torch.randn(512, 4096))
        assert calls == [1]                                    # cores path: never formed
    finally:
        layers_mod.tt_to_matrix = real
    small.mode = "sideways"
    with pytest.raises(ValueError, match="mode"):
        small(torch.randn(2, 64))


def test_tt_linear_shells_and_bad_arguments():
    shape = tt_shape_for(128, 32, 3)
    layer = TTLinear(shape, (4, 4))
    assert layer.weight.shape == (128, 32)
    # the random init has nn.Linear's weight scale (variance 1/(3·in)) within sampling error
    assert 0.5 < float(layer.weight.detach().var()) * 3 * 32 < 2.0
    with pytest.raises(ValueError, match=r"ranks=\(4,\) must be 2 positive ints"):
        TTLinear(shape, (4,))
    with pytest.raises(ValueError, match="must be a TTShape or a positive number of cores"):
        TTLinear.from_linear(nn.Linear(32, 128), 0)
    with pytest.raises(ValueError, match="expected nn.Linear"):
        TTLinear.from_linear(layer, 3)


# ------------------------------------------------------------------------------------------ FWTTM
@settings(max_examples=25)
@given(shape=tt_shapes(d_min=2, size_max=3), key=st.integers(0, 10_000), cap=st.integers(1, 4),
       zeros=st.booleans(), eps=st.sampled_from([0.0, 1e-8]))
def test_fwttm_objective_never_increases_and_beats_ttm(shape, key, cap, zeros, eps):
    g = make_generator(key)
    W = torch.randn(shape.out_features, shape.in_features, generator=g, dtype=F64)
    w = torch.rand(shape.out_features, generator=g, dtype=F64) ** 3 * 10
    if zeros:  # rows with exactly zero weight (singular normal matrices when eps = 0)
        w[::2] = 0
        w[-1] = 1.0
    res = row_weighted_tt(W, shape, w, cap, sweeps=8, eps=eps, tol=0.0)
    h = res.history
    w_used = w + eps * w.mean()
    # Each objective is a sum of out·in non-negative terms w̃ᵢ(W − TT)ᵢⱼ², and its residual is rounded
    # relative to |W| and |TT|; the exact block updates are second-order insensitive to their solves'
    # rounding. So each value is off by ≲ out·in·eps·Σ w̃ W² (the objective's scale: its value at TT = 0), margin 4.
    tol = sum_rounding(W.numel(), float((w_used[:, None] * W ** 2).sum()))
    assert all(b <= a + tol for a, b in zip(h, h[1:])), h
    ttm = tt_svd(W, shape, max_rank=list(res.ranks) or None)
    assert h[0] == pytest.approx(row_weighted_error(W, ttm.matrix(), w_used), abs=tol)
    got = row_weighted_error(W, res.matrix(), w_used)
    assert got == pytest.approx(min(h), abs=tol)
    assert got <= h[0] + tol
    assert res.ranks == ttm.ranks == tt_ranks_for(shape, cap)


@pytest.mark.parametrize("out_modes, in_modes, key, cap", [((2, 2, 2), (1, 1, 2), 4773, 3),
                                                         ((3, 3, 2), (2, 2, 3), 3559, 4)])
def test_fwttm_stays_monotone_where_cholesky_passes_a_singular_normal_matrix(out_modes, in_modes, key, cap):
    # Zero row weights and eps = 0 make some normal matrices singular; on these draws Cholesky did not
    # flag them (a pivot of rounding size) and the objective rose by O(1) (0.0163 -> 0.560) before
    # _psd_solve also tested the pivots.
    shape = TTShape(out_modes, in_modes)
    g = make_generator(key)
    W = torch.randn(shape.out_features, shape.in_features, generator=g, dtype=F64)
    w = torch.rand(shape.out_features, generator=g, dtype=F64) ** 3 * 10
    w[::2] = 0
    w[-1] = 1.0
    h = row_weighted_tt(W, shape, w, cap, sweeps=8, eps=0.0, tol=0.0).history
    tol = sum_rounding(W.numel(), float((w[:, None] * W ** 2).sum()))   # as in the test above
    assert all(b <= a + tol for a, b in zip(h, h[1:])), h


def test_fwttm_core_update_is_the_exact_weighted_least_squares_block_optimum():
    shape = TTShape((3, 2, 2), (2, 3, 2))
    W = randn(shape.out_features, shape.in_features, key=3)
    w = torch.rand(shape.out_features, generator=make_generator(4), dtype=F64) + 0.1
    cores = [c.clone() for c in tt_svd(W, shape, max_rank=2).cores]
    for k in range(shape.d):
        # reference: the TT matrix is linear in core k; build that map and solve the weighted problem
        def tt_of(ck, k=k):
            return tt_to_matrix([ck if i == k else c for i, c in enumerate(cores)])
        J = torch.autograd.functional.jacobian(tt_of, cores[k]).reshape(W.numel(), -1)
        sw = w.sqrt()[:, None].expand_as(W).reshape(-1, 1)
        sol = torch.linalg.lstsq(sw * J, (sw[:, 0] * W.reshape(-1))[:, None]).solution
        trial = list(cores)
        _update_core(W, trial, shape, w, k)
        # _update_core solves the normal equations (Cholesky): forward error ≲ size·eps·κ(√w·J)²·‖x‖; lstsq
        # (QR) is better conditioned, so this bounds the difference (margin 16)
        tol = factorization_rounding(J.shape[0], float(torch.linalg.cond(sw * J)) ** 2 * float(sol.abs().max()))
        torch.testing.assert_close(trial[k].reshape(-1), sol[:, 0], rtol=0, atol=tol)


@settings(max_examples=15)
@given(shape=tt_shapes(d_min=2, size_max=3), key=st.integers(0, 10_000), cap=st.integers(1, 3),
       c=st.floats(0.01, 100.0))
def test_fwttm_with_uniform_weights_is_no_worse_than_tt_svd(shape, key, cap, c):
    W = randn(shape.out_features, shape.in_features, key=key)
    res = row_weighted_tt(W, shape, torch.full((shape.out_features,), c, dtype=F64), cap, sweeps=4)
    base = tt_svd(W, shape, max_rank=list(res.ranks) or None)
    # the best iterate is returned, so c‖W − res‖² ≤ c‖W − base‖² as the library summed it; this norm sums
    # the same out·in squares in another order (relative out·in·eps, margin 4), and the residuals themselves
    # carry the rebuild rounding (absolute, all there is at full rank)
    assert float((W - res.matrix()).norm()) <= (float((W - base.matrix()).norm()) * (1 + sum_rounding(W.numel(), 1.0))
                                                 + tt_rounding(W, shape))


def test_fwttm_reconstructs_heavily_weighted_rows_better_than_ttm():
    shape = TTShape((4, 3, 2), (3, 4, 2))
    W = randn(shape.out_features, shape.in_features, key=11)
    heavy = torch.tensor([1, 7, 18])
    w = torch.full((shape.out_features,), 1e-3, dtype=F64)
    w[heavy] = 1.0
    res = row_weighted_tt(W, shape, w, 3, sweeps=15)
    ttm = tt_svd(W, shape, max_rank=list(res.ranks))
    err_fw = float(((W - res.matrix())[heavy] ** 2).sum())
    err_tt = float(((W - ttm.matrix())[heavy] ** 2).sum())
    assert err_fw < 0.5 * err_tt
    assert res.history[-1] < res.history[0]
    # float32 in, float32 out (float64 inside)
    res32 = row_weighted_tt(W.float(), shape, w.float(), 3, sweeps=2)
    assert all(c.dtype == torch.float32 for c in res32.cores)


@pytest.mark.parametrize("kwargs,match", [
    ({"weights": -torch.ones(6, dtype=F64)}, "negative entries"),
    ({"weights": torch.ones(5, dtype=F64)}, r"row weights has shape \(5,\), expected \(6,\)"),
    ({"weights": torch.zeros(6, dtype=F64)}, "row weights are all zero"),
    ({"sweeps": -1}, "sweeps=-1 must be an int ≥ 0"),
    ({"eps": float("nan")}, "eps=nan must be a finite number ≥ 0"),
    ({"tol": -1.0}, "tol=-1.0 must be a finite number ≥ 0"),
    ({"max_rank": 0}, "max_rank=0"),
    ({"shape": (2, 3)}, "must be a TTShape"),
])
def test_bad_fwttm_inputs_are_refused(kwargs, match):
    args = {"W": randn(6, 4), "shape": TTShape((3, 2), (2, 2)), "weights": torch.ones(6, dtype=F64), "max_rank": 2,
            **kwargs}
    W, shape, weights, max_rank = args.pop("W"), args.pop("shape"), args.pop("weights"), args.pop("max_rank")
    with pytest.raises(ValueError, match=match):
        row_weighted_tt(W, shape, weights, max_rank, **args)


# ------------------------------------------------------------------------------------------ surgery
def mlp(key=0):
    set_random_state(key)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4), nn.Linear(4, 4))


@pytest.mark.parametrize("method", ["ttm", "fwttm"])
def test_compress_model_tt_swaps_layers_and_counts_honestly(method):
    model = mlp()
    x = torch.randn(8, 32, generator=make_generator(1))
    names = ["0", "2", "5"]
    fisher = {n: torch.rand(model.get_submodule(n).weight.shape, generator=make_generator(2)) for n in names}
    rep = compress_model_tt(model, names, method=method, cores=2, max_rank=3,
                            fisher=fisher if method == "fwttm" else None, sweeps=3)
    assert set(rep.ranks) == {"0", "2"} and "5" in rep.skipped  # 4×4: no train of rank 3 pays
    assert isinstance(model[0], TTLinear) and isinstance(model[2], TTLinear) and isinstance(model[5], nn.Linear)
    assert rep.after.target < rep.before.target
    assert rep.after.target == (model[0].num_core_params + 64) + (model[2].num_core_params + 32) + (16 + 4)
    assert model(x).shape == (8, 4)
    # TT layers are found as factorised layers, and are not dense targets any more
    assert set(find_linear_layers(model, ["0", "2", "5"], include_factorized=True)) == {"0", "2", "5"}
    assert set(find_linear_layers(model, ["0", "2", "5"])) == {"5"}
    forced = mlp()
    rep2 = compress_model_tt(forced, ["5"], max_rank=3, force=True)
    assert isinstance(forced[5], TTLinear) and not rep2.skipped


def test_compress_model_tt_validates_every_layer_before_changing_any():
    model = mlp()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher = {"0": torch.rand(64, 32), "2": -torch.ones(32, 64)}
    with pytest.raises(ValueError, match="2: fisher has 2048 negative entries"):
        compress_model_tt(model, ["0", "2"], method="fwttm", max_rank=2, fisher=fisher)
    with pytest.raises(ValueError, match=r"2: method='fwttm' needs a Fisher tensor"):
        compress_model_tt(model, ["0", "2"], method="fwttm", max_rank=2, fisher={"0": fisher["0"]})
    with pytest.raises(ValueError, match="method='tt' is not a tensor-train method"):
        compress_model_tt(model, ["0"], method="tt", max_rank=2)
    with pytest.raises(ValueError, match="max_rank is required"):
        compress_model_tt(model, ["0"])
    with pytest.raises(ValueError, match="cores=0 must be a positive int"):
        compress_model_tt(model, ["0"], cores=0, max_rank=2)
    with pytest.raises(ValueError, match="must be a TTShape with out = 32, in = 64"):
        compress_model_tt(model, ["0", "2"], cores={"0": tt_shape_for(64, 32, 2), "2": tt_shape_for(64, 32, 2)},
                          max_rank=2)
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2]))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


# ------------------------------------------------------------------------------------------ methods
TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    tr = get_dataset("digits", "train", cache_dir=cache)
    te = get_dataset("digits", "test", cache_dir=cache)
    return cache, calibration_subset(tr, 192), calibration_subset(te, 128)


def tiny_trainer(method, args, digits, out=None):
    _, tr, te = digits
    model = build_model("vit_digits", num_classes=10, **TINY)
    cfg = {"epochs": 1, "lr": 1e-3, "batch_size": 64, "eval_batch_size": 128, "threads": 1}
    return Trainer(model, build_method(method, args), tr, te, cfg, targets="blocks.*",
                   calib_set=calibration_subset(tr, 32), out_dir=out, progress=False)


@pytest.mark.parametrize("method", ["ttm", "fwttm"])
def test_tt_methods_compress_train_and_resume(method, digits, tmp_path):
    t = tiny_trainer(method, {"tt_rank": 4, "tt_cores": 3, **({"fwttm_sweeps": 2} if method == "fwttm" else {})},
                     digits, out=tmp_path)
    names = list(t.target_names)
    dense_before = {n: t.model.get_submodule(n).weight.detach().clone() for n in names}
    final = t.fit()
    layers = {n: t.model.get_submodule(n) for n in names}
    assert all(isinstance(m, TTLinear) for m in layers.values()), t.method.skipped
    assert all(m.rank == 4 for m in layers.values()) and final["ranks"] == {n: 4 for n in names}
    assert final["params_target"] < t.original.target
    assert final["params_target_compiled"] == count_parameters(t.model, names).target
    assert [r["kind"] for r in t.log] == ["start", "epoch", "final"]
    assert 0.0 <= final["accuracy"] <= 1.0 and math.isfinite(final["eval_loss"])
    # the cores trained: the weights moved away from the one-shot projection
    proj = t.method.trajectory[0]
    assert proj["event"] == "project" and proj["tt_ranks"][names[0]] == [4, 4]
    assert any(not torch.allclose(layers[n].weight, dense_before[n]) for n in names)
    # a fresh trainer resumes from the checkpoint: same structure, same weights, same evaluation
    t2 = tiny_trainer(method, {"tt_rank": 4, "tt_cores": 3, **({"fwttm_sweeps": 2} if method == "fwttm" else {})},
                      digits, out=tmp_path)
    assert t2.load_checkpoint()
    assert module_structure(t2.model) == module_structure(t.model)
    for (n1, p1), (n2, p2) in zip(t.model.state_dict().items(), t2.model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert t2.evaluate().loss == pytest.approx(t.evaluate().loss, rel=1e-6)


def test_ttm_runs_from_a_spec_and_the_saved_model_reloads(digits, tmp_path):
    cache, _, _ = digits
    spec = {"dataset": "digits", "model": "vit_digits", "model_args": TINY, "method": "ttm",
            "method_args": {"tt_rank": 4}, "calibration_samples": 16,
            "train": {"epochs": 0, "eval_batch_size": 512, "threads": 1}}
    final = run_experiment(spec, tmp_path, cache_dir=cache, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["compression_ratio_target"] < 1 and metrics["method"] == "ttm"
    reloaded = build_model("vit_digits", num_classes=10, **TINY)
    load_base(reloaded, tmp_path / "model.pt")
    assert isinstance(reloaded.get_submodule("blocks.0.mlp.fc1"), TTLinear)
    assert final["ranks"]["blocks.0.mlp.fc1"] == 4


@pytest.mark.parametrize("name,cfg,match", [
    ("ttm", {"tt_rank": 0}, "tt_rank=0 must be a positive int"),
    ("ttm", {}, "tt_rank=None must be a positive int"),
    ("fwttm", {"tt_rank": 4, "tt_cores": 0}, "tt_cores=0 must be a positive int"),
    ("fwttm", {"tt_rank": 4, "fwttm_sweeps": 1.5}, "fwttm_sweeps=1.5 must be a positive int"),
    ("fwttm", {"tt_rank": 4, "fisher_labels": "model"}, "fisher_labels='model'"),
    ("ttm", {"tt_rank": 4, "rank": 4}, r"unknown config keys \['rank'\]"),
])
def test_bad_tt_method_configs_are_refused_before_any_work(name, cfg, match):
    with pytest.raises(ValueError, match=match):
        build_method(name, cfg)
    with pytest.raises(ValueError, match=match):
        validate_spec({"method": name, "method_args": cfg})
