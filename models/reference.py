"""The PyTorch reference path: :func:`generate`, :func:`edit` (img2img and inpainting) and the
diffusers-style :class:`LRFPipeline`.

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
from lrf.models.codec import Codec, model_to_rgba, rgba_to_model
from lrf.models.flow import euler_sample, guided_velocity, timesteps
from lrf.models.lrf import LRFModel
from lrf import editing, prng


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [-1, 1] -> uint8 NHWC (round half up, as every runtime does); an RGBA
    codec's [B,4,H,W] (premultiplied) -> straight RGBA (``lrf.models.codec.model_to_rgba``)."""
    if images.shape[1] == 4:
        return model_to_rgba(images)
    x = ((images.float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class PromptConditioner:
    """A text checkpoint's prompt -> the core's text inputs, through the frozen text encoder;
    each distinct prompt is encoded once and reused across seeds and steps."""

    def __init__(self, ckpt: Checkpoint):
        from lrf.models.text import MAX_TOKENS, PromptEncoder

        info = ckpt.training.get("text", {})
        self.attention = ckpt.config.text_attention
        self.encoder = PromptEncoder(int(info.get("max_tokens", MAX_TOKENS)))
        self.null_prompt = info.get("null_prompt", "")
        self._cache: dict[str, dict] = {}

    def one(self, prompt: str) -> dict:
        if prompt not in self._cache:
            states, mask, pooled = self.encoder.encode([prompt])
            kw = {"text": pooled}
            if self.attention:
                kw.update(tokens=states, token_mask=mask)
            self._cache[prompt] = kw
        return self._cache[prompt]

    def __call__(self, prompts: Sequence[str]) -> dict:
        rows = [self.one(check_prompt(p)) for p in prompts]
        return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}

    def null(self) -> dict:
        return self.one(self.null_prompt)


_CONDITIONERS: dict[int, PromptConditioner] = {}


def conditioner(ckpt: Checkpoint) -> PromptConditioner:
    if id(ckpt) not in _CONDITIONERS:
        _CONDITIONERS.clear()  # one checkpoint at a time: the MiniLM weights are 90 MB
        _CONDITIONERS[id(ckpt)] = PromptConditioner(ckpt)
    return _CONDITIONERS[id(ckpt)]


def check_prompt(prompt) -> str:
    """A prompt is untrusted input: a str (any Unicode; lone surrogates, which no encoder can
    read, are replaced by U+FFFD) of at most 10,000 characters; the tokenizer truncates."""
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be a string, got {type(prompt).__name__}")
    if len(prompt) > 10_000:
        raise ValueError(f"prompt of {len(prompt)} characters; at most 10000 are read")
    return prompt.encode("utf-8", "replace").decode("utf-8")


def _text_kwargs(ckpt: Checkpoint, prompts: Sequence[str] | None, n: int):
    """(text kwargs, null text kwargs) for a text checkpoint, (None, None) for a class one."""
    if not ckpt.config.text_dim:
        if prompts is not None:
            raise ValueError("this checkpoint is class-conditioned and takes no prompt; give a "
                             "class instead")
        return None, None
    if prompts is None:
        raise ValueError("this checkpoint is text-to-image: give a prompt")
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} images")
    c = conditioner(ckpt)
    return c(prompts), c.null()


def portable_noise(seeds: Sequence[int], channels: int, size: tuple[int, int]) -> torch.Tensor:
    return torch.from_numpy(prng.noise(list(seeds), (channels, *size)))


