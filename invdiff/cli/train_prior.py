"""``invdiff train-prior``: the parser and the handler (UNet and token priors)."""

from __future__ import annotations

import argparse


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return lo, hi


def add_parser(sub) -> None:
    tp = sub.add_parser(
        "train-prior", help="train a diffusion prior: a UNet (MONAI DiffusionModelUNet, VP schedule) or a masked "
                            "token prior (VQ tokenizer + MaskGIT transformer, for APS)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a diffusion prior on fastMRI files, NIfTI volumes, DICOM CT series, phantoms or the "
                    "offline anatomy set; writes checkpoint.pt (resumable), prior.pt, loss.csv, samples.png.",
        epilog="data: anatomy:NAME | ellipses:N[:SEED] | FILE.h5 | FILE.nii[.gz] | DICOM folder or .dcm\n"
               "example:\n  invdiff train-prior --modality MR --complex --data anatomy:mni152_2009_t1 \\\n"
               "      --exclude-subject colin27 --size 128 --crop 64 --steps 5000 --out runs/mri\n"
               "  invdiff train-prior --kind token --modality MR --data anatomy:mni152_2009_t1 \\\n"
               "      --exclude-subject colin27 --tokenizer-steps 2500 --steps 3000 --out runs/tokens\n"
               "  (interrupted?)  the same command with --resume")
    tp.add_argument("--kind", choices=["unet", "token"], default="unet",
                    help="unet: a continuous diffusion prior (default); token: a masked token prior over a VQ "
                         "tokenizer's codes (magnitude images, CPU; --steps counts the transformer's steps, "
                         "--crop the tokenizer's training crops)")
    tp.add_argument("--data", action="append", required=True, help="a training data specification (repeatable)")
    tp.add_argument("--modality", choices=["MR", "CT"], required=True)
    tp.add_argument("--complex", action="store_true", help="MR as 2 channels (re, im) with a smooth random phase")
    tp.add_argument("--size", type=int, default=128, help="image size S (S x S slices; default 128)")
    tp.add_argument("--crop", type=int, default=None, help="train on random crops of this size (default: whole slices "
                    "for a UNet, 64 for a token prior's tokenizer)")
    tp.add_argument("--pixel-size", type=float, default=None, metavar="MM",
                    help="resample every source to MM pixels and centre-pad/crop to --size (native resolution; "
                         "the prior then declares the pixel sizes it serves); default: resize each slice's "
                         "padded square to --size")
    tp.add_argument("--zoom", type=_floats, default=(0.85, 1.3), metavar="LO,HI",
                    help="zoom augmentation range, log-uniform (default 0.85,1.3)")
    tp.add_argument("--init", default=None, metavar="PRIOR",
                    help="start from this prior's weights (shipped name or file; same architecture), e.g. to "
                         "fine-tune at another resolution")
    tp.add_argument("--samples", type=int, default=8, help="prior samples drawn for samples.png at the end (default 8)")
    tp.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of those samples (default 50)")
    tp.add_argument("--full-image-every", type=int, default=4, help="with --crop: whole slices every k-th step (0: never)")
    tp.add_argument("--out", required=True, help="output folder")
    tp.add_argument("--steps", type=int, default=5000)
    tp.add_argument("--batch-size", type=int, default=16)
    tp.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-4 for a UNet, 5e-4 for the "
                    "token transformer)")
    tp.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    tp.add_argument("--prediction", choices=["epsilon", "v"], default="epsilon")
    tp.add_argument("--schedule", choices=["linear", "cosine"], default="linear")
    tp.add_argument("--unet-channels", type=_ints, default=(32, 64, 96, 96), help="channels per level (default 32,64,96,96)")
    tp.add_argument("--attention", type=_ints, default=None, help="0/1 per level (default: attention at the last level)")
    tp.add_argument("--res-blocks", type=int, default=1)
    tp.add_argument("--head-channels", type=int, default=32, help="channels per attention head (default 32)")
    tp.add_argument("--seed", type=int, default=0)
    tok = tp.add_argument_group("token prior (--kind token)")
    tok.add_argument("--tokenizer-steps", type=int, default=2500, help="VQ tokenizer steps before the transformer's")
    tok.add_argument("--tokenizer-channels", type=_ints, default=(16, 32, 64),
                     help="channels per 2x level; the patch size is 2**levels (default 16,32,64: 8x8 patches)")
    tok.add_argument("--codes", type=int, default=256, help="codebook size K (default 256)")
    tok.add_argument("--code-dim", type=int, default=8, help="codebook vector length D (default 8)")
    tok.add_argument("--token-dim", type=int, default=128, help="transformer width (default 128)")
    tok.add_argument("--token-depth", type=int, default=4, help="transformer layers (default 4)")
    tok.add_argument("--token-heads", type=int, default=4, help="attention heads (default 4)")
    tp.add_argument("--min-foreground", type=float, default=0.3, help="drop slices with less foreground (default 0.3)")
    tp.add_argument("--exclude-subject", action="append", default=[], help="a held-out subject; using it is an error")
    tp.add_argument("--checkpoint-every", type=int, default=250)
    tp.add_argument("--max-minutes", type=float, default=None, help="stop (after a checkpoint) once this much time has passed")
    tp.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    tp.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, ...")
    tp.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    tp.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="UNet mixed precision: bf16 (CPU or GPU) or fp16 (CUDA, loss-scaled); weights stay float32 "
                         "(default fp32)")
    tp.add_argument("--licence", default="BSD-3-Clause (weights); see the data licences in the provenance")
    tp.add_argument("--quiet", action="store_true", help="no progress bar")
    tp.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from invdiff.priors.unet import UNetConfig
    from invdiff.training.data import Augmentation, load_training_images
    from invdiff.training.unet import TrainingConfig, train_prior

    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    channels = 2 if args.complex else 1
    if args.kind == "token" and args.init:
        raise ValueError("--init is for UNet priors")
    if args.kind == "token" and args.complex:
        raise ValueError("a token prior models magnitudes; drop --complex")
    if args.complex and args.modality != "MR":
        raise ValueError("--complex is for MR data")
    attention = args.attention or tuple(i == len(args.unet_channels) - 1 for i in range(len(args.unet_channels)))
    if len(attention) != len(args.unet_channels):
        raise ValueError("--attention needs one 0/1 per --unet-channels level")
    unet = UNetConfig(in_channels=channels, channels=args.unet_channels, attention_levels=tuple(map(bool, attention)),
                      num_res_blocks=args.res_blocks, num_head_channels=args.head_channels)
    config = TrainingConfig(steps=args.steps, batch_size=args.batch_size, channels=channels, crop=args.crop,
                            full_image_every=args.full_image_every, lr=2e-4 if args.lr is None else args.lr,
                            ema_decay=args.ema,
                            prediction=args.prediction, schedule=args.schedule, seed=args.seed,
                            augmentation=Augmentation(zoom=args.zoom), init_from=args.init, precision=args.precision)
    data = load_training_images(args.data, args.modality, args.size, min_foreground=args.min_foreground,
                                exclude_subjects=args.exclude_subject, pixel_mm=args.pixel_size)
    at = f" at {data.pixel_mm} mm pixels" if data.pixel_mm else ""
    print(f"training on {len(data.images)} slices of {data.size}x{data.size}{at} from {len(data.sources)} source(s) "
          f"({', '.join(sorted(data.subjects))}); device {device if args.kind == 'unet' else 'cpu'}")
    command = "invdiff " + " ".join(shlex.quote(a) for a in (args.argv or []))
    provenance = {"command": command, "licence": args.licence, "torch": str(torch.__version__)}
    if args.kind == "token":
        return _train_token_prior(args, data, provenance)
    train_prior(data, config, unet, args.out, resume=args.resume, checkpoint_every=args.checkpoint_every,
                max_minutes=args.max_minutes, provenance=provenance, device=device, progress=not args.quiet,
                sample_steps=args.sample_steps, num_samples=args.samples)
    return 0


