"""Issue 15: fine-tune only the codec's decoder (encoder frozen) for sharper images.

Loss on the decoder, per batch of cached latents z = encoder(x):

    mse(y, x) + fft_weight * L1(|F(y)|, |F(x)|) + fm_weight * feature matching
              + w_adv * softplus(-D(y))                      (non-saturating GAN loss)

* ``D`` is a small spectral-norm patch discriminator trained from scratch (logistic loss, 8x8
  patch logits at 32x32); it trains from step 0, the decoder only feels it after ``adv_start``.
* ``w_adv = adv_weight * ramp * lam``: ``ramp`` goes 0 -> 1 linearly over ``adv_ramp`` steps
  after ``adv_start``; ``lam`` is VQGAN's adaptive weight ||dRec/dW|| / ||dAdv/dW|| at the
  decoder's last conv (clamped to ``adaptive_max``, EMA-smoothed), so the adversarial gradient is
  a fixed fraction of the reconstruction gradient whatever the scale of either loss.
* Feature matching: L1 between D's hidden features of y and of its own x (pix2pixHD), a learned
  perceptual term with no downloaded weights. The amplitude-spectrum L1 pushes back against the
  high-frequency loss that MSE alone accepts (MSE on the complex spectrum *is* pixel MSE, so only
  amplitudes carry new information).

The encoder never changes, so latents, latent statistics, the latent cache and every LRF core
trained on them stay valid. Latents are encoded once (train split plus flips, bf16 autocast); the
saved codec holds the EMA of the decoder weights and the original encoder and stats.

``lrf.training.decoder_report`` measures a trained decoder against the one it replaces.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from lrf.models.codec import Codec
from lrf.training.ae import encode_images, reconstruction_mse
from lrf.training.common import EpochBatches
from lrf.training.data import load_image_folder
from lrf.training.loop import TrainLoop


@dataclass(frozen=True)
class DecoderConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-4
    disc_lr: float = 2e-4
    warmup: int = 100
    adv_weight: float = 0.3       # ceiling of w_adv / lam
    adv_start: int = 300          # MSE-only steps while D warms up
    adv_ramp: int = 1000
    adaptive_max: float = 10.0
    fm_weight: float = 0.5
    fft_weight: float = 0.05
    disc_width: int = 32
    ema: float = 0.998
    bf16: bool = True
    hflip: bool = False           # True doubles the one-off encoding (165 s per 50k here)
    seed: int = 0
    limit_per_class: int | None = None  # tiny subsets for tests

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or not (self.lr > 0 and self.disc_lr > 0):
            raise ValueError(f"DecoderConfig: epochs, batch_size and learning rates must be "
                             f"positive, got {self}")
        for k in ("adv_weight", "fm_weight", "fft_weight", "adv_start", "adv_ramp", "warmup"):
            if getattr(self, k) < 0:
                raise ValueError(f"DecoderConfig: {k} must be >= 0, got {getattr(self, k)}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"DecoderConfig: ema must be in [0, 1), got {self.ema}")


######################################################################## discriminator
class PatchDiscriminator(nn.Module):
    """[B,3,32,32] in [-1,1] -> patch logits [B,1,8,8] and the hidden features (for matching)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        sn = spectral_norm
        self.blocks = nn.ModuleList([
            nn.Sequential(sn(nn.Conv2d(3, w, 3, 1, 1)), nn.LeakyReLU(0.2)),              # 32x32
            nn.Sequential(sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2)),          # 16x16
            nn.Sequential(sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2)),      # 8x8
        ])
        self.out = sn(nn.Conv2d(4 * w, 1, 3, 1, 1))                                       # 8x8

    def forward(self, x):
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return self.out(x), feats


