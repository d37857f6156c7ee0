"""Inpainting: keep the pixels where the mask is 1, zero elsewhere; mask generators.

Images are ``(B, C, H, W)``. ``y = m * x`` has the image's shape (deepinv's convention), so the
operator is decomposable with ``U = V = I`` and singular values ``m``.
"""

from __future__ import annotations

import deepinv as dinv
import torch
from torch import Tensor

from invdiff.operators.base import (ParametrizedOperator, as_weights, check_batch, check_image, divide_where_positive,
                                    reject_parameter_kwargs)

__all__ = ["Inpainting", "box_mask", "random_pixel_mask"]


def random_pixel_mask(image_size: tuple[int, int], keep: float, generator: torch.Generator) -> Tensor:
    """``(H, W)`` float mask keeping exactly ``round(keep H W)`` pixels chosen uniformly at random."""
    h, w = image_size
    if not 0 < keep <= 1:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    n = int(round(keep * h * w))
    mask = torch.zeros(h * w)
    mask[torch.randperm(h * w, generator=generator)[:n]] = 1.0
    return mask.reshape(h, w)


def box_mask(image_size: tuple[int, int], top: int, left: int, height: int, width: int) -> Tensor:
    """``(H, W)`` float mask that hides the box ``[top, top + height) x [left, left + width)``."""
    h, w = image_size
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= h and left + width <= w):
        raise ValueError(f"box (top={top}, left={left}, height={height}, width={width}) must lie inside {h}x{w}")
    mask = torch.ones(h, w)
    mask[top : top + height, left : left + width] = 0.0
    return mask


class Inpainting(ParametrizedOperator, dinv.physics.DecomposablePhysics):
    """``y = m * x`` for a mask ``m`` of shape ``(H, W)``, ``(C, H, W)`` or per sample ``(B, C or 1, H, W)``.

    Entries are weights ``>= 0`` (0/1 for inpainting). Operator norm: ``max m``.
    """

    _parameter_names = ("mask",)

    def __init__(self, mask: Tensor):
        mask = as_weights(mask)
        if mask.dim() not in (2, 3, 4):
            raise ValueError(f"mask must be (H, W), (C, H, W) or (B, C, H, W), got {tuple(mask.shape)}")
        while mask.dim() < 4:
            mask = mask.unsqueeze(0)
        super().__init__(mask=mask.contiguous())
        self.image_size = tuple(int(s) for s in mask.shape[-2:])

    def _init_kwargs(self) -> dict:
        return {"mask": self.mask}

    def with_mask(self, mask: Tensor) -> Inpainting:
        return Inpainting(mask)

    def candidate_grid(self) -> tuple[str, tuple[int, int]]:
        """Acquirable candidates: the ``(H, W)`` pixels, all channels."""
        return "pixels", tuple(self.image_size)

    def _checked(self, x: Tensor, what: str) -> Tensor:
        check_image(x, self.image_size, what)
        check_batch(self.mask, x.shape[0], "mask", self)
        if self.mask.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"mask has {self.mask.shape[1]} channels but the {what} has {x.shape[1]}")
        return self.mask.to(x.dtype)

    def A(self, x: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return self._checked(x, "image") * x

    def A_adjoint(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return self._checked(y, "observation") * y

    def A_dagger(self, y: Tensor, **kwargs) -> Tensor:
        reject_parameter_kwargs(self, kwargs)
        return divide_where_positive(y, self._checked(y, "observation"))
