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
    # Text-conditioned models: the width of the frozen text encoder's vectors (0: none, a
    # class-only model). Its pooled prompt embedding is projected into the adaLN conditioning,
    # like the class embedding; with ``text_attention`` each block also cross-attends to the
    # prompt's token states. The classes are then the styles.
    text_dim: int = 0
    text_attention: bool = False

    def __post_init__(self):
        problems = [f"LRFConfig.{name}: {why}" for name, why in _field_problems(self)]
        if problems:
            raise ConfigError(problems)

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
        """Build from a saved dict (checkpoint or bundle manifest); every unknown key and every
        bad value is reported, one line each, in one :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError([f"LRFConfig: expected a JSON object of fields, got "
                               f"{type(d).__name__}"])
        names = [f.name for f in fields(cls)]
        problems = [f"LRFConfig: unknown key {_short(k)} (known: {', '.join(names)})"
                    for k in sorted(map(str, set(d) - set(names)))]
        try:
            cfg = cls(**{k: v for k, v in d.items() if k in names})
        except ConfigError as e:
            problems += e.problems
        if problems:
            raise ConfigError(problems)
        return cfg


class ConfigError(ValueError):
    """Bad config fields: ``problems`` holds one line per bad field; ``str`` joins them with
    "; " so a CLI still prints one line."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# field -> (low, high): the sane range of each integer field; a saved config is untrusted
# input, and a huge width or depth would allocate without bound before anything else fails.
_INT_RANGES = {
    "latent_channels": (1, 64), "latent_size": (1, 1024), "num_classes": (1, 100_000),
    "dim": (1, 8192), "num_blocks": (1, 256), "recursions": (1, 256), "heads": (1, 1024),
    "mlp_hidden": (1, 65_536), "conv_kernel": (1, 63), "softmax_max_tokens": (0, 2**31 - 1),
    "freq_dim": (2, 8192), "text_dim": (0, 8192),
}
_BOOLS = ("grad_last_recursion_only", "guidance_embed", "step_embed", "text_attention")


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_problems(cfg: "LRFConfig") -> list[tuple[str, str]]:
    """(field, why) for every bad field of ``cfg``; cross-field rules only once both are valid."""
    out, ok = [], set()
    for name, (low, high) in _INT_RANGES.items():
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool):
            out.append((name, f"expected an integer in [{low}, {high}], got {_short(v)} "
                              f"({type(v).__name__})"))
        elif not low <= v <= high:
            out.append((name, f"expected an integer in [{low}, {high}], got {_short(v)}"))
        else:
            ok.add(name)
    for name in _BOOLS:
        v = getattr(cfg, name)
        if not isinstance(v, bool):
            out.append((name, f"expected true or false, got {_short(v)} ({type(v).__name__})"))
        else:
            ok.add(name)
    if {"dim", "heads"} <= ok and cfg.dim % cfg.heads:
        out.append(("dim", f"must be divisible by heads ({cfg.heads}), got {cfg.dim}"))
    if "conv_kernel" in ok and cfg.conv_kernel % 2 == 0:
        out.append(("conv_kernel", f"must be odd, got {cfg.conv_kernel}"))
    if "freq_dim" in ok and cfg.freq_dim % 2:
        out.append(("freq_dim", f"must be even, got {cfg.freq_dim}"))
    if {"step_embed", "guidance_embed"} <= ok and cfg.step_embed and not cfg.guidance_embed:
        out.append(("step_embed", "needs guidance_embed (a distilled student)"))
    if {"text_attention", "text_dim"} <= ok and cfg.text_attention and not cfg.text_dim:
        out.append(("text_attention", "needs text_dim > 0"))
    return out


PRESETS: dict[str, LRFConfig] = {
    # CIFAR-10: 32x32 images -> 4x4x4 latents; ~1.47M trainable parameters.
    "cifar10": LRFConfig(),
    # Emoji text-to-image: 64x64 RGBA -> 8x8 latents (64 tokens; the trainer takes the channels
    # from the codec: 8 for the shipped one), 5 styles as classes, the MiniLM prompt embedding
    # (384-d) into adaLN.
    "emoji": LRFConfig(latent_size=8, num_classes=5, text_dim=384),
    # Tests only: the same architecture, tiny widths, so the suite stays fast.
    "tiny": LRFConfig(dim=32, num_blocks=2, recursions=2, heads=2, mlp_hidden=64, freq_dim=32),
    "tiny-text": LRFConfig(dim=32, num_blocks=2, recursions=2, heads=2, mlp_hidden=64,
                           freq_dim=32, num_classes=2, text_dim=384),
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
