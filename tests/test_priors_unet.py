"""UNetPrior's VP -> EDM conversion and the prior checkpoint format."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from invdiff.priors import CheckpointError, UNetConfig, UNetPrior, load_prior, save_prior
from invdiff.schedule import VPSchedule

SCHEDULE = VPSchedule.linear(num_steps=1000)
TINY = UNetConfig(in_channels=2, channels=(8, 16), attention_levels=(False, True), num_res_blocks=1,
                  norm_num_groups=8, num_head_channels=8)


def _oracle_net(z0, sigma_z, prediction):
    """A network that knows z0: from z_t it recovers eps = (z_t - sqrt(abar) z0) / sqrt(1 - abar)."""
    abar = 1 / (1 + sigma_z**2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, z_t, t):
            eps = (z_t - math.sqrt(abar) * z0) / math.sqrt(1 - abar)
            return eps if prediction == "epsilon" else math.sqrt(abar) * eps - math.sqrt(1 - abar) * z0

    return Net()


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_exact_network_gives_the_clean_image_in_data_units(prediction):
    g = torch.Generator().manual_seed(0)
    x0 = 3.0 + 2.0 * torch.randn(2, 2, 8, 8, generator=g, dtype=torch.float64)
    scale, offset, sigma = 2.0, 3.0, 0.7
    z0 = (x0 - offset) / scale
    prior = UNetPrior(_oracle_net(z0, sigma / scale, prediction), SCHEDULE, (2, 8, 8), prediction, scale, offset)
    x = x0 + sigma * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(prior.denoise(x, sigma), x0, rtol=1e-10, atol=1e-10)
    # Tweedie: the score is (x0 - x) / sigma^2
    torch.testing.assert_close(prior.score(x, sigma), (x0 - x) / sigma**2, rtol=1e-9, atol=1e-9)


def test_timestep_matches_the_noise_level():
    seen = {}

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, z_t, t):
            seen["t"] = t
            return torch.zeros_like(z_t)

    prior = UNetPrior(Spy(), SCHEDULE, (1, 4, 4))
    sigmas = SCHEDULE.sigmas[[10, 500, 999]]
    prior.denoise(torch.zeros(3, 1, 4, 4, dtype=torch.float64), sigmas)
    torch.testing.assert_close(seen["t"], torch.tensor([10.0, 500.0, 999.0], dtype=torch.float64))


def test_wrong_shape_and_settings_are_rejected():
    with pytest.raises(ValueError, match="prediction"):
        UNetPrior(TINY.build(), SCHEDULE, (2, 16, 16), "x0")
    prior = UNetPrior(TINY.build(), SCHEDULE, (2, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 2, 16, 16\)"):
        prior.denoise(torch.zeros(1, 2, 8, 8), 0.5)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    net = TINY.build().eval()
    prior = UNetPrior(net, SCHEDULE, (2, 16, 16), "v", 0.5, 0.1, TINY, (0.0, 1.0))
    path = save_prior(tmp_path / "prior.pt", prior, provenance={"data": "test"}, training={"step": 3})
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "invdiff-prior" and payload["version"] == 1 and payload["training"]["step"] == 3
    loaded = load_prior(path)
    assert loaded.prediction == "v" and loaded.scale == 0.5 and loaded.offset == 0.1
    assert loaded.event_shape == (2, 16, 16) and loaded.data_range == (0.0, 1.0) and loaded.config == TINY
    torch.testing.assert_close(loaded.schedule.betas, SCHEDULE.betas)
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.denoise(x, 0.3), prior.denoise(x, 0.3))
    assert not any(p.requires_grad for p in loaded.net.parameters())


def test_bad_checkpoints_give_clear_errors(tmp_path):
    prior = UNetPrior(TINY.build(), SCHEDULE, (2, 16, 16), config=TINY)
    good = save_prior(tmp_path / "good.pt", prior)
    payload = torch.load(good, weights_only=True)
    cases = {
        "other_format.pt": ({**payload, "format": "something-else"}, "not an invdiff prior checkpoint"),
        "future.pt": ({**payload, "version": 2}, "version 2 is not supported"),
        "arch.pt": ({**payload, "architecture": "resnet"}, "unknown architecture"),
        "missing.pt": ({k: v for k, v in payload.items() if k != "betas"}, "missing fields ['betas']"),
        "weights.pt": ({**payload, "config": {**payload["config"], "channels": [8, 32]}}, "do not fit"),
        "plain.pt": ([1, 2, 3], "not an invdiff prior checkpoint"),
    }
    for name, (content, message) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
            load_prior(tmp_path / name)
        assert name in str(err.value)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not an invdiff prior \\(corrupt, or unsafe to load"):
        load_prior(tmp_path / "truncated.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_prior(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="no UNetConfig"):
        save_prior(tmp_path / "x.pt", UNetPrior(TINY.build(), SCHEDULE, (2, 16, 16)))
