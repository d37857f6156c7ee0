"""Time one network evaluation of the shipped priors at batch 1 and batch 16 (the unit the samplers'
overheads are measured in), and a vector-Jacobian product through it (what DPS pays per step).

Median of ``--repeat`` runs after one warm-up, float32, CPU, torch's default thread count (or
``--threads``). Prints a Markdown table and writes it with the raw figures to ``--out``.

    python scripts/bench_priors.py [--out docs/results/bench-priors]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from invdiff.benchmark.report import script_page
from invdiff.priors.shipped import SHIPPED_PRIORS, shipped_prior
from invdiff.timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/bench-priors"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in SHIPPED_PRIORS:
        prior = shipped_prior(name)
        if not hasattr(prior, "denoise"):  # token priors: their cost is in docs/results/aps-images
            continue
        params = sum(p.numel() for p in prior.net.parameters())
        for batch in (1, 16):
            x = torch.randn(batch, *prior.event_shape, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                t_eval = median_seconds(lambda: prior.denoise(x, 0.5), args.repeat)

            def vjp():
                xg = x.clone().requires_grad_(True)
                out = prior.denoise(xg, 0.5)
                torch.autograd.grad(out.sum(), xg)

            t_vjp = median_seconds(vjp, max(1, args.repeat // 2))
            rows.append({"prior": name, "parameters": params, "shape": list(prior.event_shape), "batch": batch,
                         "eval_s": t_eval, "eval_plus_vjp_s": t_vjp})
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    lines = [f"network evaluation, CPU, {meta['threads']} threads, float32, median of {args.repeat}", "",
             "| prior | parameters | image | batch | evaluation | evaluation + VJP |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['prior']} | {r['parameters'] / 1e6:.2f} M | {'x'.join(map(str, r['shape']))} | {r['batch']} "
                     f"| {1000 * r['eval_s']:.0f} ms | {1000 * r['eval_plus_vjp_s']:.0f} ms |")
    script_page(args.out, "Prior evaluation cost", {"meta": meta, "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
