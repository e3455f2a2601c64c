"""Model registry: small timm ViTs, ViT-B/16, the packaged MiniLM, BERT-base's offline failure and local path."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from lowrank import models
from lowrank.data import TokenizedTextDataset
from lowrank.utils import atomic_save, atomic_write_bytes, atomic_write_text, set_random_state


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """Offline Hugging Face Hub with an empty cache; the libraries read these values at import, so
    the module attributes are set as well as the environment."""
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.fixture(scope="module")
def tokenizer():
    return models.build_tokenizer("minilm")


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _one_sentence(msg: str) -> bool:
    return msg.count(". ") == 0 and len(msg) < 450


# ----------------------------------------------------------------------------------------------- small ViTs


def test_vit_digits_shapes_and_size():
    set_random_state(0)
    m = models.build_model("vit_digits", num_classes=10)
    assert m.patch_embed.num_patches == 16 and m.embed_dim == 64 and len(m.blocks) == 4
    assert 150_000 < _n_params(m) < 250_000
    out = m(torch.randn(5, 1, 8, 8))
    assert out.shape == (5, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    # surgery relies on timm's module names
    names = dict(m.named_modules())
    assert (isinstance(names["blocks.3.mlp.fc1"], torch.nn.Linear)
            and names["blocks.3.mlp.fc1"].weight.shape == (256, 64))


def test_vit_mnist1d_reads_sequences():
    set_random_state(0)
    m = models.build_model("vit_mnist1d", num_classes=10).eval()
    assert isinstance(m, models.SequenceVisionTransformer)
    assert m.patch_embed.num_patches == 10
    x = torch.randn(3, 1, 40)
    out = m(x)
    assert out.shape == (3, 10)
    torch.testing.assert_close(out, m(x.unsqueeze(2)))  # (B, 1, 40) is the 1×40 image
    # tokens are 1×4 patches: changing only the last 4 samples changes only one patch embedding
    x2 = x.clone()
    x2[..., -4:] += 1.0
    tokens = m.patch_embed(x.unsqueeze(2))
    tokens2 = m.patch_embed(x2.unsqueeze(2))
    changed = (tokens - tokens2).abs().sum(-1).squeeze(0) > 0
    assert changed.sum(1).tolist() == [1, 1, 1] and changed[:, -1].all()


def test_small_vit_overrides_and_bad_input():
    m = models.build_model("vit_digits", num_classes=3, depth=2, embed_dim=32, patch_size=4)
    assert len(m.blocks) == 2 and m.patch_embed.num_patches == 4 and m.head.out_features == 3
    with pytest.raises(ValueError, match=r"pretrained=True is not available for 'vit_digits'"):
        models.build_model("vit_digits", pretrained=True)
    with pytest.raises(ValueError, match=r"patch_len must divide seq_len=40, got patch_len=3"):
        models.vit_mnist1d(patch_len=3)


def test_registry_errors():
    with pytest.raises(ValueError, match=r"name='resnet'.*allowed values.*'bert_base'.*'minilm'.*'vit_b16'"):
        models.build_model("resnet")
    with pytest.raises(ValueError, match=r"num_classes must be a positive int, got 0"):
        models.build_model("vit_digits", num_classes=0)
    with pytest.raises(ValueError, match=r"num_classes=3 and num_labels=4 disagree"):
        models.build_model("minilm", num_classes=3, num_labels=4)
    with pytest.raises(ValueError, match=r"name='gpt2' has no tokenizer; allowed values"):
        models.build_tokenizer("gpt2")


# ----------------------------------------------------------------------------------------------- ViT-B/16


def test_vit_b16_random_init_builds_offline():
    set_random_state(0)
    m = models.build_model("vit_b16", num_classes=10, pretrained=False).eval()
    # timm's 86,567,656 for the 1000-class head, minus 990 head rows of 768 weights + 1 bias
    assert _n_params(m) == 86_567_656 - 990 * 769
    with torch.no_grad():
        out = m(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


def test_vit_b16_pretrained_offline_raises_clear_error(hf_offline):
    t0 = time.perf_counter()
    with pytest.raises(models.ModelUnavailable, match=r"pretrained vit_base_patch16_224 weights .* weights=") as err:
        models.build_model("vit_b16", num_classes=10, depth=1)  # depth=1: the model is built before the fetch
    assert time.perf_counter() - t0 < 15 and _one_sentence(str(err.value))


def test_vit_b16_local_weights_file(tmp_path):
    set_random_state(0)
    source = models.vit_b16(num_classes=1000, pretrained=False, depth=1)
    atomic_save(source.state_dict(), tmp_path / "vit.pth")
    set_random_state(1)
    m = models.build_model("vit_b16", num_classes=10, weights=tmp_path / "vit.pth", depth=1)
    torch.testing.assert_close(m.patch_embed.proj.weight, source.patch_embed.proj.weight)
    torch.testing.assert_close(m.blocks[0].mlp.fc1.weight, source.blocks[0].mlp.fc1.weight)
    assert m.head.weight.shape == (10, 768)  # 1000-class head dropped, fresh 10-class head
    with pytest.raises(ValueError, match=r"weights must be an existing state-dict file"):
        models.vit_b16(weights=tmp_path / "missing.pth")


# ----------------------------------------------------------------------------------------------- MiniLM


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


def test_minilm_encoder_gives_semantic_embeddings(tokenizer):
    enc = models.minilm_encoder().eval()
    assert enc.config.hidden_size == 384 and enc.config.num_hidden_layers == 6
    sentences = ["A man is playing a guitar.", "Someone plays a musical instrument.",
                 "The central bank raised interest rates again."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        emb = _mean_pool(enc(**batch).last_hidden_state, batch["attention_mask"])
    emb = F.normalize(emb, dim=-1)
    close, far = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    # all-MiniLM-L6-v2 was trained for exactly this; a random encoder gives no such gap
    assert close > far + 0.3


def test_minilm_classifier_pretrained_head_fresh_and_padding_invariant(tokenizer):
    set_random_state(0)
    clf = models.build_model("minilm", num_classes=6).eval()
    enc = models.minilm_encoder()
    torch.testing.assert_close(clf.bert.embeddings.word_embeddings.weight, enc.embeddings.word_embeddings.weight)
    torch.testing.assert_close(clf.bert.encoder.layer[5].output.dense.weight, enc.encoder.layer[5].output.dense.weight)
    assert clf.classifier.out_features == 6 and clf.config.problem_type == "single_label_classification"

    ds = TokenizedTextDataset(["Return the sum of the array elements over a given axis.",
                               "Plot y versus x as lines and markers."], [1, 0], tokenizer)
    batch = ds.collate_fn([ds[0], ds[1]])
    with torch.no_grad():
        logits = models.classifier_logits(clf, batch)
        alone = models.classifier_logits(clf, ds.collate_fn([ds[1]]))
    assert logits.shape == (2, 6)
    # the shorter text is padded in the batch: the attention mask must make padding invisible
    torch.testing.assert_close(logits[1:], alone, atol=1e-5, rtol=1e-4)

    random_clf = models.minilm_classifier(num_labels=6, pretrained=False)
    assert not torch.allclose(random_clf.bert.embeddings.word_embeddings.weight, enc.embeddings.word_embeddings.weight)
    regression = models.minilm_classifier(num_labels=1)
    assert regression.config.problem_type == "regression"


# ----------------------------------------------------------------------------------------------- BERT-base


def test_bert_base_offline_raises_clear_error(hf_offline):
    t0 = time.perf_counter()
    with pytest.raises(models.ModelUnavailable,
                       match=r"BERT \(bert-base-uncased\) could not be loaded .* source=") as err:
        models.build_model("bert_base", num_labels=2)
    assert _one_sentence(str(err.value))
    with pytest.raises(models.ModelUnavailable, match=r"bert-base-uncased tokenizer could not be loaded"):
        models.build_tokenizer("bert_base")
    assert time.perf_counter() - t0 < 15


def _tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64)


def test_bert_base_builder_from_local_config_and_weights(tmp_path, hf_offline):
    from safetensors.torch import save

    atomic_write_text(tmp_path / "cfg" / "config.json", _tiny_bert_config().to_json_string())
    m = models.build_model("bert_base", num_labels=3, pretrained=False, source=tmp_path / "cfg")
    assert m.config.hidden_size == 32 and len(m.bert.encoder.layer) == 2 and m.classifier.out_features == 3

    from transformers import BertForSequenceClassification

    set_random_state(0)
    ref = BertForSequenceClassification(_tiny_bert_config())
    atomic_write_text(tmp_path / "w" / "config.json", _tiny_bert_config().to_json_string())
    atomic_write_bytes(tmp_path / "w" / "model.safetensors",
                       save({k: v.contiguous() for k, v in ref.state_dict().items()}))
    loaded = models.bert_base(num_labels=2, source=tmp_path / "w")
    torch.testing.assert_close(loaded.bert.encoder.layer[1].intermediate.dense.weight,
                               ref.bert.encoder.layer[1].intermediate.dense.weight)
    ids = torch.tensor([[2, 5, 7, 3]])
    with torch.no_grad():
        assert models.classifier_logits(loaded.eval(), {"input_ids": ids}).shape == (1, 2)


# ----------------------------------------------------------------------------------------------- logits helper


def test_classifier_logits_accepts_every_batch_form():
    set_random_state(0)
    m = models.build_model("vit_digits").eval()
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    with torch.no_grad():
        direct = m(x)
        torch.testing.assert_close(models.classifier_logits(m, (x, y)), direct)
        torch.testing.assert_close(models.classifier_logits(m, [x, y]), direct)
        torch.testing.assert_close(models.classifier_logits(m, x), direct)
    with pytest.raises(ValueError, match=r"batch dict must hold 'input_ids'"):
        models.classifier_logits(m, {"pixels": x})
    with pytest.raises(ValueError, match=r"batch must be a tensor"):
        models.classifier_logits(m, 3)
