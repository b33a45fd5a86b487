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

from lrf.training.common import TrainConfig

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


def check_trajectory_meta(meta_path: str, want: dict) -> None:
    """A trajectory folder's ``trajectories.json``: written by the first run; every later run
    must ask for the same (its ``config`` without ``count``, which may grow: chunk i is a pure
    function of (seed, i)), or it is refused with one line."""
    if os.path.isfile(meta_path):
        with open(meta_path) as fh:
            have = json.load(fh)
        have.get("config", {}).pop("count", None)
        if have != want:
            raise ValueError(f"{meta_path}: made with {have}, not {want}; use another --out")
    else:
        with open(meta_path + ".tmp", "w") as fh:
            json.dump(want, fh, indent=2)
        os.replace(meta_path + ".tmp", meta_path)


def make_trajectories(teacher_dir: str, out_dir: str, cfg: TrajectoryConfig, log=print) -> int:
    """Write the teacher trajectory set (resumable chunk by chunk); returns the count written."""
    from safetensors.torch import save_file

    from lrf.models.checkpoint import load_checkpoint

    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "trajectories.json")
    # ``count`` may grow between runs: chunk i is a pure function of (seed, i).
    want = {"teacher": os.path.abspath(teacher_dir), "steps": TEACHER_STEPS,
            "config": {k: v for k, v in asdict(cfg).items() if k != "count"}}
    check_trajectory_meta(meta_path, want)
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


def load_trajectories(out_dir: str, limit: int | None = None, skip: int = 0):
    """The chunks in ``out_dir`` (after the first ``skip``): states [N, S+1, C, H, W], labels [N],
    guidance [N]."""
    from safetensors.torch import load_file

    files = sorted(glob.glob(os.path.join(out_dir, "chunk_*.safetensors")))[skip:]
    if not files:
        raise FileNotFoundError(f"no trajectory chunks in {out_dir!r} (after the first {skip})")
    parts = [load_file(f) for f in files]
    st = torch.cat([p["states"] for p in parts])
    y = torch.cat([p["labels"] for p in parts])
    w = torch.cat([p["guidance"] for p in parts])
    if limit is not None:
        st, y, w = st[:limit], y[:limit], w[:limit]
    return st, y, w


################################################################################
#                              Student training                                #
################################################################################

STEP_SIZES = (1.0, 0.5, 0.25, 0.125)   # 1, 2, 4 and 8 steps from one set of weights


@dataclass(frozen=True)
class DistillConfig(TrainConfig):
    positive_fields = ("steps", "batch_size", "eval_every")

    steps: int = 4000
    lr: float = 2e-4
    weight_decay: float = 0.0
    ema: float = 0.999
    grid_frac: float = 0.75       # share of samples whose (t, d) lie on a 1/2/4/8-step grid
    val_chunks: int = 1           # trajectory chunks held out (the first ones) for the val metric
    eval_every: int = 250
    default_steps: int = 4        # sampling default written into the checkpoint

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.grid_frac <= 1 or not 0 <= self.ema < 1:
            raise ValueError("DistillConfig: grid_frac and ema must lie in [0, 1]")


def state_at(states: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Teacher state at time t [B] from its Euler polyline states [B, S+1, ...] (t_j = 1 - j/S):
    exact, because an Euler path is linear between its steps."""
    s = states.shape[1] - 1
    p = ((1.0 - t) * s).clamp(0, s)
    j = p.floor().long().clamp(max=s - 1)
    frac = (p - j).view(-1, *([1] * (states.dim() - 2)))
    ar = torch.arange(len(t))
    return states[ar, j] + frac * (states[ar, j + 1] - states[ar, j])


def sample_segments(n: int, g: torch.Generator, grid_frac: float):
    """(t, d) pairs: on a 1/2/4/8-step grid with probability ``grid_frac``, else d from the
    same sizes and t uniform in [d, 1]."""
    sizes = torch.tensor(STEP_SIZES)
    d = sizes[torch.randint(0, len(sizes), (n,), generator=g)]
    k = torch.floor(torch.rand(n, generator=g) * (1.0 / d))          # 0 .. 1/d - 1
    t_grid = 1.0 - k * d
    t_free = d + (1.0 - d) * torch.rand(n, generator=g)
    on_grid = torch.rand(n, generator=g) < grid_frac
    return torch.where(on_grid, t_grid, t_free), d


def student_from_teacher(teacher):
    """The teacher's weights in a guidance- and step-conditioned core (new embeddings zero)."""
    from dataclasses import replace

    from lrf.models.lrf import LRFModel

    cfg = replace(teacher.cfg, guidance_embed=True, step_embed=True)
    student = LRFModel.from_lrf_config(cfg)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("guidance_embed.", "step_embed.")) for k in missing):
        raise ValueError(f"teacher weights do not fit the student: missing {missing}, unexpected {unexpected}")
    return student


def distill_loss(student, states, labels, guidance, t, d):
    z_t = state_at(states, t)
    target = (z_t - state_at(states, t - d)) / d.view(-1, 1, 1, 1)
    v = student(z_t, t, labels, guidance=guidance, step=d)
    return ((v.float() - target) ** 2).mean()


@torch.no_grad()
def few_step_error(model, states, labels, guidance, steps: int) -> float:
    """MSE between the student's N-step sample and the teacher's 50-step final latent."""
    from lrf.models.flow import euler_sample

    z = euler_sample(model, states[:, 0].clone(), labels, steps=steps, guidance=guidance,
                     null_class=model.cfg.null_class)
    return float(((z - states[:, -1]) ** 2).mean())


