"""Multiply-adds of a run: what each method spends, counted rather than timed, so that costs compare across
machines.

:func:`count_macs` runs a function under torch's ``FlopCounterMode``, which counts the matrix products
(``mm``, ``bmm``, ``addmm``, … and, for the gradient baselines, their backward products) from the shapes of
the operands. tenBCD also solves dense systems and eigenproblems, which that counter does not know; they
are added with their textbook counts in multiply-adds (Golub & Van Loan, *Matrix Computations*):

* Cholesky of a k×k matrix: k³/3;
* ``cholesky_solve`` with m right-hand sides: two triangular solves, k²·m;
* symmetric eigendecomposition with eigenvectors: about 4.5 k³ (9k³ flops).

Elementwise work (activations, the ReLU proximal step, optimizer updates) is not counted: it is linear in
the number of entries, while every counted product is a factor of the width larger.
"""
from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs", "FACTORISATION_MACS", "machine"]


def _batch(shape) -> int:
    return math.prod(shape[:-2]) if len(shape) > 2 else 1


# FlopCounterMode's formulas return flops (2 per multiply-add) and receive the operands' shapes
def _cholesky_flops(a_shape, *args, out_shape=None, **kwargs) -> int:
    k = a_shape[-1]
    return 2 * _batch(a_shape) * k ** 3 // 3


def _cholesky_solve_flops(b_shape, l_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _batch(b_shape) * l_shape[-1] ** 2 * b_shape[-1]


def _eigh_flops(a_shape, *args, out_shape=None, **kwargs) -> int:
    return 9 * _batch(a_shape) * a_shape[-1] ** 3


#: the factorisations tenBCD uses, with their formulas (flops, as FlopCounterMode counts)
FACTORISATION_MACS = {
    torch.ops.aten.linalg_cholesky_ex: _cholesky_flops,
    torch.ops.aten.cholesky_solve: _cholesky_solve_flops,
    torch.ops.aten._linalg_eigh: _eigh_flops,
}


def count_macs(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, int]:
    """``(fn(*args, **kwargs), multiply-adds)``: matrix products counted by ``FlopCounterMode`` (forward
    and backward), factorisations by :data:`FACTORISATION_MACS`."""
    with FlopCounterMode(display=False, custom_mapping=FACTORISATION_MACS) as counter:
        out = fn(*args, **kwargs)
    return out, int(counter.get_total_flops()) // 2


def machine(device: Any = "cpu") -> str:
    """What the wall times were measured on: the CPU's model name and core count, or the CUDA device's name."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"
