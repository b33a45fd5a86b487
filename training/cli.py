"""``lrf-train``: ``ae`` (Stage 1 autoencoder), ``cache`` (latent cache), ``flow`` (Stage 2),
``distill`` (Stage 5 turbo student), ``classifier``."""

from __future__ import annotations

from lrf.cli import guard_startup

guard_startup("lrf-train", __name__ == "__main__")  # Ctrl-C during the imports: 1 line

import argparse
import contextlib
import os
import sys

from lrf.cli import Parser, entry, float_arg, int_arg


_positive_int = int_arg("value", 1)
_lr = float_arg("--lr", 0, 10, open_lo=True)  # finite: a NaN rate trains into NaN weights


def _weight(flag: str):
    return float_arg(flag, 0, 1e6)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lrf-train", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("ae", help="train the TAESD-architecture autoencoder")
    a.add_argument("--data", required=True, help="image-folder dir or .tar/.tar.gz of one")
    a.add_argument("--out", required=True, help="run directory (resumes if it holds a state)")
    a.add_argument("--epochs", type=_positive_int, default=10)
    a.add_argument("--batch-size", type=_positive_int, default=128)
    a.add_argument("--lr", type=_lr, default=1e-3)
    a.add_argument("--latent-l2", type=_weight("--latent-l2"), default=1e-3)
    a.add_argument("--no-bf16", action="store_true", help="train in fp32 (about 4x slower here)")
    a.add_argument("--limit-per-class", type=_positive_int, default=None)
    a.add_argument("--steps", type=_positive_int, default=6000,
                   help="captioned data: optimiser steps")
    a.add_argument("--size", type=_positive_int, default=64, help="captioned data: image size")
    a.add_argument("--factor", type=int, choices=(4, 8), default=8,
                   help="captioned data: spatial factor")
    a.add_argument("--latent-channels", type=_positive_int, default=4)
    a.add_argument("--width", type=_positive_int, default=32,
                   help="captioned data: channels of every codec block")
    a.add_argument("--held-out", type=float_arg("--held-out", 0, 0.5), default=0.05,
                   help="captioned data: fraction of captions never trained on")

    pr = sub.add_parser("prep", help="decode a captioned image folder once to a .safetensors")
    pr.add_argument("--data", required=True, help="folder with metadata.jsonl or a .tar.gz")
    pr.add_argument("--size", type=_positive_int, default=64)
    pr.add_argument("--out", required=True, help="output .safetensors path")

    c = sub.add_parser("cache", help="encode the train split (plus flips) to a latent cache")
    c.add_argument("--codec", required=True, help="codec.safetensors or a folder holding it")
    c.add_argument("--data", required=True)
    c.add_argument("--out", required=True, help="output .safetensors path")
    c.add_argument("--no-flip", action="store_true")
    c.add_argument("--limit-per-class", type=_positive_int, default=None)
    c.add_argument("--held-out", type=float_arg("--held-out", 0, 0.5), default=0.05,
                   help="captioned data: fraction of captions marked held out (never trained on)")

    f = sub.add_parser("flow", help="train the LRF core on a latent cache (DDP under torchrun)")
    f.add_argument("--cache", required=True, help="latent cache from `lrf-train cache`")
    f.add_argument("--codec", required=True, help="the codec the cache was made with")
    f.add_argument("--out", required=True, help="run directory (resumes if it holds a state)")
    f.add_argument("--preset", default="cifar10")
    f.add_argument("--epochs", type=_positive_int, default=30)
    f.add_argument("--batch-size", type=_positive_int, default=256)
    f.add_argument("--lr", type=_lr, default=1e-3)
    f.add_argument("--ema", type=float_arg("--ema", 0, 1), default=0.999)
    f.add_argument("--snr-gamma", type=float_arg("--snr-gamma", -1e6, 1e6), default=5.0,
                   help="<= 0 for an unweighted loss")
    f.add_argument("--timesteps", choices=["logit_normal", "uniform"], default="logit_normal")
    f.add_argument("--seed", type=int_arg("--seed", 0, 2**63 - 1), default=0)
    f.add_argument("--limit", type=_positive_int, default=None, help="use the first N latents")
    f.add_argument("--no-bf16", action="store_true", help="fp32 math (about 10x slower here)")
    f.add_argument("--steps", type=_positive_int, default=20000,
                   help="text cache: optimiser steps (class caches count --epochs)")
    f.add_argument("--text-attention", action="store_true",
                   help="text cache: blocks also cross-attend to the prompt's token states")
    f.add_argument("--eval-every", type=_positive_int, default=1000,
                   help="text cache: steps between held-out evaluations and checkpoints")

    d = sub.add_parser("decoder", help="fine-tune only the codec's decoder (MSE + patch GAN)")
    d.add_argument("--codec", required=True, help="codec.safetensors or a folder holding it")
    d.add_argument("--data", required=True, help="image-folder dir or .tar/.tar.gz of one")
    d.add_argument("--out", required=True, help="run directory (resumes if it holds a state)")
    d.add_argument("--epochs", type=_positive_int, default=6)
    d.add_argument("--batch-size", type=_positive_int, default=64)
    d.add_argument("--lr", type=_lr, default=1e-4)
    d.add_argument("--adv-weight", type=_weight("--adv-weight"), default=0.3,
                   help="0 for no adversarial loss")
    d.add_argument("--adv-start", type=int, default=300,
                   help="MSE-only steps before the GAN")
    d.add_argument("--adv-ramp", type=int, default=1000,
                   help="steps of linear GAN ramp-up")
    d.add_argument("--fm-weight", type=_weight("--fm-weight"), default=0.5,
                   help="discriminator feature matching")
    d.add_argument("--fft-weight", type=_weight("--fft-weight"), default=0.05,
                   help="amplitude-spectrum L1")
    d.add_argument("--disc-width", type=_positive_int, default=32)
    d.add_argument("--save-every", type=_positive_int, default=200, help="steps between states")
    d.add_argument("--threads", type=_positive_int, default=None, help="torch.set_num_threads")
    d.add_argument("--no-bf16", action="store_true", help="train in fp32 (about 2x slower here)")
    d.add_argument("--hflip", action="store_true", help="also train on flipped images")
    d.add_argument("--finish", action="store_true",
                   help="train no further: write the codec from the saved state now")
    d.add_argument("--max-train-mse", type=float_arg("--max-train-mse", 0, 1e6, open_lo=True),
                   default=None,
                   help="blend the decoder back towards the start until its train MSE meets this")
    d.add_argument("--limit-per-class", type=_positive_int, default=None)

    ds = sub.add_parser("distill", help="distil the guided teacher into a few-step turbo student")
    ds.add_argument("--teacher", default="models/weights/cifar10", help="teacher checkpoint folder")
    ds.add_argument("--out", required=True,
                    help="run directory (resumes trajectories and training)")
    ds.add_argument("--trajectories", type=_positive_int, default=8192,
                   help="teacher 50-step trajectories to make (chunks of 512, resumable)")
    ds.add_argument("--steps", type=_positive_int, default=3000, help="student optimiser steps")
    ds.add_argument("--batch-size", type=_positive_int, default=256)
    ds.add_argument("--lr", type=_lr, default=2e-4)
    ds.add_argument("--eval-every", type=_positive_int, default=250)
    ds.add_argument("--default-steps", type=_positive_int, default=None,
                   help="sampling steps written into the student checkpoint (default 4; 1 for "
                        "a text teacher)")
    ds.add_argument("--skip-trajectories", action="store_true",
                    help="train on the chunks present (re-read at every eval) while another "
                         "process makes the rest")
    ds.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    ds.add_argument("--no-bf16", action="store_true", help="fp32 math (about 2x slower here)")
    ds.add_argument("--cache", default=None,
                    help="text teachers: the text cache they were trained on (prompts)")
    ds.add_argument("--teacher-steps", type=_positive_int, default=32,
                    help="text teachers: Euler steps of each trajectory")
    ds.add_argument("--chunk", type=_positive_int, default=256,
                    help="text teachers: trajectories per file (the unit of resume)")

    j = sub.add_parser("judge", help="train the emoji judge (image-text retrieval + style) "
                                     "that lrf-eval scores text models with")
    j.add_argument("--data", required=True, help="captioned data (folder, archive or prepared)")
    j.add_argument("--out", required=True, help="run directory (resumes if it holds a state)")
    j.add_argument("--steps", type=_positive_int, default=3000)
    j.add_argument("--batch-size", type=_positive_int, default=128)

    k = sub.add_parser("classifier", help="train the small CIFAR-10 classifier used by lrf-eval")
    k.add_argument("--data", required=True)
    k.add_argument("--out", required=True)
    k.add_argument("--epochs", type=_positive_int, default=16)
    k.add_argument("--limit-per-class", type=_positive_int, default=None)
    return p


