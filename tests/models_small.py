"""Small random-init models of the architectures the public API is tested on (no downloads).

Each builder returns ``(model, expected_targets)``: the Linear names of the repeated blocks, spelled
out from the architecture's own naming (not from :func:`lowrank.auto_targets`), so a test compares the
automatic selection with an independent list.
"""
from __future__ import annotations

import torch
import torch.nn as nn

DEPTH = 2


def vit():
    from timm.models.vision_transformer import VisionTransformer
    m = VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=DEPTH,
                          num_heads=2, mlp_ratio=2.0)
    return m, [f"blocks.{i}.{n}" for i in range(DEPTH) for n in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]


def deit():
    from timm.models.deit import VisionTransformerDistilled
    m = VisionTransformerDistilled(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=DEPTH,
                                   num_heads=2, mlp_ratio=2.0)
    return m, [f"blocks.{i}.{n}" for i in range(DEPTH) for n in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]


_BERT_LAYER = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
               "intermediate.dense", "output.dense")
_TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=DEPTH, num_attention_heads=2, intermediate_size=48,
             max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def bert():
    from transformers import BertConfig, BertForSequenceClassification
    m = BertForSequenceClassification(BertConfig(**_TINY, num_labels=3))
    return m, [f"bert.encoder.layer.{i}.{n}" for i in range(DEPTH) for n in _BERT_LAYER]


def roberta():
    from transformers import RobertaConfig, RobertaForSequenceClassification
    m = RobertaForSequenceClassification(RobertaConfig(**_TINY, num_labels=3, pad_token_id=1))
    return m, [f"roberta.encoder.layer.{i}.{n}" for i in range(DEPTH) for n in _BERT_LAYER]


def distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification
    m = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=64, dim=32, n_layers=DEPTH, n_heads=2,
                                                             hidden_dim=48, max_position_embeddings=40,
                                                             dropout=0.0, attention_dropout=0.0, num_labels=3))
    names = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2")
    return m, [f"distilbert.transformer.layer.{i}.{n}" for i in range(DEPTH) for n in names]


class _Mixer(nn.Module):
    """A block no preset names: a gated token mixer and a feed-forward pair."""

    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.gate_in = nn.Linear(d, 2 * d)
        self.gate_out = nn.Linear(d, d)
        self.ff_up = nn.Linear(d, 3 * d)
        self.ff_down = nn.Linear(3 * d, d)

    def forward(self, x):
        a, b = self.gate_in(self.norm(x)).chunk(2, dim=-1)
        x = x + self.gate_out(a * torch.sigmoid(b))
        return x + self.ff_down(torch.relu(self.ff_up(x)))


class Unnamed(nn.Module):
    """A sequence classifier whose embedding and head are Linear layers too (they must not be targets)."""

    def __init__(self, d_in: int = 12, d: int = 32, classes: int = 4, depth: int = 3):
        super().__init__()
        self.embed = nn.Linear(d_in, d)
        self.stages = nn.ModuleList(_Mixer(d) for _ in range(depth))
        self.head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, classes))

    def forward(self, x):            # (B, T, d_in) → (B, classes)
        h = self.embed(x)
        for s in self.stages:
            h = s(h)
        return self.head(h.mean(1))


def unnamed():
    m = Unnamed()
    return m, [f"stages.{i}.{n}" for i in range(3) for n in ("gate_in", "gate_out", "ff_up", "ff_down")]


ARCHITECTURES = {"timm_vit": vit, "timm_deit": deit, "hf_bert": bert, "hf_roberta": roberta,
                 "hf_distilbert": distilbert, "unnamed": unnamed}


def image_batches(n_batches: int = 2, batch: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(n_batches)]


def token_batches(n_batches: int = 2, batch: int = 4, length: int = 10, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(3, 64, (batch, length), generator=g)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, length // 2:] = 0       # one padded sequence
        out.append({"input_ids": ids, "attention_mask": mask,
                    "labels": torch.randint(0, classes, (batch,), generator=g)})
    return out


def sequence_batches(n_batches: int = 2, batch: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 5, 12, generator=g), torch.randint(0, 4, (batch,), generator=g))
            for _ in range(n_batches)]


def batches_for(arch: str):
    if arch.startswith("timm"):
        return image_batches()
    if arch.startswith("hf"):
        return token_batches()
    return sequence_batches()


def run(model: nn.Module, batch):
    """Logits of ``model`` on one batch of :func:`batches_for`."""
    if isinstance(batch, dict):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.logits
    return model(batch[0])
