"""tenBCD (companion paper arXiv 2303.06815, Algorithm 1): exact block updates, sufficient decrease,
the O(1/k) rate, compression-ratio bookkeeping, and the experiment runner end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

import tenbcd as tb
from study.tenbcd import SLACK_TOLERANCE
from lowrank.tt import TTShape, tt_to_matrix
from lowrank.utils import make_generator, set_random_state

from .tolerances import EPS64, factorization_rounding, sum_rounding

F64 = torch.float64


def _problem(widths=(8, 12, 8, 4), n=20, key=0):
    """A tiny classification problem with columns as samples."""
    gen = make_generator(key)
    X = torch.randn(widths[0], n, generator=gen, dtype=F64)
    y = torch.randint(0, widths[-1], (n,), generator=gen)
    Y = torch.nn.functional.one_hot(y, widths[-1]).to(F64).mT
    return X, Y, y


def _phi(W, U, V, G, X, Y, cfg, shapes):
    """Φ written out again, independently of the module, as a differentiable function."""
    n, N = X.shape[1], len(W)
    val = 0.5 * ((V[-1] - Y) ** 2).sum() / n
    for i in range(N):
        act = U[i] if i == N - 1 else torch.relu(U[i])
        v_in = X if i == 0 else V[i - 1]
        val = val + 0.5 * cfg.gamma * ((V[i] - act) ** 2).sum() / n
        val = val + 0.5 * cfg.rho_ * ((U[i] - W[i] @ v_in) ** 2).sum() / n
        if G is not None:
            val = val + 0.5 * cfg.tau * ((W[i] - tt_to_matrix(G[i], shapes[i])) ** 2).sum()
        val = val + 0.5 * cfg.weight_decay * (W[i] ** 2).sum()
    return val


def _phi_magnitude(W, U, V, G, X, Y, cfg, shapes):
    """Φ with every residual a − b replaced by |a| + |b| and every product by the product of absolute values
    (|W|·|v|, the train of |cores|): the size the rounding of Φ's residuals is relative to. Its gradient, taken
    at |blocks|, bounds entrywise the absolute terms that cancel in ∇Φ."""
    n, N = X.shape[1], len(W)
    val = 0.5 * ((V[-1].abs() + Y.abs()) ** 2).sum() / n
    for i in range(N):
        v_in = X.abs() if i == 0 else V[i - 1].abs()
        val = val + 0.5 * cfg.gamma * ((V[i].abs() + U[i].abs()) ** 2).sum() / n
        val = val + 0.5 * cfg.rho_ * ((U[i].abs() + W[i].abs() @ v_in) ** 2).sum() / n
        if G is not None:
            val = val + 0.5 * cfg.tau * ((W[i].abs() + tt_to_matrix([c.abs() for c in G[i]], shapes[i])) ** 2).sum()
        val = val + 0.5 * cfg.weight_decay * (W[i] ** 2).sum()
    return val


def _state_magnitude(s, cfg) -> float:
    return float(_phi_magnitude(s.W, s.U, s.V, s.G, s.X, s.Y, cfg, s.shapes))


def _sizes(s, cfg) -> tuple[int, int]:
    """(entries summed in Φ: V_N − Y, every V_i, U_i and W_i; longest dot product inside one residual: W v
    over ≤ max width, or a TT rebuild over d bonds of rank ≤ max width)."""
    entries = sum(t.numel() for t in (*s.W, *s.U, *s.V)) + s.Y.numel()
    return entries, cfg.tt_cores * max(cfg.widths)


def _phi_rounding(phi: float, mag: float, entries: int, inner: int, margin: float = 4.0) -> float:
    """Rounding of a computed Φ (or Φ + proximal term): a sum of ``entries`` non-negative squares (relative
    entries·eps) whose residuals r each carry δ ≤ inner·eps·(|a| + |b|); Σ c(2|r|δ) ≤ 4·inner·eps·√(Φ·mag) by
    Cauchy–Schwarz (mag = _phi_magnitude). Margin 4."""
    return margin * EPS64 * (entries * phi + 4 * inner * math.sqrt(phi * mag))


# ----------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs, name", [
    ({"widths": (4,)}, "widths"),
    ({"widths": (4, 0, 2)}, "widths"),
    ({"tt_cores": 1}, "tt_cores"),
    ({"tt_rank": 0}, "tt_rank"),
    ({"gamma": 0.0}, "gamma"),
    ({"rho": -1.0}, "rho"),
    ({"tau": -0.1}, "tau"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"alpha_uv": 0.0}, "alpha_uv"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"iterations": -1}, "iterations"),
    ({"eval_every": 0}, "eval_every"),
    ({"tt_init": "random"}, "tt_init"),
    ({"random_state": True}, "random_state"),
])
def test_config_rejects_bad_values_naming_the_parameter(kwargs, name):
    base = {"widths": (4, 8, 2)}
    with pytest.raises(ValueError, match=name):
        tb.TenBCDConfig(**{**base, **kwargs})


# ----------------------------------------------------------------------------------------------- ReLU prox


@settings(max_examples=25)
@given(gamma=st.floats(0.05, 20), rho=st.floats(0.05, 20), alpha=st.floats(1e-3, 5), key=st.integers(0, 10_000))
def test_relu_prox_is_the_global_minimiser(gamma, rho, alpha, key):
    gen = make_generator(key)
    v, a, u0 = (2 * torch.randn(3, 12, generator=gen, dtype=F64)).unbind(0)
    u = tb.relu_prox(v, a, u0, gamma, rho, alpha)

    def f(x, i):
        return 0.5 * gamma * (v[i].item() - max(x, 0.0)) ** 2 + 0.5 * rho * (x - a[i].item()) ** 2 \
            + 0.5 * alpha * (x - u0[i].item()) ** 2

    for i in range(v.numel()):
        lo = min(a[i].item(), u0[i].item(), v[i].item(), 0.0) - 1
        hi = max(a[i].item(), u0[i].item(), v[i].item(), 0.0) + 1
        grid = np.linspace(lo, hi, 4001)
        best_grid = min(f(x, i) for x in grid)
        # scipy on each smooth piece: the global minimum is the smaller of the two
        best_scipy = min(minimize_scalar(lambda x: f(x, i), bounds=b, method="bounded",
                                         options={"xatol": 1e-12}).fun for b in ((lo, 0.0), (0.0, hi)))
        # the grid and scipy only ever over-estimate the minimum, so the allowance is our rounding: f and the
        # prox's branch test (f_pos ≤ f_neg) are ≤ 16 rounded operations on terms ≲ f(0) + f(u) (the closed form's
        # own rounding of u is second order at an interior minimum; u = 0 is exact); margin 4
        fu = f(u[i].item(), i)
        tol = sum_rounding(16, f(0.0, i) + fu)
        assert fu <= best_grid + tol
        assert fu <= best_scipy + tol


def test_relu_prox_picks_the_right_branch_on_a_hand_case():
    # v = 1, a = u0 = -0.1, γ = 10: positive branch u = (10·1 + 2·(−0.1))/12 = 0.8167 costs far less
    # than u = −0.1 (which pays γ/2·v² = 5)
    u = tb.relu_prox(torch.tensor([1.0], dtype=F64), torch.tensor([-0.1], dtype=F64),
                     torch.tensor([-0.1], dtype=F64), 10.0, 1.0, 1.0)
    assert u.item() == pytest.approx(9.8 / 12)
    # with γ tiny the negative branch wins: u = b = −0.1
    u = tb.relu_prox(torch.tensor([1.0], dtype=F64), torch.tensor([-0.1], dtype=F64),
                     torch.tensor([-0.1], dtype=F64), 1e-3, 1.0, 1.0)
    assert u.item() == pytest.approx(-0.1)


# ----------------------------------------------------------------------------------------------- TT cores


def _core_least_squares(W, cores, shape, k, tau, alpha):
    """argmin over core k of τ/2‖W − TTD‖² + α/2‖G_k − G_k⁰‖² by stacking the linear map's matrix
    (built column by column from unit cores) with √α I and calling lstsq."""
    c = cores[k]
    basis = torch.eye(c.numel(), dtype=F64)
    cols = []
    for e in basis:
        trial = list(cores)
        trial[k] = e.reshape(c.shape)
        cols.append(tt_to_matrix(trial, shape).reshape(-1))
    A = torch.stack(cols, 1)
    lhs = torch.cat([math.sqrt(tau) * A, math.sqrt(alpha) * torch.eye(c.numel(), dtype=F64)])
    rhs = torch.cat([math.sqrt(tau) * W.reshape(-1), math.sqrt(alpha) * c.reshape(-1)])
    return torch.linalg.lstsq(lhs, rhs[:, None]).solution.reshape(c.shape), float(torch.linalg.cond(lhs))


@pytest.mark.parametrize("shape, ranks", [
    (TTShape((2, 3, 2), (3, 2, 2)), (2, 3)),
    (TTShape((4, 2), (2, 3)), (3,)),
    (TTShape((2, 2, 2, 1), (1, 2, 3, 2)), (2, 2, 2)),
])
@pytest.mark.parametrize("tau, alpha", [(1.0, 0.5), (30.0, 1e-3), (0.2, 4.0)])
def test_tt_core_sweep_matches_brute_force_least_squares(shape, ranks, tau, alpha):
    gen = make_generator(3)
    W = torch.randn(shape.out_features, shape.in_features, generator=gen, dtype=F64)
    r = [1, *ranks, 1]
    cores = [torch.randn(r[k], shape.out_modes[k], shape.in_modes[k], r[k + 1], generator=gen, dtype=F64)
             for k in range(shape.d)]
    new = tb.update_tt_cores(W, cores, shape, tau=tau, alpha=alpha)
    current = list(cores)
    for k in range(shape.d):   # left to right, each core given the newer ones on its left
        expected, cond = _core_least_squares(W, current, shape, k, tau, alpha)
        # update_tt_cores solves the normal equations (eigh of the Gram factors): forward error ≲
        # size·eps·κ(lhs)²·‖G‖ (κ² = the normal matrix's condition, up to 3e4·λμ here); margin 16
        tol = factorization_rounding(W.numel() + expected.numel(), cond ** 2 * float(expected.abs().max()))
        torch.testing.assert_close(new[k], expected, rtol=0, atol=tol)
        current[k] = new[k]
    before = 0.5 * tau * ((W - tt_to_matrix(cores, shape)) ** 2).sum()
    after = 0.5 * tau * ((W - tt_to_matrix(new, shape)) ** 2).sum() \
        + 0.5 * alpha * sum(((a - b) ** 2).sum() for a, b in zip(new, cores))
    # the random cores' train is far from W (before ~ 10²–10⁴): relative rounding of the W.numel()-term sums,
    # with the residuals' rebuild rounding relative to |W| + train of |cores| (as in _phi_rounding)
    mag = max(float(((W.abs() + tt_to_matrix([c.abs() for c in cs], shape)) ** 2).sum()) for cs in (cores, new))
    tol = 4 * EPS64 * (W.numel() * float(before + after) + 4 * shape.d * max(W.shape) * math.sqrt(float(before) * mag))
    assert after <= before + tol


# ----------------------------------------------------------------------------------------------- W, V


def test_w_and_v_closed_forms_have_zero_gradient():
    gen = make_generator(5)
    n, d_in, d_out = 30, 7, 5
    U, V, T, W0 = (torch.randn(d_out, n, generator=gen, dtype=F64), torch.randn(d_in, n, generator=gen, dtype=F64),
                   torch.randn(d_out, d_in, generator=gen, dtype=F64),
                   torch.randn(d_out, d_in, generator=gen, dtype=F64))
    rho, tau, alpha, lam = 2.0, 0.7, 0.05, 0.3
    for wd in (0.0, lam):
        W = tb.update_w(U, V, W0, T, rho=rho, tau=tau, alpha=alpha, weight_decay=wd).requires_grad_()
        f = (0.5 * rho * ((U - W @ V) ** 2).sum() / n + 0.5 * tau * ((W - T) ** 2).sum()
             + 0.5 * wd * (W ** 2).sum() + 0.5 * alpha * ((W - W0) ** 2).sum())
        (g,) = torch.autograd.grad(f, W)
        # At the exact minimiser the gradient's terms cancel; what is left is the solve's backward error and the
        # gradient's own rounding, entrywise ≲ (n + d_in)·eps·(sum of the terms' absolute values), margin 4
        Wd = W.detach()
        terms = (rho / n) * (U.abs() + Wd.abs() @ V.abs()) @ V.abs().mT + tau * (Wd.abs() + T.abs()) \
            + wd * Wd.abs() + alpha * (Wd.abs() + W0.abs())
        assert bool((g.abs() <= sum_rounding(n + d_in, terms)).all()), g.abs().max()
    # the penalty changes the minimiser (the check above can tell the two apart)
    assert not torch.allclose(tb.update_w(U, V, W0, T, rho=rho, tau=tau, alpha=alpha),
                              tb.update_w(U, V, W0, T, rho=rho, tau=tau, alpha=alpha, weight_decay=lam))
    # without a train the τ term is absent
    W = tb.update_w(U, V, W0, None, rho=rho, tau=tau, alpha=alpha).requires_grad_()
    f = 0.5 * rho * ((U - W @ V) ** 2).sum() / n + 0.5 * alpha * ((W - W0) ** 2).sum()
    Wd = W.detach()
    terms = (rho / n) * (U.abs() + Wd.abs() @ V.abs()) @ V.abs().mT + alpha * (Wd.abs() + W0.abs())
    assert bool((torch.autograd.grad(f, W)[0].abs() <= sum_rounding(n + d_in, terms)).all())

    S, U_next, W_next, V0 = (torch.randn(d_in, n, generator=gen, dtype=F64), U,
                             torch.randn(d_out, d_in, generator=gen, dtype=F64),
                             torch.randn(d_in, n, generator=gen, dtype=F64))
    gamma = 1.5
    Vn = tb.update_v_hidden(S, U_next, W_next, V0, gamma=gamma, rho=rho, alpha=alpha).requires_grad_()
    f = (0.5 * gamma * ((Vn - S) ** 2).sum() + 0.5 * rho * ((U_next - W_next @ Vn) ** 2).sum()
         + 0.5 * alpha * ((Vn - V0) ** 2).sum()) / n
    Vd = Vn.detach()  # as above; dot products over d_out (Wᵀ r) and d_in (W V)
    terms = (gamma * (Vd.abs() + S.abs()) + rho * W_next.abs().mT @ (U_next.abs() + W_next.abs() @ Vd.abs())
             + alpha * (Vd.abs() + V0.abs())) / n
    assert bool((torch.autograd.grad(f, Vn)[0].abs() <= sum_rounding(d_out + d_in, terms)).all())


def _blocks(N, d, compressed):
    for i in range(N - 1, -1, -1):
        yield ("V", i, None)
        yield ("U", i, None)
        yield ("W", i, None)
        if compressed:
            for k in range(d):
                yield ("G", i, k)


@pytest.mark.parametrize("extra", [{}, {"alpha_uv": 1.7, "weight_decay": 0.3}], ids=["one-alpha", "alpha_uv+decay"])
@pytest.mark.parametrize("rank", [None, 2])
def test_every_block_of_an_iteration_is_the_exact_proximal_minimiser(rank, extra):
    """Walk the sweep block by block: with the blocks before it at their new values and those after
    at their old ones, each new block must minimise Φ + its proximal term (gradient 0 for the smooth
    blocks; for the ReLU U blocks no perturbation may do better)."""
    widths, d = (8, 12, 8, 4), 2
    X, Y, _ = _problem(widths)
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=d, tt_rank=rank, gamma=1.3, rho=0.8, tau=0.9, alpha=0.2,
                          init_scale=0.7, **extra)
    old = tb.tenbcd_iteration(tb.init_state(X, Y, cfg), cfg)   # start away from the forward-pass init
    new = tb.tenbcd_iteration(old, cfg)
    n, N = old.n, old.num_layers
    entries, inner = _sizes(old, cfg)
    cur = {"W": list(old.W), "U": list(old.U), "V": list(old.V),
           "G": None if old.G is None else [list(g) for g in old.G]}
    gen = make_generator(11)
    for kind, i, k in _blocks(N, d, rank is not None):
        if kind == "G":
            cur["G"][i][k] = new.G[i][k]
            prev, val = old.G[i][k], new.G[i][k]
        else:
            cur[kind][i] = getattr(new, kind)[i]
            prev, val = getattr(old, kind)[i], getattr(new, kind)[i]
        # the per-sample blocks are damped by α_uv/n, W and the cores by α
        weight = cfg.alpha_uv_ / n if kind in "UV" else cfg.alpha

        def total(b, phi=_phi):
            blocks = {key: (None if v is None else [list(x) if isinstance(x, list) else x for x in v])
                      for key, v in cur.items()}
            if kind == "G":
                blocks["G"][i][k] = b
            else:
                blocks[kind][i] = b
            prox = ((b - prev) ** 2).sum() if phi is _phi else ((b.abs() + prev.abs()) ** 2).sum()
            return phi(blocks["W"], blocks["U"], blocks["V"], blocks["G"], X, Y, cfg, old.shapes) + 0.5 * weight * prox

        if kind == "U" and i < N - 1:
            base = float(total(val))
            # both values carry Φ's rounding (_phi_rounding); the perturbation raises Φ by ~1e-6·(ρ + α)/n per entry
            tol = 2 * _phi_rounding(base, float(total(val, _phi_magnitude)), entries, inner)
            for _ in range(20):
                delta = 1e-3 * torch.randn(val.shape, generator=gen, dtype=F64)
                assert total(val + delta) >= base - tol, (kind, i)
        else:
            b = val.clone().requires_grad_()
            (g,) = torch.autograd.grad(total(b), b)
            # the gradient's terms cancel at the minimiser: entrywise rounding ≲ K·eps·(their absolute sum), which
            # is the gradient of the magnitude function; K = the longest sum in a gradient entry (n samples, a
            # W's entries for a core, a width), margin 4
            m = val.abs().requires_grad_()
            (g_abs,) = torch.autograd.grad(total(m, _phi_magnitude), m)
            tol = sum_rounding(n + max(w.numel() for w in old.W) + inner, g_abs.abs())
            assert bool((g.abs() <= tol).all()), (kind, i, k, g.abs().max().item(), float((g.abs() / tol).max()))


def test_iteration_leaves_the_previous_state_intact():
    widths = (8, 12, 8, 4)
    X, Y, _ = _problem(widths)
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=2, tt_rank=2)
    s0 = tb.init_state(X, Y, cfg)
    copies = [t.clone() for t in (*s0.W, *s0.U, *s0.V, *[c for g in s0.G for c in g])]
    s1 = tb.tenbcd_iteration(s0, cfg)
    for a, b in zip(copies, (*s0.W, *s0.U, *s0.V, *[c for g in s0.G for c in g])):
        assert torch.equal(a, b)
    assert tb.proximal_distance(s1, s0) > 0


# ----------------------------------------------------------------------------------------------- descent


@settings(max_examples=15)
@given(gamma=st.floats(0.1, 10), rho=st.one_of(st.none(), st.floats(0.1, 10)), tau=st.floats(0.0, 10),
       alpha=st.floats(1e-3, 2), alpha_uv=st.one_of(st.none(), st.floats(1e-3, 10)), weight_decay=st.floats(0.0, 1.0),
       init_scale=st.floats(0.1, 2), rank=st.sampled_from([None, 1, 2, 3]), d=st.sampled_from([2, 3]),
       key=st.integers(0, 1000))
def test_sufficient_decrease_holds_at_every_iteration(gamma, rho, tau, alpha, alpha_uv, weight_decay, init_scale,
                                                      rank, d, key):
    widths = (8, 12, 8, 4)
    X, Y, _ = _problem(widths, key=key)
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=d, tt_rank=rank, gamma=gamma, rho=rho, tau=tau, alpha=alpha,
                          alpha_uv=alpha_uv, weight_decay=weight_decay, init_scale=init_scale, random_state=key)
    state = tb.init_state(X, Y, cfg)
    phi = tb.objective(state, cfg)
    entries, inner = _sizes(state, cfg)
    for _ in range(6):
        new = tb.tenbcd_iteration(state, cfg)
        new_phi, prox = tb.objective(new, cfg), tb.proximal_term(new, state, cfg)
        # exact in exact arithmetic (each block is an exact proximal minimiser; the computed ones are off at
        # second order); rounding: the two Φ values (_phi_rounding) and the entries-term sum of D_k
        tol = (_phi_rounding(phi, _state_magnitude(state, cfg), entries, inner)
               + _phi_rounding(new_phi, _state_magnitude(new, cfg), entries, inner)
               + sum_rounding(entries, prox))
        assert phi - new_phi >= prox - tol
        # D_k weighs the distance of proximal_distance by α (W, cores) and α_uv (U, V)
        dP2 = tb.proximal_distance(new, state)
        lo, hi = sorted((cfg.alpha, cfg.alpha_uv_))
        assert 0.5 * lo * dP2 * (1 - 4 * EPS64 * entries) <= prox <= 0.5 * hi * dP2 * (1 + 4 * EPS64 * entries)
        state, phi = new, new_phi


def test_objective_decreases_and_the_o_1_over_k_bound_holds():
    widths = (8, 12, 8, 4)
    X, Y, y = _problem(widths, n=40)
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=2, tt_rank=2, gamma=1.0, tau=0.5, alpha=0.1, iterations=40,
                          eval_every=10)
    res = tb.run_tenbcd(X, Y, X, y, cfg, progress=False)
    h = res["history"]
    obj, dP2 = np.array(h["objective"]), np.array(h["dP2"][1:], dtype=float)
    # one iteration's rounding allowance (as in the test above), with Φ ≤ Φ₀ and the larger magnitude of the
    # start and the end (the iterates' sizes move little over 40 damped steps)
    start = tb.init_state(X, Y, cfg)
    entries, inner = _sizes(start, cfg)
    mag = max(_state_magnitude(start, cfg), _state_magnitude(res["state"], cfg))
    step_tol = 2 * _phi_rounding(obj[0], mag, entries, inner) + sum_rounding(entries, 0.5 * cfg.alpha * dP2.max())
    assert np.all(np.diff(obj) <= step_tol)
    assert min(h["slack"][1:]) >= -step_tol
    lam = cfg.alpha / 2
    # Φ ≥ 0, so Φ(P_0) bounds the total decrease: min_{j≤k} ‖ΔP_j‖² ≤ Φ(P_0)/(λ k), and the sum is finite;
    # summing k sufficient decreases sums k rounding allowances
    k = np.arange(1, len(dP2) + 1)
    assert np.all(np.minimum.accumulate(dP2) <= (obj[0] - obj[-1] + k * step_tol) / (lam * k))
    assert dP2.sum() <= (obj[0] - obj[-1] + len(dP2) * step_tol) / lam
    assert dP2[-1] < 0.1 * dP2[0]
    # the terms add up, and evaluations happen on the documented schedule: the objective is the sum of the
    # same five non-negative floats, in the same order; any order is within 3·eps/2 relative (margin ~3)
    terms = sum(np.array(h[t]) for t in ("loss", "act", "lin", "tt", "reg"))
    np.testing.assert_allclose(terms, obj, rtol=4 * EPS64)
    assert [i for i, a in zip(h["iteration"], h["test_acc_tt"]) if a is not None] == [0, 10, 20, 30, 40]


def test_dense_run_learns_a_separable_problem():
    """Sanity: on data a linear map separates, the dense BCD network ends well above chance."""
    set_random_state(0)
    widths = (10, 16, 3)
    gen = make_generator(1)
    centers = 3 * torch.randn(3, widths[0], generator=gen, dtype=F64)
    y = torch.arange(90) % 3
    X = (centers[y] + torch.randn(90, widths[0], generator=gen, dtype=F64)).mT
    Y = torch.nn.functional.one_hot(y, 3).to(F64).mT
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=2, gamma=1.0, alpha=0.01, init_scale=0.3, iterations=30,
                          eval_every=30)
    res = tb.run_tenbcd(X, Y, X, y, cfg, progress=False)
    assert res["test_acc_tt"] >= 0.9
    assert res["history"]["test_acc_tt"][0] < res["test_acc_tt"]


# ----------------------------------------------------------------------------------------------- CR


@pytest.mark.parametrize("widths, d", [((40, 256, 256, 10), 3), ((8, 12, 8, 4), 2), ((64, 32, 10), 3)])
@pytest.mark.parametrize("rank", [1, 3, 7, 40])
def test_compression_ratio_counts_the_actual_cores(widths, d, rank):
    X, Y, _ = _problem(widths, n=3)
    for tt_init in ("svd", "rescaled"):
        cfg = tb.TenBCDConfig(widths=widths, tt_cores=d, tt_rank=rank, tt_init=tt_init)
        s = tb.init_state(X, Y, cfg)
        stored = sum(c.numel() for g in s.G for c in g)
        assert tb.tt_compression_ratio(widths, d, rank) == pytest.approx(stored / tb.dense_num_params(widths))
        assert tb.dense_num_params(widths) == sum(w.numel() for w in s.W)


def test_rank_for_compression_is_the_closest_candidate():
    widths, d = (40, 256, 256, 10), 3
    assert tb.rank_for_compression(widths, d, 1.0) == (None, 1.0)
    for target in (0.77, 0.34, 0.09, 0.02):
        rank, cr = tb.rank_for_compression(widths, d, target)
        assert cr == pytest.approx(tb.tt_compression_ratio(widths, d, rank))
        others = [tb.tt_compression_ratio(widths, d, r) for r in range(1, 65)]
        best = min(abs(math.log(c / target)) for c in others if c <= 1)
        assert abs(math.log(cr / target)) == pytest.approx(best)
    with pytest.raises(ValueError, match="target"):
        tb.rank_for_compression(widths, d, 0.0)


def _forward_rounding(W, X, w_err, margin: float = 4.0) -> torch.Tensor:
    """Entrywise bound on |net_T(X) − net_W(X)| for the ReLU networks of weights W and T with |T_i − W_i| ≤
    w_err[i] entrywise (ReLU is 1-Lipschitz and |relu(x)| ≤ |x|): propagate e ← |W|e + w_err·Σ|v| +
    2·k·eps·|W||v| (two matmuls with k-term dot products) and v ← |W||v| + e, from e = 0, v = |X|; margin 4."""
    e, v = torch.zeros_like(X), X.abs()
    for w, err in zip(W, w_err):
        e = w.abs() @ e + err * v.sum(0, keepdim=True) + 2 * w.shape[1] * EPS64 * (w.abs() @ v)
        v = w.abs() @ v + e
    return margin * e


def test_full_rank_train_tracks_w_when_tau_is_large():
    widths, d = (8, 12, 8, 4), 2
    X, Y, _ = _problem(widths)
    full = max(max(tb.tt_bond_ranks(s, 10**6)) for s in tb.layer_tt_shapes(widths, d))
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=d, tt_rank=full, tau=1e6, alpha=0.1, tt_init="svd")
    s = tb.init_state(X, Y, cfg)
    # at full rank TTD(G_i) = W_i up to the TT-SVD/rebuild rounding, entrywise ≤ d·max(dims)·eps·‖W_i‖ (margin
    # 16, a priori: a wrong train is not absorbed); the outputs differ by its propagation plus both networks'
    # matmul rounding (_forward_rounding)
    w_err = [factorization_rounding(d * max(w.shape), float(w.norm())) for w in s.W]
    tol = _forward_rounding(s.W, X, w_err)
    assert bool(((tb.forward_tt(s, X) - tb.forward_dense(s, X)).abs() <= tol).all())
    for _ in range(5):
        s = tb.tenbcd_iteration(s, cfg)
    torch.testing.assert_close(tb.forward_tt(s, X), tb.forward_dense(s, X), rtol=1e-5, atol=1e-5)
    # the same with a truncated train would not be equal: the check can fail
    low = tb.TenBCDConfig(widths=widths, tt_cores=d, tt_rank=1, tau=1e6, alpha=0.1, tt_init="svd")
    s = tb.init_state(X, Y, low)
    assert (tb.forward_tt(s, X) - tb.forward_dense(s, X)).abs().max() > 1e-3


def test_rescaled_init_is_a_consistent_tt_network():
    widths, d = (8, 12, 8, 4), 2
    X, Y, _ = _problem(widths)
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=d, tt_rank=1, tt_init="rescaled")
    s = tb.init_state(X, Y, cfg)
    raw = tb.init_state(X, Y, tb.TenBCDConfig(widths=widths, tt_cores=d, tt_rank=1, tt_init="svd"))
    # W_i = TTD(G_i) by construction (the same rebuild), so the τ term is 0 up to two rebuilds' rounding,
    # ≲ d·max(dims)·eps·‖W_i‖ each (margin 16), squared
    tt_tol = 0.5 * cfg.tau * sum((2 * factorization_rounding(d * max(w.shape), float(w.norm()))) ** 2 for w in s.W)
    assert tb.objective_terms(s, cfg)["tt"] <= tt_tol
    for i in range(len(widths) - 1):
        torch.testing.assert_close(s.W[i].norm(), raw.W[i].norm())
    torch.testing.assert_close(tb.forward_tt(s, X), tb.forward_dense(s, X))


# ----------------------------------------------------------------------------------------------- runner


TINY = {
    "dataset": "digits",
    "hidden": [8],
    "tt_cores": 2,
    "compression_ratios": [1.0, 0.3],
    "seeds": [0, 1],
    "tenbcd": {"fixed": {"iterations": 4, "eval_every": 2}, "grid": {"alpha_uv": [0.003, 1.0]}},
    "baselines": {name: {"fixed": {"epochs": 2, "eval_every": 1, "batch_size": 256}, "grid": {"lr": [0.001, 0.01]}}
                  for name in tb.BASELINES},
}


def _at(hist, axis, k, key):
    return hist[key][hist[axis].index(k)]


def test_experiment_chooses_on_validation_and_reports_every_seed(tmp_path):
    from tenbcd.__main__ import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    assert main([str(spec), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert [r["target_cr"] for r in metrics["per_cr"]] == [1.0, 0.3]
    dense, tt = metrics["per_cr"]
    assert dense["tt_rank"] is None and dense["cr"] == 1.0 and tt["tt_rank"] >= 1 and tt["cr"] < 1
    assert metrics["widths"] == [64, 8, 10] and metrics["n_train"] + metrics["n_val"] == 1348
    # the validation split is stratified: every class keeps its share within one sample
    assert abs(metrics["n_val"] - 0.2 * 1348) <= 10
    assert len(metrics["grid"]) == 2 * len(tb.METHODS) * 2        # 2 CRs × 4 methods × 2 configurations
    assert len(metrics["selected"]) == 2 * len(tb.METHODS)
    for sel in metrics["selected"]:
        method, target = sel["method"], sel["target_cr"]
        axis = "iteration" if method == "tenbcd" else "epoch"
        val_key = "val_acc_tt" if method == "tenbcd" else "val_acc"
        test_key = "test_acc_tt" if method == "tenbcd" else "test_acc"
        grid = [h for h in history if h["method"] == method and h["target_cr"] == target and h["role"] == "grid"]
        assert len(grid) == 2
        # the choice, recomputed from the validation curves alone: the highest validation accuracy over every
        # (configuration, checkpoint > 0), ties to the earlier checkpoint, then the earlier configuration
        cands = [(-a, k, i) for i, h in enumerate(grid) for k, a in zip(h["history"][axis], h["history"][val_key])
                 if k > 0 and a is not None]
        _, k, i = min(cands)
        assert (sel["checkpoint"], sel["config"]) == (k, grid[i]["config"])
        assert [r["seed"] for r in sel["per_seed"]] == [0, 1]
        first = sel["per_seed"][0]
        assert first["test_acc"] == _at(grid[i]["history"], axis, k, test_key)
        # the other seed trains to the chosen checkpoint with the chosen configuration, and stops there
        other = [h for h in history if h["method"] == method and h["target_cr"] == target and h["role"] == "seed"]
        assert len(other) == 1 and other[0]["config"] == sel["config"] and other[0]["seed"] == 1
        assert other[0]["history"][axis][-1] == k
        assert sel["per_seed"][1]["test_acc"] == _at(other[0]["history"], axis, k, test_key)
        for r in sel["per_seed"]:
            assert 0 <= r["train_acc"] <= 1 and r["seconds"] > 0 and r["macs"] > 0
            # the cost grows with the checkpoint: the multiply-adds are per iteration (epoch) × k
            assert r["macs"] % k == 0
        assert sel["tuning_macs"] >= first["macs"]
    # tenBCD's histories carry the sufficient-decrease terms of claim (g1) for every iteration
    for h in history:
        if h["method"] == "tenbcd":
            t = h["history"]
            obj0 = t["objective"][0]
            assert len(t["slack"]) == len(t["prox"]) == len(t["iteration"])
            assert min(x for x in t["slack"] if x is not None) >= -SLACK_TOLERANCE * max(abs(obj0), 1.0)


def test_choose_checkpoint_ties_and_the_initial_point():
    runs = [{"checkpoints": [0, 2, 4], "val_acc": [0.9, 0.5, 0.7]},
            {"checkpoints": [0, 2, 4], "val_acc": [0.1, 0.7, 0.6]}]
    # the initial point (0.9) is not a trained model; 0.7 at checkpoint 2 (run 1) beats 0.7 at 4 (run 0)
    assert tb.choose_checkpoint(runs) == (1, 2)
    runs[0]["val_acc"][1] = 0.7
    assert tb.choose_checkpoint(runs) == (0, 2)                   # same accuracy and checkpoint: the earlier run
    with pytest.raises(ValueError, match="no run"):
        tb.choose_checkpoint([{"checkpoints": [0], "val_acc": [0.5]}])


def test_split_validation_is_a_stratified_partition():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    tr, va = tb.split_validation(y, 0.2, 0)
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(100)) and len(set(tr.tolist()) & set(va.tolist())) == 0
    assert [int((y[va] == c).sum()) for c in range(3)] == [10, 6, 4]
    assert not torch.equal(tb.split_validation(y, 0.2, 1)[1], va)   # the seed moves it


def test_grid_expands_in_the_written_order():
    assert tb.expand_grid({}) == [{}]
    assert tb.expand_grid({"a": [1, 2], "b": ["x", "y"]}) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"},
                                                            {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_the_squared_loss_baseline_minimises_tenbcds_loss_term():
    """On the same network, the baseline's squared loss equals the loss term ½‖V_N − Y‖²/n of tenBCD's Φ at
    the initial point (tenBCD's forward pass: V_N = W_N σ(… W_1 X)), up to two float64 sums of n·d_N terms."""
    from tenbcd.baselines import _baseline_mlp, _loss

    widths = (8, 12, 8, 4)
    X, Y, y = _problem(widths, n=40)
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=2, init_scale=0.7)
    phi_loss = tb.objective_terms(tb.init_state(X, Y, cfg), cfg)["loss"]
    model = _baseline_mlp(widths, 2, None, 0.7, "rescaled", 0, torch.device("cpu"))
    with torch.no_grad():
        sq = float(_loss("squared", model(X.mT), y))
    assert sq == pytest.approx(phi_loss, rel=sum_rounding(40 * 4 * 12, 1.0))


