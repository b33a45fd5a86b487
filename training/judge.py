"""The emoji judge: an image-text retrieval model and style classifier, trained on the emoji data
and kept separate from the generator (``lrf-train judge``; ``lrf-eval`` scores with it).

    image (64 px premultiplied RGBA) --small ResNet--> feature [256] --> embedding [256], style [S]
    caption --frozen MiniLM (pooled, 384)--> MLP --> embedding [256]

Training scores every image against the whole caption table (all distinct captions, held-out
ones included: the judge must know every name it is asked about), a softmax over captions with
a learned temperature, plus the style cross-entropy. Retrieval at evaluation ranks the prompt
among all captions by cosine similarity. Augmentation (shift, scale, blur, noise) keeps it from
keying on pixel-exact rendering, so slightly soft generated images are judged on content.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrf.training.captioned import is_held_out, load_captioned, premultiplied
from lrf.training.loop import TrainLoop

JUDGE_FORMAT = "lrf-judge/1"


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Judge(nn.Module):
    def __init__(self, num_styles: int, text_dim: int = 384, dim: int = 256, width: int = 32):
        super().__init__()
        w = width
        self.trunk = nn.Sequential(nn.Conv2d(4, w, 4, 2, 1), nn.ReLU(inplace=True),  # 1/2 size
                                   _block(w, w, 1), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2),
                                   _block(4 * w, 8 * w, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.img_proj = nn.Linear(8 * w, dim)
        self.style_head = nn.Linear(8 * w, num_styles)
        self.txt_proj = nn.Sequential(nn.Linear(text_dim, 512), nn.GELU(), nn.Linear(512, dim))
        self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
        self.num_styles, self.text_dim, self.dim, self.width = num_styles, text_dim, dim, width

    def image_features(self, x: torch.Tensor):
        h = self.trunk(x)
        return F.normalize(self.img_proj(h), dim=-1), self.style_head(h)

    def text_features(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.txt_proj(pooled), dim=-1)

    def save_file(self, path: str, captions: list[str], styles: list[str], meta: dict) -> None:
        from safetensors.torch import save_file

        from lrf.cli import atomic_output

        info = {"format": JUDGE_FORMAT, "captions": json.dumps(captions),
                "styles": json.dumps(styles),
                "arch": json.dumps({"num_styles": self.num_styles, "text_dim": self.text_dim,
                                    "dim": self.dim, "width": self.width}), **meta}
        sd = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        with atomic_output(path) as tmp:
            save_file(sd, str(tmp), metadata=info)

    @classmethod
    def load_file(cls, path: str) -> tuple["Judge", list[str], list[str]]:
        from safetensors import safe_open

        from lrf.models.codec import _load_strict

        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ValueError(f"judge {path!r}: not a readable safetensors file ({e})") from None
        if meta.get("format") != JUDGE_FORMAT:
            raise ValueError(f"judge {path!r}: format {meta.get('format')!r}, expected "
                             f"{JUDGE_FORMAT!r}")
        judge = cls(**json.loads(meta["arch"]))
        _load_strict(judge, sd, where=path)
        return judge.eval(), json.loads(meta["captions"]), json.loads(meta["styles"])


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shift/scale (affine), blur and noise, on premultiplied [-1, 1] NCHW."""
    b = x.shape[0]
    s = 1 + (torch.rand(b, generator=g) - 0.5) * 0.2                    # scale 0.9-1.1
    tx, ty = ((torch.rand(2, b, generator=g) - 0.5) * 0.12)             # +-6% shift
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = s, s, tx, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    blur = torch.rand(b, generator=g) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None]) / 16
        y[blur] = F.conv2d(F.pad(y[blur], (1, 1, 1, 1), mode="replicate"),
                           k.expand(4, 1, 3, 3).contiguous(), groups=4)
    noise = (torch.rand(b, 1, 1, 1, generator=g) < 0.3) * 0.05
    return y + noise * torch.randn(y.shape, generator=g)


@dataclass(frozen=True)
class JudgeConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 200
    style_weight: float = 0.5
    seed: int = 0
    size: int | None = None      # None: as prepared (64 px for a folder or archive)
    val_fraction: float = 0.05   # images (not captions) kept out, to measure the judge itself


