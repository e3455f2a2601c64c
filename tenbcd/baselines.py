"""The tenBCD study's baselines: the same bias-free ReLU MLP trained by a gradient method, dense or with
TT-parameterised weights, from the same initial weights (and cores) as tenBCD.

Three baselines (:data:`BASELINES`), each tuned on its own in the study (``params.yaml``:
``tenbcd.<dataset>.baselines``):

* ``adamw_ce``: AdamW on cross-entropy, the usual way to train such a network;
* ``adamw_sq``: AdamW on the squared loss ½‖f(x) − y‖² on one-hot targets, the loss tenBCD minimises, so
  that a gap to tenBCD cannot be put down to the loss;
* ``sgd_ce``: SGD on cross-entropy, the companion paper's comparator (``momentum: 0`` is plain SGD).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from lowrank.layers import TTLinear
from lowrank.utils import make_generator
from .algorithm import DTYPE, TT_INITS, _init_weights, initial_tt, layer_tt_shapes
from .cost import count_macs

__all__ = ["OPTIMIZERS", "LOSSES", "BASELINES", "train_baseline"]


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


#: the optimizers and losses a baseline may use
OPTIMIZERS = ("adamw", "sgd")
LOSSES = ("cross_entropy", "squared")
#: the study's baselines: name -> (optimizer, loss)
BASELINES = {"adamw_ce": ("adamw", "cross_entropy"), "adamw_sq": ("adamw", "squared"),
             "sgd_ce": ("sgd", "cross_entropy")}


def _loss(name: str, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "cross_entropy":
        return F.cross_entropy(scores, y)
    # ½‖f(x) − onehot(y)‖² per sample, averaged: tenBCD's ½‖V_N − Y‖²/n on a batch
    return 0.5 * (scores - F.one_hot(y, scores.shape[1]).to(scores.dtype)).square().sum(1).mean()


def train_baseline(X: torch.Tensor, y: torch.Tensor, X_test: torch.Tensor, y_test: torch.Tensor,
                   widths: Sequence[int], *, X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                   optimizer: str = "adamw", loss: str = "cross_entropy", tt_cores: int = 3,
                   tt_rank: int | None = None, epochs: int = 30, lr: float = 1e-3, weight_decay: float = 0.0,
                   momentum: float = 0.0, batch_size: int = 128, eval_every: int = 1, init_scale: float = 1.0,
                   tt_init: str = "rescaled", random_state: int = 0, progress: bool = True) -> dict[str, Any]:
    """A baseline: the same bias-free ReLU MLP trained by ``optimizer`` (AdamW, or SGD with ``momentum``) on
    ``loss`` (cross-entropy, or the squared loss on one-hot targets) for ``epochs``, mini-batches of
    ``batch_size`` in a seeded order.

    Rows of X are samples here (the usual torch layout): X (n, d₀), y (n,) labels; a validation set X_val,
    y_val is optional. ``tt_rank=None`` trains dense weights; otherwise each weight is TTD(cores) with the
    cores as parameters. Train, validation and test accuracy are evaluated after every ``eval_every``
    epochs (and after the last one). Returns ``{"test_acc", "val_acc", "train_acc", "history": {"epoch",
    "train_loss", "train_acc", "val_acc", "test_acc", "seconds"}, "seconds", "macs_per_epoch", "model"}``;
    ``seconds`` is the wall time of training alone, evaluations excluded; ``macs_per_epoch`` the multiply-adds
    of one epoch's forward and backward products (:func:`tenbcd.cost.count_macs`, on the first epoch).
    """
    from tqdm.auto import tqdm

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"train_baseline: optimizer={optimizer!r}; allowed values: {list(OPTIMIZERS)}")
    if loss not in LOSSES:
        raise ValueError(f"train_baseline: loss={loss!r}; allowed values: {list(LOSSES)}")
    if tt_init not in TT_INITS:
        raise ValueError(f"train_baseline: tt_init={tt_init!r}; allowed values: {list(TT_INITS)}")
    if (X_val is None) != (y_val is None):
        raise ValueError("train_baseline: give both X_val and y_val, or neither")
    device = X.device
    X, X_test = X.to(DTYPE), X_test.to(device=device, dtype=DTYPE)
    y, y_test = y.to(device), y_test.to(device)
    if X_val is not None:
        X_val, y_val = X_val.to(device=device, dtype=DTYPE), y_val.to(device)
    model = _baseline_mlp(widths, tt_cores, tt_rank, init_scale, tt_init, random_state, device)
    if optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay, momentum=momentum)
    gen = make_generator(random_state)
    hist: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "train_acc", "val_acc", "test_acc", "seconds")}
    seconds = 0.0

    def acc(Xs: torch.Tensor | None, ys: torch.Tensor | None) -> float | None:
        if Xs is None:
            return None
        model.eval()
        with torch.no_grad():
            return float((model(Xs).argmax(1) == ys).double().mean())

    def record(epoch: int, train_loss: float | None) -> None:
        hist["epoch"].append(epoch)
        hist["train_loss"].append(train_loss)
        hist["train_acc"].append(acc(X, y))
        hist["val_acc"].append(acc(X_val, y_val))
        hist["test_acc"].append(acc(X_test, y_test))
        hist["seconds"].append(seconds)

    record(0, None)
    def one_epoch() -> float:
        model.train()
        perm = torch.randperm(X.shape[0], generator=gen).to(device)
        total = 0.0
        for start in range(0, X.shape[0], batch_size):
            idx = perm[start:start + batch_size]
            batch_loss = _loss(loss, model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            total += float(batch_loss.detach()) * idx.numel()
        return total / X.shape[0]

    macs_per_epoch = 0
    for epoch in tqdm(range(1, epochs + 1), desc=f"{optimizer}/{loss} rank={tt_rank}", disable=not progress,
                      leave=False):
        t0 = time.perf_counter()
        if epoch == 1:
            # every epoch does the same products: count the first (forward and backward)
            train_loss, macs_per_epoch = count_macs(one_epoch)
        else:
            train_loss = one_epoch()
        seconds += time.perf_counter() - t0
        if epoch % eval_every == 0 or epoch == epochs:
            record(epoch, train_loss)
    return {"test_acc": hist["test_acc"][-1], "val_acc": hist["val_acc"][-1], "train_acc": hist["train_acc"][-1],
            "history": hist, "seconds": seconds, "macs_per_epoch": macs_per_epoch, "model": model}
