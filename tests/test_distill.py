"""Stage 5 turbo distillation on a tiny teacher: trajectories, the student's start point,
the loss, resume, and the checkpoint it writes."""

import json
import os

import pytest
import torch

from lrf.training.distill import (DistillConfig, TrajectoryConfig, distill_loss, load_trajectories,
                                  make_trajectories, sample_segments, state_at, student_from_teacher,
                                  teacher_trajectories)

TRAJ = TrajectoryConfig(count=96, chunk=32, bf16=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_checkpoint):
    out = tmp_path_factory.mktemp("distill")
    make_trajectories(tiny_checkpoint, str(out / "trajectories"), TRAJ, log=lambda *a: None)
    return out


def test_trajectories_are_the_teachers_euler_path(run_dir, tiny_checkpoint):
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.flow import euler_sample

    states, labels, w = load_trajectories(str(run_dir / "trajectories"))
    assert states.shape == (96, 51, 4, 4, 4) and labels.shape == w.shape == (96,)
    assert 1.0 <= float(w.min()) and float(w.max()) <= 5.0 and (w == 3.0).any() and (w != 3.0).any()
    ck = load_checkpoint(tiny_checkpoint)
    # the final state is exactly the shipped sampler's output, one guidance per sample
    z = euler_sample(ck.model, states[:8, 0].clone(), labels[:8], steps=50,
                     guidance=w[:8].view(-1, 1, 1, 1), null_class=ck.config.null_class)
    torch.testing.assert_close(z, states[:8, -1], rtol=1e-5, atol=1e-5)
    # chunk i is a pure function of (seed, i): remaking one gives the same bytes
    again = teacher_trajectories(ck.model, states[:2, 0].clone(), labels[:2], w[:2],
                                 ck.config.null_class, bf16=False)
    torch.testing.assert_close(again, states[:2])


def test_trajectory_resume_refuses_other_settings(run_dir, tiny_checkpoint):
    from dataclasses import replace

    with pytest.raises(ValueError, match="use another --out"):
        make_trajectories(tiny_checkpoint, str(run_dir / "trajectories"),
                          replace(TRAJ, guidance_max=7.0), log=lambda *a: None)


def test_state_at_interpolates_the_euler_polyline():
    s = torch.arange(51, dtype=torch.float32).view(1, 51, 1, 1, 1).expand(3, 51, 1, 1, 1)
    got = state_at(s, torch.tensor([1.0, 0.75, 0.0])).flatten()
    torch.testing.assert_close(got, torch.tensor([0.0, 12.5, 50.0]))


def test_segments_stay_inside_the_schedule():
    t, d = sample_segments(4096, torch.Generator().manual_seed(0), 0.75)
    assert (t - d >= -1e-6).all() and (t <= 1.0).all()
    assert set(d.tolist()) == {1.0, 0.5, 0.25, 0.125}
    on_grid = torch.isclose(((1 - t) / d), ((1 - t) / d).round(), atol=1e-5)
    assert 0.7 < float(on_grid.float().mean()) < 0.85


def test_student_starts_as_the_teachers_conditional_branch(tiny_checkpoint):
    from lrf.models.checkpoint import load_checkpoint

    teacher = load_checkpoint(tiny_checkpoint).model
    student = student_from_teacher(teacher).eval()
    assert student.cfg.guidance_embed and student.cfg.step_embed
    z, t, y = torch.randn(4, 4, 4, 4), torch.rand(4), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        want = teacher(z, t, y)
        got = student(z, t, y, guidance=torch.tensor([1.0, 2.0, 3.0, 9.0]), step=torch.rand(4))
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="guidance-distilled"):
        student(z, t, y)


def test_loss_is_zero_for_a_student_that_follows_the_polyline():
    class Oracle(torch.nn.Module):   # knows the straight path z(t) = t * a + (1 - t) * b
        def __init__(self, a, b):
            super().__init__()
            self.a, self.b = a, b

        def forward(self, z, t, y, guidance=None, step=None):
            return self.a - self.b

    a, b = torch.randn(5, 4, 4, 4), torch.randn(5, 4, 4, 4)
    ts = torch.linspace(1, 0, 51).view(1, 51, 1, 1, 1)
    states = ts * a[:, None] + (1 - ts) * b[:, None]
    t, d = sample_segments(5, torch.Generator().manual_seed(1), 0.5)
    assert float(distill_loss(Oracle(a, b), states, None, None, t, d)) < 1e-10


def test_distill_trains_resumes_and_writes_a_turbo_checkpoint(run_dir, tiny_checkpoint):
    from lrf.models.checkpoint import load_checkpoint
    from lrf.training.distill import train_distill

    cfg = DistillConfig(steps=40, batch_size=32, lr=2e-3, warmup=2, eval_every=20, bf16=False)
    train_distill(tiny_checkpoint, str(run_dir), TRAJ, DistillConfig(**{**cfg.__dict__, "steps": 20}),
                  log=lambda *a: None)
    logs = [json.loads(x) for x in open(run_dir / "distill_log.jsonl")]
    assert max(r["step"] for r in logs) == 20
    with pytest.raises(ValueError, match="resume state was made with"):
        train_distill(tiny_checkpoint, str(run_dir), TRAJ, DistillConfig(steps=40, batch_size=32, lr=1.0, warmup=2, eval_every=20, bf16=False),
                      log=lambda *a: None)
    msgs = []
    train_distill(tiny_checkpoint, str(run_dir), TRAJ, cfg, log=msgs.append)
    assert any("resumed" in m and "step 20" in m for m in msgs)
    evals = [r for r in (json.loads(x) for x in open(run_dir / "distill_log.jsonl"))
             if "val_mse_4step" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert os.path.isfile(run_dir / "distill_loss.png")
    ck = load_checkpoint(str(run_dir / "checkpoint"))
    assert ck.config.guidance_embed and ck.sampling["steps"] == 4
    assert ck.training["method"].startswith("trajectory distillation")


def test_distill_cli_reports_missing_teacher(tmp_path, capsys):
    from lrf.training.cli import main

    assert main(["distill", "--teacher", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lrf-train: error:") and "nope" in err[0]
