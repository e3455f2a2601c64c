"""Per-sample diagonal Fisher information of ``nn.Linear`` weights.

The paper (Section 2) measures distances between models with the Fisher information metric

    I(θ) = Σ_n E_{y ~ p_θ(y|x_n)} [ ∇_θ log p_θ(y|x_n) ∇_θ log p_θ(y|x_n)ᵀ ],

and the Fisher-weighted projections of Section 3.2 (TFWSVD: element weights, FWSVD: row weights) and
of Appendix B (IFHT, FWTRP) only need its diagonal restricted to one weight matrix at a time. For a
weight W of shape (out, in) this module returns

    F[i, j] = Σ_n (1/K) Σ_k ( ∂/∂W_ij log p_θ(y_{n,k} | x_n) )²,

a sum over calibration samples n of squared *per-sample* gradients. Squaring the gradient of a batch
of samples is a different (and wrong) estimator: cross terms between samples do not vanish.

Labels (``labels=``):

* ``"empirical"``: y_n is the sample's given target, the empirical Fisher of Eq. (6);
* ``"true"``: y_{n,k} ~ p_θ(y|x_n) is drawn from the model itself (K = ``n_label_samples`` draws per
  input, averaged), a Monte Carlo estimate of the Fisher I(θ) above (Section 2), the metric of the KL
  projection of Eq. (5).

Likelihoods (``likelihood=``), the two exponential families the paper names in Section 2:

* ``"categorical"``: outputs are logits (B, ..., C), p(y=c|f) = softmax(f)_c;
* ``"gaussian"``: outputs f of any shape (B, ...), p(y|f) = N(y; f, I). The true Fisher draws
  y = f + ε with ε ~ N(0, I), so ∇ log p = (∂f/∂θ)ᵀ ε. No labels are needed, which is how the
  projection experiments weigh a sentence encoder through its final hidden states.

An optional per-sample mask (B, ...) keeps only some output positions (e.g. non-padding tokens).

Three exact methods compute the same quantity (``method=``):

* ``"hooks"`` (default): one batched forward and backward. Forward hooks keep each target Linear's
  input x (B, ..., in) and a tensor hook on its output receives g = ∂L/∂output (B, ..., out). The
  per-sample weight gradient is G_b = Σ_t g_{b,t} x_{b,t}ᵀ (t runs over token positions and over
  repeated calls of a shared weight). This is exact because the loss is a sum of per-sample terms
  and samples do not interact in the forward pass: the model is put in eval mode (BatchNorm then
  uses running statistics; LayerNorm and attention act within one sample). It also assumes the
  Linear's input and output carry the batch on their first axis, and that the weight is only used
  through the module's ``forward`` (``nn.MultiheadAttention`` calls ``F.linear`` on
  ``out_proj.weight`` directly; such a use is detected and reported, use another method then).
* ``"func"``: ``torch.func.vmap(torch.func.grad(...))`` over samples with ``functional_call`` on the
  target weights only; for forwards that vmap can trace (no data-dependent branches).
* ``"loop"``: a Python loop over samples with ordinary autograd; slow, simplest, exact for any layout
  (``lowrank.api.compress`` falls back to it when the hooks cannot run, e.g. windowed attention).

:func:`diagonal_fisher` runs in steps: validate the arguments and resolve the targets (:func:`_validate`),
draw the labels per likelihood (:func:`_draw_targets`), accumulate the squared per-sample gradients by one
of the three methods (:func:`_accumulate`, :func:`_backend`), and reduce (:func:`_reduce`).

Example (a two-layer classifier, true-Fisher labels):

>>> import torch, torch.nn as nn
>>> from lowrank.fisher import diagonal_fisher, row_weights
>>> from lowrank.utils import make_generator
>>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
>>> loader = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
>>> fisher = diagonal_fisher(model, loader, ["0", "2"], labels="true", generator=make_generator(0))
>>> fisher["0"].shape, row_weights(fisher["0"]).shape      # the (out, in) diagonal; (out,) FWSVD weights
(torch.Size([8, 4]), torch.Size([8]))
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils import _pytree as pytree

from .layers import LowRankLinear, is_linear_like, linear_shape

__all__ = [
    "FisherBatch",
    "default_forward",
    "encoder_forward",
    "diagonal_fisher",
    "row_weights",
    "column_weights",
    "LIKELIHOODS",
    "LABELS",
    "ESTIMATORS",
    "REDUCTIONS",
]

LIKELIHOODS = ("categorical", "gaussian")
LABELS = ("empirical", "true")
#: the exact per-sample-gradient estimators of :func:`diagonal_fisher` (its ``method=``), all computing
#: the same quantity (see the module docstring); not compression methods (those are :mod:`lowrank.methods`)
ESTIMATORS = ("hooks", "func", "loop")
#: what :func:`diagonal_fisher` returns per weight (its ``reduce=``): the full diagonal, or its row / column sums
REDUCTIONS = ("none", "rows", "columns")

# Upper bound on the number of elements of one chunk of per-sample gradients (B_chunk, out, in):
# 2**24 float64 elements are 128 MiB, small next to a model's activations.
_CHUNK_ELEMENTS = 2**24

# How method="hooks" checks that the per-sample gradients add up to autograd's batch gradient:
# "fused" sums the per-sample blocks it forms anyway (no extra GEMM where blocks exist), "gemm"
# recomputes gᵀx (the original check, kept as the reference the benchmarks and tests compare
# with), "off" skips it (only to measure what the check costs; never a default).
_BATCH_GRAD_CHECK = "fused"


@dataclass
class FisherBatch:
    """What a ``forward(model, batch)`` callable hands to :func:`diagonal_fisher`.

    outputs: (B, ...) model outputs; logits (B, ..., C) for the categorical likelihood.
    targets: empirical labels: class indices (B, ...) for "categorical", a tensor shaped like
        ``outputs`` for "gaussian"; ignored (may be None) with ``labels="true"``.
    mask: optional (B, ...) selecting which output positions count (nonzero = counts); its shape is
        a prefix of ``outputs.shape`` (gaussian) or equals ``outputs.shape[:-1]`` (categorical).
    """

    outputs: Tensor
    targets: Tensor | None = None
    mask: Tensor | None = None


def _unwrap_outputs(out: Any) -> Tensor:
    # Hugging Face models return ModelOutput objects; classification heads put logits in `.logits`.
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ValueError(
        f"default_forward: model output of type {type(out).__name__} is neither a Tensor, nor has "
        "a `.logits` tensor, nor is a tuple starting with a Tensor; pass a `forward` callable"
    )


def default_forward(model: nn.Module, batch: Any) -> FisherBatch:
    """``(x, y)`` → ``FisherBatch(model(x), y)``; ``(x,)`` or a bare tensor ``x`` → no targets.

    A mapping batch (e.g. a tokenizer's output) is passed as keyword arguments, with its
    ``"labels"`` entry, if any, taken as the targets. An output with ``.logits`` (Hugging Face)
    contributes those logits.
    """
    if isinstance(batch, Tensor):
        return FisherBatch(_unwrap_outputs(model(batch)))
    if isinstance(batch, Mapping):
        kwargs = {k: v for k, v in batch.items() if k != "labels"}
        return FisherBatch(_unwrap_outputs(model(**kwargs)), batch.get("labels"))
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        y = batch[1] if len(batch) == 2 else None
        return FisherBatch(_unwrap_outputs(model(batch[0])), y)
    raise ValueError(
        f"default_forward: batch of type {type(batch).__name__} is not a Tensor, a mapping, or an "
        "(x, y) / (x,) tuple; pass a `forward` callable"
    )


def encoder_forward(model: nn.Module, batch: Mapping[str, Tensor]) -> FisherBatch:
    """A Hugging Face encoder's final hidden states (B, T, d), masked by ``attention_mask``.

    Meant for ``likelihood="gaussian", labels="true"``: the Fisher of the encoder under a unit
    Gaussian on its token representations, which needs no labels. Padding tokens do not count.
    """
    kwargs = {k: v for k, v in batch.items() if k != "labels"}
    out = model(**kwargs)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        hidden = out[0]
    return FisherBatch(hidden, None, batch.get("attention_mask"))


def row_weights(fisher: Tensor) -> Tensor:
    """FWSVD row importances: ``fisher.sum(dim=1)``, shape (out,).

    PyTorch stores a Linear weight as (out, in), so a row is one output neuron. Summing the
    diagonal Fisher over the input axis gives one weight per output neuron, the approximation
    of FWSVD (Hsu et al. 2022) that the paper's Section 3.2 writes as Ĩ_ij ≈ Σ_j Ĩ_ij.
    """
    if not isinstance(fisher, Tensor) or fisher.dim() != 2:
        raise ValueError(f"fisher must be a 2-D (out, in) tensor, got {_describe(fisher)}")
    return fisher.sum(dim=1)


def column_weights(fisher: Tensor) -> Tensor:
    """Input-side importances: ``fisher.sum(dim=0)``, shape (in,).

    Sums the diagonal Fisher of an (out, in) weight over the output axis: one weight per input
    feature, the transpose of :func:`row_weights`' reduction.
    """
    if not isinstance(fisher, Tensor) or fisher.dim() != 2:
        raise ValueError(f"fisher must be a 2-D (out, in) tensor, got {_describe(fisher)}")
    return fisher.sum(dim=0)


def _describe(obj: Any) -> str:
    if isinstance(obj, Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    return repr(obj)


# --------------------------------------------------------------------------------------------
# argument checking (step 1)


@dataclass
class _Group:
    """Target Linears sharing one weight Parameter (usually exactly one module).

    For a :class:`LowRankLinear` (W = U S Vᵀ), ``weight`` is its trainable core S, ``factors`` is (U, V) and
    ``shape`` is W's (out, in): the Fisher returned is still that of the dense W, because the gradient with
    respect to W is Γᵀ X, computed from the module's input X and output gradient Γ as for a Linear.
    """

    names: list[str]
    paths: list[str]
    modules: list[nn.Module]
    weight: nn.Parameter
    project: tuple[Tensor, Tensor] | None
    factors: tuple[Tensor, Tensor] | None = None
    shape: tuple[int, int] | None = None
    #: a transformers Conv1D stores its weight as (in, out) (:func:`lowrank.layers.as_linear`); its
    #: autograd gradients are transposed to the (out, in) of the Fisher returned
    transposed: bool = False


def _choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _resolve_targets(model: nn.Module, targets: Any,
                     project: Mapping[str, tuple[Tensor, Tensor]] | None) -> list[_Group]:
    path_of = {id(m): p for p, m in model.named_modules(remove_duplicate=False)}
    modules_by_path = dict(model.named_modules(remove_duplicate=False))
    pairs: list[tuple[str, str, nn.Module]] = []  # (user name, path in model, module)
    if isinstance(targets, Mapping):
        for name, mod in targets.items():
            if id(mod) not in path_of:
                raise ValueError(f"targets[{name!r}] is not a submodule of the model")
            pairs.append((str(name), path_of[id(mod)], mod))
    elif isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
        raise ValueError(
            f"targets must be a sequence of module names or a name -> nn.Linear mapping, got {targets!r}"
        )
    else:
        for name in targets:
            if not isinstance(name, str) or name not in modules_by_path:
                raise ValueError(f"targets: {name!r} is not the name of a module of the model")
            pairs.append((name, name, modules_by_path[name]))
    if not pairs:
        raise ValueError("targets must name at least one nn.Linear, got an empty collection")
    seen_names: set[str] = set()
    groups: dict[int, _Group] = {}
    for name, path, mod in pairs:
        low_rank = isinstance(mod, LowRankLinear)
        if not (is_linear_like(mod) or low_rank):
            raise ValueError(f"targets: {name!r} is a {type(mod).__name__}; allowed: nn.Linear, LowRankLinear, "
                             f"transformers' Conv1D")
        if not low_rank and not isinstance(mod.weight, nn.Parameter):
            raise ValueError(f"targets: {name!r} has a weight that is not an nn.Parameter "
                             "(parametrized modules are not supported)")
        if name in seen_names:
            raise ValueError(f"targets: {name!r} is listed twice")
        seen_names.add(name)
        param = mod.S if low_rank else mod.weight
        key = id(param)
        if key in groups:
            grp = groups[key]
            if any(m is mod for m in grp.modules):
                raise ValueError(f"targets: {name!r} is the same module as {grp.names[0]!r}")
            grp.names.append(name)
            grp.paths.append(path)
            grp.modules.append(mod)
        else:
            groups[key] = _Group([name], [path], [mod], param, None,
                                 factors=(mod.U.detach(), mod.V.detach()) if low_rank else None,
                                 shape=(mod.out_features, mod.in_features) if low_rank else linear_shape(mod),
                                 transposed=not low_rank and not isinstance(mod, nn.Linear))
    if project is not None:
        if not isinstance(project, Mapping):
            raise ValueError(f"project must be a mapping name -> (U, V), got {type(project).__name__}")
        for name in project:
            if name not in seen_names:
                raise ValueError(f"project: {name!r} is not one of the targets {sorted(seen_names)}")
        for grp in groups.values():
            given = [project.get(n) for n in grp.names]
            if any(p is not None for p in given):
                if grp.factors is not None:
                    raise ValueError(f"project[{grp.names[0]!r}]: the target is a LowRankLinear, whose core's "
                                     "Fisher is asked for by projecting a dense Linear; allowed with project: "
                                     "nn.Linear targets")
                if any(p is not given[0] for p in given):
                    raise ValueError(f"project: targets {grp.names} share one weight and must share "
                                     "one (U, V) entry (or none)")
                grp.project = _check_projection(grp.names[0], given[0], grp.weight, grp.shape)
    return list(groups.values())


def _check_projection(name: str, pair: Any, weight: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(t, Tensor) for t in pair)):
        raise ValueError(f"project[{name!r}] must be a pair of tensors (U, V), got {pair!r}")
    u, v = pair
    out_f, in_f = shape
    if u.dim() != 2 or u.shape[0] != out_f or v.dim() != 2 or v.shape[0] != in_f:
        raise ValueError(
            f"project[{name!r}]: U must be ({out_f}, r) and V ({in_f}, r'), got "
            f"{tuple(u.shape)} and {tuple(v.shape)}"
        )
    if not (u.is_floating_point() and v.is_floating_point()):
        raise ValueError(f"project[{name!r}]: U and V must be floating point, got {u.dtype}, {v.dtype}")
    return u.detach().to(weight.device), v.detach().to(weight.device)


def _check_batch(fb: Any, likelihood: str, labels: str) -> FisherBatch:
    if not isinstance(fb, FisherBatch):
        raise ValueError(f"forward must return a FisherBatch, got {type(fb).__name__}")
    out = fb.outputs
    if not isinstance(out, Tensor) or not out.is_floating_point():
        raise ValueError(f"FisherBatch.outputs must be a floating-point tensor, got {_describe(out)}")
    min_dim = 2 if likelihood == "categorical" else 1
    if out.dim() < min_dim:
        raise ValueError(f"FisherBatch.outputs for likelihood={likelihood!r} needs at least {min_dim} "
                         f"dims (batch first), got shape {tuple(out.shape)}")
    event = out.shape[:-1] if likelihood == "categorical" else out.shape
    tgt = fb.targets
    if labels == "empirical":
        if tgt is None:
            raise ValueError("labels='empirical' needs FisherBatch.targets, got None "
                             "(use labels='true' to sample labels from the model)")
        if not isinstance(tgt, Tensor):
            raise ValueError(f"FisherBatch.targets must be a tensor, got {type(tgt).__name__}")
        tgt = tgt.to(out.device)
        if likelihood == "categorical":
            if tgt.is_floating_point() or tgt.is_complex() or tgt.dtype == torch.bool:
                raise ValueError(f"categorical targets must be integer class indices, got {tgt.dtype}")
            if tgt.shape != event:
                raise ValueError(f"categorical targets must have shape {tuple(event)}, got {tuple(tgt.shape)}")
            n_cls = out.shape[-1]
            if tgt.numel() and (int(tgt.min()) < 0 or int(tgt.max()) >= n_cls):
                raise ValueError(f"categorical targets must lie in [0, {n_cls}), got values in "
                                 f"[{int(tgt.min())}, {int(tgt.max())}]")
            tgt = tgt.long()
        else:
            if tgt.shape != out.shape:
                raise ValueError(f"gaussian targets must have the outputs' shape {tuple(out.shape)}, "
                                 f"got {tuple(tgt.shape)}")
            tgt = tgt.to(out.dtype)
    else:
        tgt = None
    mask = fb.mask
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise ValueError(f"FisherBatch.mask must be a tensor or None, got {type(mask).__name__}")
        ok = (mask.shape == event) if likelihood == "categorical" else (
            mask.dim() >= 1 and out.shape[: mask.dim()] == mask.shape)
        if not ok:
            allowed = tuple(event) if likelihood == "categorical" else "a prefix of " + str(tuple(out.shape))
            raise ValueError(f"FisherBatch.mask has shape {tuple(mask.shape)}, expected {allowed}")
        mask = mask.to(out.device) != 0
    return FisherBatch(out, tgt, mask)


# --------------------------------------------------------------------------------------------
# likelihoods and labels (step 2)


def _per_sample_nll(outputs: Tensor, targets: Tensor, mask: Tensor | None, likelihood: str) -> Tensor:
    """-log p(targets | outputs) per sample, shape (B,), up to additive constants."""
    b = outputs.shape[0]
    if likelihood == "categorical":
        terms = -outputs.log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    else:
        diff = outputs - targets
        terms = 0.5 * diff * diff
    if mask is not None:
        m = mask.reshape(mask.shape + (1,) * (terms.dim() - mask.dim()))
        # where, not multiply: a NaN/inf at a masked position (e.g. padding) must not leak in.
        terms = torch.where(m, terms, torch.zeros((), dtype=terms.dtype, device=terms.device))
    return terms.reshape(b, -1).sum(dim=1)


def _draw_targets(fb: FisherBatch, likelihood: str, labels: str, k: int,
                  generator: torch.Generator | None) -> list[Tensor]:
    """Step 2, the labels y of the per-sample scores ∇ log p(y|x_n): the batch's given targets (the empirical
    Fisher I_em of Eq. (6)), or K draws y ~ p_θ(y|x_n) from the model (a Monte Carlo estimate of the
    expectation in the true Fisher I(θ) of Section 2, the metric of Eq. (5))."""
    if labels == "empirical":
        return [fb.targets]
    out = fb.outputs.detach()
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if likelihood == "categorical":
        return _draw_categorical(out, k, generator, gen_device)
    return _draw_gaussian(out, k, generator, gen_device)


def _draw_categorical(logits: Tensor, k: int, generator: torch.Generator | None,
                      gen_device: torch.device) -> list[Tensor]:
    """K class indices per position, y ~ softmax(logits), each shaped ``logits.shape[:-1]``."""
    # float64 probabilities: the draw must not depend on the model's precision.
    probs = logits.double().softmax(dim=-1).reshape(-1, logits.shape[-1]).to(gen_device)
    idx = torch.multinomial(probs, k, replacement=True, generator=generator)  # (N, K)
    idx = idx.t().reshape((k,) + tuple(logits.shape[:-1])).to(logits.device)
    return list(idx.unbind(0))


def _draw_gaussian(out: Tensor, k: int, generator: torch.Generator | None, gen_device: torch.device) -> list[Tensor]:
    """K draws y = f + ε, ε ~ N(0, I), each shaped like the outputs f."""
    noise_dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
    eps = torch.randn((k,) + tuple(out.shape), generator=generator, device=gen_device, dtype=noise_dtype)
    eps = eps.to(device=out.device, dtype=out.dtype)
    # y = f + ε, so ∂(-log p)/∂f = f - y = -ε: the true-Fisher score of a unit Gaussian.
    return [out + e for e in eps.unbind(0)]


# --------------------------------------------------------------------------------------------
# step 3, method "hooks": forward hooks + tensor hooks on the outputs


class _Recorder:
    """Keeps, per target group, one [input, grad_output] slot per call of its Linears."""

    def __init__(self, groups: list[_Group]):
        self.groups = groups
        self.slots: list[list[list[Tensor | None]]] = [[] for _ in groups]
        self.active = False
        self.handles = []
        for gi, grp in enumerate(groups):
            for mod in grp.modules:
                self.handles.append(mod.register_forward_hook(self._make_hook(gi), with_kwargs=True))

    def _make_hook(self, gi: int):
        def hook(module, args, kwargs, output):
            if not self.active:
                return None
            x = args[0] if args else kwargs["input"]
            slot: list[Tensor | None] = [x.detach(), None]
            self.slots[gi].append(slot)
            if isinstance(output, Tensor) and output.requires_grad:
                # A tensor hook registered now sees the gradient w.r.t. this very value, even if
                # the model later modifies the output in place.
                def grad_hook(grad, slot=slot):
                    slot[1] = grad.detach()
                output.register_hook(grad_hook)
            return None
        return hook

    def clear(self) -> None:
        self.slots = [[] for _ in self.groups]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _hooks_draw(rec: _Recorder, groups: list[_Group], fb: FisherBatch, tgt: Tensor, n: int,
                likelihood: str, dtype: torch.dtype, retain: bool, reduce: str = "none") -> list[Tensor | None]:
    """Method ``hooks``, one label draw: one backward pass of the batch's summed -log p (each sample's term
    gives its score, whose squares make the diagonal of I(θ) in Eq. (5) or of I_em in Eq. (6)), then per
    group Σ_{b<n} G_b ⊙ G_b from the recorded slots."""
    bsz = fb.outputs.shape[0]
    loss = _per_sample_nll(fb.outputs, tgt, fb.mask, likelihood)[:n].sum()
    if not loss.requires_grad:
        return [None] * len(groups)
    for slots in rec.slots:
        for slot in slots:
            slot[1] = None
    # Gradients w.r.t. the weights drive the backward pass through every target output (firing
    # the tensor hooks) and give the batch gradient the per-sample ones must add up to.
    batch_grads = torch.autograd.grad(loss, [grp.weight for grp in groups], retain_graph=retain,
                                      allow_unused=True)
    return [_hooks_contrib(rec, gi, grp, gw.mT if grp.transposed and gw is not None else gw, n, bsz, dtype, reduce)
            for gi, (grp, gw) in enumerate(zip(groups, batch_grads))]


def _hooks_contrib(rec: _Recorder, gi: int, grp: _Group, batch_grad: Tensor | None, n: int, bsz: int,
                   dtype: torch.dtype, reduce: str = "none") -> Tensor | None:
    """Σ_{b<n} G_b ⊙ G_b for one group from the recorded slots (its row or column sums with ``reduce``);
    checks Σ_b G_b = batch gradient."""
    xs, gs = [], []
    for x, g in rec.slots[gi]:
        if g is None:
            continue  # this call's output did not reach the loss
        if x.dim() < 2 or x.shape[0] != bsz or g.shape[:-1] != x.shape[:-1]:
            raise RuntimeError(
                f"method='hooks': target {grp.names[0]!r} received an input of shape {tuple(x.shape)} "
                f"whose first axis is not the batch (size {bsz}); use method='func' or 'loop'"
            )
        xs.append(x[:n].reshape(n, -1, x.shape[-1]))
        gs.append(g[:n].reshape(n, -1, g.shape[-1]))
    if not xs:
        if batch_grad is not None and bool(batch_grad.ne(0).any()):
            raise RuntimeError(
                f"method='hooks': the weight of {grp.names[0]!r} receives a gradient but its module's "
                "forward was never called (e.g. F.linear on module.weight, as nn.MultiheadAttention "
                "does); use method='func' or 'loop'"
            )
        return None
    x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
    g = gs[0] if len(gs) == 1 else torch.cat(gs, dim=1)
    if x.dtype != g.dtype:
        common = torch.promote_types(x.dtype, g.dtype)
        x, g = x.to(common), g.to(common)
    cdt = torch.promote_types(x.dtype, dtype)
    check = batch_grad is not None and _BATCH_GRAD_CHECK != "off"
    if reduce != "none":
        # no per-sample blocks to sum: the check is the one GEMM gᵀx (the size of the weight gradient)
        if check:
            _check_batch_gradient(grp, x.to(cdt), g.to(cdt), batch_grad)
        return _reduced_squares(x, g, reduce, cdt)
    # The blocks G_b below are formed anyway when samples hold several positions and nothing is
    # projected; summing them costs one pass over memory, where gᵀx would be one more GEMM of
    # the size of the weight gradient itself (about a fifth of the whole call on a transformer).
    fused = check and _BATCH_GRAD_CHECK == "fused" and grp.project is None and x.shape[1] > 1
    if check and not fused:
        _check_batch_gradient(grp, x.to(cdt), g.to(cdt), batch_grad)
    if grp.project is not None:
        u, v = grp.project
        g = g.to(cdt) @ u.to(cdt)
        x = x.to(cdt) @ v.to(cdt)
    if x.shape[1] == 1:
        # One position per sample: G_b = g_b x_bᵀ, so G_b ⊙ G_b = (g_b ⊙ g_b)(x_b ⊙ x_b)ᵀ and
        # the sum over b is one matrix product; no (B, out, in) tensor is formed.
        g1, x1 = g[:, 0].to(cdt), x[:, 0].to(cdt)
        return (g1 * g1).t() @ (x1 * x1)
    out_f, in_f = g.shape[-1], x.shape[-1]
    chunk = max(1, _CHUNK_ELEMENTS // (out_f * in_f))
    acc = torch.zeros(out_f, in_f, dtype=cdt, device=x.device)
    total = torch.zeros_like(acc) if fused else None
    for s in range(0, n, chunk):
        # G_b in the precision of the recorded tensors, as the func and loop methods get it from
        # autograd; only its squares and the sums over samples use `dtype`. A float64 product of
        # float32 factors is no more accurate than they are, and costs twice the time.
        gb = torch.bmm(g[s:s + chunk].transpose(1, 2), x[s:s + chunk]).to(cdt)
        if total is not None:
            total += gb.sum(dim=0)
        acc += gb.square_().sum(dim=0)
    if total is not None:
        _check_batch_gradient(grp, x, g, batch_grad, total)
    return acc


def _reduced_squares(x: Tensor, g: Tensor, reduce: str, dtype: torch.dtype) -> Tensor:
    """``Σ_b Σ_j (G_b)_ij²`` (``reduce='rows'``, shape (out,)) or ``Σ_b Σ_i (G_b)_ij²`` (``'columns'``, (in,))
    for ``G_b = g_bᵀ x_b`` (x (n, T, in), g (n, T, out)), without forming G_b when that is cheaper.

    Row i of G_b is ``g_b[:, i]ᵀ x_b``, so its squared norm is ``g_b[:, i]ᵀ (x_b x_bᵀ) g_b[:, i]``: with the
    T × T Gram matrix ``K_b = x_b x_bᵀ``, the row sums are ``Σ_t (K_b g_b)_{t,i} g_{b,t,i}`` — exact, at
    O(T²(in + out)) per sample instead of the O(T · in · out) of forming G_b. Columns alike with
    ``g_b g_bᵀ``. Whichever of the two is cheaper for this T is used.
    """
    n, T, in_f = x.shape
    out_f = g.shape[-1]
    a, b = (g, x) if reduce == "rows" else (x, g)       # a: the kept axis; b: the summed one
    if T * (in_f + out_f) < in_f * out_f:
        K = torch.bmm(b, b.transpose(1, 2))             # (n, T, T)
        return (torch.bmm(K, a).to(dtype) * a.to(dtype)).sum(dim=(0, 1))
    acc = torch.zeros(a.shape[-1], dtype=dtype, device=x.device)
    chunk = max(1, _CHUNK_ELEMENTS // (out_f * in_f))
    for s in range(0, n, chunk):
        gb = torch.bmm(a[s:s + chunk].transpose(1, 2), b[s:s + chunk]).to(dtype)   # (chunk, kept, summed)
        acc += gb.square_().sum(dim=(0, 2))
    return acc


def _check_batch_gradient(grp: _Group, x: Tensor, g: Tensor, batch_grad: Tensor,
                          ours: Tensor | None = None) -> None:
    """Σ_b G_b must equal autograd's batch gradient; a gap means the weight is also used
    outside its module's forward, which the hooks cannot see. ``ours`` is Σ_b G_b when the
    caller already has it (summed from the per-sample blocks); else it is gᵀx."""
    if ours is None:
        ours = g.reshape(-1, g.shape[-1]).t() @ x.reshape(-1, x.shape[-1])
    scale = float(torch.linalg.vector_norm(g)) * float(torch.linalg.vector_norm(x))
    if grp.factors is not None:
        # autograd gives the core's gradient ∂L/∂S = Uᵀ (∂L/∂W) V; the projection multiplies the
        # rounding bound by at most ‖U‖₂‖V‖₂
        u, v = (f.to(ours.dtype) for f in grp.factors)
        ours = u.mT @ ours @ v
        scale *= float(torch.linalg.matrix_norm(u, 2)) * float(torch.linalg.matrix_norm(v, 2))
    ref = batch_grad.to(ours.dtype)
    rows = x.shape[0] * x.shape[1]
    # A rounding bound for a sum of `rows` outer products in the model's precision.
    eps = torch.finfo(batch_grad.dtype).eps
    gap = float(torch.linalg.vector_norm(ours - ref))
    if gap > 4 * eps * rows * scale + 1e-30:
        raise RuntimeError(
            f"method='hooks': per-sample gradients of {grp.names[0]!r} do not add up to the batch "
            f"gradient (gap {gap:.3g}); its weight is probably also used outside its module's "
            "forward; use method='func' or 'loop'"
        )


# --------------------------------------------------------------------------------------------
# step 3, methods "func" and "loop": torch.func and a plain loop over samples


class _Call(nn.Module):
    """Wraps ``forward(model, batch)`` so that ``functional_call`` can swap the model's weights."""

    def __init__(self, model: nn.Module, forward: Callable[[nn.Module, Any], FisherBatch]):
        super().__init__()
        self.m = model
        self._forward = forward

    def forward(self, batch: Any) -> Tensor:
        return self._forward(self.m, batch).outputs


