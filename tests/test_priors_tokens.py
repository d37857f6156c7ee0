"""The image token prior: tokenizer, masked token model, phase lifting, checkpoint, training, command."""

from __future__ import annotations

import math

import pytest
import torch

from invdiff.cli import main
from invdiff.measurement import Measurement
from invdiff.operators import Inpainting, MultiCoilMRI, from_complex
from invdiff.posterior import TokenPosterior
from invdiff.priors import CheckpointError, load_prior
from invdiff.priors.checkpoint import read_checkpoint
from invdiff.priors.serving import fit_prior
from invdiff.priors.tokens.checkpoint import save_token_prior
from invdiff.priors.tokens.image import ImageTokenPrior
from invdiff.problems.tokens import smooth_phase
from invdiff.priors.tokens.token_model import MaskedTokenTransformer, TokenModelConfig, masked_token_loss, maskgit_mask
from invdiff.priors.tokens.tokenizer import PatchTokenizer, TokenizerConfig
from invdiff.samplers.aps import APS, GuidedRemasking
from invdiff.samplers.base import run
from invdiff.training.data import load_training_images
from invdiff.training.tokens import TokenPriorTrainer, TokenTrainingConfig, train_token_prior

TOK = TokenizerConfig(image_size=16, channels=(4, 8), num_codes=8, code_dim=3)  # 4x4 patches, L = 16
MODEL = TokenModelConfig(num_positions=16, num_codes=8, dim=16, depth=1, heads=2, dropout=0.0)
QUIET = dict(progress=False, log=lambda s: None, sample_steps=2)


def tiny_prior(seed: int = 0) -> ImageTokenPrior:
    with torch.random.fork_rng(devices=[]):  # the layer initialisers draw from the global RNG
        torch.manual_seed(seed)
        tok, model = PatchTokenizer(TOK), MaskedTokenTransformer(MODEL)
    tok.codebook.copy_(torch.randn(8, 3, generator=torch.Generator().manual_seed(seed)))
    return ImageTokenPrior(tok.eval().requires_grad_(False), model.eval().requires_grad_(False), 0.5, 0.5, (0.0, 1.0))


@pytest.fixture(scope="module")
def slices():
    return load_training_images(["anatomy:nibabel_anatomical"], "MR", 16, exclude_subjects=["colin27"])


def test_tokenizer_shapes_nearest_codes_and_decoding_any_embedding():
    prior = tiny_prior()
    x = torch.rand(3, 1, 16, 16)
    tokens = prior.tokenize(x)
    assert tokens.shape == (3, 16) and tokens.dtype == torch.int64
    z = prior.tokenizer.encode((x - 0.5) / 0.5).permute(0, 2, 3, 1).reshape(-1, 3)
    dist = torch.cdist(z, prior.codebook)
    assert torch.equal(dist.gather(1, tokens.reshape(-1, 1)).squeeze(1), dist.min(1).values)
    e = torch.randn(2, 16, 3, requires_grad=True)  # not codebook rows: expected embeddings are allowed
    out = prior.decode(e)
    assert out.shape == (2, 1, 16, 16)
    out.sum().backward()
    assert e.grad is not None and float(e.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"\(N, 16, 3\)"):
        prior.decode(torch.zeros(2, 15, 3))
    with pytest.raises(ValueError, match="multiples of the patch size 4"):
        prior.tokenizer.encode(torch.zeros(1, 1, 18, 18))


def test_the_straight_through_forward_pass_trains_the_encoder():
    tok = PatchTokenizer(TOK)
    tok.codebook.copy_(torch.randn(8, 3, generator=torch.Generator().manual_seed(1)))
    x = torch.rand(2, 1, 16, 16)
    x_hat, z, tokens = tok(x)
    assert x_hat.shape == x.shape and z.shape == (32, 3) and tokens.shape == (2, 16)
    torch.testing.assert_close(tok.decode(tok.codebook[tokens]), x_hat, rtol=1e-5, atol=1e-6)  # the quantised codes
    ((x_hat - x) ** 2).mean().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in tok.encoder.parameters())


