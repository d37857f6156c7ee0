"""Super-resolution: anti-alias filtering and decimation by an integer factor.

Images are ``(B, C, H, W)`` with ``H`` and ``W`` divisible by ``factor``; observations are
``(B, C, H / factor, W / factor)``.
"""

from __future__ import annotations

import deepinv as dinv
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators.base import ParametrizedOperator, check_image, reject_parameter_kwargs
from invdiff.operators.blur import CircularBlur

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
        self.blur = None if kernel is None else CircularBlur(kernel, self.image_size)

    @property
    def kernel(self) -> Tensor | None:
        return None if self.blur is None else self.blur.kernel

    def _init_kwargs(self) -> dict:
        return {"factor": self.factor, "image_size": self.image_size, "kernel": self.kernel}

    @property
    def output_size(self) -> tuple[int, int]:
        return self.image_size[0] // self.factor, self.image_size[1] // self.factor

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        if self.blur is None:
            check_image(x, self.image_size, "image")
            return F.avg_pool2d(x, self.factor)
        return self.blur.A(x)[..., :: self.factor, :: self.factor]

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        check_image(y, self.output_size, "low-resolution image")
        f = self.factor
        if self.blur is None:
            return F.interpolate(y, scale_factor=f, mode="nearest") / f**2
        up = y.new_zeros(*y.shape[:2], *self.image_size)
        up[..., ::f, ::f] = y
        return self.blur.A_adjoint(up)

    def A_dagger(self, y: Tensor, **kwargs) -> Tensor:
        if self.blur is None:
            reject_parameter_kwargs(self, kwargs)
            return self.factor**2 * self.A_adjoint(y)
        return super().A_dagger(y, **kwargs)