@torch.no_grad()
def generate(ckpt: Checkpoint, labels: Sequence[int], seeds: Sequence[int], *, steps: int | None = None,
             guidance: float | None = None, shift: float | None = None, latent_size: int | None = None,
             on_step: Callable[[int, int], bool | None] | None = None,
             prompts: Sequence[str] | None = None) -> torch.Tensor:
    """Images [B,3,H,W] (an RGBA codec: [B,4,H,W], premultiplied) in [-1, 1] from the PyTorch
    reference (our Euler sampler). A text checkpoint takes ``prompts`` (one per image) and its
    ``labels`` are styles (``cfg.null_class``: no style)."""
    cfg = ckpt.config
    steps, guidance, shift = _sampling(ckpt, labels, seeds, steps, guidance, shift)
    text, null_text = _text_kwargs(ckpt, prompts, len(labels))
    size = latent_size or cfg.latent_size
    noise = portable_noise(seeds, cfg.latent_channels, (size, size))
    z = euler_sample(ckpt.model, noise, torch.as_tensor(list(labels), dtype=torch.long),
                     steps=steps, guidance=guidance, null_class=cfg.null_class, shift=shift,
                     on_step=on_step, text=text, null_text=null_text)
    return ckpt.codec.decode(z)


def _sampling(ckpt: Checkpoint, labels, seeds, steps, guidance, shift) -> tuple[int, float, float]:
    steps = ckpt.sampling["steps"] if steps is None else steps
    guidance = ckpt.sampling["guidance"] if guidance is None else guidance
    shift = ckpt.sampling["shift"] if shift is None else shift
    if len(labels) != len(seeds):
        raise ValueError(f"{len(labels)} labels but {len(seeds)} seeds")
    if not np.isfinite(guidance):
        raise ValueError(f"guidance must be finite, got {guidance}")
    return steps, guidance, shift


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1] (x / 127.5 - 1, as the encoder graph does)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


@torch.no_grad()
def edit(ckpt: Checkpoint, image, label: int | str, seed: int, strength: float, mask=None, *,
         steps: int | None = None, guidance: float | None = None, shift: float | None = None,
         on_step: Callable[[int, int], bool | None] | None = None,
         prompt: str | None = None) -> torch.Tensor:
    """Edit one image: [1,3,H,W] in [-1, 1] (``to_uint8`` for pixels).

    ``image``: uint8 RGB [H, W, 3] (or a PIL image) of the model's size. ``strength`` in [0, 1]:
    1 ignores the image (exactly :func:`generate` for ``seed``), 0 returns its codec round trip.
    ``mask``: KEEP mask in pixels (1 / white keeps the input, 0 / black is repainted), or None
    for plain img2img. The rules are ``lrf.editing``'s (``runtime/BUNDLE.md``, "Editing").
    ``on_step(i, n)`` after each of the n steps of the window; False cancels. A text model
    edits toward ``prompt`` (``label`` is then the style, or ``cfg.null_class``) and takes
    RGBA (or opaque RGB) images.
    """
    return edit_batch(ckpt, [image], [label], [seed], strength, None if mask is None else [mask],
                      steps=steps, guidance=guidance, shift=shift, on_step=on_step,
                      prompts=None if prompt is None else [prompt])


