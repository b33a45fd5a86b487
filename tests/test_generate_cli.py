"""lrf-generate on the PyTorch path: outputs and one-line errors with exit 2."""

import numpy as np
import pytest
from PIL import Image

from lrf.models.cli import main


def test_single_image_and_grid(tiny_checkpoint, tmp_path, capsys):
    out, grid = tmp_path / "cat.png", tmp_path / "grid.png"
    rc = main(["--checkpoint", tiny_checkpoint, "--class", "cat", "--seed", "3", "--steps", "4",
               "--out", str(out), "--grid", str(grid), "--per-class", "2"])
    assert rc == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (32, 32, 3)
    g = np.asarray(Image.open(grid))
    assert g.shape == (10 * 32, 2 * 32, 3)
    # row 3 (cat), seed 1 != seed 0: the grid really holds different samples
    assert not np.array_equal(g[96:128, :32], g[96:128, 32:])
    # same (class, seed) again -> identical bytes
    rc = main(["--checkpoint", tiny_checkpoint, "--class", "3", "--seed", "3", "--steps", "4",
               "--out", str(tmp_path / "again.png")])
    assert rc == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), img)


@pytest.mark.parametrize("args,match", [
    (["--class", "unicorn"], "unknown class 'unicorn'"),
    (["--class", "cat", "--steps", "0"], "--steps must be in [1, 1000]"),
    (["--class", "cat", "--guidance", "nan"], "must be finite"),
    (["--class", "cat", "--guidance", "inf"], "must be finite"),
])
def test_errors_are_one_line_exit_2(tiny_checkpoint, tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as e:
        code = main(["--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "x.png"), *args])
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and err.startswith("lrf-generate: error:")
    assert not (tmp_path / "x.png").exists()


def test_unreadable_checkpoint(tmp_path, capsys):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "lrf.json").write_text("garbage")
    assert main(["--checkpoint", str(tmp_path / "ck"), "--class", "cat",
                 "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks lrf.safetensors" in err and len(err.splitlines()) == 1
