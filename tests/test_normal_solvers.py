"""Exact normal-equation solvers: against dense linear algebra, including the sharp regime."""

from __future__ import annotations

import pytest
import torch

from invdiff.linalg import batch_view, operator_matrix
from invdiff.measurement import Measurement
from invdiff.normal_solvers import GramSolver, RowBlockSolver, normal_solver, row_block_bytes
from invdiff.operators import MultiCoilMRI, ParallelBeamCT


def _coil_maps(g: torch.Generator, batch: int, coils: int, h: int, w: int) -> torch.Tensor:
    """Smooth random maps that vanish on a border (a null space, as ESPIRiT's do)."""
    maps = torch.randn(batch, coils, h // 4, w // 4, dtype=torch.complex128, generator=g)
    maps = torch.nn.functional.interpolate(torch.view_as_real(maps).permute(0, 1, 4, 2, 3).reshape(batch, 2 * coils, h // 4, w // 4),
                                           size=(h, w), mode="bilinear", align_corners=False)
    maps = torch.view_as_complex(maps.reshape(batch, coils, 2, h, w).permute(0, 1, 3, 4, 2).contiguous())
    maps[..., :2, :] = 0
    return maps


def _mri(g: torch.Generator, batch: int = 2) -> MultiCoilMRI:
    """Per-item maps on a 24 x 16 grid with readout oversampling (image 12 x 16), a 2x column mask."""
    columns = torch.zeros(16)
    columns[::2] = 1
    columns[7:9] = 1
    return MultiCoilMRI(columns, _coil_maps(g, batch, 3, 24, 16), image_size=(12, 16))



def test_row_gram_blocks_are_a_t_a():
    g = torch.Generator().manual_seed(0)
    op = _mri(g)
    x = torch.randn(2, 2, 12, 16, dtype=torch.float64, generator=g)
    blocks = op.row_gram_blocks()
    assert blocks.shape == (2, 12, 16, 16)
    z = torch.complex(x[:, 0], x[:, 1])
    by_blocks = torch.einsum("bhij,bhj->bhi", blocks, z)
    torch.testing.assert_close(by_blocks, torch.view_as_complex(op.A_adjoint_A(x).permute(0, 2, 3, 1).contiguous()),
                               rtol=1e-10, atol=1e-12)


def test_row_blocks_built_in_chunks_solve_as_the_whole():
    g = torch.Generator().manual_seed(3)
    op = _mri(g)
    whole = op.row_gram_blocks()
    torch.testing.assert_close(op.row_gram_blocks(slice(5, 9)), whole[:, 5:9], rtol=0, atol=0)
    direct = RowBlockSolver(whole, 2)
    chunked = RowBlockSolver.of(op, 2, chunks=5)  # 12 rows in chunks of 3
    torch.testing.assert_close(chunked.eigenvalues, direct.eigenvalues, rtol=1e-12, atol=1e-12)
    r = op.A(torch.randn(2, 2, 12, 16, dtype=torch.float64, generator=g))
    sigma, gamma = torch.full((2,), 0.01, dtype=torch.float64), torch.tensor([50.0, 1e-3], dtype=torch.float64)
    torch.testing.assert_close(chunked.update(op, r, sigma, gamma), direct.update(op, r, sigma, gamma),
                               rtol=1e-10, atol=1e-12)


def test_row_gram_blocks_refuse_a_two_dimensional_mask():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(24, 16, generator=g) < 0.5).double()
    op = MultiCoilMRI(mask, _coil_maps(g, 1, 3, 24, 16), image_size=(12, 16))
    with pytest.raises(ValueError, match="readout"):
        op.row_gram_blocks()
    assert normal_solver(op, (1, 2, 3, 24, 16)) is None


def _check_prox(m: Measurement, exact: Measurement, z: torch.Tensor, gammas: torch.Tensor) -> None:
    """The solver's prox satisfies the optimality condition to float64 precision, for sharp gammas too."""
    p = exact.prox(z, gammas)
    phys = m.physics
    grad = phys.A_adjoint(phys.A(p) - m.y) / batch_view(m.sigma**2, p) + (p - z) / batch_view(gammas, p)
    scale = phys.A_adjoint(m.y) / batch_view(m.sigma**2, p) + z / batch_view(gammas, p)
    assert float(grad.norm()) <= 1e-9 * float(scale.norm())


def test_row_block_prox_and_pinv_are_exact():
    g = torch.Generator().manual_seed(1)
    op = _mri(g)
    x = torch.randn(2, 2, 12, 16, dtype=torch.float64, generator=g)
    y = op.A(x) + 0.003 * op.A(op.A_adjoint(torch.randn(2, 2, 3, 24, 16, dtype=torch.float64, generator=g)))
    m = Measurement(op, y, torch.tensor([0.003, 0.01], dtype=torch.float64))
    exact = m.with_normal_solver()
    assert isinstance(exact.solver, RowBlockSolver)
    z = 80 * torch.randn(x.shape, dtype=torch.float64, generator=g)
    # gamma / sigma^2 up to 7e8, the first step of a diffusion sampler, where CG struggles
    _check_prox(m, exact, z, torch.tensor([6400.0, 0.01], dtype=torch.float64))
    _check_prox(m, exact, z, torch.tensor([1.0, 1e-4], dtype=torch.float64))
    p = exact.pinv()
    assert float(op.A_adjoint(op.A(p) - y).norm()) <= 1e-10 * float(op.A_adjoint(y).norm())
    torch.testing.assert_close(p, m.pinv(method="cg", tol=1e-13, max_iter=5000), rtol=1e-7, atol=1e-9)


def test_solver_follows_particles_item_major():
    g = torch.Generator().manual_seed(2)
    op = _mri(g)
    x = torch.randn(2, 2, 12, 16, dtype=torch.float64, generator=g)
    m = Measurement(op, op.A(x), 0.01).with_normal_solver()
    em = m.expand(3)
    assert em.solver.batch == 6
    z = torch.randn(6, 2, 12, 16, dtype=torch.float64, generator=g)
    reference = Measurement(em.physics, em.y, em.sigma)  # CG on the expanded operator
    torch.testing.assert_close(em.prox(z, 2.0), reference.prox(z, 2.0, tol=1e-13, max_iter=5000), rtol=1e-8, atol=1e-9)
    with pytest.raises(ValueError, match="batch of 2"):
        Measurement(em.physics, em.y, em.sigma, solver=m.solver)


def test_gram_solver_on_sparse_view_ct():
    g = torch.Generator().manual_seed(3)
    op = ParallelBeamCT.sparse_view(16, 6, dtype=torch.float64)  # 6 x 23 = 138 measurements, 256 unknowns
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64, generator=g)
    y = op.A(x) + 0.1 * torch.randn(2, 1, *op.sinogram_shape, dtype=torch.float64, generator=g)
    m = Measurement(op, y, 0.1)
    exact = m.with_normal_solver()
    assert isinstance(exact.solver, GramSolver)
    z = 80 * torch.randn(x.shape, dtype=torch.float64, generator=g)
    _check_prox(m, exact, z, torch.tensor([6400.0, 1e-3], dtype=torch.float64))
    a = operator_matrix(op.A, (1, 16, 16))
    expected = (y.reshape(2, -1) @ torch.linalg.pinv(a).T).reshape(x.shape)
    torch.testing.assert_close(exact.pinv(), expected, rtol=1e-8, atol=1e-8)