@torch.no_grad()
def edit_batch(ckpt: Checkpoint, images, labels: Sequence[int | str], seeds: Sequence[int],
               strength: float, masks=None, *, steps: int | None = None,
               guidance: float | None = None, shift: float | None = None,
               on_step: Callable[[int, int], bool | None] | None = None,
               prompts: Sequence[str] | None = None) -> torch.Tensor:
    """:func:`edit` for a batch: image b depends only on (images[b], labels[b], seeds[b],
    masks[b], prompts[b]). Returns [B,C,H,W] in [-1, 1]."""
    cfg = ckpt.config
    steps, guidance, shift = _sampling(ckpt, labels, seeds, steps, guidance, shift)
    text, null_text = _text_kwargs(ckpt, prompts, len(labels))
    channels = int(ckpt.codec.ae.config.in_channels)
    f, side = ckpt.codec.scale_factor, cfg.latent_size * ckpt.codec.scale_factor
    if len(images) != len(labels) or (masks is not None and len(masks) != len(labels)):
        raise ValueError(f"need one image{' and mask' if masks is not None else ''} per label, "
                         f"got {len(images)} images for {len(labels)} labels")
    x = np.stack([editing.check_image(im, side, side, f, channels=channels) for im in images])
    keep = None if masks is None else np.stack(
        [editing.latent_keep_mask(m, side, side, f) for m in masks])[:, None]   # [B,1,h,w]
    y = torch.as_tensor([cfg.null_class if text is not None and c is None else
                         ckpt.class_index(c) for c in labels], dtype=torch.long)
    win = editing.edit_window(timesteps(steps, shift).numpy(), strength,
                              editing.default_schedule(cfg))
    noise = portable_noise(seeds, cfg.latent_channels, (cfg.latent_size,) * 2).numpy()
    pixels = rgba_to_model(x) if channels == 4 else from_uint8(x)
    z_img = ckpt.codec.encode(pixels).numpy()                                  # [B,C,h,w]
    z = torch.from_numpy(editing.noised(z_img, noise, win[0]))
    n = len(win) - 1
    sample = dict(guidance=guidance, null_class=cfg.null_class, text=text, null_text=null_text)
    if keep is None and n:
        z = euler_sample(ckpt.model, z, y, ts=torch.from_numpy(win), on_step=on_step, **sample)
    elif keep is not None:
        for i in range(n):  # one step at a time: the kept cells are reset after each
            z = euler_sample(ckpt.model, z, y, ts=torch.from_numpy(win[i:i + 2]), **sample)
            z = torch.from_numpy(editing.blend(z.numpy(), z_img, noise, win[i + 1], keep))
            if on_step is not None and on_step(i + 1, n) is False:
                raise InterruptedError(f"editing cancelled by on_step after step {i + 1}/{n}")
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
        self._text: PromptConditioner | None = None

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> "LRFPipeline":
        stats = ckpt.codec.stats_dict()
        pipe = cls(ckpt.model, ckpt.codec.ae,
                   FlowMatchEulerDiscreteScheduler(shift=ckpt.sampling.get("shift", 1.0)),
                   stats["latent_mean"], stats["latent_std"], list(ckpt.classes))
        if ckpt.config.text_dim:
            pipe._text = PromptConditioner(ckpt)
        return pipe

    @classmethod
    def from_pretrained(cls, path=None, **kwargs) -> "LRFPipeline":
        """An LRF checkpoint folder (strictly validated; default: the shipped cifar10 one)."""
        if kwargs:
            raise ValueError(f"LRFPipeline.from_pretrained takes a checkpoint folder only, "
                             f"not {sorted(kwargs)}")
        return cls.from_checkpoint(load_checkpoint(path))

    @torch.no_grad()
    def __call__(self, class_labels: Sequence[int | str] | None = None,
                 num_inference_steps: int = 50, guidance_scale: float = 3.0,
                 seeds: Sequence[int] | None = None, output_type: str = "pil",
                 return_dict: bool = True, image=None, strength: float | None = None,
                 keep_mask=None, mask_image=None, prompt: str | Sequence[str] | None = None,
                 style: str | Sequence[str | None] | None = None):
        """Generate, or with ``image=`` edit (img2img; with ``keep_mask=`` inpainting).

        A text checkpoint takes ``prompt`` (one string or one per image) and optionally
        ``style`` (one of its styles, one per prompt, or None for no style) instead of
        ``class_labels``; its images are RGBA.

        As in diffusers: ``image`` is one image or one per label (PIL or uint8 [H,W,3] /
        [B,H,W,3]); ``strength`` defaults to 0.8 for img2img and 1.0 for inpainting;
        ``keep_mask`` follows the project's one mask convention (:func:`edit`, ``Generator.edit``,
        ``lrf-generate --mask``): white (1) = keep, black (0) = repaint. diffusers' ``mask_image``
        (white = repaint) is refused with a line saying to pass ``keep_mask``, never silently
        inverted. Unlike diffusers' int(N * strength)
        steps, the window starts at the timestep nearest ``strength`` (``lrf.editing``).
        """
        if mask_image is not None:
            raise ValueError("mask_image= (diffusers' white = repaint) is not taken: pass "
                             "keep_mask= (white = keep, black = repaint), lrf's one convention")
        cfg = self.transformer.cfg
        names = self.config.class_names or []
        text = null_text = None
        if self._text is not None:
            if prompt is None or class_labels is not None:
                raise ValueError("this checkpoint is text-to-image: pass prompt= (and style=), "
                                 "not class_labels")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            st = style if isinstance(style, (list, tuple)) else [style] * len(prompts)
            if len(st) != len(prompts):
                raise ValueError(f"style: {len(st)} given for {len(prompts)} prompts")
            for s_ in st:
                if s_ is not None and s_ not in names:
                    raise ValueError(f"unknown style {s_!r}; valid: {', '.join(names)}")
            class_labels = [cfg.null_class if s_ is None else names.index(s_) for s_ in st]
            text, null_text = self._text(prompts), self._text.null()
        elif prompt is not None or style is not None:
            raise ValueError("this checkpoint is class-conditioned: pass class_labels=, not "
                             "prompt=/style=")
        if class_labels is None:
            raise ValueError("pass class_labels= (the classes to draw)")
        labels = [c if self._text is not None else names.index(c) if isinstance(c, str)
                  else int(c) for c in class_labels]
        seeds = list(range(len(labels))) if seeds is None else list(seeds)
        noise = portable_noise(seeds, cfg.latent_channels, (cfg.latent_size, cfg.latent_size))
        y = torch.as_tensor(labels, dtype=torch.long)
        n = num_inference_steps
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, n + 1)[:-1])
        sigmas = self.scheduler.sigmas
        i0, z_img, keep, z = 0, None, None, noise
        if image is not None or keep_mask is not None:
            if image is None:
                raise ValueError("keep_mask needs image= (the picture to inpaint)")
            strength = (1.0 if keep_mask is not None else 0.8) if strength is None else strength
            i0 = editing.start_index(timesteps(n, self.scheduler.config.shift).numpy(), strength)
            z_img, keep = self._encode_inputs(image, keep_mask, len(labels))
            z = torch.from_numpy(editing.noised(z_img, noise.numpy(), sigmas[i0]))
        elif strength is not None:
            raise ValueError("strength needs image= (the picture to edit)")
        self.scheduler.set_begin_index(i0)
        for i in self.progress_bar(range(i0, n)):
            v = guided_velocity(self.transformer, z, sigmas[i].reshape(1), y, guidance_scale,
                                cfg.null_class, step=sigmas[i] - sigmas[i + 1], text=text,
                                null_text=null_text)
            z = self.scheduler.step(v, self.scheduler.timesteps[i], z, return_dict=False)[0]
            if keep is not None:
                z = torch.from_numpy(editing.blend(z.numpy(), z_img, noise.numpy(),
                                                   sigmas[i + 1], keep))
        images = self._codec.decode(z)
        if output_type == "pt":
            out = images
        else:
            arr = to_uint8(images)
            out = arr if output_type == "np" else self.numpy_to_pil(arr.astype(np.float32) / 255)
        return ImagePipelineOutput(images=out) if return_dict else (out,)

    def _encode_inputs(self, image, keep_mask, batch: int):
        """(normalised latents [B,C,h,w], keep mask [B,1,h,w] or None) for ``batch`` labels."""
        side = self.transformer.cfg.latent_size * self._codec.scale_factor
        f = self._codec.scale_factor
        images = _per_label(image, batch, "image", 3)
        channels = int(self._codec.ae.config.in_channels)
        x = np.stack([editing.check_image(im, side, side, f, channels=channels) for im in images])
        keep = None
        if keep_mask is not None:
            masks = _per_label(keep_mask, batch, "keep_mask", 2)
            keep = np.stack([editing.latent_keep_mask(m, side, side, f)
                             for m in masks])[:, None]
        pixels = rgba_to_model(x) if channels == 4 else from_uint8(x)
        return self._codec.encode(pixels).numpy(), keep


def _per_label(x, batch: int, what: str, ndim: int) -> list:
    """One item, or a list / stacked array with one per label -> a list of ``batch`` items."""
    if isinstance(x, np.ndarray) and x.ndim == ndim + 1 and not (ndim == 2 and x.shape[-1] == 1):
        x = list(x)
    if not isinstance(x, (list, tuple)):
        return [x] * batch
    if len(x) != batch:
        raise ValueError(f"{what}: {len(x)} given for {batch} class labels; give one, or one "
                         "per label")
    return list(x)
