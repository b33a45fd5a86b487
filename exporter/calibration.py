"""Reference trajectories from the PyTorch sampler: calibration data for int8 and the parity
reference, for every target.

A :class:`Trajectories` holds, for fixed (seed, label) cases, every latent the Euler sampler
visits (all N timesteps), the guided velocity the ``step`` graph must return there, and the final
images. Seeds come from fixed, disjoint ranges so calibration never sees the parity cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lrf.models.checkpoint import Checkpoint
from lrf.models.flow import guided_velocity, timesteps
from lrf.models.reference import portable_noise, to_uint8

PARITY_SEED0 = 0            # parity cases: seeds 0, 1, 2, ...
CALIBRATION_SEED0 = 10_000  # int8 calibration
SELECTION_SEED0 = 20_000    # choosing between int8 variants (held out from calibration)
FIDELITY_SEED0 = 30_000     # class-fidelity images


def fixed_cases(count: int, num_classes: int, seed0: int) -> tuple[list[int], list[int]]:
    """``count`` (labels, seeds): labels cycle through the classes, seeds are seed0 + i."""
    if count < 1:
        raise ValueError(f"need at least one case, got {count}")
    return [i % num_classes for i in range(count)], [seed0 + i for i in range(count)]


@dataclass
class Trajectories:
    """PyTorch float32 sampling runs for cases (labels[b], seeds[b]). Arrays are numpy:

    times [N+1] f32; latents [N+1,B,C,h,w] f32 (latents[i] = z entering step i, latents[N] the
    result); velocities [N,B,C,h,w] f32 (guided velocity at step i); images [B,H,W,3] uint8;
    images_float [B,H,W,3] f32 in [-1, 1] (the decoder output before rounding).
    """

    labels: np.ndarray
    seeds: list[int]
    steps: int
    guidance: float
    shift: float
    times: np.ndarray
    latents: np.ndarray
    velocities: np.ndarray
    images: np.ndarray
    images_float: np.ndarray

    @property
    def batch(self) -> int:
        return len(self.seeds)

    def _vec(self, value, dtype=np.float32) -> np.ndarray:
        return np.full((self.batch,), value, dtype=dtype)

    def step_feeds(self) -> list[dict[str, np.ndarray]]:
        """One feed per timestep (the whole batch at step i): inputs of the ``step`` graph."""
        return [{"latent": self.latents[i], "t": self._vec(self.times[i]),
                 "label": self.labels.astype(np.int32), "guidance": self._vec(self.guidance)}
                for i in range(self.steps)]

    def decoder_feeds(self) -> list[dict[str, np.ndarray]]:
        """The final latents (what the decoder sees in real use)."""
        return [{"latent": self.latents[self.steps]}]

    def generator_feeds(self, batch: int | None = None) -> list[dict[str, np.ndarray]]:
        """Inputs of a ``generator_<N>`` graph (noise, label, guidance), in chunks of ``batch``."""
        batch = batch or self.batch
        out = []
        for s in range(0, self.batch, batch):
            sl = slice(s, s + batch)
            n = len(self.seeds[sl])
            out.append({"noise": self.latents[0, sl], "label": self.labels[sl].astype(np.int32),
                        "guidance": np.full((n,), self.guidance, dtype=np.float32)})
        return out


@torch.no_grad()
def record_trajectories(ckpt: Checkpoint, labels, seeds, steps: int | None = None,
                        guidance: float | None = None, shift: float | None = None,
                        latent_size: int | None = None, chunk: int = 64) -> Trajectories:
    """Run the PyTorch reference sampler (exactly ``lrf.models.reference.generate``) and keep
    every intermediate latent and velocity."""
    cfg = ckpt.config
    steps = int(ckpt.sampling["steps"] if steps is None else steps)
    guidance = float(ckpt.sampling["guidance"] if guidance is None else guidance)
    shift = float(ckpt.sampling.get("shift", 1.0) if shift is None else shift)
    size = latent_size or cfg.latent_size
    labels, seeds = list(labels), list(seeds)
    if len(labels) != len(seeds):
        raise ValueError(f"{len(labels)} labels but {len(seeds)} seeds")
    ts = timesteps(steps, shift)
    lat, vel, imgs, imgs_f = [], [], [], []
    for s in range(0, len(seeds), chunk):
        y = torch.as_tensor(labels[s:s + chunk], dtype=torch.long)
        z = portable_noise(seeds[s:s + chunk], cfg.latent_channels, (size, size))
        zs, vs = [z], []
        for i in range(steps):  # the loop of lrf.models.flow.euler_sample, keeping every state
            v = guided_velocity(ckpt.model, z, ts[i].expand(z.shape[0]), y, guidance,
                                cfg.null_class)
            z = z + (ts[i + 1] - ts[i]) * v
            zs.append(z)
            vs.append(v)
        x = ckpt.codec.decode(z)
        lat.append(torch.stack(zs).numpy())
        vel.append(torch.stack(vs).numpy())
        imgs.append(to_uint8(x))
        imgs_f.append(x.clamp(-1, 1).permute(0, 2, 3, 1).contiguous().numpy())
    return Trajectories(labels=np.asarray(labels, dtype=np.int32), seeds=seeds, steps=steps,
                        guidance=guidance, shift=shift, times=ts.numpy(),
                        latents=np.concatenate(lat, axis=1), velocities=np.concatenate(vel, axis=1),
                        images=np.concatenate(imgs), images_float=np.concatenate(imgs_f))
