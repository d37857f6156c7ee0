"""Super-resolution: anti-alias filtering and decimation by an integer factor.

Images are ``(B, C, H, W)`` with ``H`` and ``W`` divisible by ``factor``; observations are
``(B, C, H / factor, W / factor)``.
"""

from __future__ import annotations

import deepinv as dinv
import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators.base import (ParametrizedOperator, check_batch, check_image, complex_dtype_of,
                                    reject_parameter_kwargs)
from invdiff.operators.kernels import as_kernel, kernel_spectrum

__all__ = ["Downsampling"]


class Downsampling(ParametrizedOperator, dinv.physics.LinearPhysics):
    """``y = S (k (*) x)``: circular convolution with ``k``, then every ``factor``-th pixel from ``(0, 0)``.

    With ``kernel=None`` the filter is the ``factor x factor`` box aligned with the output pixels, i.e.
    ``y`` is the block average (``avg_pool2d``); then ``A A^T = I / factor^2``, the operator norm is
    ``1 / factor`` and ``A^+ = factor^2 A^T`` (used by ``A_dagger``). Other kernels (``(B or 1, C or 1, k,
    k)``, odd ``k``) get deepinv's conjugate-gradient ``A_dagger``.
    """

    _parameter_names = ("kernel",)

    def __init__(self, factor: int, image_size: tuple[int, int], kernel: Tensor | None = None):
        super().__init__()
        if not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor must be an int >= 2, got {factor!r}")
        self.image_size = tuple(int(s) for s in image_size)
        if any(s % factor for s in self.image_size):
            raise ValueError(f"image size {self.image_size} is not divisible by the factor {factor}")
        self.factor = factor
        if kernel is None:
            self.kernel = None
        else:
            kernel = as_kernel(kernel)
            self.register_buffer("kernel", kernel)
            self.register_buffer("spectrum", kernel_spectrum(kernel, self.image_size))

    def _init_kwargs(self) -> dict:
        return {"factor": self.factor, "image_size": self.image_size, "kernel": self.kernel}

    @property
    def output_size(self) -> tuple[int, int]:
        return self.image_size[0] // self.factor, self.image_size[1] // self.factor

    def _check(self, t: Tensor, size: tuple[int, int], what: str) -> None:
        check_image(t, size, what)
        if self.kernel is not None:
            check_batch(self.kernel, t.shape[0], "kernel", self)

    def _filter(self, x: Tensor, adjoint: bool) -> Tensor:
        s = self.spectrum.to(complex_dtype_of(x.dtype))
        return torch.fft.ifft2((s.conj() if adjoint else s) * torch.fft.fft2(x)).real

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        self._check(x, self.image_size, "image")
        if self.kernel is None:
            return F.avg_pool2d(x, self.factor)
        return self._filter(x, adjoint=False)[..., :: self.factor, :: self.factor]

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        self._check(y, self.output_size, "low-resolution image")
        f = self.factor
        if self.kernel is None:
            return F.interpolate(y, scale_factor=f, mode="nearest") / f**2
        up = y.new_zeros(*y.shape[:2], *self.image_size)
        up[..., ::f, ::f] = y
        return self._filter(up, adjoint=True)

    def A_dagger(self, y: Tensor, **kwargs) -> Tensor:
        if self.kernel is None:
            reject_parameter_kwargs(self, kwargs)
            return self.factor**2 * self.A_adjoint(y)
        return super().A_dagger(y, **kwargs)
