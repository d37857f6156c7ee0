"""Every figure invdiff writes, drawn from arrays, written atomically as PNG.

Figures are built with matplotlib's object interface (:class:`matplotlib.figure.Figure`), never through
``pyplot``: nothing here selects a backend or touches pyplot's global figure list, so calling these
functions from a notebook leaves its inline plotting as it was. Only the ``invdiff`` command chooses
a backend.

Conventions: images are 2-D arrays in data units; grey-scale panels share one window (0 to the
99.5th percentile of the reference images unless given); ``"std"`` and ``"error"`` panels use the
magma map from 0 with a colour bar, so their scale is read off the figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from invdiff.io import atomic_write

__all__ = ["calibration_figure", "gmm_scatter", "image_grid", "labelled_grid", "quality_figure", "slice_figure",
           "wrapped_rows"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig, path: str | Path, dpi: int) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _top(image: np.ndarray) -> float:
    return max(float(np.percentile(image, 99.5)), 1e-12)


def _panel(fig, ax, image: np.ndarray, kind: str, vmax: float) -> None:
    """Grey on ``[0, vmax]`` for ``"image"``; black and red on ``[0, 1]`` for ``"mask"`` (a boolean map);
    magma from 0 to the panel's 99.5th percentile with a colour bar otherwise."""
    if kind == "image":
        ax.imshow(image, cmap="gray", vmin=0, vmax=vmax)
    elif kind == "mask":
        from matplotlib.colors import ListedColormap

        ax.imshow(np.asarray(image, dtype=float), cmap=ListedColormap(["black", "red"]), vmin=0, vmax=1)
    else:
        shown = ax.imshow(image, cmap="magma", vmin=0, vmax=_top(image))
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)


def slice_figure(path: str | Path, panels: Sequence[tuple[str, np.ndarray, str]], title: str, dpi: int = 80) -> Path:
    """One row of panels ``(caption, image, kind)``; kind ``"image"`` (grey, a window shared by all image
    panels), ``"std"`` or ``"error"`` (magma from 0, with a colour bar) or ``"mask"`` (red where true)."""
    images = [p[1] for p in panels if p[2] == "image"]
    vmax = max(_top(im) for im in images) if images else 1.0
    fig = _figure(2.9 * len(panels), 2.9)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (caption, image, kind) in zip(axes, panels):
        _panel(fig, ax, image, kind, vmax)
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def image_grid(path: str | Path, rows: Sequence[Sequence[np.ndarray]], vmin: float, vmax: float, title: str,
               cell: float = 2.2, dpi: int = 100) -> Path:
    """Rows of grey-scale images on one window ``[vmin, vmax]`` (prior samples, tokenizer reconstructions)."""
    cols = max(len(r) for r in rows)
    fig = _figure(cell * cols, cell * len(rows) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(rows), cols, squeeze=False))
    for ax in axes.flat:
        ax.axis("off")
    for r, row in enumerate(rows):
        for j, image in enumerate(row):
            axes[r, j].imshow(np.asarray(image), cmap="gray", vmin=vmin, vmax=vmax)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)


def wrapped_rows(images: Sequence[np.ndarray], cols: int) -> list[list[np.ndarray]]:
    """``images`` in rows of at most ``cols``."""
    return [list(images[i * cols:(i + 1) * cols]) for i in range(math.ceil(len(images) / cols))]


