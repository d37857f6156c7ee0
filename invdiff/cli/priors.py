"""``invdiff priors``: list the shipped and converted priors, describe a checkpoint, convert a published
checkpoint (ADM, EDM, diffusers) into invdiff's format with its provenance."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

EPILOG = """examples:
  invdiff priors list
  invdiff priors info fastmri_knee_320_complex_1m.pt
  invdiff priors convert fastmri_knee_320_complex_1m.pt --name dds-knee
  invdiff reconstruct scan.h5 --prior dds-knee --sampler dds
  invdiff priors convert weights.pt --config my_edm.json --out prior.pt

A published checkpoint is recognised by its parameter names and shapes against the known presets
(invdiff priors list shows them); a configuration no preset has is given with --config JSON
({"family": "adm" | "edm", "config": {...}, "scale": s, "offset": o, "data_range": [lo, hi]}).
Files are read without running code from them: safetensors, or torch.load(weights_only=True)."""


def _pair(text: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in text.split(","))
    return lo, hi


def add_parser(sub) -> None:
    p = sub.add_parser("priors", help="list, describe and convert diffusion priors (shipped, converted, published)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="List, describe and convert diffusion priors.")
    ps = p.add_subparsers(dest="action", required=True)
    ps.add_parser("list", help="shipped priors, converted priors in the cache, and the published presets")
    info = ps.add_parser("info", help="family, architecture, shapes, noise range, data scaling, provenance")
    convert = ps.add_parser("convert", help="a published checkpoint as an invdiff prior file")
    for q in (info, convert):
        q.add_argument("file", help="a weights file, a diffusers folder, or (info) an invdiff prior")
        q.add_argument("--family", default=None, help="adm, edm or diffusers (default: recognised)")
        q.add_argument("--preset", default=None, help="a preset of the family (default: matched by shapes)")
        q.add_argument("--config", default=None, metavar="JSON", help="the network config and data scaling, for a "
                       "checkpoint no preset describes")
    convert.add_argument("--out", default=None, help="the prior file to write (default: NAME.pt in the prior cache)")
    convert.add_argument("--name", default=None, help="its name in the prior cache (default: the preset, or the "
                         "file's name)")
    convert.add_argument("--pixel-size", type=_pair, default=None, metavar="LO,HI",
                         help="pixel sizes (mm) the prior serves, when known: recorded and checked against data")
    p.set_defaults(func=run_command)


def _invdiff_info(path: Path) -> dict | None:
    import torch

    from invdiff.priors.checkpoint import FORMAT, check_payload

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return None
    payload = check_payload(payload, path)
    state = payload["state_dict"]
    return {"file": str(path), "format": f"{FORMAT} v{payload['version']}", "architecture": payload["architecture"],
            "parameters": sum(int(v.numel()) for v in state.values() if v.is_floating_point()),
            "image_shape": payload["event_shape"], "normalization": payload["normalization"],
            "data_range": payload.get("data_range"), "pixel_size_mm": payload.get("pixel_size_mm"),
            "prediction": payload.get("prediction"), "provenance": payload.get("provenance", {})}


def _print(d: dict) -> None:
    for key, value in d.items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else value
        print(f"{key:>15}: {text}")


def run_command(args: argparse.Namespace) -> int:
    from invdiff.priors.families import FAMILIES, PRESETS, convert, describe, identify
    from invdiff.priors.shipped import SHIPPED_PRIORS, cached_priors, prior_cache

    if args.action == "list":
        print("shipped:")
        for name, p in SHIPPED_PRIORS.items():
            pixels = f"; {p.pixel_size_mm[0]:.3g}-{p.pixel_size_mm[1]:.3g} mm pixels" if p.pixel_size_mm else ""
            print(f"  {name:<24} {p.description}{pixels}")
        cached = cached_priors()
        print(f"converted ({prior_cache()}):" + ("" if cached else " none"))
        for name, path in cached.items():
            info = _invdiff_info(path) or {}
            source = info.get("provenance", {}).get("converted_from", {}).get("description", "")
            print(f"  {name:<24} {info.get('architecture', 'unreadable')} {info.get('image_shape', '')} {source}")
        print("published families (invdiff priors convert FILE):")
        for family, text in FAMILIES.items():
            print(f"  {family:<10} {text}")
            for preset, entry in PRESETS.get(family, {}).items():
                print(f"    {preset:<22} {entry['description']}")
        return 0
    path = Path(args.file)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if args.action == "info":
        info = _invdiff_info(path) if path.is_file() and not (args.family or args.preset or args.config) else None
        if info is None:
            start = time.perf_counter()
            ckpt = identify(path, args.family, args.preset, args.config)
            info = {**describe(ckpt), "read_seconds": round(time.perf_counter() - start, 2)}
        _print(info)
        return 0
    start = time.perf_counter()
    ckpt = identify(path, args.family, args.preset, args.config)
    if args.pixel_size is not None:
        lo, hi = args.pixel_size
        if not 0 < lo <= hi:
            raise ValueError(f"--pixel-size must be LO,HI with 0 < LO <= HI, got {args.pixel_size}")
        ckpt.pixel_size_mm = (lo, hi)
    name = args.name or ckpt.preset or path.stem
    out = Path(args.out) if args.out else prior_cache() / f"{name}.pt"
    if out.suffix != ".pt":
        raise ValueError(f"--out must name a .pt file, got {out}")
    written = convert(ckpt, out, provenance={"command": "invdiff " + " ".join(getattr(args, "argv", []))})
    print(f"{ckpt.family} ({ckpt.preset or 'explicit config'}), {ckpt.num_parameters / 1e6:.1f} M parameters, "
          f"read and checked in {time.perf_counter() - start:.1f} s")
    print(f"written: {written}" + ("" if args.out else f"  (use it as --prior {name})"))
    return 0
