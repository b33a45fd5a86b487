"""A small CIFAR-10 classifier (ResNet-9 at half width) used only to *measure* generated images:
class fidelity (fraction classified as their conditioning class) and a Frechet distance between
its penultimate features of generated and real images.

We train it ourselves on the real train split (no downloaded weights); its weights ship in
``models/weights/classifier/``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lrf.training.common import append_log, cosine_lr
from lrf.models.classifier import CLASSIFIER_FILE, WIDTHS, SmallResNet, accuracy
from lrf.training.data import load_image_folder, to_tensor_range

def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel reflect padding + horizontal flip, per image."""
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    xp = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx = torch.randint(0, 9, (b,), generator=g)
    dy = torch.randint(0, 9, (b,), generator=g)
    idx = torch.arange(32)
    rows = (dy.view(-1, 1) + idx).view(b, 1, 32, 1).expand(b, x.shape[1], 32, 40)
    xp = xp.gather(2, rows)
    cols = (dx.view(-1, 1) + idx).view(b, 1, 1, 32).expand(b, x.shape[1], 32, 32)
    return xp.gather(3, cols)


def train_classifier(data: str, out_dir: str, epochs: int = 16, batch_size: int = 256,
                     lr: float = 2e-3, seed: int = 0, limit_per_class: int | None = None,
                     log=print) -> dict:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train = load_image_folder(data, "train", limit_per_class=limit_per_class)
    test = load_image_folder(data, "test", limit_per_class=limit_per_class)
    model = SmallResNet().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    x_all = to_tensor_range(train.images)
    y_all = torch.from_numpy(train.labels)
    steps = max(1, len(x_all) // batch_size)
    total, step = steps * epochs, 0
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_all), generator=g)
        for b in tqdm(range(steps), desc=f"classifier epoch {epoch + 1}/{epochs}", mininterval=10,
                      disable=None):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            x = _augment(x_all[idx], g).contiguous(memory_format=torch.channels_last)
            for grp in opt.param_groups:
                grp["lr"] = cosine_lr(step, total, lr, warmup=steps, final_frac=0.0)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x).float(), y_all[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        acc = accuracy(model, test.images, test.labels)
        append_log(os.path.join(out_dir, "classifier_log.jsonl"),
                   {"epoch": epoch + 1, "loss": float(loss.detach()), "test_acc": acc})
        log(f"classifier epoch {epoch + 1}: test accuracy {acc:.4f}")
    model = model.to(memory_format=torch.contiguous_format).eval()
    acc = accuracy(model, test.images, test.labels)
    meta = {"format": "lrf-classifier/1", "widths": json.dumps(list(WIDTHS)),
            "classes": json.dumps(list(train.classes)), "test_accuracy": f"{acc:.4f}",
            "epochs": str(epochs), "train_seconds": f"{time.time() - t0:.0f}"}
    path = os.path.join(out_dir, CLASSIFIER_FILE)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path + ".tmp", metadata=meta)
    os.replace(path + ".tmp", path)
    return {"test_accuracy": acc, "seconds": time.time() - t0}


