"""3-D Cartesian multi-coil MRI: a volume's k-space sampled over two phase-encode axes.

A 3-D acquisition phase-encodes the slice axis too: each coil's k-space is the 3-D Fourier transform of
its coil images, the readout ``kx`` (the rows, as in fastMRI) is sampled in full, and a 2-D mask over
``(kz, ky)`` picks which phase-encode lines are acquired::

    y_c = M F_z F_2 S_c P x        M[kz, ky]: 0/1, the same on every readout row

with ``F_2`` fastMRI's centred unitary 2-D FFT of each slice (:func:`~invdiff.operators.fft.fft2c`),
``F_z`` the centred unitary FFT along the slices (DC at plane ``S // 2``), ``S_c`` the coil maps and
``P`` fastMRI's readout padding (:class:`~invdiff.operators.MultiCoilMRI`).

**The batch is the volume.** Item ``b`` of ``x`` is slice ``b`` (in order), item ``b`` of ``y`` is the
``kz`` plane ``b``: unlike every other operator, items are coupled, so only the volume samplers
(:mod:`invdiff.samplers.volume`, which take inner products over the whole volume) solve it correctly;
``couples_batch`` says so. With ``particles`` ``N`` (after :meth:`expand_batch`) the batch is
``S * N`` item-major and particle ``n`` of every slice is one volume.
"""

from __future__ import annotations

import deepinv as dinv
import torch
from torch import Tensor

from invdiff.operators.base import as_weights, reject_parameter_kwargs
from invdiff.operators.fft import from_complex, to_complex
from invdiff.operators.mri import MultiCoilMRI

__all__ = ["Cartesian3DMRI", "fftc", "ifftc"]


def fftc(z: Tensor, dim: int) -> Tensor:
    """Centred unitary 1-D FFT of a complex tensor along ``dim`` (DC at index ``size // 2``)."""
    return torch.fft.fftshift(torch.fft.fft(torch.fft.ifftshift(z, dim=dim), dim=dim, norm="ortho"), dim=dim)


def ifftc(k: Tensor, dim: int) -> Tensor:
    """Inverse of :func:`fftc`."""
    return torch.fft.fftshift(torch.fft.ifft(torch.fft.ifftshift(k, dim=dim), dim=dim, norm="ortho"), dim=dim)


class Cartesian3DMRI(dinv.physics.LinearPhysics):
    """The operator of the module docstring.

    Args:
        mask: 0/1 over ``(kz, ky)``, ``(S, W)``: ``S`` slices (``kz`` planes), ``W`` phase-encode columns.
        coil_maps: complex ``(S, C, H, W)`` (one set per slice) or ``(C, H, W)`` shared, on the k-space grid.
        image_size: ``(h, w)`` of each slice's unknown image; defaults to the grid ``(H, W)``.
        particles: ``N``, volumes in the batch (``S * N`` items, item-major); set by :meth:`expand_batch`.

    ``x``: ``(S * N, 2, h, w)``; ``y``: ``(S * N, 2, C, H, W)`` (the layout of
    :class:`~invdiff.operators.MultiCoilMRI`), item ``b * N + n`` holding plane ``kz = b`` of volume ``n``.
    """

    couples_batch = True

    def __init__(self, mask: Tensor, coil_maps: Tensor, image_size: tuple[int, int] | None = None,
                 particles: int = 1):
        super().__init__()
        mask = as_weights(mask)
        if mask.dim() != 2:
            raise ValueError(f"mask must be (S, W) over (kz, ky), got shape {tuple(mask.shape)}")
        coil_maps = torch.as_tensor(coil_maps)
        if coil_maps.dim() == 3:
            coil_maps = coil_maps.unsqueeze(0)
        slices, width = mask.shape
        if int(particles) < 1:
            raise ValueError(f"particles must be >= 1, got {particles}")
        if coil_maps.dim() == 4 and coil_maps.shape[0] not in (1, slices * int(particles)):
            raise ValueError(f"coil_maps has {coil_maps.shape[0]} sets for a mask of {slices} slices and "
                             f"{particles} particle(s): pass one set per slice ({slices}) or one shared")
        self.slice_op = MultiCoilMRI(torch.ones(width), coil_maps, image_size)  # F_2 S_c P, every line
        if self.slice_op.kspace_size[1] != width:
            raise ValueError(f"mask has {width} columns but the coil maps' grid is {self.slice_op.kspace_size}")
        self.register_buffer("mask", mask.contiguous())
        self.particles = int(particles)
        self.image_size, self.kspace_size = self.slice_op.image_size, self.slice_op.kspace_size
        self.num_coils = self.slice_op.num_coils

    @property
    def num_slices(self) -> int:
        return int(self.mask.shape[0])

    def expand_batch(self, n: int) -> Cartesian3DMRI:
        """The operator for ``n`` particles per slice: ``S * N * n`` items, item-major."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        maps = self.slice_op.coil_maps
        maps = maps.repeat_interleave(n, dim=0) if maps.shape[0] > 1 else maps
        return Cartesian3DMRI(self.mask, maps, self.image_size, self.particles * n)

    def support(self) -> Tensor:
        """Bool ``(S * N or 1, h, w)``: pixels some coil sees (:meth:`MultiCoilMRI.support`)."""
        return self.slice_op.support()

    def _volume(self, t: Tensor, what: str) -> None:
        if t.shape[0] != self.num_slices * self.particles:
            raise ValueError(f"{what} has {t.shape[0]} items but this 3-D acquisition holds {self.num_slices} "
                             f"slices x {self.particles} particle(s) (the batch is the volume, item-major)")

    def _planes(self, k: Tensor, inverse: bool) -> Tensor:
        """Complex ``(S * N, C, H, W)``: the FFT along the slices (or its inverse after masking)."""
        s, n = self.num_slices, self.particles
        k = k.reshape(s, n, *k.shape[1:])
        weights = self.mask.to(device=k.device, dtype=k.real.dtype)[:, None, None, None, :]
        k = ifftc(k * weights, 0) if inverse else fftc(k, 0) * weights
        return k.reshape(s * n, *k.shape[2:])

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        self._volume(x, "image")
        return from_complex(self._planes(to_complex(self.slice_op.A(x)), inverse=False))

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        self._volume(y, "k-space")
        return self.slice_op.A_adjoint(from_complex(self._planes(to_complex(y), inverse=True)))
