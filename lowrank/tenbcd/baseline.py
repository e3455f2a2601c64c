"""The tenBCD study's baseline: the same bias-free ReLU MLP trained by AdamW on cross-entropy,
dense or with TT-parameterised weights, from the same initial weights (and cores) as tenBCD.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..layers import TTLinear
from ..utils import make_generator
from .algorithm import DTYPE, TT_INITS, _init_weights, initial_tt, layer_tt_shapes

__all__ = ["train_adamw"]


class _MLP(torch.nn.Module):
    def __init__(self, layers: Sequence[torch.nn.Module]):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def _baseline_mlp(widths: Sequence[int], tt_cores: int, tt_rank: int | None, init_scale: float,
                  tt_init: str, random_state: int, device: torch.device) -> _MLP:
    # the same initial W as tenBCD (and, compressed, the same initial cores)
    W = _init_weights(widths, init_scale, random_state)
    layers: list[torch.nn.Module] = []
    for w, shape in zip(W, layer_tt_shapes(widths, tt_cores)):
        if tt_rank is None:
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=DTYPE)
            with torch.no_grad():
                lin.weight.copy_(w)
            layers.append(lin)
        else:
            cores = initial_tt(w, shape, tt_rank, tt_init)[1]
            layer = TTLinear(shape, tuple(int(c.shape[3]) for c in cores[:-1]), bias=False, dtype=DTYPE)
            with torch.no_grad():
                for p, c in zip(layer.cores, cores):
                    p.copy_(c)
            layers.append(layer)
    return _MLP(layers).to(device)


def train_adamw(X: torch.Tensor, y: torch.Tensor, X_test: torch.Tensor, y_test: torch.Tensor,
                widths: Sequence[int], *, tt_cores: int = 3, tt_rank: int | None = None, epochs: int = 30,
                lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 128, init_scale: float = 1.0,
                tt_init: str = "rescaled", random_state: int = 0, progress: bool = True) -> dict[str, Any]:
    """The baseline: the same bias-free ReLU MLP trained by AdamW on cross-entropy for ``epochs``.

    Rows of X are samples here (the usual torch layout): X (n, d₀), y (n,) labels. ``tt_rank=None``
    trains dense weights; otherwise each weight is TTD(cores) with the cores as parameters. Returns
    ``{"test_acc", "train_acc", "history": {"epoch", "train_loss", "test_acc"}, "seconds", "model"}``.
    """
    from tqdm.auto import tqdm

    device = X.device
    X, X_test = X.to(DTYPE), X_test.to(device=device, dtype=DTYPE)
    y, y_test = y.to(device), y_test.to(device)
    if tt_init not in TT_INITS:
        raise ValueError(f"train_adamw: tt_init={tt_init!r}; allowed values: {list(TT_INITS)}")
    model = _baseline_mlp(widths, tt_cores, tt_rank, init_scale, tt_init, random_state, device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = make_generator(random_state)
    hist: dict[str, list] = {"epoch": [], "train_loss": [], "test_acc": []}
    t0 = time.perf_counter()

    def test_acc() -> float:
        with torch.no_grad():
            return float((model(X_test).argmax(1) == y_test).double().mean())

    for epoch in tqdm(range(1, epochs + 1), desc=f"AdamW rank={tt_rank}", disable=not progress, leave=False):
        model.train()
        perm = torch.randperm(X.shape[0], generator=gen).to(device)
        total = 0.0
        for start in range(0, X.shape[0], batch_size):
            idx = perm[start:start + batch_size]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        hist["epoch"].append(epoch)
        hist["train_loss"].append(total / X.shape[0])
        hist["test_acc"].append(test_acc())
    with torch.no_grad():
        train_acc = float((model(X).argmax(1) == y).double().mean())
    return {"test_acc": hist["test_acc"][-1] if epochs else test_acc(), "train_acc": train_acc,
            "history": hist, "seconds": time.perf_counter() - t0, "model": model}
