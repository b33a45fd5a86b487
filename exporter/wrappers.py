"""Thin wrapper modules, one per exported graph, with fixed input/output names.

Every export target (ONNX, Core ML, ExecuTorch) traces these and nothing else; none of them
reaches into the model's internals. Conventions shared by all graphs:

* latents are *normalised* (the flow core's space); shape [B, C, h, w] float32;
* ``t`` and ``guidance`` are per-image float32 vectors [B]; ``label`` is int32 [B]
  (index ``num_classes`` is the null class);
* images leave as uint8 NHWC [B, H, W, 3] (round half up of (x+1)*127.5), or, for targets that
  cannot emit uint8, float32 NCHW in [-1, 1] (``image_format="float_nchw"``).
"""

from __future__ import annotations

import torch
from torch import nn

from lrf.models.checkpoint import Checkpoint
from lrf.models.flow import timesteps


def image_to_uint8_nhwc(x: torch.Tensor) -> torch.Tensor:
    x = ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1)


class StepGraph(nn.Module):
    """One guided velocity evaluation; the recursion is unrolled by tracing.

    (latent [B,C,h,w], t [B], label [B] int32, guidance [B]) -> velocity [B,C,h,w]
    """

    input_names = ("latent", "t", "label", "guidance")
    output_names = ("velocity",)

    def __init__(self, model: nn.Module, null_class: int):
        super().__init__()
        self.model = model
        self.null_class = null_class

    def forward(self, latent, t, label, guidance):
        label = label.long()
        b = latent.shape[0]
        v = self.model(torch.cat([latent, latent]), torch.cat([t, t]),
                       torch.cat([label, torch.full_like(label, self.null_class)]))
        # Slices, not v.chunk(2): chunk's split arithmetic makes torch.export specialise the
        # batch dimension (guard (3B-1)//B == 2), silently losing the dynamic batch.
        v_cond, v_uncond = v[:b], v[b:]                               # 2 x [B,C,h,w]
        return v_uncond + guidance.view(-1, 1, 1, 1) * (v_cond - v_uncond)


class DecoderGraph(nn.Module):
    """(latent [B,C,h,w], normalised) -> image [B,8h,8w,3] uint8 (or float NCHW in [-1,1])."""

    input_names = ("latent",)
    output_names = ("image",)

    def __init__(self, codec: nn.Module, image_format: str = "uint8_nhwc"):
        super().__init__()
        if image_format not in ("uint8_nhwc", "float_nchw"):
            raise ValueError(f"unknown image_format {image_format!r}")
        self.codec = codec
        self.image_format = image_format

    def forward(self, latent):
        x = self.codec.decode(latent)                                 # [B,3,H,W] in ~[-1,1]
        return image_to_uint8_nhwc(x) if self.image_format == "uint8_nhwc" else x.clamp(-1, 1)


class GeneratorGraph(nn.Module):
    """The whole sampler fused: N Euler steps unrolled with constant times, then the decoder.

    (noise [B,C,h,w], label [B] int32, guidance [B]) -> image. The step and decoder modules are
    the same objects at every step, so their weights are stored once in the exported file.
    """

    input_names = ("noise", "label", "guidance")
    output_names = ("image",)

    def __init__(self, step: StepGraph, decoder: DecoderGraph, steps: int, shift: float = 1.0):
        super().__init__()
        self.step = step
        self.decoder = decoder
        self.steps = steps
        self.times = [float(v) for v in timesteps(steps, shift)]     # python floats: constants

    def forward(self, noise, label, guidance):
        z = noise
        b = noise.shape[0]
        for i in range(self.steps):
            t = torch.full((b,), self.times[i], dtype=noise.dtype)
            z = z + (self.times[i + 1] - self.times[i]) * self.step(z, t, label, guidance)
        return self.decoder(z)


