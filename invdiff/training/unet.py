"""Training a UNet diffusion prior: one optimisation step (:class:`PriorTrainer`), run by the shared
driver (:func:`invdiff.training.driver.drive_training`: progress bar, atomic checkpoints, resume,
loss CSV) from :func:`train_prior`, which also writes the sample PNG.

The objective is DDPM's (Ho et al. 2020): draw ``t`` uniformly from the ``T`` steps of a VP schedule,
``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps`` in model space ``z0 = (x0 - offset) / scale``, and
regress ``eps`` (or ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) z0``) with a mean squared error.
Adam with a linear warm-up, gradient-norm clipping, and an exponential moving average (EMA) of the
weights, which is what the saved prior uses.

Images are whole slices, or random ``crop x crop`` patches of them with whole slices every
``full_image_every`` steps (patch training: the UNet is convolutional, with attention only at its
coarsest level, so a prior trained mostly on patches runs on whole images; patches cost a quarter
of a whole 2x-larger slice per image, and attention a sixteenth).

Precision: ``precision="bf16"`` or ``"fp16"`` runs the network's forward and backward passes under
autocast (mixed precision: float32 weights, optimiser state and EMA; fp16 with dynamic loss scaling,
CUDA only). On a CUDA device the batches are copied from page-locked memory without blocking.

Determinism: every random draw (batches, timesteps, noise) comes from one ``torch.Generator``
seeded with ``config.seed`` whose state is checkpointed, so an interrupted run resumed from its
last checkpoint produces the same weights as an uninterrupted one (same device and thread count).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from invdiff.plots import image_grid, wrapped_rows
from invdiff.priors.unet import UNetConfig, UNetPrior, save_prior
from invdiff.samplers import DDIM, run
from invdiff.samplers.base import prior_sigmas
from invdiff.schedule import VPSchedule
from invdiff.training.data import Augmentation, TrainingImages, config_from_dict, config_to_dict, draw_batch
from invdiff.training.driver import build_seeded, drive_training

__all__ = ["PriorTrainer", "TrainingConfig", "data_normalization", "sample_figure", "train_prior"]


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of :class:`PriorTrainer` (all recorded in the checkpoint).

    ``init_from`` starts from the weights of a prior of the same architecture (a shipped prior's name
    or a checkpoint file), e.g. to fine-tune a prior at another resolution; its EMA starts there too.
    """

    steps: int = 5000
    batch_size: int = 16
    channels: int = 1
    crop: int | None = None
    full_image_every: int = 4
    lr: float = 2e-4
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    prediction: Literal["epsilon", "v"] = "epsilon"
    schedule: Literal["linear", "cosine"] = "linear"
    augmentation: Augmentation = field(default_factory=Augmentation)
    seed: int = 0
    init_from: str | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.prediction not in ("epsilon", "v"):
            raise ValueError(f"prediction must be 'epsilon' or 'v', got {self.prediction!r}")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainingConfig:
        return config_from_dict(cls, d)

    def vp_schedule(self) -> VPSchedule:
        return VPSchedule.linear() if self.schedule == "linear" else VPSchedule.cosine()


def data_normalization(modality: str, channels: int) -> tuple[float, float, tuple[float, float]]:
    """``(scale, offset, data_range)`` mapping the modality's data units to model space ``[-1, 1]``."""
    if modality == "MR":
        return (1.0, 0.0, (-1.0, 1.0)) if channels == 2 else (0.5, 0.5, (0.0, 1.0))
    return 1.0, 1.0, (0.0, 2.0)


