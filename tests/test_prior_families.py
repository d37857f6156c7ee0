"""Published prior families (ADM, EDM, diffusers), loaded from random-weight checkpoints in their
published layouts and compared with the reference networks computed independently (deepinv's and
diffusers' classes, EDM's preconditioning formulas), and the safe reader's refusals."""

from __future__ import annotations

import json
import os
import pickle

import deepinv as dinv
import pytest
import torch

from invdiff.priors import CheckpointError, load_prior, open_prior
from invdiff.priors.families import build_prior, convert, describe, identify
from invdiff.priors.families.adm import ADM_PRESETS, ADMConfig, ADMNetwork
from invdiff.priors.families.edm import EDM_PRESETS, EDMConfig, EDMNetwork
from invdiff.priors.safe_load import read_weights
from invdiff.testing import randomize_parameters
from invdiff.schedule import VPSchedule

SIGMAS = (0.01, 0.1, 1.0, 10.0)  # data units


def _randomize(net: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Every parameter random (published networks start their last layers at zero: outputs would be 0)."""
    return randomize_parameters(net, seed, std)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ---------------------------------------------------------------- ADM (guided-diffusion)

def test_adm_network_is_deepinv_diffunet_for_its_configurations():
    """For deepinv's FFHQ and ImageNet configurations invdiff's ADM network has DiffUNet's parameter names
    and shapes, and for the same weights computes the same epsilon."""
    for preset, large in (("adm-ffhq-256", False), ("adm-imagenet-256", True)):
        with torch.device("meta"):
            ours = ADMNetwork(ADM_PRESETS[preset]["config"]).state_dict()
            ref = dinv.models.DiffUNet(large_model=large, pretrained=None).state_dict()
        ref = {k: v.shape for k, v in ref.items() if not k.startswith("sqrt_")}
        assert {k: v.shape for k, v in ours.items()} == ref
    ref = _randomize(dinv.models.DiffUNet(large_model=False, pretrained=None), 0)
    ours = ADMNetwork(ADM_PRESETS["adm-ffhq-256"]["config"]).eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("sqrt_")})
    z = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10.0, 700.0])
    with torch.no_grad():
        torch.testing.assert_close(ours.raw(z, t), ref.forward_diffusion(z, t), rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def adm_file(tmp_path_factory):
    """DPS's FFHQ layout (a bare guided-diffusion state dict) with random weights, and the network."""
    ref = _randomize(dinv.models.DiffUNet(large_model=False, pretrained=None), 2)
    path = tmp_path_factory.mktemp("adm") / "ffhq_10m.pt"
    torch.save({k: v for k, v in ref.state_dict().items() if not k.startswith("sqrt_")}, path)
    return path, ref


def test_adm_checkpoint_denoises_as_the_reference_network(adm_file):
    """invdiff's denoiser = 0.5 + 0.5 (z - s eps(z / sqrt(1 + s^2), k)) with z = 2x - 1, s = 2 sigma, at
    the trained steps nearest each sigma, eps from deepinv's DiffUNet."""
    path, ref = adm_file
    ckpt = identify(path)
    assert (ckpt.family, ckpt.preset) == ("adm", "adm-ffhq-256")
    prior = build_prior(ckpt).at_size(64, 64)
    abar = VPSchedule.linear().alpha_bars
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    for target in SIGMAS:
        k = int(((1 / abar - 1).sqrt() * 0.5 - target).abs().argmin())
        s = float((1 / abar[k] - 1).sqrt())  # model units (x 0.5 in data units)
        z = 2 * x - 1
        with torch.no_grad():
            eps = ref.forward_diffusion(z / (1 + s**2) ** 0.5, torch.tensor([float(k)]))[:, :3]
            expected = 0.5 + 0.5 * (z - s * eps)
            got = prior.denoise(x, 0.5 * s)
        assert _rel(got, expected) < 2e-5, (target, k, _rel(got, expected))


def test_adm_checkpoint_of_another_configuration_needs_its_config(tmp_path):
    """DDS's 320x320 complex layout is recognised by names and shapes (no attention outside the middle
    block, guided-diffusion's 320 // 16 quirk); a configuration no preset has is refused, then read
    with an explicit config."""
    cfg = ADMConfig(image_size=64, in_channels=2, model_channels=32, channel_mult=(1, 2), attention_resolutions=(32,),
                    num_head_channels=32)
    net = _randomize(ADMNetwork(cfg), 4)
    path = tmp_path / "small.pt"
    torch.save({"state_dict": net.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"small.pt: a checkpoint of family .adm. .* no known preset .*--config"):
        identify(path)
    spec = {"family": "adm", "config": cfg.to_dict(), "scale": 1.0, "offset": 0.0}
    prior = build_prior(identify(path, config=spec))
    x = torch.randn(2, 2, 64, 64, generator=torch.Generator().manual_seed(5))
    abar = VPSchedule.linear().alpha_bars
    s = float((1 / abar[250] - 1).sqrt())
    with torch.no_grad():
        expected = x - s * net(x / (1 + s**2) ** 0.5, torch.full((2,), 250.0))
        torch.testing.assert_close(prior.denoise(x, s), expected, rtol=0, atol=2e-5)
    with torch.device("meta"):
        dds = ADMNetwork(ADM_PRESETS["dds-fastmri-320"]["config"]).state_dict()
    assert not any(".qkv." in k for k in dds if k.startswith(("input_blocks", "output_blocks")))
    assert any(".qkv." in k for k in dds if k.startswith("middle_block"))


# ---------------------------------------------------------------- EDM

def test_edm_checkpoint_matches_deepinv_admunet_at_inversebench_size(tmp_path):
    """InverseBench's layout ({"ema": EDMPrecond state dict}, "model." prefixes) for its fastMRI prior
    (DhariwalUNet, 2 x 320 x 320) loads strictly; invdiff's EDM preconditioning equals deepinv's
    ADMUNet.forward with sigma_data 0.5 (one sigma here: a 320 x 320 pass costs seconds; every sigma in
    the next test)."""
    c = EDM_PRESETS["inversebench-mri-320"]["config"]
    ref = dinv.models.ADMUNet(img_resolution=320, in_channels=2, out_channels=2, model_channels=128,
                              channel_mult=(1, 1, 1, 2, 2), num_blocks=1, attn_resolutions=(16,), dropout=0.0,
                              pretrained=None, pixel_std=0.5)
    _randomize(ref, 6, std=0.02)
    path = tmp_path / "mri-knee-edm.pt"
    torch.save({"ema": {f"model.{k}": v for k, v in ref.state_dict().items()}, "step": 100000}, path)
    ckpt = identify(path)
    assert (ckpt.family, ckpt.preset) == ("edm", "inversebench-mri-320")
    assert ckpt.config == c.to_dict()
    prior = build_prior(ckpt)
    assert prior.event_shape == (2, 320, 320)
    x = torch.randn(1, 2, 320, 320, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert _rel(prior.denoise(x, 0.5), ref(x, 0.5)) < 2e-5


def test_edm_dhariwal_matches_deepinv_admunet_at_every_sigma():
    # 128 channels: deepinv's 32 normalisation groups equal EDM's min(32, channels / 4) from there on
    cfg = EDMConfig(architecture="dhariwal", img_resolution=16, in_channels=2, model_channels=128,
                    channel_mult=(1, 1), num_blocks=1, attn_resolutions=(8,))
    net = _randomize(EDMNetwork(cfg), 13)
    ref = dinv.models.ADMUNet(img_resolution=16, in_channels=2, out_channels=2, model_channels=128, channel_mult=(1, 1),
                              num_blocks=1, attn_resolutions=(8,), dropout=0.0, pretrained=None, pixel_std=0.5)
    ref.load_state_dict(net.state_dict())
    prior = build_prior(identify_from_state(net.state_dict(), cfg, scale=1.0, offset=0.0))
    x = torch.randn(4, 2, 16, 16, generator=torch.Generator().manual_seed(14))
    sigma = torch.tensor(SIGMAS)
    with torch.no_grad():
        assert _rel(prior.denoise(x, sigma), ref.eval()(x, sigma)) < 2e-5


@pytest.mark.parametrize("precond", ["edm", "vp", "ve"])
def test_edm_preconditionings_follow_edm_table_1(precond):
    """SongUNet (NCSN++) with EDM's three preconditionings, against the formulas of EDM's Table 1 in
    data units ([0, 1] images mapped to [-1, 1]), and for "edm" against deepinv's NCSNpp.forward."""
    cfg = EDMConfig(architecture="song-ncsn", img_resolution=16, in_channels=1, model_channels=128,
                    channel_mult=(1, 1), num_blocks=1, attn_resolutions=(8,), augment_dim=0, precond=precond)
    net = _randomize(EDMNetwork(cfg), 8)
    ckpt = identify_from_state(net.state_dict(), cfg, scale=0.5, offset=0.5)
    prior = build_prior(ckpt)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(9))
    for sigma in SIGMAS:
        s, z = torch.tensor(2 * sigma, dtype=torch.float64), 2 * x - 1  # coefficients in float64, as EDM states them
        if precond == "edm":
            c_skip, c_out, c_in, c_noise = 0.25 / (s**2 + 0.25), s * 0.5 / (s**2 + 0.25).sqrt(), 1 / (s**2 + 0.25).sqrt(), s.log() / 4
        elif precond == "vp":
            t = ((0.1**2 + 2 * 19.9 * torch.log1p(s**2)).sqrt() - 0.1) / 19.9
            c_skip, c_out, c_in, c_noise = torch.tensor(1.0), -s, 1 / (s**2 + 1).sqrt(), 999 * t
        else:
            c_skip, c_out, c_in, c_noise = torch.tensor(1.0), s, torch.tensor(1.0), (s / 2).log()
        c_skip, c_out, c_in = float(c_skip), float(c_out), float(c_in)
        with torch.no_grad():
            f = net.unet.forward_unet(c_in * z, c_noise.float().expand(2))
            expected = 0.5 + 0.5 * (c_skip * z + c_out * f)
            assert _rel(prior.denoise(x, sigma), expected) < 2e-5, (precond, sigma)
            if precond == "edm":
                ref = dinv.models.NCSNpp(img_resolution=16, in_channels=1, out_channels=1, model_channels=128,
                                         channel_mult=(1, 1), num_blocks=1, attn_resolutions=(8,), augment_dim=0,
                                         pretrained=None, pixel_std=0.5, _was_trained_on_minus_one_one=True)
                ref.load_state_dict(net.state_dict())
                assert _rel(prior.denoise(x, sigma), ref.eval()(x, sigma)) < 2e-5


def identify_from_state(state, cfg: EDMConfig, scale: float, offset: float):
    from invdiff.priors.families.registry import ForeignCheckpoint

    return ForeignCheckpoint(family="edm", config=cfg.to_dict(), state_dict=dict(state), scale=scale, offset=offset)


def test_deepinv_published_edm_layouts_are_recognised():
    """deepinv's NCSNpp weights files (EDM FFHQ 64, VE and VP architectures) are EDM presets: the
    names and shapes of deepinv's default NCSNpp match."""
    for preset, model_type in (("edm-ffhq-64-ve", "ncsn"), ("edm-ffhq-64-vp", "ddpm")):
        with torch.device("meta"):
            ref = dinv.models.NCSNpp(model_type=model_type, pretrained=None).state_dict()
            ours = EDMNetwork(EDM_PRESETS[preset]["config"]).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in ref.items()}, preset


# ---------------------------------------------------------------- diffusers

@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DModel(sample_size=32, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(32, 64), norm_num_groups=8,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    _randomize(unet, 10)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    folder = tmp_path_factory.mktemp("ddpm-ct")
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder, unet, scheduler


def test_diffusers_folder_matches_the_scheduler_formula(diffusers_folder):
    """A DDPMPipeline folder (safetensors weights): invdiff's denoiser at the trained steps equals
    (z_t - sqrt(1 - abar_k) eps) / sqrt(abar_k) with diffusers' own UNet and alphas_cumprod."""
    folder, unet, scheduler = diffusers_folder
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    ckpt = identify(folder)
    assert ckpt.family == "diffusers" and ckpt.prediction == "epsilon"
    prior = build_prior(ckpt)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(11))
    abar = scheduler.alphas_cumprod.double()
    for target in SIGMAS:
        k = int(((1 / abar - 1).sqrt() * 0.5 - target).abs().argmin())
        a = float(abar[k])
        z_t = a**0.5 * (2 * x - 1)
        with torch.no_grad():
            eps = unet(z_t, torch.full((2,), k)).sample
            expected = 0.5 + 0.5 * (z_t - (1 - a) ** 0.5 * eps) / a**0.5
            got = prior.denoise(x, 0.5 * ((1 - a) / a) ** 0.5)
        assert _rel(got, expected) < 2e-5, (target, k)


# ---------------------------------------------------------------- conversion, safety, bad input

def test_convert_round_trips_through_invdiffs_format(adm_file, tmp_path):
    path, _ = adm_file
    ckpt = identify(path)
    out = convert(ckpt, tmp_path / "prior.pt", provenance={"command": "test"})
    loaded = load_prior(out)
    direct = build_prior(ckpt)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        torch.testing.assert_close(loaded.at_size(64, 64).denoise(x, 0.3), direct.at_size(64, 64).denoise(x, 0.3))
    payload = torch.load(out, weights_only=True)
    assert payload["provenance"]["converted_from"]["sha256"] == ckpt.info["sha256"]
    assert payload["provenance"]["preset"] == "adm-ffhq-256"
    # open_prior takes the foreign file itself, the converted file and a diffusers folder alike
    assert open_prior(str(path)).event_shape == (3, 256, 256)
    assert open_prior(str(out)).event_shape == (3, 256, 256)
    info = describe(ckpt)
    assert info["parameters"] == 93563910 and info["complex_layout"] == "real"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_executing_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name, write in (("legacy.pt", lambda p: p.write_bytes(pickle.dumps({"w": Payload()}))),
                        ("zip.pt", lambda p: torch.save({"w": Payload()}, p)),
                        ("network-snapshot.pkl", lambda p: p.write_bytes(pickle.dumps({"ema": Payload()})))):
        path = tmp_path / name
        write(path)
        with pytest.raises(CheckpointError, match=rf"{name}: refused: the pickle asks to build objects"):
            read_weights(path)
        with pytest.raises(CheckpointError, match="refused"):
            open_prior(str(path))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="network-snapshot.pkl: .*EDM-style network-snapshot"):
        read_weights(tmp_path / "network-snapshot.pkl")


