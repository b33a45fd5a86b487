"""Portable noise: the exact recipe every LRF runtime (Python, Kotlin, Swift) follows.

Spec (all integer arithmetic is unsigned 64-bit, wrapping):

    GAMMA = 0x9E3779B97F4A7C15
    mix(z):  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
             z = (z ^ (z >> 27)) * 0x94D049BB133111EB
             return z ^ (z >> 31)
    word(seed, i) = mix(seed + (i + 1) * GAMMA)           # SplitMix64, counter form
    uniform(seed, i) = ((word(seed, i) >> 40) + 1) * 2^-24  # float32 in (0, 1], exact
    normal pair j (uses uniforms 2j and 2j+1), computed in float64, stored as float32:
        r = sqrt(-2 ln u[2j]);  theta = 2 pi u[2j+1]
        n[2j] = r cos(theta);   n[2j+1] = r sin(theta)

An image's noise tensor [C, H, W] is ``normal(seed, C*H*W)`` in row-major (C, H, W) order; a
batch is one seed per image, so an image never depends on its batch. The 64-bit words and the
uniforms are bit-exact across languages; the normals agree to about 1e-7 (the platforms' libm
``log``/``cos``/``sin`` may differ in the last float64 bit before the cast to float32).
"""

from __future__ import annotations

import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
SPEC = {"name": "splitmix64-boxmuller", "version": 1,
        "uniform": "((splitmix64(seed + (i+1)*0x9E3779B97F4A7C15) >> 40) + 1) * 2^-24",
        "normal": "box-muller in float64 on uniform pairs (2j, 2j+1), cast to float32",
        "layout": "one seed per image, row-major [C,H,W]"}


def _check_seed(seed: int) -> np.uint64:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2^64), got {seed!r}")
    return np.uint64(seed)


def words(seed: int, n: int) -> np.ndarray:
    """The first n SplitMix64 outputs for ``seed`` (uint64)."""
    s = _check_seed(seed)
    with np.errstate(over="ignore"):
        z = s + (np.arange(1, n + 1, dtype=np.uint64) * GAMMA)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def uniform(seed: int, n: int) -> np.ndarray:
    """n float32 uniforms in (0, 1]."""
    k = (words(seed, n) >> np.uint64(40)).astype(np.float64) + 1.0
    return (k * 2.0**-24).astype(np.float32)


def normal(seed: int, n: int) -> np.ndarray:
    """n float32 standard normals (Box-Muller)."""
    m = n + (n & 1)
    u = uniform(seed, m).astype(np.float64)
    r = np.sqrt(-2.0 * np.log(u[0::2]))
    theta = 2.0 * np.pi * u[1::2]
    out = np.empty(m, dtype=np.float64)
    out[0::2] = r * np.cos(theta)
    out[1::2] = r * np.sin(theta)
    return out[:n].astype(np.float32)


def noise(seeds, shape) -> np.ndarray:
    """Latent noise [B, *shape] float32, image b drawn from ``seeds[b]``."""
    seeds = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
    count = int(np.prod(shape))
    return np.stack([normal(s, count).reshape(shape) for s in seeds])
