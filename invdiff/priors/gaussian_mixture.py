"""Gaussian mixtures: an exact denoiser, and exact posteriors for linear-Gaussian measurements.

For ``p(x0) = sum_k w_k N(mu_k, S_k)`` everything a sampler needs is in closed form, which makes the
mixture the ground truth every sampler is tested against:

* the noisy marginal ``p_sigma = sum_k w_k N(mu_k, S_k + sigma^2 I)`` and its denoiser
  ``E[x0 | x] = sum_k r_k(x) (mu_k + S_k (S_k + sigma^2 I)^{-1} (x - mu_k))``;
* for ``y = A x0 + s n``, the posterior, again a mixture, with component weights
  ``w_k N(y; A mu_k, A S_k A^T + s^2 I)``, means ``mu_k + S_k A^T C_k^{-1} (y - A mu_k)`` and covariances
  ``S_k - S_k A^T C_k^{-1} A S_k``, ``C_k = A S_k A^T + s^2 I``.

All arithmetic is float64; results are cast back to the input dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from invdiff.linalg import operator_matrix
from invdiff.priors.base import Denoiser, sigma_per_sample

_LOG_2PI = math.log(2 * math.pi)


def _eig_log_normal(coords: Tensor, variances: Tensor) -> Tensor:
    """``log N(0, diag(variances))`` at ``coords`` (coordinates in a covariance's eigenbasis); sums the last dim."""
    return -0.5 * ((coords**2 / variances).sum(-1) + variances.log().sum(-1) + coords.shape[-1] * _LOG_2PI)


class GaussianMixture:
    """A (batch of) Gaussian mixture(s) in ``R^d``.

    Args:
        weights: ``(..., K)``, non-negative (normalised here).
        means: ``(..., K, d)``.
        covs: ``(..., K, d, d)`` symmetric positive semi-definite.

    ``...`` are batch dimensions (one mixture per measured item, for posteriors).
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if means.dim() < 2 or weights.shape != means.shape[:-1] or covs.shape != means.shape + means.shape[-1:]:
            raise ValueError(
                f"expected weights (..., K), means (..., K, d), covs (..., K, d, d); got "
                f"{tuple(weights.shape)}, {tuple(means.shape)}, {tuple(covs.shape)}"
            )
        if bool((weights < 0).any()) or bool((weights.sum(-1) <= 0).any()):
            raise ValueError("mixture weights must be non-negative with a positive sum")
        self.log_weights = weights.log() - weights.sum(-1, keepdim=True).log()
        self.means = means
        self.covs = 0.5 * (covs + covs.transpose(-1, -2))
        evals, evecs = torch.linalg.eigh(self.covs)
        if bool((evals < -1e-9 * evals.abs().amax(-1, keepdim=True).clamp_min(1e-300)).any()):
            raise ValueError("mixture covariances must be positive semi-definite")
        #: eigendecomposition of every covariance, ``S_k = Q_k diag(lambda_k) Q_k^T``
        self.eigenvalues = evals.clamp_min(0.0)
        self.eigenvectors = evecs

    @property
    def weights(self) -> Tensor:
        return self.log_weights.exp()

    @property
    def dim(self) -> int:
        return int(self.means.shape[-1])

    @property
    def num_components(self) -> int:
        return int(self.means.shape[-2])

    def mean(self) -> Tensor:
        """``(..., d)``."""
        return (self.weights.unsqueeze(-1) * self.means).sum(-2)

    def cov(self) -> Tensor:
        """``(..., d, d)``: ``sum_k w_k (S_k + mu_k mu_k^T) - m m^T``."""
        w = self.weights[..., None, None]
        second = (w * (self.covs + self.means.unsqueeze(-1) * self.means.unsqueeze(-2))).sum(-3)
        m = self.mean()
        return second - m.unsqueeze(-1) * m.unsqueeze(-2)

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log N(x; mu_k, S_k)`` for ``x`` of shape ``(..., n, d)``: ``(..., n, K)``.

        Needs positive-definite covariances (a zero eigenvalue gives ``-inf`` off its support).
        """
        x = x.to(torch.float64)
        diff = x.unsqueeze(-2) - self.means.unsqueeze(-3)  # (..., n, K, d)
        c = torch.einsum("...kde,...nkd->...nke", self.eigenvectors, diff)
        return _eig_log_normal(c, self.eigenvalues.unsqueeze(-3))

    def log_prob(self, x: Tensor) -> Tensor:
        """Mixture log-density of ``x`` ``(..., n, d)``: ``(..., n)``."""
        return torch.logsumexp(self.component_log_prob(x) + self.log_weights.unsqueeze(-2), dim=-1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities ``p(k | x)`` for ``x`` ``(..., n, d)``: ``(..., n, K)``."""
        return torch.softmax(self.component_log_prob(x) + self.log_weights.unsqueeze(-2), dim=-1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` exact samples per mixture: ``(..., n, d)``, float64."""
        batch = self.log_weights.shape[:-1]
        nb = math.prod(batch)
        k = self.num_components
        w = self.weights.reshape(nb, k)
        comp = torch.multinomial(w, n, replacement=True, generator=generator)  # (nb, n)
        z = torch.randn(nb, n, self.dim, dtype=torch.float64, generator=generator)
        root = (self.eigenvectors * self.eigenvalues.sqrt().unsqueeze(-2)).reshape(nb, k, self.dim, self.dim)
        means = self.means.reshape(nb, k, self.dim)
        idx = torch.arange(nb).unsqueeze(-1)
        x = means[idx, comp] + torch.einsum("bnde,bne->bnd", root[idx, comp], z)
        return x.reshape(*batch, n, self.dim)


class GaussianMixturePrior(Denoiser):
    """A Gaussian-mixture prior with an exact denoiser, score, sampler and posterior.

    Args:
        weights: ``(K,)`` mixture weights (normalised here).
        means: ``(K, d)``.
        covs: ``(K, d, d)`` full or ``(K, d)`` diagonal covariances.
        event_shape: shape of one sample, with ``prod(event_shape) == d``; default ``(d,)``. Images
            are flattened in row-major order.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor,
                 event_shape: tuple[int, ...] | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.dim() == 2:
            covs = torch.diag_embed(covs)
        self.mixture = GaussianMixture(weights, means, covs)
        if self.mixture.log_weights.dim() != 1:
            raise ValueError("a prior is one mixture: weights must be (K,)")
        d = self.mixture.dim
        self.event_shape = (d,) if event_shape is None else tuple(int(s) for s in event_shape)
        if math.prod(self.event_shape) != d:
            raise ValueError(f"event_shape {self.event_shape} does not hold d = {d} values")

    @classmethod
    def grid(cls, dim: int, generator: torch.Generator, spacing: float = 8.0,
             std: float = 1.0) -> GaussianMixturePrior:
        """The 25-component benchmark mixture of MCGdiff (Cardoso et al. 2023, sec. 4.1).

        Means ``(spacing*i, spacing*j, spacing*i, spacing*j, ...)`` for ``i, j in {-2, ..., 2}``,
        covariances ``std^2 I``, weights drawn uniformly from ``generator`` and normalised.
        ``dim`` must be even.
        """
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be even and >= 2, got {dim}")
        ij = torch.tensor([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=torch.float64)
        means = spacing * ij.repeat(1, dim // 2)
        weights = torch.rand(25, dtype=torch.float64, generator=generator) + 1e-3
        covs = torch.full((25, dim), std**2, dtype=torch.float64)
        return cls(weights, means, covs)

    @property
    def dim(self) -> int:
        return self.mixture.dim

    def _flat(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"expected x of shape (B, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1).to(torch.float64)

    def smoothed(self, sigma: float) -> GaussianMixture:
        """The noisy marginal ``p_sigma`` (covariances ``S_k + sigma^2 I``)."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        m = self.mixture
        return GaussianMixture(m.weights, m.means, m.covs + sigma**2 * eye)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Exact ``E[x0 | x]`` at noise level ``sigma`` (scalar or ``(B,)``, > 0)."""
        s2 = sigma_per_sample(sigma, x) ** 2
        xf = self._flat(x)
        m = self.mixture
        diff = xf.unsqueeze(1) - m.means.unsqueeze(0)  # (B, K, d)
        c = torch.einsum("kde,bkd->bke", m.eigenvectors, diff)  # coordinates in each eigenbasis
        denom = m.eigenvalues.unsqueeze(0) + s2[:, None, None]  # eigenvalues of S_k + sigma^2 I: (B, K, d)
        r = torch.softmax(_eig_log_normal(c, denom) + m.log_weights, dim=-1)  # (B, K)
        shrunk = torch.einsum("kde,bke->bkd", m.eigenvectors, (m.eigenvalues.unsqueeze(0) / denom) * c)
        post = m.means.unsqueeze(0) + shrunk
        out = (r.unsqueeze(-1) * post).sum(1)
        return out.reshape(x.shape).to(x.dtype)

    def log_prob(self, x: Tensor, sigma: float = 0.0) -> Tensor:
        """``log p_sigma(x)`` per sample ``(B,)``; ``sigma = 0`` is the prior itself."""
        mix = self.smoothed(sigma) if sigma > 0 else self.mixture
        return mix.log_prob(self._flat(x).unsqueeze(-2)).squeeze(-1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` exact prior samples, ``(n, *event_shape)``, float64."""
        return self.mixture.sample(n, generator).reshape(n, *self.event_shape)

    def posterior(self, matrix: Tensor, y: Tensor, noise_sigma: float | Tensor) -> GaussianMixture:
        """Exact posterior for ``y = matrix @ x0 + noise_sigma * n``, one mixture per row of ``y``.

        Args:
            matrix: ``(m, d)``.
            y: ``(B, m)``.
            noise_sigma: scalar or ``(B,)``, > 0.
        Returns:
            a :class:`GaussianMixture` with batch shape ``(B,)``.
        """
        a = torch.as_tensor(matrix, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64)
        if a.dim() != 2 or a.shape[1] != self.dim or y.dim() != 2 or y.shape[1] != a.shape[0]:
            raise ValueError(f"expected matrix (m, {self.dim}) and y (B, m); got {tuple(a.shape)}, {tuple(y.shape)}")
        s2 = sigma_per_sample(noise_sigma, y) ** 2
        m = self.mixture
        a_s = torch.einsum("md,kde->kme", a, m.covs)  # A S_k: (K, m, d)
        c = torch.einsum("kme,ne->kmn", a_s, a) + s2[:, None, None, None] * torch.eye(a.shape[0], dtype=torch.float64)
        chol = torch.linalg.cholesky(c)  # (B, K, m, m)
        resid = y[:, None, :] - torch.einsum("md,kd->km", a, m.means).unsqueeze(0)  # (B, K, m)
        sol = torch.cholesky_solve(resid.unsqueeze(-1), chol).squeeze(-1)
        log_n = -0.5 * ((resid * sol).sum(-1) + 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
                        + a.shape[0] * _LOG_2PI)
        log_w = m.log_weights + log_n
        means = m.means + torch.einsum("kme,bkm->bke", a_s, sol)
        gain = torch.cholesky_solve(a_s.expand(y.shape[0], *a_s.shape), chol)  # C^-1 A S: (B, K, m, d)
        covs = m.covs - torch.einsum("kme,bkmf->bkef", a_s, gain)
        return GaussianMixture(torch.softmax(log_w, dim=-1), means, covs)

    def exact_posterior(self, measurement) -> GaussianMixture:
        """Exact posterior for a linear :class:`~invdiff.measurement.Measurement`.

        The operator's dense matrix is built by applying it to the standard basis, so this is
        meant for small problems, and the operator must be shared across the batch.
        """
        if not measurement.is_linear:
            raise ValueError("the exact mixture posterior needs a linear operator")
        y = measurement.y
        a = operator_matrix(measurement.forward, self.event_shape, dtype=y.dtype, device=y.device)
        return self.posterior(a, y.reshape(y.shape[0], -1), measurement.sigma)
