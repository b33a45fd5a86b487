"""The PyTorch reference path: :func:`generate` and the diffusers-style :class:`LRFPipeline`.

Noise always comes from the portable PRNG (``lrf.prng``), one seed per image, so the
reference, the exported graphs and the phone runtimes start from identical latents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from lrf.models.checkpoint import Checkpoint, load_checkpoint
from lrf.models.codec import Codec
from lrf.models.flow import euler_sample, guided_velocity
from lrf.models.lrf import LRFModel
from lrf import prng


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [-1, 1] -> uint8 NHWC (round half up, as every runtime does)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def portable_noise(seeds: Sequence[int], channels: int, size: tuple[int, int]) -> torch.Tensor:
    return torch.from_numpy(prng.noise(list(seeds), (channels, *size)))


@torch.no_grad()
def generate(ckpt: Checkpoint, labels: Sequence[int], seeds: Sequence[int], *, steps: int | None = None,
             guidance: float | None = None, shift: float | None = None, latent_size: int | None = None,
             on_step: Callable[[int, int], bool | None] | None = None) -> torch.Tensor:
    """Images [B,3,H,W] in [-1, 1] from the PyTorch reference (our Euler sampler)."""
    cfg = ckpt.config
    steps = ckpt.sampling["steps"] if steps is None else steps
    guidance = ckpt.sampling["guidance"] if guidance is None else guidance
    shift = ckpt.sampling["shift"] if shift is None else shift
    if len(labels) != len(seeds):
        raise ValueError(f"{len(labels)} labels but {len(seeds)} seeds")
    if not np.isfinite(guidance):
        raise ValueError(f"guidance must be finite, got {guidance}")
    size = latent_size or cfg.latent_size
    noise = portable_noise(seeds, cfg.latent_channels, (size, size))
    z = euler_sample(ckpt.model, noise, torch.as_tensor(list(labels), dtype=torch.long),
                     steps=steps, guidance=guidance, null_class=cfg.null_class, shift=shift,
                     on_step=on_step)
    return ckpt.codec.decode(z)


class LRFPipeline(DiffusionPipeline):
    """``LRFPipeline.from_pretrained(dir)(class_labels=[3], num_inference_steps=50,
    guidance_scale=3.0).images`` -- diffusers' calling convention on an LRF checkpoint folder.

    The denoising loop is diffusers' ``FlowMatchEulerDiscreteScheduler`` fed our sigmas
    (linspace(1, 0, N+1), SD3 shift); a test pins it to :func:`lrf.models.flow.euler_sample`.
    """

    model_cpu_offload_seq = "transformer->vae"

    def __init__(self, transformer: LRFModel, vae, scheduler: FlowMatchEulerDiscreteScheduler,
                 latent_mean=None, latent_std=None, class_names=None):
        super().__init__()
        self.register_modules(transformer=transformer, vae=vae, scheduler=scheduler)
        self.register_to_config(latent_mean=latent_mean, latent_std=latent_std,
                                class_names=class_names)
        self._codec = Codec(vae, latent_mean, latent_std)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> "LRFPipeline":
        stats = ckpt.codec.stats_dict()
        return cls(ckpt.model, ckpt.codec.ae,
                   FlowMatchEulerDiscreteScheduler(shift=ckpt.sampling.get("shift", 1.0)),
                   stats["latent_mean"], stats["latent_std"], list(ckpt.classes))

    @classmethod
    def from_pretrained(cls, path=None, **kwargs) -> "LRFPipeline":
        """An LRF checkpoint folder (strictly validated; default: the shipped cifar10 one)."""
        if kwargs:
            raise ValueError(f"LRFPipeline.from_pretrained takes a checkpoint folder only, "
                             f"not {sorted(kwargs)}")
        return cls.from_checkpoint(load_checkpoint(path))

    @torch.no_grad()
    def __call__(self, class_labels: Sequence[int | str], num_inference_steps: int = 50,
                 guidance_scale: float = 3.0, seeds: Sequence[int] | None = None,
                 output_type: str = "pil", return_dict: bool = True):
        cfg = self.transformer.cfg
        names = self.config.class_names or []
        labels = [names.index(c) if isinstance(c, str) else int(c) for c in class_labels]
        seeds = list(range(len(labels))) if seeds is None else list(seeds)
        z = portable_noise(seeds, cfg.latent_channels, (cfg.latent_size, cfg.latent_size))
        y = torch.as_tensor(labels, dtype=torch.long)
        n = num_inference_steps
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, n + 1)[:-1])
        for sigma in self.progress_bar(self.scheduler.sigmas[:-1]):
            v = guided_velocity(self.transformer, z, sigma.reshape(1), y, guidance_scale,
                                cfg.null_class)
            z = self.scheduler.step(v, sigma * self.scheduler.config.num_train_timesteps, z,
                                    return_dict=False)[0]
        images = self._codec.decode(z)
        if output_type == "pt":
            out = images
        else:
            arr = to_uint8(images)
            out = arr if output_type == "np" else self.numpy_to_pil(arr.astype(np.float32) / 255)
        return ImagePipelineOutput(images=out) if return_dict else (out,)
