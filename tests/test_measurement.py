"""Measurement: closed forms against autograd and optimality conditions, over every operator."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch
from conftest import OPERATORS

from invdiff.linalg import batch_view
from invdiff.measurement import CapabilityError, Measurement
from invdiff.operators import MatrixOperator
from invdiff.testing import autograd_grad_log_likelihood, relative_error


def test_grad_log_likelihood_matches_autograd(operator_case):
    name, physics, x, y, sigma = operator_case
    m = Measurement(physics, y, sigma)
    assert relative_error(m.grad_log_likelihood(x), autograd_grad_log_likelihood(m, x)) <= 1e-8, name


def test_log_likelihood_is_per_sample_gaussian(operator_case):
    name, physics, x, y, sigma = operator_case
    m = Measurement(physics, y, sigma)
    r = (y - physics.A(x)).flatten(1)
    expected = -0.5 * (r**2).sum(1) / sigma**2
    torch.testing.assert_close(m.log_likelihood(x), expected, rtol=1e-12, atol=0)


def test_prox_satisfies_optimality(operator_case, generator):
    name, physics, x, y, sigma = operator_case
    m = Measurement(physics, y, sigma)
    z = torch.randn(x.shape, dtype=torch.float64, generator=generator)
    gamma = torch.tensor([0.3, 1.0, 3.0], dtype=torch.float64)
    p = m.prox(z, gamma)
    grad = physics.A_adjoint(physics.A(p) - y) / batch_view(sigma**2, p) + (p - z) / batch_view(gamma, p)
    scale = physics.A_adjoint(y) / batch_view(sigma**2, p) + z / batch_view(gamma, p)
    assert float(grad.norm()) <= 1e-7 * float(scale.norm()), name


def test_pinv_is_least_squares(operator_case):
    name, physics, x, y, sigma = operator_case
    m = Measurement(physics, y, sigma)
    p = m.pinv()
    normal_residual = physics.A_adjoint(physics.A(p) - y)
    assert float(normal_residual.norm()) <= 1e-6 * float(physics.A_adjoint(y).norm()), name


def test_pinv_is_minimum_norm_for_matrices(generator):
    op = MatrixOperator.random(3, 8, generator)
    y = torch.randn(2, 3, dtype=torch.float64, generator=generator)
    expected = y @ torch.linalg.pinv(op.matrix).T
    m = Measurement(op, y, 0.1)
    torch.testing.assert_close(m.pinv(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.pinv(method="cg"), expected, rtol=1e-8, atol=1e-10)


def test_consistent_replaces_measured_entries(generator):
    physics, shape = OPERATORS["inpainting"](generator)
    x_true = torch.randn(shape, dtype=torch.float64, generator=generator)
    y = physics.A(x_true)
    m = Measurement(physics, y, 0.01)
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    c = m.consistent(x)
    mask = physics.mask.bool().expand(shape)
    assert torch.equal(c[~mask], x[~mask])
    torch.testing.assert_close(c[mask], x_true[mask], rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["mri", "multicoil_mri", "tomography"])
def test_consistent_projects_onto_measurements(name, generator):
    physics, shape = OPERATORS[name](generator)
    y = physics.A(torch.randn(shape, dtype=torch.float64, generator=generator))
    m = Measurement(physics, y, 0.01)
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    c = m.consistent(x)
    assert relative_error(physics.A(c), y) < 1e-6
    # orthogonal projection: the correction lies in the range of A^T, so applying it twice is a no-op
    assert relative_error(m.consistent(c), c) < 1e-6


def test_results_do_not_depend_on_batch(generator):
    physics, _ = OPERATORS["multicoil_mri"](generator)
    x = torch.randn(8, 2, 16, 16, dtype=torch.float64, generator=generator)
    y = physics.A(torch.randn(8, 2, 16, 16, dtype=torch.float64, generator=generator))
    sigma = torch.linspace(0.05, 0.4, 8, dtype=torch.float64)
    big, small = Measurement(physics, y, sigma), Measurement(physics, y[3:4], sigma[3:4])
    for f in (lambda m, x: m.log_likelihood(x), lambda m, x: m.grad_log_likelihood(x),
              lambda m, x: m.pinv(), lambda m, x: m.prox(x, 0.5)):
        torch.testing.assert_close(f(big, x)[3:4], f(small, x[3:4]), rtol=1e-10, atol=1e-12)


def test_expand_repeats_items_in_order(generator):
    op = MatrixOperator.random(3, 8, generator)
    y = torch.randn(2, 3, dtype=torch.float64, generator=generator)
    m = Measurement(op, y, torch.tensor([0.1, 0.2], dtype=torch.float64))
    e = m.expand(4)
    assert e.y.shape == (8, 3) and e.x_shape == (8, 8)
    assert torch.equal(e.y[4:], y[1:].expand(4, 3)) and torch.equal(e.sigma, torch.tensor([0.1] * 4 + [0.2] * 4, dtype=torch.float64))
    x = torch.randn(2, 8, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(e.log_likelihood(x.repeat_interleave(4, 0)), m.log_likelihood(x).repeat_interleave(4))


def test_expand_refuses_per_sample_parameters_it_cannot_expand(generator):
    masks = torch.stack([torch.ones(16, 16), torch.zeros(16, 16)]).double()
    physics = dinv.physics.Inpainting(img_size=(1, 16, 16), mask=masks.unsqueeze(1))
    y = physics.A(torch.ones(2, 1, 16, 16, dtype=torch.float64))
    with pytest.raises(CapabilityError, match="per-sample parameters"):
        Measurement(physics, y, 0.1).expand(3)


def test_nonlinear_operator_uses_autograd():
    physics = dinv.physics.Physics(A=lambda x: x**2)
    x = torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(2, 3)
    y = torch.ones(2, 3, dtype=torch.float64)
    m = Measurement(physics, y, 0.5, x_shape=(2, 3))
    torch.testing.assert_close(m.grad_log_likelihood(x), -(x**2 - y) * 2 * x / 0.25)
    for capability in (m.pinv, lambda: m.prox(x, 1.0), lambda: m.consistent(x)):
        with pytest.raises(CapabilityError, match="linear"):
            capability()


def test_optional_capabilities_raise_clearly(generator):
    physics, shape = OPERATORS["multicoil_mri"](generator)
    m = Measurement(physics, physics.A(torch.zeros(shape, dtype=torch.float64)), 0.1)
    with pytest.raises(CapabilityError, match="MultiCoilMRI has no with_mask"):
        m.with_mask(torch.ones(16, 16))
    with pytest.raises(CapabilityError, match="no SVD"):
        m.svd()


def test_measurement_is_frozen_and_leaves_inputs_alone(generator):
    physics, shape = OPERATORS["inpainting"](generator)
    y = physics.A(torch.randn(shape, dtype=torch.float64, generator=generator))
    y_before = y.clone()
    m = Measurement(physics, y, 0.1)
    m.prox(torch.zeros(shape, dtype=torch.float64), 1.0), m.pinv(), m.consistent(torch.zeros(shape, dtype=torch.float64))
    assert torch.equal(y, y_before)
    with pytest.raises(AttributeError, match="frozen"):
        m.sigma = 1.0


@pytest.mark.parametrize("sigma, match", [(0.0, "> 0"), (-1.0, "> 0"), (float("nan"), "finite"),
                                          (torch.ones(2), r"shape \(3,\)")])
def test_bad_sigma_is_rejected(sigma, match, generator):
    physics, shape = OPERATORS["inpainting"](generator)
    y = physics.A(torch.zeros(shape, dtype=torch.float64))
    with pytest.raises(ValueError, match=match):
        Measurement(physics, y, sigma)


def test_nan_in_y_is_rejected(generator):
    physics, shape = OPERATORS["inpainting"](generator)
    y = physics.A(torch.zeros(shape, dtype=torch.float64))
    y[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or Inf"):
        Measurement(physics, y, 0.1)


@pytest.mark.parametrize("name, bad_shape", [("mri", (3, 2, 16, 12)), ("matrix", (3, 5)),
                                             ("inpainting", (3, 1, 8, 16))])
def test_y_of_the_wrong_shape_is_rejected(name, bad_shape, generator):
    physics, _ = OPERATORS[name](generator)
    with pytest.raises(ValueError, match=r"does not fit|maps x of shape") as err:
        Measurement(physics, torch.zeros(bad_shape, dtype=torch.float64), 0.1)
    assert str(tuple(bad_shape)) in str(err.value)


def test_non_physics_is_rejected():
    with pytest.raises(TypeError, match="deepinv Physics"):
        Measurement(lambda x: x, torch.zeros(1, 3), 0.1)


def test_pinv_rtol_truncates_small_singular_values():
    from invdiff.operators import MatrixOperator

    op = MatrixOperator(torch.diag(torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64)))
    m = Measurement(op, torch.ones(1, 3, dtype=torch.float64), 0.1)
    torch.testing.assert_close(m.pinv(), torch.tensor([[1.0, 10.0, 100.0]], dtype=torch.float64))
    torch.testing.assert_close(m.pinv(rtol=0.05), torch.tensor([[1.0, 10.0, 0.0]], dtype=torch.float64))


def test_operator_methods_are_the_operators(operator_case, generator):
    name, physics, x, y, sigma = operator_case
    m = Measurement(physics, y, sigma)
    torch.testing.assert_close(m.forward(x), physics.A(x), rtol=0, atol=0)
    torch.testing.assert_close(m.adjoint(y), physics.A_adjoint(y), rtol=0, atol=0)
    torch.testing.assert_close(m.normal(x), physics.A_adjoint(physics.A(x)), rtol=1e-12, atol=1e-12)
    # <A x, A x> = <x, A^T A x>: normal is the composition, not an approximation of it
    assert abs(float((m.forward(x) ** 2).sum() - (x * m.normal(x)).sum())) <= 1e-10 * float((m.forward(x) ** 2).sum())


def test_operator_norm_matches_the_largest_singular_value(generator):
    op = MatrixOperator.random(3, 8, generator)
    y = torch.randn(2, 3, dtype=torch.float64, generator=generator)
    m = Measurement(op, y, 0.1)
    top = float(torch.linalg.matrix_norm(op.matrix, ord=2)) ** 2
    torch.testing.assert_close(m.operator_norm_sq(200), torch.full((2,), top, dtype=torch.float64), rtol=1e-6, atol=0)
    assert torch.equal(m.operator_norm_sq(5), m.operator_norm_sq(5))  # a fixed start: reproducible


def test_rescaled_states_the_same_measurement_in_new_units(operator_case, generator):
    name, physics, x, y, sigma = operator_case
    m = Measurement(physics, y, sigma)
    u = m.rescaled(0.5, 4.0)
    torch.testing.assert_close(u.sigma, sigma / 4.0)
    # the residual of x in data units is width times the residual of u = (x - offset) / width
    torch.testing.assert_close(u.residual((x - 0.5) / 4.0) * 4.0, m.residual(x), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="width"):
        m.rescaled(0.0, 0.0)


def test_to_the_same_device_is_itself_and_with_y_is_checked(generator):
    op = MatrixOperator.random(3, 8, generator)
    m = Measurement(op, torch.randn(2, 3, dtype=torch.float64, generator=generator), 0.1)
    assert m.to("cpu") is m
    other = m.with_y(torch.zeros(2, 3, dtype=torch.float64))
    assert other.physics is m.physics and torch.equal(other.sigma, m.sigma) and not torch.equal(other.y, m.y)
    with pytest.raises(ValueError, match="shape"):
        m.with_y(torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        m.with_y(torch.full((2, 3), float("nan"), dtype=torch.float64))


def test_with_sigma_keeps_the_rest_and_is_checked(generator):
    op = MatrixOperator.random(3, 8, generator)
    y = torch.randn(2, 3, dtype=torch.float64, generator=generator)
    m = Measurement(op, y, 0.1).with_normal_solver()
    other = m.with_sigma(torch.tensor([0.2, 0.4], dtype=torch.float64))
    assert other.physics is m.physics and other.y is m.y and other.solver is m.solver
    assert other.sigma.tolist() == [0.2, 0.4] and m.sigma.tolist() == [0.1, 0.1]
    z = torch.randn(2, 8, dtype=torch.float64, generator=generator)
    fresh = Measurement(op, y, torch.tensor([0.2, 0.4], dtype=torch.float64))
    assert relative_error(other.prox(z, 0.5), fresh.prox(z, 0.5)) < 1e-10
    with pytest.raises(ValueError, match="shape"):
        m.with_sigma(torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="> 0"):
        m.with_sigma(-0.1)


def test_candidate_grid_is_the_operators_and_refused_otherwise(generator):
    from invdiff.operators import Inpainting, MultiCoilMRI

    inp = Measurement(Inpainting(torch.ones(4, 5)), torch.zeros(1, 1, 4, 5), 0.1)
    assert inp.candidate_grid() == ("pixels", (4, 5))
    maps = torch.ones(2, 8, 6, dtype=torch.complex64) / 2**0.5
    mri = Measurement(MultiCoilMRI(torch.ones(6), maps, image_size=(4, 6)), torch.zeros(1, 2, 2, 8, 6), 0.1)
    assert mri.candidate_grid() == ("columns", (8, 6))
    with pytest.raises(CapabilityError, match="MatrixOperator"):
        Measurement(MatrixOperator.random(3, 8, generator), torch.zeros(1, 3, dtype=torch.float64), 0.1).candidate_grid()
