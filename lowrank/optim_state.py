"""AdamW's state after a cut of the ``U S Vᵀ`` training form (OIALR / IEHT / IFHT, the paper's Algorithms 1–2).

A cut (``U' S' V'ᵀ = svd(S)``, ``U ← U U'``, ``V ← V V'``, drop the small values; IFHT the same on ``T S``) is,
for the optimizer, a change of variables of the trained core: ``S = Ua S' Vaᵀ`` with ``Ua``, ``Va`` (k×k') of
orthonormal columns, and ``S'`` a new parameter. Its state follows ``optimizer_state_after_cut``
(:data:`ADAM_STATE_POLICIES`):

* ``carry`` (the default): the state moves into the new basis — the first moment exactly
  (:func:`rotate_first_moment`), the second by :data:`SECOND_MOMENT_RULES` (default ``rotate_squares``,
  :func:`rotate_squares`), ``step`` kept (:func:`transport_adam_state`);
* ``slice``: what the OIALR reference code does — the leading k'×k' block of the old, unrotated moments, ``step``
  kept (:func:`slice_leading`);
* ``reset``: an empty state (moments and step start over).

A parameter replaced without a rotation (the conversion at ``t = delay``) starts from an empty state under every
policy, and so does every parameter of an optimizer whose state is not Adam's. The one implementation, for
:class:`lowrank.train.Trainer` and a user's loop alike, is :func:`update_optimizer_after_change`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import torch

__all__ = [
    "ADAM_STATE_POLICIES", "SECOND_MOMENT_RULES", "ADAM_STATE_KEYS",
    "validate_adam_state_policy", "validate_second_moment_rule",
    "rotate_first_moment", "rotate_squares", "slice_leading", "basis_change", "cut_rotations",
    "transport_adam_state", "carry_state", "update_optimizer_after_change",
]

ADAM_STATE_POLICIES = ("reset", "carry", "slice")
"""How the state of the new core ``S'`` is formed after a cut (module docstring)."""

SECOND_MOMENT_RULES = ("rotate_squares", "slice")
"""How ``exp_avg_sq`` (and ``max_exp_avg_sq``) is carried under the ``"carry"`` policy."""

ADAM_STATE_KEYS = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
"""The per-parameter entries of torch's Adam/AdamW state (the last one only with ``amsgrad``)."""

_WORK = torch.float64


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{key}={value!r}; allowed: {', '.join(allowed)}")


def validate_adam_state_policy(policy: Any) -> None:
    """Raise ``ValueError`` naming ``policy`` and :data:`ADAM_STATE_POLICIES` unless it is one of them."""
    _check_choice("adam_state_policy", policy, ADAM_STATE_POLICIES)


def validate_second_moment_rule(rule: Any) -> None:
    """Raise ``ValueError`` naming ``rule`` and :data:`SECOND_MOMENT_RULES` unless it is one of them."""
    _check_choice("second_moment", rule, SECOND_MOMENT_RULES)


# --------------------------------------------------------------------------- the elementary maps
def rotate_first_moment(m: torch.Tensor, Ua: torch.Tensor, Va: torch.Tensor) -> torch.Tensor:
    """``Uaᵀ m Va`` (leading dimensions of ``m`` broadcast): the exact image of a first moment, or of a
    gradient, under the change of variables ``S = Ua S' Vaᵀ``. Computed in float64.

    The gradient with respect to ``S'`` is ``G' = Uaᵀ G Va`` (chain rule), and ``exp_avg = Σ_s (1-β₁) β₁^{t-s}
    G_s`` is linear in the past gradients, so ``Uaᵀ exp_avg Va`` is exactly the first moment AdamW would hold had
    it seen the rotated gradients from the start."""
    Ua, Va = Ua.to(device=m.device, dtype=_WORK), Va.to(device=m.device, dtype=_WORK)
    return Ua.mT @ m.to(_WORK) @ Va


