"""Thin wrapper modules, one per exported graph (``runtime/BUNDLE.md`` 2.2), with fixed
input/output names and roles.

Every export target traces these and nothing else; none of them reaches into the model's
internals (the ONNX target's step-count-free ``denoise`` Loop is composed from
``lrf.exporter.onnx_core``, pinned to these wrappers by the tests). Conventions:

* latents are *normalised* (the flow core's space); shape [B, C, h, w] float32;
* ``timesteps`` is the window tau[0..K] float32 [K+1]; ``guidance`` float32 [B]; ``label`` int32
  [B] (index ``num_classes`` is the null class, used inside ``denoise`` only);
* images are uint8 NHWC [B, H, W, 3] (round half up of (x+1)*127.5), or, for targets that
  cannot take or emit uint8, float32 NCHW in [-1, 1] (``image_format="float_nchw"``).
"""

from __future__ import annotations

import torch
from torch import nn

from lrf.models.checkpoint import Checkpoint
from lrf.models.flow import euler_sample, timesteps

IMAGE_FORMATS = ("uint8_nhwc", "float_nchw")
GRAPH_NAMES = ("denoise", "decoder", "encoder")


def image_to_uint8_nhwc(x: torch.Tensor) -> torch.Tensor:
    x = ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1)


def uint8_nhwc_to_image(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float32 [B,3,H,W] in [-1, 1] (x / 127.5 - 1)."""
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1


def _check_format(image_format: str) -> None:
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image_format {image_format!r}; choose one of {IMAGE_FORMATS}")


class DenoiseGraph(nn.Module):
    """K Euler steps over the window ``timesteps`` [K+1] through ``lrf.models.flow.euler_sample``
    (K is fixed by the traced example: targets without a delegable loop).

    (latent [B,C,h,w], timesteps [K+1], label [B] int32, guidance [B]) -> latent [B,C,h,w]
    """

    input_names = ("latent", "timesteps", "label", "guidance")
    output_names = ("denoised",)

    def __init__(self, model: nn.Module, null_class: int):
        super().__init__()
        self.model = model
        self.null_class = null_class

    def forward(self, latent, timesteps, label, guidance):
        return euler_sample(self.model, latent, label.long(), ts=timesteps,
                            guidance=guidance.view(-1, 1, 1, 1), null_class=self.null_class)


class _CodecGraph(nn.Module):
    """A graph around the codec that takes or emits images in ``image_format``."""

    def __init__(self, codec: nn.Module, image_format: str = "uint8_nhwc"):
        super().__init__()
        _check_format(image_format)
        self.codec = codec
        self.image_format = image_format


class DecoderGraph(_CodecGraph):
    """(latent [B,C,h,w], normalised) -> image [B,8h,8w,3] uint8 (or float NCHW in [-1,1])."""

    input_names = ("latent",)
    output_names = ("image",)

    def forward(self, latent):
        x = self.codec.decode(latent)                                 # [B,3,H,W] in ~[-1,1]
        return image_to_uint8_nhwc(x) if self.image_format == "uint8_nhwc" else x.clamp(-1, 1)


class EncoderGraph(_CodecGraph):
    """(image [B,H,W,3] uint8, or float NCHW in [-1,1]) -> normalised latent [B,C,H/8,W/8]."""

    input_names = ("image",)
    output_names = ("latent",)

    def forward(self, image):
        x = uint8_nhwc_to_image(image) if self.image_format == "uint8_nhwc" else image
        return self.codec.encode(x)                                   # [B,C,H/8,W/8]


def build_graphs(ckpt: Checkpoint, image_format: str = "uint8_nhwc") -> dict[str, nn.Module]:
    """{'denoise', 'decoder', 'encoder'} wrappers around one checkpoint (eval mode)."""
    return {"denoise": DenoiseGraph(ckpt.model, ckpt.config.null_class).eval(),
            "decoder": DecoderGraph(ckpt.codec, image_format).eval(),
            "encoder": EncoderGraph(ckpt.codec, image_format).eval()}


def example_inputs(name: str, ckpt: Checkpoint, batch: int = 1, latent_size: int | None = None,
                   seed: int = 0, window: int | None = None,
                   image_format: str = "uint8_nhwc") -> tuple[torch.Tensor, ...]:
    """Fixed example inputs for tracing graph ``name`` (deterministic); ``window``: the steps of
    the ``denoise`` example (default 2)."""
    cfg = ckpt.config
    s = latent_size or cfg.latent_size
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(batch, cfg.latent_channels, s, s, generator=g)
    if name == "denoise":
        k = window or 2
        label = torch.arange(batch, dtype=torch.int32) % cfg.num_classes
        guidance = torch.full((batch,), float(ckpt.sampling.get("guidance", 3.0)))
        return latent, timesteps(k, float(ckpt.sampling.get("shift", 1.0))), label, guidance
    if name == "decoder":
        return (latent,)
    if name == "encoder":
        f = ckpt.codec.scale_factor
        img = torch.randint(0, 256, (batch, s * f, s * f, 3), generator=g, dtype=torch.uint8)
        return (img if image_format == "uint8_nhwc" else uint8_nhwc_to_image(img),)
    raise ValueError(f"unknown graph {name!r}; expected one of {GRAPH_NAMES}")


def graph_io(name: str, ckpt: Checkpoint, latent_size: int | None = None,
             dynamic_batch: bool = True, dynamic_decoder_hw: bool = True,
             batch: int = 1, image_format: str = "uint8_nhwc",
             window: int | None = None) -> tuple[list[dict], list[dict]]:
    """The manifest's tensor entries (``runtime/BUNDLE.md`` 2.2) for graph ``name``, each with
    its role: the contract an exported file is checked against. -1 marks a dynamic dimension,
    named in ``dims``.

    ``dynamic_batch=False`` fixes the batch at ``batch``; ``dynamic_decoder_hw`` lets the decoder
    and encoder take any size; ``window``: the fixed K of a ``denoise`` file (None: dynamic,
    ``timesteps`` [-1]); ``image_format`` as in :class:`DecoderGraph`.
    """
    _check_format(image_format)
    cfg = ckpt.config
    s = latent_size or cfg.latent_size
    c = cfg.latent_channels
    f = ckpt.codec.scale_factor
    b = -1 if dynamic_batch else batch

    def t(n, role, dtype, shape, dims):
        return {"name": n, "role": role, "dtype": dtype, "shape": list(shape), "dims": list(dims)}

    def image(n, h, w):
        if image_format == "float_nchw":
            return t(n, "image", "float32", (b, 3, h, w), ("batch", "rgb", "image_height",
                                                            "image_width"))
        return t(n, "image", "uint8", (b, h, w, 3), ("batch", "image_height", "image_width",
                                                      "rgb"))

    vec = ("batch",)
    free = ("batch", "channels", "latent_height", "latent_width")
    hw = -1 if dynamic_decoder_hw else s
    if name == "denoise":
        lat = ("batch", "channels", "height", "width")
        k1 = -1 if window is None else window + 1
        return ([t("latent", "latent", "float32", (b, c, s, s), lat),
                 t("timesteps", "timesteps", "float32", (k1,), ("window_plus_one",)),
                 t("label", "label", "int32", (b,), vec),
                 t("guidance", "guidance", "float32", (b,), vec)],
                [t("denoised", "latent", "float32", (b, c, s, s), lat)])
    if name == "decoder":
        return ([t("latent", "latent", "float32", (b, c, hw, hw), free)],
                [image("image", -1 if hw < 0 else s * f, -1 if hw < 0 else s * f)])
    if name == "encoder":
        return ([image("image", -1 if hw < 0 else s * f, -1 if hw < 0 else s * f)],
                [t("latent", "latent", "float32", (b, c, hw, hw), free)])
    raise ValueError(f"unknown graph {name!r}; expected one of {GRAPH_NAMES}")
