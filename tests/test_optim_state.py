"""Carrying AdamW's state across a cut S = Ua S' Vaᵀ (lowrank.optim_state): the exact first moment,
the second-moment rules, real AdamW steps after installing the state, and the validation."""
import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, strategies as st

from lowrank.layers import LowRankLinear
from lowrank.methods.iht import cut_low_rank_layer
from lowrank.optim_state import (ADAM_STATE_POLICIES, SECOND_MOMENT_RULES, carry_state, cut_rotations,
                                 rotate_squares, transport_adam_state)

from .tolerances import factorization_rounding, sum_rounding

HYPER = {"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.05}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def orthonormal(k, kp, g, dtype=torch.float64):
    """A random k×k orthogonal matrix (QR of a Gaussian one), its first kp columns."""
    Q, R = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64))
    return (Q * torch.sign(torch.diagonal(R)))[:, :kp].to(dtype)


def selection(k, idx, dtype=torch.float64):
    """The k×len(idx) coordinate selection I[:, idx]."""
    return torch.eye(k, dtype=dtype)[:, idx]


def gradients(T, shape, g, dtype=torch.float64):
    """A fixed sequence of gradients with entries of different scales (so v is far from uniform)."""
    scale = torch.exp(torch.randn(shape, generator=g, dtype=torch.float64))
    return [(scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype) for _ in range(T)]


def run_adam(grads, p0=None, amsgrad=False, dtype=torch.float64, **hyper):
    """AdamW on a parameter fed the given gradients; returns (parameter, optimizer)."""
    p = nn.Parameter(torch.zeros(grads[0].shape, dtype=dtype) if p0 is None else p0.clone().to(dtype))
    opt = torch.optim.AdamW([p], amsgrad=amsgrad, **{**HYPER, **hyper})
    for G in grads:
        p.grad = G.to(dtype).clone()
        opt.step()
    return p, opt


def feed(p, opt, grads):
    for G in grads:
        p.grad = G.to(p.dtype).clone()
        opt.step()


# --------------------------------------------------------------------------- 1. the first moment
@given(k=st.integers(1, 7), data=st.data(), T=st.integers(1, 9), seed=st.integers(0, 10_000),
       square=st.booleans())
def test_first_moment_is_the_adam_moment_of_the_rotated_gradients(k, data, T, seed, square):
    kp = k if square else data.draw(st.integers(1, k))
    g = gen(seed)
    Ua, Va = orthonormal(k, kp, g), orthonormal(k, kp, g)
    grads = gradients(T, (k, k), g)
    p, opt = run_adam(grads)
    q, ref = run_adam([Ua.mT @ G @ Va for G in grads])
    new = transport_adam_state(opt.state[p], Ua, Va)
    assert new["exp_avg"].shape == (kp, kp)
    # Both sides are the same real number: the rotated gradients / rotated moment are 2k-term dot products
    # (≤ 2·2k roundings, entrywise against |Ua|ᵀ max|G| |Va|) and each EMA step rounds 3 times per entry.
    scale = Ua.abs().mT @ torch.stack(grads).abs().amax(0) @ Va.abs()
    tol = sum_rounding(4 * k + 6 * T, scale)
    assert ((new["exp_avg"] - ref.state[q]["exp_avg"]).abs() <= tol).all()
    # bias correction continues: the same t-term EMA, so the same step count
    assert torch.is_tensor(new["step"]) and new["step"].dtype == opt.state[p]["step"].dtype
    assert float(new["step"]) == float(ref.state[q]["step"]) == T


