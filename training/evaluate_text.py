"""``lrf-eval`` for a text-to-image checkpoint: prompt alignment, style, distribution distance,
copying, and a grid, all scored by the separately trained judge (``lrf.training.judge``).

For two sets of (caption, style) pairs taken from the data, captions *held out* from the
generator's training and *seen* ones, it generates one image per pair and reports:

- retrieval top-1 / top-5 of the prompt among all captions the judge knows, for the generated
  images, for the real images of the same pairs, and (held out) for the lookup baseline: the
  real image, in the same style, of the seen caption whose MiniLM embedding is closest;
- style accuracy of the judge's style head, generated against real;
- the Frechet distance between judge features of generated and real images (FD-judge);
- copying: each generated held-out image's nearest training image (L2 on premultiplied
  pixels), against the same distance for the real held-out images, plus a PNG of pairs;
- a grid PNG: fixed prompts (seen, held out, and not emoji names at all) x every style.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import torch

GRID_SEEN = ["grinning face", "cat face", "red heart", "thumbs up", "pizza", "rocket"]
GRID_FREE = ["a cat astronaut", "pizza with sunglasses", "blue dog", "happy robot",
             "fire cactus", "sad pineapple"]


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _topk(rank: np.ndarray) -> dict:
    return {"top1": float((rank < 1).mean()), "top5": float((rank < 5).mean())}


def generate_pairs(ckpt, prompts: list[str], styles: list[int], seeds: list[int],
                   steps: int | None, guidance: float | None, batch: int = 64,
                   progress: str = "") -> np.ndarray:
    from tqdm import tqdm

    from lrf.models.reference import generate, to_uint8

    out = []
    for i in tqdm(range(0, len(prompts), batch), desc=progress or "generate", mininterval=10,
                  disable=None):
        x = generate(ckpt, styles[i:i + batch], seeds[i:i + batch], steps=steps,
                     guidance=guidance, prompts=prompts[i:i + batch])
        out.append(to_uint8(x))
    return np.concatenate(out)


def checkerboard(images: np.ndarray, cell: int = 8) -> np.ndarray:
    """Straight RGBA uint8 NHWC composited over a light checkerboard -> RGB uint8."""
    h, w = images.shape[1:3]
    yy, xx = np.mgrid[:h, :w]
    bg = np.where(((yy // cell + xx // cell) % 2)[..., None] == 0, 235, 205).astype(np.float32)
    a = images[..., 3:4].astype(np.float32) / 255
    return (images[..., :3] * a + bg * (1 - a) + 0.5).astype(np.uint8)


def save_grid(path: str, rows: list[tuple[str, np.ndarray]], col_titles: list[str],
              scale: int = 2) -> None:
    """One row per (label, images [K,H,W,4]); labels on the left, titles on top."""
    from PIL import Image, ImageDraw

    from lrf.cli import atomic_output

    h, w = rows[0][1].shape[1:3]
    hs, ws = h * scale, w * scale
    left, top, pad = 190, 22, 4
    k = max(len(r[1]) for r in rows)
    canvas = Image.new("RGB", (left + k * (ws + pad), top + len(rows) * (hs + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, t in enumerate(col_titles):
        draw.text((left + j * (ws + pad) + 4, 5), t, fill="black")
    for i, (label, ims) in enumerate(rows):
        y = top + i * (hs + pad)
        draw.text((4, y + hs // 2 - 6), label[:30], fill="black")
        for j, im in enumerate(checkerboard(ims)):
            canvas.paste(Image.fromarray(im).resize((ws, hs), Image.Resampling.NEAREST),
                         (left + j * (ws + pad), y))
    with atomic_output(path) as tmp:
        canvas.save(tmp, format="PNG")


def evaluate_text_model(checkpoint: str, judge: str, data: str, *, steps: int | None = None,
                        guidance: float | None = None, n_seen: int = 300, n_held: int = 400,
                        seed: int = 0, grid: str | None = None, copies: str | None = None,
                        log=print) -> dict:
    from lrf.models.checkpoint import load_checkpoint
    from lrf.training.captioned import is_held_out, load_captioned, premultiplied
    from lrf.training.judge import JudgeScorer

    t0 = time.time()
    ckpt = load_checkpoint(checkpoint)
    if not ckpt.config.text_dim:
        raise ValueError(f"{checkpoint}: not a text-to-image checkpoint")
    frac = float(ckpt.training.get("text", {}).get("held_out_fraction", 0.05))
    ds = load_captioned(data, ckpt.config.latent_size * ckpt.codec.scale_factor)
    styles = [str(s) for s in ds.column("style")]
    classes = list(ckpt.classes)
    known = np.array([s in classes for s in styles])
    if not known.any():
        raise ValueError(f"{data}: no image has one of the checkpoint's styles {classes}")
    ds, styles = ds.subset(known), [s for s, k in zip(styles, known) if k]
    held = np.array([is_held_out(t, frac) for t in ds.texts])
    rng = np.random.default_rng(seed)
    held_rows = np.flatnonzero(held)
    seen_rows = np.flatnonzero(~held)
    held_rows = np.sort(rng.permutation(held_rows)[:n_held])
    seen_rows = np.sort(rng.permutation(seen_rows)[:n_seen])
    scorer = JudgeScorer(judge)
    report = {"checkpoint": os.path.basename(os.path.normpath(checkpoint)),
              "steps": steps or ckpt.sampling["steps"],
              "guidance": ckpt.sampling["guidance"] if guidance is None else guidance,
              "held_out_fraction": frac, "held_out_captions": int(len(set(
                  ds.texts[i] for i in np.flatnonzero(held)))),
              "pairs": {"held_out": len(held_rows), "seen": len(seen_rows)},
              "core": core_cost(ckpt)}
    gens = {}
    for name, rows in (("held_out", held_rows), ("seen", seen_rows)):
        prompts = [ds.texts[i] for i in rows]
        sty = [styles[i] for i in rows]
        gen = generate_pairs(ckpt, prompts, [classes.index(s) for s in sty],
                             [seed * 100_000 + int(i) for i in rows], steps, guidance,
                             progress=f"generate {name}")
        gens[name] = gen
        g = scorer.score(gen, prompts, sty)
        r = scorer.score(ds.images[rows], prompts, sty)
        report[name] = {"generated": {**_topk(g["rank"]), "style_acc": float(g["style_ok"].mean())},
                        "real": {**_topk(r["rank"]), "style_acc": float(r["style_ok"].mean())},
                        "fd_judge": _frechet(g["features"], r["features"])}
        log(f"{name}: {json.dumps(report[name])}")
    # the codec's round trip on the held-out images: pixels, silhouette, and what the judge sees
    from lrf.models.reference import to_uint8
    from lrf.training.ae_captioned import roundtrip_metrics

    real = ds.images[held_rows]
    with torch.no_grad():
        rt = np.concatenate([to_uint8(ckpt.codec.decode(ckpt.codec.encode(
            premultiplied(real[i:i + 256])))) for i in range(0, len(real), 256)])
    rts = scorer.score(rt, [ds.texts[i] for i in held_rows], [styles[i] for i in held_rows])
    real_top = report["held_out"]["real"]
    report["codec"] = {**roundtrip_metrics(ckpt.codec, real),
                       "round_trip": {**_topk(rts["rank"]), "style_acc": float(rts["style_ok"].mean())},
                       "original": dict(real_top)}
    # the lookup baseline, held-out pairs only
    enc = scorer.encoder
    seen_caps = sorted({ds.texts[i] for i in np.flatnonzero(~held)})
    _, _, seen_emb = enc.encode(seen_caps)
    by_cap_style = {(ds.texts[i], styles[i]): i for i in np.flatnonzero(~held)}
    held_prompts = [ds.texts[i] for i in held_rows]
    _, _, held_emb = enc.encode(held_prompts)
    sims = (held_emb @ seen_emb.T).numpy()
    look_rows, look_caps = [], []
    for k, i in enumerate(held_rows):
        order = np.argsort(-sims[k])
        for j in order:
            if (seen_caps[j], styles[i]) in by_cap_style:
                look_rows.append(by_cap_style[(seen_caps[j], styles[i])])
                look_caps.append(seen_caps[j])
                break
    lb = scorer.score(ds.images[np.array(look_rows)], held_prompts, [styles[i] for i in held_rows])
    report["held_out"]["lookup_baseline"] = {**_topk(lb["rank"]),
                                             "style_acc": float(lb["style_ok"].mean())}
    # copying: nearest training image (premultiplied pixels, L2)
    train_idx = np.flatnonzero(~held)
    train_x = _premul(ds.images[train_idx])
    def nearest(x_u8):
        q = _premul(x_u8)
        d = torch.cdist(torch.from_numpy(q), torch.from_numpy(train_x))
        v, j = d.min(1)
        return v.numpy() / math.sqrt(q.shape[1]), train_idx[j.numpy()]
    d_gen, nn_gen = nearest(gens["held_out"])
    d_real, _ = nearest(ds.images[held_rows])
    report["held_out"]["nearest_train_rms"] = {"generated_median": float(np.median(d_gen)),
                                               "real_median": float(np.median(d_real))}
    if copies:
        k = min(12, len(held_rows))
        pick = np.argsort(d_gen)[:k]   # the closest ones: where copying would show
        save_grid(copies, [("generated", gens["held_out"][pick]),
                           ("nearest train", ds.images[nn_gen[pick]]),
                           ("real (held out)", ds.images[held_rows[pick]])],
                  [held_prompts[p][:12] for p in pick])
    if grid:
        held_caps = sorted({ds.texts[i] for i in np.flatnonzero(held)})
        pick_held = [held_caps[int(j)] for j in np.linspace(0, len(held_caps) - 1, 6)]
        seen_set = {ds.texts[i] for i in np.flatnonzero(~held)}
        prompts = ([p for p in GRID_SEEN if p in seen_set] + pick_held + GRID_FREE)
        rows = []
        for p in prompts:
            ims = generate_pairs(ckpt, [p] * len(classes), list(range(len(classes))),
                                 [seed] * len(classes), steps, guidance)
            tag = "held-out" if p in pick_held else ("free" if p in GRID_FREE else "seen")
            rows.append((f"{p} ({tag})", ims))
        save_grid(grid, rows, classes)
    report["seconds"] = time.time() - t0
    return report


def core_cost(ckpt) -> dict:
    """Parameters of the LRF core (the text encoder excluded) and its FLOPs for one image per
    step: one core call for a guidance-distilled student, the guided pair for a teacher."""
    from torch.utils.flop_counter import FlopCounterMode

    from lrf.models.lrf import count_parameters

    cfg, m = ckpt.config, ckpt.model
    s = cfg.latent_size
    kw = {"text": torch.zeros(1, cfg.text_dim)} if cfg.text_dim else {}
    if cfg.text_attention:
        kw.update(tokens=torch.zeros(1, 8, cfg.text_dim), token_mask=torch.ones(1, 8, dtype=torch.long))
    extra = ({"guidance": torch.ones(1), "step": torch.ones(1)} if cfg.guidance_embed else {})
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(torch.zeros(1, cfg.latent_channels, s, s), torch.full((1,), 0.5),
          torch.zeros(1, dtype=torch.long), **extra, **kw)
    calls = 1 if cfg.guidance_embed else 2
    return {"parameters": count_parameters(m), "gflops_per_call": fc.get_total_flops() / 1e9,
            "core_calls_per_step": calls,
            "gflops_per_step": calls * fc.get_total_flops() / 1e9}


def _premul(images_u8: np.ndarray) -> np.ndarray:
    x = images_u8.astype(np.float32) / 255
    x[..., :3] *= x[..., 3:4]
    return x.reshape(len(x), -1)
