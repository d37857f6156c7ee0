"""2-D CT geometries: parallel beam and fan beam with a flat detector.

Units are pixels: the image is ``n x n`` unit pixels centred on the rotation axis, ``x`` pointing
along columns and ``y`` up the rows (row 0 is the top). Angles are in degrees. For a view at angle
``t`` the rays travel along ``d = (-sin t, cos t)`` and the detector axis is ``e = (cos t, sin t)``;
detector bin ``k`` of ``D`` sits at ``u_k = (k - (D - 1) / 2) * spacing`` along ``e``.

* Parallel beam: the ray of bin ``k`` is the line ``{p : p . e = u_k}``.
* Fan beam: the source sits at ``-R d`` (``R`` = ``source_distance``, to the rotation axis) and the flat
  detector is the line at ``(L - R) d`` (``L`` = ``source_detector_distance``), so a point ``p`` maps to
  ``u = L (p . e) / (R + p . d)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _angles(angles, max_deg: float = 360.0) -> tuple[float, ...]:
    if isinstance(angles, int):
        raise TypeError("angles must be a sequence or tensor of degrees; use sparse_view_angles(n) for n views")
    a = torch.as_tensor(angles, dtype=torch.float64).flatten()
    if a.numel() == 0:
        raise ValueError("angles must not be empty")
    if not bool(torch.isfinite(a).all()) or bool((a < 0).any()) or bool((a >= max_deg).any()):
        bad = a[~torch.isfinite(a) | (a < 0) | (a >= max_deg)]
        raise ValueError(f"angles must be finite degrees in [0, {max_deg:g}), got {bad[:5].tolist()} out of range")
    return tuple(float(v) for v in a)


def sparse_view_angles(num_views: int, span: float = 180.0) -> tuple[float, ...]:
    """``num_views`` angles evenly spread over ``[0, span)`` degrees."""
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    return tuple(span * k / num_views for k in range(num_views))


def limited_angle_angles(max_angle: float, num_views: int) -> tuple[float, ...]:
    """``num_views`` angles evenly spread over ``[0, max_angle)`` degrees (a missing wedge beyond)."""
    if not 0 < max_angle <= 180:
        raise ValueError(f"max_angle must lie in (0, 180] degrees, got {max_angle}")
    return sparse_view_angles(num_views, span=max_angle)


@dataclass(frozen=True)
class ParallelBeamGeometry:
    """Parallel-beam geometry: view angles (degrees, in ``[0, 360)``), detector bins and bin spacing."""

    angles: tuple[float, ...]
    num_detectors: int
    detector_spacing: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "angles", _angles(self.angles))
        if self.num_detectors < 1 or not self.detector_spacing > 0:
            raise ValueError(f"need num_detectors >= 1 and detector_spacing > 0, got {self.num_detectors}, "
                             f"{self.detector_spacing}")

    @property
    def num_views(self) -> int:
        return len(self.angles)

    def _frames(self, device) -> tuple[Tensor, Tensor, Tensor]:
        t = torch.deg2rad(torch.tensor(self.angles, dtype=torch.float64, device=device))
        e = torch.stack([t.cos(), t.sin()], dim=-1)
        d = torch.stack([-t.sin(), t.cos()], dim=-1)
        u = (torch.arange(self.num_detectors, dtype=torch.float64, device=device)
             - (self.num_detectors - 1) / 2) * self.detector_spacing
        return e, d, u

    def rays(self, device=None) -> tuple[Tensor, Tensor]:
        """Points on and unit directions of every ray, ``(D * A, 2)`` each, detector-major."""
        e, d, u = self._frames(device)
        origins = u[:, None, None] * e[None]
        return origins.reshape(-1, 2), d.expand(self.num_detectors, -1, -1).reshape(-1, 2)

    def detector_position(self, points: Tensor, views: slice) -> tuple[Tensor, Tensor]:
        """Detector coordinate ``u`` of ``points`` ``(P, 2)`` in ``views``, and ``p . d``; ``(a, P)`` each."""
        e, d, _ = self._frames(points.device)
        return e[views].to(points.dtype) @ points.T, d[views].to(points.dtype) @ points.T

    def check_covers(self, image_size: int) -> None:
        """Parallel beams need nothing of the image size; detectors narrower than it just see less."""


@dataclass(frozen=True)
class FanBeamGeometry(ParallelBeamGeometry):
    """Fan beam, flat detector: distances source-to-axis ``source_distance`` and
    source-to-detector ``source_detector_distance`` (pixels); ``detector_spacing`` at the detector."""

    source_distance: float = 0.0
    source_detector_distance: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.source_distance < self.source_detector_distance:
            raise ValueError("need 0 < source_distance < source_detector_distance, got "
                             f"{self.source_distance}, {self.source_detector_distance}")

    def rays(self, device=None) -> tuple[Tensor, Tensor]:
        e, d, u = self._frames(device)
        direction = self.source_detector_distance * d[None] + u[:, None, None] * e[None]
        direction = direction / direction.norm(dim=-1, keepdim=True)
        source = (-self.source_distance * d).expand(self.num_detectors, -1, -1)
        return source.reshape(-1, 2), direction.reshape(-1, 2)

    def detector_position(self, points: Tensor, views: slice) -> tuple[Tensor, Tensor]:
        pe, pd = super().detector_position(points, views)
        depth = self.source_distance + pd  # distance from the source along the central ray
        return self.source_detector_distance * pe / depth, depth

    def check_covers(self, image_size: int) -> None:
        radius = image_size * math.sqrt(2) / 2
        if self.source_distance <= radius:
            raise ValueError(f"the source at distance {self.source_distance} from the axis lies inside the "
                             f"{image_size}x{image_size} image (half-diagonal {radius:.1f} pixels)")


def default_num_detectors(image_size: int, source_distance: float | None = None,
                          source_detector_distance: float | None = None, spacing: float = 1.0) -> int:
    """Bins that cover the image's circumscribed circle: ``ceil(n sqrt 2)`` for parallel beams; its
    shadow on the flat detector for fan beams."""
    radius = image_size * math.sqrt(2) / 2
    if source_distance is None:
        return math.ceil(2 * radius / spacing)
    if source_distance <= radius:
        raise ValueError(f"source_distance {source_distance} must exceed the image half-diagonal {radius:.1f}")
    half = source_detector_distance * radius / math.sqrt(source_distance**2 - radius**2)
    return math.ceil(2 * half / spacing) + 1