def test_bad_checkpoints_are_named(adm_file, tmp_path):
    path, _ = adm_file
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: 1 << 16])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable weights file"):
        identify(truncated)
    unknown = tmp_path / "unknown.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, unknown)
    with pytest.raises(CheckpointError, match=r"unknown.pt: unknown checkpoint family.*encoder.weight"):
        identify(unknown)
    state = torch.load(path, weights_only=True)
    state["out.2.weight"] = torch.zeros(6, 128, 5, 5)
    shaped = tmp_path / "shape.pt"
    torch.save(state, shaped)
    with pytest.raises(CheckpointError, match=r"shape.pt: .*out.2.weight: file \(6, 128, 5, 5\), expected "
                                              r"\(6, 128, 3, 3\)"):
        identify(shaped)
    nothing = tmp_path / "nothing.pt"
    torch.save({"step": 3, "config": {"a": 1}}, nothing)
    with pytest.raises(CheckpointError, match=r"nothing.pt: no network weights found.*\['config', 'step'\]"):
        identify(nothing)
    bad_json = tmp_path / "spec.json"
    bad_json.write_text(json.dumps({"family": "adm", "config": {"model_channels": 64, "colour": 1}}))
    with pytest.raises(CheckpointError, match=r"unknown fields \['colour'\]"):
        identify(path, config=bad_json)


