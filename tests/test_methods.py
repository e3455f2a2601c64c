"""The cut rules of Algorithms 1–4 on single layers, depth schedules, and configuration validation."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, strategies as st

from lowrank.layers import LowRankLinear
from lowrank.linalg import select_rank
from lowrank.methods import build_method
from lowrank.methods.iht import IterativeHardThresholding, cut_low_rank_layer, fisher_metric_root
from lowrank.methods.trp import truncate_dense
from lowrank.schedules import layer_thresholds
from lowrank.utils import make_generator, set_random_state

from .tolerances import EPS64, factorization_rounding

#: the relative slack lowrank.linalg.select_rank grants the energy rule (so β = 1 never demands more than
#: the rounded total); mirrored so the tests check exactly what the rule guarantees
SELECT_RANK_SLACK = 1e-12


def random_low_rank_layer(m, n, key, dtype=torch.float64):
    set_random_state(key)
    lin = nn.Linear(n, m, dtype=dtype)
    layer = LowRankLinear.from_linear(lin)
    with torch.no_grad():  # a non-diagonal core, as after training steps
        layer.S.add_(0.3 * torch.randn_like(layer.S))
    return layer


def spectrum(layer):
    return torch.linalg.svdvals(layer.S.detach())


@given(m=st.integers(3, 12), n=st.integers(3, 12), key=st.integers(0, 1000), beta=st.floats(0.3, 1.0))
def test_ieht_cut_keeps_beta_energy_and_is_minimal(m, n, key, beta):
    layer = random_low_rank_layer(m, n, key)
    W_before = layer.dense_weight().detach()
    s = spectrum(layer)
    old, k = cut_low_rank_layer(layer, lambda sx: select_rank(sx, "energy", beta=beta))
    e = (s ** 2).cumsum(0)
    # s is recomputed here (svdvals) while the cut used svd: each σ differs by ≲ r·eps·σ₁ (Weyl), so each σ²
    # by 2σ·that, and a cumulative energy by ≲ 2r²·eps·σ₁² ≤ 2r²·eps·total (margin 16 on r² = 144 at most)
    r = s.numel()
    round_rel = factorization_rounding(r * r, 1.0)
    assert e[k - 1] >= beta * e[-1] * (1 - SELECT_RANK_SLACK - round_rel)
    if k > 1:  # minimal: the rule's own slack (1e-12) exceeds round_rel (≤ 5e-13), so this stays strict
        assert e[k - 2] < beta * e[-1] * (1 + round_rel)
    # the new layer is exactly the rank-k truncation of the old weight (bases rotated, not changed)
    U, S, Vh = torch.linalg.svd(W_before)
    torch.testing.assert_close(layer.dense_weight(), (U[:, :k] * S[:k]) @ Vh[:k])
    assert layer.rank == k <= old
    torch.testing.assert_close(layer.U.T @ layer.U, torch.eye(k, dtype=torch.float64))
    torch.testing.assert_close(layer.V.T @ layer.V, torch.eye(k, dtype=torch.float64))
    # S is diagonal after the rotation
    torch.testing.assert_close(layer.S, torch.diag(torch.diagonal(layer.S)))


@given(m=st.integers(3, 12), n=st.integers(3, 12), key=st.integers(0, 1000), beta=st.floats(0.01, 1.0))
def test_oialr_cut_drops_exactly_sigma_below_beta_sigma_max(m, n, key, beta):
    layer = random_low_rank_layer(m, n, key)
    s = spectrum(layer)
    _, k = cut_low_rank_layer(layer, lambda sx: select_rank(sx, "relative", beta=beta))
    assert k == max(1, int((s >= beta * s.max()).sum()))
    torch.testing.assert_close(torch.diagonal(layer.S), s[:k])


@given(m=st.integers(3, 10), n=st.integers(3, 10), key=st.integers(0, 1000), c=st.floats(1e-3, 1e3),
       beta=st.floats(0.3, 0.999))
def test_ifht_with_uniform_fisher_equals_ieht(m, n, key, c, beta):
    a = random_low_rank_layer(m, n, key)
    b = random_low_rank_layer(m, n, key)
    rule = lambda sx: select_rank(sx, "energy", beta=beta)  # noqa: E731
    cut_low_rank_layer(a, rule)
    cut_low_rank_layer(b, rule, torch.full((m,), c, dtype=torch.float64))
    assert a.rank == b.rank
    torch.testing.assert_close(a.dense_weight(), b.dense_weight())


@given(m=st.integers(3, 10), n=st.integers(3, 8), key=st.integers(0, 1000), data=st.data())
def test_ifht_cut_is_the_fisher_optimum_within_the_bases(m, n, key, data):
    """Σᵢ rᵢ‖(W − Ŵ)ᵢ‖² equals the discarded Fisher energy Σ_{j>k} σⱼ(T S)², and no other rank-k core
    in the same bases does better (random competitors and local perturbations)."""
    layer = random_low_rank_layer(m, n, key)
    U, S, V = layer.U.detach().clone(), layer.S.detach().clone(), layer.V.detach().clone()
    g = make_generator(key)
    r = torch.rand(m, generator=g, dtype=torch.float64) ** 2 * 10 + 1e-3
    W = U @ S @ V.T
    T, _ = fisher_metric_root(U, r)
    sx = torch.linalg.svdvals(T @ S)
    k = data.draw(st.integers(1, S.shape[0]))
    cut_low_rank_layer(layer, lambda s: k, r)
    err = float((r[:, None] * (W - layer.dense_weight().detach()) ** 2).sum())
    # the cut is an SVD of T S followed by T⁻¹ and an orthonormalisation: backward error max(m, n)·eps·‖T S‖,
    # amplified by κ(T) ≤ √(max r / min r) ≤ 100 when unscaling, and entering the squared error as
    # 2‖T S‖·δ: bound ∝ eps·κ(T)·‖T S‖_F², margin 16
    tol = factorization_rounding(max(m, n), float(torch.linalg.cond(T)) * float((sx ** 2).sum()))
    assert err == pytest.approx(float((sx[k:] ** 2).sum()), abs=tol)
    # rank-k competitors near the optimum, in the same bases: perturb the factors of Ŝ* = P Q
    S_opt = U.T @ layer.dense_weight().detach() @ V
    Pu, Ps, Pvh = torch.linalg.svd(S_opt)
    P, Q = Pu[:, :k] * Ps[:k], Pvh[:k]
    for _ in range(5):
        P2 = P + 1e-3 * torch.randn(P.shape, generator=g, dtype=torch.float64)
        Q2 = Q + 1e-3 * torch.randn(Q.shape, generator=g, dtype=torch.float64)
        assert float((r[:, None] * (W - U @ (P2 @ Q2) @ V.T) ** 2).sum()) >= err - 2 * tol  # both rounded as above


@given(m=st.integers(3, 12), n=st.integers(3, 12), key=st.integers(0, 1000), beta=st.floats(0.3, 1.0),
       weighted=st.booleans())
def test_trp_truncation_has_the_declared_rank(m, n, key, beta, weighted):
    set_random_state(key)
    W = torch.randn(m, n, dtype=torch.float64)
    r = torch.rand(m, dtype=torch.float64) + 0.1 if weighted else None
    W_k, G, k = truncate_dense(W, beta, 1, r)
    # products U_k S_k V_kᵀ carry trailing singular values ≲ max(m, n)·eps·σ₁ (margin 16); the kept σ_k of
    # an energy cut of a Gaussian matrix is many orders above that
    rank_rtol = factorization_rounding(max(m, n), 1.0)
    assert torch.linalg.matrix_rank(W_k, rtol=rank_rtol).item() == k
    assert torch.linalg.matrix_rank(G, rtol=rank_rtol).item() == k
    # G = U_k V_kᵀ has unit singular values: a nuclear-norm sub-gradient
    torch.testing.assert_close(torch.linalg.svdvals(G)[:k], torch.ones(k, dtype=torch.float64))
    s = torch.linalg.svdvals(W if r is None else torch.sqrt(r + 1e-8 * r.mean())[:, None] * W)
    assert k == select_rank(s, "energy", beta=beta)


@given(L=st.integers(2, 24), beta=st.floats(0.5, 0.999), rule=st.sampled_from(["energy", "relative"]))
def test_depth_schedules_redistribute_the_same_budget(L, beta, rule):
    names = [f"blocks.{i}.mlp.fc1" for i in range(L)]
    const = layer_thresholds(names, beta, "constant", rule)
    inc = layer_thresholds(names, beta, "increasing", rule)
    dec = layer_thresholds(names, beta, "decreasing", rule)
    err = ((lambda d: np.array([1 - d[n] for n in names])) if rule == "energy"
           else (lambda d: np.array([d[n] for n in names])))
    e_c, e_i, e_d = err(const), err(inc), err(dec)
    # increasing: later layers tolerate more error; decreasing: the reverse
    # e = 1 − (1 − (1 − β)·scale) or β·scale: O(1) values (≤ 1.5) from ≤ 4 rounded operations each; the
    # difference of two is off by ≲ 2·4·eps·1.5, margin 2 → 24 eps. Distinct depths differ by ≥ 4e-5.
    mono = 24 * EPS64
    assert (np.diff(e_i) >= -mono).all() and (np.diff(e_d) <= mono).all() and e_i[-1] > e_i[0]
    tolerated = 1 - beta if rule == "energy" else beta
    if 1.5 * tolerated < 1:  # no layer's threshold was clipped to (0, 1]: the mean error is preserved
        assert e_i.mean() == pytest.approx(e_c.mean()) and e_d.mean() == pytest.approx(e_c.mean())


def test_global_rule_keeps_beta_of_the_total_energy_across_layers():
    method = build_method("global_ieht", {"oialr_threshold": 0.9, "oialr_min_rank_percent": 0.01})
    layers = {f"blocks.{i}.fc": random_low_rank_layer(20, 20, i) for i in range(3)}
    with torch.no_grad():  # very different scales across layers, as the paper notes for real networks
        for i, l in enumerate(layers.values()):
            l.S.mul_(10.0 ** i)
    spectra = {n: spectrum(l) for n, l in layers.items()}
    ranks = method._global_ranks(layers, {n: None for n in layers})
    total = sum(float((s ** 2).sum()) for s in spectra.values())
    kept = sum(float((spectra[n][:k] ** 2).sum()) for n, k in ranks.items())
    assert kept >= 0.9 * total
    # the small-scale layer is cut hardest: the global rule creates bottlenecks (the paper's Appendix D)
    assert ranks["blocks.0.fc"] < ranks["blocks.2.fc"]


@pytest.mark.parametrize("name,cfg,match", [
    ("ieht", {"oialr_threshold": 1.5}, r"oialr_threshold=1.5 is outside the allowed range \(0, 1\]"),
    ("ieht", {"oialr_threshold": 0.0}, r"oialr_threshold=0.0 is outside"),
    ("oialr", {"oialr_frequency": 0}, "oialr_frequency=0 must be a positive int"),
    ("ieht", {"oialr_type": "batch"}, "oialr_type='batch'; allowed: step, epoch"),
    ("ieht", {"oialr_min_rank_percent": 0}, "oialr_min_rank_percent=0 is outside"),
    ("ieht", {"oialr_depth_schedule": "zigzag"}, "oialr_depth_schedule='zigzag'"),
    ("global_ifht", {"oialr_depth_schedule": "increasing"}, r"does not use keys \['oialr_depth_schedule'\]"),
    ("trp", {"trp_frequency": -5}, "trp_frequency=-5 must be a positive int"),
    ("trp", {"trp_threshold": 2}, "trp_threshold=2 is outside"),
    ("svd", {"rank": 0}, "rank=0 must be a positive int"),
    ("svd", {"rank": 4, "train": "everything"}, "train='everything'"),
    ("ieht", {"oialr_treshold": 0.9}, r"unknown config keys \['oialr_treshold'\]"),
    ("iehtt", {}, "method='iehtt' is not a known method"),
])
def test_bad_method_configs_are_refused(name, cfg, match):
    with pytest.raises(ValueError, match=match):
        build_method(name, cfg)


def test_min_rank_and_cap_are_respected():
    m = IterativeHardThresholding("ieht", {"oialr_threshold": 0.01, "oialr_min_rank_percent": 0.25,
                                           "max_cut_fraction": 0.5})
    layer = random_low_rank_layer(16, 16, 0)
    assert m._min_rank(layer) == 4
    k = select_rank(spectrum(layer), "energy", beta=0.01, min_rank=m._min_rank(layer))
    assert k == 4
    assert m._cap(layer, k) == 8  # may remove at most half of the 16