def train_distill(teacher_dir: str, out_dir: str, traj: TrajectoryConfig, cfg: DistillConfig,
                  log=print, skip_trajectories: bool = False) -> dict:
    """Make (or resume) the teacher trajectories, then train (or resume) the student. Writes
    ``out_dir/checkpoint`` (EMA weights) at every eval, the JSON-lines log and loss curves.
    With ``skip_trajectories`` it trains on the chunks present and re-reads the folder at every
    eval, so it can run beside a trajectory job that is still adding chunks."""
    from safetensors.torch import load_file

    from lrf.models.checkpoint import load_checkpoint, save_checkpoint
    from lrf.models.lrf import count_parameters
    from lrf.training.loop import TrainLoop

    t_start = time.time()
    traj_dir = os.path.join(out_dir, "trajectories")
    if not skip_trajectories:
        make_trajectories(teacher_dir, traj_dir, traj, log)
    files = sorted(glob.glob(os.path.join(traj_dir, "chunk_*.safetensors")))
    if len(files) <= cfg.val_chunks:
        raise FileNotFoundError(f"{traj_dir}: {len(files)} trajectory chunk(s); need more than "
                                f"the {cfg.val_chunks} held out for validation")
    val = tuple(torch.cat(x) for x in zip(*[(p["states"], p["labels"], p["guidance"])
                                             for p in map(load_file, files[:cfg.val_chunks])]))
    data = load_trajectories(traj_dir, skip=cfg.val_chunks)    # states, labels, guidance
    ckpt = load_checkpoint(teacher_dir)
    torch.manual_seed(cfg.seed)
    model = student_from_teacher(ckpt.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # a fixed EMA decay (no diffusers warm-up ramp): the recipe of the shipped turbo student
    loop = TrainLoop(out_dir, "distill", model, opt, cfg.steps, asdict(cfg), warmup=cfg.warmup,
                     ema_decay=cfg.ema, ema_warmup=False, log=log)

    def step_fn(step: int) -> dict:
        states, labels, guidance = data
        g = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
        idx = torch.randint(0, len(states), (cfg.batch_size,), generator=g)
        t, d = sample_segments(cfg.batch_size, g, cfg.grid_frac)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = distill_loss(model, states[idx], labels[idx], guidance[idx], t, d)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": float(loss.detach())}

    def eval_fn(step: int) -> dict:
        nonlocal data
        live = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(loop.ema_state_dict())
        rec = {f"val_mse_{n}step": few_step_error(model, *val, steps=n) for n in (1, 2, 4, 8)}
        model.load_state_dict(live)
        if skip_trajectories:   # pick up chunks a concurrent trajectory job has added
            data = load_trajectories(traj_dir, skip=cfg.val_chunks)
        return {**rec, "seconds": loop.seconds, "train_trajectories": len(data[0])}

    def export_fn(lp: TrainLoop) -> None:
        save_checkpoint(os.path.join(out_dir, "checkpoint"), model, ckpt.codec, ckpt.classes,
                        sampling={"steps": cfg.default_steps, "guidance": 3.0, "shift": 1.0},
                        state_dict=lp.ema_state_dict(),
                        training={"distill": asdict(cfg), "trajectories": asdict(traj),
                                  "teacher": os.path.relpath(teacher_dir),
                                  "method": "trajectory distillation, step-size conditioned",
                                  "steps_done": lp.step, "seconds": round(lp.seconds),
                                  "parameters": count_parameters(model)})

    res = loop.run(step_fn, eval_fn, eval_every=cfg.eval_every, export_fn=export_fn,
                   title="Stage 5 turbo student: trajectory-distillation loss",
                   curves={f"distill_val_{n}step": (f"val_mse_{n}step",
                                                    f"held-out {n}-step latent MSE vs teacher@50")
                           for n in (1, 4)})
    return {"steps": loop.step, "seconds": res["seconds"], "stopped": res["stopped"],
            "wall_seconds_incl_trajectories": time.time() - t_start}


def side_by_side_grid(teacher_dir: str, student_dir: str, out_png: str, seeds: int = 4,
                      student_steps=(1, 2, 4), guidance: float = 3.0) -> None:
    """One row per class: the teacher at its default steps, then the student at each of
    ``student_steps``, the same ``seeds`` (portable-PRNG noise) in every block."""
    from PIL import Image, ImageDraw

    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import generate, to_uint8

    teacher, student = load_checkpoint(teacher_dir), load_checkpoint(student_dir)
    n_cls = len(teacher.classes)
    labels = [c for c in range(n_cls) for _ in range(seeds)]
    seed_list = [s for _ in range(n_cls) for s in range(seeds)]
    blocks = [(f"teacher, {teacher.sampling['steps']} steps",
               to_uint8(generate(teacher, labels, seed_list, guidance=guidance)))]
    for n in student_steps:
        blocks.append((f"turbo, {n} step{'s' if n > 1 else ''}",
                       to_uint8(generate(student, labels, seed_list, steps=n, guidance=guidance))))
    scale, gap, head = 2, 6, 14
    h = w = 32 * scale
    canvas = Image.new("RGB", (len(blocks) * (seeds * w + gap) - gap, head + n_cls * h), "white")
    draw = ImageDraw.Draw(canvas)
    for b, (title, imgs) in enumerate(blocks):
        x0 = b * (seeds * w + gap)
        draw.text((x0 + 2, 1), title, fill="black")
        for i, img in enumerate(imgs):
            r, c = divmod(i, seeds)
            tile = Image.fromarray(img).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (x0 + c * w, head + r * h))
    tmp = out_png + ".tmp.png"
    canvas.save(tmp)
    os.replace(tmp, out_png)
