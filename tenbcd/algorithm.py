"""The tenBCD algorithm: tensor block coordinate descent for a tensor-train-compressed MLP.

The companion paper "On Model Compression for Neural Networks: Framework, Algorithm, and Convergence
Guarantee" (arXiv 2303.06815) trains a network whose weights are tied to tensor trains by variable
splitting (in the style of Zeng et al. 2019, "Global convergence of block coordinate descent in deep
learning") and minimises the split objective by exact proximal block updates, without gradients.
This module holds its configuration, state, objective, exact block updates and the run loop.

Formulation (a bias-free MLP with N layers; columns of X ∈ R^{d₀×n} are samples, Y ∈ R^{d_N×n}
one-hot; V₀ = X is fixed; σ_i = ReLU for i < N and σ_N = id; TTD(G_i) is the TT-matrix of the
cores G_i = (G_{i,1}, …, G_{i,d}), each of shape (r_{k−1}, m_k, n_k, r_k) with fixed bond ranks)::

    Φ(P) = 1/(2n) ‖V_N − Y‖²
         + γ/(2n) Σ_i ‖V_i − σ_i(U_i)‖²  +  ρ/(2n) Σ_i ‖U_i − W_i V_{i−1}‖²
         + τ/2    Σ_i ‖W_i − TTD(G_i)‖²  +  λ/2 Σ_i ‖W_i‖²

One iteration (Algorithm 1 of the companion paper, arXiv 2303.06815) visits the blocks in reverse layer order,
V_N, U_N, W_N, G_N (cores k = 1 … d), then V_i, U_i, W_i, G_i for i = N−1 … 1, and replaces each block
B by the exact minimiser of Φ + (α_B/2)‖B − B^{k−1}‖² over that block, with α_B = α for W and the cores
and α_B = α_uv/n for the per-sample blocks U, V. Because every block update is an exact proximal
minimisation, Φ(P_k) + D_k ≤ Φ(P_{k−1}) holds at every iteration, D_k = Σ_B (α_B/2)‖B_k − B_{k−1}‖²
(:func:`proximal_term`; the sufficient-decrease lemma), which gives
min_{j≤k} ‖P_j − P_{j−1}‖² ≤ 2(Φ(P_0) − inf Φ)/(min(α, α_uv) k), the O(1/k) rate, with ‖·‖ the norm of
:func:`proximal_distance`. The history returned by :func:`run_tenbcd` records both sides of that inequality.

Deviations from the companion paper, all deliberate:

* squared loss ½‖V_N − Y‖² on one-hot targets (the paper allows a general loss R_n; the square keeps
  the V_N update in closed form, as in Zeng et al.'s experiments);
* bias-free layers; of the regularisers r_i(W_i), s_i(V_i) the companion paper allows, only the weight
  penalty r_i(W_i) = (λ/2)‖W_i‖² (``weight_decay``; it adds λ to the diagonal of the W update's normal
  equations and stays in closed form);
* the data terms are averaged over samples (the 1/n above), so γ, ρ, τ and α do not depend on the
  training-set size; consequently the proximal term of the per-sample blocks U_i, V_i is averaged
  as well, (α_uv/(2n))‖U − U^{k−1}‖², and ‖P_k − P_{k−1}‖² is measured in the matching norm
  Σ‖ΔW_i‖² + Σ‖ΔG_i‖² + (1/n)Σ(‖ΔU_i‖² + ‖ΔV_i‖²). With n = 1 and α_uv = α this is the paper's single α;
  without the averaging, an α that is a sensible step for W would freeze U, V (their curvature is
  O(1/n) once the data terms are averaged);
* two proximal weights: α for W and the cores, α_uv for U and V (``alpha_uv``; ``None`` means α). In
  summed units (Φ times n) W's proximal weight is n·α and U's, V's is α_uv, so with α_uv = α the per-sample
  blocks are barely damped against their curvature γ + ρ (a ratio of about 4,000 on MNIST-1D); Zeng et
  al.'s reference code uses one weight in summed units (α = 5 with γ = ρ = 1), which is α = 5/n,
  α_uv = 5 here. The sufficient-decrease argument covers any positive weights per block;
* ρ defaults to γ (one weight for both coupling terms); the companion paper names them separately,
  and ``rho`` sets ρ on its own;
* compressed runs start, by default, from a rescaled TT-SVD of the random init (``tt_init``, see
  :func:`initial_tt`), so that the TT network does not start with near-zero outputs at small CR.

The network used for prediction is the TT one, x ↦ TTD(G_N) σ(… σ(TTD(G_1) x)); the W network
(the split weights themselves) is reported for reference. A configuration without TT ranks
(``tt_rank=None``, compression ratio 1) is the dense BCD of Zeng et al.: no cores and no τ term.

Everything runs in float64 on the device of the data.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from lowrank.tt import TTShape, matrix_to_tt_tensor, tt_num_params, tt_shape_for, tt_svd, tt_to_matrix
from lowrank.utils import make_generator
from .cost import count_macs

__all__ = [
    "DTYPE",
    "TT_INITS",
    "TenBCDConfig",
    "TenBCDState",
    "tt_bond_ranks",
    "layer_tt_shapes",
    "dense_num_params",
    "tt_compression_ratio",
    "rank_for_compression",
    "initial_tt",
    "init_state",
    "objective_terms",
    "objective",
    "proximal_distance",
    "proximal_term",
    "relu_prox",
    "update_tt_cores",
    "update_w",
    "update_v_hidden",
    "tenbcd_iteration",
    "forward_dense",
    "forward_tt",
    "accuracy",
    "run_tenbcd",
]

DTYPE = torch.float64
TT_INITS = ("svd", "rescaled")


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class TenBCDConfig:
    """Hyperparameters of one tenBCD run.

    ``widths`` are all layer widths, input and output included: (d₀, d₁, …, d_N). ``tt_rank`` is the
    uniform bond rank (capped per bond by :func:`tt_bond_ranks`); ``None`` means no TT constraint
    (dense BCD, compression ratio 1). ``rho=None`` means ρ = γ. ``alpha`` is the proximal weight of W and
    the cores, ``alpha_uv`` that of U and V per sample (``None``: α); ``weight_decay`` is λ of the penalty
    (λ/2)Σ‖W_i‖². ``init_scale`` multiplies the
    He-normal standard deviation √(2/fan_in) of the initial weights. ``tt_init`` (compressed runs):
    ``"svd"`` starts from G_i = TT-SVD(W_i) of the random W_i; ``"rescaled"`` also rescales the train
    to ‖TTD(G_i)‖ = ‖W_i‖ and starts from W_i = TTD(G_i) (see :func:`init_state`). Train, validation and
    test accuracy of the TT network are evaluated every ``eval_every`` iterations (and after the last one).
    """

    widths: tuple[int, ...]
    tt_cores: int = 3
    tt_rank: int | None = None
    # defaults: the values that trained best in a short search on MNIST-1D (40-256-256-10, d = 3)
    gamma: float = 3.0
    rho: float | None = None
    tau: float = 0.1
    alpha: float = 0.003
    iterations: int = 100
    alpha_uv: float | None = None
    weight_decay: float = 0.0
    init_scale: float = 0.3
    eval_every: int = 10
    tt_init: str = "rescaled"
    random_state: int = 0

    def __post_init__(self):
        w = self.widths
        if not isinstance(w, (tuple, list)) or len(w) < 2 or not all(_is_int(x) and x >= 1 for x in w):
            raise ValueError(f"TenBCDConfig: widths={w!r} must be a sequence of >= 2 positive ints "
                             f"(input, hidden..., output)")
        object.__setattr__(self, "widths", tuple(int(x) for x in w))
        if not _is_int(self.tt_cores) or self.tt_cores < 2:
            raise ValueError(f"TenBCDConfig: tt_cores={self.tt_cores!r} must be an int >= 2")
        if self.tt_rank is not None and (not _is_int(self.tt_rank) or self.tt_rank < 1):
            raise ValueError(f"TenBCDConfig: tt_rank={self.tt_rank!r} must be None (dense) or an int >= 1")
        for name, lo, strict in (("gamma", 0.0, True), ("tau", 0.0, False), ("alpha", 0.0, True),
                                 ("weight_decay", 0.0, False), ("init_scale", 0.0, True)):
            v = getattr(self, name)
            if not _is_number(v) or (v <= lo if strict else v < lo):
                raise ValueError(f"TenBCDConfig: {name}={v!r} must be a finite number {'>' if strict else '>='} {lo}")
        if self.rho is not None and (not _is_number(self.rho) or self.rho <= 0):
            raise ValueError(f"TenBCDConfig: rho={self.rho!r} must be None (= gamma) or a finite number > 0")
        if self.alpha_uv is not None and (not _is_number(self.alpha_uv) or self.alpha_uv <= 0):
            raise ValueError(f"TenBCDConfig: alpha_uv={self.alpha_uv!r} must be None (= alpha) or a finite number > 0")
        if not _is_int(self.iterations) or self.iterations < 0:
            raise ValueError(f"TenBCDConfig: iterations={self.iterations!r} must be an int >= 0")
        if not _is_int(self.eval_every) or self.eval_every < 1:
            raise ValueError(f"TenBCDConfig: eval_every={self.eval_every!r} must be an int >= 1")
        if self.tt_init not in TT_INITS:
            raise ValueError(f"TenBCDConfig: tt_init={self.tt_init!r}; allowed values: {list(TT_INITS)}")
        if not _is_int(self.random_state) or self.random_state < 0:
            raise ValueError(f"TenBCDConfig: random_state={self.random_state!r} must be an int >= 0")

    @property
    def num_layers(self) -> int:
        return len(self.widths) - 1

    @property
    def rho_(self) -> float:
        """ρ, the weight of ‖U_i − W_i V_{i−1}‖² (γ unless given)."""
        return float(self.gamma if self.rho is None else self.rho)

    @property
    def alpha_uv_(self) -> float:
        """α_uv, the per-sample proximal weight of U and V (α unless given)."""
        return float(self.alpha if self.alpha_uv is None else self.alpha_uv)

    @property
    def compressed(self) -> bool:
        return self.tt_rank is not None


# --------------------------------------------------------------------------------------------------
# compression ratio
# --------------------------------------------------------------------------------------------------


def tt_bond_ranks(shape: TTShape, rank: int) -> tuple[int, ...]:
    """The bond ranks TT-SVD produces with a uniform cap ``rank``: r_k = min(rank, r_{k−1} s_k, Π_{j>k} s_j).

    A bond wider than that is redundant (TT-SVD could not fill it), so the parameter count uses
    these effective ranks; they are exactly the ranks of :func:`lowrank.tt.tt_svd` on a generic matrix.
    """
    s = shape.mode_sizes
    ranks, r_prev = [], 1
    for k in range(shape.d - 1):
        r = min(int(rank), r_prev * s[k], math.prod(s[k + 1:]))
        ranks.append(r)
        r_prev = r
    return tuple(ranks)


def layer_tt_shapes(widths: Sequence[int], tt_cores: int) -> list[TTShape]:
    """Balanced TT shapes of every layer's (out, in) weight."""
    return [tt_shape_for(int(widths[i + 1]), int(widths[i]), int(tt_cores)) for i in range(len(widths) - 1)]


