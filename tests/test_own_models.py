"""Models the other tests do not name, built from tiny configs (no weights): timm ConvNeXt and Swin, Hugging
Face GPT-2 (``Conv1D``, a tied LM head), a Llama-style model with grouped-query attention, BERT and GPT-2
folders through the command line. Each compresses, saves, reloads in one call (``lowrank.from_pretrained``)
and gives outputs bit-identical to the in-memory compressed model."""
from __future__ import annotations

import copy
import json

import pytest
import torch

import lowrank
from lowrank import FactorizedLinear
from lowrank.fisher import default_forward, diagonal_fisher
from lowrank.layers import as_linear
from lowrank.linalg import AUTO_RIDGES, activation_aware_projection, auto_ridge, truncated_svd

from .tolerances import EPS32

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

EXACT = {"rtol": 0.0, "atol": 0.0}   # the same tensors through the same kernels on the same input

_CONVNEXT = {"num_classes": 5, "dims": (16, 32, 48, 64), "depths": (1, 1, 2, 1)}
_SWIN = {"num_classes": 5, "embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "img_size": 56,
         "window_size": 7}


def _timm(name, args):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **args).eval()


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _ids(b=4, t=12):
    return torch.randint(0, 100, (b, t), generator=torch.Generator().manual_seed(1))


def _roundtrip(model, tmp_path, run, base=None):
    """save → from_pretrained → the same outputs, bit for bit; returns the reloaded model."""
    lowrank.save_compressed(model, tmp_path, base=base)
    again = lowrank.from_pretrained(tmp_path)
    assert type(again) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(run(again), run(model), **EXACT)
    return again


# ------------------------------------------------------------------------------ the table, row by row
@pytest.mark.parametrize("method", ["svd", "fwsvd"])
def test_convnext_svd_fwsvd_roundtrip(tmp_path, method):
    model = _timm("convnext_tiny", _CONVNEXT)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    calib = [(x,)] if method == "fwsvd" else None
    _, rep = lowrank.compress(model, method=method, params_fraction=0.5, calibration=calib)
    assert len(rep.ranks) == 10 and rep.after.total < rep.before.total
    _roundtrip(model, tmp_path, lambda m: m(x), base={"library": "timm", "name": "convnext_tiny", "args": _CONVNEXT})


def test_convnext_asvd_works_as_is(tmp_path):
    model = _timm("convnext_tiny", _CONVNEXT)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    _, rep = lowrank.compress(model, method="asvd", params_fraction=0.5, calibration=[(x,)])
    assert len(rep.ranks) == 10
    _roundtrip(model, tmp_path, lambda m: m(x), base={"library": "timm", "name": "convnext_tiny", "args": _CONVNEXT})


