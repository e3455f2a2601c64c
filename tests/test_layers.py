"""LowRankLinear / FactorizedLinear: equivalence with the dense layer, conversions, trainable parts."""
import pytest
import torch
import torch.nn as nn
from hypothesis import given, strategies as st

from lowrank.layers import FactorizedLinear, LowRankLinear, factorization_pays
from lowrank.linalg import truncated_svd
from lowrank.utils import set_random_state


def dense(m, n, bias=True, key=0, dtype=torch.float64):
    set_random_state(key)
    return nn.Linear(n, m, bias=bias, dtype=dtype)


@given(m=st.integers(1, 12), n=st.integers(1, 12), bias=st.booleans(), key=st.integers(0, 1000),
       rows=st.integers(1, 9))
def test_full_rank_forms_reproduce_dense(m, n, bias, key, rows):
    lin = dense(m, n, bias, key)
    x = torch.randn(rows, 3, n, dtype=torch.float64)
    ref = lin(x)
    lr = LowRankLinear.from_linear(lin)
    fz = FactorizedLinear.from_linear(lin)
    torch.testing.assert_close(lr(x), ref)
    torch.testing.assert_close(fz(x), ref)
    torch.testing.assert_close(lr.to_factorized()(x), ref)
    torch.testing.assert_close(fz.to_low_rank()(x), ref)
    torch.testing.assert_close(lr.to_linear()(x), ref)
    torch.testing.assert_close(fz.to_linear()(x), ref)


@given(m=st.integers(2, 12), n=st.integers(2, 12), key=st.integers(0, 1000), data=st.data())
def test_truncated_forms_equal_the_truncated_dense_weight(m, n, key, data):
    lin = dense(m, n, True, key)
    k = data.draw(st.integers(1, min(m, n)))
    W_k = truncated_svd(lin.weight.detach(), k).matrix()
    lr = LowRankLinear.from_linear(lin, k)
    torch.testing.assert_close(lr.dense_weight(), W_k)
    torch.testing.assert_close(FactorizedLinear.from_linear(lin, k).weight, W_k)
    # semi-orthogonal frozen bases
    torch.testing.assert_close(lr.U.T @ lr.U, torch.eye(k, dtype=torch.float64))
    torch.testing.assert_close(lr.V.T @ lr.V, torch.eye(k, dtype=torch.float64))


def test_training_form_trains_only_S_and_bias():
    lr = LowRankLinear.from_linear(dense(8, 6), 3)
    trainable = {n for n, p in lr.named_parameters() if p.requires_grad}
    assert trainable == {"S", "bias"}
    # frozen factors are still parameters, so they are counted
    assert sum(p.numel() for p in lr.parameters()) == 8 * 3 + 3 * 3 + 6 * 3 + 8
    lr(torch.randn(4, 6, dtype=torch.float64)).sum().backward()
    assert lr.U.grad is None and lr.V.grad is None and lr.S.grad is not None


def test_compile_after_training_step_reproduces_training_form():
    lr = LowRankLinear.from_linear(dense(10, 7), 4)
    opt = torch.optim.SGD([lr.S, lr.bias], lr=0.1)
    x = torch.randn(16, 7, dtype=torch.float64)
    (lr(x) ** 2).mean().backward()
    opt.step()  # S is no longer diagonal
    assert (lr.S - torch.diag(torch.diagonal(lr.S))).abs().max() > 0
    torch.testing.assert_close(lr.to_factorized()(x), lr(x))


def test_forward_applies_factors_and_never_forms_w_for_low_rank(monkeypatch):
    lr = LowRankLinear.from_linear(dense(64, 64, key=1), 4)
    called = []
    monkeypatch.setattr(LowRankLinear, "dense_weight", lambda self: called.append(1) or torch.zeros(64, 64))
    lr(torch.randn(32, 64, dtype=torch.float64))
    assert not called


def test_factorization_pays():
    assert factorization_pays(768, 3072, 100)
    assert not factorization_pays(768, 3072, 615)  # 615 * 3840 > 768 * 3072
    assert not factorization_pays(10, 10, 5)
    assert not factorization_pays(12, 12, 5, core=True) and factorization_pays(12, 12, 5)


def test_bad_rank_names_the_layer():
    with pytest.raises(ValueError, match=r"LowRankLinear: rank=0 .* \[1, 5\]"):
        LowRankLinear(5, 8, 0)
    with pytest.raises(ValueError, match="expected nn.Linear"):
        LowRankLinear.from_linear(nn.Conv1d(2, 2, 1))
