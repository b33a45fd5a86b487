"""Small pieces shared by the trainers: LR schedule, EMA, resumable state, logs, loss curve."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class TrainConfig:
    """The options every trainer's config shares: the batch, the AdamW learning rate with its
    :func:`cosine_lr` warm-up, bf16 autocast and the seed. A subclass adds its own fields,
    restates a default where its stage differs, and lists in ``positive_fields`` the counts
    (its length, ``epochs`` or ``steps``, first) that must be >= 1. Saved configs are
    ``asdict`` records compared as dicts, so the field order is free."""

    batch_size: int = 256
    lr: float = 1e-3
    warmup: int = 200
    bf16: bool = True   # autocast (much faster on bf16 CPUs: models/README.md)
    seed: int = 0

    positive_fields: ClassVar[tuple[str, ...]] = ("batch_size",)

    def __post_init__(self):
        if min(getattr(self, k) for k in self.positive_fields) < 1 or not self.lr > 0:
            raise ValueError(f"{type(self).__name__}: {', '.join(self.positive_fields)} and lr "
                             f"must be positive, got {self}")


def cosine_lr(step: int, total: int, base: float, warmup: int, final_frac: float = 0.01) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``final_frac * base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


class EMA:
    """Exponential moving average of a module's floating-point parameters."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.detach(), 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict:
        return self.shadow

    def load_state_dict(self, sd: dict) -> None:
        self.shadow = {k: v.clone() for k, v in sd.items()}


def save_state(path: str, state: dict) -> None:
    """Atomically save a resumable training state (tensors, numbers, strings only)."""
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str) -> dict:
    # weights_only: a resume file is never unpickled as arbitrary objects.
    return torch.load(path, map_location="cpu", weights_only=True)


def append_log(path: str, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def read_log(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plot_curve(log_path: str, png_path: str, key: str, title: str) -> None:
    """Loss curve PNG from a JSON-lines log (records with ``step`` and ``key``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in read_log(log_path) if key in r]
    if not recs:
        return
    steps = [r["step"] for r in recs]
    vals = [r[key] for r in recs]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, vals, lw=0.8, alpha=0.5, label=key)
    if len(vals) > 20:
        w = max(5, len(vals) // 50)
        smooth = [sum(vals[max(0, i - w):i + 1]) / len(vals[max(0, i - w):i + 1])
                  for i in range(len(vals))]
        ax.plot(steps, smooth, lw=1.5, label=f"{key} (moving avg)")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)


def check_resume_config(state_path: str, saved: dict, cfg: dict, may_change: str) -> None:
    """A resume state must come from the same options, except ``may_change`` (a run can be
    shortened or extended); ValueError naming the state file otherwise."""
    if {**saved, may_change: cfg[may_change]} != cfg:
        raise ValueError(f"{state_path}: resume state was made with config {saved}, not {cfg}; "
                         f"use another --out or the same options (only --{may_change.replace('_', '-')} "
                         "may change)")


def write_json_atomic(path: str, obj) -> None:
    """JSON to a temp file beside ``path``, then renamed into place."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2)
    os.replace(tmp, path)
