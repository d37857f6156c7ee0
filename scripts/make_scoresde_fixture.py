"""Reference outputs of score-SDE's own NCSN++ code for the score-SDE loader's test (tests/data).

Runs the network of a score-SDE checkout (score-MRI's copy: github.com/HJ-harry/score-MRI, Apache-2.0)
on small configurations with deterministic random weights, and saves the parameter names and shapes,
the inputs and the denoised outputs. Nothing of score-SDE's code is copied: it is imported from
``--score-sde``. Needs ``ml_collections`` on the path; CPU only (its CUDA ops are not built on CPU).

    python scripts/make_scoresde_fixture.py --score-sde /path/to/score-MRI [--out tests/data/scoresde_ncsnpp.pt]

Conventions checked: VE (NCSN++, continuous, data in [0, 1]): D(x, sigma) = x + sigma^2 s(x, sigma);
VP (DDPM++, continuous, data in [-1, 1]): t from the VP SDE's marginal std (score-SDE's eq. 29, by
bisection), the network's
epsilon at labels 999 t on z_t = sqrt(alpha) z, D = z - s epsilon in [-1, 1], with [0, 1] data z = 2x - 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

CONFIGS = {
    "ve": dict(architecture="song-ncsn", sde="vesde", centered=False, embedding_type="fourier", fir=True,
               progressive_input="residual", scale_by_sigma=True),
    "vp": dict(architecture="song-ddpm", sde="vpsde", centered=True, embedding_type="positional", fir=False,
               progressive_input="none", scale_by_sigma=False),
}
SIZE, NF, CH_MULT, BLOCKS, ATTN = 32, 32, (1, 2), 1, (16,)
SIGMAS = (0.01, 0.1, 1.0, 10.0)


def fill(names_shapes: list[tuple[str, tuple[int, ...]]], seed: int) -> dict[str, torch.Tensor]:
    """The deterministic weights both this script and the test build (std 0.05, in this order)."""
    g = torch.Generator().manual_seed(seed)
    return {name: 0.05 * torch.randn(shape, generator=g) for name, shape in names_shapes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--score-sde", required=True, help="a checkout of score-SDE (or score-MRI)")
    parser.add_argument("--out", default="tests/data/scoresde_ncsnpp.pt")
    parser.add_argument("--commit", default=None, help="the checkout's commit, when it is not a git work tree")
    args = parser.parse_args()
    root = Path(args.score_sde).resolve()
    sys.path.insert(0, str(root))
    from configs.ve import fastmri_knee_320_ncsnpp_continuous as base
    from models import ncsnpp

    commit = args.commit or subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                           text=True).stdout.strip()
    fixture = {"source": f"score-SDE's NCSN++ code as copied in score-MRI (github.com/HJ-harry/score-MRI) at commit "
                         f"{commit or 'unknown'}", "cases": {}}
    for case, c in CONFIGS.items():
        cfg = base.get_config()
        cfg.device = torch.device("cpu")
        cfg.data.image_size, cfg.data.centered = SIZE, c["centered"]
        m = cfg.model
        m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions = NF, CH_MULT, BLOCKS, ATTN
        m.embedding_type, m.fir, m.progressive_input, m.scale_by_sigma = (
            c["embedding_type"], c["fir"], c["progressive_input"], c["scale_by_sigma"])
        net = ncsnpp.NCSNpp(cfg).eval()
        names_shapes = [(k, tuple(v.shape)) for k, v in net.state_dict().items() if k != "sigmas"]
        net.load_state_dict(fill(names_shapes, seed=len(case)), strict=False)
        g = torch.Generator().manual_seed(1)
        x = torch.rand(len(SIGMAS), 1, SIZE, SIZE, generator=g)
        sigma = torch.tensor(SIGMAS)
        with torch.no_grad():
            if case == "ve":
                score = net(x, sigma)  # continuous VE: the noise level itself is the conditioning
                denoised = x + sigma.view(-1, 1, 1, 1) ** 2 * score
            else:
                s = 2 * sigma.double()  # [-1, 1] units
                target = s / (1 + s**2).sqrt()  # the marginal std sqrt(1 - alpha) of that noise level
                lo, hi = torch.zeros_like(s), torch.ones_like(s)
                for _ in range(100):
                    mid = (lo + hi) / 2
                    # the VP SDE's marginal std (score-SDE, Song et al. 2021, eq. 29)
                    log_mean = -0.25 * mid**2 * (m.beta_max - m.beta_min) - 0.5 * mid * m.beta_min
                    std = (1 - torch.exp(2 * log_mean)).sqrt()
                    lo, hi = torch.where(std < target, mid, lo), torch.where(std < target, hi, mid)
                t = (lo + hi) / 2
                z = 2 * x - 1
                z_t = (z / (1 + s.view(-1, 1, 1, 1) ** 2).sqrt()).float()
                eps = net(z_t, (999 * t).float())
                denoised = (z - s.view(-1, 1, 1, 1).float() * eps + 1) / 2
        fixture["cases"][case] = {"architecture": c["architecture"], "names_shapes": names_shapes,
                                  "seed": len(case), "x": x, "sigma": sigma, "denoised": denoised}
        print(case, len(names_shapes), "parameters,", float(denoised.abs().max()))
    torch.save(fixture, args.out)
    print("written:", args.out)


if __name__ == "__main__":
    main()