def train_judge(data: str, out_dir: str, cfg: JudgeConfig, log=print) -> dict:
    from lrf.models.text import PromptEncoder

    torch.manual_seed(cfg.seed)
    ds = load_captioned(data, cfg.size)
    captions = sorted(set(ds.texts))
    cap_index = {c: i for i, c in enumerate(captions)}
    y_cap = torch.tensor([cap_index[t] for t in ds.texts])
    y_style, styles = ds.labels("style") if "style" in ds.columns else (
        np.zeros(len(ds), np.int64), ["default"])
    y_style = torch.from_numpy(y_style)
    log(f"judge: {len(ds)} images, {len(captions)} captions, styles {styles}")
    _, _, pooled = PromptEncoder().encode(captions)
    judge = Judge(len(styles))
    opt = torch.optim.AdamW(judge.parameters(), lr=cfg.lr, weight_decay=0.05)
    loop = TrainLoop(out_dir, "judge", judge, opt, cfg.steps, asdict(cfg), warmup=cfg.warmup,
                     log=log)
    x_all = ds.images
    val = np.array([is_held_out(f, cfg.val_fraction) for f in ds.file_names], dtype=bool)
    train_rows = torch.from_numpy(np.flatnonzero(~val))
    ev = torch.from_numpy(np.flatnonzero(val))
    log(f"judge: {len(train_rows)} training images, {len(ev)} validation images")

    def step_fn(step: int) -> dict:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = train_rows[torch.randint(len(train_rows), (cfg.batch_size,), generator=g)]
        x = augment(premultiplied(x_all[idx.numpy()]), g)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img, style_logits = judge.image_features(x)
            txt = judge.text_features(pooled)
        logits = judge.logit_scale.exp().clamp(max=100) * img.float() @ txt.float().T
        l_cap = F.cross_entropy(logits, y_cap[idx])
        l_sty = F.cross_entropy(style_logits.float(), y_style[idx])
        loss = l_cap + cfg.style_weight * l_sty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss), "caption_ce": float(l_cap), "style_ce": float(l_sty)}

    @torch.no_grad()
    def eval_fn(step: int) -> dict:
        img, st = judge.image_features(premultiplied(x_all[ev.numpy()]))
        sims = img @ judge.text_features(pooled).T
        rank = (sims > sims.gather(1, y_cap[ev][:, None])).sum(1)
        return {"val_top1": float((rank < 1).float().mean()),
                "val_top5": float((rank < 5).float().mean()),
                "style_acc": float((st.argmax(1) == y_style[ev]).float().mean())}

    def export_fn(lp: TrainLoop) -> None:
        judge.eval()
        judge.save_file(os.path.join(out_dir, "judge.safetensors"), captions, styles,
                        {"train_config": json.dumps(asdict(cfg)), "steps": str(lp.step)})
        judge.train()

    res = loop.run(step_fn, eval_fn, eval_every=max(1, cfg.steps // 6), export_fn=export_fn,
                   title="emoji judge: loss")
    return res


class JudgeScorer:
    """Scores images with a trained judge: retrieval rank of a caption among all captions,
    style prediction, and features (for the distribution distance)."""

    def __init__(self, path: str):
        from lrf.models.text import PromptEncoder

        self.judge, self.captions, self.styles = Judge.load_file(path)
        self.index = {c: i for i, c in enumerate(self.captions)}
        self.encoder = PromptEncoder()
        with torch.no_grad():
            self.txt = self.judge.text_features(self.encoder.encode(self.captions)[2])

    @torch.no_grad()
    def features(self, images_u8: np.ndarray, batch: int = 256):
        feats, styles, trunk = [], [], []
        for i in range(0, len(images_u8), batch):
            x = premultiplied(images_u8[i:i + batch])
            h = self.judge.trunk(x)
            trunk.append(h)
            feats.append(F.normalize(self.judge.img_proj(h), dim=-1))
            styles.append(self.judge.style_head(h))
        return torch.cat(feats), torch.cat(styles), torch.cat(trunk)

    @torch.no_grad()
    def score(self, images_u8: np.ndarray, prompts: list[str], styles: list[str]) -> dict:
        """Per image: the prompt's rank among all captions (0 = top-1) and style correctness."""
        missing = sorted({p for p in prompts if p not in self.index})
        if missing:
            raise ValueError(f"the judge does not know captions {missing[:3]}")
        feats, style_logits, trunk = self.features(images_u8)
        sims = feats @ self.txt.T
        target = torch.tensor([self.index[p] for p in prompts])
        rank = (sims > sims.gather(1, target[:, None])).sum(1)
        sidx = torch.tensor([self.styles.index(s) for s in styles])
        return {"rank": rank.numpy(), "style_ok": (style_logits.argmax(1) == sidx).numpy(),
                "features": trunk.numpy()}
