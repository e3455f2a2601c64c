"""Factorised replacements for ``nn.Linear``.

* :class:`LowRankLinear` — the *training form* of the iterative loops of the paper (arXiv 2507.09428;
  Algorithms 1–2, after OIALR): ``W = U S Vᵀ`` with ``U (out×k)`` and ``V (in×k)`` frozen and the square
  ``S (k×k)`` trained.
* :class:`FactorizedLinear` — the *inference form* produced by the "compile" step at the end of
  the paper's Algorithms 1–4: ``W = A B`` with ``A = U U' √S'`` and ``B = √S' V'ᵀ Vᵀ`` where ``S = U' S' V'ᵀ``.
* :class:`TTLinear` — a tensor-train matrix (TTM / FWTTM rows of Table 2, Oseledets 2011): a train
  of 4-D cores, applied to the input core by core; training and inference form at once.

Both keep ``nn.Linear``'s interface (``in_features``, ``out_features``, ``bias``, ``forward(x)`` on
``(..., in)``), so they can be swapped into timm and Hugging Face models (loralib's habit). Frozen
factors are ``nn.Parameter`` with ``requires_grad=False`` so that ``model.parameters()`` counts them:
a factorisation only pays when ``k(m + n) (+ k²) < m n``.
"""
from __future__ import annotations

import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from .linalg import LowRankFactors, orthonormalize, robust_svd, truncated_svd, validate_rank, validate_weight
from .tt import TTDecomposition, TTShape, tt_num_params, tt_ranks_for, tt_shape_for, tt_svd, tt_to_matrix

__all__ = ["LowRankLinear", "FactorizedLinear", "TTLinear", "factorization_pays", "conv1d_class", "is_linear_like",
           "linear_shape", "as_linear"]


def conv1d_class() -> type | None:
    """transformers' ``Conv1D`` (GPT-2's projections) when transformers is imported, else ``None``: a model
    holding one was built by transformers, so nothing here needs to import it."""
    mod = sys.modules.get("transformers.pytorch_utils")
    return getattr(mod, "Conv1D", None)


def is_linear_like(module: nn.Module) -> bool:
    """An ``nn.Linear`` or a transformers ``Conv1D``: the layers that can be targets."""
    conv = conv1d_class()
    return isinstance(module, nn.Linear) or (conv is not None and isinstance(module, conv))


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """``(out, in)`` of a Linear-like layer (:func:`as_linear` states the axis convention)."""
    if isinstance(module, nn.Linear):
        return tuple(module.weight.shape)
    return tuple(module.weight.shape[::-1])


def as_linear(module: nn.Module) -> nn.Linear:
    """The layer as an ``nn.Linear`` computing the same map: the layer itself when it is one.

    The one place of the axis convention: ``nn.Linear`` stores ``W`` as ``(out, in)`` and computes
    ``x Wᵀ + b``; transformers' ``Conv1D`` stores it as ``(in, out)`` and computes ``x W + b``; so the
    Linear's weight is the ``Conv1D``'s transposed (an exact copy, the same dtype and device).
    Everything downstream (projections, Fisher shapes, factor layers) reads ``(out, in)``.
    """
    if isinstance(module, nn.Linear):
        return module
    if not is_linear_like(module):
        raise ValueError(f"expected an nn.Linear or a transformers Conv1D, got {type(module).__name__}")
    W = module.weight.detach()
    lin = nn.Linear(W.shape[0], W.shape[1], bias=module.bias is not None, device=W.device, dtype=W.dtype)
    with torch.no_grad():
        lin.weight.copy_(W.mT)
        if module.bias is not None:
            lin.bias.copy_(module.bias)
    return lin


def factorization_pays(out_features: int, in_features: int, rank: int, *, core: bool = False) -> bool:
    """``True`` when a rank-``rank`` factorisation stores fewer numbers than the dense ``m × n`` weight.

    ``core=True`` counts the trained ``k × k`` core of :class:`LowRankLinear` as well.
    """
    cost = rank * (out_features + in_features) + (rank * rank if core else 0)
    return cost < out_features * in_features


def _factors_of(linear: nn.Module, rank: int | None, factors: LowRankFactors | None,
                name: str) -> tuple[LowRankFactors, torch.Tensor | None]:
    """A dense layer's factors (``factors``, else its truncated SVD at ``rank``, ``None`` = full rank) and bias."""
    if not is_linear_like(linear):
        raise ValueError(f"{name}: expected nn.Linear or Conv1D, got {type(linear).__name__}")
    linear = as_linear(linear)
    W = linear.weight.detach()
    validate_weight(W, name)
    if factors is None:
        factors = truncated_svd(W, min(W.shape) if rank is None else rank, name=name)
    return factors, (linear.bias.detach() if linear.bias is not None else None)


