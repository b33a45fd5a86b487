"""The shared training loop (lrf.training.loop.TrainLoop) on a one-layer model: SIGTERM stop and
exact resume, extra state, the fixed-decay EMA, and what a resume refuses."""

import json
import os
import signal

import pytest
import torch

from lrf.training.loop import TrainLoop

X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
Y = X @ torch.tensor([1.0, -2.0, 0.5])


def _loop(out, steps=12, extras=None, **kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    kw = {"warmup": 2, "ema_decay": 0.9, "log_every": 1, "log": lambda *_: None, **kw}
    loop = TrainLoop(str(out), "toy", model, opt, steps, {"steps": steps, "lr": 0.05},
                     extras=extras, **kw)

    def step_fn(step):
        idx = torch.randint(0, 64, (8,), generator=torch.Generator().manual_seed(step))
        loss = ((model(X[idx]).squeeze(1) - Y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    return loop, step_fn


class Counter:
    """An extra with state: how many steps it has seen."""

    def __init__(self):
        self.n = 0

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, sd):
        self.n = int(sd["n"])


def test_sigterm_stops_with_the_state_saved_and_resume_is_exact(tmp_path):
    full, fn = _loop(tmp_path / "full")
    assert full.run(fn)["stopped"] is False

    c = Counter()
    part, fn = _loop(tmp_path / "part", extras={"counter": c})

    def killed_at_5(step):
        c.n += 1
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)   # handled: stop after this step
        return fn(step)

    before = signal.getsignal(signal.SIGTERM)
    res = part.run(killed_at_5)
    assert res["stopped"] and res["step"] == 5 and signal.getsignal(signal.SIGTERM) is before
    st = torch.load(tmp_path / "part" / "toy_state.pt", weights_only=True)
    assert st["step"] == 5 and st["counter"] == {"n": 5}

    c2 = Counter()
    again, fn = _loop(tmp_path / "part", extras={"counter": c2})
    assert again.step == 5 and c2.n == 5
    assert again.run(fn)["stopped"] is False
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v)
    for k, v in full.ema_state_dict().items():
        torch.testing.assert_close(again.ema_state_dict()[k], v)
    assert os.path.getsize(tmp_path / "part" / "toy_loss.png") > 1000


def test_fixed_decay_ema_is_the_plain_average(tmp_path):
    loop, fn = _loop(tmp_path, steps=6, ema_warmup=False)
    seen = []
    for step in range(3):
        fn(step)
        loop.sched.step()
        loop.ema.step(loop.model.parameters())   # the first update copies the weights
        seen.append([p.detach().clone() for p in loop.model.parameters()])
    for s, a, b, c in zip(loop.ema.shadow_params, *seen):
        torch.testing.assert_close(s, 0.9 * (0.9 * a + 0.1 * b) + 0.1 * c)
        assert not torch.equal(b, c)
    assert loop.ema.cur_decay_value == 0.9


def test_stop_after_and_log_past_the_saved_step(tmp_path):
    loop, fn = _loop(tmp_path, save_every_steps=100)
    res = loop.run(fn, stop_after=3)
    assert res["stopped"] and res["step"] == 3
    assert torch.load(tmp_path / "toy_state.pt", weights_only=True)["step"] == 3
    with open(tmp_path / "toy_log.jsonl", "a") as fh:   # as if killed between two saves
        fh.write(json.dumps({"step": 7, "loss": 9.0}) + "\n")
    msgs = []
    again, fn = _loop(tmp_path, log=msgs.append)
    assert again.step == 3 and any("resumed" in m and "step 3/12" in m for m in msgs)
    assert max(json.loads(line)["step"] for line in open(tmp_path / "toy_log.jsonl")) == 3


def test_resume_refuses_other_options_old_states_and_a_shorter_run(tmp_path):
    loop, fn = _loop(tmp_path, steps=8)
    loop.run(fn)
    with pytest.raises(ValueError, match=r"would train none"):
        _loop(tmp_path, steps=4)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match=r"other options \(lr\)"):
        TrainLoop(str(tmp_path), "toy", model, opt, 8, {"steps": 8, "lr": 0.1}, ema_decay=0.9)
    with pytest.raises(ValueError, match="may not be named"):
        TrainLoop(str(tmp_path / "x"), "toy", model, opt, 8, {"steps": 8}, extras={"opt": opt})
    # a state written by a trainer before the shared loop: config as a dict, no "seconds"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": 1, "step": 3,
                "config": {"steps": 8}}, tmp_path / "old_state.pt")
    with pytest.raises(ValueError, match=r"older trainer .*start a new --out"):
        TrainLoop(str(tmp_path), "old", model, opt, 8, {"steps": 8})
