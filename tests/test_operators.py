"""Generic properties, run over every operator of ``tests/registry.py``."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch
from registry import REGISTRY

from invdiff.linalg import operator_matrix
from invdiff.measurement import Measurement
from invdiff.testing import adjoint_relative_error, autograd_grad_log_likelihood, relative_error

NAMES = sorted(REGISTRY)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def build(name: str, dtype=torch.float64, seed: int = 0):
    return REGISTRY[name].build(dtype, torch.Generator().manual_seed(seed))


def randn(shape, dtype=torch.float64, seed: int = 1, device="cpu"):
    return torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed)).to(device)


def dense(physics, x_shape) -> torch.Tensor:
    return operator_matrix(physics.A, tuple(x_shape[1:]))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("device", DEVICES)
def test_adjoint(name, dtype, tol, device):
    case = build(name, dtype)
    physics = case.physics.to(device)
    x = randn(case.x_shape, dtype, device=device)
    ax = physics.A(x)
    assert ax.dtype == dtype and ax.device.type == device
    y = randn(ax.shape, dtype, seed=2, device=device)
    assert physics.A_adjoint(y).dtype == dtype
    assert adjoint_relative_error(physics, x, y) <= tol


@pytest.mark.parametrize("name", NAMES)
def test_autograd_gives_the_adjoint(name):
    case = build(name)
    x = randn(case.x_shape).requires_grad_(True)
    v = randn(case.physics.A(x).shape, seed=2)
    (grad,) = torch.autograd.grad((case.physics.A(x) * v).sum(), x)
    assert relative_error(grad, case.physics.A_adjoint(v)) <= 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_normal_operator_is_the_adjoint_of_the_forward(name):
    """``A_adjoint_A`` (generic, or an operator's one-pass override) is ``A_adjoint(A(x))``."""
    case = build(name)
    x = randn(case.x_shape)
    assert relative_error(case.physics.A_adjoint_A(x), case.physics.A_adjoint(case.physics.A(x))) <= 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_operator_norm(name):
    """Power iteration agrees with the dense matrix's largest singular value and the known norm."""
    case = build(name)
    s_max = float(torch.linalg.matrix_norm(dense(case.physics, case.x_shape), ord=2))
    x0 = torch.zeros((1, *case.x_shape[1:]), dtype=torch.float64)
    power = float(case.physics.compute_sqnorm(x0, max_iter=2000, tol=1e-10, verbose=False,
                                              rng=torch.Generator().manual_seed(0)).sqrt())
    assert abs(power - s_max) <= 1e-4 * s_max
    if case.norm is not None:
        assert abs(s_max - case.norm) <= 1e-10 * case.norm


@pytest.mark.parametrize("name", NAMES)
def test_pinv_recovers_the_range_of_the_adjoint(name):
    case = build(name)
    x = case.physics.A_adjoint(randn(case.physics.A(randn(case.x_shape)).shape, seed=3))
    m = Measurement(case.physics, case.physics.A(x), 1.0)
    assert relative_error(m.pinv(max_iter=3000), x) <= REGISTRY[name].pinv_tol


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].per_sample is not None])
def test_per_sample_parameters(name):
    batched, singles = REGISTRY[name].per_sample(torch.float64, torch.Generator().manual_seed(0))
    shape = build(name).x_shape
    x = randn(shape)
    y = batched.A(x)
    for i, op in enumerate(singles):
        assert relative_error(y[i : i + 1], op.A(x[i : i + 1])) < 1e-14
        assert relative_error(batched.A_adjoint(y)[i : i + 1], op.A_adjoint(y[i : i + 1])) < 1e-14
    with pytest.raises(ValueError, match="batch size 2"):
        batched.A(x[:2])
    # n particles per item: the expanded measurement pairs each particle with its item's parameters
    m = Measurement(batched, y, 0.1).expand(2)
    assert torch.allclose(m.physics.A(x.repeat_interleave(2, dim=0)), y.repeat_interleave(2, dim=0))