class PriorTrainer:
    """One optimisation step at a time; holds the network, its EMA, the optimiser and the RNG."""

    def __init__(self, data: TrainingImages, config: TrainingConfig, unet: UNetConfig,
                 device: str | torch.device = "cpu"):
        if unet.in_channels != config.channels:
            raise ValueError(f"the UNet has {unet.in_channels} channels but training uses {config.channels}")
        if config.crop is not None and not 8 <= config.crop <= data.size:
            raise ValueError(f"crop must be in [8, {data.size}], got {config.crop}")
        self.data, self.config, self.unet, self.device = data, config, unet, torch.device(device)
        self.scale, self.offset, self.data_range = data_normalization(data.modality, config.channels)
        self.schedule = config.vp_schedule()
        self._abar = self.schedule.alpha_bars.to(torch.float32)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.net = build_seeded(config.seed, unet.build)
        if config.init_from is not None:
            self.net.load_state_dict(_initial_weights(config.init_from, unet))
        self.net.to(self.device).train()
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"precision fp16 needs a CUDA device (loss scaling); on {self.device.type} use bf16")
        self._autocast = dict(device_type=self.device.type, enabled=config.precision != "fp32",
                              dtype=torch.float16 if config.precision == "fp16" else torch.bfloat16)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
        self._pin = self.device.type == "cuda"
        self.step_index = 0
        self.losses: list[float] = []

    def learning_rate(self, step: int) -> float:
        return self.config.lr * min(1.0, (step + 1) / max(1, self.config.warmup))

    def _batch(self) -> Tensor:
        c = self.config
        whole = c.crop is None or (c.full_image_every > 0 and self.step_index % c.full_image_every == 0)
        if whole:
            ratio = 1.0 if c.crop is None else (c.crop / self.data.size) ** 2
            return draw_batch(self.data.images, max(1, round(c.batch_size * ratio)), self.generator,
                              channels=c.channels, augmentation=c.augmentation, weights=self.data.weights)
        return draw_batch(self.data.images, c.batch_size, self.generator, channels=c.channels, crop=c.crop,
                          augmentation=c.augmentation, weights=self.data.weights)

    def step(self) -> float:
        """One Adam step on a fresh batch; updates the EMA; returns the batch's loss."""
        x0 = self._batch()
        b = x0.shape[0]
        t = torch.randint(0, self.schedule.num_steps, (b,), generator=self.generator)
        noise = torch.randn(x0.shape, generator=self.generator)
        a = self._abar[t].sqrt().view(b, 1, 1, 1)
        s = (1 - self._abar[t]).sqrt().view(b, 1, 1, 1)
        z0 = (x0 - self.offset) / self.scale
        z_t = a * z0 + s * noise
        target = noise if self.config.prediction == "epsilon" else a * noise - s * z0
        if self._pin:  # page-locked host memory: the copies overlap with the previous step's kernels
            z_t, target, t = z_t.pin_memory(), target.pin_memory(), t.pin_memory()
        z_t, target = z_t.to(self.device, non_blocking=self._pin), target.to(self.device, non_blocking=self._pin)
        t = t.to(self.device, torch.float32, non_blocking=self._pin)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step_index)
        with torch.autocast(**self._autocast):  # weights, optimizer and EMA stay float32
            out = self.net(z_t, t)
        loss = torch.mean((out.float() - target) ** 2)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        decay = min(self.config.ema_decay, (1 + self.step_index) / (10 + self.step_index))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters()):
                e.lerp_(p, 1 - decay)
            for e, p in zip(self.ema.buffers(), self.net.buffers()):
                e.copy_(p)
        self.step_index += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def prior(self) -> UNetPrior:
        """The EMA network as a prior (shares weights with the trainer; copy before training on)."""
        pixel = None
        if self.data.pixel_mm is not None:
            zlo, zhi = self.config.augmentation.zoom  # magnifying by z shows pixels of pixel_mm / z
            pixel = (self.data.pixel_mm / zhi, self.data.pixel_mm / zlo)
        return UNetPrior(self.ema, self.schedule, (self.config.channels, self.data.size, self.data.size),
                         self.config.prediction, self.scale, self.offset, self.unet, self.data_range, pixel)

    def training_state(self) -> dict:
        return {"step": self.step_index, "config": self.config.to_dict(),
                "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "losses": torch.tensor(self.losses, dtype=torch.float64), "scaler": self.scaler.state_dict()}

    def load_training_state(self, state: dict, ema_weights: dict) -> None:
        saved = TrainingConfig.from_dict(state["config"])
        if dataclasses.replace(saved, steps=self.config.steps) != self.config:  # more steps is allowed
            raise ValueError(f"cannot resume: the checkpoint was trained with {saved}, now {self.config}")
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(ema_weights)
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.step_index = int(state["step"])
        self.losses = [float(v) for v in state["losses"]]


def _initial_weights(spec: str, unet: UNetConfig) -> dict:
    from invdiff.priors.shipped import open_prior

    prior = open_prior(spec)
    if not isinstance(prior, UNetPrior) or prior.config != unet:
        found = prior.config if isinstance(prior, UNetPrior) else type(prior).__name__
        raise ValueError(f"--init {spec}: its architecture {found} differs from the one being trained ({unet})")
    return {k: v.detach().clone() for k, v in prior.net.state_dict().items()}


def sample_figure(prior: UNetPrior, path: str | Path, num: int = 8, steps: int = 50, seed: int = 0,
                  title: str = "") -> Path:
    """Draw ``num`` unconditional DDIM samples from ``prior`` and save them as a PNG grid (magnitude
    for complex priors)."""
    post = run(DDIM(sigmas=prior_sigmas(prior, steps)), None, prior, n_particles=num,
               generator=torch.Generator().manual_seed(seed), progress=False)
    x = post.samples[0]
    images = x.norm(dim=1) if x.shape[1] == 2 else x[:, 0]
    lo, hi = prior.data_range if prior.data_range is not None else (float(images.min()), float(images.max()))
    lo = max(lo, 0.0) if x.shape[1] == 2 else lo
    return image_grid(path, wrapped_rows([im.numpy() for im in images], min(num, 4)), lo, hi,
                      title or f"{num} prior samples (DDIM, {steps} steps, seed {seed})")


def train_prior(data: TrainingImages, config: TrainingConfig, unet: UNetConfig, out: str | Path, *,
                resume: bool = False, checkpoint_every: int = 250, max_minutes: float | None = None,
                provenance: dict | None = None, device: str | torch.device = "cpu", progress: bool = True,
                log: Callable[[str], None] = print, sample_steps: int = 50, num_samples: int = 8) -> PriorTrainer:
    """Train (or resume) a prior and write, under ``out``:

    * ``checkpoint.pt``: resumable (EMA prior + raw weights, optimiser, RNG), every
      ``checkpoint_every`` steps and at the end, atomically;
    * ``prior.pt``: the EMA prior alone (what ships), at the end;
    * ``loss.csv``: the loss of every step so far (rewritten with each checkpoint);
    * ``samples.png``: ``num_samples`` prior samples (DDIM with ``sample_steps`` steps), at the end.

    ``max_minutes`` stops early (after a checkpoint) so a long run can be continued with ``resume``.
    """
    trainer = PriorTrainer(data, config, unet, device)

    def save(path: Path, provenance: dict, with_training: bool) -> None:
        save_prior(path, trainer.prior(), provenance, training=trainer.training_state() if with_training else None)

    def finish(out: Path) -> None:
        sample_figure(trainer.prior(), out / "samples.png", num=num_samples, steps=sample_steps, seed=config.seed,
                      title=f"prior samples after {trainer.step_index} training steps (DDIM, {sample_steps} steps)")

    def resume_from(payload: dict) -> None:
        trainer.load_training_state(payload["training"], payload["state_dict"])

    drive_training(trainer, config.steps, save, resume_from, finish, out, data=data, config_dict=config.to_dict(),
                   resume=resume, checkpoint_every=checkpoint_every, max_minutes=max_minutes,
                   provenance=provenance, progress=progress, log=log)
    return trainer


