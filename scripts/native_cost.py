"""Cost of reconstructing one native-size fastMRI brain slice (320 x 320, 15 coils) on this machine.

For each sampler, ``invdiff reconstruct`` runs in a child process on one slice of the native test file
(``python scripts/make_native_testset.py`` first) at ``--steps`` network evaluations; the page records
its wall time (set-up, i.e. ESPIRiT coil maps, and sampler separately, from the run's JSON) and the
child's peak resident memory. With ``--volume-slices N`` (default 35, a fastMRI brain volume's depth) it
also writes an N-slice file of the same geometry (axial slices of the held-out Colin27 volume, every
4th, simulated as the test set is) and reconstructs the whole volume with ``--volume-sampler`` at
``--volume-steps`` evaluations in the default slice groups of 8 (:mod:`invdiff.reconstruct.budget`):
the measured peak memory of a whole volume, beside the budget's estimate of one group. Few steps
suffice there: the peak is one group's working set whatever the number of steps.

    python scripts/native_cost.py [--samplers red-diff dps] [--steps 100] [--threads 1] \
        [--volume-slices 35 --volume-sampler dps --volume-steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from invdiff.benchmark.report import script_page
from invdiff.reconstruct.budget import default_group_size, group_bytes

_CHILD = ("import resource, sys; from invdiff.cli import main; code = main(sys.argv[1:]); "
          "print('MAXRSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
DATA = Path("outputs/native-brain/multicoil_test/file_brain_AXT1_colin27_test.h5")


def measure(sampler: str, steps: int, threads: int, data: Path, slices: str | None = "1") -> dict:
    """One ``invdiff reconstruct`` child process on ``data`` (``slices``: its ``--slices``, None for all)."""
    with tempfile.TemporaryDirectory() as out:
        # the child reports its own peak resident set (RUSAGE_CHILDREN would give the largest child so far)
        command = [sys.executable, "-c", _CHILD, "reconstruct", str(data), "--sampler", sampler, "--steps",
                   str(steps), "--out", out, "--quiet"] + (["--slices", slices] if slices else [])
        start = time.perf_counter()
        done = subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak_kib = int(done.stdout.rsplit("MAXRSS_KIB", 1)[1].split()[0])
        summary = json.loads(next(p for p in Path(out).glob("*.json") if p.name != "run.json").read_text())
    return {"sampler": sampler, "steps": steps, "threads": threads, "slices": len(summary["input"]["slices"]),
            "wall_s": round(wall, 1),
            "setup_s": summary["measurement"].get("setup_s"), "sampler_s": summary["costs"]["sampler_wall_time_s"],
            "network_evals": summary["costs"]["network_evals"], "vjps": summary["costs"]["vjps"],
            "peak_rss_gib": round(peak_kib / 2**20, 2),
            "psnr": round(summary["metrics"]["mean"]["PSNR"], 2)}


def write_volume(folder: Path, slices: int) -> Path:
    """An ``slices``-deep multi-coil file of the test set's geometry (scripts/make_native_testset.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_native_testset import MULTICOIL, PIXEL_MM, SIZE

    from invdiff.datasets.anatomy import load_anatomy
    from invdiff.datasets.simulate import simulate_multicoil, write_fastmri_file

    volume = load_anatomy("colin27_t1_05mm", size=SIZE, pixel_mm=PIXEL_MM)
    first = max(0, volume.shape[0] // 2 - 2 * slices)
    picked = volume[first:first + 4 * slices:4]
    return write_fastmri_file(folder / "file_brain_AXT1_colin27_volume.h5", simulate_multicoil(picked, MULTICOIL),
                              acquisition="AXT1", patient_id="colin27-volume", fov_mm=PIXEL_MM * SIZE,
                              provenance={"source": "colin27_t1_05mm", "axial_slices_05mm": [first, 4 * slices, 4],
                                          "script": "scripts/native_cost.py"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="*", default=["red-diff", "dps"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--volume-slices", type=int, default=35, help="0: skip the whole-volume run")
    parser.add_argument("--volume-sampler", default="dps")
    parser.add_argument("--volume-steps", type=int, default=2)
    parser.add_argument("--keep-earlier", action="store_true",
                        help="keep the one-slice rows of samplers not re-run from the page's results.json")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("docs/results/native-cost"))
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: missing; run python scripts/make_native_testset.py first")
    earlier = []
    if args.keep_earlier and (args.out / "results.json").is_file():  # one-slice rows of samplers not re-run
        earlier = [dict(r, earlier_run=True) for r in json.loads((args.out / "results.json").read_text())
                   if r.get("slices") == 1 and r["sampler"] not in args.samplers]
    rows = earlier + [measure(s, args.steps, args.threads, args.data) for s in args.samplers]
    if args.volume_slices:
        with tempfile.TemporaryDirectory() as folder:
            volume = write_volume(Path(folder), args.volume_slices)
            rows.append(measure(args.volume_sampler, args.volume_steps, args.threads, volume, slices=None))
    print(json.dumps(rows), flush=True)  # the measurements, before anything can fail while writing the page
    lines = ["| sampler | slices | network evals | VJPs | set-up (s) | sampler (s) | wall (s) | "
             "peak memory (GiB) | PSNR (dB) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sampler']}{' (earlier run)' if r.get('earlier_run') else ''} | {r['slices']} | {r['network_evals']} | {r['vjps']} | {r['setup_s']} | "
                     f"{r['sampler_s']} | {r['wall_s']} | {r['peak_rss_gib']}{'' if r.get('peak_is_new_max', True) else ' (≤: an earlier child peaked higher)'} | "
                     f"{r['psnr']} |")
    names = sorted({*args.samplers, args.volume_sampler})
    per_slice = {s: group_bytes((320, 320), 1, 1, s == "dps", 15, (640, 320)) for s in names}
    group = {s: (default_group_size(35, b), default_group_size(35, b) * b / 2**30) for s, b in per_slice.items()}
    notes = (f"One slice (index 1) of `{args.data}`, {args.threads} torch threads, this machine's CPU. Peak memory is "
             "the child process's maximum resident set (the whole CLI: Python, torch, the file, ESPIRiT, the "
             "sampler). A whole volume runs in slice groups (`--batch-slices`; by default up to 8 slices whose "
             "estimated working set stays under 4 GiB), each estimated before it starts and refused over "
             "`--max-memory`: the default group at this geometry and its estimate: "
             + ", ".join(f"{s} {n} slices, {v:.2f} GiB" for s, (n, v) in group.items())
             + f"; a {args.volume_slices or 35}-slice volume runs as such groups one after another, so its peak is "
             "one group's (the last row, when present, measures it)."
             + (" Rows marked *earlier run* are kept from the page's previous run (`--keep-earlier`; see git log "
                "of this page for its commit)." if earlier else ""))
    script_page(args.out, "Cost of one native-size slice (320 x 320, 15 coils)", rows, "\n".join(lines), notes)


if __name__ == "__main__":
    main()