def _snapshot(physics):
    return {k: (v.to_dense() if v.layout != torch.strided else v).clone() for k, v in physics.named_buffers()}


@pytest.mark.parametrize("name", NAMES)
def test_calls_never_change_the_operator(name):
    case = build(name)
    physics = case.physics
    before = _snapshot(physics)
    x = randn(case.x_shape)
    physics.A_adjoint(physics.A(x))
    if hasattr(physics, "with_mask"):
        other = physics.with_mask(torch.zeros_like(physics.mask[0, 0]) if physics.mask.dim() == 4 else physics.mask)
        assert other is not physics
    if hasattr(physics, "expand_batch"):
        physics.expand_batch(2)
    after = _snapshot(physics)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    if hasattr(physics, "mask"):
        with pytest.raises(TypeError, match="immutable"):
            physics.A(x, mask=physics.mask)


@pytest.mark.parametrize("name", NAMES)
def test_measurement_gradient_and_prox(name):
    """Inside Measurement: closed-form gradient = autograd; prox = the dense normal-equation solution."""
    case = build(name)
    x = randn(case.x_shape)
    y = case.physics.A(randn(case.x_shape, seed=4))
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    m = Measurement(case.physics, y, sigma)
    assert relative_error(m.grad_log_likelihood(x), autograd_grad_log_likelihood(m, x)) <= 1e-10
    a = dense(case.physics, case.x_shape)
    gamma = 0.3
    for i in range(case.x_shape[0]):
        lhs = a.T @ a / sigma[i] ** 2 + torch.eye(a.shape[1], dtype=torch.float64) / gamma
        rhs = a.T @ y[i].flatten() / sigma[i] ** 2 + x[i].flatten() / gamma
        expected = torch.linalg.solve(lhs, rhs)
        assert relative_error(m.prox(x, gamma)[i].flatten(), expected) <= 1e-8


@pytest.mark.parametrize("name", NAMES)
def test_deepinv_solver(name):
    """deepinv's proximal gradient solver with a Tikhonov prior reaches the ridge solution
    ``(A^T A + lam I)^-1 A^T y``; ``lam = ||A||^2 / 2`` and step ``1 / ||A||^2`` contract by 2/3 per step."""
    case = build(name)
    physics = case.physics
    y = physics.A(randn(case.x_shape, seed=5))
    a = dense(physics, case.x_shape)
    lip = float(torch.linalg.matrix_norm(a, ord=2)) ** 2
    lam = 0.5 * lip
    solver = dinv.optim.optim_builder(
        iteration="PGD", prior=dinv.optim.prior.Tikhonov(), data_fidelity=dinv.optim.data_fidelity.L2(),
        params_algo={"stepsize": 1.0 / lip, "lambda": lam}, max_iter=100, early_stop=False, verbose=False)
    x_hat = solver(y, physics)
    lhs = a.T @ a + lam * torch.eye(a.shape[1], dtype=torch.float64)
    expected = torch.linalg.solve(lhs, (a.T @ y.reshape(y.shape[0], -1).T)).T.reshape(x_hat.shape)
    assert relative_error(x_hat, expected) <= 1e-10


@pytest.mark.parametrize("name", [n for n in NAMES if isinstance(build(n).physics, dinv.physics.DecomposablePhysics)])
def test_deepinv_svd_prox(name):
    """deepinv's SVD-based ``prox_l2`` (used by its HQS, ADMM and DRS) agrees with ``Measurement.prox``."""
    case = build(name)
    x, y = randn(case.x_shape), case.physics.A(randn(case.x_shape, seed=6))
    gamma = 0.7
    ours = Measurement(case.physics, y, 1.0).prox(x, gamma)
    theirs = dinv.optim.data_fidelity.L2().prox(x, y, case.physics, gamma=gamma)
    assert relative_error(theirs, ours) <= 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_wrong_image_shape_is_named(name):
    case = build(name)
    bad = randn((case.x_shape[0], *case.x_shape[1:-1], case.x_shape[-1] + 1))
    with pytest.raises(ValueError, match=r"must have shape.*got"):
        case.physics.A(bad)