@entry("lrf-train")  # one error line, Ctrl-C 130; no traceback (lrf/cli.py)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # a ValueError / OSError below is one line and exit 2 from lrf.cli.run (which also knows
    # when it is an interrupt a library rewrapped: then 'interrupted' and 130)
    with _no_empty_folder_left(args.out):
        _dispatch(args)
    return 0


@contextlib.contextmanager
def _no_empty_folder_left(out: str):
    """A run folder this command created and left without a single file (an error or Ctrl-C
    before the first state was saved) is removed again; anything holding a file (a saved
    state to resume from) is kept, and so is a folder that existed before."""
    existed = os.path.lexists(out)
    try:
        yield
    except BaseException:
        if not existed and os.path.isdir(out) and not os.path.islink(out):
            for dirpath, _, _ in sorted(os.walk(out), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # only empty folders: never a file
        raise


def _dispatch(args) -> None:
    if args.cmd == "prep":
        from lrf.training.captioned import prepare

        ds = prepare(args.data, args.out, args.size)
        print(f"prepared {len(ds)} captioned images at {args.size} px -> {args.out}")
    elif args.cmd == "ae" and is_captioned(args.data):
        from lrf.training.ae_captioned import RGBAAEConfig, train_rgba_ae

        cfg = RGBAAEConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                           size=args.size, factor=args.factor,
                           latent_channels=args.latent_channels, width=args.width,
                           latent_l2=args.latent_l2, held_out=args.held_out,
                           bf16=not args.no_bf16)
        res = train_rgba_ae(args.data, args.out, cfg)
        if res["stopped"]:
            print(f"stopped at step {res['step']}; rerun to resume")
        else:
            print("done: " + ", ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items()))
    elif args.cmd == "ae":
        from lrf.training.ae import AEConfig, train_ae

        cfg = AEConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       latent_l2=args.latent_l2, bf16=not args.no_bf16,
                       limit_per_class=args.limit_per_class)
        res = train_ae(args.data, args.out, cfg)
        if res.get("stopped"):
            print(f"stopped at step {res.get('step', res.get('steps'))}; rerun to resume")
        else:
            print(f"done: test MSE {res['test_mse']:.5f}")
    elif args.cmd == "cache" and is_captioned(args.data):
        from lrf.training.text_flow import build_text_cache

        res = build_text_cache(args.codec, args.data, args.out, held_out=args.held_out,
                               limit=args.limit_per_class)
        print(f"cached {res['images']} latents of shape {res['latent_shape']} "
              f"({res['held_out']} held out) and {res['prompts']} prompts -> {args.out}")
    elif args.cmd == "cache":
        from lrf.training.ae import build_latent_cache

        res = build_latent_cache(args.codec, args.data, args.out, hflip=not args.no_flip,
                                 limit_per_class=args.limit_per_class)
        print(f"cached {res['count']} latents of shape {res['shape']} -> {args.out}")
    elif args.cmd == "decoder":
        _run_decoder(args)
    elif args.cmd == "classifier":
        from lrf.training.classifier import train_classifier

        res = train_classifier(args.data, args.out, epochs=args.epochs,
                               limit_per_class=args.limit_per_class)
        if res.get("stopped"):
            print(f"stopped at step {res.get('step', res.get('steps'))}; rerun to resume")
        else:
            print(f"done: test accuracy {res['test_accuracy']:.4f} in {res['seconds']:.0f}s")
    elif args.cmd == "judge":
        from lrf.training.judge import JudgeConfig, train_judge

        res = train_judge(args.data, args.out, JudgeConfig(steps=args.steps,
                                                           batch_size=args.batch_size))
        print(("stopped" if res["stopped"] else "done") + f": {res['step']} steps; judge in "
              f"{args.out}/judge.safetensors")
    elif args.cmd == "flow":
        _run_flow(args)
    elif args.cmd == "distill":
        _run_distill(args)