def test_maskgit_masks_follow_the_cosine_schedule():
    masks = maskgit_mask(20000, 16, torch.Generator().manual_seed(0))
    assert bool((masks.sum(1) >= 1).all())
    # E[ceil(16 cos(pi r / 2))] / 16, by quadrature: between 2/pi and 2/pi + 1/16
    assert 2 / math.pi < float(masks.float().mean()) < 2 / math.pi + 1 / 16
    per_position = masks.float().mean(0)
    assert float(per_position.max() - per_position.min()) < 0.03  # positions chosen uniformly


class _Constant(torch.nn.Module):
    """A 'model' with fixed logits per true token: uniform, or sharply right."""

    def __init__(self, truth: torch.Tensor | None):
        super().__init__()
        self.config = MODEL
        self.truth = truth

    def forward(self, tokens):
        if self.truth is None:
            return torch.zeros(*tokens.shape, 8)
        return 50.0 * torch.nn.functional.one_hot(self.truth, 8).float()


def test_masked_token_loss_is_the_cross_entropy_at_masked_positions():
    tokens = torch.randint(0, 8, (5, 16), generator=torch.Generator().manual_seed(0))
    uniform = masked_token_loss(_Constant(None), tokens, torch.Generator().manual_seed(1))
    assert float(uniform) == pytest.approx(math.log(8), abs=1e-6)
    assert float(masked_token_loss(_Constant(tokens), tokens, torch.Generator().manual_seed(1))) < 1e-12


def test_phase_lifting_multiplies_item_major_rows_by_their_items_phase():
    prior = tiny_prior()
    phase = torch.stack([torch.full((16, 16), 0.3), torch.full((16, 16), -1.2)])
    lifted = prior.with_phase(phase)
    e = prior.codebook[torch.randint(0, 8, (6, 16), generator=torch.Generator().manual_seed(2))]
    m = prior.decode(e)[:, 0]
    x = lifted.decode(e)  # 3 particles of item 0, then 3 of item 1
    assert x.shape == (6, 2, 16, 16)
    torch.testing.assert_close(x.norm(dim=1), m.abs())
    theta = torch.tensor([0.3] * 3 + [-1.2] * 3).view(6, 1, 1)
    torch.testing.assert_close(x[:, 0], m * torch.cos(theta))
    torch.testing.assert_close(x[:, 1], m * torch.sin(theta))
    assert lifted.num_positions == 16 and lifted.mask_id == 8 and lifted.event_shape == (2, 16, 16)
    assert fit_prior(lifted, (16, 16))[0] is lifted  # what benchmark and reconstruct call first
    with pytest.raises(ValueError, match="serves 16 x 16 images only"):
        fit_prior(lifted, (32, 32))
    with pytest.raises(ValueError, match="do not split"):
        lifted.decode(e[:5])
    with pytest.raises(ValueError, match=r"phase must be \(B, 16, 16\)"):
        prior.with_phase(torch.zeros(16, 16))


def test_smooth_phase_recovers_a_smooth_phase_and_drops_a_rough_one():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    theta = 0.8 * torch.sin(math.pi * xx / 2) + 0.4 * yy
    mag = 1.0 + 0.2 * torch.cos(math.pi * yy)
    image = from_complex((mag * torch.exp(1j * theta)).unsqueeze(0))
    est = smooth_phase(image, 48)[0]
    inner = (slice(8, 56), slice(8, 56))  # away from the periodic wrap of the FFT
    assert float((est - theta)[inner].abs().max()) < 0.05
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        smooth_phase(torch.zeros(1, 1, 8, 8), 4)


def test_checkpoint_round_trip_through_load_prior(tmp_path):
    prior = tiny_prior()
    path = save_token_prior(tmp_path / "tok.pt", prior, {"note": "test"})
    torch.load(path, weights_only=True)  # plain tensors and values only
    loaded = load_prior(path)
    assert isinstance(loaded, ImageTokenPrior) and loaded.data_range == (0.0, 1.0)
    tokens = torch.randint(0, 9, (2, 16), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(loaded.log_probs(tokens), prior.log_probs(tokens), rtol=0, atol=0)
    e = prior.codebook[tokens.clamp(max=7)]
    torch.testing.assert_close(loaded.decode(e), prior.decode(e), rtol=0, atol=0)
    payload = read_checkpoint(path)
    del payload["normalization"]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"broken.pt: missing fields \['normalization'\]"):
        load_prior(tmp_path / "broken.pt")
    payload = read_checkpoint(path)
    payload["config"]["token_model"]["num_codes"] = 9
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises((CheckpointError, ValueError), match="mismatch.pt|codes"):
        load_prior(tmp_path / "mismatch.pt")


