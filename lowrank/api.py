"""One call to compress your own model with a one-shot method of the paper's Table 2.

>>> import torch
>>> import lowrank
>>> model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
>>> loader = [(torch.randn(8, 16), torch.randint(0, 4, (8,))) for _ in range(4)]
>>> model, report = lowrank.compress(model, method="fwsvd", params_fraction=0.5, calibration=loader,
...                                  targets=["0", "2"])
>>> report.ranks
{'0': 5, '2': 1}
>>> report.achieved_fraction <= 0.5
True

``model`` is any ``nn.Module`` (a timm ViT, a Hugging Face BERT / RoBERTa / DistilBERT, your own);
``targets="auto"`` (the default) picks every ``nn.Linear`` inside its repeated transformer blocks from
the module tree (:func:`lowrank.targets.auto_targets`); a preset name or patterns work as in
:func:`lowrank.surgery.find_linear_layers`. The model is modified in place and returned.

Methods (the "not iterative" rows of the paper's Table 2):

* ``svd`` — the Euclidean projection, Eq. (4); needs no calibration data;
* ``fwsvd`` — Eq. (5) with the diagonal Fisher summed over each row's inputs (FWSVD); ``tfwsvd`` — Eq. (5)
  with the full diagonal Fisher; both measure the Fisher on ``calibration`` (:mod:`lowrank.fisher`);
* ``asvd`` — Eq. (7), activation-aware, from the input second moments measured on ``calibration``;
* ``ttm`` / ``fwttm`` — tensor trains (TT-SVD; FWSVD's row weights fitted by ALS); ``rank`` is then
  the bond-rank cap.

The iterative methods (OIALR, IEHT, IFHT, TRP, FWTRP: Algorithms 1–4) compress while they train; they
run in the library's training loop (``python -m lowrank run``), not here.

Size: ``rank=`` (one int, or a name → int mapping) or ``params_fraction=`` ∈ (0, 1], the compressed
target layers' parameters (frozen factors and biases included) over the dense ones. ``rank_rule``:

* ``"uniform"`` (default) — every target layer keeps the same fraction of its own parameters: the
  largest rank ``k`` with ``k(m + n) + bias ≤ f · (mn + bias)``, so the total meets ``f`` as well;
* ``"energy"`` — the paper's energy rule (IEHT's cut, Algorithm 1) with one threshold β for all layers:
  each layer keeps the smallest head of its spectrum holding ≥ β of its energy Σσ², and β is the largest
  value whose ranks fit the budget (found exactly over the finite set of values where a rank changes).
  The spectrum is the one the method truncates: σ(W) for ``svd``, σ(D W) with FWSVD's row scaling D for
  ``fwsvd`` (and, as a closed-form stand-in, for ``tfwsvd``, whose element-weighted problem has no
  spectrum), σ(W L) with ``C = L Lᵀ`` the (ridged) input second moment for ``asvd``. Low-rank methods
  only. Layers get different ranks: the rule spends the budget where the spectrum is flat.

Every argument, the target selection, the ranks and one batch of the calibration data (run through
the model) are checked before any statistic is measured or any layer changes; a problem raises a
``ValueError`` naming the argument, the value and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, ClassVar, Iterable, Literal, Mapping, Sequence

import torch
import torch.nn as nn

from .configs import Config, FisherLabels, Fraction, Interval, NonNegativeInt, setting
from .fisher import FisherBatch, default_forward, row_weights
from .layers import as_linear
from .linalg import validate_rank
from .method_table import METHOD_TABLE, method_names
from .projection import (RANK_RULES, batch_size, check_rank_one_fits, measure_statistics, pick_fisher_estimator,
                         project_targets, tt_caps, uniform_ranks)
from .surgery import ParameterCount, count_parameters, find_linear_layers, refuse_tied, untie_weights

__all__ = ["ONE_SHOT_METHODS", "RANK_RULES", "FISHER_METHODS", "CompressResult", "compress", "check_calibration",
           "CompressArguments", "validate_compress_arguments"]

LOW_RANK_METHODS = method_names(iterative=False, form="low_rank")
TT_METHODS = method_names(iterative=False, form="tt")
ONE_SHOT_METHODS = (*LOW_RANK_METHODS, *TT_METHODS)
_CALIBRATED = method_names(iterative=False, needs_calibration=True)
_ITERATIVE = method_names(iterative=True)
#: ``fisher_method=``: an estimator of :func:`lowrank.fisher.diagonal_fisher`, or ``auto`` (``hooks`` when
#: every target's input carries the batch on its first axis, else the per-sample ``loop``)
FISHER_METHODS = ("auto", "hooks", "func", "loop")


@dataclass
class CompressResult:
    """What :func:`compress` did: per-layer ranks (a tuple of bond ranks for a tensor train), the layers
    kept dense and why, parameter counts before / after (every parameter, frozen factors included),
    the requested and achieved fraction of the target parameters, and the calibration statistics used
    (``fisher``: name → the (out, in) diagonal Fisher; ``second_moments``: name → the (in, in) input
    second moment; summarised in :meth:`as_dict`)."""

    method: str
    targets: list[str]
    ranks: dict[str, int | tuple[int, ...]]
    skipped: dict[str, str]
    before: ParameterCount
    after: ParameterCount
    params_fraction: float | None = None
    rank_rule: str | None = None
    energy_beta: float | None = None
    calibration: dict[str, Any] | None = None
    fisher: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    second_moments: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    untied: dict[str, int] = field(default_factory=dict)

    @property
    def achieved_fraction(self) -> float:
        """Compressed over dense target parameters."""
        return self.after.target / self.before.target

    def statistics(self) -> dict[str, dict[str, float]]:
        """Per-layer summary of the measured statistics (JSON-friendly)."""
        out: dict[str, dict[str, float]] = {}
        for name, F in (self.fisher or {}).items():
            r = row_weights(F.double())
            out.setdefault(name, {}).update({
                "fisher_total": float(F.double().sum()), "fisher_row_weight_min": float(r.min()),
                "fisher_row_weight_max": float(r.max()), "fisher_row_weight_mean": float(r.mean())})
        for name, C in (self.second_moments or {}).items():
            ev = torch.linalg.eigvalsh(0.5 * (C.double() + C.double().mT))
            out.setdefault(name, {}).update({
                "second_moment_trace": float(ev.sum()), "second_moment_eig_max": float(ev.max()),
                "second_moment_eig_min": float(ev.min())})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "targets": list(self.targets),
                "ranks": {k: list(v) if isinstance(v, tuple) else v for k, v in self.ranks.items()},
                "skipped": dict(self.skipped), "before": self.before.as_dict(), "after": self.after.as_dict(),
                "params_fraction": self.params_fraction, "achieved_fraction": self.achieved_fraction,
                "achieved_fraction_total": self.after.ratio_total, "untied": dict(self.untied),
                "rank_rule": self.rank_rule, "energy_beta": self.energy_beta, "calibration": self.calibration,
                "statistics": self.statistics()}


# ------------------------------------------------------------------------------------------ checks
def _move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _move(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_move(v, device) for v in batch)
    return batch


def _describe_batch(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return f"tensor {tuple(batch.shape)} {batch.dtype}"
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{k!r}: {_describe_batch(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (tuple, list)):
        return type(batch).__name__ + "(" + ", ".join(_describe_batch(v) for v in batch) + ")"
    return type(batch).__name__


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def check_calibration(model: nn.Module, calibration: Any, forward: Callable[[nn.Module, Any], FisherBatch], *,
                      likelihood: str = "categorical") -> Any:
    """Run the first calibration batch through ``forward(model, batch)`` (no gradients, eval mode) and
    refuse data the model cannot take, before any statistic is measured. Returns the first batch."""
    if isinstance(calibration, (str, bytes)) or not isinstance(calibration, Iterable):
        raise ValueError(f"calibration must be an iterable of batches (e.g. a DataLoader), got "
                         f"{type(calibration).__name__}")
    if hasattr(calibration, "__len__") and len(calibration) == 0:
        raise ValueError("calibration is empty (len 0); it must yield at least one batch")
    try:
        first = next(iter(calibration))
    except StopIteration:
        raise ValueError("calibration yielded no batch; it must yield at least one") from None
    if batch_size(first) is None:
        raise ValueError(f"calibration: a batch must be a tensor, an (inputs, targets) pair or a dict of tensors "
                         f"with the samples on the first axis; got {_describe_batch(first)}")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            fb = forward(model, _move(first, _device_of(model)))
    except Exception as err:  # any failure of the user's model on the batch is the data not fitting it
        hint = ("; for an encoder without logits use likelihood='gaussian' with "
                "forward=lowrank.fisher.encoder_forward" if "default_forward" in str(err) else "")
        raise ValueError(f"calibration: the first batch ({_describe_batch(first)}) does not fit the model "
                         f"{type(model).__name__}: {type(err).__name__}: {err}{hint}") from err
    finally:
        for m, t in modes.items():
            m.training = t
    out = fb.outputs if isinstance(fb, FisherBatch) else fb
    if likelihood == "categorical" and (not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[-1] < 2):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"calibration: likelihood='categorical' needs logits (batch, ..., classes ≥ 2) from the "
                         f"model, got outputs {got}; for an encoder use likelihood='gaussian' with "
                         f"forward=lowrank.fisher.encoder_forward")
    return first


class _Counted:
    """A loader that counts the batches and samples it yields (for the report)."""

    def __init__(self, loader: Iterable):
        self.loader, self.batches, self.samples = loader, 0, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.batches = self.samples = 0
        for b in self.loader:
            self.batches += 1
            self.samples += batch_size(b) or 0
            yield b


@dataclass(frozen=True)
class CompressArguments(Config):
    """The arguments of :func:`compress` that need neither the model nor the data, so that a command can
    check them before it loads anything (:func:`validate_compress_arguments`)."""

    method: str = setting("svd", f"a one-shot method: {', '.join(ONE_SHOT_METHODS)}")
    rank: Any = setting(None, "one rank for every target, or target → rank (checked against each layer's shape)")
    params_fraction: Fraction | None = setting(None, "compressed / dense parameters of the targets (or rank)")
    rank_rule: Literal[RANK_RULES] = setting("uniform", "how params_fraction becomes per-layer ranks")
    calibration_given: bool = setting(False, "whether calibration batches were passed")
    form: Literal["factorized", "low_rank"] = setting("factorized", "A·B (inference) or U S Vᵀ (training form)")
    tt_cores: Annotated[int, Interval(low=2)] = setting(3, "cores of each tensor train (ttm, fwttm)")
    fisher_labels: FisherLabels = setting("true", "labels of the Fisher: drawn from the model, or the batch's")
    likelihood: Literal["categorical", "gaussian"] = setting("categorical", "what the model's outputs are")
    forward: Any = setting(None, "forward(model, batch) → outputs; None = lowrank.fisher.default_forward")
    random_state: NonNegativeInt = setting(0, "seed of the Fisher's sampled labels")
    fisher_method: Literal[FISHER_METHODS] = setting("auto", "the Fisher estimator (FISHER_METHODS)")

    label: ClassVar[str] = "compress"

    def check(self, *, given: frozenset[str]) -> None:
        method = self.method
        if method in _ITERATIVE:
            raise ValueError(f"method={method!r} is iterative (it compresses while training: the paper's Algorithms "
                             f"1–4) and runs in the training loop (python -m lowrank run); compress() allows the "
                             f"one-shot methods: {', '.join(ONE_SHOT_METHODS)}")
        if method not in ONE_SHOT_METHODS:
            raise ValueError(f"method={method!r} is not a known one-shot method; allowed: "
                             f"{', '.join(ONE_SHOT_METHODS)}")
        if (self.rank is None) == (self.params_fraction is None):
            raise ValueError(f"give exactly one of rank= and params_fraction= (got rank={self.rank!r}, "
                             f"params_fraction={self.params_fraction!r})")
        if self.rank_rule == "energy" and (self.params_fraction is None or method in TT_METHODS):
            raise ValueError(f"rank_rule='energy' chooses ranks for a params_fraction with a low-rank method "
                             f"({', '.join(LOW_RANK_METHODS)}); got method={method!r}, "
                             f"params_fraction={self.params_fraction!r}")
        if method in TT_METHODS and self.form != "factorized":
            raise ValueError(f"form={self.form!r} does not apply to tensor trains (method={method!r}); allowed: "
                             f"'factorized'")
        if self.forward is not None and not callable(self.forward):
            raise ValueError(f"forward must be callable or None, got {type(self.forward).__name__}")
        if method in _CALIBRATED and not self.calibration_given:
            raise ValueError(f"method={method!r} measures statistics on calibration data; pass calibration=<an "
                             f"iterable of batches> (e.g. a DataLoader of a few hundred training samples)")
        if method not in _CALIBRATED and self.calibration_given:
            raise ValueError(f"method={method!r} uses no calibration data; pass calibration=None (methods that use "
                             f"it: {', '.join(_CALIBRATED)})")


def validate_compress_arguments(*, method: str, rank: Any, params_fraction: Any, rank_rule: str = "uniform",
                                calibration_given: bool = False, form: str = "factorized", tt_cores: int = 3,
                                fisher_labels: str = "true", likelihood: str = "categorical",
                                forward: Any = None, random_state: int = 0, fisher_method: str = "auto") -> None:
    """The checks of :func:`compress` that need neither the model nor the data (:class:`CompressArguments`);
    each raises a ``ValueError`` naming the argument, the value and what is allowed."""
    CompressArguments.from_mapping(dict(
        method=method, rank=rank, params_fraction=params_fraction, rank_rule=rank_rule,
        calibration_given=calibration_given, form=form, tt_cores=tt_cores, fisher_labels=fisher_labels,
        likelihood=likelihood, forward=forward, random_state=random_state, fisher_method=fisher_method))


# ------------------------------------------------------------------------------------------ the call
def compress(model: nn.Module, *, method: str = "svd", rank: int | Mapping[str, int] | None = None,
             params_fraction: float | None = None, rank_rule: str = "uniform", calibration: Iterable | None = None,
             targets: str | Sequence[str] | Mapping[str, Sequence[str]] = "auto",
             forward: Callable[[nn.Module, Any], FisherBatch] | None = None, likelihood: str = "categorical",
             fisher_labels: str = "true", max_samples: int | None = None, form: str = "factorized",
             tt_cores: int = 3, random_state: int = 0,
             projection_kwargs: Mapping[str, Any] | None = None, fisher_method: str = "auto",
             untie: bool = False) -> tuple[nn.Module, CompressResult]:
    """One-shot compression of ``model``'s target layers, in place (module docstring). Returns
    ``(model, report)``.

    ``calibration``: an iterable of batches (tensors, ``(inputs, targets)`` pairs, or dicts such as a
    tokenizer's output), required by ``fwsvd``, ``tfwsvd``, ``asvd``, ``fwttm``, refused by the others.
    ``forward(model, batch) → FisherBatch`` turns a batch into model outputs (default
    :func:`lowrank.fisher.default_forward`); ``likelihood`` (``categorical`` logits or ``gaussian``
    outputs) and ``fisher_labels`` (``true``: drawn from the model, the paper's Fisher; ``empirical``:
    the batch's labels, Eq. 6) define the Fisher; ``max_samples`` caps the calibration samples.
    ``form``: ``factorized`` (``A·B``, the inference form) or ``low_rank`` (``U S Vᵀ``, the training form
    of the iterative loops). ``tt_cores``: the number of cores of ``ttm`` / ``fwttm``.
    ``projection_kwargs`` go to the projection (e.g. ``{"ridge": 1e-4}`` for ``asvd``; its default here
    is ``"auto"``, :func:`lowrank.linalg.auto_ridge`). ``fisher_method``: the Fisher estimator
    (:data:`FISHER_METHODS`); ``auto`` checks the first batch's layouts and picks ``hooks`` or ``loop``.
    ``untie``: a target whose weight is tied to another module (an LM head to the embedding) is refused
    unless ``True``; it then gets its own copy, and ``report.untied`` / the counts show what that costs.
    """
    # ---- arguments, before any work
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    validate_compress_arguments(method=method, rank=rank, params_fraction=params_fraction, rank_rule=rank_rule,
                                calibration_given=calibration is not None, form=form, tt_cores=tt_cores,
                                fisher_labels=fisher_labels, likelihood=likelihood, forward=forward,
                                random_state=random_state, fisher_method=fisher_method)
    if params_fraction is not None:
        params_fraction = float(params_fraction)
    modules = find_linear_layers(model, targets)
    names = list(modules)
    for name, layer in modules.items():
        if not isinstance(layer.weight, nn.Parameter) or layer.weight.dim() != 2:
            raise ValueError(f"{name}: its weight is not a 2-D nn.Parameter (parametrised modules cannot be "
                             f"factorised)")
    refuse_tied(model, names, untie)
    layers = {n: as_linear(m) for n, m in modules.items()}   # (out, in) weights, read-only
    if rank is not None:
        for name, layer in layers.items():
            if isinstance(rank, Mapping):
                if name not in rank:
                    raise ValueError(f"rank: the mapping has no rank for target {name!r}; targets: {names}")
                k = rank[name]
            else:
                k = rank
            if method in TT_METHODS:
                if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                    raise ValueError(f"{name}: rank={k!r} (the TT bond-rank cap) must be a positive int")
            else:
                validate_rank(k, tuple(layer.weight.shape), name)
    forward = default_forward if forward is None else forward
    device = _device_of(model)
    fwd = lambda mdl, batch: forward(mdl, _move(batch, device))  # noqa: E731
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 1):
        raise ValueError(f"max_samples={max_samples!r} must be a positive int or None")
    # ranks that need only the shapes are chosen now, so that a fraction that cannot be met is refused
    # before any statistic is measured
    if params_fraction is not None and params_fraction < 1.0:
        if method in TT_METHODS:
            rank = tt_caps(layers, params_fraction, tt_cores)
        elif rank_rule == "uniform":
            rank = uniform_ranks(layers, params_fraction)
        else:
            check_rank_one_fits(layers, params_fraction)
    info = METHOD_TABLE[method]
    estimator = None
    if info.needs_calibration:
        first = check_calibration(model, calibration, fwd, likelihood=likelihood)
        if info.fisher:
            estimator = pick_fisher_estimator(model, modules, first, fwd, fisher_method)

    before = count_parameters(model, names)   # unique tensors, before any untying
    untied = untie_weights(model, names) if untie else {}

    # ---- statistics
    kwargs = dict(projection_kwargs or {})
    if method == "asvd":
        kwargs.setdefault("ridge", "auto")
    counted = _Counted(calibration) if info.needs_calibration else None
    full, moments = measure_statistics(method, model, names, counted, fwd, likelihood=likelihood,
                                       labels=fisher_labels, random_state=random_state, estimator=estimator,
                                       max_samples=max_samples)
    fisher = None if full is None else {n: F.to(layers[n].weight.dtype) for n, F in full.items()}
    calib_info = None
    if counted is not None:
        samples = counted.samples if max_samples is None else min(counted.samples, max_samples)
        calib_info = {"batches": counted.batches, "samples": samples, "statistic":
                      "diagonal Fisher" if fisher is not None else "input second moment",
                      "likelihood": likelihood if fisher is not None else None,
                      "labels": fisher_labels if fisher is not None else None,
                      **({"fisher_method": estimator} if fisher is not None else {})}

    # ---- ranks and the projection
    proj = project_targets(model, names, method, rank=rank, params_fraction=params_fraction, rank_rule=rank_rule,
                           fisher=full, moments=moments, form=form, projection_kwargs=kwargs, tt_cores=tt_cores,
                           untie=untie)
    rep, beta = proj.report, proj.energy_beta
    result = CompressResult(method=method, targets=names, ranks=dict(rep.ranks),
                            skipped=proj.skipped,
                            before=before, after=count_parameters(model, names, original=before),
                            params_fraction=params_fraction, rank_rule=rank_rule if params_fraction else None,
                            energy_beta=beta, calibration=calib_info, fisher=fisher, second_moments=moments,
                            untied=untied)
    return model, result
