"""The sampler contract, checked for every name of the registry (invdiff.samplers.registry.SAMPLERS).

Every sampler, on a small problem of the kind it serves: the posterior has the documented shapes and
dtypes and is finite; the same seed gives the same samples; an item's samples do not depend on its
batch mates (except deepinv's solvers, which draw over the whole batch: documented); the caller's
global random generator is left as it was; and on a Gaussian prior seen through one noisy
observation, whose posterior is exact, the sampler's weighted mean (and, for the samplers that
claim to sample, the covariance) lies within its measured tolerance of the exact one.
"""

from __future__ import annotations

import pytest
import torch

from invdiff.measurement import Measurement
from invdiff.operators import Inpainting, MatrixOperator, random_pixel_mask
from invdiff.priors import GaussianMixturePrior
from invdiff.priors.tokens import EnumerableTokenPrior
from invdiff.problems.defaults import configured_sampler
from invdiff.samplers import run
from invdiff.samplers.registry import SAMPLERS

#: the kind of problem each registry name runs on in these tests (a new name must be placed here)
KIND = {name: "tokens" if spec.token_prior else "vector" for name, spec in SAMPLERS.items()}
KIND.update({"tv": "image", "l1-wavelet": "image", "diffpir": "image", "ddrm": "image", "pigdm-deepinv": "image"})  # TV, l1-wavelet need images; deepinv a data range
KIND.update({"fbp": "ct", "tv-3d": "image"})  # filtered back-projection needs a CT operator; 3-D TV images
#: samplers that draw from one stream over the whole batch (deepinv's), so an item depends on its mates, and
#: the volume samplers, whose batch is one volume's slices coupled along z (tests/test_samplers_volume.py)
BATCH_COUPLED = {"diffpir", "ddrm", "pigdm-deepinv"} | {n for n, s in SAMPLERS.items() if s.volume}


def _vector_problem(batch: int):
    """A 2-D two-mode Gaussian mixture seen through one noisy sum of its coordinates."""
    prior = GaussianMixturePrior(torch.tensor([0.5, 0.5], dtype=torch.float64),
                                 torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64),
                                 0.25 * torch.eye(2, dtype=torch.float64).expand(2, 2, 2))
    y = torch.tensor([[0.5], [-1.0], [2.0]], dtype=torch.float64)[:batch]
    return prior, Measurement(MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64)), y, 0.5)


def _image_problem(batch: int):
    """A correlated Gaussian prior on 1 x 8 x 8 images in [0, 1], half the pixels seen."""
    g = torch.Generator().manual_seed(3)
    idx = torch.arange(8, dtype=torch.float64)
    dist = ((idx[:, None, None, None] - idx[None, None, :, None]) ** 2
            + (idx[None, :, None, None] - idx[None, None, None, :]) ** 2).reshape(64, 64)
    cov = 0.01 * torch.exp(-dist / 8.0) + 1e-4 * torch.eye(64, dtype=torch.float64)
    prior = GaussianMixturePrior(torch.ones(1, dtype=torch.float64), torch.full((1, 64), 0.5, dtype=torch.float64),
                                 cov.unsqueeze(0), event_shape=(1, 8, 8))
    prior.data_range = (0.0, 1.0)
    op = Inpainting(random_pixel_mask((8, 8), 0.5, g).to(torch.float64))
    x0 = prior.sample(3, g)
    y = op.A(x0) + 0.02 * torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    return prior, Measurement(op, y[:batch], 0.02)


