"""fastMRI slices as samples for the MRI operators, and volumes for reconstruction jobs.

A sample is a dict (so the default DataLoader collate works):

* ``kspace``: float32 ``(2, C, H, W)`` multi-coil or ``(2, H, W)`` single-coil (re, im), as stored;
* ``y``: ``kspace`` times the mask — the measurement of
  :class:`~invdiff.operators.MultiCoilMRI` / :class:`~invdiff.operators.SingleCoilMRI`;
* ``mask``: float32 ``(W,)`` sampled columns;
* ``target``: float32 ``(h, w)`` (absent for test files);
* ``fname``, ``slice``, ``num_low_frequencies``, ``acceleration``, ``recon_size`` ``(h, w)``,
  ``max`` (the target volume's maximum, fastMRI's ``max`` attribute; absent for test files);
* ``coil_maps``: complex64 ``(C, H, W)`` ESPIRiT maps, only when the dataset has a
  :class:`~invdiff.datasets.coil_maps.CoilMapCache`.

The mask is the file's own for test files. Otherwise it comes from a fastMRI mask function seeded
with fastMRI's per-file seed (``tuple(map(ord, fname))``), so every slice of a file shares it and it is
identical to fastMRI's; columns outside the acquired phase encodes (header ``kspace_encoding_step_1``
limits) are never sampled. Without a mask function the data count as fully sampled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset

from invdiff.datasets.coil_maps import CoilMapCache
from invdiff.datasets.fastmri import FastMRIFile, find_fastmri_files
from invdiff.operators.fft import from_complex
from invdiff.operators.masks import MaskFunc, file_seed

__all__ = ["FastMRISliceDataset", "iter_volumes", "slice_mask"]


def slice_mask(file: FastMRIFile, mask_func: MaskFunc | None = None, use_file_mask: bool = True) -> tuple[Tensor, int, float]:
    """The ``(W,)`` column mask for ``file``, its number of centre columns and its acceleration.

    Priority: the file's own mask (test files, when ``use_file_mask``), then ``mask_func`` with the
    per-file seed, then full sampling of the acquired columns.
    """
    w = file.kspace_shape[-1]
    left, right = file.acquired_columns
    if file.mask is not None and use_file_mask:
        mask = file.mask.clone()
        return mask, int(file.attrs.get("num_low_frequency", 0)), float(file.attrs.get("acceleration", w / mask.sum()))
    if mask_func is not None:
        drawn = mask_func(w, seed=file_seed(file.path.name))
        mask, num_low, acc = drawn.columns.clone(), drawn.num_low_frequencies, drawn.acceleration
    else:
        mask, num_low, acc = torch.ones(w), right - left, 1.0
    mask[:left] = 0
    mask[right:] = 0
    return mask, num_low, acc


class FastMRISliceDataset(Dataset):
    """Every slice of one or more fastMRI files (see the module docstring for a sample's keys).

    Args:
        source: a folder of ``.h5`` files, one file, or a list of files.
        mask_func: fastMRI mask function for retrospective undersampling of fully sampled files.
        use_file_mask: use a test file's own mask (and its already masked k-space).
        coil_maps: a :class:`CoilMapCache` to add ESPIRiT ``coil_maps`` to each multi-coil sample.
        target_key: force ``reconstruction_rss`` or ``reconstruction_esc``.
    """

    def __init__(self, source: str | os.PathLike | Iterable[str | os.PathLike], mask_func: MaskFunc | None = None,
                 use_file_mask: bool = True, coil_maps: CoilMapCache | None = None, target_key: str | None = None):
        self.files = [FastMRIFile.open(p, target_key=target_key) for p in find_fastmri_files(source)]
        self.mask_func = mask_func
        self.use_file_mask = use_file_mask
        self.coil_maps = coil_maps
        self._masks = [slice_mask(f, mask_func, use_file_mask) for f in self.files]
        self.index = [(i, s) for i, f in enumerate(self.files) for s in range(f.num_slices)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict:
        file_index, s = self.index[item]
        file = self.files[file_index]
        mask, num_low, acc = self._masks[file_index]
        k = file.kspace(s)
        masked = k * mask.to(k.dtype)
        sample = {
            "kspace": from_complex(k.unsqueeze(0))[0],
            "y": from_complex(masked.unsqueeze(0))[0],
            "mask": mask.clone(),
            "fname": file.path.name,
            "slice": s,
            "num_low_frequencies": num_low,
            "acceleration": acc,
            "recon_size": file.recon_size,
        }
        target = file.target(s)
        if target is not None:
            sample["target"] = target
            if "max" in file.attrs:
                sample["max"] = float(file.attrs["max"])
        if self.coil_maps is not None:
            if not file.multicoil:
                raise ValueError(f"{file.path}: coil maps were requested for a single-coil file")
            sample["coil_maps"] = self.coil_maps.get(file.path, s, masked, mask)
        return sample

    def volume_indices(self, file_index: int) -> list[int]:
        """Dataset indices of the slices of ``self.files[file_index]``, in slice order."""
        return [i for i, (f, _) in enumerate(self.index) if f == file_index]


def iter_volumes(dataset: FastMRISliceDataset) -> Iterator[tuple[FastMRIFile, Iterator[dict]]]:
    """Yield ``(file, slices)`` per volume; ``slices`` reads one slice at a time, in order."""
    for file_index, file in enumerate(dataset.files):
        yield file, (dataset[i] for i in dataset.volume_indices(file_index))
