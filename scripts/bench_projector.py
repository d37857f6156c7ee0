"""CT projector cost at clinical sizes: the matrix-free Joseph projector, the stored sparse matrix, and
deepinv's ``Tomography``, in one run.

Each (geometry, projector) cell runs in a child process, so that its peak resident memory is its own:
build time, then the median of ``--repeat`` products ``A x`` and ``A^T y`` for one float32 image.
A stored matrix whose estimated build peak exceeds ``--max-gib`` is not built (its estimate is
recorded instead). Agreement with the stored matrix is checked where both ran (max relative difference
of ``A x``), and the adjoint of every projector as ``|<Ax, y> - <x, A^T y>| / |<Ax, y>|``.

    python scripts/bench_projector.py [--threads 2] [--repeat 3] [--max-gib 12] [--out docs/results/ct-projector]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from invdiff.benchmark.report import script_page

CASES = {  # name -> (image size, views, geometry, detector bins or None for the default)
    "256² / 180 views, parallel": (256, 180, "parallel", None),
    "512² / 360 views, parallel": (512, 360, "parallel", None),
    "512² / 720 views, parallel": (512, 720, "parallel", None),
    "512² / 360 views, fan, 1024 bins": (512, 360, "fan", 1024),
    "512² / 720 views, fan, 1024 bins": (512, 720, "fan", 1024),
}
#: cases that skip deepinv (a reference for the stored matrix only: deepinv's build alone takes minutes)
NO_DEEPINV = {"512² / 360 views, fan, 1024 bins"}

_CHILD = r"""
import json, resource, sys, time
import torch
from invdiff.operators import FanBeamCT, ParallelBeamCT, sparse_view_angles
from invdiff.timing import median_seconds
n, views, geometry, bins, projector, repeat = json.loads(sys.argv[1])
g = torch.Generator().manual_seed(0)
start = time.perf_counter()
if projector == "deepinv":
    import deepinv as dinv
    angles = torch.tensor(sparse_view_angles(views, 360.0 if geometry == "fan" else 180.0))
    kw = dict(fan_beam=True, fan_parameters={"pixel_spacing": 1.0, "source_radius": 2.0 * n,
              "detector_radius": 2.0 * n, "n_detector_pixels": bins, "detector_spacing": 1.0}) if geometry == "fan" else {}
    op = dinv.physics.Tomography(angles, n, circle=False, **kw)
else:
    kernel = "grid_sample" if projector == "matrix-free (grid_sample)" else "auto"
    kw = dict(projector=projector.split(" ")[0], kernel=kernel)
    if geometry == "fan":
        op = FanBeamCT(n, sparse_view_angles(views, 360.0), 2.0 * n, 4.0 * n, num_detectors=bins, **kw)
    else:
        op = ParallelBeamCT(n, sparse_view_angles(views), **kw)
build = time.perf_counter() - start
x = torch.rand(1, 1, n, n, generator=g)
with torch.no_grad():
    ax = op.A(x)
    y = torch.rand(ax.shape, generator=g)
    t_a = median_seconds(lambda: op.A(x), repeat)
    t_at = median_seconds(lambda: op.A_adjoint(y), repeat)
    aty = op.A_adjoint(y)
