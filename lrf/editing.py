"""Editing rules (img2img and inpainting), numpy only: the one Python copy of the spec that both
the PyTorch reference (``lrf.models.reference.edit``) and the runtime (``lrf.runtime.editing``)
call, so they cannot drift. ``runtime/BUNDLE.md`` ("Editing") states the same rules for ports.

    t[0..N]   = the sampler's schedule (t_0 = 1 noise ... t_N = 0 data)
    i0        = start_index(t, strength): the i minimising |t_i - strength| (float64);
                a tie goes to the larger i (smaller t: fewer steps, as diffusers' floor does)
    window    = t[i0..N]                   (strength 1 -> i0 = 0, strength 0 -> i0 = N)
    z         = noised(z_img, noise, t_i0) = (1 - t) * z_img + t * noise    (float32)
    inpaint   : after each step, at the new time t: z = where(keep, noised(z_img, noise, t), z)
    keep      = latent_keep_mask(mask): a latent cell is kept only if every pixel of its
                f x f block is kept (pixel kept: value >= 0.5, or >= 128 for uint8)

``mask`` here is a KEEP mask: 1 / white keeps the input, 0 / black is repainted (an all-ones
mask keeps everything). diffusers' ``mask_image`` is the opposite; ``LRFPipeline`` converts.
"""

from __future__ import annotations

import math

import numpy as np