class LowRankLinear(nn.Module):
    """``y = x V Sᵀ Uᵀ + b`` — training form of OIALR / IEHT / IFHT (Algorithm 1 of the paper, arXiv 2507.09428).

    ``U`` (out×k) and ``V`` (in×k) are semi-orthogonal and frozen; ``S`` (k×k) is the only trained
    weight. The forward pass applies the three factors right to left, costing ``T·k(m + n + k)`` for
    ``T`` input rows, instead of rebuilding ``W`` (``m·n·k + T·m·n``) as the OIALR reference code does;
    when the rebuild is cheaper (``k`` close to full and few rows), it rebuilds, so it is never slower
    than the better of the two by FLOP count.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, *,
                 device=None, dtype=None) -> None:
        super().__init__()
        validate_rank(rank, (out_features, in_features), "LowRankLinear")
        kw = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.U = nn.Parameter(torch.empty(out_features, rank, **kw), requires_grad=False)
        self.S = nn.Parameter(torch.empty(rank, rank, **kw))
        self.V = nn.Parameter(torch.empty(in_features, rank, **kw), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Random orthonormal bases and the S of an nn.Linear-like init; only used when built directly.
        nn.init.orthogonal_(self.U)
        nn.init.orthogonal_(self.V)
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.S, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    # -------------------------------------------------------------------- conversions
    @classmethod
    def from_factors(cls, factors: LowRankFactors, bias: torch.Tensor | None = None) -> "LowRankLinear":
        """Build from ``Ŵ = U diag(S) Vh`` (any factors; they are re-orthonormalised first)."""
        f = orthonormalize(factors)
        m, k = f.U.shape
        n = f.Vh.shape[1]
        layer = cls(n, m, k, bias=bias is not None, device=f.U.device, dtype=f.U.dtype)
        with torch.no_grad():
            layer.U.copy_(f.U)
            layer.V.copy_(f.Vh.mT)
            layer.S.copy_(torch.diag(f.S))
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int | None = None, *, factors: LowRankFactors | None = None,
                    name: str = "linear") -> "LowRankLinear":
        """Factorise a dense layer: truncated SVD at ``rank`` (``None`` = full rank), or given ``factors``
        (e.g. from a Fisher-weighted projection)."""
        return cls.from_factors(*_factors_of(linear, rank, factors, name))

    def dense_weight(self) -> torch.Tensor:
        """``U S Vᵀ`` (out × in). Costs ``m·n·k``; used for conversions and checks, not in forward."""
        return self.U @ self.S @ self.V.mT

    @property
    def weight(self) -> torch.Tensor:
        """Dense view of the weight, for code that reads ``layer.weight`` (computed, not stored)."""
        return self.dense_weight()

    def to_linear(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.S.device, dtype=self.S.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.dense_weight())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def to_factorized(self) -> "FactorizedLinear":
        """Compile (end of Algorithm 1 of the paper, arXiv 2507.09428): ``S = U' S' V'ᵀ``; ``A = U U' √S'``,
        ``B = √S' V'ᵀ Vᵀ``."""
        with torch.no_grad():
            Us, Ss, Vsh = robust_svd(self.S.detach(), "LowRankLinear.S")
            root = Ss.clamp_min(0).sqrt()
            A = (self.U @ Us) * root
            B = root[:, None] * (Vsh @ self.V.mT)
        b = self.bias.detach() if self.bias is not None else None
        return FactorizedLinear.from_matrices(A, B, b)

    # -------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, n, k = self.out_features, self.in_features, self.rank
        rows = x.numel() // n if n else 0
        if rows * k * (m + n + k) <= m * n * k + rows * m * n:
            h = F.linear(x, self.V.mT)          # (…, k) = x V
            h = F.linear(h, self.S)             # (…, k) = x V Sᵀ
            return F.linear(h, self.U, self.bias)
        return F.linear(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"bias={self.bias is not None}")


class FactorizedLinear(nn.Module):
    """``y = (x Bᵀ) Aᵀ + b`` with ``A (out×k)``, ``B (k×in)`` — the compiled inference form.

    Stored as two ``nn.Linear`` (``down``: in→k without bias, ``up``: k→out with the bias) so that the
    forward pass is two GEMMs with the bias fused into the second.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, *,
                 device=None, dtype=None) -> None:
        super().__init__()
        validate_rank(rank, (out_features, in_features), "FactorizedLinear")
        self.in_features = in_features
        self.out_features = out_features
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    @property
    def rank(self) -> int:
        return self.down.out_features

    @property
    def bias(self) -> torch.Tensor | None:
        return self.up.bias

    @property
    def weight(self) -> torch.Tensor:
        """Dense view ``A B`` (computed), for code that reads ``layer.weight``."""
        return self.up.weight @ self.down.weight

    @classmethod
    def from_matrices(cls, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None = None) -> "FactorizedLinear":
        m, k = A.shape
        k2, n = B.shape
        if k != k2:
            raise ValueError(f"FactorizedLinear: inner dimensions differ, A is {tuple(A.shape)}, B is {tuple(B.shape)}")
        layer = cls(n, m, k, bias=bias is not None, device=A.device, dtype=A.dtype)
        with torch.no_grad():
            layer.up.weight.copy_(A)
            layer.down.weight.copy_(B)
            if bias is not None:
                layer.up.bias.copy_(bias)
        return layer

    @classmethod
    def from_factors(cls, factors: LowRankFactors, bias: torch.Tensor | None = None) -> "FactorizedLinear":
        """Balanced split ``A = U √S``, ``B = √S Vh``."""
        root = factors.S.clamp_min(0).sqrt()
        return cls.from_matrices(factors.U * root, root[:, None] * factors.Vh, bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int | None = None, *, factors: LowRankFactors | None = None,
                    name: str = "linear") -> "FactorizedLinear":
        return cls.from_factors(*_factors_of(linear, rank, factors, name))

    def to_linear(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.down.weight.device, dtype=self.down.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def to_low_rank(self) -> LowRankLinear:
        """Back to the training form (an SVD of ``A B`` through :func:`orthonormalize`)."""
        f = LowRankFactors(self.up.weight.detach(),
                           torch.ones(self.rank, dtype=self.up.weight.dtype, device=self.up.weight.device),
                           self.down.weight.detach())
        b = self.bias.detach() if self.bias is not None else None
        return LowRankLinear.from_factors(f, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"bias={self.bias is not None}")


class TTLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` a tensor-train matrix (cores ``(r_{k-1}, m_k, n_k, r_k)``, see :mod:`lowrank.tt`).

    The layer of the "TTM [61]" and "FWTTM [63]" rows of the paper's Table 2. Every core trains (there
    is no frozen basis and no separate compiled form: the train already stores
    ``Σ r_{k-1} m_k n_k r_k`` numbers). The forward pass contracts the input with one core at a time,
    never forming the ``(out, in)`` matrix, when that is cheaper: for ``T`` input rows it costs
    ``T Σ_k (Π m_≤k)(Π n_>k) n_k r_{k-1} r_k`` multiply-adds against ``T·out·in`` (plus forming W once)
    for the dense product. Each contraction also permutes and copies its operand, which costs more
    than the arithmetic it saves at the sizes we measured (``bench/tt.py``, one CPU thread): the cores
    path was 3.8× slower per training step of the digits ViT at bond rank 4 (where it also needs more
    multiply-adds) and still 1.7× slower on a 768→3072 layer at bond rank 4, where it needs 5.8× fewer.
    ``mode`` picks the path: ``"auto"`` (default) takes the cores only when they need under
    1/:attr:`CORES_ADVANTAGE` of the dense path's multiply-adds, ``"cores"`` / ``"dense"`` force one.
    Both compute the same function.

    ``ranks`` are the d − 1 inner bond ranks; ``rank`` is their maximum (what per-layer rank logs show).
    """

    def __init__(self, shape: TTShape, ranks, bias: bool = True, *, device=None, dtype=None) -> None:
        super().__init__()
        if not isinstance(shape, TTShape):
            raise ValueError(f"TTLinear: shape={shape!r} must be a TTShape")
        ranks = tuple(ranks)
        if len(ranks) != shape.d - 1 or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks):
            raise ValueError(f"TTLinear: ranks={ranks} must be {shape.d - 1} positive ints (one per bond)")
        kw = {"device": device, "dtype": dtype}
        self.shape = shape
        self.in_features = shape.in_features
        self.out_features = shape.out_features
        r = (1, *ranks, 1)
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(r[k], m, n, r[k + 1], **kw))
            for k, (m, n) in enumerate(zip(shape.out_modes, shape.in_modes)))
        self.bias = nn.Parameter(torch.zeros(self.out_features, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Entries of W get nn.Linear's variance 1/(3·in): a product of d independent normal cores summed
        # over Π r_k bond paths has variance Π σ_k² · Π r_k, so each core gets σ² = (var / Π r_k)^(1/d).
        target = 1.0 / (3.0 * self.in_features)
        sigma = (target / math.prod(self.ranks)) ** (0.5 / self.shape.d)
        for core in self.cores:
            nn.init.normal_(core, 0.0, sigma)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(int(c.shape[3]) for c in self.cores[:-1])

    @property
    def rank(self) -> int:
        return max(self.ranks, default=1)

    @property
    def num_core_params(self) -> int:
        return tt_num_params(self.shape, self.ranks)

    # -------------------------------------------------------------------- conversions
    @classmethod
    def from_decomposition(cls, dec: TTDecomposition, bias: torch.Tensor | None = None) -> "TTLinear":
        ref = dec.cores[0]
        layer = cls(dec.shape, tuple(dec.ranks), bias=bias is not None, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for p, c in zip(layer.cores, dec.cores):
                p.copy_(c)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, shape: TTShape | int = 3, max_rank=None, rel_eps: float | None = None,
                    *, name: str = "linear") -> "TTLinear":
        """TT-SVD of a dense layer (Oseledets 2011). ``shape``: a :class:`TTShape`, or a number of cores
        ``d`` for the balanced :func:`lowrank.tt.tt_shape_for`; ``max_rank`` / ``rel_eps`` as in :func:`tt_svd`
        (neither: exact)."""
        if not is_linear_like(linear):
            raise ValueError(f"{name}: expected nn.Linear or Conv1D, got {type(linear).__name__}")
        linear = as_linear(linear)
        W = linear.weight.detach()
        validate_weight(W, name)
        if not isinstance(shape, TTShape):
            if isinstance(shape, bool) or not isinstance(shape, int) or shape < 1:
                raise ValueError(f"{name}: shape={shape!r} must be a TTShape or a positive number of cores")
            shape = tt_shape_for(linear.out_features, linear.in_features, shape)
        caps = tt_ranks_for(shape, max_rank) if max_rank is not None else None
        dec = tt_svd(W, shape, max_rank=list(caps) if caps else None, rel_eps=rel_eps, name=name)
        b = linear.bias.detach() if linear.bias is not None else None
        return cls.from_decomposition(dec, b)

    def dense_weight(self) -> torch.Tensor:
        """The ``(out, in)`` matrix of the train, for conversions and checks; forward never builds it."""
        return tt_to_matrix(list(self.cores), self.shape)

    @property
    def weight(self) -> torch.Tensor:
        """Dense view of the weight, for code that reads ``layer.weight`` (computed, not stored)."""
        return self.dense_weight()

    def to_linear(self) -> nn.Linear:
        ref = self.cores[0]
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.dense_weight())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    # -------------------------------------------------------------------- forward
    #: "auto" | "cores" | "dense" (see the class docstring)
    mode = "auto"
    #: how many times fewer multiply-adds the core path must need before "auto" takes it (above the
    #: 5.8× at which it still lost 1.7× on a CPU, see the class docstring)
    CORES_ADVANTAGE = 16

    def contraction_costs(self, rows: int) -> tuple[int, int]:
        """Multiply-adds of the core-by-core path and of the dense path (form W, then ``x Wᵀ``) for ``rows`` inputs."""
        om, im = self.shape.out_modes, self.shape.in_modes
        r = (1, *self.ranks, 1)
        d = self.shape.d
        cores = sum(rows * math.prod(om[:k + 1]) * math.prod(im[k + 1:]) * im[k] * r[k] * r[k + 1] for k in range(d))
        form = sum(math.prod(om[:k + 1]) * math.prod(im[:k + 1]) * r[k] * r[k + 1] for k in range(1, d))
        return cores, form + rows * self.out_features * self.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"TTLinear: input has {x.shape[-1]} features, expected {self.in_features}")
        mode = self.mode
        if mode == "auto":
            rows = x.numel() // self.in_features
            cores, dense = self.contraction_costs(rows)
            mode = "cores" if self.CORES_ADVANTAGE * cores < dense else "dense"
        if mode == "dense":
            return F.linear(x, tt_to_matrix(list(self.cores), self.shape), self.bias)
        if mode != "cores":
            raise ValueError(f"TTLinear.mode={self.mode!r}; allowed: 'auto', 'cores', 'dense'")
        lead = x.shape[:-1]
        # z holds (rows, output digits done, input digits left, bond): each core eats the leading input
        # digit and the bond, and emits one output digit and the next bond
        z = x.reshape(-1, 1, self.in_features, 1)
        for core in self.cores:
            B, M, N, a = z.shape
            _, m, n, b = core.shape
            z = torch.einsum("BMnRa,amnb->BMmRb", z.reshape(B, M, n, N // n, a), core)
            z = z.reshape(B, M * m, N // n, b)
        y = z.reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"out_modes={self.shape.out_modes}, in_modes={self.shape.in_modes}, ranks={self.ranks}, "
                f"bias={self.bias is not None}")
