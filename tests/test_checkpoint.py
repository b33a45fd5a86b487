"""Checkpoint round trip and every rejection, each naming what is wrong."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from lrf.models.checkpoint import load_checkpoint


def _copy(src, tmp_path):
    dst = tmp_path / "ck"
    shutil.copytree(src, dst)
    return dst


def test_round_trip_is_exact(tiny_checkpoint, tmp_path):
    from lrf.models.checkpoint import save_checkpoint

    a = load_checkpoint(tiny_checkpoint)
    save_checkpoint(tmp_path / "again", a.model, a.codec, a.classes, training={"note": "x"})
    b = load_checkpoint(tmp_path / "again")
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    x = torch.randn(2, 4, 4, 4)
    t, y = torch.tensor([0.3, 0.7]), torch.tensor([1, 10])
    with torch.no_grad():
        assert torch.equal(a.model(x, t, y), b.model(x, t, y))
    assert b.classes == a.classes and b.training == {"note": "x"}
    assert not b.model.training
    assert [p.name for p in (tmp_path).iterdir()] == ["again"]  # no temp folder left behind


def _edit_weights(ck, fn):
    sd = load_file(ck / "lrf.safetensors")
    from safetensors import safe_open
    with safe_open(str(ck / "lrf.safetensors"), "pt") as f:
        meta = f.metadata()
    sd, meta = fn(sd, meta)
    save_file(sd, ck / "lrf.safetensors", metadata=meta)


@pytest.mark.parametrize("edit,match", [
    (lambda sd, m: ({k: v for k, v in sd.items() if k != "out.bias"}, m), "missing key 'out.bias'"),
    (lambda sd, m: ({**sd, "extra.weight": torch.zeros(1)}, m), "unexpected key 'extra.weight'"),
    (lambda sd, m: ({**sd, "out.bias": torch.zeros(7)}, m), r"'out.bias' has shape \(7,\)"),
    (lambda sd, m: (sd, {**m, "config": json.dumps({**json.loads(m["config"]), "dim": 64})}),
     "config mismatch for key 'dim'"),
])
def test_weight_rejections(tiny_checkpoint, tmp_path, edit, match):
    ck = _copy(tiny_checkpoint, tmp_path)
    _edit_weights(ck, edit)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(ck)


@pytest.mark.parametrize("edit,match", [
    (lambda m: {**m, "format": "other/9"}, "format 'other/9'"),
    (lambda m: {**m, "config": {**m["config"], "bogus": 1}}, "unknown key 'bogus'"),
    (lambda m: {**m, "codec": {**m["codec"], "latent_std": [9.0, 9.0, 9.0, 9.0]}},
     "codec stats mismatch for key 'latent_std'"),
    (lambda m: {**m, "classes": ["a", "b"]}, "2 class names"),
])
def test_manifest_rejections(tiny_checkpoint, tmp_path, edit, match):
    ck = _copy(tiny_checkpoint, tmp_path)
    m = json.loads((ck / "lrf.json").read_text())
    (ck / "lrf.json").write_text(json.dumps(edit(m)))
    with pytest.raises(ValueError, match=match):
        load_checkpoint(ck)


def test_missing_and_unreadable(tiny_checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_checkpoint(tmp_path / "nothing")
    ck = _copy(tiny_checkpoint, tmp_path)
    (ck / "codec.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="lacks codec.safetensors"):
        load_checkpoint(ck)
    ck2 = tmp_path / "ck2"
    shutil.copytree(tiny_checkpoint, ck2)
    (ck2 / "lrf.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_checkpoint(ck2)
    (ck2 / "lrf.json").write_text((ck / "lrf.json").read_text())
    (ck2 / "lrf.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_checkpoint(ck2)


def test_class_index(tiny_checkpoint):
    ck = load_checkpoint(tiny_checkpoint)
    assert ck.class_index("cat") == 3 and ck.class_index(9) == 9 and ck.class_index("4") == 4
    with pytest.raises(ValueError, match="unknown class 'unicorn'; valid: airplane"):
        ck.class_index("unicorn")
    with pytest.raises(ValueError):
        ck.class_index(10)
