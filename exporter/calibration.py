"""Reference trajectories from the one PyTorch sampler (``lrf.models.flow.euler_sample`` and its
``record`` hook): the parity reference and the int8 calibration data, for every target.

A :class:`Trajectories` holds, for fixed (seed, label) cases, every latent the sampler visits
(all N timesteps) and the final images; :class:`Encodings` holds the PyTorch encoder's latents
and round-trip images for given uint8 images. Seeds come from fixed, disjoint ranges so
calibration never sees the parity cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lrf.models.checkpoint import Checkpoint
from lrf.models.flow import euler_sample, timesteps
from lrf.models.reference import from_uint8, portable_noise, to_uint8

PARITY_SEED0 = 0            # parity cases: seeds 0, 1, 2, ...
CALIBRATION_SEED0 = 10_000  # int8 calibration
SELECTION_SEED0 = 20_000    # choosing between int8 variants (held out from calibration)
FIDELITY_SEED0 = 30_000     # class-fidelity images


def fixed_cases(count: int, num_classes: int, seed0: int) -> tuple[list[int], list[int]]:
    """``count`` (labels, seeds): labels cycle through the classes, seeds are seed0 + i."""
    if count < 1:
        raise ValueError(f"need at least one case, got {count}")
    return [i % num_classes for i in range(count)], [seed0 + i for i in range(count)]


def window_velocity(z_in: np.ndarray, z_out: np.ndarray, t0, t1) -> np.ndarray:
    """The velocity one Euler step from ``t0`` to ``t1`` applied, read back from its states:
    (z_out - z_in) / float32(t1 - t0). The reference and an artifact's ``denoise`` output go
    through this same formula, so their difference is the velocity error."""
    dt = np.float32(np.float32(t1) - np.float32(t0))
    return ((z_out.astype(np.float32) - z_in.astype(np.float32)) / dt).astype(np.float32)


@dataclass
class Trajectories:
    """PyTorch float32 sampling runs for cases (labels[b], seeds[b]). Arrays are numpy:

    times [N+1] f32; latents [N+1,B,C,h,w] f32 (latents[i] = z entering step i, latents[N] the
    result); images [B,H,W,3] uint8; images_float [B,H,W,3] f32 in [-1, 1] (the decoder output
    before rounding). ``guidance_distilled``: the core took w as an input (one call per step).
    """

    labels: np.ndarray
    seeds: list[int]
    steps: int
    guidance: float
    shift: float
    times: np.ndarray
    latents: np.ndarray
    images: np.ndarray
    images_float: np.ndarray
    guidance_distilled: bool = False

    @property
    def batch(self) -> int:
        return len(self.seeds)

    @property
    def velocities(self) -> np.ndarray:
        """[N,B,C,h,w]: the velocity of each step, read back from the states
        (:func:`window_velocity`)."""
        return np.stack([window_velocity(self.latents[i], self.latents[i + 1], self.times[i],
                                         self.times[i + 1]) for i in range(self.steps)])

    def _vec(self, value, dtype=np.float32) -> np.ndarray:
        return np.full((self.batch,), value, dtype=dtype)

    def denoise_feeds(self, window: int = 1) -> list[dict[str, np.ndarray]]:
        """Inputs of a ``denoise`` call by role, one per window of ``window`` steps (the whole
        batch): latent, timesteps [window+1], label, guidance; ``expected`` is the reference's
        latent after the window."""
        if self.steps % window:
            raise ValueError(f"{self.steps} steps do not split into windows of {window}")
        return [{"latent": self.latents[i], "timesteps": self.times[i:i + window + 1].copy(),
                 "label": self.labels.astype(np.int32), "guidance": self._vec(self.guidance),
                 "expected": self.latents[i + window]}
                for i in range(0, self.steps, window)]

    def step_feeds(self) -> list[dict[str, np.ndarray]]:
        """One feed per timestep for a velocity-level graph (the core with its guidance):
        latent, t [B], label, guidance."""
        return [{"latent": self.latents[i], "t": self._vec(self.times[i]),
                 "label": self.labels.astype(np.int32), "guidance": self._vec(self.guidance)}
                for i in range(self.steps)]

    def decoder_feeds(self) -> list[dict[str, np.ndarray]]:
        """The final latents (what the decoder sees in real use)."""
        return [{"latent": self.latents[self.steps]}]

    def encoder_feeds(self) -> list[dict[str, np.ndarray]]:
        """The final images, uint8 NHWC (what the encoder graph takes)."""
        return [{"image": self.images}]


@dataclass
class Encodings:
    """The PyTorch codec on uint8 images [B,H,W,3]: ``latents`` = encode (normalised,
    [B,C,H/8,W/8] f32) and ``roundtrip`` = the uint8 images decoded back from them."""

    images: np.ndarray
    latents: np.ndarray
    roundtrip: np.ndarray


@torch.no_grad()
def record_encodings(ckpt: Checkpoint, images: np.ndarray, chunk: int = 64) -> Encodings:
    """Encode uint8 NHWC ``images`` with the checkpoint's codec (the encoder graph's reference)
    and decode them again."""
    lat, rt = [], []
    for s in range(0, len(images), chunk):
        z = ckpt.codec.encode(from_uint8(images[s:s + chunk]))
        lat.append(z.numpy())
        rt.append(to_uint8(ckpt.codec.decode(z)))
    return Encodings(images=np.asarray(images), latents=np.concatenate(lat),
                     roundtrip=np.concatenate(rt))


@torch.no_grad()
def record_trajectories(ckpt: Checkpoint, labels, seeds, steps: int | None = None,
                        guidance: float | None = None, shift: float | None = None,
                        latent_size: int | None = None, chunk: int = 64) -> Trajectories:
    """Run the PyTorch reference sampler (exactly ``lrf.models.reference.generate``) and keep
    every intermediate latent through its ``record`` hook."""
    cfg = ckpt.config
    steps = int(ckpt.sampling["steps"] if steps is None else steps)
    guidance = float(ckpt.sampling["guidance"] if guidance is None else guidance)
    shift = float(ckpt.sampling.get("shift", 1.0) if shift is None else shift)
    size = latent_size or cfg.latent_size
    labels, seeds = list(labels), list(seeds)
    if len(labels) != len(seeds):
        raise ValueError(f"{len(labels)} labels but {len(seeds)} seeds")
    ts = timesteps(steps, shift)
    lat, imgs, imgs_f = [], [], []
    for s in range(0, len(seeds), chunk):
        states: list[torch.Tensor] = []
        z = euler_sample(ckpt.model, portable_noise(seeds[s:s + chunk], cfg.latent_channels,
                                                    (size, size)),
                         torch.as_tensor(labels[s:s + chunk], dtype=torch.long), ts=ts,
                         guidance=guidance, null_class=cfg.null_class, record=states.append)
        x = ckpt.codec.decode(z)
        lat.append(torch.stack(states).numpy())
        imgs.append(to_uint8(x))
        imgs_f.append(x.clamp(-1, 1).permute(0, 2, 3, 1).contiguous().numpy())
    return Trajectories(labels=np.asarray(labels, dtype=np.int32), seeds=seeds, steps=steps,
                        guidance=guidance, shift=shift, times=ts.numpy(),
                        latents=np.concatenate(lat, axis=1), images=np.concatenate(imgs),
                        images_float=np.concatenate(imgs_f),
                        guidance_distilled=bool(cfg.guidance_embed))