def test_baseline_macs_are_forward_and_backward_products():
    """One epoch of the dense MLP: every sample's forward products Σ d_i d_(i+1), and the backward ones twice
    over (the gradient of the weights and of the layer's input), except the input gradient of the first layer
    (the data needs none)."""
    widths, n = (8, 12, 8, 4), 40
    X, _, y = _problem(widths, n=n)
    res = tb.train_baseline(X.mT, y, X.mT[:0], y[:0], widths, epochs=1, batch_size=16, progress=False)
    fwd = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    assert res["macs_per_epoch"] == n * (3 * fwd - widths[0] * widths[1])


def test_tenbcd_macs_of_a_dense_iteration():
    """The dense iteration's products and factorisations, counted by hand from the update formulas of
    tenbcd.algorithm (top layer: U_N, W_N; hidden layer i: V_i's Gram and right-hand side, its Cholesky solve,
    U_i's W_i V_(i−1), W_i's Gram, right-hand side and Cholesky solve)."""
    widths, n = (8, 12, 8, 4), 20
    X, Y, _ = _problem(widths, n=n)
    cfg = tb.TenBCDConfig(widths=widths, tt_cores=2)
    d, N, flops = widths, len(widths) - 1, 0
    for i in range(N - 1, -1, -1):
        m, k = d[i + 1], d[i]                       # layer i maps k → m
        if i < N - 1:
            m2 = d[i + 2]
            flops += 2 * (m * m * m2 + m * m2 * n + m * m * n) + 2 * m ** 3 // 3    # V_i: WᵀW, WᵀU, solve, Cholesky
        flops += 2 * m * k * n                                                      # W_i V_(i−1) for U_i
        flops += 2 * (k * k * n + m * k * n + k * k * m) + 2 * k ** 3 // 3          # W_i: VVᵀ, UVᵀ, solve, Cholesky
    _, macs = tb.count_macs(tb.tenbcd_iteration, tb.init_state(X, Y, cfg), cfg)
    assert macs == flops // 2


