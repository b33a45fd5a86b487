"""Editing through a bundle: img2img and inpainting with the encoder, denoise and decoder graphs.

:meth:`lrf.runtime.Generator.edit` calls :func:`edit`. The rules (window from ``strength``,
pixel mask -> latent mask, blending) are ``lrf.editing``'s, shared with the PyTorch reference
``lrf.models.reference.edit``; ``runtime/BUNDLE.md`` ("Editing") states them for other ports.
"""

from __future__ import annotations

import numpy as np

from lrf import editing
from lrf.runtime import scheduler
from lrf.runtime.scheduler import OnStep


def edit(gen, image, label: int | str | None, seed: int, strength: float, mask=None,
         steps: int | None = None, guidance: float | None = None, mode: str | None = None,
         on_step: OnStep | None = None, prompt: str | None = None,
         style: str | int | None = None) -> np.ndarray:
    """One edited uint8 image [H, W, C] (see :meth:`lrf.runtime.Generator.edit`)."""
    _, h, w = gen.latent_shape
    f = int(gen.manifest["codec"].get("scale_factor", 8))
    img = editing.check_image(image, h * f, w * f, f, channels=gen.channels)
    keep = None if mask is None else editing.latent_keep_mask(mask, h * f, w * f, f)
    n, g, mode = gen.resolve(steps, guidance, mode)
    win = editing.edit_window(scheduler.timesteps(n, gen.shift), strength, gen.edit_schedule)
    y, text = gen._labels_for(None if label is None else [label],
                              None if prompt is None else [prompt],
                              None if style is None else [style], 1)
    noise = gen.noise([seed])
    z_img = gen.encode(img[None])                                   # [1,C,h,w]
    z = editing.noised(z_img, noise, win[0])
    if len(win) > 1:
        blend = None if keep is None else (
            lambda zz, i: editing.blend(zz, z_img, noise, win[i], keep))
        # inpainting resets the kept cells after every step, so it runs one step per call
        z = gen.denoise(z, win, y, g, on_step, 1 if mode == "stepwise" or blend else None, blend,
                        text=text)
    return gen.decode(z)[0]
