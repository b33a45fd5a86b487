"""Rectified flow: the weighted loss by hand, timestep sampling, schedule, and the sampler
where the answer is known exactly."""

import numpy as np
import pytest
import torch

from lrf.models import flow


def test_snr_weight_by_hand():
    t = torch.tensor([0.5, 0.1, 0.9, 0.25])
    # SNR = ((1-t)/t)^2 = 1, 81, 1/81, 9 ; w = min(1, 5/SNR)
    want = torch.tensor([1.0, 5 / 81, 1.0, 5 / 9])
    torch.testing.assert_close(flow.snr_weight(t, 5.0), want)
    torch.testing.assert_close(flow.snr_weight(t, None), torch.ones(4))


def test_loss_matches_hand_computation():
    z0 = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    eps = torch.tensor([[0.5, 0.5], [1.0, 1.0]])
    t = torch.tensor([0.5, 0.1])
    labels = torch.tensor([0, 1])
    seen = {}

    def model(z, tt, y):  # predicts a constant 1 and records what it was given
        seen.update(z=z.clone(), t=tt.clone(), y=y.clone())
        return torch.ones_like(z)

    loss = flow.flow_loss(model, z0, labels, t, eps, snr_gamma=5.0)
    # z_t = (1-t) z0 + t eps
    torch.testing.assert_close(seen["z"], torch.tensor([[0.75, 1.25], [0.1, -0.8]]))
    # v = eps - z0 = [[-0.5,-1.5],[1,2]]; (1 - v)^2 means: [(2.25+6.25)/2, (0+1)/2] = [4.25, 0.5]
    # weights: t=0.5 -> 1 ; t=0.1 -> 5/81
    want = (4.25 * 1.0 + 0.5 * 5 / 81) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert torch.equal(seen["y"], labels)


def test_timestep_sampling():
    g = torch.Generator().manual_seed(0)
    u = flow.sample_timesteps(20000, "uniform", g)
    ln = flow.sample_timesteps(20000, "logit_normal", g)
    for t in (u, ln):
        assert t.min() > 0 and t.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.std().item() - 12 ** -0.5) < 0.01
    assert abs(ln.median().item() - 0.5) < 0.02
    assert ln.std().item() < u.std().item()  # logit-normal concentrates mid-range
    with pytest.raises(ValueError, match="logit_normal"):
        flow.sample_timesteps(3, "cosine")


def test_label_dropout_rate():
    y = torch.zeros(20000, dtype=torch.long)
    out = flow.drop_labels(y, null_class=10, p=0.1, generator=torch.Generator().manual_seed(0))
    frac = (out == 10).float().mean().item()
    assert 0.09 < frac < 0.11 and set(out.unique().tolist()) == {0, 10}


def test_schedule_and_shift():
    ts = flow.timesteps(4)
    torch.testing.assert_close(ts, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    s = flow.timesteps(4, shift=3.0)
    assert s[0] == 1.0 and s[-1] == 0.0
    assert s[2].item() == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))
    with pytest.raises(ValueError):
        flow.timesteps(0)


class PointField(torch.nn.Module):
    """The exact velocity field of data that is a single point x_y per label:
    z_t = (1-t) x + t eps  =>  v(z, t) = (z - x) / t."""

    def __init__(self, points):
        super().__init__()
        self.points = points  # [num_labels(+null), C, H, W]

    def forward(self, z, t, y):
        return (z - self.points[y]) / t.view(-1, 1, 1, 1)


@pytest.mark.parametrize("steps", [1, 3, 50])
def test_sampler_lands_on_single_point(steps):
    x = torch.randn(2, 4, 4, 4)  # label 0's point; label 1 (null) the same point
    field = PointField(torch.stack([x[0], x[0]]))
    noise = torch.randn(3, 4, 4, 4)
    out = flow.euler_sample(field, noise, torch.zeros(3, dtype=torch.long), steps=steps,
                            guidance=3.0, null_class=1)
    torch.testing.assert_close(out, x[0].expand(3, -1, -1, -1), atol=1e-5, rtol=1e-5)


def test_guidance_extrapolates_between_points():
    """With cond point a and uncond point b the guided field targets b + s (a - b)."""
    a, b = torch.randn(4, 4, 4), torch.randn(4, 4, 4)
    field = PointField(torch.stack([a, b]))
    out = flow.euler_sample(field, torch.randn(2, 4, 4, 4), torch.zeros(2, dtype=torch.long),
                            steps=7, guidance=2.5, null_class=1, shift=2.0)
    torch.testing.assert_close(out, (b + 2.5 * (a - b)).expand(2, -1, -1, -1), atol=1e-4, rtol=1e-4)


def test_on_step_can_cancel():
    field = PointField(torch.zeros(2, 4, 4, 4))
    calls = []

    def cb(i, n):
        calls.append((i, n))
        return i < 2

    with pytest.raises(InterruptedError, match="2/5"):
        flow.euler_sample(field, torch.randn(1, 4, 4, 4), torch.zeros(1, dtype=torch.long),
                          steps=5, guidance=1.0, null_class=1, on_step=cb)
    assert calls == [(1, 5), (2, 5)]


@pytest.mark.parametrize("steps,shift", [(8, 1.0), (20, 3.0)])
def test_diffusers_scheduler_matches_our_schedule(steps, shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])
    torch.testing.assert_close(sched.sigmas, flow.timesteps(steps, shift), atol=1e-6, rtol=0)
    z = torch.randn(1, 4, 4, 4)
    v = torch.randn(1, 4, 4, 4)
    s0 = sched.step(v, sched.timesteps[0], z, return_dict=False)[0]
    ts = flow.timesteps(steps, shift)
    torch.testing.assert_close(s0, z + (ts[1] - ts[0]) * v)


def test_pipeline_equals_reference_sampler(tiny_checkpoint):
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import LRFPipeline, generate

    ck = load_checkpoint(tiny_checkpoint)
    ref = generate(ck, [1, 7], [0, 42], steps=6, guidance=2.0)
    pipe = LRFPipeline.from_pretrained(tiny_checkpoint)
    pipe.set_progress_bar_config(disable=True)
    got = pipe(class_labels=[1, "horse"], seeds=[0, 42], num_inference_steps=6,
               guidance_scale=2.0, output_type="pt").images
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    pil = pipe(class_labels=[3], num_inference_steps=2).images
    assert pil[0].size == (32, 32)
