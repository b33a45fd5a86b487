"""Rectified flow: interpolation, loss, timestep sampling, schedule and the Euler sampler.

Convention (t = 1 is pure noise, t = 0 is data):
    z_t = (1 - t) z0 + t eps,   velocity target v = eps - z0,   dz/dt = v.
Sampling integrates from t = 1 to t = 0: z_{t'} = z_t + (t' - t) v(z_t, t).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def interpolate(z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tt = t.view(-1, *([1] * (z0.dim() - 1)))
    return (1 - tt) * z0 + tt * eps


def snr(t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio of z_t: ((1 - t) / t)^2."""
    return ((1 - t) / t.clamp_min(1e-12)) ** 2


def snr_weight(t: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Min-SNR-gamma weight (Hang et al., 2023) in its epsilon form, applied to the velocity loss:

        w(t) = min(1, gamma / SNR(t)),  SNR(t) = ((1 - t) / t)^2.

    Noisy timesteps (SNR <= gamma) keep weight 1; nearly clean ones, whose velocity target is
    almost pure noise and whose gradients fight the rest, are down-weighted. ``gamma=None``
    gives the plain, unweighted loss.
    """
    if gamma is None:
        return torch.ones_like(t)
    return torch.clamp(gamma / snr(t).clamp_min(1e-12), max=1.0)


def sample_timesteps(n: int, mode: str = "logit_normal", generator=None,
                     mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Training timesteps in (0, 1): ``uniform`` or ``logit_normal`` (sigmoid of N(mean, std))."""
    if mode == "uniform":
        return torch.rand(n, generator=generator).clamp(1e-5, 1 - 1e-5)
    if mode == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator) * std + mean)
    raise ValueError(f"unknown timestep sampling {mode!r}; choose 'uniform' or 'logit_normal'")


def drop_labels(labels: torch.Tensor, null_class: int, p: float, generator=None) -> torch.Tensor:
    """Replace each label by the null class with probability ``p`` (classifier-free guidance)."""
    drop = torch.rand(labels.shape, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def flow_loss(model, z0, labels, t, eps, snr_gamma: float | None = 5.0) -> torch.Tensor:
    """SNR-weighted rectified-flow loss for given timesteps and noise:

        L = mean_b [ w(t_b) * mean((v_theta(z_t, t_b, y_b) - (eps_b - z0_b))^2) ]

    ``labels`` are used as given (apply :func:`drop_labels` first for CFG training).
    """
    v_pred = model(interpolate(z0, eps, t), t, labels)
    per_sample = ((v_pred.float() - (eps - z0)) ** 2).flatten(1).mean(1)
    return (snr_weight(t, snr_gamma) * per_sample).mean()


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3-style timestep shift t' = s t / (1 + (s - 1) t); s > 1 spends more steps at high noise."""
    return shift * t / (1 + (shift - 1) * t)


def timesteps(num_steps: int, shift: float = 1.0) -> torch.Tensor:
    """The N+1 sampling times from 1 to 0 (float32): linspace(1, 0, N+1), then shifted."""
    if num_steps < 1:
        raise ValueError(f"steps must be >= 1, got {num_steps}")
    return shift_timesteps(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64),
                           shift).float()


def guided_velocity(model, z, t, labels, guidance: float | torch.Tensor, null_class: int,
                    step: torch.Tensor | float | None = None, text: dict | None = None,
                    null_text: dict | None = None):
    """The velocity one sampler step uses.

    A guidance-distilled core (``cfg.guidance_embed``) takes w (and, with ``cfg.step_embed``, the
    step size) as inputs: one call. Otherwise classifier-free guidance,
    v = v_uncond + w (v_cond - v_uncond), both branches in one batched call; the unconditional
    branch takes the null class and, for a text model, ``null_text`` (the empty prompt's
    conditioning, batch 1) in place of ``text`` (the model's text keyword arguments, batch B).
    """
    b = z.shape[0]
    tt = t.reshape(-1).expand(b)  # a scalar time or one per sample
    cfg = getattr(model, "cfg", None)
    if cfg is not None and getattr(cfg, "guidance_embed", False):
        w = torch.as_tensor(guidance, dtype=torch.float32).reshape(-1).expand(b)
        d = None
        if cfg.step_embed:
            d = torch.as_tensor(0.0 if step is None else step, dtype=torch.float32).reshape(-1).expand(b)
        return model(z, tt, labels, guidance=w, step=d, **(text or {}))
    kw = {}
    if text is not None:
        kw = {k: torch.cat([v, null_text[k].expand_as(v).to(v.dtype)]) for k, v in text.items()}
    v = model(torch.cat([z, z]), torch.cat([tt, tt]),
              torch.cat([labels, torch.full_like(labels, null_class)]), **kw)
    v_cond, v_uncond = v[:b], v[b:]
    return v_uncond + guidance * (v_cond - v_uncond)


@torch.no_grad()
def euler_sample(model, noise, labels, *, steps: int | None = None, guidance, null_class: int,
                 shift: float = 1.0, ts: torch.Tensor | None = None,
                 on_step: Callable[[int, int], bool | None] | None = None,
                 record: Callable[[torch.Tensor], None] | None = None,
                 text: dict | None = None, null_text: dict | None = None) -> torch.Tensor:
    """The one PyTorch sampler: Euler integration of the guided velocity field over ``ts``
    (default: :func:`timesteps` ``(steps, shift)``, from t=1 to t=0).

    ``record(z)`` receives the starting latent and every state after a step (trajectories for
    calibration and distillation). ``on_step(i, n)`` is called after step i (1-based);
    returning False stops with :class:`InterruptedError`.
    """
    ts = timesteps(steps, shift) if ts is None else ts
    n = len(ts) - 1
    z = noise
    if record is not None:
        record(z)
    for i in range(n):
        t = ts[i].expand(z.shape[0])
        v = guided_velocity(model, z, t, labels, guidance, null_class, step=ts[i] - ts[i + 1],
                            text=text, null_text=null_text)
        z = z + (ts[i + 1] - ts[i]) * v
        if record is not None:
            record(z)
        if on_step is not None and on_step(i + 1, n) is False:
            raise InterruptedError(f"sampling cancelled by on_step after step {i + 1}/{n}")
    return z
