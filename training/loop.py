"""The one training loop: resume, EMA, LR schedule, SIGTERM, logging, progress bar, loss-curve
PNG and atomic state writes, shared by the trainers.

A trainer supplies a model, an optimiser, ``step_fn(step) -> {name: float}`` (one optimiser
step, given the global step so its randomness is a pure function of (seed, step) and resume is
exact) and optionally ``eval_fn(step) -> dict`` and ``export_fn(loop)`` (write the run's
product: a checkpoint from the EMA weights). The loop owns everything else:

- ``OUT/<name>_state.pt``: model, optimiser, EMA, scheduler, step, elapsed seconds and the
  config, written atomically every ``save_every_s`` seconds, at each eval and at the end;
  loaded with ``weights_only`` (no pickle). Resume refuses a state made with other options
  except the length, which may grow or shrink.
- SIGTERM stops at the next step boundary with the state saved (exit to resume later).
- ``OUT/<name>_log.jsonl`` and ``OUT/<name>_loss.png``.
- EMA and schedule: diffusers' ``EMAModel`` and ``get_cosine_schedule_with_warmup``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from lrf.training.common import append_log, load_state, plot_curve, save_state


class TrainLoop:
    def __init__(self, out_dir: str, name: str, model: torch.nn.Module,
                 opt: torch.optim.Optimizer, total_steps: int, config: dict, *,
                 warmup: int = 200, ema_decay: float | None = None, length_key: str = "steps",
                 log_every: int = 20, save_every_s: float = 300.0, log=print):
        from diffusers.optimization import get_cosine_schedule_with_warmup

        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.name, self.model, self.opt = out_dir, name, model, opt
        self.total, self.config, self.length_key = total_steps, dict(config), length_key
        self.log_every, self.save_every_s, self.log = log_every, save_every_s, log
        self.state_path = os.path.join(out_dir, f"{name}_state.pt")
        self.log_path = os.path.join(out_dir, f"{name}_log.jsonl")
        self.sched = get_cosine_schedule_with_warmup(opt, min(warmup, total_steps // 4),
                                                     total_steps)
        self.ema = None
        if ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(model.parameters(), decay=ema_decay)
        self.step, self.seconds = 0, 0.0
        self._resume()

    # ------------------------------------------------------------------ state
    def _resume(self) -> None:
        if not os.path.isfile(self.state_path):
            return
        st = load_state(self.state_path)
        saved = json.loads(st["config"])
        if {**saved, self.length_key: self.config[self.length_key]} != self.config:
            diff = sorted(k for k in set(saved) | set(self.config)
                          if k != self.length_key and saved.get(k) != self.config.get(k))
            raise ValueError(f"{self.state_path}: resume state was made with other options "
                             f"({', '.join(diff)}); use another --out or the same options (only "
                             f"--{self.length_key.replace('_', '-')} may change)")
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"])
        self.step, self.seconds = int(st["step"]), float(st["seconds"])
        # the schedule is re-derived for the (possibly new) length from the current step on
        self.sched.last_epoch = self.step - 1
        self.sched.step()
        self.log(f"{self.name}: resumed from {self.state_path} at step {self.step}/{self.total}")

    def save(self) -> None:
        st = {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
              "step": self.step, "seconds": self.seconds, "config": json.dumps(self.config)}
        if self.ema is not None:
            st["ema"] = self.ema.state_dict()
        save_state(self.state_path, st)

    def ema_state_dict(self) -> dict:
        """The model's state dict with the EMA weights in place of the parameters."""
        if self.ema is None:
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.ema.store(self.model.parameters())
        self.ema.copy_to(self.model.parameters())
        sd = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.ema.restore(self.model.parameters())
        return sd

    # ------------------------------------------------------------------ run
    def run(self, step_fn: Callable[[int], dict], eval_fn: Callable[[int], dict] | None = None,
            eval_every: int = 0, export_fn: Callable[["TrainLoop"], None] | None = None,
            curve_key: str = "loss", title: str = "") -> dict:
        """Train from the current step to ``total_steps``; returns {stopped, step, seconds}."""
        stop = []
        prev = signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        bar = tqdm(total=self.total, initial=self.step, desc=self.name, mininterval=10,
                   disable=None)
        last_save, t_run = time.time(), time.time()
        try:
            self.model.train()
            while self.step < self.total and not stop:
                t0 = time.time()
                logs = step_fn(self.step)
                self.sched.step()
                if self.ema is not None:
                    self.ema.step(self.model.parameters())
                self.step += 1
                self.seconds += time.time() - t0
                bar.update(1)
                if self.step % self.log_every == 0:
                    append_log(self.log_path, {"step": self.step, "lr": self.sched.get_last_lr()[0],
                                               **{k: float(v) for k, v in logs.items()}})
                    bar.set_postfix({k: f"{float(v):.4f}" for k, v in list(logs.items())[:3]})
                evaluate = eval_fn is not None and eval_every and (
                    self.step % eval_every == 0 or self.step == self.total)
                if evaluate:
                    self.model.eval()
                    rec = eval_fn(self.step)
                    self.model.train()
                    append_log(self.log_path, {"step": self.step, **rec})
                    self.log(f"{self.name} step {self.step}: " + ", ".join(
                        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in rec.items()))
                if evaluate or time.time() - last_save > self.save_every_s:
                    self.save()
                    if export_fn is not None:
                        export_fn(self)
                    plot_curve(self.log_path, os.path.join(self.out_dir, f"{self.name}_loss.png"),
                               curve_key, title or f"{self.name}: {curve_key}")
                    last_save = time.time()
        finally:
            bar.close()
            signal.signal(signal.SIGTERM, prev)
        self.save()
        if export_fn is not None:
            export_fn(self)
        plot_curve(self.log_path, os.path.join(self.out_dir, f"{self.name}_loss.png"), curve_key,
                   title or f"{self.name}: {curve_key}")
        return {"stopped": bool(stop), "step": self.step, "seconds": self.seconds,
                "run_seconds": time.time() - t_run}
