"""A Gaussian mixture fitted in a PCA subspace: a fast analytic image prior with an exact score.

The density is a proper Gaussian mixture in the full space ``R^d``:

    x0 = mu + U a + r,   a ~ sum_k w_k N(m_k, C_k)  (in R^q),   r ~ N(0, tau^2 (I - U U^T)),

with ``U`` ``(d, q)`` orthonormal principal directions of the training data, so component ``k`` has
covariance ``U C_k U^T + tau^2 (I - U U^T)``. The subspace and its complement are orthogonal and
the complement is the same for every component, so the exact denoiser splits:

    E[x0 | x] = mu + U E_q[a | U^T (x - mu)] + tau^2 / (tau^2 + sigma^2) (I - U U^T)(x - mu),

where ``E_q`` is the exact mixture denoiser in ``q`` dimensions. Cost ``O(d q)`` per image.
:func:`fit_pca_gmm` fits ``mu, U, tau^2`` by PCA and the mixture by EM.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from invdiff.linalg import batch_view
from invdiff.priors.base import Denoiser, sigma_per_sample
from invdiff.priors.gaussian_mixture import GaussianMixturePrior

__all__ = ["PCAGaussianMixturePrior", "fit_pca_gmm"]


class PCAGaussianMixturePrior(Denoiser):
    """The mixture of the module docstring.

    Args:
        mean: ``(d,)``.
        basis: ``(d, q)`` with orthonormal columns.
        subspace: the mixture of the coefficients ``a``, a ``q``-dimensional prior.
        residual_var: ``tau^2 > 0``, the variance of each direction outside the subspace.
        event_shape: shape of one image, ``prod = d``.
    """

    def __init__(self, mean: Tensor, basis: Tensor, subspace: GaussianMixturePrior, residual_var: float,
                 event_shape: tuple[int, ...], data_range: tuple[float, float] | None = None):
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.basis = torch.as_tensor(basis, dtype=torch.float64)
        d, q = self.basis.shape
        if self.mean.shape != (d,) or subspace.dim != q or math.prod(event_shape) != d:
            raise ValueError(f"mean {tuple(self.mean.shape)}, basis {(d, q)}, subspace dim {subspace.dim} and "
                             f"event_shape {tuple(event_shape)} do not agree")
        gram = self.basis.T @ self.basis
        if not torch.allclose(gram, torch.eye(q, dtype=torch.float64), atol=1e-8):
            raise ValueError("basis columns must be orthonormal")
        if not residual_var > 0:
            raise ValueError(f"residual_var must be > 0, got {residual_var}")
        self.subspace, self.residual_var = subspace, float(residual_var)
        self.event_shape, self.data_range = tuple(event_shape), data_range

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"expected (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        s = sigma_per_sample(sigma, x)
        centred = x.reshape(x.shape[0], -1).to(torch.float64) - self.mean
        a = centred @ self.basis
        residual = centred - a @ self.basis.T
        a0 = self.subspace.denoise(a, s)
        shrink = self.residual_var / (self.residual_var + s**2)
        out = self.mean + a0 @ self.basis.T + batch_view(shrink, residual) * residual
        return out.reshape(x.shape).to(x.dtype)

    def full_mixture(self) -> GaussianMixturePrior:
        """The same prior as a dense ``d``-dimensional mixture (for checks on small ``d``)."""
        m = self.subspace.mixture
        u = self.basis
        complement = self.residual_var * (torch.eye(self.dim, dtype=torch.float64) - u @ u.T)
        covs = torch.einsum("dq,kqr,er->kde", u, m.covs, u) + complement
        return GaussianMixturePrior(m.weights, self.mean + m.means @ u.T, covs, self.event_shape)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` exact samples ``(n, *event_shape)``, float64."""
        a = self.subspace.sample(n, generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        r = math.sqrt(self.residual_var) * (z - (z @ self.basis) @ self.basis.T)
        return (self.mean + a @ self.basis.T + r).reshape(n, *self.event_shape)


def _kmeans_pp(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    centres = [x[torch.randint(0, len(x), (1,), generator=generator)].squeeze(0)]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centres)).amin(1) ** 2
        centres.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=generator)].squeeze(0))
    return torch.stack(centres)


def fit_pca_gmm(images: Tensor, rank: int, components: int, generator: torch.Generator, *,
                iterations: int = 200, reg: float = 1e-6, tol: float = 1e-8,
                data_range: tuple[float, float] | None = None) -> PCAGaussianMixturePrior:
    """Fit :class:`PCAGaussianMixturePrior` to ``images`` ``(N, *event_shape)``.

    PCA by SVD of the centred data keeps ``rank`` directions; ``tau^2`` is the mean variance of the
    discarded ones. The coefficient mixture (full covariances, ``reg`` times the mean PCA variance
    added to each diagonal) is fitted by EM from a k-means++ start drawn from ``generator``, until the
    mean log-likelihood improves by less than ``tol``.
    """
    n = images.shape[0]
    flat = images.reshape(n, -1).to(torch.float64)
    d = flat.shape[1]
    if not 1 <= rank < min(n, d):
        raise ValueError(f"rank must be in [1, {min(n, d) - 1}] for {n} images of dimension {d}, got {rank}")
    if not 1 <= components <= n:
        raise ValueError(f"components must be in [1, {n}], got {components}")
    mean = flat.mean(0)
    _, svals, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    basis = vh[:rank].T.contiguous()
    residual_var = float((svals[rank:] ** 2).sum() / (n * (d - rank)))
    a = (flat - mean) @ basis
    floor = reg * float(a.var(0).mean())
    means = _kmeans_pp(a, components, generator)
    covs = torch.eye(rank, dtype=torch.float64).expand(components, rank, rank) * float(a.var(0).mean())
    weights = torch.full((components,), 1.0 / components, dtype=torch.float64)
    previous = -math.inf
    eye = torch.eye(rank, dtype=torch.float64)
    for _ in range(iterations):
        mix = GaussianMixturePrior(weights, means, covs).mixture
        log_r = mix.component_log_prob(a) + mix.log_weights  # (N, K)
        ll = float(torch.logsumexp(log_r, 1).mean())
        resp = torch.softmax(log_r, 1)
        nk = resp.sum(0).clamp_min(1e-10)
        weights = nk / n
        means = (resp.T @ a) / nk[:, None]
        diff = a.unsqueeze(1) - means.unsqueeze(0)  # (N, K, q)
        covs = torch.einsum("nk,nkq,nkr->kqr", resp, diff, diff) / nk[:, None, None] + floor * eye
        if ll - previous < tol:
            break
        previous = ll
    subspace = GaussianMixturePrior(weights, means, covs)
    return PCAGaussianMixturePrior(mean, basis, subspace, residual_var, tuple(images.shape[1:]), data_range)