def dense_num_params(widths: Sequence[int]) -> int:
    """Weights of the bias-free MLP: Σ d_i d_{i−1}."""
    return sum(int(widths[i]) * int(widths[i + 1]) for i in range(len(widths) - 1))


def tt_compression_ratio(widths: Sequence[int], tt_cores: int, rank: int | None) -> float:
    """CR = Σ TT parameters / Σ dense parameters (1 for ``rank=None``, the dense network)."""
    if rank is None:
        return 1.0
    shapes = layer_tt_shapes(widths, tt_cores)
    return sum(tt_num_params(s, tt_bond_ranks(s, rank)) for s in shapes) / dense_num_params(widths)


def rank_for_compression(widths: Sequence[int], tt_cores: int, target: float) -> tuple[int | None, float]:
    """The uniform bond rank whose CR is closest to ``target`` (in log scale), and that CR.

    ``target >= 1`` means no TT constraint: ``(None, 1.0)``. Only ranks with CR ≤ 1 are candidates
    (a train with more numbers than the dense matrix compresses nothing); ties go to the smaller rank.
    Log distance because the companion paper's targets span 0.02 … 0.77.
    """
    if not _is_number(target) or target <= 0:
        raise ValueError(f"target={target!r} must be a number > 0 (a compression ratio)")
    if target >= 1:
        return None, 1.0
    shapes = layer_tt_shapes(widths, tt_cores)
    r_max = max(max(tt_bond_ranks(s, 10**9), default=1) for s in shapes)
    best: tuple[float, int, float] | None = None
    for r in range(1, r_max + 1):
        cr = tt_compression_ratio(widths, tt_cores, r)
        if cr > 1:
            continue
        dist = abs(math.log(cr / target))
        if best is None or dist < best[0] - 1e-12:
            best = (dist, r, cr)
    if best is None:  # only when even rank 1 stores more than the dense weights (tiny layers)
        return 1, tt_compression_ratio(widths, tt_cores, 1)
    return best[1], best[2]


