"""Tiled decoding: large latents decoded in overlapping tiles, seams blended (numpy only).

The decoder is fully convolutional, so a tile decoded on its own matches the whole-image decode
except within its receptive field of the tile's cut edges. Each tile therefore carries a margin of
``margin`` latent cells of context on every cut side that gets weight 0, and neighbours cross-fade
linearly (in pixels) across the rest of their overlap. The result is the weighted average of the
tiles, rounded half up to uint8. Memory is that of one tile instead of the whole image. The rule
(``runtime/BUNDLE.md``, "Tiled decoding") in full:

    spans(n): n <= tile -> [(0, n)]; else k = ceil((n - overlap) / (tile - overlap)) tiles,
              start_i = floor(i * (n - tile) / (k - 1) + 0.5), i = 0..k-1, each `tile` long
    weight of tile [a, b) at pixel x (centre x + 0.5), along one axis, f = scale factor:
        left  = 1 if a = 0, else clip((x + 0.5 - (a + margin) f) / ((b' - a - 2 margin) f), 0, 1)
                with b' the end of the previous tile
        right = 1 if b = n, else clip(((b - margin) f - x - 0.5) / ((b - a'' - 2 margin) f), 0, 1)
                with a'' the start of the next tile
        w = left * right; 2-D weight = w_rows * w_cols
    image = floor(sum_k w_k tile_k / sum_k w_k + 0.5)     (float32, tile_k as 0-255 values)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tiling:
    """When and how to tile. ``mode``: "auto" (tile when the latent is larger than
    ``auto_above`` cells on a side), "on" (always, if larger than one tile) or "off"."""

    mode: str = "auto"
    tile: int = 24          # latent cells per tile side (x8 pixels)
    overlap: int = 12       # minimum overlap of neighbouring tiles, latent cells
    margin: int = 4         # context cells at a cut edge that get weight 0
    auto_above: int = 32    # "auto" tiles latents larger than this on either side

    def __post_init__(self):
        if self.mode not in ("auto", "on", "off"):
            raise ValueError(f"tiling mode must be 'auto', 'on' or 'off', got {self.mode!r}")
        for k in ("tile", "overlap", "auto_above"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"tiling {k} must be a positive integer, got {v!r}")
        if not isinstance(self.margin, int) or self.margin < 0:
            raise ValueError(f"tiling margin must be an integer >= 0, got {self.margin!r}")
        if not 2 * self.margin < self.overlap < self.tile:
            raise ValueError(f"tiling needs 2 * margin < overlap < tile, got margin "
                             f"{self.margin}, overlap {self.overlap}, tile {self.tile}")

    def applies(self, height: int, width: int) -> bool:
        """Whether a latent of height x width cells is decoded in tiles."""
        if self.mode == "off" or max(height, width) <= self.tile:
            return False
        return self.mode == "on" or max(height, width) > self.auto_above


def as_tiling(tiling) -> Tiling:
    """None / "auto" / "on" / "off" / True / False / a :class:`Tiling` -> :class:`Tiling`."""
    if isinstance(tiling, Tiling):
        return tiling
    if tiling is None:
        return Tiling()
    if isinstance(tiling, bool):
        return Tiling(mode="on" if tiling else "off")
    return Tiling(mode=tiling)


def spans(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Tile [start, stop) ranges covering 0..n, all ``tile`` long, neighbours >= ``overlap``."""
    if n <= tile:
        return [(0, n)]
    k = math.ceil((n - overlap) / (tile - overlap))
    starts = [math.floor(i * (n - tile) / (k - 1) + 0.5) for i in range(k)]
    return [(s, s + tile) for s in starts]


def axis_weights(sp: list[tuple[int, int]], n: int, f: int, margin: int) -> list[np.ndarray]:
    """Per-tile float32 pixel weights along one axis (the module docstring's rule)."""
    out = []
    for k, (a, b) in enumerate(sp):
        x = np.arange(a * f, b * f, dtype=np.float64) + 0.5
        w = np.ones_like(x)
        if a > 0:
            prev_end = sp[k - 1][1]
            w *= np.clip((x - (a + margin) * f) / ((prev_end - a - 2 * margin) * f), 0, 1)
        if b < n:
            next_start = sp[k + 1][0]
            w *= np.clip(((b - margin) * f - x) / ((b - next_start - 2 * margin) * f), 0, 1)
        out.append(w.astype(np.float32))
    return out


def decode_tiled(decode: Callable[[np.ndarray], np.ndarray], latent: np.ndarray,
                 tiling: Tiling, factor: int = 8) -> np.ndarray:
    """uint8 images [B, f h, f w, 3] from latents [B, C, h, w], decoding one tile at a time
    with ``decode`` (latent tile -> uint8 NHWC tile)."""
    b, _, h, w = latent.shape
    rows, cols = spans(h, tiling.tile, tiling.overlap), spans(w, tiling.tile, tiling.overlap)
    wr = axis_weights(rows, h, factor, tiling.margin)
    wc = axis_weights(cols, w, factor, tiling.margin)
    acc = np.zeros((b, h * factor, w * factor, 3), dtype=np.float32)
    norm = np.zeros((h * factor, w * factor), dtype=np.float32)
    for (r0, r1), ww_r in zip(rows, wr):
        for (c0, c1), ww_c in zip(cols, wc):
            tile = decode(np.ascontiguousarray(latent[:, :, r0:r1, c0:c1]))
            if tile.shape != (b, (r1 - r0) * factor, (c1 - c0) * factor, 3):
                raise ValueError(f"decoder returned a tile of shape {list(tile.shape)} for a "
                                 f"latent tile of {r1 - r0}x{c1 - c0}; expected uint8 "
                                 f"[{b}, {(r1 - r0) * factor}, {(c1 - c0) * factor}, 3]")
            wt = ww_r[:, None] * ww_c[None, :]
            ys, xs = slice(r0 * factor, r1 * factor), slice(c0 * factor, c1 * factor)
            acc[:, ys, xs] += wt[None, :, :, None] * tile.astype(np.float32)
            norm[ys, xs] += wt
    out = np.floor(acc / norm[None, :, :, None] + np.float32(0.5))
    return np.clip(out, 0, 255).astype(np.uint8)