def _ct_problem(batch: int):
    """The image prior's 8 x 8 images seen through 6 parallel-beam views."""
    from invdiff.operators import ParallelBeamCT

    prior, _ = _image_problem(batch)
    op = ParallelBeamCT(8, torch.linspace(0.0, 150.0, 6).tolist()).to(torch.float64)
    x0 = prior.sample(3, torch.Generator().manual_seed(5))
    y = op.A(x0) + 0.05 * torch.randn(op.A(x0).shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    return prior, Measurement(op, y[:batch], 0.05)


def _token_problem(batch: int):
    g = torch.Generator().manual_seed(0)
    prior = EnumerableTokenPrior.random(3, 4, 2, 8, g, concentration=1.0)
    a = torch.randn(5, 8, generator=g, dtype=torch.float64)  # 5 rows: not mistaken for one matrix per item
    x = prior.decode(prior.embed(torch.randint(0, 3, (3, 4), generator=g)))
    y = x @ a.T + 0.5 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    return prior, Measurement(MatrixOperator(a), y[:batch], 0.5)


PROBLEMS = {"vector": _vector_problem, "image": _image_problem, "ct": _ct_problem, "tokens": _token_problem}


def _run(name: str, batch: int, seed: int, n: int = 6, nfe: int = 8):
    prior, m = PROBLEMS[KIND[name]](batch)
    nfe = min(nfe, prior.num_positions) if KIND[name] == "tokens" else nfe  # one token per step at most
    sampler = configured_sampler(name, nfe, {"image": "image", "ct": "ct"}.get(KIND[name], "gmm"))
    used = prior if SAMPLERS[name].uses_prior else None
    return run(sampler, m, used, n_particles=n, generator=torch.Generator().manual_seed(seed), progress=False), prior


def test_every_registered_sampler_has_a_contract_problem():
    assert set(KIND) == set(SAMPLERS)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_shapes_dtypes_and_counters(name):
    post, prior = _run(name, batch=3, seed=0)
    assert post.samples.shape[:2] == (3, 6) and post.log_weights.shape == (3, 6)  # copies when deterministic
    assert tuple(post.samples.shape[2:]) == tuple(getattr(prior, "event_shape", post.samples.shape[2:]))
    assert post.log_weights.dtype == torch.float64 and bool(torch.isfinite(post.samples).all())
    assert bool(torch.isfinite(post.log_weights).all())
    if SAMPLERS[name].uses_prior:
        assert post.diagnostics.network_evals > 0
    else:
        assert post.diagnostics.network_evals == 0
    if not SAMPLERS[name].weighted:
        assert bool((post.log_weights == 0).all())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_same_seed_gives_the_same_samples_and_the_global_generator_is_untouched(name):
    before = torch.get_rng_state()
    first, _ = _run(name, batch=2, seed=4)
    assert torch.equal(torch.get_rng_state(), before), f"{name} touched the global generator"
    again, _ = _run(name, batch=2, seed=4)
    torch.testing.assert_close(first.samples, again.samples, rtol=0, atol=0)
    other, _ = _run(name, batch=2, seed=5)
    if SAMPLERS[name].particles:
        assert not torch.equal(first.samples, other.samples), f"{name} ignores its seed"
    else:
        torch.testing.assert_close(first.samples, other.samples, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(set(SAMPLERS) - BATCH_COUPLED))
def test_an_item_does_not_depend_on_its_batch_mates(name):
    alone, _ = _run(name, batch=1, seed=2)
    batched, _ = _run(name, batch=3, seed=2)
    torch.testing.assert_close(batched.samples[:1], alone.samples, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(batched.log_weights[:1], alone.log_weights, rtol=1e-10, atol=1e-10)


# The exact check: prior N((1, -1), [[1, .3], [.3, .5]]), y = x1 + x2 + N(0, 0.3^2) = 1.5, 2000 particles,
# 100 network evaluations, the family "gmm" defaults. Error of the weighted mean over the posterior's
# spread sqrt(trace cov), and relative Frobenius error of the weighted covariance, measured at 2000
# particles over seeds 0-2: DPS 0.14-0.21 (covariance 6: its particles overshoot), DPS-DDIM 0.69-0.73,
# RED-Diff 0.12-0.13 (a mode seeker: no spread), TDS 0.01-0.03 / 0.06-0.07, AFE 0.04-0.20 / 0.02-0.14,
# AFE-ODE 0.04-0.06 / 0.02-0.05, prior + importance weights 0.03-0.06 / 0.05-0.13; prior samples 1.5-1.6
# (not a posterior sampler: the check must fail for it); DDS 0.08-0.09 / 0.30-0.32, DAPS 0.07-0.08 /
# 0.17-0.32, PnP-DM 0.08-0.11 / 0.39-0.41, PiGDM 0.01-0.03 / 0.10-0.12; on one item (no slice to couple)
# DDS's volume form 0.07-0.08 / 0.30-0.33 and DiffusionMBIR 0.19-0.22 (covariance 3-8: its hard projection of
# the noisy sample onto the data ignores the noise, as the paper's noiseless CT does); FPS 0.03-0.13 / 0.15-0.17
# (its covariance is too narrow: it counts the data's one noise once per level). Bounds: about 1.5x the largest.
MOMENTS = {"dps": (0.35, None), "dps-ddim": (1.1, None), "red-diff": (0.25, None), "tds": (0.08, 0.15),
           "afe": (0.3, 0.25), "afe-ode": (0.12, 0.12), "prior-is": (0.12, 0.25), "dds": (0.14, 0.5),
           "daps": (0.12, 0.48), "pnp-dm": (0.16, 0.62), "pigdm": (0.05, 0.19), "dds-volume": (0.12, 0.5),
           "diffusion-mbir": (0.33, None), "fps": (0.2, 0.25)}


@pytest.mark.parametrize("name", sorted(MOMENTS))
def test_weighted_moments_on_an_exact_gaussian_posterior(name):
    prior = GaussianMixturePrior(torch.ones(1, dtype=torch.float64), torch.tensor([[1.0, -1.0]], dtype=torch.float64),
                                 torch.tensor([[[1.0, 0.3], [0.3, 0.5]]], dtype=torch.float64))
    m = Measurement(MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64)),
                    torch.tensor([[1.5]], dtype=torch.float64), 0.3)
    exact = prior.exact_posterior(m)
    post = run(configured_sampler(name, 100, "gmm"), m, prior, n_particles=2000,
               generator=torch.Generator().manual_seed(0), progress=False)
    x, w = post.samples[0].double(), post.weights[0]
    mean = (w[:, None] * x).sum(0)
    cov = ((x - mean) * w[:, None]).T @ (x - mean)
    mean_bound, cov_bound = MOMENTS[name]
    assert float((mean - exact.mean()[0]).norm() / exact.cov()[0].trace().sqrt()) < mean_bound
    if cov_bound is not None:
        assert float((cov - exact.cov()[0]).norm() / exact.cov()[0].norm()) < cov_bound


