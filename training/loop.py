"""The one training loop: resume, EMA, LR schedule, SIGTERM, logging, progress bar, loss-curve
PNG and atomic state writes, shared by the trainers.

A trainer supplies a model, an optimiser, ``step_fn(step) -> {name: float}`` (one optimiser
step, given the global step so its randomness is a pure function of (seed, step) and resume is
exact) and optionally ``eval_fn(step) -> dict`` and ``export_fn(loop)`` (write the run's
product: a checkpoint from the EMA weights). The loop owns everything else:

- ``OUT/<name>_state.pt``: model, optimiser, EMA, scheduler, step, elapsed seconds, the config
  and any ``extras`` (a second model or optimiser: anything with ``state_dict`` /
  ``load_state_dict``), written atomically every ``save_every_s`` seconds (or
  ``save_every_steps`` steps), at each eval and at the end; loaded with ``weights_only`` (no
  pickle). Resume refuses a state made with other options except the length, which may grow or
  shrink (not below the steps already done), and drops log records past the saved step.
- SIGTERM stops at the next step boundary with the state saved (exit to resume later).
- ``OUT/<name>_log.jsonl`` and ``OUT/<name>_loss.png`` (and any other ``curves``).
- EMA and schedule: diffusers' ``EMAModel`` and ``get_cosine_schedule_with_warmup``.
- Under ``torch.distributed`` every rank steps and evaluates (``step_fn``/``eval_fn`` may hold
  collectives), a stop is agreed by all ranks, and only rank 0 writes files or a progress bar.
"""

from __future__ import annotations

import json
import os
import signal
import time
import warnings
from collections.abc import Callable

import torch
from tqdm import tqdm

from lrf.training.common import append_log, load_state, plot_curve, read_log, save_state

