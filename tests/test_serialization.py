"""save_compressed / load_compressed: round trips (outputs equal) on a timm ViT, the real MiniLM and a
tensor-train model; no pickle on load; a clear error naming the layer when the structure does not fit."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from lowrank import (FactorizedLinear, LowRankLinear, TTLinear, compress, compress_model, load_compressed,
                     save_compressed)
from lowrank.serialization import STRUCTURE_FILE, WEIGHTS_FILE

from . import models_small as ms

# The loaded model holds bit-identical tensors of the same shapes and runs the same kernels in the same
# order on the same inputs, so its outputs are bit-identical: no rounding separates the two.
EXACT = {"rtol": 0.0, "atol": 0.0}


def _forbid_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_compressed must not unpickle")
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def _assert_same_tensors(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("form", ["factorized", "low_rank"])
def test_vit_round_trip(tmp_path, monkeypatch, form):
    torch.manual_seed(0)
    model, names = ms.vit()
    model.eval()
    _, rep = compress(model, method="svd", params_fraction=0.4, form=form)
    save_compressed(model, tmp_path, metadata={"report": rep.as_dict()})
    doc = json.loads((tmp_path / STRUCTURE_FILE).read_text())
    kind = FactorizedLinear if form == "factorized" else LowRankLinear
    assert doc["layers"] == {n: {"type": form, "in_features": model.get_submodule(n).in_features,
                                 "out_features": model.get_submodule(n).out_features, "rank": rep.ranks[n],
                                 "bias": True} for n in names}
    assert doc["metadata"]["report"]["ranks"] == rep.ranks
    _forbid_pickle(monkeypatch)
    torch.manual_seed(1)                   # a base with other random weights: everything must come from disk
    fresh, _ = ms.vit()
    loaded = load_compressed(fresh, tmp_path)
    assert all(isinstance(loaded.get_submodule(n), kind) for n in names)
    _assert_same_tensors(loaded, model)
    x = ms.image_batches()[0][0]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), **EXACT)


def test_minilm_round_trip(tmp_path, monkeypatch):
    from lowrank.models import minilm_encoder
    model = minilm_encoder().eval()
    _, rep = compress(model, method="svd", params_fraction=0.25)
    assert len(rep.ranks) == 36                  # 6 layers × (q, k, v, attention output, intermediate, output)
    save_compressed(model, tmp_path)
    _forbid_pickle(monkeypatch)
    loaded = load_compressed(minilm_encoder(), tmp_path)
    _assert_same_tensors(loaded, model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   model(input_ids=ids, attention_mask=mask).last_hidden_state, **EXACT)


def test_tensor_train_round_trip(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model, names = ms.vit()
    model.eval()
    _, rep = compress(model, method="ttm", rank=3, tt_cores=3)
    save_compressed(model, tmp_path)
    doc = json.loads((tmp_path / STRUCTURE_FILE).read_text())
    for n in names:
        layer = model.get_submodule(n)
        assert doc["layers"][n]["type"] == "tt"
        assert doc["layers"][n]["ranks"] == list(layer.ranks) == list(rep.ranks[n])
        assert doc["layers"][n]["out_modes"] == list(layer.shape.out_modes)
    _forbid_pickle(monkeypatch)
    torch.manual_seed(1)
    loaded = load_compressed(ms.vit()[0], tmp_path)
    assert all(isinstance(loaded.get_submodule(n), TTLinear) for n in names)
    _assert_same_tensors(loaded, model)
    x = ms.image_batches()[0][0]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), **EXACT)


def test_hf_bert_round_trip_with_tied_weights(tmp_path):
    """A masked-LM head shares its decoder weight with the word embeddings; the tie survives."""
    from transformers import BertConfig, BertForMaskedLM
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**ms._TINY)).eval()
    compress(model, method="svd", rank=4)
    save_compressed(model, tmp_path)
    torch.manual_seed(1)
    loaded = load_compressed(BertForMaskedLM(BertConfig(**ms._TINY)), tmp_path)
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    ids = ms.token_batches()[0]["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits, **EXACT)


def test_files_are_safetensors_and_json(tmp_path):
    from safetensors import safe_open
    torch.manual_seed(0)
    model, _ = ms.vit()
    compress(model, method="svd", rank=2)
    save_compressed(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [WEIGHTS_FILE, STRUCTURE_FILE]
    with safe_open(str(tmp_path / WEIGHTS_FILE), framework="pt") as fh:
        assert set(fh.keys()) == set(model.state_dict())


# ------------------------------------------------------------------------------------------ errors
def _saved_vit(tmp_path):
    torch.manual_seed(0)
    model, _ = ms.vit()
    compress(model, method="svd", rank=2)
    save_compressed(model, tmp_path)
    return model


def test_wrong_width_names_the_layer(tmp_path):
    from timm.models.vision_transformer import VisionTransformer
    _saved_vit(tmp_path)
    other = VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=48, depth=2,
                              num_heads=2, mlp_ratio=2.0)
    state = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match=r"blocks.0.attn.qkv: the structure expects an nn.Linear 32→96 \(bias=True\), "
                                         r"the base model has 48→144"):
        load_compressed(other, tmp_path)
    assert all(torch.equal(v, state[k]) for k, v in other.state_dict().items())     # untouched


def test_missing_layer_names_the_layer(tmp_path):
    from timm.models.vision_transformer import VisionTransformer
    _saved_vit(tmp_path)
    shallow = VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=1,
                                num_heads=2, mlp_ratio=2.0)
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.proj, .*blocks\.1\.mlp\.fc2: the structure factorises "
                                         r"layers the base model does not have"):
        load_compressed(shallow, tmp_path)


def test_other_head_names_the_tensor(tmp_path):
    from timm.models.vision_transformer import VisionTransformer
    _saved_vit(tmp_path)
    other = VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=7, embed_dim=32, depth=2,
                              num_heads=2, mlp_ratio=2.0)
    with pytest.raises(ValueError, match=r"head.weight: stored shape \(10, 32\), the base model with this structure "
                                         r"has \(7, 32\)"):
        load_compressed(other, tmp_path)
    assert not any(isinstance(m, FactorizedLinear) for m in other.modules())


def test_a_non_linear_at_the_name(tmp_path):
    _saved_vit(tmp_path)
    torch.manual_seed(0)
    base, _ = ms.vit()
    base.blocks[0].attn.qkv = torch.nn.Identity()
    with pytest.raises(ValueError, match=r"blocks.0.attn.qkv: .*in the base model it is a Identity, not an nn.Linear"):
        load_compressed(base, tmp_path)


def test_save_refuses_a_dense_model_and_load_an_empty_folder(tmp_path):
    torch.manual_seed(0)
    model, _ = ms.vit()
    with pytest.raises(ValueError, match="has no factorised layer"):
        save_compressed(model, tmp_path / "a")
    with pytest.raises(ValueError, match=r"must hold structure.json and model.safetensors"):
        load_compressed(model, tmp_path)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_compress_model_form_round_trip(tmp_path):
    """The library's lower-level compress_model output saves and loads the same way."""
    torch.manual_seed(0)
    model, _ = ms.vit()
    model.eval()
    compress_model(model, "vit_mlp", method="svd", rank=3)
    save_compressed(model, tmp_path)
    torch.manual_seed(2)
    loaded = load_compressed(ms.vit()[0], tmp_path)
    x = ms.image_batches()[0][0]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), **EXACT)