def test_aps_and_the_baseline_sample_an_inpainting_posterior_with_the_image_prior():
    prior = tiny_prior()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    op = Inpainting((torch.rand(16, 16, generator=torch.Generator().manual_seed(5)) < 0.5).float())
    m = Measurement(op, op.A(x), 0.1)
    for sampler in (APS(4, opt_steps=2), GuidedRemasking(4, candidates=3)):
        a = run(sampler, m, prior, n_particles=3, generator=torch.Generator().manual_seed(6), progress=False)
        b = run(sampler, m, prior, n_particles=3, generator=torch.Generator().manual_seed(6), progress=False)
        assert isinstance(a, TokenPosterior) and a.samples.shape == (2, 3, 1, 16, 16)
        assert torch.equal(a.samples, b.samples) and torch.equal(a.tokens, b.tokens)
        assert a.diagnostics.network_evals == 4


def test_aps_runs_on_multicoil_mri_through_the_phase_lift():
    prior = tiny_prior()
    maps = torch.randn(1, 3, 16, 16, dtype=torch.complex64, generator=torch.Generator().manual_seed(7))
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(16)
    mask[::2] = 1
    op = MultiCoilMRI(mask, maps)
    truth = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(8))
    m = Measurement(op, op.A(truth), 0.05)
    lifted = prior.with_phase(smooth_phase(truth, 8))
    post = run(APS(3, opt_steps=2), m, lifted, n_particles=2, generator=torch.Generator().manual_seed(0),
               progress=False)
    assert post.samples.shape == (1, 2, 2, 16, 16) and bool(torch.isfinite(post.samples).all())
    # with the decoder's residual the data fill in what the codes miss: closer to the data than the codes
    res = run(APS(3, opt_steps=2, residual_std=0.1), m, lifted, n_particles=2,
              generator=torch.Generator().manual_seed(0), progress=False)
    misfit = [float(m.expand(2).residual(p.samples[0]).abs().norm()) for p in (post, res)]
    assert res.samples.shape == post.samples.shape and misfit[1] < 0.5 * misfit[0]


def test_training_reduces_both_losses_and_leaves_the_global_rng_alone(slices):
    state = torch.get_rng_state()
    config = TokenTrainingConfig(tokenizer_steps=120, steps=60, batch_size=8, tokenizer_crop=None, warmup=2,
                                 tokenizer_lr=3e-3, lr=3e-3)
    trainer = TokenPriorTrainer(slices, config, TOK, MODEL)
    losses = [trainer.step() for _ in range(180)]
    assert torch.equal(torch.get_rng_state(), state)
    assert sum(losses[110:120]) < 0.7 * sum(losses[:10])  # reconstruction MSE (measured ratio 0.57)
    assert losses[120] > math.log(8) - 0.7  # the transformer starts near uniform (log K nats)
    assert sum(losses[170:180]) < sum(losses[120:130]) - 2.0  # cross-entropy (measured 1.81 -> 1.32 nats)
    used = torch.unique(trainer.prior().tokenize(slices.images[:, None]))
    assert len(used) >= 4  # dead codes are restarted, so the codebook is used


