"""Cartesian MRI: single-coil and multi-coil (SENSE) with fastMRI's centred orthonormal FFT.

Layouts (DESIGN.md): images are ``(B, 2, H, W)`` (re, im); single-coil k-space ``(B, 2, H, W)``;
multi-coil k-space ``(B, 2, C, H, W)``. Unsampled k-space entries are zero. The k-space mask
selects entries of the centred k-space; a Cartesian mask selects phase-encode columns (last dim).

Masks may be given as ``(W,)`` columns, ``(H, W)``, or per sample as ``(B, 1, W)`` columns or
``(B, H, W)``; :class:`~invdiff.operators.masks.CartesianMask` is accepted too. They are stored as
``(B or 1, 1, H, W)``.
"""

from __future__ import annotations

import deepinv as dinv
import torch
from torch import Tensor

from invdiff.operators.base import (ParametrizedOperator, as_weights, check_batch, check_shape, complex_dtype_of,
                                    divide_where_positive, reject_parameter_kwargs)
from invdiff.operators.fft import centred_modulation, fft2c, from_complex, ifft2c, rss, to_complex
from invdiff.operators.masks import CartesianMask

__all__ = ["MultiCoilMRI", "SingleCoilMRI", "kspace_mask"]


def kspace_mask(mask: Tensor | CartesianMask, shape: tuple[int, int] | None) -> Tensor:
    """Normalise a mask to ``(B or 1, 1, H, W)`` real; ``shape=(H, W)`` is needed for column masks."""
    if isinstance(mask, CartesianMask):
        mask = mask.columns
    mask = as_weights(mask)
    h, w = shape if shape is not None else (None, None)
    if mask.dim() == 1:
        cols = mask.shape[0]
        if h is None:
            raise ValueError(f"a column mask ({cols},) needs the image size (H, W)")
        mask = mask.reshape(1, 1, 1, cols)
    elif mask.dim() == 2:
        mask = mask.reshape(1, 1, *mask.shape)
    elif mask.dim() == 3:
        mask = mask.unsqueeze(1)
    elif mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (W,), (H, W), (B, 1, W), (B, H, W) or (B, 1, H, W), got {tuple(mask.shape)}")
    if w is not None and mask.shape[-1] != w:
        raise ValueError(f"mask has {mask.shape[-1]} columns but the image is {w} wide (image size {h}x{w})")
    if h is not None and mask.shape[-2] not in (1, h):
        raise ValueError(f"mask has {mask.shape[-2]} rows but the image has {h} (image size {h}x{w})")
    if h is not None:
        mask = mask.expand(-1, -1, h, -1)
    return mask.contiguous()


class SingleCoilMRI(ParametrizedOperator, dinv.physics.DecomposablePhysics):
    """``y = M F x``: centred unitary FFT ``F`` followed by the k-space mask ``M``.

    A :class:`~deepinv.physics.DecomposablePhysics` with ``U = I``, singular values ``M`` and
    ``V^T = F``, so the pseudo-inverse is zero-filling and proximal maps are closed form.

    Args:
        mask: k-space mask, see the module docstring.
        image_size: ``(H, W)``; needed only for a ``(W,)`` column mask.
    """

    _parameter_names = ("mask",)

    def __init__(self, mask: Tensor | CartesianMask, image_size: tuple[int, int] | None = None):
        if image_size is None and not (isinstance(mask, CartesianMask) or torch.as_tensor(mask).dim() == 1):
            image_size = tuple(torch.as_tensor(mask).shape[-2:])
        stored = kspace_mask(mask, image_size)
        super().__init__(mask=stored)
        self.image_size = tuple(int(s) for s in stored.shape[-2:])

    def _init_kwargs(self) -> dict:
        return {"mask": self.mask, "image_size": self.image_size}

    def with_mask(self, mask: Tensor | CartesianMask) -> SingleCoilMRI:
        """The same geometry under another mask."""
        return SingleCoilMRI(mask, self.image_size)

    def candidate_grid(self) -> tuple[str, tuple[int, int]]:
        """Acquirable candidates: the k-space columns (phase-encode lines) of the ``(H, W)`` grid."""
        return "columns", tuple(self.image_size)

    def _check(self, x: Tensor, what: str) -> Tensor:
        check_shape(x, (2, *self.image_size), what, "(re, im) on dim 1")
        check_batch(self.mask, x.shape[0], "mask", self)
        return self.mask.to(x.dtype)

    def V_adjoint(self, x: Tensor) -> Tensor:
        return from_complex(fft2c(to_complex(x)))

    def V(self, k: Tensor) -> Tensor:
        return from_complex(ifft2c(to_complex(k)))

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return self._check(x, "image") * self.V_adjoint(x)

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return self.V(self._check(y, "k-space") * y)

    def A_dagger(self, y: Tensor, **kwargs) -> Tensor:
        """Zero-filled reconstruction ``F^H (M^+ y)``, exact pseudo-inverse for any non-negative mask."""
        reject_parameter_kwargs(self, kwargs)
        return self.V(divide_where_positive(y, self._check(y, "k-space")))