@pytest.mark.parametrize("change, name", [
    ({"dataset": "cifar10"}, "dataset"),
    ({"hidden": [8, 0]}, "hidden"),
    ({"compression_ratios": [1.5]}, "compression_ratios"),
    ({"compression_ratios": []}, "compression_ratios"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"tenbcd": {"fixed": {"alpha": 0}}}, "alpha"),
    ({"tenbcd": {"fixed": {"step": 1}}}, "step"),
    ({"tenbcd": {"fixed": {"iterations": 4, "eval_every": 2}, "grid": {"alpha_uv": [1.0, 1.0]}}}, "alpha_uv"),
    # a grid of another size than the others': unequal tuning effort
    ({"tenbcd": {"fixed": {"iterations": 4, "eval_every": 2}, "grid": {"alpha_uv": [0.1, 1.0, 3.0]}}},
     "grid sizes"),
    # as many configurations, but another number of validation checkpoints per run
    ({"tenbcd": {"fixed": {"iterations": 6, "eval_every": 2}, "grid": {"alpha_uv": [0.003, 1.0]}}},
     "checkpoints"),
    ({"tenbcd": {"fixed": {"iterations": 4, "eval_every": 2, "alpha_uv": 1.0}, "grid": {"alpha_uv": [0.1, 1.0]}}},
     "both fixed and searched"),
    ({"baselines": {"adamw_ce": TINY["baselines"]["adamw_ce"]}}, "baselines"),
    ({"baselines": {**TINY["baselines"], "adamw_ce": {"fixed": {"epochs": 2, "eval_every": 1, "momentum": 0.9},
                                                       "grid": {"lr": [0.001, 0.01]}}}}, "momentum"),
    ({"baselines": {**TINY["baselines"], "sgd_ce": {"fixed": {"epochs": 2, "eval_every": 1},
                                                     "grid": {"lr": [-1.0, 0.01]}}}}, "lr"),
    ({"baselines": {**TINY["baselines"], "sgd_ce": {"fixed": {"epochs": 2, "eval_every": 1, "batch_size": 0},
                                                     "grid": {"lr": [0.1, 0.01]}}}}, "batch_size"),
    ({"dataset_args": {"num_samples": 100}}, "dataset_args"),
    ({"extra": 1}, "extra"),
    ({"device": "nonsense"}, "device"),
])
def test_bad_experiment_config_fails_before_writing(tmp_path, change, name):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=name):
        tb.run_tenbcd_experiment({**TINY, **change}, out, progress=False)
    assert not out.exists()


