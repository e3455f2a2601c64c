"""The public one-call API: ``targets="auto"`` on six architectures, :func:`lowrank.compress` (ranks,
parameter counts, statistics, the energy rule) and its refusals of bad input before any work."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn

import lowrank
from lowrank import FactorizedLinear, TTLinear, auto_targets, compress, find_linear_layers
from lowrank.fisher import diagonal_fisher
from lowrank.linalg import select_rank, truncated_svd
from lowrank.surgery import TARGET_PRESETS
from lowrank.utils import make_generator

from . import models_small as ms
from .tolerances import EPS32, factorization_rounding


def _build(arch):
    torch.manual_seed(0)
    model, expected = ms.ARCHITECTURES[arch]()
    return model.eval(), expected


# ------------------------------------------------------------------------------------------ item 1: auto targets
@pytest.mark.parametrize("arch", sorted(ms.ARCHITECTURES))
def test_auto_targets_are_the_block_linears(arch):
    model, expected = _build(arch)
    assert auto_targets(model) == expected
    assert list(find_linear_layers(model, "auto")) == expected
    every = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    left = every - set(expected)
    # whatever is left is outside the blocks: embeddings, poolers, heads
    assert all(not n.startswith(("blocks.", "stages.")) and ".layer." not in n for n in left), left


def test_auto_matches_the_presets_where_they_exist():
    vit, _ = _build("timm_vit")
    assert auto_targets(vit) == list(find_linear_layers(vit, "vit_all"))
    bert, _ = _build("hf_bert")
    assert auto_targets(bert) == list(find_linear_layers(bert, "bert_all"))


@pytest.mark.parametrize("arch", ["hf_distilbert", "unnamed"])
def test_no_preset_names_these_models(arch):
    model, _ = _build(arch)
    for preset in TARGET_PRESETS:
        with pytest.raises(ValueError, match="matched no Linear"):
            find_linear_layers(model, preset)


def test_auto_skips_multihead_attention_and_single_linear_heads():
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    model = nn.Sequential(nn.Linear(4, 16), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
                          nn.Linear(16, 3))
    # nn.MultiheadAttention reads out_proj.weight directly: its Linear must not be a target
    assert auto_targets(model) == [f"1.layers.{i}.{n}" for i in range(2) for n in ("linear1", "linear2")]
    heads = nn.ModuleDict({"heads": nn.ModuleList(nn.Sequential(nn.Linear(4, 4)) for _ in range(3))})
    with pytest.raises(ValueError, match="no repeated block"):
        auto_targets(heads)


def test_auto_finds_factorised_layers_of_a_compressed_model():
    model, expected = _build("timm_vit")
    compress(model, method="svd", rank=2)
    assert list(find_linear_layers(model, "auto", include_factorized=True)) == expected


# ------------------------------------------------------------------------------------------ item 2: compress
def _dense_target_params(model, names):
    return sum(model.get_submodule(n).weight.numel() + model.get_submodule(n).bias.numel() for n in names)


def test_uniform_fraction_ranks_and_counts_computed_independently():
    model, names = _build("timm_vit")
    dense_total = sum(p.numel() for p in model.parameters())
    shapes = {n: tuple(model.get_submodule(n).weight.shape) for n in names}
    f = 0.3
    _, rep = compress(model, method="svd", params_fraction=f)
    # the largest k with k(m + n) + m ≤ f (mn + m), every layer (all have biases)
    want = {n: math.floor((f * (m * k + m) - m) / (m + k)) for n, (m, k) in shapes.items()}
    assert rep.ranks == want
    target = sum(r * (m + k) + m for (m, k), r in zip(shapes.values(), want.values()))
    dense_target = sum(m * k + m for m, k in shapes.values())
    assert rep.after.target == target and rep.before.target == dense_target
    assert rep.after.total == dense_total - dense_target + target
    assert rep.after.total == sum(p.numel() for p in model.parameters())
    assert rep.achieved_fraction <= f
    assert all(isinstance(model.get_submodule(n), FactorizedLinear) for n in names)


def test_compressed_layer_is_the_truncated_svd():
    model, names = _build("timm_vit")
    W = {n: model.get_submodule(n).weight.detach().clone() for n in names}
    compress(model, method="svd", rank=3)
    for n in names:
        ref = truncated_svd(W[n], 3).matrix()
        got = model.get_submodule(n).weight.detach()
        # float32 SVD of a ≤ 64-wide matrix, recombined: backward-stable factorisation rounding
        torch.testing.assert_close(got, ref, rtol=0, atol=factorization_rounding(max(W[n].shape),
                                                                                 torch.linalg.norm(W[n], 2),
                                                                                 eps=EPS32))


def test_energy_rule_is_the_largest_threshold_that_fits():
    model, names = _build("timm_vit")
    spectra = {n: torch.linalg.svdvals(model.get_submodule(n).weight.detach().double()) for n in names}
    shapes = {n: tuple(model.get_submodule(n).weight.shape) for n in names}
    f = 0.3
    budget = f * sum(m * k + m for m, k in shapes.values())
    _, rep = compress(model, method="svd", params_fraction=f, rank_rule="energy")
    beta = rep.energy_beta
    assert rep.ranks == {n: select_rank(s, "energy", beta=beta) for n, s in spectra.items()}
    cost = lambda ranks: sum(r * (shapes[n][0] + shapes[n][1]) + shapes[n][0] for n, r in ranks.items())  # noqa: E731
    assert cost(rep.ranks) == rep.after.target <= budget
    # the next value of β at which any rank grows no longer fits
    fractions = sorted({float(v) for s in spectra.values() for v in torch.cumsum(s ** 2, 0) / (s ** 2).sum()})
    # (the fractions here and in compress are ratios of float64 cumulative sums computed in two orders: the
    # same threshold may differ in the last bits, so a value within 1e-9 relative of β is β itself)
    nxt = [b for b in fractions if b > beta * (1 + 1e-9)]
    if nxt:
        assert cost({n: select_rank(s, "energy", beta=nxt[0]) for n, s in spectra.items()}) > budget
    assert len(set(rep.ranks.values())) > 1        # the rule spends the budget unevenly


@pytest.mark.parametrize("arch", ["timm_deit", "hf_roberta", "hf_distilbert", "unnamed"])
def test_fwsvd_on_each_architecture(arch):
    model, names = _build(arch)
    calib = ms.batches_for(arch)
    ref_model = copy.deepcopy(model)
    _, rep = compress(model, method="fwsvd", params_fraction=0.5, calibration=calib)
    assert rep.targets == names and set(rep.ranks) == set(names)
    n_samples = sum((b["input_ids"] if isinstance(b, dict) else b[0]).shape[0] for b in calib)
    assert rep.calibration["samples"] == n_samples and rep.calibration["batches"] == len(calib)
    # the Fisher in the report is the one diagonal_fisher measures on the same data and generator
    F = diagonal_fisher(ref_model, calib, names, lowrank.fisher.default_forward, labels="true",
                        generator=make_generator(0), dtype=torch.float64)
    for n in names:
        torch.testing.assert_close(rep.fisher[n], F[n].float(), rtol=0, atol=0)
    stats = rep.as_dict()["statistics"]
    assert set(stats) == set(names) and all(s["fisher_total"] > 0 for s in stats.values())
    assert rep.achieved_fraction <= 0.5
    with torch.no_grad():
        out = ms.run(model, calib[0])
    assert torch.isfinite(out).all()


def test_calibration_sample_count_and_asvd_moments():
    model, names = _build("hf_bert")
    calib = ms.token_batches(n_batches=3, batch=4)
    _, rep = compress(model, method="asvd", rank=4, calibration=calib)
    assert rep.calibration == {"batches": 3, "samples": 12, "statistic": "input second moment",
                               "likelihood": None, "labels": None}
    assert set(rep.second_moments) == set(names)
    assert all(rep.second_moments[n].shape == (m.in_features, m.in_features)
               for n, m in ((n, find_linear_layers(model, "auto", include_factorized=True)[n]) for n in names))


@pytest.mark.parametrize("method", ["ttm", "fwttm"])
def test_tensor_train_fraction(method):
    model, names = _build("timm_vit")
    calib = ms.image_batches() if method == "fwttm" else None
    _, rep = compress(model, method=method, params_fraction=0.5, calibration=calib, tt_cores=2)
    assert all(isinstance(model.get_submodule(n), TTLinear) for n in names)
    layer_counts = {n: sum(p.numel() for p in model.get_submodule(n).parameters()) for n in names}
    assert rep.after.target == sum(layer_counts.values())
    assert rep.achieved_fraction <= 0.5


def test_fraction_one_keeps_every_layer_dense():
    model, names = _build("timm_vit")
    before = copy.deepcopy(model.state_dict())
    _, rep = compress(model, method="svd", params_fraction=1.0)
    assert rep.ranks == {} and set(rep.skipped) == set(names) and rep.achieved_fraction == 1.0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# ------------------------------------------------------------------------------------------ item 6: bad input
def _unchanged(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items()) and \
        not any(isinstance(m, (FactorizedLinear, TTLinear)) for m in model.modules())


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "bogus", "rank": 2}, r"method='bogus' is not a known one-shot method; allowed: svd"),
    ({"method": "ieht", "rank": 2}, r"method='ieht' is iterative"),
    ({"method": "svd", "params_fraction": 0.0}, r"params_fraction=0.0 is outside the allowed range \(0, 1\]"),
    ({"method": "svd", "params_fraction": 1.5}, r"params_fraction=1.5 is outside the allowed range \(0, 1\]"),
    ({"method": "svd", "params_fraction": float("nan")}, r"params_fraction=nan is outside"),
    ({"method": "svd", "params_fraction": True}, r"params_fraction=True is outside"),
    ({"method": "svd"}, r"exactly one of rank= and params_fraction="),
    ({"method": "svd", "rank": 2, "params_fraction": 0.5}, r"exactly one of rank="),
    ({"method": "svd", "rank": 99}, r"blocks.0.attn.qkv: rank=99 is outside the allowed range \[1, min\(m, n\)\]"),
    ({"method": "svd", "params_fraction": 0.5, "rank_rule": "greedy"}, r"rank_rule='greedy'; allowed: uniform, energy"),
    ({"method": "ttm", "params_fraction": 0.5, "rank_rule": "energy"}, r"rank_rule='energy' chooses ranks"),
    ({"method": "fwsvd", "rank": 2}, r"method='fwsvd' measures statistics on calibration data"),
    ({"method": "svd", "rank": 2, "calibration": [1]}, r"method='svd' uses no calibration data"),
    ({"method": "svd", "params_fraction": 1e-4}, r"params_fraction=0.0001 cannot be met"),
    ({"method": "svd", "rank": 2, "targets": "bert_all"}, r"targets='bert_all' matched no Linear"),
])
def test_bad_arguments_are_refused_before_any_work(kwargs, match):
    model, _ = _build("timm_vit")
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=match):
        compress(model, **kwargs)
    assert _unchanged(model, state)


def test_a_model_without_linear_layers():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match=r"targets='auto': the model \(Sequential\) has no nn.Linear layer"):
        compress(model, method="svd", rank=1)


def test_a_model_with_linears_but_no_blocks():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"has 2 Linear layers but no repeated block.*targets=\['0', \.\.\.\]"):
        compress(model, method="svd", rank=1)


@pytest.mark.parametrize("calib, match", [
    ([(torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))],
     r"calibration: the first batch \(tuple\(tensor \(4, 3, 8, 8\).*does not fit the model VisionTransformer"),
    ([{"input_ids": torch.zeros(2, 5, dtype=torch.long)}], r"calibration: the first batch .*does not fit"),
    ([], r"calibration is empty"),
    ("digits", r"calibration must be an iterable of batches"),
    ([["a", "b"]], r"calibration: a batch must be a tensor"),
])
def test_calibration_that_does_not_fit_the_model(calib, match):
    model, _ = _build("timm_vit")
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=match):
        compress(model, method="fwsvd", params_fraction=0.5, calibration=calib)
    assert _unchanged(model, state)


def test_an_encoder_needs_the_gaussian_likelihood():
    """The default forward wants logits; the error says what to pass for an encoder, which then works."""
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    enc = BertModel(BertConfig(**ms._TINY)).eval()
    calib = [{k: v for k, v in b.items() if k != "labels"} for b in ms.token_batches()]
    with pytest.raises(ValueError, match=r"does not fit the model BertModel.*likelihood='gaussian'"):
        compress(enc, method="fwsvd", rank=4, calibration=calib)
    _, rep = compress(enc, method="fwsvd", rank=4, calibration=calib, likelihood="gaussian",
                      forward=lowrank.fisher.encoder_forward)
    assert rep.calibration["likelihood"] == "gaussian" and len(rep.ranks) == 12


@pytest.mark.parametrize("method, rule", [("fwsvd", "uniform"), ("fwsvd", "energy"), ("fwttm", "uniform")])
def test_an_unreachable_fraction_is_refused_before_the_fisher(monkeypatch, method, rule):
    import lowrank.projection as projection   # where compress() measures its statistics

    def no_fisher(*args, **kwargs):
        raise AssertionError("the Fisher must not be measured for a fraction that cannot be met")
    monkeypatch.setattr(projection, "diagonal_fisher", no_fisher)
    model, _ = _build("timm_vit")
    with pytest.raises(ValueError, match=r"params_fraction=0.001 cannot be met"):
        compress(model, method=method, params_fraction=0.001, rank_rule=rule, calibration=ms.image_batches())
