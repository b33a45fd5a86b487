"""Stage 1: train the TAESD-architecture autoencoder (diffusers ``AutoencoderTiny``) on images.

Loss: MSE in [-1, 1] plus a light L2 penalty on the raw latents, which keeps them well inside
the decoder's tanh(z/3)*3 clamp. Training runs under bf16 autocast with channels-last tensors
(the speed-up measured on this project's CPUs is in models/README.md). Evaluation is always fp32.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lrf.models.codec import Codec
from lrf.training.common import EpochBatches, TrainConfig
from lrf.training.data import load_image_folder, to_tensor_range
from lrf.training.loop import TrainLoop


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
    """Train on ``data``'s train split; resumable from ``OUT/ae_state.pt`` (only ``epochs`` may
    change). Writes ``OUT/codec.safetensors`` with the latent statistics at the end; a run
    stopped by SIGTERM returns ``{"stopped": True, ...}`` without one."""
    torch.manual_seed(cfg.seed)
    train = load_image_folder(data, "train", limit_per_class=cfg.limit_per_class)
    test = load_image_folder(data, "test", limit_per_class=cfg.limit_per_class)
    codec = Codec.new()
    model = codec.ae.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = max(1, len(train.images) // cfg.batch_size)
    loop = TrainLoop(out_dir, "ae", model, opt, steps_per_epoch * cfg.epochs, asdict(cfg),
                     warmup=cfg.warmup, length_key="epochs", log=log)
    x_all = torch.from_numpy(train.images).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    batches = EpochBatches(len(x_all), cfg.batch_size, cfg.seed)

    def step_fn(step: int) -> dict:
        idx, g = batches(step)
        x = x_all[idx].float().div_(127.5).sub_(1.0)                          # [B,3,32,32]
        if cfg.hflip:
            flip = torch.rand(len(x), generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            z = model.encoder(x)                                               # [B,4,4,4]
            y = model.decoder(z)
        mse = ((y.float() - x) ** 2).mean()
        loss = mse + cfg.latent_l2 * z.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"mse": float(mse.detach()), "loss": float(loss.detach())}

    res = loop.run(step_fn, lambda step: {"val_mse_2k": reconstruction_mse(codec, test.images[:2000])},
                   eval_every=steps_per_epoch, curve_key="mse",
                   title="Stage 1 autoencoder: train MSE")
    if res["stopped"]:
        log(f"stopped at step {res['step']}; rerun the same command to resume")
        return res
    codec.ae.to(memory_format=torch.contiguous_format)
    test_mse = reconstruction_mse(codec, test.images)
    log(f"test reconstruction MSE ({len(test.images)} images, [-1,1]): {test_mse:.5f}")
    stats = latent_stats(codec, train.images)
    codec = Codec(codec.ae, stats["latent_mean"], stats["latent_std"])
    codec.save_file(os.path.join(out_dir, "codec.safetensors"),
                    metadata={"test_mse": f"{test_mse:.6f}", "train_config": json.dumps(asdict(cfg))})
    return {"test_mse": test_mse, **stats, **res}


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