def rotate_squares(v: torch.Tensor, Ua: torch.Tensor, Va: torch.Tensor) -> torch.Tensor:
    """``(Ua⊙Ua)ᵀ v (Va⊙Va)``: the second-moment rule ``"rotate_squares"``. Float64.

    ``exp_avg_sq`` has no exact image: the rotated squares ``(Uaᵀ G Va)⊙²`` depend on products ``G_ab G_cd`` it
    does not record. If the entries of ``G`` are uncorrelated with zero mean, ``E[(Uaᵀ G Va)_ij²] = Σ_ab Ua_ai²
    E[G_ab²] Va_bj²``, so this map is exact in expectation. It keeps ``v' ≥ 0``, reduces to slicing when ``Ua``,
    ``Va`` select coordinates, keeps ``max_exp_avg_sq' ≥ exp_avg_sq'`` (monotone), and for square orthogonal
    ``Ua``, ``Va`` preserves ``Σ v`` as the true statistic does (``‖Uaᵀ G Va‖_F = ‖G‖_F``). ``Uaᵀ v Va`` is not
    offered (it can go negative), nor is resetting ``v`` alone: with ``step`` kept, a zero ``v`` is bias-corrected
    by ``1 - β₂^t ≈ 1``, and the next step would be ≈ 3× a sign step."""
    Ua, Va = Ua.to(device=v.device, dtype=_WORK), Va.to(device=v.device, dtype=_WORK)
    return (Ua * Ua).mT @ v.to(_WORK) @ (Va * Va)


def slice_leading(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The leading ``rows × cols`` block of the last two dimensions of ``x``: OIALR's reshaping (Coquelin et al.,
    repository ``Helmholtz-AI-Energy/OIALR``, ``change_adam_shapes`` in ``src/madonna/models/utils.py``), which
    pairs entry ``(i, j)`` of the old moments with entry ``(i, j)`` of the rotated core — the exact transport only
    when ``Ua``, ``Va`` are close to the leading coordinate selection."""
    if rows > x.shape[-2] or cols > x.shape[-1]:
        raise ValueError(f"cannot slice a {tuple(x.shape[-2:])} state to {(rows, cols)}: "
                         "a cut only removes directions")
    return x[..., :rows, :cols]


def basis_change(Q_old: torch.Tensor, Q_new: torch.Tensor) -> torch.Tensor:
    """The coefficients ``R = Q_oldᵀ Q_new`` of ``Q_new = Q_old R``.

    Exact when ``Q_old`` has orthonormal columns and ``Q_new`` lies in its range, which is the case for
    a cut (``U ← U Ua`` gives ``Ua = Uᵀ U_new``). Lets a caller recover ``Ua``, ``Va`` from the bases
    before and after :func:`lowrank.methods.iht.cut_low_rank_layer`. Computed in float64.
    """
    if Q_old.ndim != 2 or Q_new.ndim != 2 or Q_old.shape[0] != Q_new.shape[0]:
        raise ValueError(f"bases of shapes {tuple(Q_old.shape)} and {tuple(Q_new.shape)} do not match")
    return Q_old.to(_WORK).mT @ Q_new.to(device=Q_old.device, dtype=_WORK)


def cut_rotations(U_old: torch.Tensor, V_old: torch.Tensor, U_new: torch.Tensor,
                  V_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Ua, Va) = (U_oldᵀ U_new, V_oldᵀ V_new)``: the rotations of a cut, from the frozen bases."""
    return basis_change(U_old, U_new), basis_change(V_old, V_new)


# --------------------------------------------------------------------------- transport
def _check_shapes(x: torch.Tensor, Ua: torch.Tensor, Va: torch.Tensor, like: torch.Tensor | None) -> None:
    if Ua.ndim != 2 or Va.ndim != 2:
        raise ValueError(f"Ua, Va must be matrices, got shapes {tuple(Ua.shape)}, {tuple(Va.shape)}")
    if x.ndim < 2 or x.shape[-2] != Ua.shape[0] or x.shape[-1] != Va.shape[0]:
        raise ValueError(f"a state of shape {tuple(x.shape)} does not match Ua {tuple(Ua.shape)}, "
                         f"Va {tuple(Va.shape)} (need state[..., Ua.shape[0], Va.shape[0]])")
    if Ua.shape[1] > Ua.shape[0] or Va.shape[1] > Va.shape[0]:
        raise ValueError(f"Ua {tuple(Ua.shape)}, Va {tuple(Va.shape)}: a cut keeps at most as many "
                         "directions as it had (orthonormal columns)")
    new_shape = (*x.shape[:-2], Ua.shape[1], Va.shape[1])
    if like is not None and tuple(like.shape) != new_shape:
        raise ValueError(f"the new parameter has shape {tuple(like.shape)}, the transported state "
                         f"would have {new_shape}")


def _copy_step(step: Any, device: torch.device) -> Any:
    """``step`` unchanged in value and type; a tensor off the CPU follows the parameter's device."""
    if not torch.is_tensor(step):
        return step
    step = step.detach().clone()
    return step if step.device.type == "cpu" else step.to(device)