def test_interrupted_and_resumed_token_training_equals_an_uninterrupted_run(tmp_path, slices):
    config = TokenTrainingConfig(tokenizer_steps=3, steps=3, batch_size=4, warmup=1, tokenizer_crop=8)
    train_token_prior(slices, config, TOK, MODEL, tmp_path / "full", checkpoint_every=2, **QUIET)
    train_token_prior(slices, config, TOK, MODEL, tmp_path / "part", checkpoint_every=2, max_minutes=0, **QUIET)
    assert read_checkpoint(tmp_path / "part" / "checkpoint.pt")["training"]["step"] == 2
    train_token_prior(slices, config, TOK, MODEL, tmp_path / "part", checkpoint_every=2, resume=True, **QUIET)
    full = read_checkpoint(tmp_path / "full" / "prior.pt")
    part = read_checkpoint(tmp_path / "part" / "prior.pt")
    assert full["architecture"] == "invdiff.MaskedTokenPrior" and "training" not in full
    assert all(torch.equal(full["state_dict"][k], part["state_dict"][k]) for k in full["state_dict"])
    assert (tmp_path / "full" / "loss.csv").read_text() == (tmp_path / "part" / "loss.csv").read_text()
    assert (tmp_path / "full" / "samples.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="cannot resume"):
        train_token_prior(slices, TokenTrainingConfig(tokenizer_steps=4, steps=3, batch_size=4, warmup=1,
                                                      tokenizer_crop=8),
                          TOK, MODEL, tmp_path / "part", resume=True, **QUIET)


def test_trainer_refuses_mismatched_networks_and_dropout(slices):
    with pytest.raises(ValueError, match="dropout"):
        TokenPriorTrainer(slices, TokenTrainingConfig(), TOK, TokenModelConfig(16, 8, 16, 1, 2, dropout=0.1))
    with pytest.raises(ValueError, match="16 positions and 8 codes"):
        TokenPriorTrainer(slices, TokenTrainingConfig(), TOK, TokenModelConfig(16, 9, 16, 1, 2, dropout=0.0))
    with pytest.raises(ValueError, match="1x32"):
        TokenPriorTrainer(slices, TokenTrainingConfig(), TokenizerConfig(image_size=32, channels=(4, 8)), MODEL)


def test_train_prior_command_trains_a_token_prior(capsys, tmp_path):
    out = tmp_path / "tok"
    argv = ["train-prior", "--kind", "token", "--modality", "MR", "--data", "anatomy:nibabel_anatomical",
            "--size", "16", "--tokenizer-channels", "4,8", "--codes", "8", "--code-dim", "3", "--token-dim", "16",
            "--token-depth", "1", "--token-heads", "2", "--tokenizer-steps", "2", "--steps", "2", "--batch-size", "2",
            "--crop", "8", "--checkpoint-every", "2", "--out", str(out), "--quiet", "--exclude-subject", "colin27"]
    assert main(argv) == 0
    prior = load_prior(out / "prior.pt")
    assert isinstance(prior, ImageTokenPrior) and prior.num_positions == 16 and prior.num_codes == 8
    prov = read_checkpoint(out / "prior.pt")["provenance"]
    assert prov["command"].startswith("invdiff train-prior --kind token") and prov["steps_done"] == 4
    assert prov["training_config"]["token_model"]["dim"] == 16
    assert main(argv[:-2] + ["--complex", "--out", str(tmp_path / "c")]) == 1
    assert "a token prior models magnitudes; drop --complex" in capsys.readouterr().err


def test_reconstruct_runs_aps_on_the_demo_scan_with_the_shipped_token_prior(tmp_path, capsys):
    """`invdiff reconstruct --sampler aps` lifts the shipped token prior to each slice group (its phase from
    CG-SENSE) and records that prior; with the decoder's residual the data fill in what the codes of a
    4-step run miss (measured: 24.26 dB against zero-filled 19.59; the codes alone 11.51)."""
    import json

    argv = ["reconstruct", "demo", "--sampler", "aps", "--steps", "4", "--set", "opt_steps=1", "--set",
            "residual_std=0.03", "--slices", "0", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "demo_brain.json").read_text())
    assert record["settings"]["prior"] == "mri_brain_tokens_128" and record["costs"]["network_evals"] == 4
    assert record["settings"]["sampler_settings"]["residual_std"] == 0.03
    psnr = record["metrics"]["mean"]["PSNR"]
    assert psnr > record["metrics"]["zero-filled RSS"]["PSNR"] + 2.0


def test_reconstruct_refuses_a_token_prior_by_name(tmp_path):
    from invdiff.reconstruct import load_denoiser

    path = save_token_prior(tmp_path / "tok.pt", tiny_prior())
    with pytest.raises(ValueError, match="tok.pt.*masked token prior"):
        load_denoiser(str(path), "cpu")
