"""Stage 2: train the LRF core on cached latents (rectified flow, CFG label dropout, EMA).

Randomness is a pure function of (seed, epoch) for the data order and (seed, step) for
timesteps, noise and label dropout, always drawn for the *global* batch. That makes resume exact
without saving RNG state, and makes a DDP run (each rank takes its slice of the global batch,
gradients averaged) compute the same update as a single process.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from tqdm import tqdm

from lrf.models.checkpoint import save_checkpoint
from lrf.models.codec import Codec
from lrf.models.config import get_preset
from lrf.models.flow import drop_labels, flow_loss, sample_timesteps
from lrf.models.lrf import LRFModel, count_parameters
from lrf.training.common import (EMA, TrainConfig, append_log, cosine_lr, load_state, plot_curve,
                                 save_state)


@dataclass(frozen=True)
class FlowConfig(TrainConfig):
    positive_fields = ("epochs", "batch_size")

    preset: str = "cifar10"
    epochs: int = 30
    warmup: int = 500
    weight_decay: float = 0.01
    ema: float = 0.999
    label_dropout: float = 0.1
    snr_gamma: float | None = 5.0
    timestep_sampling: str = "logit_normal"
    grad_clip: float = 1.0
    limit: int | None = None  # first N cached latents (tests)

    def __post_init__(self):
        get_preset(self.preset)
        super().__post_init__()
        if not 0 <= self.label_dropout < 1 or not 0 <= self.ema < 1:
            raise ValueError("FlowConfig: label_dropout and ema must lie in [0, 1)")


def load_cache(path: str, limit: int | None = None):
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"latent cache {path!r} not found: make it with "
                                "`lrf-train cache --codec ... --data ... --out ...`")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        z, y = f.get_tensor("latents"), f.get_tensor("labels")
    if limit is not None:
        z, y = z[:limit], y[:limit]
    return z, y, json.loads(meta.get("classes", "[]"))


def _dist_info():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_flow(cache: str, codec_path: str, out_dir: str, cfg: FlowConfig, log=print,
               on_epoch_end=None) -> dict:
    """Train; resumable from ``out_dir/flow_state.pt``. Writes ``out_dir/checkpoint`` (EMA
    weights) after every epoch, the loss log and curve. Returns summary numbers."""
    rank, world = _dist_info()
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by {world} ranks")
    os.makedirs(out_dir, exist_ok=True)
    state_path = os.path.join(out_dir, "flow_state.pt")
    log_path = os.path.join(out_dir, "flow_log.jsonl")
    z_all, y_all, classes = load_cache(cache, cfg.limit)
    codec = Codec.from_pretrained(codec_path)
    mcfg = get_preset(cfg.preset)
    if tuple(z_all.shape[1:]) != (mcfg.latent_channels, mcfg.latent_size, mcfg.latent_size):
        raise ValueError(f"cache latents {tuple(z_all.shape[1:])} do not fit preset {cfg.preset!r}")
    torch.manual_seed(cfg.seed)
    model = LRFModel.from_lrf_config(mcfg)
    ema = EMA(model, cfg.ema)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(z_all) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    epoch0, step = 0, 0
    if os.path.isfile(state_path):
        st = load_state(state_path)
        if st["config"] != asdict(cfg):
            raise ValueError(f"{state_path}: resume state was made with {st['config']}, not "
                             f"{asdict(cfg)}; use another --out or the same options")
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        epoch0, step = st["epoch"], st["step"]
        if rank == 0:
            log(f"resumed from {state_path} at epoch {epoch0}")
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    per_rank = cfg.batch_size // world
    t_start = time.time()
    for epoch in range(epoch0, cfg.epochs):
        model.train()
        perm = torch.randperm(len(z_all), generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))
        bar = tqdm(range(steps_per_epoch), desc=f"flow epoch {epoch + 1}/{cfg.epochs}",
                   mininterval=10, disable=None if rank == 0 else True)
        t0 = time.time()
        running = 0.0
        for b in bar:
            g = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            z0, y = z_all[idx], y_all[idx]
            t = sample_timesteps(len(idx), cfg.timestep_sampling, g)
            eps = torch.randn(z0.shape, generator=g)
            y = drop_labels(y, mcfg.null_class, cfg.label_dropout, g)
            sl = slice(rank * per_rank, (rank + 1) * per_rank)
            lr = cosine_lr(step, total, cfg.lr, cfg.warmup)
            for grp in opt.param_groups:
                grp["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = flow_loss(ddp, z0[sl], y[sl], t[sl], eps[sl], cfg.snr_gamma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            ema.update(model)
            step += 1
            lv = float(loss.detach())
            running += lv
            if rank == 0 and step % 20 == 0:
                append_log(log_path, {"step": step, "epoch": epoch, "loss": lv, "lr": lr})
                bar.set_postfix(loss=f"{lv:.4f}")
        if world > 1:  # log the global mean, not rank 0's half of it
            tot = torch.tensor(running)
            dist.all_reduce(tot)
            running = float(tot) / world
        if rank == 0:
            mean = running / steps_per_epoch
            append_log(log_path, {"step": step, "epoch": epoch + 1, "epoch_loss": mean,
                                  "epoch_seconds": time.time() - t0})
            log(f"epoch {epoch + 1}/{cfg.epochs}: mean loss {mean:.4f}, {time.time() - t0:.0f}s")
            save_state(state_path, {"model": model.state_dict(), "ema": ema.state_dict(),
                                    "opt": opt.state_dict(), "epoch": epoch + 1, "step": step,
                                    "config": asdict(cfg)})
            save_checkpoint(os.path.join(out_dir, "checkpoint"), model, codec, classes,
                            state_dict=ema.state_dict(),
                            training={"flow": asdict(cfg), "epochs_done": epoch + 1, "steps": step,
                                      "world_size": world, "parameters": count_parameters(model)})
            if epoch + 1 == cfg.epochs or (epoch + 1) % 5 == 0:  # matplotlib is slow to redraw
                plot_curve(log_path, os.path.join(out_dir, "flow_loss.png"), "loss",
                           "Stage 2 LRF: SNR-weighted flow loss")
        if world > 1:
            dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    return {"steps": step, "seconds": time.time() - t_start, "world_size": world,
            "model": model, "ema": ema}
