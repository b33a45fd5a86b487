"""Stage 1 for captioned RGBA data: a TAESD-architecture autoencoder (diffusers
``AutoencoderTiny``) with an alpha channel, on premultiplied RGBA in [-1, 1].

The spatial factor (``factor`` 4 or 8: 2 or 3 downsamplings), the latent channels and the
width are options, so codecs can be compared at equal training cost; images whose caption is
held out (:func:`lrf.training.captioned.is_held_out`) are never trained on and are the
evaluation set. Loss: MSE + ``l1`` * L1 on premultiplied RGBA, plus a light L2 on the raw
latents (keeps them inside the decoder's tanh(z/3)*3 clamp).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lrf.models.codec import Codec
from lrf.training.captioned import is_held_out, load_captioned, premultiplied
from lrf.training.loop import TrainLoop


@dataclass(frozen=True)
class RGBAAEConfig:
    steps: int = 6000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 200
    size: int = 64
    factor: int = 8
    latent_channels: int = 4
    width: int = 32
    l1: float = 0.5
    latent_l2: float = 1e-3
    hflip: bool = True
    held_out: float = 0.05
    bf16: bool = True
    seed: int = 0
    limit: int | None = None

    def __post_init__(self):
        if self.factor not in (4, 8):
            raise ValueError(f"--factor must be 4 or 8, got {self.factor}")
        if self.size % self.factor:
            raise ValueError(f"--size {self.size} is not a multiple of --factor {self.factor}")
        if min(self.steps, self.batch_size, self.latent_channels, self.width) < 1:
            raise ValueError("steps, batch size, latent channels and width must be positive")


def new_rgba_codec(factor: int, latent_channels: int, width: int) -> Codec:
    k = int(math.log2(factor)) + 1
    return Codec.new(in_channels=4, out_channels=4, latent_channels=latent_channels,
                     encoder_block_out_channels=(width,) * k,
                     decoder_block_out_channels=(width,) * k,
                     num_encoder_blocks=(1, 3, 3, 3)[:k], num_decoder_blocks=(3, 3, 3, 1)[-k:])


def split_held_out(texts: list[str], fraction: float) -> np.ndarray:
    """Boolean mask [N]: rows whose caption is held out."""
    return np.array([is_held_out(t, fraction) for t in texts], dtype=bool)


@torch.no_grad()
def roundtrip_metrics(codec: Codec, images_u8: np.ndarray, batch: int = 256) -> dict:
    """Encode -> decode, fp32: PSNR (dB) of RGB premultiplied by alpha and of alpha, both in
    [0, 1], and the alpha IoU at 0.5 (the shape's silhouette)."""
    codec.eval()
    se_rgb = se_a = 0.0
    inter = union = 0.0
    n_rgb = n_a = 0
    for i in range(0, len(images_u8), batch):
        x = premultiplied(images_u8[i:i + batch])
        y = codec.decode_raw(codec.encode_raw(x)).clamp(-1, 1)
        x01, y01 = (x + 1) / 2, (y + 1) / 2
        se_rgb += float(((y01[:, :3] - x01[:, :3]) ** 2).sum())
        se_a += float(((y01[:, 3] - x01[:, 3]) ** 2).sum())
        n_rgb += x01[:, :3].numel()
        n_a += x01[:, 3].numel()
        ma, mb = x01[:, 3] > 0.5, y01[:, 3] > 0.5
        inter += float((ma & mb).sum())
        union += float((ma | mb).sum())
    psnr = lambda se, n: 10 * math.log10(1.0 / max(se / n, 1e-12))  # noqa: E731
    return {"psnr_premul_rgb": psnr(se_rgb, n_rgb), "psnr_alpha": psnr(se_a, n_a),
            "alpha_iou": inter / max(union, 1.0)}


def train_rgba_ae(data: str, out_dir: str, cfg: RGBAAEConfig, log=print) -> dict:
    import os

    torch.manual_seed(cfg.seed)
    ds = load_captioned(data, cfg.size, limit=cfg.limit)
    held = split_held_out(ds.texts, cfg.held_out)
    train, test = ds.images[~held], ds.images[held]
    if len(train) == 0:
        raise ValueError(f"{data}: every image's caption is held out; lower --held-out")
    eval_set = test[:512] if len(test) else train[:256]
    log(f"rgba codec f={cfg.factor} c={cfg.latent_channels} w={cfg.width}: "
        f"{len(train)} train / {len(test)} held-out images at {cfg.size} px")
    codec = new_rgba_codec(cfg.factor, cfg.latent_channels, cfg.width)
    ae = codec.ae.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=0.0)
    loop = TrainLoop(out_dir, "ae", ae, opt, cfg.steps, asdict(cfg), warmup=cfg.warmup, log=log)
    x_all = torch.from_numpy(train)

    def step_fn(step: int) -> dict:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(len(x_all), (cfg.batch_size,), generator=g)
        x = premultiplied(x_all[idx].numpy())
        if cfg.hflip:
            flip = torch.rand(len(x), generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            z = ae.encoder(x)
            y = ae.decoder(z)
        err = y.float() - x
        mse = (err ** 2).mean()
        loss = mse + cfg.l1 * err.abs().mean() + cfg.latent_l2 * z.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss), "mse": float(mse)}

    def eval_fn(step: int) -> dict:
        return roundtrip_metrics(codec, eval_set)

    def export_fn(lp: TrainLoop) -> None:
        pass  # the codec is written once at the end, with its latent statistics

    res = loop.run(step_fn, eval_fn, eval_every=max(1, min(1000, cfg.steps // 4)),
                   export_fn=export_fn, curve_key="mse", title="RGBA codec: train MSE")
    ae.to(memory_format=torch.contiguous_format)
    if res["stopped"]:
        return {**res, "metrics": None}
    metrics = roundtrip_metrics(codec, test if len(test) else train[:512])
    with torch.no_grad():
        z = torch.cat([codec.encode_raw(premultiplied(train[i:i + 512]))
                       for i in range(0, len(train), 512)])
    out = Codec(codec.ae, z.mean(dim=(0, 2, 3)).tolist(), z.std(dim=(0, 2, 3)).tolist())
    import json

    out.save_file(os.path.join(out_dir, "codec.safetensors"),
                  metadata={"train_config": json.dumps(asdict(cfg)),
                            "held_out_metrics": json.dumps(metrics)})
    log(f"held-out round trip ({len(test)} images): " +
        ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return {**res, "metrics": metrics}
