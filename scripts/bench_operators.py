"""Time invdiff's operators against their peers (deepinv, sigpy, scikit-image) in one run.

For every row, forward + adjoint (or the stated operation) is timed as the median of ``--repeat``
runs after one warm-up, in float32 on the CPU with the threads torch uses by default. Prints a
Markdown table and writes it, with the raw figures, to the results page ``--out`` (atomically).

    python scripts/bench_operators.py [--out docs/results/bench-operators]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import deepinv as dinv
import numpy as np
import torch

from invdiff.benchmark.report import script_page
from invdiff.operators import (Blur, CircularBlur, Downsampling, FanBeamCT, Inpainting, MultiCoilMRI, ParallelBeamCT,
                               SingleCoilMRI, gaussian_kernel, random_pixel_mask)
from invdiff.testing import adjoint_relative_error
from invdiff.timing import median_seconds


def fwd_adj(physics, x: torch.Tensor) -> Callable[[], object]:
    y = physics.A(x)
    return lambda: (physics.A(x), physics.A_adjoint(y))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def row(task: str, size: str, ours: float, peer: str, theirs: float | None, note: str = "") -> dict:
    return {"task": task, "size": size, "ours_ms": 1e3 * ours, "peer": peer,
            "peer_ms": None if theirs is None else 1e3 * theirs,
            "speedup": None if theirs is None else theirs / ours, "note": note}


def bench_ct(repeat: int, n: int = 256, views: int = 180) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    ours = ParallelBeamCT(n, np.arange(views) * 180.0 / views)
    build = time.perf_counter() - t0
    rss1 = peak_rss_mb()
    mem = f"matrix + transpose {ours.memory_bytes / 2**20:.0f} MiB, built in {build:.1f} s (peak RSS +{rss1 - rss0:.0f} MiB)"
    theirs = dinv.physics.Tomography(views, n, adjoint_via_backprop=True, normalize=False)
    approx = dinv.physics.Tomography(views, n, adjoint_via_backprop=False, normalize=False)
    for b in (1, 8):
        x = torch.rand(b, 1, n, n, generator=g)
        err = adjoint_relative_error(ours, x, torch.randn(ours.A(x).shape, generator=g))
        t_ours = median_seconds(fwd_adj(ours, x), repeat)
        rows.append(row("parallel CT A + A^T", f"B={b}, {n}², {views} views", t_ours,
                        "deepinv Tomography (autograd adjoint)", median_seconds(fwd_adj(theirs, x), repeat),
                        f"adjoint rel. error {err:.1e}; {mem}" if b == 1 else f"adjoint rel. error {err:.1e}"))
        rows.append(row("parallel CT A + A^T", f"B={b}, {n}², {views} views", t_ours,
                        "deepinv Tomography (approximate adjoint)", median_seconds(fwd_adj(approx, x), repeat)))
    from skimage.transform import iradon, radon

    img = torch.rand(1, 1, n, n, generator=g)
    theta = np.arange(views) * 180.0 / views
    rows.append(row("parallel CT A", f"B=1, {n}², {views} views", median_seconds(lambda: ours.A(img), repeat),
                    "skimage radon", median_seconds(lambda: radon(img[0, 0].numpy(), theta, circle=False),
                                                    max(1, repeat // 3))))
    sino = ours.A(img)
    rows.append(row("parallel FBP (ramp)", f"B=1, {n}², {views} views", median_seconds(lambda: ours.fbp(sino), repeat),
                    "skimage iradon", median_seconds(lambda: iradon(sino[0, 0].numpy(), theta, circle=False,
                                                                    output_size=n), max(1, repeat // 3))))
    r, sdd, fan_views = 2.0 * n, 4.0 * n, 360
    fan = FanBeamCT(n, np.arange(fan_views) * 360.0 / fan_views, r, sdd)
    d = fan.sinogram_shape[0]
    theirs_fan = dinv.physics.Tomography(
        fan_views, n, adjoint_via_backprop=True, normalize=False, fan_beam=True,
        fan_parameters={"pixel_spacing": 1.0, "source_radius": r, "detector_radius": sdd - r,
                        "n_detector_pixels": d, "detector_spacing": 1.0})
    x = torch.rand(1, 1, n, n, generator=g)
    rows.append(row("fan CT A + A^T", f"B=1, {n}², {fan_views} views, {d} bins", median_seconds(fwd_adj(fan, x), repeat),
                    "deepinv Tomography fan (autograd adjoint)", median_seconds(fwd_adj(theirs_fan, x), repeat),
                    f"matrix + transpose {fan.memory_bytes / 2**20:.0f} MiB"))
    return rows


def bench_mri(repeat: int, n: int = 320, coils: int = 15) -> list[dict]:
    import sigpy.mri.linop

    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(n, generator=g) < 0.25).float()
    x = torch.randn(8, 2, n, n, generator=g)
    rows = [row("single-coil MRI A + A^T", f"B=8, {n}²", median_seconds(fwd_adj(SingleCoilMRI(mask, (n, n)), x), repeat),
                "deepinv MRI", median_seconds(fwd_adj(dinv.physics.MRI(mask=mask.expand(n, n), img_size=(2, n, n)), x),
                                              repeat))]
    maps = torch.randn(coils, n, n, dtype=torch.complex64, generator=g)
    x1 = x[:1]
    ours = MultiCoilMRI(mask, maps)
    t_ours = median_seconds(fwd_adj(ours, x1), repeat)
    theirs = dinv.physics.MultiCoilMRI(mask=mask.expand(n, n), coil_maps=maps[None], img_size=(n, n))
    rows.append(row("multi-coil MRI A + A^T", f"B=1, {coils} coils, {n}²", t_ours, "deepinv MultiCoilMRI",
                    median_seconds(fwd_adj(theirs, x1), repeat)))
    sense = sigpy.mri.linop.Sense(maps.numpy(), weights=mask.expand(n, n).numpy())
    z = (x1[0, 0] + 1j * x1[0, 1]).numpy()
    k = sense * z
    rows.append(row("multi-coil MRI A + A^T", f"B=1, {coils} coils, {n}²", t_ours, "sigpy Sense (numpy)",
                    median_seconds(lambda: (sense * z, sense.H * k), repeat)))
    # the normal operator A^T A: what CG-SENSE, ΠGDM's pseudo-inverse and PnP-DM's proximal step iterate
    t_normal = median_seconds(lambda: ours.A_adjoint_A(x1), repeat)
    rows.append(row("multi-coil MRI AᵀA", f"B=1, {coils} coils, {n}²", t_normal, "deepinv MultiCoilMRI",
                    median_seconds(lambda: theirs.A_adjoint_A(x1), repeat)))
    normal = sense.H * sense
    rows.append(row("multi-coil MRI AᵀA", f"B=1, {coils} coils, {n}²", t_normal, "sigpy Sense (numpy)",
                    median_seconds(lambda: normal * z, repeat)))
    return rows


def bench_blur(repeat: int, n: int = 256) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, n, n, generator=g)
    k = gaussian_kernel(3.0, 31, dtype=torch.float32)
    rows = [row("circular blur A + A^T", f"B=8, 3×{n}², 31² kernel",
                median_seconds(fwd_adj(CircularBlur(k, (n, n)), x), repeat), "deepinv BlurFFT",
                median_seconds(fwd_adj(dinv.physics.BlurFFT(img_size=(3, n, n), filter=k), x), repeat))]
    rows.append(row("valid blur A + A^T", f"B=8, 3×{n}², 31² kernel",
                    median_seconds(fwd_adj(Blur(k, (n, n), "valid"), x), repeat), "deepinv Blur (valid)",
                    median_seconds(fwd_adj(dinv.physics.Blur(filter=k, padding="valid"), x), repeat)))
    mask = random_pixel_mask((n, n), 0.3, g)
    rows.append(row("inpainting A + A^T", f"B=8, 3×{n}²", median_seconds(fwd_adj(Inpainting(mask), x), repeat),
                    "deepinv Inpainting", median_seconds(fwd_adj(dinv.physics.Inpainting(img_size=(3, n, n),
                                                                                         mask=mask), x), repeat)))
    rows.append(row("×4 box downsampling A + A^T", f"B=8, 3×{n}²",
                    median_seconds(fwd_adj(Downsampling(4, (n, n)), x), repeat), "deepinv Downsampling (filter=None)",
                    median_seconds(fwd_adj(dinv.physics.Downsampling(img_size=(3, n, n), factor=4, filter=None), x),
                                   repeat), "not the same operator: deepinv's filter=None decimates without averaging"))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| task | size | invdiff (ms) | peer | peer (ms) | speed-up | note |", "|---|---|---:|---|---:|---:|---|"]
    for r in rows:
        peer_ms = "—" if r["peer_ms"] is None else f"{r['peer_ms']:.1f}"
        speed = "—" if r["speedup"] is None else f"{r['speedup']:.1f}×"
        lines.append(f"| {r['task']} | {r['size']} | {r['ours_ms']:.1f} | {r['peer']} | {peer_ms} | {speed} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/bench-operators"))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=["ct", "mri", "blur"], action="append")
    args = parser.parse_args(argv)
    benches = {"ct": bench_ct, "mri": bench_mri, "blur": bench_blur}
    rows = []
    for name in args.only or list(benches):
        rows += benches[name](args.repeat)
    env = {"torch": torch.__version__, "deepinv": dinv.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    script_page(args.out, "Operators against their peers", {"environment": env, "rows": rows}, markdown(rows),
                f"Environment: {json.dumps(env)}; median of {args.repeat} runs, float32, CPU.")


if __name__ == "__main__":
    main()