def test_the_moment_check_fails_for_prior_samples():
    prior = GaussianMixturePrior(torch.ones(1, dtype=torch.float64), torch.tensor([[1.0, -1.0]], dtype=torch.float64),
                                 torch.tensor([[[1.0, 0.3], [0.3, 0.5]]], dtype=torch.float64))
    m = Measurement(MatrixOperator(torch.tensor([[1.0, 1.0]], dtype=torch.float64)),
                    torch.tensor([[1.5]], dtype=torch.float64), 0.3)
    exact = prior.exact_posterior(m)
    post = run(configured_sampler("prior", 100, "gmm"), m, prior, n_particles=2000,
               generator=torch.Generator().manual_seed(0), progress=False)
    assert float((post.mean[0] - exact.mean()[0]).norm() / exact.cov()[0].trace().sqrt()) > 1.0


class _Stop(Exception):
    pass


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_a_run_resumed_from_its_checkpoint_continues_it_exactly(name, tmp_path):
    """Stopped half-way (its state saved as `invdiff reconstruct` saves it, through torch.save and a
    weights-only load), a fresh run resumed from that state ends with the uninterrupted run's samples."""
    from invdiff.samplers.checkpoint import restore_state, state_snapshot

    prior, m = PROBLEMS[KIND[name]](2)
    nfe = min(8, prior.num_positions) if KIND[name] == "tokens" else 8
    family = {"image": "image", "ct": "ct"}.get(KIND[name], "gmm")
    used = prior if SAMPLERS[name].uses_prior else None
    full = run(configured_sampler(name, nfe, family), m, used, n_particles=3, generator=torch.Generator().manual_seed(1),
               progress=False)
    path = tmp_path / "state.pt"
    steps = []
    run(configured_sampler(name, nfe, family), m, used, n_particles=3, generator=torch.Generator().manual_seed(1),
        progress=False, callback=lambda state: steps.append(state.num_steps))
    if steps[-1] < 2:  # one step (deepinv's solvers, the closed-form baselines): nothing to resume
        return
    stop = steps[-1] // 2

    def stop_after_two(state):
        if state.step == stop and not state.done:
            torch.save(state_snapshot(state), path)
            raise _Stop

    with pytest.raises(_Stop):
        run(configured_sampler(name, nfe, family), m, used, n_particles=3, generator=torch.Generator().manual_seed(1),
            progress=False, callback=stop_after_two)
    resumed = run(configured_sampler(name, nfe, family), m, used, n_particles=3,
                  generator=torch.Generator().manual_seed(1), progress=False,
                  resume=lambda s: restore_state(s, torch.load(path, weights_only=True)))
    torch.testing.assert_close(resumed.samples, full.samples, rtol=0, atol=0)
    torch.testing.assert_close(resumed.log_weights, full.log_weights, rtol=0, atol=0)
    assert resumed.diagnostics.network_evals == full.diagnostics.network_evals
    if m is not None:  # a checkpoint of other measured data is refused, not resumed
        with pytest.raises(ValueError, match="other measured data"):
            run(configured_sampler(name, nfe, family), m.with_y(m.y + 1.0), used, n_particles=3,
                generator=torch.Generator().manual_seed(1), progress=False,
                resume=lambda s: restore_state(s, torch.load(path, weights_only=True)))