class MultiCoilMRI(ParametrizedOperator, dinv.physics.LinearPhysics):
    """SENSE: ``y_c = M F (S_c x)`` for coils ``c = 1..C``.

    ``A^T`` is the coil-combined adjoint ``sum_c conj(S_c) F^H M y_c``. With coil maps normalised to
    ``sum_c |S_c|^2 = 1`` and a full mask, ``A^T A = I``; in general the operator norm is
    ``max over pixels of sqrt(sum_c |S_c|^2)`` when the mask is full.

    With ``image_size=(h, w)`` smaller than the coil maps' grid ``(H, W)`` (fastMRI's readout
    oversampling: k-space ``640 x 368`` for a ``320 x 320`` image), ``x`` is zero-padded to the grid
    before the coils, ``y_c = M F S_c P x``, and ``A^T`` crops back: ``P^T`` is fastMRI's centre crop
    (offset ``(H - h) // 2``), so ``A^T y`` on fully sampled k-space is the coil-combined version of
    fastMRI's cropped image.

    Args:
        mask: k-space mask shared by the coils, see the module docstring.
        coil_maps: complex sensitivities ``(C, H, W)`` or per sample ``(B, C, H, W)``, on the k-space grid.
        image_size: ``(h, w)`` of the unknown image; defaults to the grid ``(H, W)``.
    """

    _parameter_names = ("mask", "coil_maps")

    def __init__(self, mask: Tensor | CartesianMask, coil_maps: Tensor, image_size: tuple[int, int] | None = None):
        super().__init__()
        coil_maps = torch.as_tensor(coil_maps)
        if not coil_maps.is_complex():
            raise ValueError(f"coil_maps must be complex (C, H, W) or (B, C, H, W), got {coil_maps.dtype} "
                             f"of shape {tuple(coil_maps.shape)}; build them with torch.complex(re, im)")
        if coil_maps.dim() == 3:
            coil_maps = coil_maps.unsqueeze(0)
        if coil_maps.dim() != 4:
            raise ValueError(f"coil_maps must be (C, H, W) or (B, C, H, W), got shape {tuple(coil_maps.shape)}")
        if not bool(torch.isfinite(coil_maps).all()):
            bad = int((~torch.isfinite(coil_maps)).sum())
            raise ValueError(f"coil_maps contain {bad} NaN or Inf entries (shape {tuple(coil_maps.shape)})")
        self.kspace_size = tuple(int(s) for s in coil_maps.shape[-2:])
        self.image_size = self.kspace_size if image_size is None else tuple(int(s) for s in image_size)
        if len(self.image_size) != 2 or not all(0 < i <= k for i, k in zip(self.image_size, self.kspace_size)):
            raise ValueError(f"image_size {image_size} must fit inside the coil maps' grid {self.kspace_size}")
        self.num_coils = int(coil_maps.shape[1])
        self.register_buffer("coil_maps", coil_maps.contiguous())
        self.register_buffer("mask", kspace_mask(mask, self.kspace_size))

    def _init_kwargs(self) -> dict:
        return {"mask": self.mask, "coil_maps": self.coil_maps, "image_size": self.image_size}

    def with_mask(self, mask: Tensor | CartesianMask) -> MultiCoilMRI:
        """The same coils and image size under another mask."""
        return MultiCoilMRI(mask, self.coil_maps, self.image_size)

    def candidate_grid(self) -> tuple[str, tuple[int, int]]:
        """Acquirable candidates: the k-space columns (phase-encode lines, all coils) of the k-space grid."""
        return "columns", tuple(self.kspace_size)

    def support(self) -> Tensor:
        """Bool ``(B or 1, h, w)``: image pixels some coil sees (``sum_c |S_c|^2 > 0``). The image outside it is
        in the null space of ``A`` (ESPIRiT maps vanish outside the object): no data determine it."""
        energy = (self.coil_maps.abs() ** 2).sum(1)
        return self._crop(energy) > 0

    def row_gram_shape(self) -> tuple[int, int, int]:
        """``(Bm, h, w)``: :meth:`row_gram_blocks` returns ``Bm`` sets of ``h`` blocks of ``w x w``."""
        return max(self.mask.shape[0], self.coil_maps.shape[0]), *self.image_size

    def row_gram_blocks(self, rows: slice | None = None) -> Tensor:
        """``A^T A`` as one Hermitian ``w x w`` block per image row, complex128 ``(B or 1, h, w, w)``;
        ``rows`` (a slice of image rows) builds only those blocks, ``(B or 1, len(rows), w, w)``.

        When the mask is the same on every readout row (Cartesian phase-encode masks), the readout FFT
        cancels in ``F^H M F`` and ``A^T A = P^T (sum_c S_c^H G S_c) P`` with ``G = F_W^H diag(m) F_W``
        acting along each row: image rows do not mix. Block ``[b, i]`` is
        ``sum_c diag(conj(S_c[i])) G diag(S_c[i])`` on row ``i`` of the image.

        Raises:
            ValueError: the mask differs between readout rows (a 2-D sampling pattern).
        """
        mask = self.mask
        if not bool((mask == mask[..., :1, :]).all()):
            raise ValueError("row_gram_blocks needs a mask that is the same on every readout row "
                             f"(Cartesian columns); this mask of shape {tuple(mask.shape)} varies along the readout")
        width = self.kspace_size[1]
        eye = torch.eye(width, dtype=torch.complex128, device=mask.device)
        # F[k, j] = (F_W e_j)[k]: the centred unitary 1-D DFT as a matrix
        fourier = torch.fft.fftshift(torch.fft.fft(torch.fft.ifftshift(eye, dim=0), dim=0, norm="ortho"), dim=0)
        columns = mask[:, 0, 0, :].to(torch.float64)
        gram = fourier.conj().T @ (columns[:, :, None] * fourier)  # (B or 1, W, W)
        crop_rows, cols = self._crop_slices()
        gram = gram[:, cols, cols]
        maps = self.coil_maps[:, :, crop_rows, cols][:, :, rows or slice(None)].to(torch.complex128)  # (B or 1, C, h, w)
        batch = max(gram.shape[0], maps.shape[0])
        gram = gram.expand(batch, -1, -1)
        blocks = maps.new_zeros(batch, maps.shape[2], gram.shape[-1], gram.shape[-1])
        for c in range(self.num_coils):  # C terms of (B, h, w, w): one coil's temporary at a time
            s = maps[:, c].expand(batch, -1, -1)
            blocks += s.conj()[:, :, :, None] * gram[:, None] * s[:, :, None, :]
        return blocks

    def _crop_slices(self) -> tuple[slice, slice]:
        (h, w), (hh, ww) = self.image_size, self.kspace_size
        top, left = (hh - h) // 2, (ww - w) // 2
        return slice(top, top + h), slice(left, left + w)

    def _pad(self, image: Tensor) -> Tensor:
        """Complex ``(B, h, w)`` -> ``(B, H, W)``, zero outside fastMRI's centre crop."""
        if self.image_size == self.kspace_size:
            return image
        out = image.new_zeros(image.shape[0], *self.kspace_size)
        rows, cols = self._crop_slices()
        out[:, rows, cols] = image
        return out

    def _crop(self, image: Tensor) -> Tensor:
        rows, cols = self._crop_slices()
        return image[..., rows, cols]

    def _params(self, t: Tensor, tail: tuple[int, ...], what: str) -> tuple[Tensor, Tensor]:
        check_shape(t, tail, what, "(re, im) on dim 1")
        check_batch(self.mask, t.shape[0], "mask", self)
        check_batch(self.coil_maps, t.shape[0], "coil map set", self)
        return self.mask.to(t.dtype), self.coil_maps.to(complex_dtype_of(t.dtype))

    # On an even grid the centred FFT is ``fft2c(z) = sigma c * fft2(c * z)`` (:mod:`invdiff.operators.fft`,
    # ``c`` the checkerboard, ``sigma c`` = ``signed``); ``c`` commutes with the coil maps, so it is applied
    # to the one image before the coils and after their sum, and ``signed`` is folded into the mask: the
    # coil stack sees one real product per FFT instead of two shifts and two modulations.
    def _modulation(self, like: Tensor) -> tuple[Tensor, Tensor] | None:
        return centred_modulation(*self.kspace_size, like.device, like.dtype)

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        m, s = self._params(x, (2, *self.image_size), "image")
        z = self._pad(to_complex(x)).unsqueeze(1)
        mod = self._modulation(x)
        if mod is None:
            return from_complex(fft2c(s * z)) * m.unsqueeze(1)
        c, signed = mod
        return from_complex(torch.fft.fft2(s * (c * z), norm="ortho") * (signed * m))

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        m, s = self._params(y, (2, self.num_coils, *self.kspace_size), "multi-coil k-space")
        mod = self._modulation(y)
        if mod is None:
            return from_complex(self._crop((s.conj() * ifft2c(to_complex(y * m.unsqueeze(1)))).sum(dim=1)))
        c, signed = mod
        coil_images = torch.fft.ifft2(to_complex(y) * (c * m), norm="ortho")
        return from_complex(self._crop(signed * (s.conj() * coil_images).sum(dim=1)))

    def A_adjoint_A(self, x: Tensor, **kwargs) -> Tensor:
        """``A^T A x = P^T sum_c S_c^H F^H m^2 F S_c P x`` in one pass: the coil stack stays complex between
        the two FFTs (the generic ``A_adjoint(A(x))`` splits it into (re, im) and back), and on an even grid
        the centring signs cancel (``signed^2 = 1``), leaving ``c`` on the image at both ends."""
        reject_parameter_kwargs(self, kwargs)
        m, s = self._params(x, (2, *self.image_size), "image")
        z = self._pad(to_complex(x)).unsqueeze(1)
        mod = self._modulation(x)
        if mod is None:
            return from_complex(self._crop((s.conj() * ifft2c(fft2c(s * z) * (m * m))).sum(dim=1)))
        c = mod[0]
        k = torch.fft.fft2(s * (c * z), norm="ortho") * (m * m)
        return from_complex(self._crop(c * (s.conj() * torch.fft.ifft2(k, norm="ortho")).sum(dim=1)))

    def coil_images(self, y: Tensor) -> Tensor:
        """Zero-filled complex coil images ``F^H M y_c`` on the full grid, ``(B, C, H, W)``."""
        m, _ = self._params(y, (2, self.num_coils, *self.kspace_size), "multi-coil k-space")
        return ifft2c(to_complex(y * m.unsqueeze(1)))

    def rss(self, y: Tensor) -> Tensor:
        """Root-sum-of-squares of the zero-filled coil images, centre-cropped to ``image_size``,
        ``(B, 1, h, w)`` (fastMRI's target definition when ``y`` is fully sampled); not linear."""
        return self._crop(rss(self.coil_images(y))).unsqueeze(1)
