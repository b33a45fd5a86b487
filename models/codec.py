"""The codec: a TAESD-architecture tiny autoencoder (diffusers ``AutoencoderTiny``, 4 latent
channels, f=8) plus the per-channel latent statistics that normalise latents for the flow core.

Three ways in:
  (a) a diffusers-format folder (``config.json`` + safetensors) or a hub id such as
      ``madebyollin/taesd`` (hub ids need network; tests never use one);
  (b) the original taesd.py ``.pth`` encoder/decoder pair (``nn.Sequential`` state dicts);
  (c) our own single-file safetensors (``codec.safetensors``: weights + config + stats metadata).

Image convention everywhere in this module: float NCHW in [-1, 1] (AutoencoderTiny's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import torch
from torch import nn

CODEC_FORMAT = "lrf-codec/1"
CODEC_FILE = "codec.safetensors"
LATENT_STATS_FILE = "latent_stats.json"


def _autoencoder_tiny_cls():
    from diffusers import AutoencoderTiny

    return AutoencoderTiny


def original_to_diffusers(encoder_sd: Mapping[str, torch.Tensor],
                          decoder_sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the original taesd.py state dicts onto ``AutoencoderTiny`` keys.

    Encoder ``"<i>.<rest>"`` -> ``"encoder.layers.<i>.<rest>"``. Decoder ``"<i>.<rest>"`` ->
    ``"decoder.layers.<i-1>.<rest>"``: index 0 of the original decoder is the parameter-free
    clamp, which diffusers applies inside ``DecoderTiny.forward`` instead of as a layer.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in encoder_sd.items():
        out[f"encoder.layers.{k}"] = v.float()
    for k, v in decoder_sd.items():
        i, rest = k.split(".", 1)
        if int(i) == 0:
            raise ValueError(f"decoder key {k!r}: index 0 is the parameter-free clamp and must "
                             "hold no weights; is this really a taesd.py decoder?")
        out[f"decoder.layers.{int(i) - 1}.{rest}"] = v.float()
    return out


class Codec(nn.Module):
    """AutoencoderTiny + per-channel latent mean/std.

    ``encode`` returns *normalised* latents ((z - mean) / std), the space the flow core works in;
    ``decode`` takes normalised latents back to images in [-1, 1].
    """

    def __init__(self, autoencoder: nn.Module, latent_mean=None, latent_std=None):
        super().__init__()
        self.ae = autoencoder
        c = autoencoder.config.latent_channels
        mean = torch.zeros(c) if latent_mean is None else torch.as_tensor(latent_mean).float()
        std = torch.ones(c) if latent_std is None else torch.as_tensor(latent_std).float()
        if mean.shape != (c,) or std.shape != (c,):
            raise ValueError(f"latent stats must have shape ({c},), got mean {tuple(mean.shape)} "
                             f"and std {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError(f"latent std must be positive, got {std.tolist()}")
        self.register_buffer("latent_mean", mean)
        self.register_buffer("latent_std", std)

    @property
    def latent_channels(self) -> int:
        return int(self.ae.config.latent_channels)

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.ae.config.decoder_block_out_channels) - 1)

    def _stats(self, z):
        return self.latent_mean.view(1, -1, 1, 1).to(z), self.latent_std.view(1, -1, 1, 1).to(z)

    def encode_raw(self, images: torch.Tensor) -> torch.Tensor:
        return self.ae.encoder(images)  # [B,3,H,W] in [-1,1] -> [B,C,H/8,W/8]

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.ae.decoder(z)  # includes the tanh(z/3)*3 clamp; output in about [-1,1]

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.encode_raw(images))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decode_raw(self.denormalize(latents))

    def stats_dict(self) -> dict:
        return {"latent_mean": [float(v) for v in self.latent_mean],
                "latent_std": [float(v) for v in self.latent_std]}

    # ------------------------------------------------------------------ construction
    @classmethod
    def new(cls, **config) -> "Codec":
        """A randomly initialised codec; ``config`` overrides AutoencoderTiny's defaults."""
        return cls(_autoencoder_tiny_cls()(**config))

    @classmethod
    def from_original(cls, encoder_path: str, decoder_path: str, **config) -> "Codec":
        """Load a taesd.py ``.pth`` encoder/decoder pair (state dicts; no pickle: weights_only)."""
        sds = []
        for p in (encoder_path, decoder_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"taesd weight file {p!r} not found")
            sds.append(torch.load(p, map_location="cpu", weights_only=True))
        ae = _autoencoder_tiny_cls()(**config)
        _load_strict(ae, original_to_diffusers(*sds), where=f"{encoder_path} + {decoder_path}")
        return cls(ae)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str) -> "Codec":
        """Load our ``codec.safetensors`` (file or folder holding it) or a diffusers folder / hub id.

        A diffusers folder may carry a ``latent_stats.json`` next to its config; without one the
        stats are identity (mean 0, std 1).
        """
        p = path_or_hub_id
        if os.path.isdir(p) and os.path.isfile(os.path.join(p, CODEC_FILE)):
            p = os.path.join(p, CODEC_FILE)
        if os.path.isfile(p):
            return cls.load_file(p)
        if os.path.isdir(p):
            ae = _autoencoder_tiny_cls().from_pretrained(p)
            stats = {}
            if os.path.isfile(os.path.join(p, LATENT_STATS_FILE)):
                with open(os.path.join(p, LATENT_STATS_FILE)) as fh:
                    stats = json.load(fh)
            return cls(ae, stats.get("latent_mean"), stats.get("latent_std"))
        if os.path.exists(p) or p.startswith((".", "/")) or p.count("/") != 1:
            raise FileNotFoundError(f"codec {p!r}: not a codec.safetensors file, a folder with "
                                    "one, a diffusers folder, or a hub id like 'madebyollin/taesd'")
        return cls(_autoencoder_tiny_cls().from_pretrained(p))  # hub id: needs network

    def save_file(self, path: str, metadata: Mapping[str, str] | None = None) -> None:
        """Write the single-file format atomically: weights + AE config + latent stats."""
        from safetensors.torch import save_file

        meta = {"format": CODEC_FORMAT,
                "ae_config": json.dumps(_plain_config(self.ae.config)),
                "latent_stats": json.dumps(self.stats_dict())}
        meta.update(metadata or {})
        sd = {k: v.detach().contiguous().cpu() for k, v in self.ae.state_dict().items()}
        tmp = f"{path}.tmp{os.getpid()}"
        save_file(sd, tmp, metadata=meta)
        os.replace(tmp, path)

    @classmethod
    def load_file(cls, path: str) -> "Codec":
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise ValueError(f"codec file {path!r} is not a readable safetensors file: {e}") from e
        if meta.get("format") != CODEC_FORMAT:
            raise ValueError(f"codec file {path!r} has format {meta.get('format')!r}, expected "
                             f"{CODEC_FORMAT!r}")
        ae = _autoencoder_tiny_cls()(**json.loads(meta["ae_config"]))
        _load_strict(ae, sd, where=path)
        stats = json.loads(meta["latent_stats"])
        return cls(ae, stats["latent_mean"], stats["latent_std"])


