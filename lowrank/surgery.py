"""Model surgery: pick target ``nn.Linear`` layers by name, swap them for factorised layers, count parameters.

Target selection uses shell-style patterns on ``model.named_modules()`` names (``fnmatch``), with
presets for the paper's settings:

* ``vit_mlp`` / ``bert_mlp`` — only the MLP (feed-forward) layers, as in the paper's Table 1;
* ``vit_all`` / ``bert_all`` — every Linear inside the transformer blocks (attention and MLP), the
  setting of Figures 2–5; the classification head is never a target.

Parameter counts are honest: frozen factors count, and :func:`compress_model` only factorises a layer
when ``k(m + n) < m n`` (else it leaves the dense layer untouched and says so) unless ``force=True``.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from .layers import FactorizedLinear, LowRankLinear, factorization_pays
from .linalg import PROJECTIONS, project, validate_rank

__all__ = [
    "TARGET_PRESETS",
    "find_linear_layers",
    "get_module",
    "replace_module",
    "ParameterCount",
    "count_parameters",
    "compress_model",
    "compile_model",
    "to_low_rank",
    "CompressionReport",
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

_LINEARS = (nn.Linear, LowRankLinear, FactorizedLinear)


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

    ``targets`` is a preset name (see :data:`TARGET_PRESETS`), one pattern, a list of patterns, or
    ``{"include": [...], "exclude": [...]}``. A selection that matches nothing is an error (a typo in a
    pattern must not silently compress nothing).
    """
    include, exclude = _resolve_patterns(targets)
    if not include:
        raise ValueError(f"targets: no include pattern given ({targets!r})")
    kinds = _LINEARS if include_factorized else (nn.Linear,)
    found = {}
    for name, module in model.named_modules():
        if not isinstance(module, kinds):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in include) and not any(fnmatch.fnmatchcase(name, p) for p in exclude):
            found[name] = module
    if not found:
        linears = [n for n, m in model.named_modules() if isinstance(m, _LINEARS)][:8]
        raise ValueError(f"targets={targets!r} matched no Linear layer; presets: {sorted(TARGET_PRESETS)}; "
                         f"some Linear names in this model: {linears}")
    return found


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
    """What :func:`compress_model` did to each target layer."""

    ranks: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    before: ParameterCount | None = None
    after: ParameterCount | None = None

    def as_dict(self) -> dict:
        return {"ranks": self.ranks, "skipped": self.skipped,
                "before": self.before.as_dict() if self.before else None,
                "after": self.after.as_dict() if self.after else None}


def compress_model(model: nn.Module, targets: str | Sequence[str] | Mapping[str, Sequence[str]], *,
                   method: str = "svd", rank: int | Mapping[str, int] | Callable[[str, nn.Linear], int] | None = None,
                   fisher: Mapping[str, torch.Tensor] | None = None,
                   second_moments: Mapping[str, torch.Tensor] | None = None,
                   form: str = "factorized", force: bool = False, projection_kwargs: Mapping | None = None,
                   ) -> CompressionReport:
    """One-shot projection of the target layers (the "not iterative" rows of the paper's Table 2), in place.

    ``method``: ``svd`` | ``fwsvd`` | ``tfwsvd`` | ``asvd`` (see :func:`lowrank.linalg.project`).
    ``rank``: one int for every layer, a name → int mapping, or a function ``(name, layer) → int``.
    ``form``: ``factorized`` (inference form ``A·B``) or ``low_rank`` (training form ``U S Vᵀ``).
    A layer where ``k(m + n) ≥ m n`` is left dense and untouched (recorded in ``report.skipped``)
    unless ``force``. All inputs are validated for every layer before any layer is modified.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"method={method!r} is not a projection; allowed: {', '.join(PROJECTIONS)}")
    if form not in ("factorized", "low_rank"):
        raise ValueError(f"form={form!r}; allowed: 'factorized', 'low_rank'")
    layers = find_linear_layers(model, targets)
    names = list(layers)
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
    report = CompressionReport(before=before)
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


def to_low_rank(model: nn.Module, targets: str | Sequence[str] | Mapping[str, Sequence[str]]) -> dict[str, LowRankLinear]:
    """Full-rank conversion of the target layers to ``U S Vᵀ`` (the ``t = d`` step of Algorithms 1–2)."""
    out = {}
    for name, layer in find_linear_layers(model, targets).items():
        new = LowRankLinear.from_linear(layer, name=name)
        replace_module(model, name, new)
        out[name] = new
    return out


def compile_model(model: nn.Module) -> dict[str, FactorizedLinear]:
    """Replace every :class:`LowRankLinear` by its :class:`FactorizedLinear` (end of Algorithms 1–2)."""
    names = [n for n, m in model.named_modules() if isinstance(m, LowRankLinear)]
    out = {}
    for name in names:
        new = model.get_submodule(name).to_factorized()
        replace_module(model, name, new)
        out[name] = new
    return out