def transport_adam_state(state: dict, Ua: torch.Tensor, Va: torch.Tensor, *, policy: str = "carry",
                         second_moment: str = "rotate_squares", like: torch.Tensor | None = None) -> dict:
    """AdamW's per-parameter state for the new core ``S'`` of a cut ``S = Ua S' Vaᵀ`` (module docstring).

    ``state`` is torch's AdamW state of the old ``S`` (``step``, ``exp_avg``, ``exp_avg_sq``, and
    ``max_exp_avg_sq`` under AMSGrad; leading batch dimensions broadcast); it is not modified.
    ``Ua`` (k×k'), ``Va`` (k×k') have orthonormal columns. ``policy`` is one of
    :data:`ADAM_STATE_POLICIES`, ``second_moment`` one of :data:`SECOND_MOMENT_RULES` (used by
    ``"carry"``; checked always). ``like`` (the new parameter) sets the dtype and device of the
    result; without it they are those of the old state. An empty state, or ``policy="reset"``, gives
    ``{}`` (AdamW initialises it on its next step).

    Returns a new dict: ``exp_avg' = Uaᵀ exp_avg Va`` under ``"carry"`` (exact), the second moment(s)
    by ``second_moment``; under ``"slice"`` every moment's leading k'×k' block, unrotated (OIALR's
    ``change_adam_shapes``). ``step`` is kept under both: the transported moments are linear images of the same
    ``t``-term EMAs started from zero, so the same ``1 - β^t`` corrects them (restarting ``step`` would
    over-correct ``m`` ×10 at β₁ = 0.9). The transport is computed in float64 and stored in the new parameter's
    dtype and device (AdamW requires it); ``step`` keeps its type.
    """
    validate_adam_state_policy(policy)
    validate_second_moment_rule(second_moment)
    if policy == "reset" or not state:
        return {}
    unknown = sorted(set(state) - set(ADAM_STATE_KEYS))
    missing = [k for k in ADAM_STATE_KEYS[:3] if k not in state]
    if unknown or missing:
        raise ValueError(f"not an Adam/AdamW parameter state: unknown keys {unknown}, missing {missing}; "
                         f"expected {', '.join(ADAM_STATE_KEYS)}")
    m = state["exp_avg"]
    _check_shapes(m, Ua, Va, like)
    dtype = like.dtype if like is not None else m.dtype
    device = like.device if like is not None else m.device
    rows, cols = Ua.shape[1], Va.shape[1]

    def out(x: torch.Tensor) -> torch.Tensor:
        return x.to(device=device, dtype=dtype).contiguous()

    moments = [k for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if k in state]
    new: dict = {"step": _copy_step(state["step"], device)}
    for key in moments:
        x = state[key]
        if x.shape != m.shape:
            raise ValueError(f"state[{key!r}] has shape {tuple(x.shape)}, exp_avg {tuple(m.shape)}")
        if policy == "slice" or (key != "exp_avg" and second_moment == "slice"):
            y = slice_leading(x, rows, cols).clone()
        elif key == "exp_avg":
            y = rotate_first_moment(x, Ua, Va)
        else:
            y = rotate_squares(x, Ua, Va)
        new[key] = out(y)
    return new


def carry_state(old_states, new_states, old_param: torch.Tensor, new_param: torch.Tensor,
                Ua: torch.Tensor, Va: torch.Tensor, *, policy: str = "carry",
                second_moment: str = "rotate_squares") -> dict:
    """After a cut, write the state of ``new_param`` (the new ``S'``) into the new optimizer.

    ``old_states`` / ``new_states`` are the optimizers' ``state`` mappings (parameter → state) or the
    optimizers themselves (then ``new_param`` must be one of the new optimizer's parameters, or its
    state would be ignored). The state of ``old_param`` (the old ``S``) is transported by
    :func:`transport_adam_state` (``policy``, ``second_moment``), in the dtype and on the device of
    ``new_param``; a numeric ``step`` becomes torch's float32 scalar tensor, so that
    ``torch.optim.AdamW.step`` accepts it. Under ``"reset"``, or when the old parameter had no state,
    any state of ``new_param`` is removed (AdamW starts it afresh). Returns the installed state
    (``{}`` when none).
    """
    validate_adam_state_policy(policy)
    validate_second_moment_rule(second_moment)
    if isinstance(new_states, torch.optim.Optimizer):
        params = [p for g in new_states.param_groups for p in g["params"]]
        if not any(p is new_param for p in params):
            raise ValueError("new_param is not a parameter of the new optimizer")
        new_states = new_states.state
    if isinstance(old_states, torch.optim.Optimizer):
        old_states = old_states.state
    if not isinstance(new_states, MutableMapping):
        raise TypeError(f"new_states must be an optimizer or its state mapping, got {type(new_states)}")
    old = old_states.get(old_param) or {}
    new = transport_adam_state(old, Ua, Va, policy=policy, second_moment=second_moment, like=new_param)
    if new and not torch.is_tensor(new["step"]):
        new["step"] = torch.tensor(float(new["step"]), dtype=torch.float32)
    if new:
        new_states[new_param] = new
    else:
        new_states.pop(new_param, None)
    return new


