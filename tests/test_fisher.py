"""Tests for lowrank.fisher: the per-sample diagonal Fisher of the paper's Section 2."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lowrank.fisher import (
    ESTIMATORS,
    FisherBatch,
    column_weights,
    diagonal_fisher,
    encoder_forward,
    row_weights,
)
from lowrank import fisher as fisher_module
from lowrank.utils import make_generator, set_random_state

from .fisher_reference import per_sample_weight_grads
from .tolerances import EPS64, sum_rounding

pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")

D = torch.float64


def fisher_rounding(inner_dims: tuple[int, ...], n_samples: int, margin: float = 64) -> float:
    """Relative rounding (to the largest entry, as ``rel_err`` measures) of a float64 diagonal Fisher: the
    forward and the backward pass each take dot products of the given inner dimensions, then a square (2
    roundings) and a sum over ``n_samples`` non-negative terms. Margin 64 covers the amplification of
    absolute errors through the backward pass (∂ entries far below the largest one)."""
    return sum_rounding(2 * sum(inner_dims) + 2 + n_samples, 1.0, margin)


# the MLP below: Linear 6→8, 8→8, 8→4 (inner dimensions 6, 8, 8); at most 12 samples per Fisher (≈ 8e-13)
MLP_REL = fisher_rounding((6, 8, 8), 12)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest entry-wise gap relative to the largest entry of the reference."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def assert_all_agree(results: dict[str, dict[str, torch.Tensor]], tol: float = 1e-6) -> None:
    ref = results["loop"]
    for method, res in results.items():
        assert res.keys() == ref.keys()
        for name in ref:
            assert ref[name].abs().max() > 0, f"{name}: reference Fisher is identically zero"
            assert rel_err(res[name], ref[name]) <= tol, (method, name, rel_err(res[name], ref[name]))


def mlp(dropout: float = 0.0) -> nn.Sequential:
    set_random_state(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 8), nn.Tanh(),
                         nn.Linear(8, 4)).to(D)


MLP_TARGETS = ["0", "3", "5"]


def mlp_data(n: int = 10, bs: int = 4, gaussian: bool = False):
    g = make_generator(1)
    x = torch.randn(n, 6, generator=g, dtype=D)
    y = torch.randn(n, 4, generator=g, dtype=D) if gaussian else torch.randint(0, 4, (n,), generator=g)
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)]


def tiny_vit():
    import timm

    set_random_state(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=2, num_heads=2
    ).to(D)


def linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


# ---------------------------------------------------------------- the three methods agree


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
@pytest.mark.parametrize("labels", ["empirical", "true"])
def test_methods_agree_on_mlp(likelihood, labels):
    model = mlp()
    loader = mlp_data(gaussian=likelihood == "gaussian")
    results = {
        m: diagonal_fisher(model, loader, MLP_TARGETS, likelihood=likelihood, labels=labels, method=m,
                           n_label_samples=2 if labels == "true" else 1,
                           generator=make_generator(7), dtype=D)
        for m in ESTIMATORS
    }
    assert_all_agree(results)
    for name, f in results["hooks"].items():
        w = dict(model.named_modules())[name].weight
        assert f.shape == w.shape and f.dtype == D
        assert bool((f >= 0).all())


@pytest.mark.parametrize("labels", ["empirical", "true"])
def test_methods_agree_on_tiny_vit(labels):
    model = tiny_vit()
    g = make_generator(2)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=D)
    y = torch.randint(0, 3, (6,), generator=g)
    loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    names = linear_names(model)
    assert len(names) == 9  # qkv, proj, fc1, fc2 per block and the head
    results = {m: diagonal_fisher(model, loader, names, labels=labels, method=m,
                                  generator=make_generator(3), dtype=D) for m in ESTIMATORS}
    assert_all_agree(results)


class TokenMLP(nn.Module):
    """(B, T, 5) → (B, T, 3) position-wise, so each weight's gradient sums over tokens."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)).cumsum(dim=1))  # cumsum: tokens interact


