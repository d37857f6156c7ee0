"""Score a folder of fastMRI prediction files against their targets, as ``fastmri/evaluate.py`` does.

For every target file, the prediction file of the same name is read (dataset ``reconstruction``),
both volumes are centre-cropped to ``W x W`` (``W`` the target's width) and NMSE, PSNR and SSIM are
computed per volume (:func:`invdiff.metrics.fastmri_volume_metrics`: data range = the target
volume's maximum, 7x7 uniform SSIM window), then averaged over volumes.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from invdiff.datasets.errors import DataFormatError
from invdiff.datasets.fastmri import find_fastmri_files, read_prediction
from invdiff.metrics.image import fastmri_volume_metrics

__all__ = ["evaluate_predictions", "paired_files", "target_key"]


def target_key(challenge: str) -> str:
    """The target dataset of a fastMRI challenge: ``reconstruction_rss`` (multicoil) or ``reconstruction_esc``."""
    key = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}.get(challenge)
    if key is None:
        raise ValueError(f"challenge must be 'multicoil' or 'singlecoil', got {challenge!r}")
    return key


def paired_files(targets: str | os.PathLike, predictions: str | os.PathLike, key: str):
    """``(target path, its attributes, its target volume, the prediction path)`` for every target file, the
    prediction named like it (``DataFormatError`` naming both when it is missing)."""
    for path in find_fastmri_files(targets):
        attrs, target = _target(path, key)
        pred_path = Path(predictions) / path.name
        if not pred_path.is_file():
            raise DataFormatError(f"{pred_path}: no prediction for target {path}")
        yield path, attrs, target, pred_path


def evaluate_predictions(targets: str | os.PathLike, predictions: str | os.PathLike,
                         challenge: str = "multicoil", acquisition: str | None = None) -> dict:
    """Mean and standard deviation over volumes of NMSE, PSNR and SSIM, and the per-volume values.

    Args:
        targets: folder (or file) of fastMRI files holding the targets.
        predictions: folder of prediction files named like the targets.
        challenge: ``"multicoil"`` scores ``reconstruction_rss``, ``"singlecoil"`` ``reconstruction_esc``.
        acquisition: only score volumes of this ``acquisition`` attribute (e.g. ``"AXT1"``).

    Returns:
        ``{"mean": {...}, "std": {...}, "volumes": {file name: {...}}, "count": n, "acquisitions": {file
        name: the file's acquisition attribute or None}}``; ``std`` is over volumes (population).
    """
    per_volume: dict[str, dict[str, float]] = {}
    acquisitions: dict[str, str | None] = {}
    for path, attrs, target, pred_path in paired_files(targets, predictions, target_key(challenge)):
        if acquisition is not None and attrs.get("acquisition") != acquisition:
            continue
        pred = read_prediction(pred_path)
        if pred.shape[0] != target.shape[0]:
            raise DataFormatError(f"{pred_path}: {pred.shape[0]} slices, but the target has {target.shape[0]}")
        per_volume[path.name] = fastmri_volume_metrics(target, pred)
        acquisitions[path.name] = attrs.get("acquisition")
    if not per_volume:
        raise DataFormatError(f"{targets}: no target volume matched (acquisition={acquisition!r})")
    names = sorted(next(iter(per_volume.values())))
    table = np.array([[v[n] for n in names] for v in per_volume.values()])
    return {"mean": dict(zip(names, table.mean(axis=0).tolist())), "std": dict(zip(names, table.std(axis=0).tolist())),
            "volumes": per_volume, "count": len(per_volume), "acquisitions": acquisitions}


def _target(path: Path, key: str) -> tuple[dict, np.ndarray]:
    """The file's attributes and its target volume ``key``: like fastMRI's ``evaluate.py``, only the
    target is needed (a folder of target-only files, as fastMRI distributes its validation targets)."""
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise DataFormatError(f"{path}: no {key!r} target (keys: {sorted(f.keys())})")
            data = np.asarray(f[key][()])
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as err:
        raise DataFormatError(f"{path}: not a readable HDF5 file: {err}") from None
    if data.ndim != 3 or not np.isfinite(data).all():
        raise DataFormatError(f"{path}: {key} must be a finite (slices, H, W) volume, got shape {data.shape}")
    return attrs, data