def build_graphs(ckpt: Checkpoint, fused_steps=(8, 50), shift: float | None = None,
                 image_format: str = "uint8_nhwc") -> dict[str, nn.Module]:
    """{'step', 'decoder', 'generator_<N>'...} wrappers around one checkpoint (eval mode)."""
    shift = ckpt.sampling.get("shift", 1.0) if shift is None else shift
    step = StepGraph(ckpt.model, ckpt.config.null_class).eval()
    decoder = DecoderGraph(ckpt.codec, image_format).eval()
    graphs: dict[str, nn.Module] = {"step": step, "decoder": decoder}
    for n in fused_steps:
        graphs[f"generator_{n}"] = GeneratorGraph(step, decoder, n, shift).eval()
    return graphs


def example_inputs(name: str, ckpt: Checkpoint, batch: int = 1, latent_size: int | None = None,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Fixed example inputs for tracing graph ``name`` (deterministic)."""
    cfg = ckpt.config
    s = latent_size or cfg.latent_size
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(batch, cfg.latent_channels, s, s, generator=g)
    label = torch.arange(batch, dtype=torch.int32) % cfg.num_classes
    guidance = torch.full((batch,), float(ckpt.sampling.get("guidance", 3.0)))
    if name == "step":
        return latent, torch.full((batch,), 0.5), label, guidance
    if name == "decoder":
        return (latent,)
    if name.startswith("generator_"):
        return latent, label, guidance
    raise ValueError(f"unknown graph {name!r}; expected 'step', 'decoder' or 'generator_<N>'")


def graph_io(name: str, ckpt: Checkpoint, latent_size: int | None = None,
             dynamic_batch: bool = True, dynamic_decoder_hw: bool = True,
             batch: int = 1, image_format: str = "uint8_nhwc") -> tuple[list[dict], list[dict]]:
    """The manifest's tensor entries (``runtime/BUNDLE.md``) for graph ``name``: the contract an
    exported file is checked against. -1 marks a dynamic dimension, named in ``dims``.

    ``dynamic_batch=False`` fixes the batch at ``batch`` (targets that cannot export a dynamic
    batch); ``dynamic_decoder_hw`` lets the decoder take any latent height/width;
    ``image_format`` as in :class:`DecoderGraph` ("float_nchw": float32 [B,3,H,W] in [-1, 1]).
    """
    cfg = ckpt.config
    s = latent_size or cfg.latent_size
    c = cfg.latent_channels
    f = ckpt.codec.scale_factor
    b = -1 if dynamic_batch else batch
    hw = -1 if dynamic_decoder_hw else s

    def t(n, dtype, shape, dims):
        return {"name": n, "dtype": dtype, "shape": list(shape), "dims": list(dims)}

    lat = ("batch", "channels", "height", "width")

    def image(h, w):
        if image_format == "float_nchw":
            return t("image", "float32", (b, 3, h, w), ("batch", "rgb", "image_height",
                                                         "image_width"))
        return t("image", "uint8", (b, h, w, 3), ("batch", "image_height", "image_width", "rgb"))

    vec = ("batch",)
    if name == "step":
        return ([t("latent", "float32", (b, c, s, s), lat), t("t", "float32", (b,), vec),
                 t("label", "int32", (b,), vec), t("guidance", "float32", (b,), vec)],
                [t("velocity", "float32", (b, c, s, s), lat)])
    if name == "decoder":
        dims = ("batch", "channels", "latent_height", "latent_width")
        return ([t("latent", "float32", (b, c, hw, hw), dims)],
                [image(-1 if hw < 0 else s * f, -1 if hw < 0 else s * f)])
    if name.startswith("generator_"):
        return ([t("noise", "float32", (b, c, s, s), lat), t("label", "int32", (b,), vec),
                 t("guidance", "float32", (b,), vec)],
                [image(s * f, s * f)])
    raise ValueError(f"unknown graph {name!r}; expected 'step', 'decoder' or 'generator_<N>'")
