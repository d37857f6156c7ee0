"""A diffusion prior from a VP-trained noise-prediction network (MONAI's ``DiffusionModelUNet``).

The network was trained in *model space* ``z = (x - offset) / scale`` on the VP process
``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps`` to predict ``eps`` (``prediction="epsilon"``) or
``v = sqrt(abar_t) eps - sqrt(1 - abar_t) z0`` (``prediction="v"``, Salimans & Ho 2022).
:class:`UNetPrior` exposes it as an EDM denoiser in data units: for ``x = x0 + sigma n``,

    sigma_z = sigma / scale,  abar = 1 / (1 + sigma_z^2),  z_t = sqrt(abar) (x - offset) / scale,
    t = schedule.timestep_of_sigma(sigma_z)  (fractional steps between the trained ones),
    z0_hat = (z_t - sqrt(1 - abar) eps_hat) / sqrt(abar)   or   sqrt(abar) z_t - sqrt(1 - abar) v_hat,

and returns ``offset + scale * z0_hat``. Noise levels outside the trained range are given the nearest
trained step as ``t`` (the conversion itself stays exact).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from torch import Tensor, nn

from invdiff.linalg import batch_view
from invdiff.priors.base import Denoiser, sigma_per_sample
from invdiff.schedule import VPSchedule

__all__ = ["UNetConfig", "UNetPrior"]

Prediction = Literal["epsilon", "v"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a 2-D MONAI ``DiffusionModelUNet`` (its constructor's arguments)."""

    in_channels: int = 2
    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    norm_num_groups: int = 16
    num_head_channels: int = 32

    def build(self) -> nn.Module:
        from monai.networks.nets import DiffusionModelUNet

        return DiffusionModelUNet(spatial_dims=2, in_channels=self.in_channels, out_channels=self.in_channels,
                                  num_res_blocks=self.num_res_blocks, channels=tuple(self.channels),
                                  attention_levels=tuple(self.attention_levels),
                                  norm_num_groups=self.norm_num_groups, num_head_channels=self.num_head_channels)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class UNetPrior(Denoiser):
    """EDM denoiser around a VP noise-prediction network (see the module docstring).

    Attributes:
        net: ``net(z_t, t)`` with ``z_t`` ``(B, C, H, W)`` and ``t`` ``(B,)`` float steps.
        schedule: the VP schedule the network was trained with.
        event_shape: ``(C, H, W)``.
        prediction: ``"epsilon"`` or ``"v"``.
        scale, offset: data = ``offset + scale * model space``.
        config: the architecture, when ``net`` was built from one (needed to save a checkpoint).
    """

    net: nn.Module
    schedule: VPSchedule
    event_shape: tuple[int, int, int]
    prediction: Prediction = "epsilon"
    scale: float = 1.0
    offset: float = 0.0
    config: UNetConfig | None = None
    data_range: tuple[float, float] | None = None

    def __post_init__(self):
        if self.prediction not in ("epsilon", "v"):
            raise ValueError(f"prediction must be 'epsilon' or 'v', got {self.prediction!r}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        self.event_shape = tuple(self.event_shape)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"expected images (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        sigma_z = sigma_per_sample(sigma, x) / self.scale
        abar = 1.0 / (1.0 + sigma_z**2)
        t = self.schedule.timestep_of_sigma(sigma_z.cpu()).to(x.device)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else x.dtype
        a = batch_view(abar.sqrt(), x).to(dtype)
        b = batch_view((1.0 - abar).sqrt(), x).to(dtype)
        z_t = a * ((x.to(dtype) - self.offset) / self.scale)
        out = self.net(z_t, t.to(dtype))
        z0 = (z_t - b * out) / a if self.prediction == "epsilon" else a * z_t - b * out
        return (self.offset + self.scale * z0).to(x.dtype)