def _is_text_cache(path: str) -> bool:
    from lrf.training.text_flow import TEXT_CACHE_FORMAT

    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return (f.metadata() or {}).get("format") == TEXT_CACHE_FORMAT
    except Exception:
        return False  # the class-cache path reports what is wrong with the file


def is_captioned(data: str) -> bool:
    """Whether ``data`` is captioned (a prepared .safetensors, or a folder / archive holding a
    metadata.jsonl) rather than class folders."""
    import tarfile

    if data.endswith(".safetensors"):
        return True
    if os.path.isdir(data):
        return any("metadata.jsonl" in files for _, _, files in os.walk(data))
    if os.path.isfile(data) and tarfile.is_tarfile(data):
        with tarfile.open(data, "r:*") as tar:
            return any(m.name.endswith("metadata.jsonl") for m in tar)
    return False


def _run_decoder(args) -> None:
    import torch

    from lrf.training.decoder import DecoderConfig, train_decoder

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = DecoderConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        adv_weight=args.adv_weight, adv_start=args.adv_start, adv_ramp=args.adv_ramp,
                        fm_weight=args.fm_weight, fft_weight=args.fft_weight,
                        disc_width=args.disc_width, bf16=not args.no_bf16, hflip=args.hflip,
                        limit_per_class=args.limit_per_class)
    res = train_decoder(args.codec, args.data, args.out, cfg, save_every=args.save_every,
                        finish=args.finish, max_train_mse=args.max_train_mse)
    if res.get("stopped"):
        print(f"stopped at step {res['steps']}; rerun to resume")
        return
    print(f"done: {res['steps']} steps in {res['seconds']:.0f}s, blend {res['alpha']:g}, "
          f"test MSE {res['test_mse']:.5f}; "
          f"codec in {args.out}/codec.safetensors")


