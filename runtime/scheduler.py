"""The sampler's schedule and Euler update in numpy, bit-exact with ``lrf.models.flow``.

Spec (``runtime/BUNDLE.md`` section 3):

    u_i = 1 - i / N                    (float64, i = 0..N)
    t_i = float32(s u_i / (1 + (s - 1) u_i))
    z_{i+1} = z_i + (t_{i+1} - t_i) v_i (float32)
"""

from __future__ import annotations

import math

import numpy as np

SPEC = {"type": "rectified_flow_euler",
        "formula": "t_i = float32(s*u_i / (1 + (s-1)*u_i)), u_i = 1 - i/N (float64), i = 0..N",
        "update": "z_{i+1} = z_i + (t_{i+1} - t_i) * v_i (float32); t_0 = 1 noise, t_N = 0 data"}


def timesteps(n: int, shift: float = 1.0) -> np.ndarray:
    """The N+1 float32 sampling times from 1 to 0."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"steps must be an integer >= 1, got {n!r}")
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a positive finite number, got {shift!r}")
    u = 1.0 - np.arange(n + 1, dtype=np.float64) / n
    return (shift * u / (1.0 + (shift - 1.0) * u)).astype(np.float32)


def euler_update(z: np.ndarray, t: np.float32, t_next: np.float32, v: np.ndarray) -> np.ndarray:
    """z + (t_next - t) v, all in float32 (the difference is rounded to float32 first)."""
    dt = np.float32(np.float32(t_next) - np.float32(t))
    return (z + dt * v).astype(np.float32, copy=False)