def update_optimizer_after_change(optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                                  previous: Mapping[str, torch.nn.Parameter],
                                  rotations: Mapping[int, tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]], *,
                                  policy: str = "carry", second_moment: str = "rotate_squares",
                                  group_of: Callable[[torch.nn.Parameter], int] | None = None,
                                  is_main: bool = True, broadcast: Callable[[Any], Any] | None = None) -> None:
    """Edit ``optimizer`` in place after a method replaced parameters of ``model`` (a conversion to ``U S Vᵀ``,
    a cut): the one implementation of the optimizer policy, used by :class:`lowrank.train.Trainer` and by
    :class:`lowrank.iterative.IterativeCompressor` in a user's loop.

    ``previous`` is name → trainable parameter when the optimizer last matched the model; ``rotations`` maps
    ``id(new S')`` → ``(old S, Ua, Va)`` for every cut core (``S = Ua S' Vaᵀ``). Then:

    * a parameter that kept its identity keeps its place and its state;
    * a replaced one is swapped into the param group of its predecessor (same name; for a conversion's
      ``S``, the dense ``weight`` it replaced), or of ``group_of(p)`` when it has none (without
      ``group_of`` it is left out: the caller did not optimise its predecessor either);
    * its state follows ``policy`` (:data:`ADAM_STATE_POLICIES`): transported by :func:`transport_adam_state`
      when it was rotated from a parameter with an Adam state, otherwise empty (AdamW initialises it);
    * parameters gone from the model leave the groups and the state;
    * each group's parameters are ordered as ``model.parameters()`` orders them — the order a fresh
      optimizer over the model would have, so that order-dependent reductions over the parameters
      (the total norm of gradient clipping) are bit-identical to rebuilding the optimizer.

    Under ``torch.distributed`` the cut is computed on one process: pass ``is_main`` and ``broadcast``
    (``obj → rank 0's obj``, called on every process); the transported states are then computed on rank 0
    and installed everywhere by parameter name.
    """
    validate_adam_state_policy(policy)
    validate_second_moment_rule(second_moment)
    groups, state = optimizer.param_groups, optimizer.state
    current = {n: p for n, p in model.named_parameters() if p.requires_grad}
    where = {id(p): gi for gi, g in enumerate(groups) for p in g["params"]}
    placed: dict[int, list[torch.nn.Parameter]] = {}
    new_names: dict[str, torch.nn.Parameter] = {}
    for name, p in current.items():
        if previous.get(name) is p or id(p) in where:
            continue
        prev = previous.get(name)
        if prev is None and name.endswith(".S"):
            prev = previous.get(name[:-2] + ".weight")       # a conversion: S replaces the dense weight
        gi = where.get(id(prev)) if prev is not None else None
        if gi is None and group_of is not None:
            gi = group_of(p)
        if gi is None:
            continue
        placed.setdefault(gi, []).append(p)
        new_names[name] = p
    carried: dict[str, dict] = {}
    if policy != "reset" and is_main:
        for name, p in new_names.items():
            rot = rotations.get(id(p))
            st = state.get(rot[0]) if rot is not None else None
            if st and set(st) <= set(ADAM_STATE_KEYS):
                carried[name] = transport_adam_state(st, rot[1], rot[2], policy=policy, like=p,
                                                     second_moment=second_moment)
    if policy != "reset" and broadcast is not None:
        # only rank 0 knows Ua, Va: every rank installs rank 0's transported state (one broadcast, on every rank)
        carried = broadcast({n: {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in st.items()}
                             for n, st in carried.items()} if is_main else None)
    order = {id(p): i for i, p in enumerate(model.parameters())}
    alive = set(order)
    for gi, g in enumerate(groups):
        for q in g["params"]:
            if id(q) not in alive:                           # replaced: its state goes with it
                state.pop(q, None)
        kept = [q for q in g["params"] if id(q) in alive] + placed.get(gi, [])
        g["params"] = sorted(kept, key=lambda q: order[id(q)])
    for name, st in carried.items():
        p = new_names.get(name)
        if p is None or not st:
            continue
        st = {k: (v.to(p.device) if torch.is_tensor(v) and v.ndim else v) for k, v in st.items()}
        if not torch.is_tensor(st["step"]):
            st["step"] = torch.tensor(float(st["step"]), dtype=torch.float32)
        state[p] = st
