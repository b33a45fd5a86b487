"""LRFConfig: one frozen, validated dataclass, saved as a plain dict; plus named presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class LRFConfig:
    latent_channels: int = 4
    latent_size: int = 4           # the trained size; the core itself accepts any H, W
    num_classes: int = 10          # + 1 null class for classifier-free guidance
    dim: int = 128                 # token width; also the conditioning width
    num_blocks: int = 4            # weight-shared blocks ...
    recursions: int = 2            # ... applied this many times (8 effective layers)
    heads: int = 4
    mlp_hidden: int = 640
    conv_kernel: int = 3           # depthwise conv branch of the spatial mixer
    softmax_max_tokens: int = 256  # exact softmax attention at <= this many tokens, linear above
    freq_dim: int = 128            # sinusoidal timestep features
    grad_last_recursion_only: bool = False  # O(1)-memory recursion backprop (HRM/TRM style)
    # Guidance-distilled ("turbo") students: the CFG scale w, and the Euler step size d, are
    # inputs embedded into the conditioning, so one call per step replaces the CFG pair.
    guidance_embed: bool = False
    step_embed: bool = False

    def __post_init__(self):
        for f in ("latent_channels", "latent_size", "num_classes", "dim", "num_blocks",
                  "recursions", "heads", "mlp_hidden", "freq_dim"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"LRFConfig.{f} must be a positive integer, got {v!r}")
        if self.dim % self.heads:
            raise ValueError(f"LRFConfig.dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"LRFConfig.conv_kernel must be odd and positive, got {self.conv_kernel}")
        if self.freq_dim % 2:
            raise ValueError(f"LRFConfig.freq_dim must be even, got {self.freq_dim}")
        for f in ("grad_last_recursion_only", "guidance_embed", "step_embed"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"LRFConfig.{f} must be true or false, got {getattr(self, f)!r}")
        if self.step_embed and not self.guidance_embed:
            raise ValueError("LRFConfig.step_embed needs guidance_embed (a distilled student)")
        if not isinstance(self.softmax_max_tokens, int) or isinstance(self.softmax_max_tokens, bool) \
                or not isinstance(self.conv_kernel, int) or isinstance(self.conv_kernel, bool):
            raise ValueError("LRFConfig.softmax_max_tokens and conv_kernel must be integers")
        if self.softmax_max_tokens < 0:
            raise ValueError("LRFConfig.softmax_max_tokens must be >= 0")

    @property
    def null_class(self) -> int:
        return self.num_classes

    @property
    def guidance_distilled(self) -> bool:
        return self.guidance_embed

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def uses_softmax(self, height: int, width: int) -> bool:
        return height * width <= self.softmax_max_tokens

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LRFConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"LRFConfig: unknown key {unknown[0]!r} (known: {sorted(names)})")
        return cls(**d)


PRESETS: dict[str, LRFConfig] = {
    # CIFAR-10: 32x32 images -> 4x4x4 latents; ~1.47M trainable parameters.
    "cifar10": LRFConfig(),
    # Tests only: the same architecture, tiny widths, so the suite stays fast.
    "tiny": LRFConfig(dim=32, num_blocks=2, recursions=2, heads=2, mlp_hidden=64, freq_dim=32),
}


def get_preset(name: str) -> LRFConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def timestep_frequencies(freq_dim: int) -> list[float]:
    """The sinusoidal embedding's frequencies (shared with exporters so nothing is re-derived)."""
    half = freq_dim // 2
    return [math.exp(-math.log(10000.0) * i / half) for i in range(half)]
