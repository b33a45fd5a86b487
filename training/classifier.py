"""A small CIFAR-10 classifier (ResNet-9 at half width) used only to *measure* generated images:
class fidelity (fraction classified as their conditioning class) and a Frechet distance between
its penultimate features of generated and real images.

We train it ourselves on the real train split (no downloaded weights); its weights ship in
``models/weights/classifier/``.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

from lrf.models.classifier import CLASSIFIER_FILE, WIDTHS, SmallResNet, accuracy
from lrf.training.common import EpochBatches
from lrf.training.data import load_image_folder, to_tensor_range
from lrf.training.loop import TrainLoop


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
    """Train on ``data``'s train split; resumable from ``OUT/classifier_state.pt`` (only
    ``epochs`` may change). Writes ``OUT/classifier.safetensors`` at the end; a run stopped by
    SIGTERM returns ``{"stopped": True, ...}`` without one."""
    from safetensors.torch import save_file

    if min(epochs, batch_size) < 1 or not lr > 0:
        raise ValueError(f"classifier: epochs, batch_size and lr must be positive, got "
                         f"{epochs}, {batch_size}, {lr}")
    torch.manual_seed(seed)
    train = load_image_folder(data, "train", limit_per_class=limit_per_class)
    test = load_image_folder(data, "test", limit_per_class=limit_per_class)
    model = SmallResNet().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    x_all = to_tensor_range(train.images)
    y_all = torch.from_numpy(train.labels)
    batches = EpochBatches(len(x_all), batch_size, seed)
    config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
              "limit_per_class": limit_per_class}
    # one epoch of warm-up, then cosine to zero
    loop = TrainLoop(out_dir, "classifier", model, opt, batches.per_epoch * epochs, config,
                     warmup=batches.per_epoch, length_key="epochs", log=log)

    def step_fn(step: int) -> dict:
        idx, g = batches(step)
        x = _augment(x_all[idx], g).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y_all[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    res = loop.run(step_fn, lambda step: {"test_acc": accuracy(model, test.images, test.labels)},
                   eval_every=batches.per_epoch, title="classifier: cross-entropy")
    if res["stopped"]:
        log(f"stopped at step {res['step']}; rerun the same command to resume")
        return res
    model = model.to(memory_format=torch.contiguous_format).eval()
    acc = accuracy(model, test.images, test.labels)
    meta = {"format": "lrf-classifier/1", "widths": json.dumps(list(WIDTHS)),
            "classes": json.dumps(list(train.classes)), "test_accuracy": f"{acc:.4f}",
            "epochs": str(epochs), "train_seconds": f"{loop.seconds:.0f}"}
    path = os.path.join(out_dir, CLASSIFIER_FILE)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path + ".tmp", metadata=meta)
    os.replace(path + ".tmp", path)
    return {"test_accuracy": acc, **res}