# ---------------------------------------------------------------- the command line

def test_priors_command_converts_and_reconstruct_takes_the_result(tmp_path, monkeypatch, capsys):
    """`invdiff priors convert` with an explicit config writes into the prior cache; `priors list` and
    `info` show it; `invdiff reconstruct --prior NAME` runs a sampler with it end to end."""
    from invdiff.cli import main

    monkeypatch.setenv("INVDIFF_PRIOR_DIR", str(tmp_path / "cache"))
    cfg = ADMConfig(image_size=128, in_channels=2, model_channels=32, channel_mult=(1, 2), attention_resolutions=(),
                    num_head_channels=32)
    weights = tmp_path / "mri_adm.pt"
    torch.save({"ema": _randomize(ADMNetwork(cfg), 15, std=0.01).state_dict()}, weights)
    spec = tmp_path / "mri_adm.json"
    spec.write_text(json.dumps({"family": "adm", "config": cfg.to_dict(), "scale": 1.0, "offset": 0.0,
                                "description": "a test MRI prior"}))
    assert main(["priors", "convert", str(weights), "--config", str(spec), "--name", "test-mri",
                 "--pixel-size", "1.4,2.2"]) == 0
    assert "use it as --prior test-mri" in capsys.readouterr().out
    assert main(["priors", "list"]) == 0
    listing = capsys.readouterr().out
    assert "test-mri" in listing and "guided-diffusion.UNetModel" in listing and "inversebench-mri-320" in listing
    assert main(["priors", "info", str(tmp_path / "cache" / "test-mri.pt")]) == 0
    info = capsys.readouterr().out
    assert "pixel_size_mm: [1.4, 2.2]" in info and "a test MRI prior" in info
    out = tmp_path / "recon"
    assert main(["reconstruct", "demo", "--prior", "test-mri", "--sampler", "dds", "--steps", "2", "--slices", "0",
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "demo_brain.json").read_text())
    assert summary["costs"]["network_evals"] == 2 and summary["settings"]["prior"] == "test-mri"
    assert main(["priors", "info", str(tmp_path / "missing.pt")]) == 1
    assert "missing.pt: no such file" in capsys.readouterr().err


