"""``targets="auto"``: find the Linear layers of a transformer's repeated blocks from the module tree.

The paper compresses "every Linear in the transformer blocks" (Figures 2–5) and never the embeddings,
the pooler or the classification head. The presets of :data:`lowrank.surgery.TARGET_PRESETS` spell
that out for timm's ViT and Hugging Face's BERT names; :func:`auto_targets` decides it from the
structure of any model instead, so DistilBERT (``q_lin``, ``ffn.lin1``), RoBERTa or a model of one's
own need no list of names:

* a *block container* is an ``nn.ModuleList`` or ``nn.Sequential`` with at least two children of the
  same class that are composite modules (not a bare layer) each holding at least two target-kind
  Linears — a transformer block has at least an attention and an MLP projection. ``nn.Sequential(Linear,
  ReLU, Linear)`` heads are therefore not blocks, nor is a list of one-Linear classifier heads;
* the targets are the Linears inside those blocks, in ``named_modules`` order; anything outside them
  (patch / token embeddings, even when they are an ``nn.Linear``, poolers, heads, a distillation
  head) is left alone;
* transformers' ``Conv1D`` (GPT-2's projections) counts as a Linear when ``kinds`` holds it, as
  :func:`lowrank.surgery.find_linear_layers` passes it;
* Linears owned by ``nn.MultiheadAttention`` are excluded: it reads ``out_proj.weight`` directly
  through ``F.multi_head_attention_forward``, so a replaced module would never be called.

This is a rule about the module tree, not a guarantee about every architecture: a model whose
repeated blocks are not held in a ModuleList / Sequential (blocks stored as separate attributes) has
no block container, and :func:`auto_targets` then raises instead of guessing.
"""
from __future__ import annotations

from collections import Counter

import torch.nn as nn

__all__ = ["auto_targets", "block_containers"]


def _linears_in(module: nn.Module, kinds: tuple[type, ...]) -> list[tuple[str, nn.Module]]:
    """(relative name, layer) of every target-kind Linear under ``module``, except those of an
    ``nn.MultiheadAttention`` (see the module docstring) and the inner ``nn.Linear`` parts of a
    factorised layer (a FactorizedLinear is one target, not three)."""
    skip: list[str] = []
    out = []
    for name, sub in module.named_modules():
        if any(name.startswith(s + ".") for s in skip):
            continue
        if isinstance(sub, nn.MultiheadAttention):
            skip.append(name)
        elif isinstance(sub, kinds):
            out.append((name, sub))
            skip.append(name)
    return out


def block_containers(model: nn.Module, kinds: tuple[type, ...] = (nn.Linear,)) -> dict[str, list[str]]:
    """Container name → names of its children that are repeated blocks (the module docstring's rule).

    Containers nested inside a block of an outer container are not listed: their Linears are already
    the outer block's.
    """
    found: dict[str, list[str]] = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.ModuleList, nn.Sequential)):
            continue
        if any(name.startswith(f"{c}.{b}.") or name == f"{c}.{b}" for c, bs in found.items() for b in bs):
            continue
        children = list(mod.named_children())
        composite = [(n, c) for n, c in children
                     if not isinstance(c, kinds) and len(_linears_in(c, kinds)) >= 2]
        counts = Counter(type(c) for _, c in composite)
        blocks = [n for n, c in composite if counts[type(c)] >= 2]
        if blocks:
            found[name] = blocks
    return found


def auto_targets(model: nn.Module, kinds: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Qualified names of every ``kinds`` layer inside the repeated blocks of ``model`` (module docstring).

    ``kinds`` is ``(nn.Linear,)`` to pick layers to compress, or also the factorised layer classes to
    find the targets of an already-compressed model. Raises ``ValueError`` when the model has no
    repeated block holding Linear layers (nothing could be compressed), naming what it does have.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"targets='auto': model must be an nn.Module, got {type(model).__name__}")
    names: list[str] = []
    for cname, blocks in block_containers(model, kinds).items():
        for b in blocks:
            prefix = f"{cname}.{b}" if cname else b
            block = model.get_submodule(prefix)
            names.extend(f"{prefix}.{n}" for n, _ in _linears_in(block, kinds))
    if not names:
        linears = [n for n, m in model.named_modules() if isinstance(m, kinds)]
        if not linears:
            raise ValueError(f"targets='auto': the model ({type(model).__name__}) has no nn.Linear layer to "
                             f"compress (only nn.Linear and transformers' Conv1D layers can be factorised; "
                             f"nn.Conv1d / Conv2d layers are not)")
        raise ValueError(f"targets='auto': the model ({type(model).__name__}) has {len(linears)} Linear layers "
                         f"but no repeated block (an nn.ModuleList / nn.Sequential of ≥ 2 same-class modules "
                         f"with ≥ 2 Linears each) holding them; name the targets instead, e.g. "
                         f"targets=['{linears[0]}', ...] (some Linear names: {linears[:8]})")
    return names
