"""Training an image token prior: the tokenizer, then the masked token model, one step at a time
(:class:`TokenPriorTrainer`), driven by the same driver as the UNet priors (:func:`train_token_prior`:
progress bar, atomic checkpoints, resume, loss CSV, sample PNG).

Stage 1 (``tokenizer_steps``): the VQ autoencoder on random ``tokenizer_crop``-sized crops of
augmented training slices in model space (it is convolutional, so it tokenizes whole slices after),
loss ``||D(sg-quantised E(x)) - x||^2 + beta ||E(x) - sg(c)||^2`` (straight-through), the codebook
initialised from the first batch's encoder outputs and updated by exponential moving averages,
codes unused for a while restarted at random encoder outputs.
Stage 2 (``steps``): the tokenizer is frozen; augmented slices are tokenized on the fly and the
transformer is trained with MaskGIT's masked cross-entropy
(:func:`~invdiff.priors.tokens.token_model.masked_token_loss`).

Determinism: every draw (batches, masks, restarts) comes from one ``torch.Generator`` seeded with
``config.seed`` and checkpointed; the initial weights come from the seed (:func:`~invdiff.training.driver.build_seeded`), and
dropout, which draws from the global RNG, is refused (``dropout`` must be 0), so a resumed run
equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.plots import image_grid
from invdiff.priors.tokens.checkpoint import save_token_prior, weights_module
from invdiff.priors.tokens.image import ImageTokenPrior
from invdiff.priors.tokens.token_model import MaskedTokenTransformer, TokenModelConfig, masked_token_loss
from invdiff.priors.tokens.tokenizer import PatchTokenizer, TokenizerConfig
from invdiff.samplers import APS, run
from invdiff.training.data import Augmentation, TrainingImages, config_from_dict, config_to_dict, draw_batch
from invdiff.training.driver import build_seeded, drive_training
from invdiff.training.unet import data_normalization

__all__ = ["TokenPriorTrainer", "TokenTrainingConfig", "token_sample_figure", "tokenizer_psnr", "train_token_prior"]


@dataclass(frozen=True)
class TokenTrainingConfig:
    """Hyper-parameters of :class:`TokenPriorTrainer` (all recorded in the checkpoint)."""

    tokenizer_steps: int = 2000
    steps: int = 4000
    batch_size: int = 16
    tokenizer_crop: int | None = 64
    tokenizer_lr: float = 1e-3
    lr: float = 5e-4
    warmup: int = 100
    grad_clip: float = 1.0
    commitment: float = 0.25
    codebook_decay: float = 0.99
    dead_code_threshold: float = 0.01
    augmentation: Augmentation = field(default_factory=Augmentation)
    seed: int = 0

    def __post_init__(self):
        if self.tokenizer_steps < 1 or self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"need tokenizer_steps >= 1, steps >= 0, batch_size >= 1; got {self.tokenizer_steps}, "
                             f"{self.steps}, {self.batch_size}")
        if not 0.0 < self.codebook_decay < 1.0:
            raise ValueError(f"codebook_decay must be in (0, 1), got {self.codebook_decay}")

    @property
    def total_steps(self) -> int:
        return self.tokenizer_steps + self.steps

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenTrainingConfig:
        return config_from_dict(cls, d)


class TokenPriorTrainer:
    """One optimisation step at a time over both stages (module docstring)."""

    def __init__(self, data: TrainingImages, config: TokenTrainingConfig, tokenizer: TokenizerConfig,
                 token_model: TokenModelConfig):
        if tokenizer.image_size != data.size or tokenizer.in_channels != 1:
            raise ValueError(f"the tokenizer is for {tokenizer.in_channels}x{tokenizer.image_size}^2 images, the "
                             f"data are 1x{data.size}^2 magnitudes")
        if (token_model.num_positions, token_model.num_codes) != (tokenizer.grid ** 2, tokenizer.num_codes):
            raise ValueError(f"the token model must be over {tokenizer.grid ** 2} positions and {tokenizer.num_codes} "
                             f"codes, got {token_model.num_positions} and {token_model.num_codes}")
        if token_model.dropout != 0:
            raise ValueError("dropout draws from the global RNG and would make training irreproducible; use 0")
        self.data, self.config = data, config
        self.scale, self.offset, self.data_range = data_normalization(data.modality, 1)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.tokenizer, self.model = build_seeded(
            config.seed, lambda: (PatchTokenizer(tokenizer), MaskedTokenTransformer(token_model)))
        self.tokenizer_optimizer = torch.optim.Adam(self.tokenizer.parameters(), lr=config.tokenizer_lr)
        self.model_optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=0.01)
        self.step_index = 0
        self.losses: list[float] = []

    @property
    def stage(self) -> str:
        return "tokenizer" if self.step_index < self.config.tokenizer_steps else "token_model"

    def _batch(self, crop: int | None = None) -> Tensor:
        x = draw_batch(self.data.images, self.config.batch_size, self.generator, channels=1, crop=crop,
                       augmentation=self.config.augmentation, weights=self.data.weights)
        return (x - self.offset) / self.scale

    def _learning_rate(self, base: float, step: int) -> float:
        return base * min(1.0, (step + 1) / max(1, self.config.warmup))

    def step(self) -> float:
        """One step of the current stage; returns its loss (reconstruction MSE or cross-entropy)."""
        value = self._tokenizer_step() if self.stage == "tokenizer" else self._model_step()
        self.step_index += 1
        self.losses.append(value)
        return value

    def _tokenizer_step(self) -> float:
        c, tok = self.config, self.tokenizer
        x = self._batch(c.tokenizer_crop)
        tok.train()
        if self.step_index == 0:
            with torch.no_grad():
                z = tok.encode_flat(x)[0]
                pick = torch.randperm(z.shape[0], generator=self.generator)[: tok.config.num_codes]
                tok.codebook.copy_(z[pick])
                tok.embed_sum.copy_(z[pick])
                tok.cluster_size.fill_(1.0)
        x_hat, z, idx = tok(x)
        reconstruction = F.mse_loss(x_hat, x)
        loss = reconstruction + c.commitment * F.mse_loss(z, tok.codebook[idx.flatten()].detach())
        for group in self.tokenizer_optimizer.param_groups:
            group["lr"] = self._learning_rate(c.tokenizer_lr, self.step_index)
        self.tokenizer_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), c.grad_clip)
        self.tokenizer_optimizer.step()
        self._update_codebook(z.detach(), idx.flatten())
        return float(reconstruction.detach())

    @torch.no_grad()
    def _update_codebook(self, z: Tensor, idx: Tensor) -> None:
        tok, decay = self.tokenizer, self.config.codebook_decay
        k = tok.config.num_codes
        counts = torch.bincount(idx, minlength=k).to(z.dtype)
        sums = torch.zeros_like(tok.embed_sum).index_add_(0, idx, z)
        tok.cluster_size.lerp_(counts, 1 - decay)
        tok.embed_sum.lerp_(sums, 1 - decay)
        n = tok.cluster_size.sum()
        smoothed = (tok.cluster_size + 1e-5) / (n + k * 1e-5) * n  # Laplace smoothing
        tok.codebook.copy_(tok.embed_sum / smoothed.unsqueeze(1))
        dead = tok.cluster_size < self.config.dead_code_threshold
        if bool(dead.any()):
            pick = torch.randint(0, z.shape[0], (int(dead.sum()),), generator=self.generator)
            tok.codebook[dead] = z[pick]
            tok.embed_sum[dead] = z[pick]
            tok.cluster_size[dead] = 1.0

    def _model_step(self) -> float:
        c = self.config
        self.tokenizer.eval()
        self.model.train()
        with torch.no_grad():
            tokens = self.tokenizer.tokenize(self._batch())
        loss = masked_token_loss(self.model, tokens, self.generator)
        for group in self.model_optimizer.param_groups:
            group["lr"] = self._learning_rate(c.lr, self.step_index - c.tokenizer_steps)
        self.model_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.model_optimizer.step()
        return float(loss.detach())

    def prior(self) -> ImageTokenPrior:
        """The networks as a prior (shares weights with the trainer; evaluation mode until the next step)."""
        self.tokenizer.eval()
        self.model.eval()
        return ImageTokenPrior(self.tokenizer, self.model, self.scale, self.offset, self.data_range)

    def training_state(self) -> dict:
        return {"step": self.step_index, "config": self.config.to_dict(),
                "tokenizer_optimizer": self.tokenizer_optimizer.state_dict(),
                "model_optimizer": self.model_optimizer.state_dict(), "generator": self.generator.get_state(),
                "losses": torch.tensor(self.losses, dtype=torch.float64)}

    def load_training_state(self, payload: dict) -> None:
        """Restore from a checked checkpoint payload written with training state."""
        state = payload["training"]
        saved = TokenTrainingConfig.from_dict(state["config"])
        if dataclasses.replace(saved, steps=self.config.steps) != self.config:  # more transformer steps is allowed
            raise ValueError(f"cannot resume: the checkpoint was trained with {saved}, now {self.config}")
        weights_module(self.tokenizer, self.model).load_state_dict(payload["state_dict"])
        self.tokenizer_optimizer.load_state_dict(state["tokenizer_optimizer"])
        self.model_optimizer.load_state_dict(state["model_optimizer"])
        self.generator.set_state(state["generator"])
        self.step_index = int(state["step"])
        self.losses = [float(v) for v in state["losses"]]


def token_sample_figure(prior: ImageTokenPrior, path: str | Path, images: Tensor | None = None, num: int = 8,
                        steps: int = 16, seed: int = 0, title: str = "") -> Path:
    """A PNG of ``num`` unconditional samples (MaskGIT decoding with ``steps`` steps) and, when
    ``images`` ``(M, 1, S, S)`` are given, a row of them beside their tokenizer reconstructions."""
    post = run(APS(steps), None, prior, n_particles=num, generator=torch.Generator().manual_seed(seed),
               progress=False)
    rows = [post.samples[0, :, 0]]
    if images is not None:
        rows += [images[:, 0], prior.reconstruct(images)[:, 0]]
    lo, hi = prior.data_range if prior.data_range is not None else (0.0, 1.0)
    return image_grid(path, [[im.detach().numpy() for im in row] for row in rows], lo, hi,
                      title or f"{num} samples (MaskGIT, {steps} steps, seed {seed})"
                      + ("; training slices and their tokenizer reconstructions" if images is not None else ""),
                      cell=1.8)


def train_token_prior(data: TrainingImages, config: TokenTrainingConfig, tokenizer: TokenizerConfig,
                      token_model: TokenModelConfig, out: str | Path, *, resume: bool = False,
                      checkpoint_every: int = 250, max_minutes: float | None = None, provenance: dict | None = None,
                      progress: bool = True, log: Callable[[str], None] = print,
                      sample_steps: int = 16) -> TokenPriorTrainer:
    """Train (or resume) a token prior; writes ``out/checkpoint.pt``, ``prior.pt``, ``loss.csv``
    (reconstruction MSE in model space for the tokenizer steps, cross-entropy in nats after them) and
    ``samples.png``, like :func:`invdiff.training.unet.train_prior`. CPU only."""
    trainer = TokenPriorTrainer(data, config, tokenizer, token_model)

    def save(path: Path, provenance: dict, with_training: bool) -> None:
        save_token_prior(path, trainer.prior(), provenance,
                         training=trainer.training_state() if with_training else None)

    def finish(out: Path) -> None:
        pick = torch.linspace(0, len(data.images) - 1, 4).round().long()
        images = data.images[pick].unsqueeze(1).to(torch.float32)
        token_sample_figure(trainer.prior(), out / "samples.png", images, steps=sample_steps, seed=config.seed,
                            title=f"token prior after {trainer.step_index} steps: 8 samples (MaskGIT, {sample_steps} "
                                  "steps); 4 training slices; their tokenizer reconstructions")

    def log_stage(message: str) -> None:  # the stage of the steps just logged
        log(f"[{'tokenizer' if trainer.step_index <= config.tokenizer_steps else 'token_model'}] {message}")

    drive_training(trainer, config.total_steps, save, trainer.load_training_state, finish, out, data=data,
                   config_dict={**config.to_dict(), "tokenizer": tokenizer.to_dict(),
                                "token_model": token_model.to_dict()},
                   resume=resume, checkpoint_every=checkpoint_every, max_minutes=max_minutes,
                   provenance=provenance, progress=progress, log=log_stage)
    return trainer


def tokenizer_psnr(prior: ImageTokenPrior, images: Tensor) -> float:
    """Mean PSNR (dB, peak = the image's maximum) of the tokenizer's reconstructions of ``(M, 1, S, S)``
    images in data units: the ceiling of any reconstruction with this prior."""
    mse = ((prior.reconstruct(images) - images) ** 2).flatten(1).mean(1)
    peak = images.flatten(1).amax(1)
    return float((10 * torch.log10(peak ** 2 / mse)).mean())

