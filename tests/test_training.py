"""Training on tiny subsets: data reading, Stage 1, the latent cache, Stage 2 resume and DDP."""

import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from lrf.training.data import load_image_folder


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A 3-class image folder (dir and .tar.gz forms) with 8 train / 2 test images per class."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 2)):
        for c, name in enumerate(["cat", "dog", "ship"]):
            d = root / "set" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = np.full((32, 32, 3), 40 + 80 * c, np.uint8) + rng.integers(0, 30, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(d / f"{i:04d}.png")
    with tarfile.open(root / "set.tar.gz", "w:gz") as tar:
        tar.add(root / "set", arcname="set")
    return root


def test_dir_and_tar_give_the_same_images(tiny_data):
    a = load_image_folder(str(tiny_data / "set"), "train")
    b = load_image_folder(str(tiny_data / "set.tar.gz"), "train")
    assert a.classes == b.classes == ("cat", "dog", "ship")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert a.images.shape == (24, 32, 32, 3) and list(np.bincount(a.labels)) == [8, 8, 8]


def test_real_cifar_archive_is_read_in_place(cifar_tar):
    s = load_image_folder(cifar_tar, "test", limit_per_class=3)
    assert s.images.shape == (30, 32, 32, 3) and s.classes[3] == "cat"


def test_data_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_image_folder(str(tmp_path / "empty"))


def test_ae_trains_and_writes_a_loadable_codec(tiny_data, tmp_path):
    from lrf.models.codec import Codec
    from lrf.training.cli import main

    out = tmp_path / "ae"
    assert main(["ae", "--data", str(tiny_data / "set.tar.gz"), "--out", str(out),
                 "--epochs", "2", "--batch-size", "8", "--lr", "3e-3"]) == 0
    recs = [__import__("json").loads(l) for l in open(out / "ae_log.jsonl")]
    vals = [r["val_mse_2k"] for r in recs if "val_mse_2k" in r]
    assert len(vals) == 2 and all(np.isfinite(vals))
    # a resume may change --epochs only
    assert main(["ae", "--data", str(tiny_data / "set.tar.gz"), "--out", str(out),
                 "--epochs", "2", "--batch-size", "8", "--lr", "1e-3"]) == 2
    assert main(["ae", "--data", str(tiny_data / "set.tar.gz"), "--out", str(out),
                 "--epochs", "1", "--batch-size", "8", "--lr", "3e-3"]) == 2
    codec = Codec.from_pretrained(str(out / "codec.safetensors"))
    assert codec.latent_std.min() > 0
    # cache: normalised latents have ~zero mean / unit std per channel over the train set
    cache = tmp_path / "cache.safetensors"
    assert main(["cache", "--codec", str(out), "--data", str(tiny_data / "set"),
                 "--out", str(cache)]) == 0
    c = load_file(cache)
    assert c["latents"].shape == (48, 4, 4, 4) and c["labels"].shape == (48,)
    torch.testing.assert_close(c["latents"].mean((0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(c["latents"].std((0, 2, 3)), torch.ones(4), atol=1e-3, rtol=0)


def test_classifier_trains_resumes_and_writes_its_weights(tiny_data, tmp_path):
    from safetensors import safe_open

    from lrf.training.classifier import train_classifier

    data, out = str(tiny_data / "set"), str(tmp_path / "clf")
    res = train_classifier(data, out, epochs=2, batch_size=8, log=lambda *_: None)
    accs = [r["test_acc"] for r in map(__import__("json").loads, open(tmp_path / "clf" / "classifier_log.jsonl"))
            if "test_acc" in r]
    assert len(accs) == 2 and res["step"] == 6 and 0 <= res["test_accuracy"] <= 1
    with safe_open(str(tmp_path / "clf" / "classifier.safetensors"), framework="pt") as f:
        assert f.metadata()["epochs"] == "2" and f.metadata()["test_accuracy"] == f"{res['test_accuracy']:.4f}"
    msgs = []
    res = train_classifier(data, out, epochs=3, batch_size=8, log=msgs.append)   # extend the run
    assert res["step"] == 9 and any("resumed" in m and "step 6/9" in m for m in msgs)
    with pytest.raises(ValueError, match=r"other options \(lr\)"):
        train_classifier(data, out, epochs=3, batch_size=8, lr=1e-3, log=lambda *_: None)


@pytest.fixture(scope="module")
def flow_inputs(tmp_path_factory):
    from lrf.models.codec import Codec
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("flow")
    Codec.new(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4).save_file(
        str(d / "codec.safetensors"))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 10
    patterns = torch.randn(10, 4, 4, 4, generator=g)  # learnable: each class is one pattern
    save_file({"latents": patterns[labels] + 0.1 * torch.randn(64, 4, 4, 4, generator=g),
               "labels": labels}, str(d / "cache.safetensors"),
              metadata={"classes": __import__("json").dumps([str(i) for i in range(10)])})
    return d


def _train(d, out, epochs=3, **kw):
    from lrf.training.flow import FlowConfig, train_flow

    cfg = FlowConfig(preset="tiny", epochs=epochs, batch_size=16, warmup=4, **kw)
    return train_flow(str(d / "cache.safetensors"), str(d / "codec.safetensors"), str(out), cfg,
                      log=lambda *_: None)


def test_flow_training_lowers_loss_and_writes_outputs(flow_inputs, tmp_path):
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.flow import flow_loss
    from lrf.training.flow import load_cache

    res = _train(flow_inputs, tmp_path / "run", epochs=12, lr=1e-2, bf16=False)
    z, y, _ = load_cache(str(flow_inputs / "cache.safetensors"))
    g = torch.Generator().manual_seed(1)
    t, eps = torch.rand(64, generator=g).clamp(0.05, 0.95), torch.randn(z.shape, generator=g)
    untrained = _train(flow_inputs, tmp_path / "zero", epochs=1, lr=1e-12)["model"]
    with torch.no_grad():
        before = flow_loss(untrained.eval(), z, y, t, eps).item()
        after = flow_loss(res["model"].eval(), z, y, t, eps).item()
    assert after < 0.9 * before, (before, after)
    assert (tmp_path / "run" / "flow_loss.png").stat().st_size > 1000
    ck = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert ck.training["epochs_done"] == 12 and ck.classes[3] == "3"


def test_killed_run_resumes_exactly(flow_inputs, tmp_path):
    full = _train(flow_inputs, tmp_path / "full")

    class Killed(Exception):
        pass

    def kill_after_first(epoch):
        if epoch == 1:
            raise Killed  # dies right after epoch 1's state was saved

    with pytest.raises(Killed):
        from lrf.training.flow import FlowConfig, train_flow
        train_flow(str(flow_inputs / "cache.safetensors"), str(flow_inputs / "codec.safetensors"),
                   str(tmp_path / "part"), FlowConfig(preset="tiny", epochs=3, batch_size=16, warmup=4),
                   log=lambda *_: None, on_epoch_end=kill_after_first)
    assert torch.load(tmp_path / "part" / "flow_state.pt", weights_only=True)["step"] == 4  # 64 // 16
    resumed = _train(flow_inputs, tmp_path / "part")
    assert resumed["steps"] == full["steps"]
    for k, v in full["model"].state_dict().items():
        torch.testing.assert_close(resumed["model"].state_dict()[k], v, atol=1e-6, rtol=1e-5)
    assert resumed["ema"].optimization_step == full["ema"].optimization_step == full["steps"]
    for a, b in zip(resumed["ema"].shadow_params, full["ema"].shadow_params, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_resume_refuses_other_options(flow_inputs, tmp_path):
    _train(flow_inputs, tmp_path / "r", epochs=1)
    with pytest.raises(ValueError, match="resume state was made with"):
        _train(flow_inputs, tmp_path / "r", epochs=1, lr=5e-4)


def test_ddp_two_ranks_match_single_process(flow_inputs, tmp_path):
    """torchrun --nproc_per_node 2 (gloo): both ranks train, and the result equals one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["flow", "--cache", str(flow_inputs / "cache.safetensors"),
            "--codec", str(flow_inputs / "codec.safetensors"), "--preset", "tiny",
            "--epochs", "2", "--batch-size", "16", "--no-bf16"]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lrf.training.cli", *args, "--out", str(tmp_path / "ddp")]
    one = [sys.executable, "-m", "lrf.training.cli", *args, "--out", str(tmp_path / "one")]
    for cmd, tag in ((ddp, "on 2 process(es)"), (one, "on 1 process(es)")):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert tag in r.stdout
    a = load_file(tmp_path / "ddp" / "checkpoint" / "lrf.safetensors")
    b = load_file(tmp_path / "one" / "checkpoint" / "lrf.safetensors")
    moved = 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
        moved += int(not torch.equal(a[k], torch.zeros_like(a[k])))
    assert moved > 10  # training changed the (partly zero-initialised) weights
