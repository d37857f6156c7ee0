"""The training driver every kind of prior shares: seeded initial weights, progress, atomic
checkpoints every few steps, bit-exact resume, the loss CSV, a time limit.

A *trainer* is any object with ``step() -> loss``, ``step_index`` and ``losses``
(:class:`~invdiff.training.unet.PriorTrainer`, :class:`~invdiff.training.tokens.TokenPriorTrainer`).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from invdiff.io import atomic_write_text
from invdiff.priors.checkpoint import read_checkpoint
from invdiff.rng import private_global_stream
from invdiff.training.data import TrainingImages

__all__ = ["build_seeded", "drive_training"]

T = TypeVar("T")


def build_seeded(seed: int, build: Callable[[], T]) -> T:
    """``build()`` with initial weights that come from ``seed``.

    PyTorch's and MONAI's layer initialisers take no generator, so ``build`` (which must build on the
    CPU) runs inside :func:`~invdiff.rng.private_global_stream`, which leaves the caller's generators
    as they were (tested); the shipped priors' recorded commands reproduce their weights through
    exactly this draw.
    """
    fork = torch.Generator().manual_seed(seed + 1)
    with private_global_stream(int(torch.randint(0, 2**62, (1,), generator=fork))):
        return build()


def _write_losses(path: Path, losses: list[float], every: int = 10) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["step", "loss", f"loss_mean_{every}"])
    for i, value in enumerate(losses):
        window = losses[max(0, i + 1 - every): i + 1]
        writer.writerow([i + 1, f"{value:.6g}", f"{sum(window) / len(window):.6g}"])
    atomic_write_text(path, buf.getvalue())


def drive_training(trainer, total_steps: int, save: Callable[[Path, dict, bool], None],
                   resume_from: Callable[[dict], None], finish: Callable[[Path], None], out: str | Path, *,
                   data: TrainingImages, config_dict: dict, resume: bool = False, checkpoint_every: int = 250,
                   max_minutes: float | None = None, provenance: dict | None = None, progress: bool = True,
                   log: Callable[[str], None] = print) -> None:
    """The training driver shared by every kind of prior.

    ``trainer`` has ``step() -> loss``, ``step_index`` and ``losses``; ``save(path, provenance,
    with_training)`` writes a checkpoint; ``resume_from(payload)`` restores the training state of a
    checked checkpoint payload; ``finish(out)`` writes the sample figure. Writes ``out/checkpoint.pt``
    (every ``checkpoint_every`` steps and at the end), ``out/loss.csv``, ``out/prior.pt`` and the
    figure at the end; ``max_minutes`` stops early after a checkpoint (continue with ``resume``).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    ckpt = out / "checkpoint.pt"
    provenance = dict(provenance or {})
    provenance["commands"] = [provenance.get("command")]  # every run that contributed, resumes included
    provenance.setdefault("data", list(data.sources))
    provenance["training_config"] = config_dict
    if resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        payload = read_checkpoint(ckpt)
        if "training" not in payload:
            raise ValueError(f"{ckpt}: has no training state to resume from")
        resume_from(payload)
        before = payload.get("provenance", {})
        provenance["commands"] = list(before.get("commands", [before.get("command")])) + [provenance.get("command")]
        log(f"resumed from {ckpt} at step {trainer.step_index}")
    elif ckpt.exists():
        raise FileExistsError(f"{ckpt} exists: pass --resume to continue it, or choose another --out")

    def checkpoint() -> None:
        provenance["steps_done"] = trainer.step_index
        save(ckpt, provenance, True)
        _write_losses(out / "loss.csv", trainer.losses)

    start = time.perf_counter()
    with tqdm(total=total_steps, initial=trainer.step_index, desc="train-prior", disable=not progress) as bar:
        while trainer.step_index < total_steps:
            loss = trainer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if trainer.step_index % checkpoint_every == 0:
                checkpoint()
                recent = trainer.losses[-checkpoint_every:]
                log(f"step {trainer.step_index}: mean loss {sum(recent) / len(recent):.4f}, "
                    f"{time.perf_counter() - start:.0f} s this session")
                if max_minutes is not None and time.perf_counter() - start > 60 * max_minutes:
                    log(f"stopping after {max_minutes} minutes at step {trainer.step_index}; continue with --resume")
                    return
    checkpoint()
    save(out / "prior.pt", provenance, False)
    finish(out)
    log(f"done: {trainer.step_index} steps; prior in {out / 'prior.pt'}, samples in {out / 'samples.png'}")
