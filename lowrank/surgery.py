"""Model surgery: pick target ``nn.Linear`` layers by name, swap them for factorised layers, count parameters.

Target selection uses shell-style patterns on ``model.named_modules()`` names (``fnmatch``), with
presets for the paper's settings:

* ``vit_mlp`` / ``bert_mlp`` — only the MLP (feed-forward) layers, as in the paper's Table 1;
* ``vit_all`` / ``bert_all`` — every Linear inside the transformer blocks (attention and MLP), the
  setting of Figures 2–5; the classification head is never a target.

``targets="auto"`` instead decides from the module tree: every Linear inside the repeated blocks of a
transformer, never embeddings, poolers or heads (:func:`lowrank.targets.auto_targets`).

Parameter counts are honest: frozen factors count, and :func:`compress_model` only factorises a layer
when ``k(m + n) < m n`` (else it leaves the dense layer untouched and says so) unless ``force=True``;
:func:`compress_model_tt` (TTM / FWTTM) likewise only when the train stores fewer numbers than ``m n``.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from .layers import FactorizedLinear, LowRankLinear, TTLinear, as_linear, conv1d_class, factorization_pays
from .linalg import PROJECTIONS, _validate_weights_tensor, project, validate_rank, validate_weight
from .targets import auto_targets
from .tt import TTShape, row_weighted_tt, tt_num_params, tt_ranks_for, tt_shape_for, tt_svd

__all__ = [
    "TARGET_PRESETS",
    "find_linear_layers",
    "get_module",
    "replace_module",
    "ParameterCount",
    "count_parameters",
    "compress_model",
    "compress_model_tt",
    "TT_METHODS",
    "compile_model",
    "to_low_rank",
    "CompressionReport",
    "target_ranks",
    "tied_targets",
    "untie_weights",
]

TARGET_PRESETS: dict[str, dict[str, list[str]]] = {
    "vit_mlp": {"include": ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2"], "exclude": []},
    "vit_all": {"include": ["blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2"],
                "exclude": []},
    "bert_mlp": {"include": ["*encoder.layer.*.intermediate.dense", "*encoder.layer.*.output.dense"],
                 "exclude": ["*attention.output.dense"]},
    "bert_all": {"include": ["*encoder.layer.*.attention.self.query", "*encoder.layer.*.attention.self.key",
                             "*encoder.layer.*.attention.self.value", "*encoder.layer.*.attention.output.dense",
                             "*encoder.layer.*.intermediate.dense", "*encoder.layer.*.output.dense"],
                 "exclude": []},
}

_LINEARS = (nn.Linear, LowRankLinear, FactorizedLinear, TTLinear)


def _target_kinds(include_factorized: bool = False) -> tuple[type, ...]:
    """The layer classes that can be targets: ``nn.Linear`` and, when transformers is loaded, its
    ``Conv1D`` (GPT-2; :func:`lowrank.layers.as_linear` states its axis convention)."""
    conv = conv1d_class()
    kinds = _LINEARS if include_factorized else (nn.Linear,)
    return kinds if conv is None else (*kinds, conv)


def _resolve_patterns(targets: str | Sequence[str] | Mapping[str, Sequence[str]]) -> tuple[list[str], list[str]]:
    if isinstance(targets, str):
        if targets in TARGET_PRESETS:
            p = TARGET_PRESETS[targets]
            return list(p["include"]), list(p["exclude"])
        return [targets], []
    if isinstance(targets, Mapping):
        unknown = set(targets) - {"include", "exclude"}
        if unknown:
            raise ValueError(f"targets: unknown keys {sorted(unknown)}; allowed: 'include', 'exclude'")
        return list(targets.get("include", [])), list(targets.get("exclude", []))
    return list(targets), []


def find_linear_layers(model: nn.Module, targets: str | Sequence[str] | Mapping[str, Sequence[str]],
                       *, include_factorized: bool = False) -> dict[str, nn.Module]:
    """Name → layer for every ``nn.Linear`` whose qualified name matches an include pattern and no exclude.

    ``targets`` is ``"auto"`` (the Linears of the repeated blocks, :func:`lowrank.targets.auto_targets`),
    a preset name (see :data:`TARGET_PRESETS`), one pattern, a list of patterns, or
    ``{"include": [...], "exclude": [...]}``. A selection that matches nothing is an error (a typo in a
    pattern must not silently compress nothing).
    """
    kinds = _target_kinds(include_factorized)
    if isinstance(targets, str) and targets == "auto":
        return {n: model.get_submodule(n) for n in auto_targets(model, kinds)}
    include, exclude = _resolve_patterns(targets)
    if not include:
        raise ValueError(f"targets: no include pattern given ({targets!r})")
    found = {}
    for name, module in model.named_modules():
        if not isinstance(module, kinds):
            continue
        if (any(fnmatch.fnmatchcase(name, p) for p in include)
                and not any(fnmatch.fnmatchcase(name, p) for p in exclude)):
            found[name] = module
    if not found:
        linears = [n for n, m in model.named_modules() if isinstance(m, _target_kinds(True))][:8]
        raise ValueError(f"targets={targets!r} matched no Linear layer; presets: {sorted(TARGET_PRESETS)}; "
                         f"some Linear names in this model: {linears}")
    return found


def target_ranks(model: nn.Module, names: Iterable[str]) -> dict[str, int]:
    """Rank of every named layer: the factor rank, ``min(out, in)`` for a dense layer, and the largest bond
    rank for a tensor train (one int per layer keeps logs and reports uniform)."""
    out = {}
    for n in names:
        m = model.get_submodule(n)
        out[n] = m.rank if isinstance(m, (LowRankLinear, FactorizedLinear, TTLinear)) else min(m.weight.shape)
    return out


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Swap the submodule at dotted ``name`` for ``new``; returns the old module."""
    if not name:
        raise ValueError("replace_module: name must name a submodule, got ''")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def tied_targets(model: nn.Module, names: Iterable[str]) -> dict[str, list[str]]:
    """Target name → the other modules sharing its weight tensor (an LM head tied to the embedding), for
    every target whose weight is shared."""
    owners: dict[int, list[str]] = {}
    for mname, mod in model.named_modules(remove_duplicate=False):
        w = mod._parameters.get("weight") if hasattr(mod, "_parameters") else None
        if w is not None:
            owners.setdefault(id(w), []).append(mname)
    out = {}
    for n in names:
        w = model.get_submodule(n)._parameters.get("weight")
        others = [o for o in owners.get(id(w), []) if o != n] if w is not None else []
        if others:
            out[n] = others
    return out