def test_gram_solver_keeps_a_float32_measurement_float32():
    g = torch.Generator().manual_seed(4)
    op = ParallelBeamCT.sparse_view(16, 6)
    y = op.A(torch.rand(1, 1, 16, 16, generator=g))
    m = Measurement(op, y, 0.1).with_normal_solver()
    out = m.prox(torch.zeros(1, 1, 16, 16), 100.0)
    assert out.dtype == torch.float32 and op.matrix.dtype == torch.float32  # the operator is untouched


def test_with_normal_solver_leaves_other_operators_alone():
    g = torch.Generator().manual_seed(6)
    from conftest import OPERATORS

    for name in ("mri", "blur_fft", "tomography"):  # SVD closed forms, or no float64 twin (deepinv's Tomography)
        physics, shape = OPERATORS[name](g)
        m = Measurement(physics, physics.A(torch.randn(shape, dtype=torch.float64, generator=g)), 0.1)
        assert m.with_normal_solver() is m, name
    op = _mri(g)
    m = Measurement(op, op.A(torch.randn(2, 2, 12, 16, dtype=torch.float64, generator=g)), 0.1).with_normal_solver()
    moved = m.with_y(2 * m.y)
    assert moved.solver is m.solver and torch.equal(moved.y, 2 * m.y)
    with pytest.raises(ValueError, match="shape"):
        m.with_y(m.y[:1])


def test_row_block_memory_is_known_before_building_and_capped():
    g = torch.Generator().manual_seed(0)
    op = _mri(g)
    assert op.row_gram_shape() == tuple(op.row_gram_blocks().shape[:3]) == (2, 12, 16)
    need = row_block_bytes(op)
    assert need == 16 * 2 * 16 * 16 * (12 + 3 * 1)  # the eigenvectors, and one chunk's temporaries (12 rows / 16)
    y_shape = tuple(op.A(torch.zeros(2, 2, 12, 16, dtype=torch.float64)).shape)
    assert isinstance(normal_solver(op, y_shape, max_bytes=need), RowBlockSolver)
    assert normal_solver(op, y_shape, max_bytes=need - 1) is None