lhs, rhs = float((ax.double() * y.double()).sum()), float((x.double() * aty.double()).sum())
torch.save(ax, sys.argv[2])
print(json.dumps({"build_s": round(build, 2), "A_s": round(t_a, 3), "AT_s": round(t_at, 3),
                  "adjoint_rel": abs(lhs - rhs) / abs(lhs), "sinogram": list(ax.shape[-2:]), "rays": ax.shape[-2] * ax.shape[-1],
                  "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))
"""


def stored_estimate_gib(n: int, views: int, geometry: str, bins: int | None) -> float:
    from invdiff.operators.ct import _BUILD_PEAK_FACTOR
    from invdiff.operators.ct_geometry import default_num_detectors
    from invdiff.operators.ct_projector import stored_matrix_bytes

    d = bins or (default_num_detectors(n, 2.0 * n, 4.0 * n) if geometry == "fan" else default_num_detectors(n))
    return _BUILD_PEAK_FACTOR * stored_matrix_bytes(d * views, n) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-gib", type=float, default=12.0, help="build a stored matrix only below this estimate")
    parser.add_argument("--out", default="docs/results/ct-projector")
    parser.add_argument("--note", default="", help="a sentence added to the page's notes (e.g. the machine's load)")
    args = parser.parse_args()
    import tempfile

    import torch

    torch.set_num_threads(args.threads)  # the page's header reports this process's count: the children's
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for name, (n, views, geometry, bins) in CASES.items():
        outputs = {}
        for projector in ("matrix-free", "matrix-free (grid_sample)", "matrix", "deepinv"):
            if projector == "deepinv" and name in NO_DEEPINV:
                continue
            row = {"case": name, "projector": projector}
            estimate = stored_estimate_gib(n, views, geometry, bins)
            if projector == "matrix" and estimate > args.max_gib:
                row.update(status=f"not built: estimated build peak {estimate:.1f} GiB > {args.max_gib:g}")
                rows.append(row)
                print(row, flush=True)
                continue
            with tempfile.NamedTemporaryFile(suffix=".pt") as tmp:
                done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([n, views, geometry, bins, projector,
                                                                                 args.repeat]), tmp.name],
                                      env=env, capture_output=True, text=True)
                if done.returncode:
                    row.update(status="failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:200])
                else:
                    row.update(status="ran", **json.loads(done.stdout.strip().splitlines()[-1]))
                    outputs[projector] = torch.load(tmp.name, weights_only=True)
            if projector == "matrix-free" and "matrix-free" in outputs:
                row["stored_estimate_gib"] = round(estimate, 1)
            rows.append(row)
            print(row, flush=True)
        for free in ("matrix-free", "matrix-free (grid_sample)"):
            if "matrix" in outputs and free in outputs:
                ref = outputs["matrix"]
                agree = float((outputs[free] - ref).abs().max() / ref.abs().max())
                for r in rows:
                    if r["case"] == name and r["projector"] == free:
                        r["vs_stored_rel"] = agree
    # time per ray against the stored matrix of the same image size and geometry (the largest that ran)
    def kind(case: str) -> tuple:
        n, _, geometry, bins = CASES[case]
        return n, geometry, bins

    stored = {kind(r["case"]): r for r in rows if r["projector"] == "matrix" and r["status"] == "ran"}
    for r in rows:
        ref = stored.get(kind(r["case"]))
        if r["status"] == "ran" and ref is not None and r["projector"] != "matrix":
            for key in ("A_s", "AT_s"):
                r[key.replace("_s", "_vs_stored")] = round((r[key] / r["rays"]) / (ref[key] / ref["rays"]), 2)
            r["stored_case"] = ref["case"]
    lines = ["| case | projector | status | build (s) | A (s) | Aᵀ (s) | A, Aᵀ per ray ÷ stored | peak (GiB) | "
             "adjoint rel. err. | vs stored |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['A_vs_stored']}×, {r['AT_vs_stored']}×" if "A_vs_stored" in r else ""
        lines.append(f"| {r['case']} | {r['projector']} | {r['status']} | {r.get('build_s', '')} | {r.get('A_s', '')} | "
                     f"{r.get('AT_s', '')} | {ratio} | {r.get('peak_gib', '')} | "
                     f"{format(r['adjoint_rel'], '.1e') if 'adjoint_rel' in r else ''} | "
                     f"{format(r['vs_stored_rel'], '.1e') if 'vs_stored_rel' in r else ''} |")
    notes = (f"One float32 image, {args.threads} thread(s), median of {args.repeat} products after a warm-up; peak = "
             "the child process's maximum resident set (Python, torch and the operator). deepinv's Tomography "
             "(fan beam: source and detector at 2n from the axis) is a rotation-and-sum projector with another "
             "discretisation, so only its cost is comparable; its adjoint is a true adjoint. The stored matrix's "
             "build peak is estimated as 2.2x its size (measured at 256², 180 views and 512², 360 views). "
             "'matrix-free' is the compiled kernel (numba, operators/ct_kernels.py) that invdiff uses on the CPU; "
             "'matrix-free (grid_sample)' the torch kernel it uses on other devices. 'per ray ÷ stored': time per "
             "ray (view × bin) over the stored matrix's for the same image size and geometry, where a stored matrix "
             "ran (at 720 views it is not built within the memory limit, so the 360-view matrix is the reference; "
             "the fan beam's 360-view case runs for that reference, without deepinv)."
             + (f" {args.note}" if args.note else ""))
    script_page(args.out, "CT projectors at clinical sizes: matrix-free, stored matrix, deepinv", rows,
                "\n".join(lines), notes)


if __name__ == "__main__":
    main()