def token_forward(model, batch):
    x, y, mask = batch
    return FisherBatch(model(x), y, mask)


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_methods_agree_with_tokens_and_mask(likelihood):
    set_random_state(0)
    model = TokenMLP().to(D)
    g = make_generator(4)
    x = torch.randn(5, 4, 5, generator=g, dtype=D)
    y = (torch.randint(0, 3, (5, 4), generator=g) if likelihood == "categorical"
         else torch.randn(5, 4, 3, generator=g, dtype=D))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1]])
    loader = [(x[:3], y[:3], mask[:3]), (x[3:], y[3:], mask[3:])]
    results = {m: diagonal_fisher(model, loader, ["fc1", "fc2"], token_forward, likelihood=likelihood,
                                  method=m, dtype=D) for m in ESTIMATORS}
    assert_all_agree(results)
    unmasked = [(a, b, None) for a, b, _ in loader]
    without = diagonal_fisher(model, unmasked, ["fc1", "fc2"], token_forward, likelihood=likelihood, dtype=D)
    assert rel_err(without["fc1"], results["hooks"]["fc1"]) > 1e-3  # the mask changes which terms count


class SharedWeights(nn.Module):
    """One Linear called twice, and two Linears tied to one Parameter."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 4)
        self.c.weight = self.b.weight
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.a(torch.tanh(self.a(x))))
        return self.head(torch.tanh(self.c(torch.tanh(self.b(h)))))


def test_shared_weights_sum_gradients_per_sample():
    set_random_state(0)
    model = SharedWeights().to(D)
    g = make_generator(5)
    loader = [(torch.randn(5, 4, generator=g, dtype=D), torch.randint(0, 3, (5,), generator=g))]
    results = {m: diagonal_fisher(model, loader, ["a", "b", "c", "head"], method=m, dtype=D)
               for m in ESTIMATORS}
    assert_all_agree(results)
    assert torch.equal(results["hooks"]["b"], results["hooks"]["c"])


# ---------------------------------------------------------------- sequence model with a mask


def tiny_bert():
    from transformers import BertConfig, BertModel

    set_random_state(0)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1)
    return BertModel(cfg, add_pooling_layer=False).to(D)


def test_gaussian_mask_on_bert_matches_unpadded_sequences():
    model = tiny_bert()
    names = [n for n in linear_names(model) if n.startswith("encoder.layer.")]
    assert len(names) == 12
    g = make_generator(6)
    lengths = [6, 3, 5, 2]
    ids = torch.randint(1, 40, (4, 6), generator=g)
    mask = torch.zeros(4, 6, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 0
    loader = [{"input_ids": ids[:2], "attention_mask": mask[:2]},
              {"input_ids": ids[2:], "attention_mask": mask[2:]}]
    kw = dict(likelihood="gaussian", labels="true", dtype=D)
    hooks = diagonal_fisher(model, loader, names, encoder_forward, method="hooks",
                            generator=make_generator(8), **kw)
    loop = diagonal_fisher(model, loader, names, encoder_forward, method="loop",
                           generator=make_generator(8), **kw)
    assert_all_agree({"hooks": hooks, "loop": loop})

    # Padding must not count: with the same noise ε on the real tokens (∂(-log p)/∂f = f - y = ε),
    # a padded sequence gives exactly what the unpadded sequence gives on its own.
    def fisher_one(input_ids, attention_mask, eps):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        model.eval()
        with torch.no_grad():
            y = model(**batch).last_hidden_state - eps
        model.train()
        fwd = lambda m, b: FisherBatch(m(**b).last_hidden_state, y, b["attention_mask"])
        return diagonal_fisher(model, [batch], names, fwd, likelihood="gaussian", dtype=D)

    for i in (1, 3):
        n = lengths[i]
        eps = torch.randn(1, 6, 16, generator=g, dtype=D)
        padded = fisher_one(ids[i:i + 1], mask[i:i + 1], eps)
        alone = fisher_one(ids[i:i + 1, :n], mask[i:i + 1, :n], eps[:, :n])
        # padding adds exact zeros (masked softmax weights, masked tokens' terms) but changes the kernels'
        # sizes and so the summation order: rounding of BERT's forward/backward, per layer dot products over
        # hidden (q, k, v, attention output, two LayerNorms, fc1: 7×16), head_dim 8, the sequence (≤ 6) and
        # intermediate 32, plus the embedding LayerNorm (16); one sample (≈ 1e-11)
        bert_rel = fisher_rounding((16,) + 2 * (7 * 16, 8, 6, 32), 1)
        for name in names:
            assert rel_err(padded[name], alone[name]) <= bert_rel, name
    assert model.training  # BertModel is built in train mode; the call restored it


# ---------------------------------------------------------------- labels: true vs empirical


def test_true_fisher_is_the_expectation_under_the_model():
    model = mlp()
    g = make_generator(9)
    x = torch.randn(3, 6, generator=g, dtype=D)
    with torch.no_grad():
        probs = model(x).softmax(-1)
    # Exact expectation: Σ_n Σ_c π_{n,c} g_{n,c}², one empirical Fisher per (sample, class).
    exact = {k: torch.zeros_like(dict(model.named_modules())[k].weight) for k in MLP_TARGETS}
    for n in range(3):
        for c in range(4):
            f = diagonal_fisher(model, [(x[n:n + 1], torch.tensor([c]))], MLP_TARGETS, dtype=D)
            for k in exact:
                exact[k] += probs[n, c] * f[k]
    reps = 400
    mc = diagonal_fisher(model, [(x.repeat(reps, 1), None)], MLP_TARGETS, labels="true",
                         n_label_samples=5, generator=make_generator(10), dtype=D)
    for k in exact:
        assert torch.linalg.norm(mc[k] / reps - exact[k]) <= 0.05 * torch.linalg.norm(exact[k]), k
    # The empirical Fisher with fixed labels is a different quantity.
    emp = diagonal_fisher(model, [(x, torch.zeros(3, dtype=torch.long))], MLP_TARGETS, dtype=D)
    assert torch.linalg.norm(emp["5"] - exact["5"]) > 0.2 * torch.linalg.norm(exact["5"])


def test_gaussian_true_fisher_is_the_expectation():
    model = mlp()
    x = torch.randn(3, 6, generator=make_generator(11), dtype=D)
    with torch.no_grad():
        out = model(x)
    exact = None
    for j in range(4):
        y = out - F.one_hot(torch.tensor(j), 4).to(D)  # f - y = e_j: the score of y = f + e_j
        f = diagonal_fisher(model, [(x, y)], MLP_TARGETS, likelihood="gaussian", dtype=D)
        exact = f if exact is None else {k: exact[k] + f[k] for k in f}
    reps = 400
    mc = diagonal_fisher(model, [(x.repeat(reps, 1), None)], MLP_TARGETS, likelihood="gaussian",
                         labels="true", n_label_samples=5, generator=make_generator(12), dtype=D)
    for k in exact:
        assert torch.linalg.norm(mc[k] / reps - exact[k]) <= 0.05 * torch.linalg.norm(exact[k]), k


def test_true_labels_reproducible_with_the_same_generator():
    model = mlp()
    loader = mlp_data()
    run = lambda key: diagonal_fisher(model, loader, MLP_TARGETS, labels="true", generator=make_generator(key))
    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_near_deterministic_softmax_samples_the_argmax():
    model = mlp()
    with torch.no_grad():
        model[5].weight.mul_(1e4)  # logits far apart: p(argmax) = 1 to double precision
    x = torch.randn(6, 6, generator=make_generator(13), dtype=D)
    with torch.no_grad():
        top = model(x).argmax(-1)
    true = diagonal_fisher(model, [(x, None)], MLP_TARGETS, labels="true", n_label_samples=3,
                           generator=make_generator(14), dtype=D)
    emp = diagonal_fisher(model, [(x, top)], MLP_TARGETS, dtype=D)
    wrong = diagonal_fisher(model, [(x, (top + 1) % 4)], MLP_TARGETS, dtype=D)
    for k in MLP_TARGETS:
        assert torch.equal(true[k], emp[k])
        assert float(wrong[k].max()) > 1e6 * float(emp[k].max())


# ---------------------------------------------------------------- estimator and bookkeeping


def test_per_sample_not_squared_batch_gradient():
    model = mlp()
    loader = mlp_data(n=10, bs=5)
    fisher = diagonal_fisher(model, loader, MLP_TARGETS, dtype=D)
    singles = [(x[i:i + 1], y[i:i + 1]) for x, y in loader for i in range(x.shape[0])]
    assert_all_agree({"loop": fisher, "hooks": diagonal_fisher(model, singles, MLP_TARGETS, dtype=D)}, MLP_REL)

    def squared_batch_grads(batches):
        total = {k: 0.0 for k in MLP_TARGETS}
        mods = dict(model.named_modules())
        for x, y in batches:
            loss = F.cross_entropy(model(x), y, reduction="sum")
            grads = torch.autograd.grad(loss, [mods[k].weight for k in MLP_TARGETS])
            for k, gr in zip(MLP_TARGETS, grads):
                total[k] = total[k] + gr.square()
        return total

    model.eval()
    one = squared_batch_grads(singles)
    five = squared_batch_grads(loader)
    for k in MLP_TARGETS:
        assert rel_err(one[k], fisher[k]) <= MLP_REL  # batches of one: the same thing, up to rounding
        assert rel_err(five[k], fisher[k]) > 0.1  # batches of five: cross terms


@pytest.mark.parametrize("method", ESTIMATORS)
def test_model_state_restored(method):
    model = mlp(dropout=0.5)
    model.train()
    model[3].eval()
    model[0].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    modes = {k: m.training for k, m in model.named_modules()}
    res = diagonal_fisher(model, mlp_data(), MLP_TARGETS, method=method, dtype=D)
    assert {k: m.training for k, m in model.named_modules()} == modes
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
    # Computed in eval mode: dropout off, so it matches a model without dropout.
    ref = diagonal_fisher(mlp(dropout=0.0), mlp_data(), MLP_TARGETS, method=method, dtype=D)
    assert_all_agree({"loop": ref, method: res}, MLP_REL)


@pytest.mark.parametrize("method", ESTIMATORS)
def test_max_samples_and_normalize(method):
    model = mlp()
    loader = mlp_data(n=12, bs=4)
    cut = diagonal_fisher(model, loader, MLP_TARGETS, method=method, max_samples=6, dtype=D)
    first6 = [loader[0], (loader[1][0][:2], loader[1][1][:2])]
    ref = diagonal_fisher(model, first6, MLP_TARGETS, method="loop", dtype=D)
    assert_all_agree({"loop": ref, method: cut}, MLP_REL)
    mean = diagonal_fisher(model, loader, MLP_TARGETS, method=method, max_samples=6, normalize=True, dtype=D)
    for k in MLP_TARGETS:
        # ÷6 then ×6: two roundings, entrywise relative ≤ 2·eps/2 each (margin 2); atol: the two calls'
        # accumulations, if a kernel sums in another order, differ by MLP_REL of the largest entry
        torch.testing.assert_close(mean[k] * 6, cut[k], rtol=4 * EPS64, atol=MLP_REL * float(cut[k].abs().max()))


def test_accumulation_dtype():
    model64 = mlp()
    model32 = mlp().float()
    loader = mlp_data()
    loader32 = [(x.float(), y) for x, y in loader]
    ref = diagonal_fisher(model64, loader, MLP_TARGETS, dtype=D)
    default = diagonal_fisher(model32, loader32, MLP_TARGETS)
    wide = diagonal_fisher(model32, loader32, MLP_TARGETS, dtype=D)
    for k in MLP_TARGETS:
        assert default[k].dtype == torch.float32 and wide[k].dtype == D
        assert rel_err(default[k].double(), ref[k]) < 1e-4
        assert rel_err(wide[k], ref[k]) < 1e-4


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_device_follows_the_model(device):
    model = mlp()
    loader = mlp_data()
    ref = diagonal_fisher(model, loader, MLP_TARGETS, labels="true", generator=make_generator(1), dtype=D)
    moved = [(x.to(device).float(), y.to(device)) for x, y in loader]
    res = diagonal_fisher(model.float().to(device), moved, MLP_TARGETS, labels="true",
                          generator=make_generator(1), progress=True)
    for k in MLP_TARGETS:
        assert res[k].device.type == device
        assert rel_err(res[k].double().cpu(), ref[k]) < 1e-4


class UsesWeightOutsideForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return F.linear(x, self.lin.weight, self.lin.bias)  # as nn.MultiheadAttention does


def test_hooks_refuse_a_weight_used_outside_its_module():
    set_random_state(0)
    model = UsesWeightOutsideForward().to(D)
    loader = [(torch.randn(3, 4, dtype=D), torch.tensor([0, 1, 2]))]
    with pytest.raises(RuntimeError, match="method='func' or 'loop'"):
        diagonal_fisher(model, loader, ["lin"], dtype=D)
    assert not model.lin._forward_hooks
    res = {m: diagonal_fisher(model, loader, ["lin"], method=m, dtype=D) for m in ("func", "loop")}
    assert_all_agree(res)


# ---------------------------------------------------------------- U S Vᵀ projection


class USV(nn.Module):
    def __init__(self, u, s, v):
        super().__init__()
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self.s = nn.Parameter(s.clone())

    def forward(self, x):
        return torch.tanh(x @ self.v @ self.s.t() @ self.u.t())


@pytest.mark.parametrize("method", ESTIMATORS)
def test_projected_fisher_is_the_fisher_of_s(method):
    g = make_generator(15)
    u = torch.linalg.qr(torch.randn(5, 3, generator=g, dtype=D))[0]
    v = torch.linalg.qr(torch.randn(6, 2, generator=g, dtype=D))[0]
    s = torch.randn(3, 2, generator=g, dtype=D)
    head = nn.Linear(5, 4).to(D)
    factored = nn.Sequential(USV(u, s, v), head)
    dense = nn.Sequential(nn.Linear(6, 5, bias=False), nn.Tanh(), head).to(D)
    with torch.no_grad():
        dense[0].weight.copy_(u @ s @ v.t())
    x = torch.randn(7, 6, generator=g, dtype=D)
    y = torch.randint(0, 4, (7,), generator=g)
    ref = torch.zeros(3, 2, dtype=D)
    for i in range(7):
        loss = F.cross_entropy(factored(x[i:i + 1]), y[i:i + 1], reduction="sum")
        ref += torch.autograd.grad(loss, factored[0].s)[0].square()
    res = diagonal_fisher(dense, [(x[:4], y[:4]), (x[4:], y[4:])], ["0", "2"], method=method,
                          project={"0": (u, v)}, dtype=D)
    assert res["0"].shape == (3, 2)
    # dense path: x·W (6), tanh, head (5), softmax (4), backward, then Uᵀ G V (5, 6); factored path: x·v (6),
    # ·sᵀ (2), ·uᵀ (3), and u s vᵀ itself (3, 2); 7 samples (≈ 1e-12)
    assert rel_err(res["0"], ref) <= fisher_rounding((6, 5, 4, 5, 6, 2, 3), 7)
    assert res["2"].shape == (4, 5)


def test_per_sample_weight_grads_matches_autograd():
    g = make_generator(16)
    lin = nn.Linear(3, 2).to(D)
    x = torch.randn(4, 5, 3, generator=g, dtype=D)
    w = torch.randn(4, 5, 2, generator=g, dtype=D)
    out = lin(x)
    grads = per_sample_weight_grads(x, torch.ones_like(out) * w)
    for b in range(4):
        ref = torch.autograd.grad((lin(x[b]) * w[b]).sum(), lin.weight)[0]
        # both are Σ over 5 tokens of w_t x_tᵀ: entrywise error ≤ 5·eps/2·(|w|ᵀ|x|) each (Higham's γ_n), so
        # their difference ≤ 5·eps·(|w|ᵀ|x|); margin 2
        tol = sum_rounding(x.shape[1], w[b].abs().mT @ x[b].abs(), margin=2)
        assert bool(((grads[b] - ref).abs() <= tol).all()), (grads[b] - ref).abs().max()


# ---------------------------------------------------------------- reductions


def test_row_and_column_weights():
    f = torch.rand(4, 3, generator=make_generator(17), dtype=D)
    rows, cols = row_weights(f), column_weights(f)
    assert rows.shape == (4,) and cols.shape == (3,)
    # tiny float64 sums of non-negative numbers, in two orders: each is within (n − 1)·eps/2 of the exact sum
    # (relative), so they differ by < n·eps; margin 1 (a real bug is off by a whole term, ≥ 1e-3 relative)
    for i in range(4):
        assert math.isclose(float(rows[i]), sum(float(f[i, j]) for j in range(3)), rel_tol=sum_rounding(3, 1.0, 1))
    for j in range(3):
        assert math.isclose(float(cols[j]), sum(float(f[i, j]) for i in range(4)), rel_tol=sum_rounding(4, 1.0, 1))
    assert math.isclose(float(rows.sum()), float(cols.sum()), rel_tol=sum_rounding(12, 1.0, 1))
    fisher = diagonal_fisher(mlp(), mlp_data(), ["0"], dtype=D)["0"]  # weight (8, 6)
    assert row_weights(fisher).shape == (8,) and column_weights(fisher).shape == (6,)
    for bad in (torch.ones(3), torch.ones(2, 2, 2), "f"):
        with pytest.raises(ValueError, match="fisher must be a 2-D"):
            row_weights(bad)
        with pytest.raises(ValueError, match="fisher must be a 2-D"):
            column_weights(bad)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(likelihood="poisson"), r"likelihood must be one of \['categorical', 'gaussian'\], got 'poisson'"),
        (dict(labels="fake"), r"labels must be one of \['empirical', 'true'\], got 'fake'"),
        (dict(method="jit"), r"method must be one of \['hooks', 'func', 'loop'\], got 'jit'"),
        (dict(max_samples=0), r"max_samples must be None or a positive int, got 0"),
        (dict(max_samples=-3), r"max_samples must be None or a positive int, got -3"),
        (dict(n_label_samples=0, labels="true"), r"n_label_samples must be a positive int, got 0"),
        (dict(n_label_samples=2), r"n_label_samples=2 needs labels='true'"),
        (dict(dtype=torch.int64), r"dtype must be a floating-point torch.dtype, got torch.int64"),
        (dict(generator=3), r"generator must be a torch.Generator or None, got int"),
        (dict(targets=["nope"]), r"targets: 'nope' is not the name of a module"),
        (dict(targets=["1"]), r"targets: '1' is a Tanh; allowed: nn.Linear, LowRankLinear"),
        (dict(targets=[]), r"targets must name at least one nn.Linear"),
        (dict(targets="0"), r"targets must be a sequence of module names"),
        (dict(targets={"x": nn.Linear(2, 2)}), r"targets\['x'\] is not a submodule"),
        (dict(loader=[]), r"loader is empty \(len 0\)"),
        (dict(project={"3": (torch.ones(5, 2), torch.ones(8, 2))}), r"project\['3'\]: U must be \(8, r\)"),
        (dict(project={"9": None}), r"project: '9' is not one of the targets"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, pattern):
    calls = []

    def counting_forward(model, batch):
        calls.append(1)
        return FisherBatch(model(batch[0]), batch[1])

    args = dict(model=mlp(), loader=mlp_data(), targets=MLP_TARGETS, forward=counting_forward)
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        diagonal_fisher(**args)
    assert not calls


def test_bad_batches_raise():
    model = mlp()
    x = torch.randn(3, 6, dtype=D)
    with pytest.raises(ValueError, match="loader yielded no samples"):
        diagonal_fisher(model, iter([]), MLP_TARGETS)
    with pytest.raises(ValueError, match=r"categorical targets must lie in \[0, 4\), got values in \[0, 7\]"):
        diagonal_fisher(model, [(x, torch.tensor([0, 7, 1]))], MLP_TARGETS)
    with pytest.raises(ValueError, match="labels='empirical' needs FisherBatch.targets"):
        diagonal_fisher(model, [(x,)], MLP_TARGETS)
    with pytest.raises(ValueError, match=r"gaussian targets must have the outputs' shape \(3, 4\)"):
        diagonal_fisher(model, [(x, torch.zeros(3, 2, dtype=D))], MLP_TARGETS, likelihood="gaussian")
    with pytest.raises(ValueError, match=r"FisherBatch.mask has shape \(2,\)"):
        diagonal_fisher(model, [(x, None)], MLP_TARGETS, lambda m, b: FisherBatch(m(b[0]), None, torch.ones(2)),
                        labels="true")
    with pytest.raises(ValueError, match="forward must return a FisherBatch"):
        diagonal_fisher(model, [(x, None)], MLP_TARGETS, lambda m, b: m(b[0]))
    # A failed batch leaves no hooks and no requires_grad change behind.
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- row / column sums without per-sample blocks


def _reductions_agree(model, loader, names, forward=None, tol=1e-6, seed=None, methods=ESTIMATORS, **kw):
    """reduce='rows'/'columns' through every estimator equals the row / column sums of the full diagonal
    (label draws from a fresh generator of ``seed`` in every call, so that all see the same labels)."""
    gen = lambda: None if seed is None else make_generator(seed)  # noqa: E731
    full = diagonal_fisher(model, loader, names, forward, method="loop", dtype=D, generator=gen(), **kw)
    for reduce, axis in (("rows", 1), ("columns", 0)):
        for method in methods:
            got = diagonal_fisher(model, loader, names, forward, method=method, dtype=D, reduce=reduce,
                                  generator=gen(), **kw)
            for name in names:
                want = full[name].sum(dim=axis)
                assert got[name].shape == want.shape and want.abs().max() > 0
                assert rel_err(got[name], want) <= tol, (reduce, method, name, rel_err(got[name], want))


@pytest.mark.parametrize("labels", ["empirical", "true"])
def test_reduced_fisher_on_tiny_vit(labels):
    model = tiny_vit()
    g = make_generator(2)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=D)
    loader = [(x[:4], torch.randint(0, 3, (4,), generator=g)), (x[4:], torch.randint(0, 3, (2,), generator=g))]
    # the bar: 1e-6 relative in float64 (rounding is ~1e-13 here, see fisher_rounding)
    _reductions_agree(model, loader, linear_names(model), labels=labels, seed=3)


def test_reduced_fisher_with_tokens_mask_and_shared_weights():
    set_random_state(0)
    model = TokenMLP().to(D)
    g = make_generator(4)
    x = torch.randn(5, 4, 5, generator=g, dtype=D)
    y = torch.randint(0, 3, (5, 4), generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1]])
    _reductions_agree(model, [(x[:3], y[:3], mask[:3]), (x[3:], y[3:], mask[3:])], ["fc1", "fc2"], token_forward)
    set_random_state(0)
    shared = SharedWeights().to(D)
    loader = [(torch.randn(5, 4, generator=g, dtype=D), torch.randint(0, 3, (5,), generator=g))]
    _reductions_agree(shared, loader, ["a", "b", "c", "head"])


def test_reduced_fisher_on_bert_with_padding():
    model = tiny_bert()
    names = [n for n in linear_names(model) if n.startswith("encoder.layer.")]
    g = make_generator(6)
    ids = torch.randint(1, 40, (4, 6), generator=g)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 5 + [0], [1] * 2 + [0] * 4])
    loader = [{"input_ids": ids, "attention_mask": mask}]
    # torch.func.vmap cannot run BERT's masked attention (data-dependent control flow): hooks vs loop
    _reductions_agree(model, loader, names, encoder_forward, likelihood="gaussian", labels="true",
                      seed=8, methods=("hooks", "loop"))


@pytest.mark.parametrize("T,in_f,out_f", [(1, 3, 5), (3, 4, 6), (40, 4, 6), (7, 30, 2)])
def test_gram_and_block_paths_of_the_row_sums_agree_with_brute_force(T, in_f, out_f):
    # both branches of _reduced_squares (Gram when T(in + out) < in·out, blocks otherwise) against G_b formed
    g_ = make_generator(T + in_f)
    x = torch.randn(3, T, in_f, generator=g_, dtype=D)
    g = torch.randn(3, T, out_f, generator=g_, dtype=D)
    G = torch.einsum("bto,bti->boi", g, x)
    for reduce, axis in (("rows", 2), ("columns", 1)):
        want = G.square().sum(dim=(0, axis))
        got = fisher_module._reduced_squares(x, g, reduce, D)
        # each entry: a sum of T·T (Gram) or T (blocks) products, then of squares: float64 rounding ×T²
        torch.testing.assert_close(got, want, rtol=sum_rounding(2 * T * T + in_f + out_f, 1.0, 64), atol=0)


def test_reduce_is_refused_with_project():
    model = mlp()
    u, v = torch.eye(8, 2, dtype=D), torch.eye(6, 2, dtype=D)
    with pytest.raises(ValueError, match="reduce='rows' with project"):
        diagonal_fisher(model, mlp_data(), ["0"], reduce="rows", project={"0": (u, v)})
    with pytest.raises(ValueError, match="reduce must be one of"):
        diagonal_fisher(model, mlp_data(), ["0"], reduce="diag")


# ---------------------------------------------------------------- LowRankLinear targets (IFHT without a dense copy)


def _low_rank_pair(model: nn.Module, names: list[str], rank: int):
    """(model with ``names`` as LowRankLinear at ``rank``, a dense copy computing the same function)."""
    from lowrank.layers import LowRankLinear
    from lowrank.surgery import replace_module

    low = copy.deepcopy(model)
    for n in names:
        replace_module(low, n, LowRankLinear.from_linear(low.get_submodule(n), rank))
    dense = copy.deepcopy(low)
    for n in names:
        replace_module(dense, n, dense.get_submodule(n).to_linear())
    return low, dense


def _low_rank_matches_dense(low, dense, loader, names, forward=None, seed=None, **kw):
    """The Fisher of W = U S Vᵀ taken on the LowRankLinear layers (hooks) equals the per-sample loop on the
    dense copy, for the full diagonal, its rows and its columns (the issue's bar: 1e-6 relative, float64;
    rounding here is ~1e-12, see fisher_rounding)."""
    gen = lambda: None if seed is None else make_generator(seed)  # noqa: E731
    want = diagonal_fisher(dense, loader, names, forward, method="loop", dtype=D, generator=gen(), **kw)
    for reduce, axis in (("none", None), ("rows", 1), ("columns", 0)):
        got = diagonal_fisher(low, loader, names, forward, method="hooks", dtype=D, reduce=reduce,
                              generator=gen(), **kw)
        for name in names:
            ref = want[name] if axis is None else want[name].sum(dim=axis)
            assert got[name].shape == ref.shape and ref.abs().max() > 0
            assert rel_err(got[name], ref) <= 1e-6, (reduce, name, rel_err(got[name], ref))


@pytest.mark.parametrize("labels", ["empirical", "true"])
def test_low_rank_targets_on_tiny_vit(labels):
    model = tiny_vit()
    names = [n for n in linear_names(model) if n.startswith("blocks.")]
    low, dense = _low_rank_pair(model, names, rank=3)
    g = make_generator(2)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=D)
    loader = [(x[:4], torch.randint(0, 3, (4,), generator=g)), (x[4:], torch.randint(0, 3, (2,), generator=g))]
    _low_rank_matches_dense(low, dense, loader, names, labels=labels, seed=3)


def test_low_rank_targets_on_bert_with_padding():
    model = tiny_bert()
    names = [n for n in linear_names(model) if n.startswith("encoder.layer.")]
    low, dense = _low_rank_pair(model, names, rank=4)
    g = make_generator(6)
    ids = torch.randint(1, 40, (4, 6), generator=g)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] * 5 + [0], [1] * 2 + [0] * 4])
    _low_rank_matches_dense(low, dense, [{"input_ids": ids, "attention_mask": mask}], names, encoder_forward,
                            likelihood="gaussian", labels="true", seed=8)


def test_low_rank_target_called_twice_and_tied():
    # "a" is called twice per forward; "b" and "c" are two LowRankLinears tied to one U, S, V
    set_random_state(0)
    model = SharedWeights().to(D)
    low, dense = _low_rank_pair(model, ["a", "b", "c"], rank=2)
    for p in ("U", "S", "V"):
        setattr(low.c, p, getattr(low.b, p))
    dense.c.weight = dense.b.weight
    g = make_generator(5)
    loader = [(torch.randn(5, 4, generator=g, dtype=D), torch.randint(0, 3, (5,), generator=g))]
    _low_rank_matches_dense(low, dense, loader, ["a", "b", "c", "head"])
    got = diagonal_fisher(low, loader, ["a", "b", "c"], dtype=D)
    assert torch.equal(got["b"], got["c"])


def test_low_rank_targets_leave_the_model_as_it_was():
    low, _ = _low_rank_pair(mlp(dropout=0.5), ["0", "3"], rank=3)
    low.train()
    before = {k: v.clone() for k, v in low.state_dict().items()}
    flags = {k: p.requires_grad for k, p in low.named_parameters()}
    diagonal_fisher(low, mlp_data(), ["0", "3", "5"], dtype=D, reduce="rows")
    assert {k: p.requires_grad for k, p in low.named_parameters()} == flags
    assert all(torch.equal(before[k], v) for k, v in low.state_dict().items())
    assert all(p.grad is None for p in low.parameters()) and low.training
    assert not any(m._forward_hooks for m in low.modules())


def test_low_rank_targets_refuse_other_methods_and_project():
    low, _ = _low_rank_pair(mlp(), ["0"], rank=3)
    for method in ("func", "loop"):
        with pytest.raises(ValueError, match=f"method='{method}'.*allowed with LowRankLinear targets: method='hooks'"):
            diagonal_fisher(low, mlp_data(), ["0"], method=method)
    u, v = torch.eye(8, 2, dtype=D), torch.eye(6, 2, dtype=D)
    with pytest.raises(ValueError, match=r"project\['0'\]: the target is a LowRankLinear"):
        diagonal_fisher(low, mlp_data(), ["0"], project={"0": (u, v)})


def test_low_rank_core_used_outside_its_module_is_refused():
    # the core S also feeds the output directly: the per-sample Γᵀ X of the module no longer projects to
    # autograd's gradient of S, and the check must say so instead of returning a wrong Fisher
    from lowrank.layers import LowRankLinear

    class Leaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = LowRankLinear.from_linear(nn.Linear(4, 3).to(D), 2)

        def forward(self, x):
            return self.lin(x) * self.lin.S.sum()  # (a constant shift would cancel in the softmax)

    set_random_state(0)
    with pytest.raises(RuntimeError, match="do not add up to the batch gradient"):
        diagonal_fisher(Leaky(), [(torch.randn(3, 4, dtype=D), torch.tensor([0, 1, 2]))], ["lin"], dtype=D)