# --------------------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------------------


@dataclass
class TenBCDState:
    """All blocks P = {W_i, U_i, V_i, G_i}, layer i = 0 … N−1 (0-based), plus the fixed data.

    ``W[i]`` is (d_{i+1}, d_i); ``U[i]``, ``V[i]`` are (d_{i+1}, n) with V[i] the output of layer i;
    ``G[i]`` is the list of cores of layer i (``None`` for an uncompressed run). ``X`` = V₀ and ``Y``
    are fixed. Updates build a new state (tensors are replaced, never modified in place) so that the
    previous iterate stays available for ‖P_k − P_{k−1}‖².
    """

    X: torch.Tensor
    Y: torch.Tensor
    W: list[torch.Tensor]
    U: list[torch.Tensor]
    V: list[torch.Tensor]
    G: list[list[torch.Tensor]] | None
    shapes: list[TTShape] | None

    @property
    def n(self) -> int:
        return self.X.shape[1]

    @property
    def num_layers(self) -> int:
        return len(self.W)

    def v_in(self, i: int) -> torch.Tensor:
        """V_{i−1} in the paper's 1-based notation: the input of (0-based) layer i."""
        return self.X if i == 0 else self.V[i - 1]

    def copy(self) -> "TenBCDState":
        return TenBCDState(self.X, self.Y, list(self.W), list(self.U), list(self.V),
                           None if self.G is None else [list(g) for g in self.G], self.shapes)

    def tt_matrix(self, i: int) -> torch.Tensor:
        return tt_to_matrix(self.G[i], self.shapes[i])


