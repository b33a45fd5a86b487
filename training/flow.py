"""Stage 2: train the LRF core on cached latents (rectified flow, CFG label dropout, EMA).

Randomness is a pure function of (seed, epoch) for the data order and (seed, step) for
timesteps, noise and label dropout, always drawn for the *global* batch. That makes resume exact
without saving RNG state, and makes a DDP run (each rank takes its slice of the global batch,
gradients averaged) compute the same update as a single process.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from lrf.models.checkpoint import save_checkpoint
from lrf.models.codec import Codec
from lrf.models.config import get_preset
from lrf.models.flow import drop_labels, flow_loss, sample_timesteps
from lrf.models.lrf import LRFModel, count_parameters
from lrf.training.common import EpochBatches, TrainConfig
from lrf.training.loop import TrainLoop, dist_info


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


def train_flow(cache: str, codec_path: str, out_dir: str, cfg: FlowConfig, log=print,
               on_epoch_end=None) -> dict:
    """Train; resumable from ``out_dir/flow_state.pt``. Writes ``out_dir/checkpoint`` (EMA
    weights) after every epoch, the loss log and curve. Returns summary numbers.
    ``on_epoch_end(epoch)`` is called (on rank 0) after each epoch's state and checkpoint are
    written."""
    rank, world = dist_info()
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by {world} ranks")
    z_all, y_all, classes = load_cache(cache, cfg.limit)
    codec = Codec.from_pretrained(codec_path)
    mcfg = get_preset(cfg.preset)
    if tuple(z_all.shape[1:]) != (mcfg.latent_channels, mcfg.latent_size, mcfg.latent_size):
        raise ValueError(f"cache latents {tuple(z_all.shape[1:])} do not fit preset {cfg.preset!r}")
    torch.manual_seed(cfg.seed)
    model = LRFModel.from_lrf_config(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = EpochBatches(len(z_all), cfg.batch_size, cfg.seed)
    spe = batches.per_epoch
    # a fixed EMA decay (no diffusers warm-up ramp): the recipe of the shipped teacher
    loop = TrainLoop(out_dir, "flow", model, opt, spe * cfg.epochs, asdict(cfg),
                     warmup=cfg.warmup, ema_decay=cfg.ema, ema_warmup=False,
                     length_key="epochs", log=log)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sl = slice(rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world)
    running = {"sum": 0.0, "n": 0}

    def step_fn(step: int) -> dict:
        idx, g = batches(step)
        z0, y = z_all[idx], y_all[idx]                                         # global batch
        t = sample_timesteps(len(idx), cfg.timestep_sampling, g)
        eps = torch.randn(z0.shape, generator=g)
        y = drop_labels(y, mcfg.null_class, cfg.label_dropout, g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = flow_loss(ddp, z0[sl], y[sl], t[sl], eps[sl], cfg.snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        lv = float(loss.detach())
        running["sum"] += lv
        running["n"] += 1
        return {"loss": lv}

    def eval_fn(step: int) -> dict:
        # the mean loss of the epoch's steps, over all ranks (not rank 0's share of the batch)
        tot = torch.tensor([running["sum"], float(running["n"])])
        if world > 1:
            dist.all_reduce(tot)
        running.update(sum=0.0, n=0)
        return {"epoch": step // spe, "epoch_loss": float(tot[0] / tot[1].clamp(min=1))}

    def export_fn(lp: TrainLoop) -> None:
        save_checkpoint(os.path.join(out_dir, "checkpoint"), model, codec, classes,
                        state_dict=lp.ema_state_dict(),
                        training={"flow": asdict(cfg), "epochs_done": lp.step // spe,
                                  "steps": lp.step, "world_size": world,
                                  "parameters": count_parameters(model)})
        if on_epoch_end is not None and lp.step % spe == 0:
            on_epoch_end(lp.step // spe)

    res = loop.run(step_fn, eval_fn, eval_every=spe, export_fn=export_fn,
                   title="Stage 2 LRF: SNR-weighted flow loss")
    return {"steps": loop.step, "seconds": res["seconds"], "world_size": world,
            "stopped": res["stopped"], "model": model, "ema": loop.ema}