@given(k=st.integers(1, 7), T=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_square_rotation_preserves_the_total_second_moment_exactly(k, T, seed):
    """For orthogonal Ua, Va, Ua⊙Ua is doubly stochastic and ‖UaᵀGVa‖_F = ‖G‖_F: the transported v and the
    true EMA of the rotated squares have the same total (a deterministic identity, not a statistical one)."""
    g = gen(seed)
    Ua, Va = orthonormal(k, k, g), orthonormal(k, k, g)
    grads = gradients(T, (k, k), g)
    p, opt = run_adam(grads)
    q, ref = run_adam([Ua.mT @ G @ Va for G in grads])
    new = transport_adam_state(opt.state[p], Ua, Va)
    total, expected = float(new["exp_avg_sq"].sum()), float(ref.state[q]["exp_avg_sq"].sum())
    # Relative: entrywise rounding of UaᵀGVa (bounded by 2k·eps·|Ua|ᵀ|G||Va|, whose Frobenius norm is
    # ≤ k‖G‖_F) moves ‖G'‖² by ≤ 4k²·eps; the orthogonality defect of Ua, Va from QR and the non-negative
    # k²-term sums add ≲ 2k²·eps; each EMA step rounds 3 times.
    assert math.isclose(total, expected, rel_tol=sum_rounding(6 * k * k + 3 * T, 1.0), abs_tol=0.0)


# --------------------------------------------------------------------------- 2. the second-moment rules
@given(k=st.integers(1, 7), data=st.data(), T=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_rotate_squares_is_non_negative_and_dominated_by_the_transported_max(k, data, T, seed):
    kp = data.draw(st.integers(1, k))
    g = gen(seed)
    Ua, Va = orthonormal(k, kp, g), orthonormal(k, kp, g)
    p, opt = run_adam(gradients(T, (k, k), g), amsgrad=True)
    new = transport_adam_state(opt.state[p], Ua, Va)
    assert (new["exp_avg_sq"] >= 0).all()
    # AMSGrad's invariant max ≥ v survives: (Ua⊙Ua)ᵀ · (Va⊙Va) is monotone (non-negative weights); the two
    # products see the same weights, so only their roundings (2k terms, relative) can separate them.
    slack = sum_rounding(2 * k, new["exp_avg_sq"])
    assert (new["max_exp_avg_sq"] >= new["exp_avg_sq"] - slack).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("policy", ["carry", "slice"])
@pytest.mark.parametrize("rule", SECOND_MOMENT_RULES)
def test_identity_leaves_the_state_unchanged_bit_for_bit(dtype, policy, rule):
    g = gen(3)
    p, opt = run_adam(gradients(5, (6, 6), g), amsgrad=True, dtype=dtype)
    old = opt.state[p]
    eye = torch.eye(6, dtype=torch.float64)
    new = transport_adam_state(old, eye, eye, policy=policy, second_moment=rule)
    assert set(new) == set(old)
    for key in old:
        assert new[key].dtype == old[key].dtype and new[key].device == old[key].device
        assert torch.equal(new[key], old[key]), key
        assert new[key] is not old[key]  # a copy: the old state is never aliased or changed


@given(k=st.integers(1, 7), data=st.data(), seed=st.integers(0, 10_000))
def test_coordinate_selection_is_exact_slicing(k, data, seed):
    """A permutation/selection Ua = I[:, rows], Va = I[:, cols]: every rule is exact indexing of the state."""
    rows = data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    cols = data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    p, opt = run_adam(gradients(4, (k, k), gen(seed)), amsgrad=True)
    old = opt.state[p]
    new = transport_adam_state(old, selection(k, rows), selection(k, cols))
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert torch.equal(new[key], old[key][rows][:, cols]), key


def test_slice_policy_is_oialr_change_adam_shapes():
    """OIALR's reshaping: the leading k'×k' block of every (unrotated) moment, step kept."""
    g = gen(11)
    p, opt = run_adam(gradients(4, (5, 5), g), amsgrad=True)
    old = opt.state[p]
    Ua, Va = orthonormal(5, 3, g), orthonormal(5, 3, g)
    new = transport_adam_state(old, Ua, Va, policy="slice")
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert torch.equal(new[key], old[key][:3, :3]), key
    assert torch.equal(new["step"], old["step"])
    mixed = transport_adam_state(old, Ua, Va, second_moment="slice")
    assert torch.equal(mixed["exp_avg_sq"], old["exp_avg_sq"][:3, :3])
    torch.testing.assert_close(mixed["exp_avg"], Ua.mT @ old["exp_avg"] @ Va, rtol=0,
                               atol=sum_rounding(10, float(old["exp_avg"].abs().sum())))  # two 5-term products


@pytest.mark.parametrize("kp", [4, 2])
def test_rotate_squares_matches_the_rotated_second_moment_in_expectation(kp):
    """Monte Carlo over B independent AdamW chains (AdamW is elementwise, so one B×k×k parameter runs B
    chains) with independent zero-mean Gaussian gradients of known variances Σ_ab: the mean transported v
    and the mean v of Adam fed the rotated gradients both estimate E = (1-β₂ᵀ)·(Ua⊙Ua)ᵀ Σ (Va⊙Va)."""
    k, T, B, beta2 = 4, 12, 20_000, 0.8
    g = gen(2024)
    Ua, Va = orthonormal(k, kp, g), orthonormal(k, kp, g)
    var = torch.exp(2.0 * torch.randn(k, k, generator=g, dtype=torch.float64))  # variances over ~2 decades
    grads = [var.sqrt() * torch.randn(B, k, k, generator=g, dtype=torch.float64) for _ in range(T)]
    hyper = {"betas": (0.9, beta2)}
    p, opt = run_adam(grads, **hyper)
    q, ref = run_adam([Ua.mT @ G @ Va for G in grads], **hyper)
    transported = transport_adam_state(opt.state[p], Ua, Va)["exp_avg_sq"]  # batch dimensions broadcast
    A, C = Ua * Ua, Va * Va
    expected = (1 - beta2 ** T) * (A.mT @ var @ C)
    w2 = sum(((1 - beta2) * beta2 ** (T - t)) ** 2 for t in range(1, T + 1))  # Σ_t w_t², EMA weights
    # Standard deviations of the means over B chains (Var(x²) = 2σ⁴ for a Gaussian x):
    sd_ref = (2 * w2 / B) ** 0.5 * (A.mT @ var @ C)                    # x = (UaᵀGVa)_ij is Gaussian
    sd_transported = (2 * w2 / B * ((A * A).mT @ (var * var) @ (C * C))) ** 0.5  # Σ_ab A²C²·Var(G_ab²)
    z = 6.0  # six standard deviations per entry: a false alarm among ≤ 16 entries has probability < 1e-7
    assert ((ref.state[q]["exp_avg_sq"].mean(0) - expected).abs() <= z * sd_ref).all()
    assert ((transported.mean(0) - expected).abs() <= z * sd_transported).all()
    # The check has power: OIALR's unrotated slice of v estimates (1-β₂ᵀ)·Σ[:k', :k'], which is far off.
    sliced = transport_adam_state(opt.state[p], Ua, Va, second_moment="slice")["exp_avg_sq"]
    assert ((sliced.mean(0) - expected).abs() > z * sd_transported).any()


# --------------------------------------------------------------------------- 3. real AdamW steps
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_identity_cut_continues_uninterrupted_adam_bit_for_bit(dtype, amsgrad):
    g = gen(5)
    before, after = gradients(6, (5, 5), g), gradients(7, (5, 5), g)
    p0 = torch.randn(5, 5, generator=g, dtype=torch.float64)
    ref, ref_opt = run_adam(before + after, p0=p0, amsgrad=amsgrad, dtype=dtype)
    p, opt = run_adam(before, p0=p0, amsgrad=amsgrad, dtype=dtype)
    S2 = nn.Parameter(p.detach().clone())  # the cut replaces the parameter
    opt2 = torch.optim.AdamW([S2], amsgrad=amsgrad, **HYPER)
    eye = torch.eye(5, dtype=torch.float64)
    installed = carry_state(opt, opt2, p, S2, eye, eye)
    assert opt2.state[S2] is installed and installed["exp_avg"].dtype == dtype
    feed(S2, opt2, after)
    assert torch.equal(S2.detach(), ref.detach())
    assert float(opt2.state[S2]["step"]) == 13


@pytest.mark.parametrize("amsgrad", [False, True])
def test_selection_cut_continues_the_restriction_of_uninterrupted_adam(amsgrad):
    """AdamW acts entrywise, so after a coordinate-selection cut the carried optimizer on S' = S[rows, cols]
    fed G[rows, cols] must reproduce the same entries of Adam run on S without a cut, bit for bit."""
    g = gen(8)
    rows, cols = [3, 0, 4], [1, 4, 2]
    before, after = gradients(5, (5, 5), g), gradients(6, (5, 5), g)
    p0 = torch.randn(5, 5, generator=g, dtype=torch.float64)
    ref, _ = run_adam(before + after, p0=p0, amsgrad=amsgrad)
    p, opt = run_adam(before, p0=p0, amsgrad=amsgrad)
    Ua, Va = selection(5, rows), selection(5, cols)
    S2 = nn.Parameter((Ua.mT @ p.detach() @ Va).clone())  # S' = Uaᵀ S Va (Algorithm 1's cut step)
    opt2 = torch.optim.AdamW([S2], amsgrad=amsgrad, **HYPER)
    carry_state(opt.state, opt2.state, p, S2, Ua, Va)
    feed(S2, opt2, [G[rows][:, cols] for G in after])
    assert torch.equal(S2.detach(), ref.detach()[rows][:, cols])


def test_rotated_cut_takes_the_adamw_step_of_the_transported_moments():
    """After a generic truncating rotation the next real AdamW step is Loshchilov & Hutter's update computed
    from the transported moments with the continued step count."""
    g = gen(13)
    k, kp, T = 6, 4, 5
    p, opt = run_adam(gradients(T, (k, k), g))
    Ua, Va = orthonormal(k, kp, g), orthonormal(k, kp, g)
    S2 = nn.Parameter(Ua.mT @ p.detach() @ Va)
    opt2 = torch.optim.AdamW([S2], **HYPER)
    st_ = {key: (val.clone() if torch.is_tensor(val) else val)
           for key, val in carry_state(opt, opt2, p, S2, Ua, Va).items()}
    G = torch.randn(kp, kp, generator=g, dtype=torch.float64)
    S_before = S2.detach().clone()
    S2.grad = G.clone()
    opt2.step()
    (b1, b2), lr, wd, eps, t = HYPER["betas"], HYPER["lr"], HYPER["weight_decay"], HYPER["eps"], T + 1
    m = b1 * st_["exp_avg"] + (1 - b1) * G
    v = b2 * st_["exp_avg_sq"] + (1 - b2) * G * G
    update = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
    expected = S_before * (1 - lr * wd) - lr * update
    # ~10 rounded operations per entry, in another order than torch's, relative to the terms' sizes
    tol = sum_rounding(10, S_before.abs() + lr * update.abs())
    assert ((S2.detach() - expected).abs() <= tol).all()
    assert float(opt2.state[S2]["step"]) == t


def test_float32_parameter_gets_float32_state_and_a_numeric_step_becomes_a_tensor():
    g = gen(17)
    p, opt = run_adam(gradients(3, (4, 4), g), dtype=torch.float32)
    Ua, Va = orthonormal(4, 2, g), orthonormal(4, 2, g)  # float64 rotations, as the cut computes them
    old = {**opt.state[p], "step": 3}  # a step stored as a number (an old checkpoint)
    assert transport_adam_state(old, Ua, Va)["step"] == 3  # the transport keeps the type ...
    S2 = nn.Parameter(torch.zeros(2, 2, dtype=torch.float32))
    opt2 = torch.optim.AdamW([S2], **HYPER)
    new = carry_state({p: old}, opt2, p, S2, Ua, Va)
    assert new["exp_avg"].dtype == new["exp_avg_sq"].dtype == torch.float32
    assert torch.is_tensor(new["step"]) and new["step"].dtype == torch.float32  # ... carry_state makes
    S2.grad = torch.ones(2, 2)                                                # what AdamW.step needs
    opt2.step()
    assert float(opt2.state[S2]["step"]) == 4 and torch.isfinite(S2).all()


@pytest.mark.parametrize("policy", ADAM_STATE_POLICIES)
def test_a_real_cut_of_a_low_rank_layer_then_adamw_steps(policy):
    """cut_low_rank_layer (OIALR/IEHT step of Algorithm 1) replaces S; the rotations are recovered from the
    frozen bases, the state is carried under each policy and AdamW keeps training the new core."""
    torch.manual_seed(0)
    layer = LowRankLinear(7, 9, 5, dtype=torch.float64)
    x, y = torch.randn(32, 7, dtype=torch.float64), torch.randn(32, 9, dtype=torch.float64)
    opt = torch.optim.AdamW([layer.S, layer.bias], **HYPER)
    for _ in range(4):
        opt.zero_grad()
        ((layer(x) - y) ** 2).mean().backward()
        opt.step()
    U, S, V, S_param, bias = layer.U.detach(), layer.S.detach(), layer.V.detach(), layer.S, layer.bias
    cut_low_rank_layer(layer, lambda s: 3)
    Ua, Va = cut_rotations(U, V, layer.U.detach(), layer.V.detach())
    # the new bases are U Ua, V Va and the new core is Uaᵀ S Va: products of the SVD's factors, so
    # their rounding is the SVD's backward error (factorization_rounding) on matrices of norm ≤ ‖S‖
    assert (U @ Ua - layer.U).abs().max() <= factorization_rounding(9, 1.0)
    assert (Ua.mT @ S @ Va - layer.S).abs().max() <= factorization_rounding(5, float(S.norm()))
    opt2 = torch.optim.AdamW([layer.S, layer.bias], **HYPER)
    opt2.state[bias] = opt.state[bias]  # a survivor keeps its state
    new = carry_state(opt, opt2, S_param, layer.S, Ua, Va, policy=policy)
    if policy == "reset":
        assert new == {} and layer.S not in opt2.state
    else:
        assert new["exp_avg"].shape == (3, 3) and float(new["step"]) == 4
    opt2.zero_grad()
    ((layer(x) - y) ** 2).mean().backward()
    opt2.step()
    assert float(opt2.state[layer.S]["step"]) == (1 if policy == "reset" else 5)
    assert torch.isfinite(layer.S).all()


def test_empty_state_and_reset_give_an_empty_state():
    Ua = Va = torch.eye(3, dtype=torch.float64)
    assert transport_adam_state({}, Ua, Va) == {}
    p, opt = run_adam(gradients(2, (3, 3), gen(1)))
    assert transport_adam_state(opt.state[p], Ua, Va, policy="reset") == {}
    S2 = nn.Parameter(torch.zeros(3, 3, dtype=torch.float64))
    stale = {S2: {"step": torch.tensor(9.0)}}
    assert carry_state(opt, stale, p, S2, Ua, Va, policy="reset") == {} and S2 not in stale


# --------------------------------------------------------------------------- 4. validation
def test_bad_policy_and_rule_names_are_refused_with_the_allowed_ones():
    p, opt = run_adam(gradients(2, (3, 3), gen(2)))
    Ua = Va = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"adam_state_policy='rotate'; allowed: reset, carry, slice"):
        transport_adam_state(opt.state[p], Ua, Va, policy="rotate")
    with pytest.raises(ValueError, match=r"second_moment='diag'; allowed: rotate_squares, slice"):
        transport_adam_state(opt.state[p], Ua, Va, second_moment="diag")
    with pytest.raises(ValueError, match=r"second_moment=None; allowed"):
        carry_state(opt, {}, p, p, Ua, Va, second_moment=None)
    with pytest.raises(ValueError, match=r"adam_state_policy='Carry'"):
        carry_state(opt, {}, p, p, Ua, Va, policy="Carry")


def test_mismatched_shapes_and_foreign_states_are_refused():
    p, opt = run_adam(gradients(2, (4, 4), gen(4)))
    state = opt.state[p]
    eye = torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not match"):
        transport_adam_state(state, torch.eye(3, dtype=torch.float64), eye)
    with pytest.raises(ValueError, match="at most as many"):
        transport_adam_state(state, torch.ones(4, 5, dtype=torch.float64), eye)
    with pytest.raises(ValueError, match="new parameter has shape"):
        transport_adam_state(state, eye, eye, like=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="unknown keys"):
        transport_adam_state({**state, "momentum_buffer": state["exp_avg"]}, eye, eye)
    other = nn.Parameter(torch.zeros(4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="not a parameter of the new optimizer"):
        carry_state(opt, torch.optim.AdamW([p]), p, other, eye, eye)


def test_rotate_squares_helper_agrees_with_the_entrywise_sum():
    """(Ua⊙Ua)ᵀ v (Va⊙Va) written out: v'_ij = Σ_ab Ua_ai² v_ab Va_bj²."""
    g = gen(21)
    Ua, Va = orthonormal(4, 3, g), orthonormal(5, 2, g)
    v = torch.rand(4, 5, generator=g, dtype=torch.float64)
    direct = torch.einsum("ai,ab,bj->ij", Ua ** 2, v, Va ** 2)
    # 20 non-negative terms per entry, two association orders
    assert ((rotate_squares(v, Ua, Va) - direct).abs() <= sum_rounding(2 * 20, direct)).all()