def refuse_tied(model: nn.Module, names: Iterable[str], untie: bool) -> dict[str, list[str]]:
    """Raise for targets that share their weight unless ``untie``; returns :func:`tied_targets`."""
    tied = tied_targets(model, names)
    if tied and not untie:
        name, others = next(iter(tied.items()))
        raise ValueError(f"{name}: its weight is tied to {others} (shared tensor); factorising it would keep the "
                         f"shared tensor for {others[0]} and add the factors, so the model grows. Leave it out of "
                         f"targets, or pass untie=True to give it its own copy (the report then counts the cost)")
    return tied


def untie_weights(model: nn.Module, names: Iterable[str]) -> dict[str, int]:
    """Give each named layer its own copy of a weight it shares with another module; name → the
    parameters the copy adds to the model."""
    out = {}
    for n in tied_targets(model, names):
        mod = model.get_submodule(n)
        mod.weight = nn.Parameter(mod.weight.detach().clone(), requires_grad=mod.weight.requires_grad)
        out[n] = mod.weight.numel()
    return out


@dataclass
class ParameterCount:
    """Parameter counts of a model and of its target layers (frozen factors included)."""

    total: int
    target: int
    original_total: int | None = None
    original_target: int | None = None

    @property
    def ratio_total(self) -> float | None:
        return None if not self.original_total else self.total / self.original_total

    @property
    def ratio_target(self) -> float | None:
        return None if not self.original_target else self.target / self.original_target

    def as_dict(self) -> dict:
        return {"total": self.total, "target": self.target, "original_total": self.original_total,
                "original_target": self.original_target, "ratio_total": self.ratio_total,
                "ratio_target": self.ratio_target}


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_parameters(model: nn.Module, target_names: Iterable[str] = (), *,
                     original: ParameterCount | None = None) -> ParameterCount:
    """Count every parameter (trainable or frozen) of ``model`` and of the named target layers.

    Pass the count of the uncompressed model as ``original`` to get the ratios.
    """
    names = list(target_names)
    target = sum(_numel(model.get_submodule(n)) for n in names)
    total = _numel(model)
    if original is None:
        return ParameterCount(total, target)
    return ParameterCount(total, target, original.total, original.target)