# ---------------------------------------------------------------- score-SDE

@pytest.mark.parametrize("case", ["ve", "vp"])
def test_scoresde_checkpoint_matches_score_sdes_own_network(case, tmp_path):
    """A score-SDE checkpoint ({"model": DDP state, "ema": {"shadow_params"}, "step"}) of NCSN++ (VE,
    data in [0, 1]) or DDPM++ (VP) renamed to EDM's SongUNet denoises as score-SDE's own code did
    (tests/data/scoresde_ncsnpp.pt, written by scripts/make_scoresde_fixture.py from score-MRI's copy
    of score-SDE) at sigma 0.01, 0.1, 1, 10."""
    from pathlib import Path

    fixture = torch.load(Path(__file__).parent / "data" / "scoresde_ncsnpp.pt", weights_only=True)["cases"][case]
    g = torch.Generator().manual_seed(fixture["seed"])
    ema = {name: 0.05 * torch.randn(shape, generator=g) for name, shape in fixture["names_shapes"]}
    raw = {f"module.{k}": torch.zeros_like(v) for k, v in ema.items()}  # the EMA copy must win
    raw["module.sigmas"] = torch.ones(2000)
    path = tmp_path / "checkpoint_95.pth"
    torch.save({"model": raw, "ema": {"decay": 0.999, "num_updates": 3, "shadow_params": list(ema.values())},
                "optimizer": {"state": {}}, "step": 95}, path)
    cfg = EDMConfig(architecture=fixture["architecture"], img_resolution=32, in_channels=1, model_channels=32,
                    channel_mult=(1, 2), num_blocks=1, attn_resolutions=(16,), precond=case)
    with pytest.raises(CheckpointError, match="family 'score-sde'.*matches no known preset.*score-mri-knee-320"):
        identify(path)
    ckpt = identify(path, config={"family": "score-sde", "config": cfg.to_dict(), "scale": 0.5, "offset": 0.5})
    assert ckpt.family == "score-sde"
    prior = build_prior(ckpt)
    with torch.no_grad():
        got = prior.denoise(fixture["x"], fixture["sigma"])
    assert _rel(got, fixture["denoised"]) < 2e-5, _rel(got, fixture["denoised"])


