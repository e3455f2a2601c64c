"""Reference formulas the Fisher tests check against; not used by the library."""
from __future__ import annotations

import torch
from torch import Tensor


def per_sample_weight_grads(inputs: Tensor, grad_outputs: Tensor,
                            project: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Per-sample gradients G_b = Σ_t g_{b,t} x_{b,t}ᵀ of a Linear weight, shape (B, out, in).

    ``inputs`` x is the Linear's input (B, ..., in), ``grad_outputs`` g the loss gradient w.r.t.
    its output (B, ..., out); every axis between the batch and the feature axis (tokens) is
    summed over. With ``project=(U, V)``, U (out, r) and V (in, r'), returns Uᵀ G_b V (B, r, r'):
    the per-sample gradient of S for a weight written U S Vᵀ (IFHT, the paper's Algorithm 2),
    computed as (Uᵀg)(Vᵀx)ᵀ so the (out, in) matrix is never formed.
    """
    if inputs.shape[0] != grad_outputs.shape[0] or inputs.shape[:-1] != grad_outputs.shape[:-1]:
        raise ValueError(
            f"inputs {tuple(inputs.shape)} and grad_outputs {tuple(grad_outputs.shape)} must agree "
            "on every axis but the last"
        )
    b = inputs.shape[0]
    x = inputs.reshape(b, -1, inputs.shape[-1])
    g = grad_outputs.reshape(b, -1, grad_outputs.shape[-1])
    if project is not None:
        u, v = project
        g = g @ u.to(g.dtype)
        x = x @ v.to(x.dtype)
    return torch.bmm(g.transpose(1, 2), x)
