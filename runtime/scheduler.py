"""The schedule and the one numpy sampler, bit-exact with ``lrf.models.flow``.

Spec (``runtime/BUNDLE.md`` sections 1 and 3):

    u_i = 1 - i / N                    (float64, i = 0..N)
    t_i = float32(s u_i / (1 + (s - 1) u_i))
    z_{i+1} = z_i + float32(t_{i+1} - t_i) v_i (float32)

:func:`sample` drives a *window step function* ``step(z, ts) -> z`` (a ``denoise`` graph call
over ``ts = t[i0..i1]``) over a schedule split into windows: stepwise (windows of 1, progress and
cancel between them), fused (one window) or chunked. :func:`velocity_window` turns a velocity
function into such a step function; it holds the only numpy Euler update.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

MAX_STEPS = 1000
GUIDANCE_RANGE = (0.0, 20.0)
SPEC = {"type": "rectified_flow_euler",
        "formula": "t_i = float32(s*u_i / (1 + (s-1)*u_i)), u_i = 1 - i/N (float64), i = 0..N",
        "update": "z_{i+1} = z_i + float32(t_{i+1} - t_i) * v_i (float32); t_0 = 1 noise, "
                  "t_N = 0 data"}

StepFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
OnStep = Callable[[int, int], "bool | None"]


class GenerationCancelled(InterruptedError):
    """``on_step`` returned False; no result is returned."""


def check_steps(n) -> int:
    """``n`` as an int in 1..MAX_STEPS, or ValueError."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= MAX_STEPS:
        raise ValueError(f"steps must be an integer in 1..{MAX_STEPS}, got {n!r}")
    return int(n)


def check_guidance(g) -> float:
    """``g`` as a float that is finite in float32 and inside GUIDANCE_RANGE, or ValueError."""
    lo, hi = GUIDANCE_RANGE
    ok = isinstance(g, (int, float, np.integer, np.floating)) and not isinstance(g, bool)
    if ok:
        with np.errstate(over="ignore"):
            ok = math.isfinite(float(g)) and bool(np.isfinite(np.float32(g))) and lo <= g <= hi
    if not ok:
        raise ValueError(f"guidance must be a number in [{lo}, {hi}] (finite in float32), "
                         f"got {g!r}")
    return float(np.float32(g))


def timesteps(n: int, shift: float = 1.0) -> np.ndarray:
    """The N+1 float32 sampling times from 1 to 0."""
    n = check_steps(n)
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a positive finite number, got {shift!r}")
    u = 1.0 - np.arange(n + 1, dtype=np.float64) / n
    return (shift * u / (1.0 + (shift - 1.0) * u)).astype(np.float32)


def windows(n: int, size: int | None, wmin: int = 1, wmax: int | None = None
            ) -> list[tuple[int, int]]:
    """Split steps 0..n into consecutive windows (i0, i1) of ``size`` steps (None: as large as
    the graph allows), each of a length in [wmin, wmax] (wmax None = unbounded)."""
    cap = n if wmax is None else min(wmax, n)
    size = cap if size is None else max(wmin, min(int(size), cap))
    out, i = [], 0
    while i < n:
        k = min(size, n - i)
        if k < wmin:
            raise ValueError(f"{n} steps cannot be split into windows of {wmin}"
                             f"{'' if wmax == wmin else f'..{wmax}'} steps (the bundle's denoise "
                             f"graph); use a multiple of {wmin}")
        out.append((i, i + k))
        i += k
    return out


def sample(step: StepFn, ts: np.ndarray, z: np.ndarray, spans: list[tuple[int, int]],
           on_step: OnStep | None = None,
           after_window: Callable[[np.ndarray, int], np.ndarray] | None = None) -> np.ndarray:
    """The one numpy sampler: ``z = step(z, ts[i0..i1])`` for each window of ``spans``; then
    ``after_window(z, i1)`` (e.g. an inpainting blend at time ts[i1]) and ``on_step(i1, n)``
    (returning False raises :class:`GenerationCancelled`)."""
    n = len(ts) - 1
    for i0, i1 in spans:
        z = step(z, ts[i0:i1 + 1])
        if after_window is not None:
            z = after_window(z, i1)
        progress(on_step, i1, n)
    return z


def velocity_window(velocity: Callable[[np.ndarray, np.float32, np.float32], np.ndarray]
                    ) -> StepFn:
    """A window step function from ``velocity(z, t_i, t_next) -> v``: the numpy Euler update
    ``z + float32(t_{i+1} - t_i) v`` over the window (for velocity-level graphs and tests)."""
    def step(z: np.ndarray, ts: np.ndarray) -> np.ndarray:
        for i in range(len(ts) - 1):
            dt = np.float32(np.float32(ts[i + 1]) - np.float32(ts[i]))
            z = (z + dt * velocity(z, ts[i], ts[i + 1])).astype(np.float32, copy=False)
        return z
    return step


def progress(on_step: OnStep | None, i: int, n: int) -> None:
    if on_step is not None and on_step(i, n) is False:
        raise GenerationCancelled(f"generation cancelled by on_step after step {i}/{n}; "
                                  "no image was produced")