def _as_pytree(batch: Any) -> Any:
    # Mapping subclasses (e.g. a tokenizer's BatchEncoding) are not registered pytree nodes.
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping):
        return {k: _as_pytree(v) for k, v in batch.items()}
    if isinstance(batch, tuple) and not hasattr(batch, "_fields"):
        return tuple(_as_pytree(v) for v in batch)
    if isinstance(batch, list):
        return [_as_pytree(v) for v in batch]
    return batch


def _split_batch(batch: Any, bsz: int):
    """Leaves, tree spec, and which leaves are batched (tensors whose first axis is the batch)."""
    leaves, spec = pytree.tree_flatten(_as_pytree(batch))
    flags = [isinstance(t, Tensor) and t.dim() >= 1 and t.shape[0] == bsz for t in leaves]
    return leaves, spec, flags


def _square_sum(per_sample: Tensor, grp: _Group, dtype: torch.dtype) -> Tensor:
    cdt = torch.promote_types(per_sample.dtype, dtype)
    p = per_sample.to(cdt)
    if grp.transposed:
        p = p.mT
    if grp.project is not None:
        u, v = grp.project
        p = u.to(cdt).t() @ p @ v.to(cdt)
    return p.square().sum(dim=0)


def _func_contribs(call: _Call, groups: list[_Group], batch: Any, fb: FisherBatch, tgt: Tensor,
                   n: int, likelihood: str, dtype: torch.dtype) -> list[Tensor]:
    """Method ``func``, one label draw: the per-sample scores G_b = ∂ -log p(y_b|x_b) / ∂W (whose squares make
    the diagonal of I(θ) in Eq. (5) or of I_em in Eq. (6)) by ``vmap(grad(...))`` over the first ``n``
    samples, in chunks; per group Σ_b G_b ⊙ G_b."""
    from torch.func import functional_call, grad, vmap

    bsz = fb.outputs.shape[0]
    leaves, spec, flags = _split_batch(batch, bsz)
    leaves = [t[:n] if f else t for t, f in zip(leaves, flags)]
    # One name per group: functional_call ties the other names of a shared weight to it.
    params = {"m." + grp.paths[0] + ".weight": grp.weight.detach() for grp in groups}
    mask = fb.mask[:n] if fb.mask is not None else None

    def loss(p, sample_leaves, t, m):
        one = [x.unsqueeze(0) if f else x for x, f in zip(sample_leaves, flags)]
        out = functional_call(call, p, (pytree.tree_unflatten(one, spec),))
        return _per_sample_nll(out, t.unsqueeze(0), None if m is None else m.unsqueeze(0),
                               likelihood).sum()

    numel = sum(g.weight.numel() for g in groups)
    chunk = max(1, _CHUNK_ELEMENTS // numel)
    in_dims = (None, [0 if f else None for f in flags], 0, None if mask is None else 0)
    try:
        per_sample = vmap(grad(loss), in_dims=in_dims, chunk_size=chunk)(params, leaves, tgt[:n], mask)
    except RuntimeError as err:
        # e.g. Hugging Face BERT branches on mask values, which vmap cannot trace.
        if "vmap" not in str(err):
            raise
        raise RuntimeError(f"method='func': torch.func.vmap cannot run this model's forward ({err}); "
                           "use method='hooks' or 'loop'") from err
    return [_square_sum(per_sample["m." + grp.paths[0] + ".weight"], grp, dtype) for grp in groups]


def _loop_contribs(model: nn.Module, forward: Callable, groups: list[_Group], batch: Any,
                   fb: FisherBatch, tgt: Tensor, n: int, likelihood: str,
                   dtype: torch.dtype) -> list[Tensor]:
    """Method ``loop``, one label draw: one forward and one autograd call per sample b < n (its score, whose
    squares make the diagonal of I(θ) in Eq. (5) or of I_em in Eq. (6)); per group Σ_b G_b ⊙ G_b, None
    where no gradient reached it."""
    bsz = fb.outputs.shape[0]
    leaves, spec, flags = _split_batch(batch, bsz)
    weights = [grp.weight for grp in groups]
    acc: list[Tensor | None] = [None] * len(groups)
    for b in range(n):
        one = pytree.tree_unflatten([t[b:b + 1] if f else t for t, f in zip(leaves, flags)], spec)
        with torch.enable_grad():
            out = forward(model, one).outputs
            m = None if fb.mask is None else fb.mask[b:b + 1]
            loss = _per_sample_nll(out, tgt[b:b + 1], m, likelihood).sum()
            if not loss.requires_grad:
                continue
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
        for i, (grp, gw) in enumerate(zip(groups, grads)):
            if gw is None:
                continue
            sq = _square_sum(gw.unsqueeze(0), grp, dtype)
            acc[i] = sq if acc[i] is None else acc[i] + sq
    return acc


# --------------------------------------------------------------------------------------------
# the public entry point: validate, accumulate by one estimator, reduce


def diagonal_fisher(
    model: nn.Module,
    loader: Iterable,
    targets: Mapping[str, nn.Module] | Sequence[str],
    forward: Callable[[nn.Module, Any], FisherBatch] | None = None,
    *,
    likelihood: str = "categorical",
    labels: str = "empirical",
    method: str = "hooks",
    max_samples: int | None = None,
    n_label_samples: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    normalize: bool = False,
    progress: bool = False,
    project: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    reduce: str = "none",
) -> dict[str, Tensor]:
    """Diagonal of the Fisher information of each target Linear weight: the true Fisher I(θ) (the paper's
    Section 2, defined after Eq. (2); the metric of the KL projection, Eq. (5)) or the empirical Fisher
    I_em of Eq. (6).

    Returns ``{name: F}`` with F of the weight's shape (out, in):
    F = Σ_n (1/K) Σ_k (∂ log p(y_{n,k}|x_n) / ∂W)², the *sum* over the calibration samples of
    squared per-sample gradients (``normalize=True`` divides by the number of samples, giving the
    per-sample mean). This is the diagonal Ĩ of Eq. (5) that TFWSVD uses as element weights and
    whose row sums (:func:`row_weights`) FWSVD uses (Section 3.2).

    Args:
        model: any ``nn.Module``; it is put in eval mode for the call and its modes restored after.
        loader: iterable of batches (a DataLoader); each is passed to ``forward``.
        targets: names of ``nn.Linear`` or :class:`LowRankLinear` modules in ``model.named_modules()``, or
            name -> module. Linears sharing one weight Parameter get the Fisher of that shared weight. A
            LowRankLinear gets the Fisher of its dense weight W = U S Vᵀ (shape (out, in)): its per-sample
            gradient with respect to W is the same Γᵀ X as a Linear's (``method="hooks"`` only), so IFHT
            needs no dense copy of the model.
        forward: ``forward(model, batch) -> FisherBatch``; default :func:`default_forward`.
        likelihood: "categorical" (logits) or "gaussian" (unit-variance Gaussian on outputs).
        labels: "empirical" (the batch's targets: I_em, Eq. (6)) or "true" (labels drawn from the model: I(θ)).
        method: "hooks" (batched, default), "func" (torch.func vmap) or "loop" (per-sample autograd).
        max_samples: stop after this many samples (a batch is cut to fit).
        n_label_samples: K draws per input with ``labels="true"``, averaged.
        generator: ``torch.Generator`` for the draws (its device is where they are made); None uses
            the global CPU generator.
        dtype: accumulation precision (float32 default; float64 for references).
        normalize: divide by the number of samples.
        progress: show a tqdm bar over batches.
        project: optional name -> (U (out, r), V (in, r')): return the Fisher of S = Uᵀ W V, i.e.
            of the per-sample gradients Uᵀ G_b V, shape (r, r'), for a weight written U S Vᵀ with U
            and V fixed (IFHT, the paper's Algorithm 2).
        reduce: ``"none"`` (the full (out, in) diagonal, as TFWSVD needs), ``"rows"`` (its row sums (out,),
            :func:`row_weights`, as FWSVD / IFHT / FWTRP need) or ``"columns"`` (its column sums (in,)).
            With ``method="hooks"`` the sums come from T × T Gram matrices of each sample's T positions
            (:func:`_reduced_squares`), without the (out, in) per-sample gradients; exact either way.

    Leaves no hooks, no ``.grad`` and no ``requires_grad`` change behind; parameters are untouched.

    >>> model = nn.Sequential(nn.Linear(3, 2))
    >>> x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    >>> F = diagonal_fisher(model, [(x, y)], ["0"])
    >>> F["0"].shape, bool((F["0"] >= 0).all())
    (torch.Size([2, 3]), True)
    >>> diagonal_fisher(model, [(x, y)], ["0"], reduce="rows")["0"].shape      # FWSVD's row weights
    torch.Size([2])
    """
    settings = _Settings(likelihood=likelihood, labels=labels, method=method, max_samples=max_samples,
                         n_label_samples=n_label_samples, generator=generator, dtype=dtype, reduce=reduce)
    groups = _validate(model, loader, targets, forward, project, settings)
    acc, count = _accumulate(model, loader, default_forward if forward is None else forward, groups, settings,
                             progress)
    return _reduce(groups, acc, count, targets, settings, normalize)


@dataclass(frozen=True)
class _Settings:
    """What one :func:`diagonal_fisher` call estimates and how (its keyword arguments that every step reads)."""

    likelihood: str
    labels: str
    method: str
    max_samples: int | None
    n_label_samples: int
    generator: torch.Generator | None
    dtype: torch.dtype
    reduce: str


# ---- step 1: validate everything before any forward pass


def _validate(model: nn.Module, loader: Any, targets: Any, forward: Any,
              project: Mapping[str, tuple[Tensor, Tensor]] | None, s: _Settings) -> list[_Group]:
    """Checks every argument of :func:`diagonal_fisher` (one line each: name, value, what is allowed) and
    returns the target weights resolved to groups (:func:`_resolve_targets`); runs no forward pass."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    _choice("likelihood", s.likelihood, LIKELIHOODS)
    _choice("labels", s.labels, LABELS)
    _choice("method", s.method, ESTIMATORS)
    _choice("reduce", s.reduce, REDUCTIONS)
    if s.reduce != "none" and project is not None:
        raise ValueError(f"reduce={s.reduce!r} with project: the Fisher of S = Uᵀ W V is returned in full; "
                         "allowed with project: reduce='none'")
    max_samples, n_label_samples = s.max_samples, s.n_label_samples
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples <= 0):
        raise ValueError(f"max_samples must be None or a positive int, got {max_samples!r}")
    if isinstance(n_label_samples, bool) or not isinstance(n_label_samples, int) or n_label_samples < 1:
        raise ValueError(f"n_label_samples must be a positive int, got {n_label_samples!r}")
    if s.labels == "empirical" and n_label_samples != 1:
        raise ValueError(f"n_label_samples={n_label_samples} needs labels='true' (empirical labels "
                         "are fixed); allowed with labels='empirical': 1")
    if s.generator is not None and not isinstance(s.generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(s.generator).__name__}")
    if not isinstance(s.dtype, torch.dtype) or not s.dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {s.dtype!r}")
    if forward is not None and not callable(forward):
        raise ValueError(f"forward must be callable or None, got {type(forward).__name__}")
    if not isinstance(loader, Iterable):
        raise ValueError(f"loader must be an iterable of batches, got {type(loader).__name__}")
    if hasattr(loader, "__len__") and len(loader) == 0:
        raise ValueError("loader is empty (len 0); it must yield at least one batch")
    groups = _resolve_targets(model, targets, project)
    low_rank = [grp.names[0] for grp in groups if grp.factors is not None]
    if low_rank and s.method != "hooks":
        raise ValueError(f"method={s.method!r} differentiates with respect to the weight Parameter, which a "
                         f"LowRankLinear target ({low_rank[0]!r}) does not have; allowed with LowRankLinear "
                         "targets: method='hooks'")
    return groups


# ---- step 3: accumulate Σ_n Σ_k G_{n,k} ⊙ G_{n,k} over the loader (step 2, the labels, is _draw_targets)


def _accumulate(model: nn.Module, loader: Iterable, forward: Callable[[nn.Module, Any], FisherBatch],
                groups: list[_Group], s: _Settings, progress: bool) -> tuple[list[Tensor | None], int]:
    """Per group, the sum over the loader's samples n and label draws k of the squared per-sample gradients
    (∂ log p(y_{n,k}|x_n) / ∂W)², the unnormalised diagonal of Eq. (5) (true) or Eq. (6) (empirical); None
    where no gradient reached a group. Returns it with the number of samples used."""
    with _calibration_state(model, groups, s.method) as rec:
        squares = _backend(model, forward, groups, s, rec)
        acc: list[Tensor | None] = [None] * len(groups)
        count = 0
        batches = loader
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(loader, desc="fisher", unit="batch",
                           total=len(loader) if hasattr(loader, "__len__") else None)
        for batch in batches:
            if s.max_samples is not None and count >= s.max_samples:
                break
            fb = _forward_batch(model, forward, batch, rec, s)
            bsz = fb.outputs.shape[0]
            n = bsz if s.max_samples is None else min(bsz, s.max_samples - count)
            if n == 0:
                if rec is not None:
                    rec.clear()
                continue
            draws = _draw_targets(fb, s.likelihood, s.labels, s.n_label_samples, s.generator)
            for k, tgt in enumerate(draws):
                for i, c in enumerate(squares(batch, fb, tgt, n, k + 1 < len(draws))):
                    if c is not None:
                        acc[i] = c if acc[i] is None else acc[i] + c
            if rec is not None:
                rec.clear()
            count += n
            if progress:
                batches.set_postfix(samples=count)
        if count == 0:
            raise ValueError("loader yielded no samples; it must yield at least one non-empty batch")
    return acc, count


@contextmanager
def _calibration_state(model: nn.Module, groups: list[_Group], method: str) -> Iterator[_Recorder | None]:
    """Eval mode (samples must not interact: BatchNorm on running statistics, no dropout), gradients for the
    target weights only, and for ``method="hooks"`` the :class:`_Recorder`; all undone on exit."""
    modes = {m: m.training for m in model.modules()}
    grad_flags = {p: p.requires_grad for p in model.parameters()}
    rec: _Recorder | None = None
    try:
        model.eval()
        # Only the target weights need gradients; the func method differentiates functionally.
        for p in grad_flags:
            p.requires_grad_(False)
        if method in ("hooks", "loop"):
            for grp in groups:
                grp.weight.requires_grad_(True)
        if method == "hooks":
            rec = _Recorder(groups)
        yield rec
    finally:
        if rec is not None:
            rec.remove()
        for p, flag in grad_flags.items():
            p.requires_grad_(flag)
        for m, mode in modes.items():
            m.training = mode


def _forward_batch(model: nn.Module, forward: Callable[[nn.Module, Any], FisherBatch], batch: Any,
                   rec: _Recorder | None, s: _Settings) -> FisherBatch:
    """The checked outputs of one batch: with gradients and recorded by the hooks, else under no_grad (func
    and loop run their own forward per sample; this one only gives outputs for the label draws)."""
    if rec is not None:
        rec.active = True
        try:
            with torch.enable_grad():
                fb = forward(model, batch)
        finally:
            rec.active = False
    else:
        with torch.no_grad():
            fb = forward(model, batch)
    return _check_batch(fb, s.likelihood, s.labels)


def _backend(model: nn.Module, forward: Callable[[nn.Module, Any], FisherBatch], groups: list[_Group],
             s: _Settings, rec: _Recorder | None) -> Callable[[Any, FisherBatch, Tensor, int, bool],
                                                              list[Tensor | None]]:
    """The estimator ``s.method`` as one function ``(batch, checked outputs, one label draw, n, more draws
    follow) -> per group Σ_{b<n} G_b ⊙ G_b`` (or its row / column sums, hooks with ``reduce``)."""
    if s.method == "hooks":
        return lambda batch, fb, tgt, n, retain: _hooks_draw(rec, groups, fb, tgt, n, s.likelihood, s.dtype,
                                                             retain=retain, reduce=s.reduce)
    if s.method == "func":
        call = _Call(model, forward)
        return lambda batch, fb, tgt, n, retain: _func_contribs(call, groups, batch, fb, tgt, n, s.likelihood,
                                                                s.dtype)
    return lambda batch, fb, tgt, n, retain: _loop_contribs(model, forward, groups, batch, fb, tgt, n,
                                                            s.likelihood, s.dtype)


# ---- step 4: reduce


def _reduce(groups: list[_Group], acc: list[Tensor | None], count: int, targets: Any, s: _Settings,
            normalize: bool) -> dict[str, Tensor]:
    """``{name: F}`` in the order of ``targets``: the accumulated sums (zeros where no gradient reached), their
    row / column sums for ``reduce`` (func / loop form the full squares), divided by K label draws (the Monte
    Carlo mean of the expectation over p_θ(y|x) in I(θ)) and, with ``normalize``, by the number of samples."""
    result: dict[str, Tensor] = {}
    for grp, a in zip(groups, acc):
        if grp.project is not None:
            shape = (grp.project[0].shape[1], grp.project[1].shape[1])
        else:
            shape = grp.shape
        if a is None:
            a = torch.zeros(shape, dtype=s.dtype, device=grp.weight.device)
        if s.reduce != "none" and a.dim() == 2:
            # func / loop form the full per-sample squares; reduce them here (hooks returned sums already)
            a = a.sum(dim=1) if s.reduce == "rows" else a.sum(dim=0)
        a = a.to(s.dtype)
        if s.n_label_samples > 1:
            a = a / s.n_label_samples
        if normalize:
            a = a / count
        for name in grp.names:
            result[name] = a if len(grp.names) == 1 else a.clone()
    order = [n for n in (targets.keys() if isinstance(targets, Mapping) else targets)]
    return {name: result[name] for name in order}