def _run_distill(args) -> None:
    import torch

    if args.cache is not None:
        from lrf.training.text_distill import (TextDistillConfig, TextTrajectoryConfig,
                                               train_text_distill)

        if args.threads:
            torch.set_num_threads(args.threads)
        traj = TextTrajectoryConfig(count=args.trajectories, chunk=args.chunk,
                                    teacher_steps=args.teacher_steps,
                                    bf16=not args.no_bf16)
        cfg = TextDistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                eval_every=args.eval_every,
                                default_steps=args.default_steps or 1, bf16=not args.no_bf16)
        res = train_text_distill(args.teacher, args.cache, args.out, traj, cfg,
                                 skip_trajectories=args.skip_trajectories)
        print(("stopped" if res["stopped"] else "done") + f": {res['step']} student steps; "
              f"checkpoint in {args.out}/checkpoint")
        return

    from lrf.training.distill import DistillConfig, TrajectoryConfig, train_distill

    if args.threads:
        torch.set_num_threads(args.threads)
    traj = TrajectoryConfig(count=args.trajectories, bf16=not args.no_bf16)
    cfg = DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        eval_every=args.eval_every, default_steps=args.default_steps or 4,
                        bf16=not args.no_bf16)
    res = train_distill(args.teacher, args.out, traj, cfg, skip_trajectories=args.skip_trajectories)
    print(f"done: {res['steps']} student steps in {res['seconds']:.0f}s "
          f"({res['wall_seconds_incl_trajectories']:.0f}s this run incl. trajectories); "
          f"checkpoint in {args.out}/checkpoint")


def _run_flow(args) -> None:
    import os

    if _is_text_cache(args.cache):
        from lrf.training.text_flow import TextFlowConfig, train_text_flow

        cfg = TextFlowConfig(preset="emoji" if args.preset == "cifar10" else args.preset,
                             text_attention=args.text_attention, steps=args.steps,
                             batch_size=args.batch_size, lr=args.lr, ema=args.ema,
                             snr_gamma=args.snr_gamma, timestep_sampling=args.timesteps,
                             seed=args.seed, bf16=not args.no_bf16, eval_every=args.eval_every)
        res = train_text_flow(args.cache, args.codec, args.out, cfg)
        print(("stopped" if res["stopped"] else "done") + f": {res['step']} steps, "
              f"{res['seconds']:.0f}s of training; checkpoint in {args.out}/checkpoint")
        return

    import torch.distributed as dist

    from lrf.training.flow import FlowConfig, train_flow

    cfg = FlowConfig(preset=args.preset, epochs=args.epochs, batch_size=args.batch_size,
                     lr=args.lr, ema=args.ema, snr_gamma=args.snr_gamma if args.snr_gamma > 0 else None,
                     timestep_sampling=args.timesteps, seed=args.seed, limit=args.limit,
                     bf16=not args.no_bf16)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:  # launched by torchrun: gloo works on CPU
        dist.init_process_group("gloo")
    try:
        res = train_flow(args.cache, args.codec, args.out, cfg)
        if not distributed or dist.get_rank() == 0:
            print(f"done: {res['steps']} steps in {res['seconds']:.0f}s on {res['world_size']} "
                  f"process(es); checkpoint in {os.path.join(args.out, 'checkpoint')}")
    finally:
        if distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
