"""Prior adapters (deepinv denoisers both ways, ADM checkpoints) and the PCA Gaussian mixture."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch

from invdiff.priors import CheckpointError, GaussianMixturePrior
from invdiff.priors.adapters import AsDeepinvDenoiser, DeepinvDenoiserPrior, adm_prior
from invdiff.priors.pca_gmm import PCAGaussianMixturePrior, fit_pca_gmm


class _ShrinkDenoiser(dinv.models.Denoiser):
    """The exact MMSE denoiser of N(0, I) data: x / (1 + sigma^2), per-sample sigma."""

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return x / (1 + s**2)


def test_deepinv_denoiser_is_called_with_per_sample_sigma():
    prior = DeepinvDenoiserPrior(_ShrinkDenoiser(), (1, 4, 4))
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(prior.denoise(x, sigma), x / (1 + sigma.view(3, 1, 1, 1) ** 2))
    torch.testing.assert_close(prior.score(x, sigma), -x / (1 + sigma.view(3, 1, 1, 1) ** 2))
    with pytest.raises(ValueError, match=r"expected images \(B, 1, 4, 4\)"):
        prior.denoise(torch.zeros(1, 1, 5, 5), 1.0)


def test_our_prior_inside_deepinv_matches_the_prior():
    g = torch.Generator().manual_seed(1)
    gmm = GaussianMixturePrior.grid(4, g)
    prior = GaussianMixturePrior(gmm.mixture.weights, gmm.mixture.means, gmm.mixture.covs, (1, 2, 2))
    x = 3 * torch.randn(2, 1, 2, 2, generator=g, dtype=torch.float64)
    wrapped = AsDeepinvDenoiser(prior)
    assert isinstance(wrapped, dinv.models.Denoiser)
    torch.testing.assert_close(wrapped(x, 0.7), prior.denoise(x, 0.7))
    s = torch.tensor([0.3, 2.0], dtype=torch.float64)
    torch.testing.assert_close(wrapped(x, s), prior.denoise(x, s))


@pytest.fixture(scope="module")
def adm_file(tmp_path_factory):
    """A randomly initialised guided-diffusion-layout checkpoint (the output layer made non-zero)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = dinv.models.DiffUNet(pretrained=None)
        torch.nn.init.normal_(net.out[-1].weight, std=1e-3)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("sqrt_")}
    path = tmp_path_factory.mktemp("adm") / "random_ffhq_layout.pt"
    torch.save(state, path)
    return path, net


def test_adm_prior_agrees_with_deepinv_at_a_trained_step(adm_file):
    path, net = adm_file
    prior = adm_prior(path, image_size=64)
    t = 100  # a trained step: deepinv snaps to it exactly, so both conversions must agree
    abar = prior.schedule.alpha_bars[t]
    sigma = float(((1 - abar) / abar).sqrt()) * 0.5  # EDM level in [0, 1] data units (scale 0.5)
    x = 0.5 + 0.1 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = prior.denoise(x, sigma)
    with torch.no_grad():
        theirs = net.eval()(x, torch.tensor([sigma]), type_t="noise_level")
    assert float((ours - 0.5).abs().max()) < 0.99  # deepinv clips to [0, 1]; stay inside
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=0)
    assert float((ours - x).abs().max()) > 1e-4  # the network contributes


def test_adm_prior_rejects_foreign_files(tmp_path, adm_file):
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match=r"bad.pt: a checkpoint of family .adm. .* matches no known preset .*1 unexpected"):
        adm_prior(bad)
    with pytest.raises(FileNotFoundError):
        adm_prior(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="multiple of 32"):
        adm_prior(adm_file[0], image_size=100)
    with pytest.raises(CheckpointError, match="matches no known preset .*adm-imagenet-256"):
        adm_prior(adm_file[0], large_model=True)


def _random_pca_gmm(d=6, q=2, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, q, generator=g, dtype=torch.float64))
    means = 3 * torch.randn(k, q, generator=g, dtype=torch.float64)
    a = torch.randn(k, q, q, generator=g, dtype=torch.float64)
    covs = a @ a.transpose(-1, -2) + 0.1 * torch.eye(q, dtype=torch.float64)
    sub = GaussianMixturePrior(torch.rand(k, generator=g, dtype=torch.float64) + 0.1, means, covs)
    return PCAGaussianMixturePrior(torch.randn(d, generator=g, dtype=torch.float64), basis, sub, 0.05,
                                   (1, 2, 3) if d == 6 else (d,))


def test_pca_mixture_denoiser_equals_the_dense_mixture():
    prior = _random_pca_gmm()
    dense = prior.full_mixture()
    x = 2 * torch.randn(5, 1, 2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.3, 1.0, 3.0, 10.0], dtype=torch.float64)
    torch.testing.assert_close(prior.denoise(x, sigma), dense.denoise(x, sigma), rtol=1e-9, atol=1e-9)


def test_pca_mixture_samples_have_the_dense_moments():
    prior = _random_pca_gmm()
    s = prior.sample(200_000, torch.Generator().manual_seed(4)).reshape(200_000, -1)
    dense = prior.full_mixture().mixture
    torch.testing.assert_close(s.mean(0), dense.mean(), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(s.T), dense.cov(), atol=0.08, rtol=0)


def test_fit_recovers_a_mixture_in_its_subspace():
    truth = _random_pca_gmm(d=12, q=2, k=2, seed=5)
    data = truth.sample(4000, torch.Generator().manual_seed(6))
    fitted = fit_pca_gmm(data, rank=2, components=2, generator=torch.Generator().manual_seed(7))
    # the subspace is recovered (principal angles ~ 0) and the residual variance too
    overlap = torch.linalg.svdvals(fitted.basis.T @ truth.basis)
    assert float(overlap.min()) > 0.99
    assert abs(fitted.residual_var - truth.residual_var) < 0.005
    # the denoiser on fresh noisy data is as good as the true one (within 2 %)
    g = torch.Generator().manual_seed(8)
    x0 = truth.sample(2000, g)
    x = x0 + 0.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    err_true = float(((truth.denoise(x, 0.5) - x0) ** 2).mean())
    err_fit = float(((fitted.denoise(x, 0.5) - x0) ** 2).mean())
    assert err_fit < 1.02 * err_true


def test_fit_rejects_bad_sizes():
    data = torch.randn(10, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="rank"):
        fit_pca_gmm(data, rank=10, components=2, generator=torch.Generator())
    with pytest.raises(ValueError, match="components"):
        fit_pca_gmm(data, rank=2, components=11, generator=torch.Generator())