def test_score_mri_preset_layout():
    """score-MRI's 320 x 320 NCSN++ (4 blocks per level, attention listed at 16 px, which no level of 320,
    160, 80, 40 has: attention only in the middle, as in score-SDE's code): its 54 modules map one to one
    onto the blocks of deepinv's NCSNpp for that config."""
    from invdiff.priors.families.scoresde import SCORESDE_PRESETS, _slots

    cfg = SCORESDE_PRESETS["score-mri-knee-320"]["config"]
    with torch.device("meta"):
        names = EDMNetwork(cfg).state_dict()
    blocks = {".".join(n.split(".")[:2]) if n.startswith(("enc.", "dec.")) else n.split(".")[0] for n in names}
    slots = _slots(cfg)
    assert {prefix for _, prefix in slots} == blocks
    # Fourier + 2 dense + input conv, 4 x 4 encoder blocks, 3 x (down + pyramid conv), middle 3,
    # 4 x 5 decoder blocks, 3 up, norm + output conv
    assert len(slots) == 4 + 16 + 6 + 3 + 20 + 3 + 2
    assert [kind for kind, _ in slots].count("attn") == 1


def test_class_conditional_admunet_is_one_classs_prior():
    """deepinv's ADMUNet layout with class labels (its published ImageNet-64 weights are class-conditional):
    the preset's names and shapes are deepinv's default ADMUNet's, and with class_label set invdiff's
    denoiser equals ADMUNet.forward with that one-hot label; without it, a clear error."""
    with torch.device("meta"):
        ref_shapes = {k: v.shape for k, v in dinv.models.ADMUNet(pretrained=None, label_dim=1000).state_dict().items()}
        ours = EDMNetwork(EDM_PRESETS["edm-imagenet-64-cond"]["config"]).state_dict()
    assert {k: v.shape for k, v in ours.items()} == ref_shapes
    cfg = EDMConfig(architecture="dhariwal", img_resolution=16, in_channels=3, model_channels=128, channel_mult=(1, 1),
                    num_blocks=1, attn_resolutions=(8,), label_dim=10, class_label=7)
    net = _randomize(EDMNetwork(cfg), 16)
    ref = dinv.models.ADMUNet(img_resolution=16, in_channels=3, out_channels=3, model_channels=128, channel_mult=(1, 1),
                              num_blocks=1, attn_resolutions=(8,), dropout=0.0, label_dim=10, pretrained=None,
                              pixel_std=0.5)
    ref.load_state_dict(net.state_dict())
    prior = build_prior(identify_from_state(net.state_dict(), cfg, scale=1.0, offset=0.0))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(17))
    label = torch.nn.functional.one_hot(torch.tensor([7, 7]), 10).float()
    with torch.no_grad():
        assert _rel(prior.denoise(x, 0.3), ref.eval()(x, 0.3, class_labels=label)) < 2e-5
    unset = build_prior(identify_from_state(net.state_dict(), EDMConfig(**{**cfg.__dict__, "class_label": None}),
                                            scale=1.0, offset=0.0))
    with pytest.raises(ValueError, match="class-conditional network \\(10 classes\\): set class_label"):
        unset.denoise(x, 0.3)
