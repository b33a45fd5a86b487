"""Small pieces shared by the trainers: config base, batch order, resumable state, logs, loss
curve (the loop itself is :mod:`lrf.training.loop`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class TrainConfig:
    """The options every trainer's config shares: the batch, the AdamW learning rate with the
    warm-up of :class:`lrf.training.loop.TrainLoop`'s cosine schedule, bf16 autocast and the
    seed. A subclass adds its own fields, restates a default where its stage differs, and lists
    in ``positive_fields`` the counts (its length, ``epochs`` or ``steps``, first) that must be
    >= 1. Saved configs are ``asdict`` records compared as dicts, so the field order is free."""

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


class EpochBatches:
    """The batches of an epoch-based trainer as a pure function of (seed, step): a shuffled order
    per epoch and a generator per step, so a resumed (or DDP) run draws what one run draws."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = max(1, n // batch_size)
        self._epoch, self._perm = -1, None

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Generator]:
        """(indices of the global batch at ``step``, that step's generator)."""
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        idx = self._perm[b * self.batch_size:(b + 1) * self.batch_size]
        return idx, torch.Generator().manual_seed(self.seed * 7_919 + step)


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


def write_json_atomic(path: str, obj) -> None:
    """JSON to a temp file beside ``path``, then renamed into place."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2)
    os.replace(tmp, path)