def amplitude_l1(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between the orthonormal 2-D amplitude spectra of y and x (per image and channel)."""
    return (torch.fft.rfft2(y.float(), norm="ortho").abs()
            - torch.fft.rfft2(x.float(), norm="ortho").abs()).abs().mean()


######################################################################## training
class AdaptiveWeight:
    """VQGAN's adaptive weight ||dRec/dW|| / ||dAdv/dW|| at the decoder's last conv, clamped to
    ``cap`` and EMA-smoothed; resumable (``state_dict``)."""

    def __init__(self, cap: float):
        self.cap, self.value = cap, 1.0

    def update(self, rec: torch.Tensor, adv: torch.Tensor, w: torch.Tensor) -> float:
        g_rec = torch.autograd.grad(rec, w, retain_graph=True)[0]
        g_adv = torch.autograd.grad(adv, w, retain_graph=True)[0]
        lam = float((g_rec.norm() / (g_adv.norm() + 1e-6)).clamp(0, self.cap))
        self.value = 0.9 * self.value + 0.1 * lam
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, sd: dict) -> None:
        self.value = float(sd["value"])


def train_decoder(codec_path: str, data: str, out_dir: str, cfg: DecoderConfig,
                  save_every: int = 200, stop_after: int | None = None, finish: bool = False,
                  max_train_mse: float | None = None, log=print) -> dict:
    """Fine-tune ``codec_path``'s decoder on ``data``; writes OUT/codec.safetensors.

    ``save_every``: steps between resumable states (SIGTERM also saves, at the next step).
    ``stop_after``: save the resumable state after that many steps (this call) and return
    ``{"stopped": True, ...}`` without writing a codec; rerunning resumes. ``finish``: train no
    further, write the codec from the saved state's EMA decoder (ends a run early).
    ``max_train_mse``: if the EMA decoder's MSE on 2,000 *train* images exceeds it, blend its
    weights back towards the starting decoder, (1 - a) * start + a * tuned, with the largest
    a in 1.0, 0.9, ..., 0.0 that meets it (the test split is never used to choose a)."""
    t_start = time.time()
    if finish and not os.path.isfile(os.path.join(out_dir, "decoder_state.pt")):
        raise FileNotFoundError(f"--finish: no training state {out_dir}/decoder_state.pt to "
                                f"finish from")
    torch.manual_seed(cfg.seed)
    codec = Codec.from_pretrained(codec_path)
    train = load_image_folder(data, "train", limit_per_class=cfg.limit_per_class)
    test = load_image_folder(data, "test", limit_per_class=cfg.limit_per_class)
    enc_before = {k: v.clone() for k, v in codec.ae.encoder.state_dict().items()}
    codec.ae.encoder.requires_grad_(False)
    # channels-last + bf16 autocast: 0.56 s per decoder step of 64 here, against 1.02 without.
    dec = codec.ae.decoder.to(memory_format=torch.channels_last)
    disc = PatchDiscriminator(cfg.disc_width).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(dec.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9),
                              weight_decay=0.0)
    lam = AdaptiveWeight(cfg.adaptive_max)
    n = len(train.images)
    batches = EpochBatches(n, cfg.batch_size, cfg.seed)
    # a fixed EMA decay (no diffusers warm-up ramp): the recipe of the shipped decoder
    loop = TrainLoop(out_dir, "decoder", dec, opt, batches.per_epoch * cfg.epochs, asdict(cfg),
                     warmup=cfg.warmup, ema_decay=cfg.ema, ema_warmup=False,
                     length_key="epochs", save_every_steps=save_every, log=log,
                     extras={"disc": disc, "opt_d": opt_d, "lam": lam})
    if loop.step >= loop.total and not finish:
        raise ValueError(f"{loop.state_path}: already {loop.step} steps done; --epochs "
                         f"{cfg.epochs} ({loop.total} steps) would train none")
    z_all = _cached_latents(codec, train.images, cfg, os.path.join(out_dir, "latents.safetensors"),
                            log)
    x_u8 = torch.from_numpy(train.images).permute(0, 3, 1, 2).contiguous()   # uint8 NCHW
    w_last = dec.layers[-1].weight                      # where the adaptive weight is measured

    def step_fn(step: int) -> dict:
        idx, g = batches(step)
        f = (torch.rand(len(idx), generator=g) < 0.5) if cfg.hflip else torch.zeros(
            len(idx), dtype=torch.bool)
        z = z_all[idx + n * f.long()]                                          # [B,4,4,4]
        x = x_u8[idx].float().div_(127.5).sub_(1.0)                            # [B,3,32,32]
        x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
        z = z.contiguous(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        ramp = min(1.0, max(0.0, (step - cfg.adv_start) / max(1, cfg.adv_ramp)))
        use_adv = ramp > 0 and (cfg.adv_weight > 0 or cfg.fm_weight > 0)
        # ---- decoder step (D frozen)
        disc.requires_grad_(False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            y = dec(z)                                                         # [B,3,32,32]
            mse = ((y.float() - x) ** 2).mean()
            rec = mse + cfg.fft_weight * amplitude_l1(y, x)
            loss = rec
            if use_adv:
                with torch.no_grad():
                    _, feats_real = disc(x)
                logits_fake, feats_fake = disc(y)                              # [B,1,8,8]
                g_adv = F.softplus(-logits_fake.float()).mean()
                fm = sum((a.float() - r.float()).abs().mean()
                         for a, r in zip(feats_fake, feats_real)) / len(feats_real)
                loss = rec + cfg.fm_weight * ramp * fm
        if use_adv and cfg.adv_weight > 0:
            if step % 10 == 0:  # the adaptive ratio moves slowly: sample it
                lam.update(rec, g_adv, w_last)
            loss = loss + cfg.adv_weight * ramp * lam.value * g_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # ---- discriminator step
        disc.requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits, _ = disc(torch.cat([x, y.detach()]))
            lr_, lf = logits.float().chunk(2)
            d_loss = F.softplus(-lr_).mean() + F.softplus(lf).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        logs = {"mse": mse.item(), "d_loss": d_loss.item(), "d_real": lr_.mean().item(),
                "d_fake": lf.mean().item()}
        if use_adv:
            logs.update(g_adv=g_adv.item(), fm=fm.item(), lam=lam.value,
                        adv_weight=cfg.adv_weight * ramp * lam.value)
        return logs

    def eval_fn(step: int) -> dict:
        live = {k: v.clone() for k, v in dec.state_dict().items()}
        dec.load_state_dict(loop.ema_state_dict())
        val = reconstruction_mse(codec, test.images[:2000])
        dec.load_state_dict(live)
        return {"epoch": step // batches.per_epoch, "val_mse_2k_ema": val}

    res = loop.run(step_fn, eval_fn, eval_every=batches.per_epoch, curve_key="mse",
                   title="decoder fine-tune: train MSE",
                   stop_after=0 if finish else stop_after,
                   curves={f"decoder_{key}": (key, title) for key, title in (
                       ("mse", "decoder fine-tune: train MSE"),
                       ("d_loss", "discriminator loss (logistic)"),
                       ("g_adv", "decoder adversarial loss softplus(-D(y))"),
                       ("adv_weight", "adversarial weight adv_weight * ramp * lam"))})
    step, seconds = loop.step, res["seconds"]
    if res["stopped"] and not finish:
        log(f"stopped at step {step} of {loop.total}; rerun the same command to resume")
        return {"stopped": True, "steps": step, "seconds": seconds}
    dec.to(memory_format=torch.contiguous_format)
    dec.load_state_dict(loop.ema_state_dict())
    codec.eval()
    alpha = 1.0
    if max_train_mse is not None:
        alpha = _pick_alpha(codec, Codec.from_pretrained(codec_path).ae.decoder.state_dict(),
                            train.images[::25], max_train_mse, log)
    for k, v in codec.ae.encoder.state_dict().items():
        assert torch.equal(v, enc_before[k]), f"encoder weight {k} changed"
    test_mse = reconstruction_mse(codec, test.images)
    codec.save_file(os.path.join(out_dir, "codec.safetensors"),
                    metadata={"test_mse": f"{test_mse:.6f}",
                              "decoder_config": json.dumps(asdict(cfg)),
                              "decoder_steps": str(step), "decoder_blend_alpha": f"{alpha:g}",
                              "decoder_train_seconds": f"{seconds:.0f}"})
    log(f"test reconstruction MSE ({len(test.images)} images, [-1,1]): {test_mse:.5f}; "
        f"training {seconds:.0f}s (wall {time.time() - t_start:.0f}s with data and encoding)")
    return {"test_mse": test_mse, "steps": step, "seconds": seconds, "alpha": alpha}


def _cached_latents(codec: Codec, images_u8: np.ndarray, cfg: DecoderConfig, path: str,
                    log) -> torch.Tensor:
    """Raw train latents (plus flips with ``hflip``), encoded once under bf16 autocast and kept
    in the run folder, keyed by the encoder weights so a resume never re-encodes."""
    import hashlib

    from safetensors.torch import load_file, save_file

    h = hashlib.sha256()
    for k, v in sorted(codec.ae.encoder.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    key = f"{h.hexdigest()}:{len(images_u8)}:{cfg.hflip}:{cfg.bf16}:{cfg.limit_per_class}"
    if os.path.isfile(path):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            if (f.metadata() or {}).get("key") == key:
                return load_file(path)["latents"]
    t0 = time.time()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        z = encode_images(codec, images_u8, hflip=cfg.hflip).float()
    tmp = f"{path}.tmp{os.getpid()}"
    save_file({"latents": z.contiguous()}, tmp, metadata={"key": key})
    os.replace(tmp, path)
    log(f"encoded {len(z)} latents in {time.time() - t0:.0f}s")
    return z


def _pick_alpha(codec: Codec, start: dict, images_u8: np.ndarray, max_mse: float, log) -> float:
    """Blend ``codec``'s decoder towards ``start`` until its MSE on ``images_u8`` <= max_mse."""
    dec = codec.ae.decoder
    tuned = {k: v.clone() for k, v in dec.state_dict().items()}
    for a in np.round(np.arange(1.0, -0.01, -0.1), 2):
        dec.load_state_dict({k: (1 - a) * start[k] + a * tuned[k] for k in tuned})
        mse = reconstruction_mse(codec, images_u8)
        log(f"blend a={a:.1f}: MSE on {len(images_u8)} train images {mse:.5f}")
        if mse <= max_mse:
            return float(a)
    raise ValueError(f"even the starting decoder has train MSE {mse:.5f} > {max_mse}")
