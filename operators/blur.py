"""Blur: circular convolution (FFT, decomposable) and non-circular convolution (valid or zero padding).

Images are ``(B, C, H, W)`` real. Kernels follow :mod:`kernels`: ``(B or 1, C or 1, k, k)``, odd ``k``;
a per-sample kernel blurs only its own sample.
"""

from __future__ import annotations

from typing import Literal

import deepinv as dinv
import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators.base import (ParametrizedOperator, check_batch, check_image, complex_dtype_of,
                                    reject_parameter_kwargs)
from invdiff.operators.kernels import as_kernel, kernel_spectrum

__all__ = ["Blur", "CircularBlur"]


class CircularBlur(ParametrizedOperator, dinv.physics.DecomposablePhysics):
    """``y = k (*) x`` with periodic boundaries: ``A = F^H diag(K) F`` with the unitary 2-D DFT ``F``.

    The singular values are the (complex) transfer function ``K`` (``mask``), so the pseudo-inverse and
    proximal maps are closed form. Operator norm: ``max |K|`` (1 for a non-negative kernel summing to 1).

    Args:
        kernel: see :mod:`kernels`.
        image_size: ``(H, W)``.
    """

    _parameter_names = ("kernel",)

    def __init__(self, kernel: Tensor, image_size: tuple[int, int]):
        kernel = as_kernel(kernel)
        self.image_size = tuple(int(s) for s in image_size)
        super().__init__(mask=kernel_spectrum(kernel, self.image_size))
        self.register_buffer("kernel", kernel)
        # Half spectrum for the fast A / A^T on real images (the full one is the SVD's singular values).
        self.register_buffer("half_spectrum", self.mask[..., : self.image_size[1] // 2 + 1].contiguous())

    def _init_kwargs(self) -> dict:
        return {"kernel": self.kernel, "image_size": self.image_size}

    def _spectrum(self, x: Tensor, what: str, half: bool = False) -> Tensor:
        check_image(x, self.image_size, what)
        check_batch(self.mask, x.shape[0], "kernel", self)
        if self.mask.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"kernel has {self.mask.shape[1]} channels but the {what} has {x.shape[1]}")
        s = self.half_spectrum if half else self.mask
        return s.to(complex_dtype_of(x.dtype))

    def _rfft_filter(self, x: Tensor, what: str, conj: bool) -> Tensor:
        s = self._spectrum(x, what, half=True)
        return torch.fft.irfft2((s.conj() if conj else s) * torch.fft.rfft2(x), s=self.image_size)

    def V_adjoint(self, x: Tensor) -> Tensor:
        return torch.fft.fft2(x, norm="ortho")

    def V(self, c: Tensor) -> Tensor:
        return torch.fft.ifft2(c, norm="ortho").real

    U, U_adjoint = V, V_adjoint

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return self._rfft_filter(x, "image", conj=False)

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return self._rfft_filter(y, "blurred image", conj=True)

    def A_dagger(self, y: Tensor, rtol: float = 1e-6, **kwargs) -> Tensor:
        """Minimum-norm least squares, discarding frequencies with ``|K| <= rtol max |K|``."""
        reject_parameter_kwargs(self, kwargs)
        s = self._spectrum(y, "blurred image")
        mag2 = (s.conj() * s).real
        keep = mag2 > (rtol**2) * mag2.amax(dim=(-2, -1), keepdim=True)
        inv = torch.where(keep, s.conj() / torch.where(keep, mag2, torch.ones_like(mag2)), torch.zeros_like(s))
        return self.V(inv * self.V_adjoint(y))


class Blur(ParametrizedOperator, dinv.physics.LinearPhysics):
    """Non-circular blur ``y = k * x``.

    ``padding="valid"``: only outputs whose support lies inside the image, ``(H - k + 1, W - k + 1)``
    (no boundary assumption: the physically faithful model). ``padding="zeros"``: same-size output of
    the zero-extended image. The adjoint is the transposed convolution with the same kernel.
    """

    _parameter_names = ("kernel",)

    def __init__(self, kernel: Tensor, image_size: tuple[int, int], padding: Literal["valid", "zeros"] = "valid"):
        super().__init__()
        if padding not in ("valid", "zeros"):
            raise ValueError(f"padding must be 'valid' or 'zeros', got {padding!r}")
        kernel = as_kernel(kernel)
        self.image_size = tuple(int(s) for s in image_size)
        k = kernel.shape[-1]
        if k > min(self.image_size):
            raise ValueError(f"a {k}x{k} kernel does not fit a {self.image_size} image")
        self.padding = padding
        self._pad = 0 if padding == "valid" else k // 2
        self.register_buffer("kernel", kernel)

    def _init_kwargs(self) -> dict:
        return {"kernel": self.kernel, "image_size": self.image_size, "padding": self.padding}

    @property
    def output_size(self) -> tuple[int, int]:
        k = self.kernel.shape[-1]
        h, w = self.image_size
        return (h - k + 1, w - k + 1) if self.padding == "valid" else (h, w)

    def _weight(self, t: Tensor, size: tuple[int, int], what: str) -> Tensor:
        check_image(t, size, what)
        check_batch(self.kernel, t.shape[0], "kernel", self)
        b, c = t.shape[:2]
        if self.kernel.shape[1] not in (1, c):
            raise ValueError(f"kernel has {self.kernel.shape[1]} channels but the {what} has {c}")
        weight = self.kernel.flip(-2, -1).to(t.dtype).expand(b, c, -1, -1)
        return weight.reshape(b * c, 1, *weight.shape[-2:])

    def _conv(self, t: Tensor, transpose: bool, size: tuple[int, int], what: str) -> Tensor:
        # One group per (sample, channel) in a batch of one: 4-5x faster on CPU than groups=C over a batch.
        weight = self._weight(t, size, what)
        b, c = t.shape[:2]
        fn = F.conv_transpose2d if transpose else F.conv2d
        out = fn(t.reshape(1, b * c, *t.shape[-2:]), weight, padding=self._pad, groups=b * c)
        return out.reshape(b, c, *out.shape[-2:])

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return self._conv(x, False, self.image_size, "image")

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return self._conv(y, True, self.output_size, "blurred image")