def rgba_to_model(images_u8) -> torch.Tensor:
    """uint8 NHWC RGBA -> float32 NCHW in [-1, 1] with RGB premultiplied by alpha (the RGBA
    codec's input): p = c/255 * a/255 for RGB, a/255 for alpha, then 2p - 1."""
    import numpy as np

    x = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float().div_(255.0)
    x[:, :3] *= x[:, 3:4]
    return x.mul_(2.0).sub_(1.0)


def model_to_rgba(x: torch.Tensor):
    """The RGBA codec's output [B,4,H,W] in [-1, 1], premultiplied -> uint8 NHWC straight RGBA:
    p = clamp((x + 1) / 2, 0, 1); A = floor(255 a + 0.5); RGB = 0 where A = 0, else
    floor(255 min(rgb / a, 1) + 0.5) (float32 throughout; runtime/BUNDLE.md states the same)."""
    p = ((x.float() + 1) * 0.5).clamp(0, 1)
    a = p[:, 3:4]
    a8 = (a * 255 + 0.5).floor()
    rgb = torch.where(a8 > 0, ((p[:, :3] / a.clamp_min(1e-12)).clamp(max=1) * 255 + 0.5).floor(),
                      torch.zeros_like(p[:, :3]))
    return torch.cat([rgb, a8], 1).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


_AE_INIT_KEYS = ("in_channels", "out_channels", "encoder_block_out_channels",
                 "decoder_block_out_channels", "act_fn", "upsample_fn", "latent_channels",
                 "upsampling_scaling_factor", "num_encoder_blocks", "num_decoder_blocks",
                 "latent_magnitude", "latent_shift", "force_upcast", "scaling_factor",
                 "shift_factor")


def _plain_config(config) -> dict:
    out = {}
    for k in _AE_INIT_KEYS:
        if k in config:
            v = config[k]
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], where: str) -> None:
    """load_state_dict that names the first offending key instead of dumping all of them."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r} ({len(missing)} missing in all)")
    if unexpected:
        raise ValueError(f"{where}: unexpected key {unexpected[0]!r} "
                         f"({len(unexpected)} unexpected in all)")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{where}: key {k!r} has shape {tuple(v.shape)}, the model expects "
                             f"{tuple(own[k].shape)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