def _rounded_moment(n=48, seed=0):
    """A second moment whose smallest eigenvalue is negative at float32's rounding of its largest, as a
    float32-accumulated moment of a steep spectrum is."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.logspace(4, -8, n, dtype=torch.float64)
    lam[-1] = -10 * EPS32 * lam[0]
    return (Q * lam) @ Q.mT


def test_asvd_ridge_default_scaled_and_named():
    C = _rounded_moment()
    W = torch.randn(16, C.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"projection_kwargs=\{'ridge'"):
        activation_aware_projection(W, C, 4)      # the old fixed 1e-6 · tr(C)/n is below the rounding
    ridge = auto_ridge(C)
    assert ridge > AUTO_RIDGES[0]
    f = activation_aware_projection(W, C, 4, ridge="auto")
    ref = activation_aware_projection(W, C, 4, ridge=ridge)
    torch.testing.assert_close(f.U @ torch.diag(f.S) @ f.Vh, ref.U @ torch.diag(ref.S) @ ref.Vh, **EXACT)
    # a well-conditioned moment keeps the smallest ridge: the same factors as the explicit 1e-6
    X = torch.randn(200, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    W2 = torch.randn(6, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert auto_ridge(X.mT @ X) == AUTO_RIDGES[0]
    a, b = activation_aware_projection(W2, X.mT @ X, 3, ridge="auto"), activation_aware_projection(W2, X.mT @ X, 3)
    torch.testing.assert_close(a.Vh, b.Vh, **EXACT)


def test_swin_svd_roundtrip(tmp_path):
    model = _timm("swin_tiny_patch4_window7_224", _SWIN)
    x = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    _, rep = lowrank.compress(model, method="svd", params_fraction=0.5)
    assert len(rep.ranks) == 19
    _roundtrip(model, tmp_path, lambda m: m(x),
               base={"library": "timm", "name": "swin_tiny_patch4_window7_224", "args": _SWIN})


def test_swin_fwsvd_picks_an_estimator_that_runs(tmp_path):
    model = _timm("swin_tiny_patch4_window7_224", _SWIN)
    x = torch.randn(3, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="fisher_method='hooks' cannot run"):
        lowrank.compress(copy.deepcopy(model), method="fwsvd", params_fraction=0.5, calibration=[(x,)],
                         fisher_method="hooks")
    _, rep = lowrank.compress(model, method="fwsvd", params_fraction=0.5, calibration=[(x,)])
    assert rep.calibration["fisher_method"] == "loop" and len(rep.ranks) == 19
    _roundtrip(model, tmp_path, lambda m: m(x),
               base={"library": "timm", "name": "swin_tiny_patch4_window7_224", "args": _SWIN})


def test_hooks_fisher_on_four_axis_inputs_matches_the_loop():
    """ConvNeXt's MLP sees (B, H, W, C): the batched hooks give the per-sample reference's Fisher."""
    model = _timm("convnext_tiny", _CONVNEXT)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    name = "stages.0.blocks.0.mlp.fc1"
    seen = []
    h = model.get_submodule(name).register_forward_hook(lambda m, a, o: seen.append(a[0].shape))
    model(x)
    h.remove()
    assert tuple(seen[0]) == (3, 16, 16, 16)
    kw = dict(labels="true", dtype=torch.float64)
    F_h = diagonal_fisher(model, [(x,)], [name], default_forward, method="hooks",
                          generator=torch.Generator().manual_seed(0), **kw)[name]
    F_l = diagonal_fisher(model, [(x,)], [name], default_forward, method="loop",
                          generator=torch.Generator().manual_seed(0), **kw)[name]
    # float32 per-sample gradients summed over 16·16 positions in two orders: 4·256·eps32 relative
    torch.testing.assert_close(F_h, F_l, rtol=4 * 256 * EPS32, atol=4 * 256 * EPS32 * float(F_l.max()))


# ------------------------------------------------------------------------------ GPT-2: Conv1D and the tied head
def test_gpt2_auto_targets_are_the_conv1d_blocks():
    names = list(lowrank.find_linear_layers(_gpt2(), "auto"))
    assert names == [f"transformer.h.{i}.{p}" for i in range(2)
                     for p in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


def test_conv1d_axis_convention():
    conv = _gpt2().transformer.h[0].mlp.c_fc            # weight (in 32, out 128)
    lin = as_linear(conv)
    x = torch.randn(5, 32, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    assert (lin.out_features, lin.in_features) == (128, 32)
    # addmm vs linear: the same 32-term dot products in possibly another order
    torch.testing.assert_close(lin(x), conv(x), rtol=0,
                               atol=4 * 32 * EPS32 * float((x.abs() @ conv.weight.detach().abs()).max()))
    model = _gpt2()
    lowrank.compress(model, method="svd", rank=3, targets=["transformer.h.0.mlp.c_fc"])
    f = truncated_svd(conv.weight.detach().mT.contiguous(), 3)
    got = model.get_submodule("transformer.h.0.mlp.c_fc")
    assert isinstance(got, FactorizedLinear)
    torch.testing.assert_close(got.weight, (f.U * f.S) @ f.Vh, rtol=0, atol=64 * 128 * EPS32 * float(f.S[0]))


def test_conv1d_fisher_hooks_match_the_loop():
    model = _gpt2()
    names = ["transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_proj"]
    batch = {"input_ids": _ids()}
    F_h = diagonal_fisher(model, [batch], names, default_forward, method="hooks", labels="true",
                          generator=torch.Generator().manual_seed(0))
    F_l = diagonal_fisher(model, [batch], names, default_forward, method="loop", labels="true",
                          generator=torch.Generator().manual_seed(0))
    for n in names:
        assert F_h[n].shape == tuple(model.get_submodule(n).weight.shape[::-1])   # (out, in)
        # float32 per-sample gradients over 12 positions summed in two orders
        torch.testing.assert_close(F_h[n], F_l[n], rtol=4 * 12 * EPS32, atol=4 * 12 * EPS32 * float(F_l[n].max()))


@pytest.mark.parametrize("method", ["svd", "fwsvd", "asvd", "ttm"])
def test_gpt2_one_shot_roundtrip(tmp_path, method):
    model = _gpt2()
    ids = _ids()
    calib = [{"input_ids": ids}] if method in ("fwsvd", "asvd") else None
    _, rep = lowrank.compress(model, method=method, params_fraction=0.6, calibration=calib)
    assert len(rep.ranks) == 8 and rep.after.total < rep.before.total
    _roundtrip(model, tmp_path, lambda m: m(ids).logits)


def test_gpt2_training_form_and_compile():
    """Conv1D → U S Vᵀ (the t = delay step of Algorithms 1–2), a training step, then the compiled A·B."""
    model = _gpt2().train()
    ids = _ids()
    dense = {n: as_linear(m).weight.detach().clone() for n, m in lowrank.find_linear_layers(model, "auto").items()}
    lowrank.to_low_rank(model, "auto")
    for n, W in dense.items():                  # full rank: U S Vᵀ is the (out, in) weight to SVD rounding
        torch.testing.assert_close(model.get_submodule(n).weight.detach(), W, rtol=0,
                                   atol=64 * max(W.shape) * EPS32 * float(torch.linalg.matrix_norm(W, 2)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(ids, labels=ids).loss.backward()
    opt.step()
    lowrank.compile_model(model)
    assert torch.isfinite(model(ids).logits).all()


def test_tied_head_refused_unless_untied():
    model = _gpt2()
    with pytest.raises(ValueError, match=r"lm_head: its weight is tied to \['transformer.wte'\].*untie=True"):
        lowrank.compress(model, method="svd", rank=4, targets=["lm_head"])
    assert model.lm_head.weight is model.transformer.wte.weight       # refused before any change
    _, rep = lowrank.compress(model, method="svd", rank=4, targets=["lm_head"], untie=True)
    # the embedding stays; the head's factors are new: the model grows by exactly them
    assert rep.untied == {"lm_head": 100 * 32}
    assert rep.after.total - rep.before.total == 4 * (100 + 32)
    assert rep.as_dict()["achieved_fraction_total"] > 1


# ------------------------------------------------------------------------------ Llama-style GQA
def test_llama_gqa_roundtrip(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=100, max_position_embeddings=32)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = _ids()
    _, rep = lowrank.compress(model, method="fwsvd", params_fraction=0.5, calibration=[{"input_ids": ids}])
    assert len(rep.ranks) == 14 and rep.calibration["fisher_method"] == "hooks"
    again = _roundtrip(model, tmp_path, lambda m: m(ids).logits)
    k = again.model.layers[0].self_attn.k_proj
    assert (k.in_features, k.out_features) == (32, 16)                  # 2 kv heads × head dim 8
    structure = json.loads((tmp_path / "structure.json").read_text())["layers"]
    assert structure["model.layers.0.self_attn.v_proj"]["out_features"] == 16


def test_folder_without_a_base_says_how_to_load(tmp_path):
    model = _timm("convnext_tiny", _CONVNEXT)
    lowrank.compress(model, method="svd", params_fraction=0.5)
    lowrank.save_compressed(model, tmp_path)
    with pytest.raises(ValueError, match="records no base model.*load_compressed"):
        lowrank.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------ folders through the command line
def test_cli_gpt2_folder_loads_as_lm_and_reloads(tmp_path, capsys):
    from lowrank.cli import main
    _gpt2().save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "out"
    assert main(["compress", "--model", str(tmp_path / "gpt2"), "--method", "svd", "--params-fraction", "0.6",
                 "--out", str(out)]) == 0
    line = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["class"] == "GPT2LMHeadModel"
    total = report["compression"]["achieved_fraction_total"]
    assert f"whole model {100 * total:.1f}%" in line and total < 1
    again = lowrank.from_pretrained(out)
    ref = lowrank.load_compressed(transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2"), out)
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, ref(ids).logits, **EXACT)


def test_cli_bert_folder_summary_gives_both_fractions(tmp_path, capsys):
    from lowrank.cli import main
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "bert")
    out = tmp_path / "out"
    main(["compress", "--model", str(tmp_path / "bert"), "--method", "svd", "--params-fraction", "0.3",
          "--out", str(out)])
    line = capsys.readouterr().out
    c = json.loads((out / "report.json").read_text())["compression"]
    assert f"target params {100 * c['achieved_fraction']:.1f}%" in line
    assert f"whole model {100 * c['achieved_fraction_total']:.1f}%" in line
    assert c["achieved_fraction_total"] > c["achieved_fraction"]       # embeddings are not targets
    again = lowrank.from_pretrained(out)
    ref = lowrank.load_compressed(transformers.BertModel.from_pretrained(tmp_path / "bert"), out)
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(again(ids).last_hidden_state, ref(ids).last_hidden_state, **EXACT)
