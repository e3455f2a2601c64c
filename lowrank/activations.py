"""Input second moments ``C = Σ x xᵀ`` of target Linear layers — the statistic behind Eq. (7) (ASVD-style
activation-aware projection, the per-layer Gaussian proxy for the information projection).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .surgery import find_linear_layers

__all__ = ["input_second_moments"]


def input_second_moments(model: nn.Module, loader: Iterable, targets: str | Sequence[str] | Mapping,
                         forward: Callable[[nn.Module, Any], Any] | None = None, *,
                         mask: Callable[[Any], torch.Tensor | None] | None = None, max_batches: int | None = None,
                         dtype: torch.dtype = torch.float64, progress: bool = False) -> dict[str, torch.Tensor]:
    """Name → ``Σ_rows x xᵀ`` (``in × in``) over every input row that reaches each target layer.

    ``forward(model, batch)`` runs the model (default: ``model(batch[0])``). ``mask(batch)``, if given,
    returns a ``(B, T)`` 0/1 tensor marking real tokens, so padding rows do not enter the moment.
    Accumulates across batches in ``dtype`` (float64 by default).
    """
    if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
        raise ValueError(f"max_batches={max_batches!r} must be a positive int or None")
    layers = find_linear_layers(model, targets) if not isinstance(targets, Mapping) else dict(targets)
    forward = forward or (lambda mdl, batch: mdl(batch[0]))
    moments: dict[str, torch.Tensor] = {}
    current_mask: list[torch.Tensor | None] = [None]

    def make_hook(name: str):
        def hook(module, args, output):
            x = args[0].detach()
            rows = x.reshape(-1, x.shape[-1])
            msk = current_mask[0]
            if msk is not None:
                rows = rows * msk.reshape(-1, 1).to(rows)
            # one batch's product in the activations' precision (float32 GEMMs are ~2× faster than
            # float64 on CPU; a batch of a few thousand rows loses nothing that matters), the running
            # sum over batches in ``dtype``
            c = (rows.mT @ rows).to(dtype)
            moments[name] = c if name not in moments else moments[name] + c
        return hook

    handles = [layer.register_forward_hook(make_hook(name)) for name, layer in layers.items()]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="input moments", disable=not progress):
                current_mask[0] = mask(batch) if mask is not None else None
                forward(model, batch)
                seen += 1
                if max_batches is not None and seen >= max_batches:
                    break
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("loader yielded no batch; input second moments need at least one")
    return moments
