"""Stage 5 for text models: distil the guided text teacher into a 1-4 step turbo student.

The method is the class models' (``lrf.training.distill``): teacher Euler trajectories under
classifier-free guidance with a random guidance scale, then a student with guidance and
step-size embeddings (initialised from the teacher) trained so that one Euler step of size d
from the teacher state z(t) lands on z(t - d). Here each trajectory also has a prompt (a
training caption or alias, from the text cache) and a style (or the null style), and the
student sees the same prompt conditioning.

Trajectories are written in chunks (resumable); the student trains with
:class:`lrf.training.loop.TrainLoop` and is scored at each eval by its 1/2/4-step latent MSE
against the teacher's final state on held-out trajectories.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

from lrf.models.checkpoint import load_checkpoint, save_checkpoint
from lrf.models.flow import euler_sample
from lrf.models.lrf import count_parameters
from lrf.training.distill import (check_trajectory_meta, sample_segments, state_at,
                                  student_from_teacher)
from lrf.training.loop import TrainLoop
from lrf.training.text_flow import TextBatcher, TextFlowConfig, load_text_cache


@dataclass(frozen=True)
class TextTrajectoryConfig:
    count: int = 6144
    chunk: int = 256
    teacher_steps: int = 32
    guidance_min: float = 1.0
    guidance_max: float = 6.0
    guidance_fixed_frac: float = 1 / 3
    guidance_default: float = 3.0
    null_style_frac: float = 0.15
    bf16: bool = True
    seed: int = 1_000_000


@dataclass(frozen=True)
class TextDistillConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 2e-4
    warmup: int = 100
    ema: float = 0.999
    grid_frac: float = 0.75
    val_chunks: int = 1
    eval_every: int = 500
    default_steps: int = 1
    default_guidance: float = 3.0
    bf16: bool = True
    seed: int = 0


def _chunk(out: str, i: int) -> str:
    return os.path.join(out, f"chunk_{i:04d}.safetensors")


@torch.no_grad()
def make_text_trajectories(teacher_dir: str, cache_path: str, out_dir: str,
                           cfg: TextTrajectoryConfig, log=print) -> None:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "trajectories.json")
    want = {"teacher": os.path.basename(os.path.normpath(teacher_dir)),
            "config": {k: v for k, v in asdict(cfg).items() if k != "count"}}
    check_trajectory_meta(meta_path, want)
    ckpt = load_checkpoint(teacher_dir)
    model, mcfg = ckpt.model.eval(), ckpt.config
    cache, _ = load_text_cache(cache_path)
    rows = torch.nonzero(~cache["held_out"]).flatten()
    batcher = TextBatcher(cache, TextFlowConfig(text_attention=mcfg.text_attention),
                          mcfg.null_class, rows)
    null = batcher.text(torch.zeros(1, dtype=torch.long))
    n_chunks = -(-cfg.count // cfg.chunk)
    todo = [i for i in range(n_chunks) if not os.path.isfile(_chunk(out_dir, i))]
    t0 = time.time()
    for i in tqdm(todo, desc="teacher trajectories", mininterval=10, disable=None):
        g = torch.Generator().manual_seed(cfg.seed + i)
        b = min(cfg.chunk, cfg.count - i * cfg.chunk)
        r = rows[torch.randint(len(rows), (b,), generator=g)]
        pids = cache["prompt"][r].clone()
        has = batcher.has_alias[r] & (torch.rand(b, generator=g) < 0.3)
        for k in torch.nonzero(has).flatten().tolist():
            lo, hi = int(cache["alias_ptr"][r[k]]), int(cache["alias_ptr"][r[k] + 1])
            pids[k] = cache["alias_idx"][lo + int(torch.randint(hi - lo, (1,), generator=g))]
        labels = cache["styles"][r].clone()
        labels[torch.rand(b, generator=g) < cfg.null_style_frac] = mcfg.null_class
        w = cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(b, generator=g)
        w = torch.where(torch.rand(b, generator=g) < cfg.guidance_fixed_frac,
                        torch.full_like(w, cfg.guidance_default), w)
        noise = torch.randn(b, mcfg.latent_channels, mcfg.latent_size, mcfg.latent_size,
                            generator=g)
        states: list[torch.Tensor] = []
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            euler_sample(model, noise, labels, steps=cfg.teacher_steps,
                         guidance=w.view(-1, 1, 1, 1), null_class=mcfg.null_class,
                         record=states.append, text=batcher.text(pids), null_text=null)
        traj = torch.stack([s.float() for s in states], 1)
        tmp = _chunk(out_dir, i) + ".tmp"
        save_file({"states": traj.contiguous(), "labels": labels, "guidance": w,
                   "prompt": pids}, tmp)
        os.replace(tmp, _chunk(out_dir, i))
    if todo:
        log(f"teacher trajectories: {len(todo)} chunk(s) in {time.time() - t0:.0f}s")


def _load(files):
    from safetensors.torch import load_file

    parts = [load_file(f) for f in files]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def train_text_distill(teacher_dir: str, cache_path: str, out_dir: str,
                       traj: TextTrajectoryConfig, cfg: TextDistillConfig, log=print,
                       skip_trajectories: bool = False) -> dict:
    traj_dir = os.path.join(out_dir, "trajectories")
    if not skip_trajectories:
        make_text_trajectories(teacher_dir, cache_path, traj_dir, traj, log)
    files = sorted(glob.glob(os.path.join(traj_dir, "chunk_*.safetensors")))
    if len(files) <= cfg.val_chunks:
        raise FileNotFoundError(f"{traj_dir}: {len(files)} trajectory chunk(s); need more than "
                                f"the {cfg.val_chunks} held out for validation")
    val, data = _load(files[:cfg.val_chunks]), _load(files[cfg.val_chunks:])
    ckpt = load_checkpoint(teacher_dir)
    cache, _ = load_text_cache(cache_path)
    batcher = TextBatcher(cache, TextFlowConfig(text_attention=ckpt.config.text_attention),
                          ckpt.config.null_class, torch.arange(1))
    torch.manual_seed(cfg.seed)
    model = student_from_teacher(ckpt.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    loop = TrainLoop(out_dir, "distill", model, opt, cfg.steps,
                     {**asdict(cfg), "trajectories": asdict(traj)}, warmup=cfg.warmup,
                     ema_decay=cfg.ema, log=log)
    n = len(data["states"])
    ts = traj.teacher_steps

    def step_fn(step: int) -> dict:
        g = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g)
        t, d = sample_segments(cfg.batch_size, g, cfg.grid_frac)
        states = data["states"][idx]
        z_t = state_at(states, t)
        target = (z_t - state_at(states, t - d)) / d.view(-1, 1, 1, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            v = model(z_t, t, data["labels"][idx], guidance=data["guidance"][idx], step=d,
                      **batcher.text(data["prompt"][idx]))
        loss = ((v.float() - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": float(loss)}

    @torch.no_grad()
    def eval_fn(step: int) -> dict:
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(loop.ema_state_dict())
        text = batcher.text(val["prompt"])
        rec = {}
        for k in (1, 2, 4):
            z = euler_sample(model, val["states"][:, 0].clone(), val["labels"], steps=k,
                             guidance=val["guidance"], null_class=model.cfg.null_class,
                             text=text)
            rec[f"val_mse_{k}step"] = float(((z - val["states"][:, -1]) ** 2).mean())
        model.load_state_dict(saved)
        return rec

    def export_fn(lp: TrainLoop) -> None:
        save_checkpoint(os.path.join(out_dir, "checkpoint"), model, ckpt.codec, ckpt.classes,
                        sampling={"steps": cfg.default_steps, "guidance": cfg.default_guidance,
                                  "shift": 1.0},
                        state_dict=lp.ema_state_dict(),
                        training={"distill": asdict(cfg), "trajectories": asdict(traj),
                                  "teacher": os.path.basename(os.path.normpath(teacher_dir)),
                                  "teacher_steps": ts,
                                  "method": "trajectory distillation, step-size conditioned",
                                  "steps": lp.step, "seconds": round(lp.seconds),
                                  "parameters": count_parameters(model),
                                  "text": ckpt.training.get("text", {})})

    res = loop.run(step_fn, eval_fn, eval_every=cfg.eval_every, export_fn=export_fn,
                   title="turbo student: trajectory-distillation loss")
    return res