def _train_token_prior(args: argparse.Namespace, data, provenance: dict) -> int:
    from invdiff.priors.tokens.token_model import TokenModelConfig
    from invdiff.priors.tokens.tokenizer import TokenizerConfig
    from invdiff.training.tokens import TokenTrainingConfig, train_token_prior

    levels = len(args.tokenizer_channels)
    if data.size % 2 ** levels:
        raise ValueError(f"--size {data.size} is not a multiple of the patch size {2 ** levels}")
    tokenizer = TokenizerConfig(image_size=data.size, channels=args.tokenizer_channels, num_codes=args.codes,
                                code_dim=args.code_dim)
    model = TokenModelConfig(num_positions=tokenizer.grid ** 2, num_codes=args.codes, dim=args.token_dim,
                             depth=args.token_depth, heads=args.token_heads, dropout=0.0)
    config = TokenTrainingConfig(tokenizer_steps=args.tokenizer_steps, steps=args.steps, batch_size=args.batch_size,
                                 tokenizer_crop=64 if args.crop is None else args.crop,
                                 lr=5e-4 if args.lr is None else args.lr, seed=args.seed)
    train_token_prior(data, config, tokenizer, model, args.out, resume=args.resume,
                      checkpoint_every=args.checkpoint_every, max_minutes=args.max_minutes, provenance=provenance,
                      progress=not args.quiet)
    return 0