@pytest.mark.parametrize("name", ["pnp-dm", "pigdm"])
def test_splitting_samplers_solve_exactly_where_they_can(name):
    """PnP-DM and ΠGDM attach the row-block solver to a multi-coil measurement (and keep it through new
    data); their result matches CG run to convergence."""
    from invdiff.priors import GaussianMixturePrior
    from invdiff.samplers import PiGDM, PnPDM, run

    g = torch.Generator().manual_seed(1)
    op = _mri(g, batch=1)
    d = 2 * 12 * 16
    prior = GaussianMixturePrior(torch.tensor([0.5, 0.5], dtype=torch.float64),
                                 torch.randn(2, d, generator=g, dtype=torch.float64),
                                 0.3 * torch.eye(d, dtype=torch.float64).expand(2, d, d), event_shape=(2, 12, 16))
    x = prior.sample(1, g)
    m = Measurement(op, op.A(x) + 0.01 * torch.randn(op.A(x).shape, generator=g, dtype=torch.float64), 0.01)
    build = {"pnp-dm": lambda exact: PnPDM(10, inner_steps=2, exact_solve=exact),
             "pigdm": lambda exact: PiGDM(10, exact_solve=exact, cg_iterations=2000)}[name]
    state = build(True).init(m, prior, 2, torch.Generator().manual_seed(0))
    assert isinstance(state.measurement._solver, RowBlockSolver)
    assert isinstance(build(True).with_measurement(state, m).measurement._solver, RowBlockSolver)
    assert build(False).init(m, prior, 2, torch.Generator().manual_seed(0)).measurement._solver is None
    if name == "pnp-dm":  # its CG runs to 1e-10: the same draws
        exact, cg = (run(build(e), m, prior, n_particles=2, generator=torch.Generator().manual_seed(3),
                         progress=False) for e in (True, False))
        torch.testing.assert_close(exact.samples, cg.samples, rtol=1e-7, atol=1e-8)
    else:  # ΠGDM's CG stops at 1e-6: check its guidance against dense linear algebra instead
        from invdiff.samplers.splitting import pseudo_inverse_guidance

        x0 = torch.randn(2, 2, 12, 16, generator=g, dtype=torch.float64)
        got = pseudo_inverse_guidance(state.measurement, x0, 0.5)[0]
        a = operator_matrix(op.A, (2, 12, 16))
        res = (state.measurement.y - state.measurement.forward(x0)).reshape(2, -1)
        want = torch.linalg.solve(0.5 * a.T @ a + 1e-4 * torch.eye(d, dtype=torch.float64), a.T @ res.T).T
        torch.testing.assert_close(got.reshape(2, -1), want, rtol=1e-8, atol=1e-8)


def test_slice_groups_hold_the_exact_solver_that_samplers_attach():
    """The reconstruct budget counts the row-block solver as row_block_bytes does, and its group cap is the
    largest group with_exact_solver still attaches the solver to (3 slices at fastMRI's 320 x 320)."""
    from types import SimpleNamespace

    from invdiff.problems import configured_sampler
    from invdiff.reconstruct.budget import exact_solver_bytes, exact_solver_group
    from invdiff.samplers.splitting import EXACT_SOLVE_BYTES

    op = _mri(torch.Generator().manual_seed(0), batch=1)
    assert exact_solver_bytes((12, 16), 3) == row_block_bytes(op) and exact_solver_bytes((12, 16), 0) == 0
    group = exact_solver_group((320, 320), 15)
    assert group == 3
    stub = lambda n: SimpleNamespace(row_gram_shape=lambda: (n, 320, 320))  # noqa: E731
    assert row_block_bytes(stub(group)) <= EXACT_SOLVE_BYTES < row_block_bytes(stub(group + 1))
    attaching = {name for name in ("pnp-dm", "fps", "afe", "pigdm", "diffpir", "dps", "red-diff")
                 if configured_sampler(name, 10, "mri", {}).attaches_exact_solver}
    assert attaching == {"pnp-dm", "fps", "afe"}  # the registry's settings; ΠGDM's tuned form and DiffPIR use CG
    assert configured_sampler("diffpir", 10, "mri", {"exact_prox": True}).attaches_exact_solver


def test_ensemble_solver_keeps_to_the_memory_cap(monkeypatch):
    """AFE attaches the row-block solver only under the cap that slice groups are sized for (beyond it, CG:
    a direct call on a large batch must not build gigabytes uncapped), and CT's measurement-space Gram solver."""
    import invdiff.samplers.base as base
    from invdiff.samplers import ApproximationFreeEnsemble

    g = torch.Generator().manual_seed(4)
    op = _mri(g, batch=2)
    y = op.A(torch.zeros(2, 2, 12, 16, dtype=torch.float64))
    m = Measurement(op, y, 0.01)
    afe = ApproximationFreeEnsemble(4)
    assert isinstance(afe.with_solver(m).solver, RowBlockSolver)
    monkeypatch.setattr(base, "EXACT_SOLVE_BYTES", row_block_bytes(op) - 1)
    assert afe.with_solver(m).solver is None
    assert ApproximationFreeEnsemble(4, exact_prox=False).with_solver(m) is m
    ct = ParallelBeamCT.sparse_view(16, 4, dtype=torch.float64)
    m_ct = Measurement(ct, ct.A(torch.zeros(1, 1, 16, 16, dtype=torch.float64)), 0.01)
    assert isinstance(afe.with_solver(m_ct).solver, GramSolver)
