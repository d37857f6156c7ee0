"""Reusable checks for operators and measurements (sigpy's ``check_linop_adjoint`` style).

Each returns a number (a relative error) so that tests can assert a tolerance and benchmarks can
report it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.linalg import batch_dot


def adjoint_relative_error(physics, x: Tensor, y: Tensor) -> float:
    """``max_b |<A x, y> - <x, A^T y>| / (||A x|| ||y||)`` for one ``x`` and ``y`` per sample."""
    ax, aty = physics.A(x), physics.A_adjoint(y)
    lhs, rhs = batch_dot(ax, y), batch_dot(x, aty)
    scale = (batch_dot(ax, ax).sqrt() * batch_dot(y, y).sqrt()).clamp_min(1e-300)
    return float(((lhs - rhs).abs() / scale).max())


def autograd_grad_log_likelihood(measurement, x: Tensor) -> Tensor:
    """Gradient of ``measurement.log_likelihood`` by autograd: the reference for closed forms."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(measurement.log_likelihood(xg).sum(), xg)
    return g


def relative_error(a: Tensor, b: Tensor) -> float:
    """``||a - b|| / ||b||`` over the whole tensor."""
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def randomize_parameters(net: torch.nn.Module, seed: int, std: float) -> torch.nn.Module:
    """Every parameter of ``net`` drawn from ``N(0, std^2)`` by a generator seeded with ``seed``, in
    ``net.parameters()`` order; returns ``net`` in evaluation mode. Published diffusion networks start
    their output layers at zero, so a freshly built one would denoise to the identity: checks of a loader
    against a reference network need weights that make every layer count."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))
    return net.eval()