def _act(i: int, num_layers: int, u: torch.Tensor) -> torch.Tensor:
    # σ_N = id: the last layer's output is compared with Y directly
    return u if i == num_layers - 1 else u.clamp_min(0)


def _init_weights(widths: Sequence[int], init_scale: float, random_state: int) -> list[torch.Tensor]:
    # drawn on the CPU from a private generator, so the init is the same on every device
    gen = make_generator(random_state)
    return [torch.randn(widths[i + 1], widths[i], generator=gen, dtype=DTYPE)
            * (init_scale * math.sqrt(2.0 / widths[i]))
            for i in range(len(widths) - 1)]


def initial_tt(W: torch.Tensor, shape: TTShape, rank: int, tt_init: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Starting (W, cores) of one compressed layer: the cores are TT-SVD(W) at the bond ranks.

    ``"svd"`` keeps W. ``"rescaled"`` (deviation, for random starts) multiplies the last core so that
    ‖TTD(G)‖ = ‖W‖ and returns W = TTD(G): a rank-r TT-SVD of a random Gaussian matrix keeps only
    about the fraction CR of its energy, so at CR 0.02 the TT network would start with near-zero
    outputs; rescaling starts it at the He scale instead, with the τ term at zero.
    """
    cores = list(tt_svd(W, shape, max_rank=list(tt_bond_ranks(shape, rank))).cores)
    if tt_init == "svd":
        return W, cores
    T = tt_to_matrix(cores, shape)
    norm = torch.linalg.vector_norm(T)
    if norm > 0:
        cores[-1] = cores[-1] * (torch.linalg.vector_norm(W) / norm)
    return tt_to_matrix(cores, shape), cores


def init_state(X: torch.Tensor, Y: torch.Tensor, cfg: TenBCDConfig,
               weights: Sequence[torch.Tensor] | None = None) -> TenBCDState:
    """Initial iterate (Algorithm 1 of the companion paper, arXiv 2303.06815: initialisation): W from He-normal ×
    ``init_scale`` (or the given dense ``weights``, e.g. a pre-trained bias-free MLP), G_i = TT-SVD
    of W_i at the bond ranks (see :func:`initial_tt` for ``tt_init``), then a forward pass:
    U_i = W_i V_{i−1}, V_i = σ(U_i)."""
    X, Y = _as_data(X, Y, cfg)
    device = X.device
    if weights is None:
        W = [w.to(device) for w in _init_weights(cfg.widths, cfg.init_scale, cfg.random_state)]
    else:
        W = [torch.as_tensor(w).to(device=device, dtype=DTYPE).clone() for w in weights]
        expected = [(cfg.widths[i + 1], cfg.widths[i]) for i in range(cfg.num_layers)]
        if [tuple(w.shape) for w in W] != expected:
            raise ValueError(f"weights have shapes {[tuple(w.shape) for w in W]}, expected {expected}")
    G = shapes = None
    if cfg.compressed:
        shapes = layer_tt_shapes(cfg.widths, cfg.tt_cores)
        pairs = [initial_tt(w, s, cfg.tt_rank, cfg.tt_init) for w, s in zip(W, shapes)]
        W, G = [p[0] for p in pairs], [p[1] for p in pairs]
    U, V, v = [], [], X
    for i, w in enumerate(W):
        u = w @ v
        v = _act(i, len(W), u)
        U.append(u)
        V.append(v)
    return TenBCDState(X, Y, W, U, V, G, shapes)


def _as_data(X: torch.Tensor, Y: torch.Tensor, cfg: TenBCDConfig) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.as_tensor(X)
    Y = torch.as_tensor(Y)
    if X.dim() != 2 or X.shape[0] != cfg.widths[0]:
        raise ValueError(f"X must be (d0={cfg.widths[0]}, n) with samples as columns, got {tuple(X.shape)}")
    if Y.dim() != 2 or Y.shape != (cfg.widths[-1], X.shape[1]):
        raise ValueError(f"Y must be (d_N={cfg.widths[-1]}, n={X.shape[1]}), got {tuple(Y.shape)}")
    return X.to(DTYPE), Y.to(device=X.device, dtype=DTYPE)


# --------------------------------------------------------------------------------------------------
# objective
# --------------------------------------------------------------------------------------------------


def _sq(x: torch.Tensor) -> torch.Tensor:
    return torch.sum(x * x)


def objective_terms(state: TenBCDState, cfg: TenBCDConfig) -> dict[str, float]:
    """The five terms of Φ: ``loss`` ½‖V_N − Y‖²/n, ``act`` γ/(2n)Σ‖V_i − σ(U_i)‖²,
    ``lin`` ρ/(2n)Σ‖U_i − W_iV_{i−1}‖², ``tt`` τ/2 Σ‖W_i − TTD(G_i)‖² (0 when uncompressed),
    ``reg`` λ/2 Σ‖W_i‖² (the weight penalty)."""
    n, N = state.n, state.num_layers
    loss = 0.5 * _sq(state.V[-1] - state.Y) / n
    act = 0.5 * cfg.gamma * sum(_sq(state.V[i] - _act(i, N, state.U[i])) for i in range(N)) / n
    lin = 0.5 * cfg.rho_ * sum(_sq(state.U[i] - state.W[i] @ state.v_in(i)) for i in range(N)) / n
    tt = 0.0
    if state.G is not None:
        tt = 0.5 * cfg.tau * sum(_sq(state.W[i] - state.tt_matrix(i)) for i in range(N))
    reg = 0.5 * cfg.weight_decay * sum(_sq(w) for w in state.W) if cfg.weight_decay else 0.0
    return {"loss": float(loss), "act": float(act), "lin": float(lin), "tt": float(tt), "reg": float(reg)}


def objective(state: TenBCDState, cfg: TenBCDConfig) -> float:
    """Φ(P) (see the module docstring)."""
    return sum(objective_terms(state, cfg).values())


def proximal_distance(new: TenBCDState, old: TenBCDState) -> float:
    """‖P_k − P_{k−1}‖² in the norm of the proximal terms: Σ‖ΔW‖² + Σ‖ΔG‖² + (1/n)Σ(‖ΔU‖² + ‖ΔV‖²)."""
    total = sum(_sq(a - b) for a, b in zip(new.W, old.W))
    total = total + sum(_sq(a - b) + _sq(c - d) for a, b, c, d in zip(new.U, old.U, new.V, old.V)) / new.n
    if new.G is not None:
        total = total + sum(_sq(a - b) for ga, gb in zip(new.G, old.G) for a, b in zip(ga, gb))
    return float(total)


def proximal_term(new: TenBCDState, old: TenBCDState, cfg: TenBCDConfig) -> float:
    """D_k = (α/2)(Σ‖ΔW‖² + Σ‖ΔG‖²) + (α_uv/(2n))Σ(‖ΔU‖² + ‖ΔV‖²): the decrease of Φ that one iteration of
    exact proximal block updates guarantees (Φ(P_k) + D_k ≤ Φ(P_{k−1})). With α_uv = α it is
    (α/2) :func:`proximal_distance`."""
    wg = sum(_sq(a - b) for a, b in zip(new.W, old.W))
    if new.G is not None:
        wg = wg + sum(_sq(a - b) for ga, gb in zip(new.G, old.G) for a, b in zip(ga, gb))
    uv = sum(_sq(a - b) + _sq(c - d) for a, b, c, d in zip(new.U, old.U, new.V, old.V)) / new.n
    return float(0.5 * cfg.alpha * wg + 0.5 * cfg.alpha_uv_ * uv)


# --------------------------------------------------------------------------------------------------
# exact block updates
# --------------------------------------------------------------------------------------------------


def relu_prox(v: torch.Tensor, a: torch.Tensor, u0: torch.Tensor, gamma: float, rho: float,
              alpha: float) -> torch.Tensor:
    """Elementwise argmin_u γ/2 (v − relu(u))² + ρ/2 (u − a)² + α/2 (u − u0)².

    The two quadratics in u merge into (ρ+α)/2 (u − b)², b = (ρa + αu0)/(ρ+α). On u ≤ 0 the
    minimiser is min(b, 0); on u ≥ 0 it is max((γv + (ρ+α)b)/(γ+ρ+α), 0). The global minimiser is
    whichever candidate has the lower value (ties: the u ≥ 0 one).
    """
    beta = rho + alpha
    b = (rho * a + alpha * u0) / beta
    u_neg = b.clamp_max(0)
    u_pos = ((gamma * v + beta * b) / (gamma + beta)).clamp_min(0)
    f_neg = gamma * v * v + beta * (u_neg - b) ** 2  # relu(u_neg) = 0
    f_pos = gamma * (v - u_pos) ** 2 + beta * (u_pos - b) ** 2
    return torch.where(f_pos <= f_neg, u_pos, u_neg)


def _spd_solve_right(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """X with X A = B for symmetric positive definite A (Cholesky; A is symmetric so Xᵀ = A⁻¹Bᵀ)."""
    L = torch.linalg.cholesky(A)
    return torch.cholesky_solve(B.mT, L).mT


def update_w(U: torch.Tensor, V_in: torch.Tensor, W0: torch.Tensor, T: torch.Tensor | None, *,
             rho: float, tau: float, alpha: float, weight_decay: float = 0.0) -> torch.Tensor:
    """argmin_W ρ/(2n)‖U − W V‖² + τ/2 ‖W − T‖² + λ/2 ‖W‖² + α/2 ‖W − W0‖² (T = TTD(G), or None: no τ
    term; λ = ``weight_decay``).

    Normal equations W (ρ V Vᵀ/n + (τ+λ+α) I) = ρ U Vᵀ/n + τ T + α W0, an SPD system of size d_in.
    """
    n = V_in.shape[1]
    tau = tau if T is not None else 0.0
    A = (rho / n) * (V_in @ V_in.mT)
    A.diagonal().add_(tau + weight_decay + alpha)
    B = (rho / n) * (U @ V_in.mT) + alpha * W0
    if T is not None:
        B = B + tau * T
    return _spd_solve_right(A, B)


def update_v_hidden(S: torch.Tensor, U_next: torch.Tensor, W_next: torch.Tensor, V0: torch.Tensor, *,
                    gamma: float, rho: float, alpha: float) -> torch.Tensor:
    """argmin_V γ/(2n)‖V − S‖² + ρ/(2n)‖U_next − W_next V‖² + α/(2n)‖V − V0‖² with S = σ(U_i) (α is
    the per-sample weight α_uv of the iteration).

    Normal equations (ρ W_nextᵀW_next + (γ+α) I) V = γ S + ρ W_nextᵀ U_next + α V0 (the 1/n of the
    data terms and of the per-sample proximal term cancel), an SPD system of size d_i.
    """
    A = rho * (W_next.mT @ W_next)
    A.diagonal().add_(gamma + alpha)
    B = gamma * S + rho * (W_next.mT @ U_next) + alpha * V0
    L = torch.linalg.cholesky(A)
    return torch.cholesky_solve(B, L)


def update_tt_cores(W: torch.Tensor, cores: Sequence[torch.Tensor], shape: TTShape, *, tau: float,
                    alpha: float) -> list[torch.Tensor]:
    """One left-to-right sweep over the cores, each replaced by
    argmin_G τ/2 ‖W − TTD(…, G, …)‖² + α/2 ‖G − G^{k−1}‖² given the others (the newer ones on its left).

    In the d-way tensor form T = W reshaped to (s₁, …, s_d), s_k = m_k n_k, the train is linear in core
    k: T[a, s, b] ≈ Σ_{p,q} L[a, p] G[p, s, q] R[q, b], with L (Π s_{<k}, r_{k−1}) the contraction of
    the cores on the left and R (r_k, Π s_{>k}) of those on the right. Per slice s the normal equations
    τ (LᵀL) G_s (RRᵀ) + α G_s = τ Lᵀ T_s Rᵀ + α G⁰_s are diagonalised by the eigenvectors P, Q of the
    two small Gram matrices: (PᵀG_sQ)_{ij} = (Pᵀ rhs_s Q)_{ij} / (τ λ_i μ_j + α).
    """
    d, sizes = shape.d, shape.mode_sizes
    T = matrix_to_tt_tensor(W, shape)
    G3 = [c.reshape(c.shape[0], sizes[k], c.shape[3]) for k, c in enumerate(cores)]
    one = torch.ones(1, 1, dtype=W.dtype, device=W.device)
    # right interfaces from the old cores: R[k] = contraction of cores k+1 … d, (r_k, Π s_{>k})
    R = [one] * d
    for k in range(d - 1, 0, -1):
        R[k - 1] = (G3[k] @ R[k]).reshape(G3[k].shape[0], -1)
    Lft = one
    new = []
    for k in range(d):
        A, B = Lft.shape[0], R[k].shape[1]
        rp, rk = G3[k].shape[0], G3[k].shape[2]
        Tk = T.reshape(A, sizes[k] * B)
        rhs = (Lft.mT @ Tk).reshape(rp, sizes[k], B) @ R[k].mT          # (r_{k−1}, s_k, r_k)
        rhs = tau * rhs + alpha * G3[k]
        lam, P = torch.linalg.eigh(Lft.mT @ Lft)
        mu, Q = torch.linalg.eigh(R[k] @ R[k].mT)
        # Gram matrices are PSD; rounding can leave eigenvalues at -1e-17, which must not cancel α
        lam, mu = lam.clamp_min(0), mu.clamp_min(0)
        rhs = rhs.transpose(0, 1)                                       # (s_k, r_{k−1}, r_k): slices first
        H = (P.mT @ rhs @ Q) / (tau * lam[:, None] * mu[None, :] + alpha)
        Gk = (P @ H @ Q.mT).transpose(0, 1)                             # back to (r_{k−1}, s_k, r_k)
        new.append(Gk.reshape(cores[k].shape))
        Lft = (Lft @ Gk.reshape(rp, sizes[k] * rk)).reshape(A * sizes[k], rk)
    return new


def tenbcd_iteration(state: TenBCDState, cfg: TenBCDConfig) -> TenBCDState:
    """One tenBCD sweep (Algorithm 1 of the companion paper, arXiv 2303.06815): V_N, U_N, W_N, G_N, then
    V_i, U_i, W_i, G_i for i = N−1 … 1, each the exact proximal minimiser given the latest values of the other blocks.
    Returns a new state; ``state`` is left untouched."""
    s = state.copy()
    N, g, r, t = s.num_layers, float(cfg.gamma), cfg.rho_, float(cfg.tau)
    # α for W and the cores, α_uv for the per-sample blocks U and V
    a, auv, lam = float(cfg.alpha), cfg.alpha_uv_, float(cfg.weight_decay)
    for i in range(N - 1, -1, -1):
        if i == N - 1:
            # argmin ½‖V − Y‖² + γ/2‖V − U_N‖² + α_uv/2‖V − V⁰‖² (all per sample, the 1/n cancels)
            s.V[i] = (s.Y + g * s.U[i] + auv * s.V[i]) / (1 + g + auv)
        else:
            s.V[i] = update_v_hidden(_act(i, N, s.U[i]), s.U[i + 1], s.W[i + 1], s.V[i], gamma=g, rho=r, alpha=auv)
        lin = s.W[i] @ s.v_in(i)
        if i == N - 1:
            # σ_N = id: argmin γ/2‖V_N − U‖² + ρ/2‖U − W_N V_{N−1}‖² + α_uv/2‖U − U⁰‖²
            s.U[i] = (g * s.V[i] + r * lin + auv * s.U[i]) / (g + r + auv)
        else:
            s.U[i] = relu_prox(s.V[i], lin, s.U[i], g, r, auv)
        T = s.tt_matrix(i) if s.G is not None else None
        s.W[i] = update_w(s.U[i], s.v_in(i), s.W[i], T, rho=r, tau=t, alpha=a, weight_decay=lam)
        if s.G is not None:
            s.G[i] = update_tt_cores(s.W[i], s.G[i], s.shapes[i], tau=t, alpha=a)
    return s


# --------------------------------------------------------------------------------------------------
# the compressed network
# --------------------------------------------------------------------------------------------------


def _forward(weights: Sequence[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    v = X
    for i, w in enumerate(weights):
        v = _act(i, len(weights), w @ v)
    return v


def forward_dense(state: TenBCDState, X: torch.Tensor) -> torch.Tensor:
    """The W network x ↦ W_N σ(… σ(W_1 x)) on columns of X; returns (d_N, m) scores."""
    return _forward(state.W, X)


def forward_tt(state: TenBCDState, X: torch.Tensor) -> torch.Tensor:
    """The compressed network x ↦ TTD(G_N) σ(… σ(TTD(G_1) x)) (the W network when uncompressed)."""
    if state.G is None:
        return forward_dense(state, X)
    return _forward([state.tt_matrix(i) for i in range(state.num_layers)], X)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of columns whose argmax equals the label."""
    return float((scores.argmax(0) == labels.to(scores.device)).double().mean())


def run_tenbcd(X: torch.Tensor, Y: torch.Tensor, X_test: torch.Tensor, y_test: torch.Tensor,
               cfg: TenBCDConfig, *, X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
               weights: Sequence[torch.Tensor] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``cfg.iterations`` tenBCD iterations from :func:`init_state`.

    X (d₀, n), Y one-hot (d_N, n), X_test (d₀, m), y_test (m,) labels, optionally a validation set X_val,
    y_val in the same layout; all on one device. Returns ``{"state", "history", "train_acc_tt",
    "val_acc_tt", "test_acc_tt", "train_acc_w", "test_acc_w", "seconds", "macs_per_iteration"}`` (the
    multiply-adds of one iteration, :func:`tenbcd.cost.count_macs` on the first).
    ``history`` is columnar, one entry per ``iteration`` k = 0 … K (k = 0 is the initial point):
    ``objective`` and its terms (``loss``, ``act``, ``lin``, ``tt``, ``reg``), ``dP2`` = ‖P_k − P_{k−1}‖²
    (:func:`proximal_distance`), ``prox`` = D_k (:func:`proximal_term`, the guaranteed decrease),
    ``slack`` = Φ(P_{k−1}) − Φ(P_k) − D_k (≥ 0 up to rounding: sufficient decrease), ``train_acc_tt``,
    ``val_acc_tt`` (None without a validation set), ``test_acc_tt``, ``test_acc_w`` (None between
    evaluations) and ``seconds``: wall time of the iterations alone, evaluations excluded, so that it is the
    cost of training to that iteration.
    """
    from tqdm.auto import tqdm

    state = init_state(X, Y, cfg, weights)
    dev = state.X.device
    X_test = torch.as_tensor(X_test).to(device=dev, dtype=DTYPE)
    y_test = torch.as_tensor(y_test).to(dev)
    if (X_val is None) != (y_val is None):
        raise ValueError("run_tenbcd: give both X_val and y_val, or neither")
    if X_val is not None:
        X_val = torch.as_tensor(X_val).to(device=dev, dtype=DTYPE)
        y_val = torch.as_tensor(y_val).to(dev)
    y_train = state.Y.argmax(0)
    keys = ("objective", "loss", "act", "lin", "tt", "reg", "dP2", "prox", "slack", "train_acc_tt", "val_acc_tt",
            "test_acc_tt", "test_acc_w", "seconds")
    hist: dict[str, list] = {k: [] for k in keys}
    hist["iteration"] = []
    train_seconds = 0.0

    def record(k: int, st: TenBCDState, terms: dict, dP2: float | None, prox: float | None,
               slack: float | None) -> None:
        hist["iteration"].append(k)
        hist["objective"].append(sum(terms.values()))
        for name, v in terms.items():
            hist[name].append(v)
        hist["dP2"].append(dP2)
        hist["prox"].append(prox)
        hist["slack"].append(slack)
        evaluate = k % cfg.eval_every == 0 or k == cfg.iterations
        hist["train_acc_tt"].append(accuracy(forward_tt(st, st.X), y_train) if evaluate else None)
        hist["val_acc_tt"].append(accuracy(forward_tt(st, X_val), y_val) if evaluate and X_val is not None
                                  else None)
        hist["test_acc_tt"].append(accuracy(forward_tt(st, X_test), y_test) if evaluate else None)
        hist["test_acc_w"].append(accuracy(forward_dense(st, X_test), y_test) if evaluate else None)
        hist["seconds"].append(train_seconds)

    terms = objective_terms(state, cfg)
    record(0, state, terms, None, None, None)
    bar = tqdm(range(1, cfg.iterations + 1), desc=f"tenBCD rank={cfg.tt_rank}", disable=not progress,
               leave=False)
    macs_per_iteration = 0
    for k in bar:
        t0 = time.perf_counter()
        if k == 1:
            # every iteration does the same products and factorisations: count the first
            new, macs_per_iteration = count_macs(tenbcd_iteration, state, cfg)
        else:
            new = tenbcd_iteration(state, cfg)
        train_seconds += time.perf_counter() - t0
        new_terms = objective_terms(new, cfg)
        prox = proximal_term(new, state, cfg)
        slack = sum(terms.values()) - sum(new_terms.values()) - prox
        record(k, new, new_terms, proximal_distance(new, state), prox, slack)
        state, terms = new, new_terms
        last_acc = next((a for a in reversed(hist["test_acc_tt"]) if a is not None), None)
        bar.set_postfix(obj=f"{hist['objective'][-1]:.4g}", test_tt=f"{last_acc:.3f}")
    return {
        "state": state,
        "history": hist,
        "train_acc_tt": hist["train_acc_tt"][-1],
        "val_acc_tt": hist["val_acc_tt"][-1],
        "test_acc_tt": hist["test_acc_tt"][-1],
        "train_acc_w": accuracy(forward_dense(state, state.X), y_train),
        "test_acc_w": hist["test_acc_w"][-1],
        "seconds": train_seconds,
        "macs_per_iteration": macs_per_iteration,
    }
