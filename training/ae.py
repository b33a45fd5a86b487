"""Stage 1: train the TAESD-architecture autoencoder (diffusers ``AutoencoderTiny``) on images.

Loss: MSE in [-1, 1] plus a light L2 penalty on the raw latents, which keeps them well inside
the decoder's tanh(z/3)*3 clamp. Training runs under bf16 autocast with channels-last tensors
(the speed-up measured on this project's CPUs is in models/README.md). Evaluation is always fp32.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from lrf.models.codec import Codec
from lrf.training.common import (TrainConfig, append_log, check_resume_config, cosine_lr, load_state,
                                 plot_curve, save_state)
from lrf.training.data import load_image_folder, to_tensor_range


@dataclass(frozen=True)
class AEConfig(TrainConfig):
    positive_fields = ("epochs", "batch_size")

    epochs: int = 10
    batch_size: int = 128
    latent_l2: float = 1e-3
    hflip: bool = True
    limit_per_class: int | None = None  # tiny subsets for tests


@torch.no_grad()
def reconstruction_mse(codec: Codec, images_u8: np.ndarray, batch: int = 500) -> float:
    """Mean squared error in [-1, 1] of encode->decode, fp32, over all images."""
    codec.eval()
    total, n = 0.0, 0
    for i in range(0, len(images_u8), batch):
        x = to_tensor_range(images_u8[i:i + batch])
        y = codec.decode_raw(codec.encode_raw(x)).clamp(-1, 1)
        total += float(((y - x) ** 2).sum())
        n += x.numel()
    return total / n


def train_ae(data: str, out_dir: str, cfg: AEConfig, log=print) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    state_path = os.path.join(out_dir, "ae_state.pt")
    log_path = os.path.join(out_dir, "ae_log.jsonl")
    torch.manual_seed(cfg.seed)
    train = load_image_folder(data, "train", limit_per_class=cfg.limit_per_class)
    test = load_image_folder(data, "test", limit_per_class=cfg.limit_per_class)
    codec = Codec.new()
    opt = torch.optim.AdamW(codec.ae.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = max(1, len(train.images) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    start_epoch, step = 0, 0
    if os.path.isfile(state_path):
        st = load_state(state_path)
        # Only the epoch count may change on resume (shorten or extend a run: the cosine
        # schedule is re-derived from the new total from the current step on).
        check_resume_config(state_path, st["config"], asdict(cfg), "epochs")
        if st["epoch"] >= cfg.epochs and st["config"]["epochs"] != cfg.epochs:
            raise ValueError(f"{state_path}: already {st['epoch']} epochs done; --epochs "
                             f"{cfg.epochs} would train none")
        codec.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        start_epoch, step = st["epoch"], st["step"]
        torch.set_rng_state(st["rng"])
        log(f"resumed from {state_path} at epoch {start_epoch} (run of {st['config']['epochs']} "
            f"epochs, now {cfg.epochs})")
    x_all = torch.from_numpy(train.images).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    model = codec.ae.to(memory_format=torch.channels_last)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(len(x_all))
        t0 = time.time()
        bar = tqdm(range(steps_per_epoch), desc=f"ae epoch {epoch + 1}/{cfg.epochs}",
                   mininterval=10, disable=None)
        for b in bar:
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = x_all[idx].float().div_(127.5).sub_(1.0)
            if cfg.hflip:
                flip = torch.rand(len(x)) < 0.5
                x[flip] = x[flip].flip(-1)
            x = x.contiguous(memory_format=torch.channels_last)
            lr = cosine_lr(step, total, cfg.lr, cfg.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                z = model.encoder(x)
                y = model.decoder(z)
            mse = ((y.float() - x) ** 2).mean()
            loss = mse + cfg.latent_l2 * z.float().pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 20 == 0:
                append_log(log_path, {"step": step, "epoch": epoch, "mse": float(mse),
                                      "loss": float(loss), "lr": lr})
                bar.set_postfix(mse=f"{float(mse):.4f}")
        val = reconstruction_mse(codec, test.images[:2000])
        append_log(log_path, {"step": step, "epoch": epoch + 1, "val_mse_2k": val,
                              "epoch_seconds": time.time() - t0})
        log(f"epoch {epoch + 1}: val mse (2k test images) {val:.5f}, {time.time() - t0:.0f}s")
        save_state(state_path, {"model": codec.state_dict(), "opt": opt.state_dict(),
                                "epoch": epoch + 1, "step": step, "rng": torch.get_rng_state(),
                                "config": asdict(cfg)})
    codec.ae.to(memory_format=torch.contiguous_format)
    test_mse = reconstruction_mse(codec, test.images)
    log(f"test reconstruction MSE ({len(test.images)} images, [-1,1]): {test_mse:.5f}")
    stats = latent_stats(codec, train.images)
    codec = Codec(codec.ae, stats["latent_mean"], stats["latent_std"])
    codec.save_file(os.path.join(out_dir, "codec.safetensors"),
                    metadata={"test_mse": f"{test_mse:.6f}", "train_config": json.dumps(asdict(cfg))})
    plot_curve(log_path, os.path.join(out_dir, "ae_loss.png"), "mse", "Stage 1 autoencoder: train MSE")
    return {"test_mse": test_mse, **stats}


@torch.no_grad()
def encode_images(codec: Codec, images_u8: np.ndarray, hflip: bool = False,
                  batch: int = 500) -> torch.Tensor:
    """Raw (un-normalised) latents of uint8 NHWC images, fp32; with ``hflip`` the flipped copies
    follow the originals."""
    codec.eval()
    out = []
    for flip in ([False, True] if hflip else [False]):
        for i in range(0, len(images_u8), batch):
            x = to_tensor_range(images_u8[i:i + batch])
            out.append(codec.encode_raw(x.flip(-1) if flip else x))
    return torch.cat(out)


def latent_stats(codec: Codec, images_u8: np.ndarray) -> dict:
    z = encode_images(codec, images_u8, hflip=True)
    return {"latent_mean": z.mean(dim=(0, 2, 3)).tolist(),
            "latent_std": z.std(dim=(0, 2, 3)).tolist()}


def build_latent_cache(codec_path: str, data: str, out_path: str, hflip: bool = True,
                       limit_per_class: int | None = None) -> dict:
    """Encode the train split once (plus flips) into a safetensors cache of normalised latents."""
    from safetensors.torch import save_file

    codec = Codec.from_pretrained(codec_path)
    train = load_image_folder(data, "train", limit_per_class=limit_per_class)
    z = codec.normalize(encode_images(codec, train.images, hflip=hflip))
    labels = torch.from_numpy(np.concatenate([train.labels] * (2 if hflip else 1)))
    tmp = f"{out_path}.tmp{os.getpid()}"
    save_file({"latents": z.contiguous(), "labels": labels}, tmp,
              metadata={"classes": json.dumps(list(train.classes)), "hflip": str(hflip),
                        "codec": os.path.abspath(codec_path)})
    os.replace(tmp, out_path)
    return {"count": len(z), "shape": list(z.shape[1:])}