_OWN_KEYS = ("model", "opt", "ema", "step", "seconds", "config")


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TrainLoop:
    def __init__(self, out_dir: str, name: str, model: torch.nn.Module,
                 opt: torch.optim.Optimizer, total_steps: int, config: dict, *,
                 warmup: int = 200, ema_decay: float | None = None, length_key: str = "steps",
                 log_every: int = 20, save_every_s: float = 300.0, log=print,
                 extras: dict | None = None, ema_warmup: bool = True,
                 save_every_steps: int = 0):
        """``ema_warmup=False`` holds the EMA decay at ``ema_decay`` from the first step
        (diffusers' default ramps it as (1 + s) / (10 + s)). ``extras`` are saved and resumed
        under their names beside the model and optimiser."""
        from diffusers.optimization import get_cosine_schedule_with_warmup

        self.rank, self.world = dist_info()
        if self.rank == 0:
            os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.name, self.model, self.opt = out_dir, name, model, opt
        self.total, self.config, self.length_key = total_steps, dict(config), length_key
        # a short run still logs (and so plots) about ten points
        self.log_every = max(1, min(log_every, total_steps // 10))
        self.save_every_s, self.log = save_every_s, log
        self.save_every_steps = save_every_steps
        self.extras = dict(extras or {})
        if clash := set(self.extras) & set(_OWN_KEYS):
            raise ValueError(f"TrainLoop extras may not be named {sorted(clash)}")
        self.state_path = os.path.join(out_dir, f"{name}_state.pt")
        self.log_path = os.path.join(out_dir, f"{name}_log.jsonl")
        self.sched = get_cosine_schedule_with_warmup(opt, min(warmup, total_steps // 4),
                                                     total_steps)
        self.ema = None
        if ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(model.parameters(), decay=ema_decay,
                                min_decay=0.0 if ema_warmup else float(ema_decay))
        self.step, self.seconds = 0, 0.0
        self._saved_step = -1
        self._resume()

    # ------------------------------------------------------------------ state
    def _resume(self) -> None:
        if not os.path.isfile(self.state_path):
            return
        st = load_state(self.state_path)
        need = ["model", "opt", "step", "seconds", "config", *self.extras]
        if self.ema is not None:
            need.append("ema")
        if not isinstance(st.get("config"), str) or any(k not in st for k in need):
            raise ValueError(f"{self.state_path}: a resume state from an older trainer (before "
                             f"the shared training loop); start a new --out")
        saved = json.loads(st["config"])
        if {**saved, self.length_key: self.config[self.length_key]} != self.config:
            diff = sorted(k for k in set(saved) | set(self.config)
                          if k != self.length_key and saved.get(k) != self.config.get(k))
            raise ValueError(f"{self.state_path}: resume state was made with other options "
                             f"({', '.join(diff)}); use another --out or the same options (only "
                             f"--{self.length_key.replace('_', '-')} may change)")
        if int(st["step"]) > self.total:
            raise ValueError(f"{self.state_path}: already {int(st['step'])} steps done; "
                             f"--{self.length_key.replace('_', '-')} "
                             f"{self.config[self.length_key]} ({self.total} steps) would train "
                             f"none")
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"])
        for k, obj in self.extras.items():
            obj.load_state_dict(st[k])
        self.step, self.seconds = int(st["step"]), float(st["seconds"])
        # the schedule is re-derived for the (possibly new) length from the current step on
        self.sched.last_epoch = self.step - 1
        with warnings.catch_warnings():   # "sched.step() before opt.step()": nothing is skipped
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.sched.step()
        if self.rank == 0:
            # records logged after the saved step (a run killed between saves) describe steps
            # that will be redone: drop them so the log and the curves match the weights
            kept = [r for r in read_log(self.log_path) if r.get("step", 0) <= self.step]
            tmp = f"{self.log_path}.tmp{os.getpid()}"
            with open(tmp, "w") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in kept)
            os.replace(tmp, self.log_path)
            self.log(f"{self.name}: resumed from {self.state_path} at step {self.step}/"
                     f"{self.total}")

    def save(self) -> None:
        if self.rank != 0:
            return
        st = {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
              "step": self.step, "seconds": self.seconds, "config": json.dumps(self.config)}
        if self.ema is not None:
            st["ema"] = self.ema.state_dict()
        st.update({k: obj.state_dict() for k, obj in self.extras.items()})
        save_state(self.state_path, st)
        self._saved_step = self.step

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
    def _stop_agreed(self, stop: list) -> bool:
        """Whether any rank was asked to stop (every rank must leave at the same step)."""
        if self.world == 1:
            return bool(stop)
        import torch.distributed as dist

        flag = torch.tensor(float(bool(stop)))
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag)

    def _write(self, export_fn, curves: dict) -> None:
        """Save the state, then (rank 0) export and redraw the curves."""
        self.save()
        if self.rank != 0:
            return
        if export_fn is not None:
            export_fn(self)
        for stem, (key, title) in curves.items():
            plot_curve(self.log_path, os.path.join(self.out_dir, f"{stem}.png"), key, title)

    def run(self, step_fn: Callable[[int], dict], eval_fn: Callable[[int], dict] | None = None,
            eval_every: int = 0, export_fn: Callable[["TrainLoop"], None] | None = None,
            curve_key: str = "loss", title: str = "", stop_after: int | None = None,
            curves: dict[str, tuple[str, str]] | None = None) -> dict:
        """Train from the current step to ``total_steps`` (or ``stop_after`` more steps);
        returns {stopped, step, seconds, run_seconds}. ``curves`` maps a PNG name (no suffix)
        in OUT to (log key, title), drawn beside ``<name>_loss.png``."""
        curves = {f"{self.name}_loss": (curve_key, title or f"{self.name}: {curve_key}"),
                  **(curves or {})}
        end = self.total if stop_after is None else min(self.total, self.step + stop_after)
        stop = []
        prev = signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        bar = tqdm(total=self.total, initial=self.step, desc=self.name, mininterval=10,
                   disable=None if self.rank == 0 else True)
        last_save, t_run = time.time(), time.time()
        try:
            self.model.train()
            while self.step < end and not self._stop_agreed(stop):
                t0 = time.time()
                logs = step_fn(self.step)
                self.sched.step()
                if self.ema is not None:
                    self.ema.step(self.model.parameters())
                self.step += 1
                self.seconds += time.time() - t0
                bar.update(1)
                if self.step % self.log_every == 0 and self.rank == 0:
                    append_log(self.log_path, {"step": self.step, "lr": self.sched.get_last_lr()[0],
                                               **{k: float(v) for k, v in logs.items()}})
                    bar.set_postfix({k: f"{float(v):.4f}" for k, v in list(logs.items())[:3]})
                evaluate = eval_fn is not None and eval_every and (
                    self.step % eval_every == 0 or self.step == self.total)
                if evaluate:
                    self.model.eval()
                    rec = eval_fn(self.step)
                    self.model.train()
                    if self.rank == 0:
                        append_log(self.log_path, {"step": self.step, **rec})
                        self.log(f"{self.name} step {self.step}: " + ", ".join(
                            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in rec.items()))
                if (evaluate or time.time() - last_save > self.save_every_s
                        or (self.save_every_steps and self.step % self.save_every_steps == 0)):
                    self._write(export_fn, curves)
                    last_save = time.time()
        finally:
            bar.close()
            signal.signal(signal.SIGTERM, prev)
        if self._saved_step != self.step:
            self._write(export_fn, curves)
        return {"stopped": self.step < self.total, "step": self.step, "seconds": self.seconds,
                "run_seconds": time.time() - t_run}