def labelled_grid(path: str | Path, cells: Sequence[Sequence[tuple[str, np.ndarray | None]]], kind: str,
                  vmax: float, title: str, dpi: int = 80) -> Path:
    """A grid of captioned panels (benchmark figures: one row per budget, one column per method);
    ``None`` leaves a panel empty. ``kind`` ``"image"`` (grey, ``[0, vmax]``) or ``"std"`` (magma, each
    panel from 0 to its own 99.5th percentile, with a colour bar)."""
    rows, cols = len(cells), max(len(r) for r in cells)
    fig = _figure(2.3 * cols, 2.7 * rows)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for i, row in enumerate(cells):
        for j, (caption, image) in enumerate(row):
            ax = axes[i, j]
            if image is not None:
                _panel(fig, ax, image, kind, vmax)
            ax.set_title(caption, fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def gmm_scatter(path: str | Path, prior_samples: np.ndarray, exact: np.ndarray, sampled: np.ndarray,
                dpi: int = 110) -> Path:
    """The first two coordinates of prior, exact-posterior and sampled-posterior draws ``(n, d)``."""
    fig = _figure(5, 5)
    ax = fig.subplots()
    ax.scatter(prior_samples[:, 0], prior_samples[:, 1], s=2, c="0.8", label="prior")
    ax.scatter(exact[:2000, 0], exact[:2000, 1], s=3, c="tab:blue", label="exact posterior")
    ax.scatter(sampled[:2000, 0], sampled[:2000, 1], s=3, c="tab:orange", alpha=0.5, label="sampled posterior")
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Gaussian-mixture posterior: exact vs sampled")
    fig.tight_layout()
    return _save(fig, path, dpi)


def curve_styles(labels: Sequence[str], group_sep: str | None = None) -> list[tuple[str, int]]:
    """Per label, a matplotlib format (marker and line style) and a colour index: without ``group_sep``
    every label its own colour, solid; with it, labels ``"GROUP<sep>VARIANT"`` (split at the last ``sep``)
    share the group's colour and take the variant's style (solid, dashed, dotted by first appearance)."""
    groups: dict[str, int] = {}
    variants: dict[str, int] = {}
    styles = []
    for label in labels:
        group, variant = label.rsplit(group_sep, 1) if group_sep and group_sep in label else (label, "")
        g = groups.setdefault(group, len(groups))
        v = variants.setdefault(variant, len(variants)) if group_sep else 0
        styles.append((("o-", "s--", "^:")[v % 3], g))
    return styles


def calibration_figure(path: str | Path, curves: dict[str, dict[float, float]], title: str, dpi: int = 90,
                       ylabel: str = "fraction of object pixels covered", group_sep: str | None = None) -> Path:
    """Empirical against nominal coverage of central credible intervals, one curve per label, beside the
    diagonal a calibrated sampler follows.

    ``group_sep``: labels ``"GROUP<sep>VARIANT"`` (split at the last ``sep``) share one colour per group and
    take one line style per variant (solid, dashed, dotted, in order of first appearance), so that e.g. a
    sampler's uncalibrated and calibrated curves read as a pair however many samplers there are.
    """
    from matplotlib import colormaps

    fig = _figure(5, 4.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    for (label, cov), (fmt, g) in zip(curves.items(), curve_styles(list(curves), group_sep)):
        levels = sorted(cov)
        colour = f"C{g}" if g < 10 else colormaps["tab20b"](g - 10)
        ax.plot(levels, [cov[k] for k in levels], fmt, color=colour, label=label, markersize=4)
    ax.set_xlabel("nominal level of the central interval")
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def quality_figure(path: str | Path, curves: dict[str, dict[int, tuple[float, float]]], baselines: dict[str, float],
                   title: str, metric: str = "PSNR (dB)", dpi: int = 90) -> Path:
    """Quality against cost: ``curves`` label -> {network evaluations: (score, wall seconds)}, one line per
    sampler over its budgets, against the evaluations (left) and the wall time (right), both on log axes;
    ``baselines`` label -> score, as horizontal lines (methods without a network)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    fig = _figure(10, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, k, xlabel in ((axes[0], 0, "network evaluations"), (axes[1], 1, "wall time per cell (s)")):
        for label, points in curves.items():
            budgets = sorted(points)
            x = budgets if k == 0 else [points[b][1] for b in budgets]
            ax.plot(x, [points[b][0] for b in budgets], "o-", label=label)
        for i, (label, score) in enumerate(baselines.items()):
            ax.axhline(score, color=f"C{(len(curves) + i) % 10}", ls="--", lw=1, label=label)
        ax.set_xscale("log")
        if k == 0:  # the budgets themselves, not 6x10^1
            ax.xaxis.set_major_locator(FixedLocator(sorted({b for points in curves.values() for b in points})))
        else:
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    axes[1].legend(loc="lower right", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)