def check_strength(strength) -> float:
    """``strength`` as a float in [0, 1]; ValueError otherwise."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.integer, np.floating)) \
            or not math.isfinite(strength) or not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1] (0 keeps the image, 1 ignores it), "
                         f"got {strength!r}")
    return float(strength)


def start_index(ts: np.ndarray, strength: float) -> int:
    """The schedule index the edit starts at: nearest t to ``strength``, ties to the smaller t."""
    s = check_strength(strength)
    d = np.abs(np.asarray(ts, dtype=np.float32).astype(np.float64) - s)
    return int(np.flatnonzero(d == d.min())[-1])


def window(ts: np.ndarray, strength: float) -> np.ndarray:
    """``ts[i0:]``: the times an edit integrates over (one element: no denoising at all)."""
    return np.asarray(ts, dtype=np.float32)[start_index(ts, strength):]


def noised(z_img: np.ndarray, noise: np.ndarray, t) -> np.ndarray:
    """(1 - t) z_img + t noise in float32 (t = 1 gives ``noise`` exactly, t = 0 ``z_img``)."""
    t = np.float32(t)
    return ((np.float32(1) - t) * z_img + t * noise).astype(np.float32, copy=False)


def blend(z: np.ndarray, z_img: np.ndarray, noise: np.ndarray, t, keep: np.ndarray) -> np.ndarray:
    """Inpainting after a step to time ``t``: kept cells take the input re-noised to t.

    ``keep`` is a boolean [h, w] latent mask (broadcast over batch and channels)."""
    return np.where(keep, noised(z_img, noise, t), z).astype(np.float32, copy=False)


def check_image(image, height: int | None = None, width: int | None = None,
                factor: int = 8, what: str = "image", channels: int = 3) -> np.ndarray:
    """An RGB uint8 image [H, W, 3] (PIL image or array), H and W divisible by ``factor`` and,
    when given, equal to ``height`` x ``width``; ValueError saying what to do otherwise.
    ``channels=4`` (an RGBA model): straight RGBA [H, W, 4]; an RGB image is taken as opaque."""
    if channels == 4:
        if hasattr(image, "mode") and hasattr(image, "size"):
            image = np.asarray(image.convert("RGBA"))
        a = np.asarray(image)
        if a.ndim == 3 and a.shape[2] == 3:
            a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, a.dtype)], axis=2)
        if a.ndim != 3 or a.shape[2] != 4:
            raise ValueError(f"{what} must be RGBA [H, W, 4] or RGB [H, W, 3], got shape "
                             f"{list(a.shape)}")
        if a.dtype != np.uint8:
            raise ValueError(f"{what} must be uint8 (0-255), got {a.dtype}")
        _check_size(a.shape[:2], height, width, factor, what)
        return np.ascontiguousarray(a)
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image, without importing PIL
        if image.mode not in ("RGB", "RGBA") or (image.mode == "RGBA" and
                                                  image.getextrema()[3][0] < 255):
            raise ValueError(f"{what} has mode {image.mode!r}; give an RGB image (3 channels, "
                             "no transparency)")
        image = np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what} must be RGB [H, W, 3], got shape {list(a.shape)}")
    if a.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0-255), got {a.dtype}")
    _check_size(a.shape[:2], height, width, factor, what)
    return np.ascontiguousarray(a)


def keep_pixels(mask, height: int, width: int, what: str = "mask") -> np.ndarray:
    """A keep mask in pixels -> bool [H, W]. Accepts bool, uint8 (kept: >= 128), float
    (kept: >= 0.5), [H, W] or [H, W, 1], or a PIL image (converted to grayscale)."""
    if hasattr(mask, "mode") and hasattr(mask, "size"):
        mask = np.asarray(mask.convert("L"))
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"{what} must be one channel [H, W], got shape {list(m.shape)}")
    if m.shape != (height, width):
        raise ValueError(f"{what} is {m.shape[1]}x{m.shape[0]} but the image is "
                         f"{width}x{height}; give a mask of the image's size")
    if m.dtype == np.bool_:
        return m.copy()
    if m.dtype == np.uint8:
        return m >= 128
    if np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer):
        f = m.astype(np.float64)
        if not np.isfinite(f).all() or f.min() < 0 or f.max() > 1:
            raise ValueError(f"{what}: float values must lie in [0, 1] (or give uint8 0-255)")
        return f >= 0.5
    raise ValueError(f"{what} has dtype {m.dtype}; give bool, uint8 or float in [0, 1]")


def latent_keep_mask(mask, height: int, width: int, factor: int = 8) -> np.ndarray:
    """Pixel keep mask [H, W] -> latent keep mask bool [H/f, W/f]: a cell is kept only if all
    f x f pixels it covers are kept, so every pixel marked for repainting is repainted."""
    _check_size((height, width), None, None, factor, "image")
    m = keep_pixels(mask, height, width)
    return m.reshape(height // factor, factor, width // factor, factor).all(axis=(1, 3))


def _check_size(hw, height, width, factor, what) -> None:
    h, w = int(hw[0]), int(hw[1])
    if h < factor or w < factor or h % factor or w % factor:
        raise ValueError(f"{what} is {w}x{h}; width and height must be positive multiples of "
                         f"{factor}: crop or resize it")
    if height is not None and (h, w) != (height, width):
        raise ValueError(f"{what} is {w}x{h} but this model makes {width}x{height} images; "
                         f"resize it to {width}x{height}")


# Edit schedules (issue 27 item 5): how ``strength`` picks the times an edit integrates over.
EDIT_SCHEDULES = ("nearest", "scaled")


def scaled_window(ts: np.ndarray, strength: float) -> np.ndarray:
    """The ``scaled`` edit schedule of a step-size-conditioned (guidance-distilled) student:
    the N-step schedule compressed into [0, strength], w_i = float32(strength * t_i) (float64
    product of the float32 t_i), so the edit starts exactly at t = strength and every strength
    grades the result even at N = 1, where the nearest-index rule has only t = 1 and t = 0.
    strength 0 -> [0] (the codec round trip); equal neighbours (underflow) are dropped."""
    s = check_strength(strength)
    if s == 0.0:
        return np.zeros(1, np.float32)
    w = (np.asarray(ts, dtype=np.float32).astype(np.float64) * s).astype(np.float32)
    keep = np.concatenate([[True], np.diff(w) < 0])
    return w[keep]


def edit_window(ts: np.ndarray, strength: float, schedule: str = "nearest") -> np.ndarray:
    """The edit window for ``schedule``: ``nearest`` (:func:`window`) or ``scaled``
    (:func:`scaled_window`)."""
    if schedule == "scaled":
        return scaled_window(ts, strength)
    if schedule != "nearest":
        raise ValueError(f"unknown edit schedule {schedule!r}; choose one of {EDIT_SCHEDULES}")
    return window(ts, strength)


def default_schedule(config) -> str:
    """The edit schedule of a model (an ``LRFConfig`` or its dict): ``scaled`` for a
    step-size-conditioned student of a text model (schema v3 bundles record it in
    ``editing.schedule``), ``nearest`` otherwise (every v2 bundle)."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    return "scaled" if get("guidance_embed") and get("step_embed") and get("text_dim") \
        else "nearest"