@dataclass
class CompressionReport:
    """What :func:`compress_model` / :func:`compress_model_tt` did to each target layer.

    ``ranks``: the rank of each factorised layer; for a tensor train, the tuple of its bond ranks.
    """

    ranks: dict[str, int | tuple[int, ...]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    before: ParameterCount | None = None
    after: ParameterCount | None = None

    untied: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"ranks": self.ranks, "skipped": self.skipped, "untied": self.untied,
                "before": self.before.as_dict() if self.before else None,
                "after": self.after.as_dict() if self.after else None}


def compress_model(model: nn.Module, targets: str | Sequence[str] | Mapping[str, Sequence[str]], *,
                   method: str = "svd", rank: int | Mapping[str, int] | Callable[[str, nn.Linear], int] | None = None,
                   fisher: Mapping[str, torch.Tensor] | None = None,
                   second_moments: Mapping[str, torch.Tensor] | None = None,
                   form: str = "factorized", force: bool = False, projection_kwargs: Mapping | None = None,
                   untie: bool = False) -> CompressionReport:
    """One-shot projection of the target layers (the "not iterative" rows of the paper's Table 2), in place.

    ``method``: ``svd`` | ``fwsvd`` | ``tfwsvd`` | ``asvd`` (see :func:`lowrank.linalg.project`).
    ``rank``: one int for every layer, a name → int mapping, or a function ``(name, layer) → int``.
    ``form``: ``factorized`` (inference form ``A·B``) or ``low_rank`` (training form ``U S Vᵀ``).
    A layer where ``k(m + n) ≥ m n`` is left dense and untouched (recorded in ``report.skipped``)
    unless ``force``. A target whose weight is tied to another module is refused unless ``untie``
    (:func:`refuse_tied`). All inputs are validated for every layer before any layer is modified.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"method={method!r} is not a projection; allowed: {', '.join(PROJECTIONS)}")
    if form not in ("factorized", "low_rank"):
        raise ValueError(f"form={form!r}; allowed: 'factorized', 'low_rank'")
    layers = {n: as_linear(l) for n, l in find_linear_layers(model, targets).items()}
    names = list(layers)
    refuse_tied(model, names, untie)
    before = count_parameters(model, names)
    plan: dict[str, int] = {}
    for name, layer in layers.items():
        m, n = layer.weight.shape
        if rank is None:
            raise ValueError(f"{name}: rank is required (int, mapping or callable), got None")
        k = rank(name, layer) if callable(rank) else rank[name] if isinstance(rank, Mapping) else rank
        validate_rank(k, (m, n), name)
        if method in ("fwsvd", "tfwsvd") and (fisher is None or name not in fisher):
            raise ValueError(f"{name}: method={method!r} needs a Fisher tensor for this layer (fisher[{name!r}])")
        if method == "asvd" and (second_moments is None or name not in second_moments):
            raise ValueError(f"{name}: method='asvd' needs an input second moment (second_moments[{name!r}])")
        plan[name] = k
    report = CompressionReport(before=before, untied=untie_weights(model, plan) if untie else {})
    kwargs = dict(projection_kwargs or {})
    for name, k in plan.items():
        layer = layers[name]
        m, n = layer.weight.shape
        if not force and not factorization_pays(m, n, k):
            report.skipped[name] = f"rank {k}: k(m+n)={k * (m + n)} ≥ mn={m * n}, kept dense"
            continue
        W = layer.weight.detach()
        f = project(W, method, k, fisher=None if fisher is None else fisher[name],
                    second_moment=None if second_moments is None else second_moments[name], name=name, **kwargs)
        b = layer.bias.detach() if layer.bias is not None else None
        new = FactorizedLinear.from_factors(f, b) if form == "factorized" else LowRankLinear.from_factors(f, b)
        new.to(device=W.device, dtype=W.dtype)
        replace_module(model, name, new)
        report.ranks[name] = k
    report.after = count_parameters(model, names, original=before)
    return report


TT_METHODS = ("ttm", "fwttm")


def compress_model_tt(model: nn.Module, targets: str | Sequence[str] | Mapping[str, Sequence[str]], *,
                      method: str = "ttm", cores: int | Mapping[str, TTShape] = 3,
                      max_rank: int | Sequence[int] | Mapping[str, int | Sequence[int]] | None = None,
                      fisher: Mapping[str, torch.Tensor] | None = None, sweeps: int = 10, eps: float = 1e-8,
                      tol: float = 1e-6, force: bool = False, untie: bool = False) -> CompressionReport:
    """Replace the target Linear layers by :class:`TTLinear` tensor trains, in place.

    ``method``: ``ttm`` (TT-SVD, the "TTM [61]" row of the paper's Table 2, Oseledets 2011) or
    ``fwttm`` (:func:`lowrank.tt.row_weighted_tt`, the "FWTTM [63]" row: TT fitted to the FWSVD row
    weights by alternating least squares, ``sweeps`` / ``eps`` / ``tol`` passed on).
    ``cores``: the number of cores ``d`` (every layer gets the balanced :func:`lowrank.tt.tt_shape_for`)
    or a name → :class:`TTShape` mapping. ``max_rank``: the bond cap (one int, one per bond, or a
    name → cap mapping); ranks are then :func:`lowrank.tt.tt_ranks_for`. ``fisher[name]``: the
    layer's diagonal Fisher ``(out, in)``, reduced to row weights by summing over the input axis
    (as FWSVD), or the row weights ``(out,)`` themselves; required for ``fwttm``.

    A layer whose train would not store fewer numbers than the dense ``m n`` weight is left dense and
    untouched (recorded in ``report.skipped``) unless ``force``. Every input is validated for every
    layer before any layer is modified.
    """
    if method not in TT_METHODS:
        raise ValueError(f"method={method!r} is not a tensor-train method; allowed: {', '.join(TT_METHODS)}")
    if not isinstance(cores, Mapping) and (isinstance(cores, bool) or not isinstance(cores, int) or cores < 1):
        raise ValueError(f"cores={cores!r} must be a positive int (number of cores) or a name → TTShape mapping")
    if max_rank is None:
        raise ValueError("max_rank is required (int, per-bond sequence, or name → cap mapping), got None")
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 0:
        raise ValueError(f"sweeps={sweeps!r} must be an int ≥ 0")
    for key, val in (("eps", eps), ("tol", tol)):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not val >= 0 or val == float("inf"):
            raise ValueError(f"{key}={val!r} must be a finite number ≥ 0")
    layers = {n: as_linear(l) for n, l in find_linear_layers(model, targets).items()}
    names = list(layers)
    refuse_tied(model, names, untie)
    before = count_parameters(model, names)
    plan: dict[str, tuple[TTShape, tuple[int, ...], torch.Tensor | None]] = {}
    for name, layer in layers.items():
        m, n = layer.weight.shape
        validate_weight(layer.weight.detach(), name)
        if isinstance(cores, Mapping):
            if name not in cores:
                raise ValueError(f"{name}: cores mapping has no TTShape for this layer (cores[{name!r}])")
            shape = cores[name]
            if not isinstance(shape, TTShape) or (shape.out_features, shape.in_features) != (m, n):
                raise ValueError(f"{name}: cores[{name!r}]={shape!r} must be a TTShape with out = {m}, in = {n}")
        else:
            shape = tt_shape_for(m, n, cores)
        cap = max_rank[name] if isinstance(max_rank, Mapping) and name in max_rank else max_rank
        if isinstance(cap, Mapping):
            raise ValueError(f"{name}: max_rank mapping has no cap for this layer (max_rank[{name!r}])")
        try:
            ranks = tt_ranks_for(shape, cap)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        rows = None
        if method == "fwttm":
            if fisher is None or name not in fisher:
                raise ValueError(f"{name}: method='fwttm' needs a Fisher tensor for this layer (fisher[{name!r}])")
            f = fisher[name]
            if isinstance(f, torch.Tensor) and f.ndim == 2:
                _validate_weights_tensor(f, (m, n), name, "fisher")
                f = f.sum(dim=1)   # row weights: one per output neuron, summed over the input axis
            _validate_weights_tensor(f, (m,), name, "fisher row weights")
            if not (f > 0).any():
                raise ValueError(f"{name}: fisher is zero for every row; FWTTM needs at least one positive weight")
            rows = f
        plan[name] = (shape, ranks, rows)
    report = CompressionReport(before=before, untied=untie_weights(model, plan) if untie else {})
    for name, (shape, ranks, rows) in plan.items():
        layer = layers[name]
        m, n = layer.weight.shape
        cost = tt_num_params(shape, ranks)
        if not force and cost >= m * n:
            report.skipped[name] = f"TT ranks {ranks}: {cost} numbers ≥ mn={m * n}, kept dense"
            continue
        W = layer.weight.detach()
        caps = list(ranks) if ranks else None
        dec = (tt_svd(W, shape, max_rank=caps, name=name) if method == "ttm"
               else row_weighted_tt(W, shape, rows, caps, sweeps=sweeps, eps=eps, tol=tol, name=name))
        b = layer.bias.detach() if layer.bias is not None else None
        new = TTLinear.from_decomposition(dec, b)
        new.to(device=W.device, dtype=W.dtype)
        replace_module(model, name, new)
        report.ranks[name] = tuple(dec.ranks)
    report.after = count_parameters(model, names, original=before)
    return report


def to_low_rank(model: nn.Module,
                targets: str | Sequence[str] | Mapping[str, Sequence[str]]) -> dict[str, LowRankLinear]:
    """Full-rank conversion of the target layers to ``U S Vᵀ`` (the ``t = d`` step of the paper's
    Algorithms 1–2)."""
    out = {}
    for name, layer in find_linear_layers(model, targets).items():
        new = LowRankLinear.from_linear(layer, name=name)
        replace_module(model, name, new)
        out[name] = new
    return out


def compile_model(model: nn.Module) -> dict[str, nn.Module]:
    """Replace every :class:`LowRankLinear` by its inference form (end of the paper's Algorithms 1–2): the
    :class:`FactorizedLinear` ``A·B``, or the dense ``nn.Linear`` of the same weight when ``k(m + n) ≥ mn``
    (a factorisation that does not pay is never what one would deploy, and the logged compiled size,
    :meth:`lowrank.train.Trainer.compiled_target_params`, counts such a layer as dense)."""
    names = [n for n, m in model.named_modules() if isinstance(m, LowRankLinear)]
    out = {}
    for name in names:
        layer = model.get_submodule(name)
        pays = factorization_pays(layer.out_features, layer.in_features, layer.rank)
        new = layer.to_factorized() if pays else layer.to_linear()
        replace_module(model, name, new)
        out[name] = new
    return out