def test_cli_refuses_a_bad_spec_with_a_message(tmp_path, capsys):
    from tenbcd.__main__ import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**TINY, "seeds": "0"}))
    assert main([str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "seeds" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_paper_profile_runs_the_companion_papers_mnist_mlp_on_a_standin(tmp_path):
    """The paper profile's tenBCD study is the companion paper's MNIST setting, 784-256-256-10, on torchvision's
    MNIST files; here the study runs end to end on a stand-in of those files (random images, 60 + 20), with
    the widths and the budget shrunk to seconds — everything else as the profile resolves it."""
    from pathlib import Path

    import yaml

    from lowrank.config import resolve_spec
    from .test_data import _write_idx

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    paper = resolve_spec({**params, "profile": "paper"}, "tenbcd.mnist1d")
    assert paper["dataset"] == "mnist" and paper["hidden"] == [256, 256] and paper["device"] == "cuda"
    assert resolve_spec({**params, "profile": "small"}, "tenbcd.mnist1d")["dataset"] == "mnist1d"   # offline
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", 60), ("t10k", 20)):
        _write_idx(raw / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{part}-labels-idx1-ubyte", np.arange(n) % 10)
    small = {**paper, "device": "cpu", "dataset_args": {"root": str(tmp_path), "download": False}, "hidden": [6],
             "compression_ratios": [1.0, 0.1], "seeds": [0, 1],
             "tenbcd": {"fixed": {**paper["tenbcd"]["fixed"], "iterations": 20, "eval_every": 2},
                        "grid": paper["tenbcd"]["grid"]},
             "baselines": {k: {"fixed": {**b["fixed"], "epochs": 10, "eval_every": 1}, "grid": b["grid"]}
                           for k, b in paper["baselines"].items()}}
    metrics = tb.run_tenbcd_experiment(small, tmp_path / "out", progress=False)
    assert metrics["widths"] == [784, 6, 10] and metrics["n_train"] + metrics["n_val"] == 60
    assert metrics["n_test"] == 20 and len(metrics["selected"]) == 2 * len(tb.METHODS)
