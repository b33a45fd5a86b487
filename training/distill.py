"""Stage 5: distil the guided 50-step teacher into a few-step, guidance-conditioned student.

Method (chosen by measurement; ``models/README.md`` lists what was tried): *trajectory
distillation with step-size conditioning*.

1. **Teacher trajectories.** For fresh noise, a random class and a random guidance scale w, the
   teacher integrates its CFG velocity with 50 Euler steps; all 51 states are stored
   (``OUT/trajectories/chunk_*.safetensors``, one file per chunk, so generation resumes).
2. **Student.** The same LRF core plus two zero-initialised embeddings added to the conditioning:
   the guidance scale w and the step size d (``LRFConfig.guidance_embed`` / ``step_embed``).
   It starts from the teacher's weights, so at d -> 0 and any w it begins as the conditional
   teacher.
3. **Loss.** For a step size d in {1, 1/2, 1/4, 1/8} and a start time t on that grid, the
   student's single Euler step from the teacher state z(t) must land on the teacher state
   z(t - d):  || v_s(z(t), t, y, w, d) - (z(t) - z(t - d)) / d ||^2. The teacher's Euler path is
   piecewise linear, so z(t) at any t is an exact interpolation of the stored states.

One forward pass per step replaces the conditional/unconditional pair, and the same weights
sample with 1, 2, 4 or 8 steps (d = 1/N).
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

TEACHER_STEPS = 50


@dataclass(frozen=True)
class TrajectoryConfig:
    count: int = 16384            # trajectories in all
    chunk: int = 512              # per file (the unit of resume)
    guidance_min: float = 1.0
    guidance_max: float = 5.0
    guidance_fixed_frac: float = 1 / 3   # this share uses exactly ``guidance_default``
    guidance_default: float = 3.0
    bf16: bool = True             # teacher in bf16 autocast: 2.2x faster here
    seed: int = 1_000_000         # far from lrf-eval's portable-PRNG seeds 0-99

    def __post_init__(self):
        if self.count < 1 or self.chunk < 1:
            raise ValueError(f"TrajectoryConfig: count and chunk must be positive, got {self}")
        if not 0 <= self.guidance_min <= self.guidance_max:
            raise ValueError("TrajectoryConfig: need 0 <= guidance_min <= guidance_max")


def _chunk_path(out_dir: str, i: int) -> str:
    return os.path.join(out_dir, f"chunk_{i:04d}.safetensors")


@torch.no_grad()
def teacher_trajectories(model, noise, labels, guidance, null_class: int, bf16: bool):
    """All TEACHER_STEPS + 1 Euler states [B, S+1, C, H, W] of the guided teacher."""
    from lrf.models.flow import euler_sample

    states: list[torch.Tensor] = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        euler_sample(model, noise, labels, steps=TEACHER_STEPS, guidance=guidance.view(-1, 1, 1, 1),
                     null_class=null_class, record=states.append)
    return torch.stack([s.float() for s in states], dim=1)


def make_trajectories(teacher_dir: str, out_dir: str, cfg: TrajectoryConfig, log=print) -> int:
    """Write the teacher trajectory set (resumable chunk by chunk); returns the count written."""
    from safetensors.torch import save_file

    from lrf.models.checkpoint import load_checkpoint

    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "trajectories.json")
    want = {"teacher": os.path.abspath(teacher_dir), "config": asdict(cfg), "steps": TEACHER_STEPS}
    if os.path.isfile(meta_path):
        have = json.load(open(meta_path))
        if have != want:
            raise ValueError(f"{meta_path}: made with {have}, not {want}; use another --out")
    else:
        with open(meta_path + ".tmp", "w") as fh:
            json.dump(want, fh, indent=2)
        os.replace(meta_path + ".tmp", meta_path)
    ckpt = load_checkpoint(teacher_dir)
    m, mcfg = ckpt.model.eval(), ckpt.config
    n_chunks = -(-cfg.count // cfg.chunk)
    todo = [i for i in range(n_chunks) if not os.path.isfile(_chunk_path(out_dir, i))]
    t0 = time.time()
    for i in tqdm(todo, desc="teacher trajectories", mininterval=10):
        g = torch.Generator().manual_seed(cfg.seed + i)
        b = min(cfg.chunk, cfg.count - i * cfg.chunk)
        noise = torch.randn(b, mcfg.latent_channels, mcfg.latent_size, mcfg.latent_size, generator=g)
        labels = torch.randint(0, mcfg.num_classes, (b,), generator=g)
        w = cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(b, generator=g)
        fixed = torch.rand(b, generator=g) < cfg.guidance_fixed_frac
        w = torch.where(fixed, torch.full_like(w, cfg.guidance_default), w)
        traj = teacher_trajectories(m, noise, labels, w, mcfg.null_class, cfg.bf16)
        tmp = _chunk_path(out_dir, i) + ".tmp"
        save_file({"states": traj.contiguous(), "labels": labels, "guidance": w}, tmp)
        os.replace(tmp, _chunk_path(out_dir, i))
    if todo:
        log(f"teacher trajectories: {len(todo)} chunk(s) in {time.time() - t0:.0f}s")
    return cfg.count


def load_trajectories(out_dir: str, limit: int | None = None):
    from safetensors.torch import load_file

    files = sorted(glob.glob(os.path.join(out_dir, "chunk_*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no trajectory chunks in {out_dir!r}")
    parts = [load_file(f) for f in files]
    st = torch.cat([p["states"] for p in parts])
    y = torch.cat([p["labels"] for p in parts])
    w = torch.cat([p["guidance"] for p in parts])
    if limit is not None:
        st, y, w = st[:limit], y[:limit], w[:limit]
    return st, y, w
