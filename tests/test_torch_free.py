"""A runtime-only install (``pip install -e ".[runtime]"``: numpy, pillow, onnxruntime) verifies
and runs bundles, and everything that needs an extra says which one, in one line.

The install is simulated: a ``sitecustomize`` on PYTHONPATH makes importing torch and every
package of the torch/train/export extras raise ModuleNotFoundError in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TURBO_BUNDLE = REPO / "models" / "bundles" / "cifar10-turbo-int8"
# what `pip install -e ".[runtime]"` does not install
NOT_INSTALLED = ("torch", "torchvision", "torchao", "diffusers", "safetensors", "tqdm",
                 "matplotlib", "onnx", "onnxscript", "onnxsim", "coremltools", "executorch")
_BLOCKER = f"""
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_INSTALLED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def _runtime_only(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
        "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600)


def test_the_simulated_install_has_no_torch(tmp_path):
    r = _runtime_only(tmp_path, "import importlib\n"
                                f"for p in {NOT_INSTALLED!r}:\n"
                                "    try:\n        importlib.import_module(p)\n"
                                "    except ImportError:\n        continue\n"
                                "    raise SystemExit(p + ' imported')\n"
                                "import numpy, PIL, onnxruntime\nprint('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_export_check_verifies_a_bundle_without_torch(tmp_path):
    r = _runtime_only(tmp_path, "import sys\nfrom lrf.exporter.cli import main\n"
                                f"rc = main(['--check', {str(TURBO_BUNDLE)!r}])\n"
                                "assert 'torch' not in sys.modules\nsys.exit(rc)")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert "containment and checksums ok" in out[0] and "golden RNG vectors match" in out[1]
    golden = [line for line in out if line.startswith("golden ") and "(bar " in line]
    assert len(golden) >= 10 and any("image_fused: psnr_db" in line for line in golden)
    assert "not re-run" not in r.stdout


@pytest.mark.parametrize("argv", [["--grid", "g.png"], ["--class", "cat", "--out", "c.png"],
                                  ["--checkpoint", "x", "--class", "cat", "--out", "c.png"]])
def test_generate_without_a_bundle_names_the_torch_extra(tmp_path, argv):
    r = _runtime_only(tmp_path, f"import sys\nfrom lrf.models.cli import main\n"
                                f"sys.exit(main({argv!r}))")
    err = r.stderr.splitlines()
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert err[0].startswith("lrf-generate: error: generating without --bundle")
    assert "'torch', which is not installed: pip install -e \".[torch]\"" in err[0]
    assert "internal error" not in err[0] and not list(tmp_path.glob("*.png"))


def test_generate_with_the_bundle_runs_without_torch(tmp_path):
    r = _runtime_only(tmp_path, "import sys\nfrom lrf.models.cli import main\n"
                                "rc = main(['--bundle', '--class', 'cat', '--out', 'c.png', "
                                "'--no-progress'])\nassert 'torch' not in sys.modules\n"
                                "sys.exit(rc)")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_extra_reaching_any_script_is_one_line(monkeypatch):
    """Any console script: an optional package that is not installed is one line naming its
    extra (exit 2); a module missing inside an installed package stays an internal error."""
    from lrf import cli

    monkeypatch.setitem(cli.EXTRAS, "lrf_not_a_package", "train")
    missing = ModuleNotFoundError("No module named 'lrf_not_a_package'", name="lrf_not_a_package")
    assert cli.describe(missing) == ("this needs the Python package 'lrf_not_a_package', which "
                                     "is not installed: pip install -e \".[train]\"", 2)
    broken = ModuleNotFoundError("No module named 'onnxruntime.nope'", name="onnxruntime.nope")
    assert cli.describe(broken)[1] == 1                # onnxruntime is installed: a bug
    other = ModuleNotFoundError("No module named 'left_pad'", name="left_pad")
    assert cli.describe(other)[1] == 1                 # not one of ours


def test_extras_table_matches_pyproject():
    """lrf.cli.EXTRAS names, for each optional package, the extra that lists it."""
    from lrf.cli import EXTRAS, install_hint

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for package, extra in EXTRAS.items():
        names = {req.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()
                 .replace("-", "_") for req in extras[extra]}   # import names use _
        assert package in names, (package, extra, sorted(names))
        assert install_hint(package) == f'pip install -e ".[{extra}]"'


def test_target_backends_table_matches_the_targets():
    from lrf.exporter.targets import (TARGET_BACKENDS, available_targets, get_target,
                                      known_targets)

    assert set(TARGET_BACKENDS) == set(known_targets())
    checked = 0
    for name in available_targets():
        assert get_target(name).backend == TARGET_BACKENDS[name], name
        checked += 1
    assert checked >= 1  # onnx at least, in the test install


# ------------------------------------------------------------------ PNG only
@pytest.mark.parametrize("flag,name,what", [("--out", "x.jpg", "a .jpg name"),
                                            ("--out", "x.JPEG", "a .JPEG name"),
                                            ("--grid", "g.webp", "a .webp name"),
                                            ("--out", "picture", "a name without .png")])
def test_generate_refuses_a_name_that_is_not_png(tmp_path, capsys, flag, name, what):
    from lrf.models.cli import main

    argv = ["--bundle", str(TURBO_BUNDLE), flag, str(tmp_path / name)]
    argv += ["--class", "cat"] if flag == "--out" else []
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("lrf-generate: error:"), err
    assert f"is {what}, but lrf-generate writes PNG only" in err[0]
    assert not any(tmp_path.iterdir())


def test_generate_accepts_an_upper_case_png_suffix(tmp_path):
    from lrf.models.cli import main

    out = tmp_path / "CAT.PNG"
    assert main(["--bundle", str(TURBO_BUNDLE), "--class", "cat", "--out", str(out),
                 "--no-progress"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
