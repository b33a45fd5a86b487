"""Every console script fails the same way (lrf/cli.py): one stderr line, no traceback, exit 2
for bad input, 1 for a bug, 130 for Ctrl-C; outputs are atomic; third-party start-up noise is
silenced at import without hiding anything else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrf import cli

SCRIPTS = ["lrf.generate", "lrf.training.cli", "lrf.training.evaluate", "lrf.exporter.cli",
           "lrf.benchmarks.cli"]


def _run(fn, capsys, argv=None):
    code = cli.run("prog", fn, argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("exc,status", [
    (ValueError("bad\nvalue"), 2), (FileNotFoundError("no such"), 2), (MemoryError(), 2),
    (RecursionError(), 2), (cli.CLIError("custom", 3), 3), (KeyError("x"), 1),
    (TypeError("boom"), 1), (KeyboardInterrupt(), 130)])
def test_every_exception_is_one_line(capsys, exc, status):
    def fn(argv):
        raise exc
    code, err = _run(fn, capsys)
    assert code == status
    assert len(err.splitlines()) == 1 and err.startswith("prog: ") and "Traceback" not in err
    if status == 1:
        assert f"internal error: {type(exc).__name__}" in err


def test_system_exit_passes_through(capsys):
    assert cli.run("prog", lambda a: sys.exit(0)) == 0
    assert cli.run("prog", lambda a: sys.exit(2)) == 2
    assert cli.run("prog", lambda a: 0) == 0 and cli.run("prog", lambda a: None) == 0


def test_hostile_text_cannot_drive_the_terminal():
    line = cli.one_line("class \x1b[2J\u202eevil\r\nnext " + "x" * 5000)
    assert "\x1b" not in line and "\u202e" not in line and "\n" not in line and "\r" not in line
    assert "\\x1b" in line and len(line) <= cli.MAX_LINE


@pytest.mark.parametrize("module", SCRIPTS)
def test_scripts_use_the_runner(module):
    import importlib

    main = importlib.import_module(module).main
    assert hasattr(main, "unwrapped"), f"{module}.main is not wrapped by lrf.cli.entry"


def test_atomic_output_refuses_a_folder_and_leaves_nothing(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory") as e:
        with cli.atomic_output(tmp_path / "d"):
            pass
    assert cli._TMP_TAG not in str(e.value)
    with pytest.raises(RuntimeError):
        with cli.atomic_output(tmp_path / "x.png") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    with cli.atomic_output(tmp_path / "x.png") as tmp:
        tmp.write_bytes(b"whole")
    assert (tmp_path / "x.png").read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "x.png"]


def test_atomic_output_sweeps_a_killed_runs_temporary(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".x.png{cli._TMP_TAG}{dead}.png"
    stale.write_bytes(b"left by a killed run")
    with cli.atomic_output(tmp_path / "x.png") as tmp:
        tmp.write_bytes(b"new")
    assert not stale.exists() and (tmp_path / "x.png").read_bytes() == b"new"


def test_generate_out_directory_fails_before_work(tmp_path, capsys):
    from lrf.generate import main

    (tmp_path / "d").mkdir()
    code = main(["--class", "cat", "--out", str(tmp_path / "d"), "--checkpoint",
                 str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "is a directory" in err
    assert cli._TMP_TAG not in err and ".tmp" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["d"] and not any((tmp_path / "d").iterdir())


_SLEEPER = """
import sys, time
from lrf.cli import entry
@entry("lrf-sleep")
def main(argv=None):
    try:
        print("ready", flush=True)
        time.sleep(60)
    finally:
        time.sleep(0.3)   # cleanup, during which a second Ctrl-C must not interrupt it
        print("cleaned", flush=True)
sys.exit(main())
"""


@pytest.mark.parametrize("sig,status,word,twice", [(signal.SIGINT, 130, "interrupted", False),
                                                  (signal.SIGINT, 130, "interrupted", True),
                                                  (signal.SIGTERM, 143, "terminated", False)])
def test_signal_is_one_line_and_cleanup_completes(sig, status, word, twice):
    p = subprocess.Popen([sys.executable, "-c", _SLEEPER], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(sig)
    if twice:
        time.sleep(0.1)
        p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == status
    assert err.splitlines() == [f"lrf-sleep: {word}"]
    assert "cleaned" in out


def test_third_party_start_up_noise_is_silenced_ours_is_not():
    code = ("import logging, warnings, lrf.models.reference\n"
            "logging.getLogger('torchao').warning('torchao: something else')\n"
            "logging.getLogger('torch.utils._pytree').warning('pytree: something else')\n"
            "warnings.warn('lrf: our own warning')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=Path(__file__).parent, timeout=300)
    assert r.returncode == 0, r.stderr
    for noise in ("Failed to load", "Unable to import `torchao`", "register_constant"):
        assert noise not in r.stderr
    for ours in ("torchao: something else", "pytree: something else", "lrf: our own warning"):
        assert ours in r.stderr


def test_ctrl_c_while_a_console_script_imports_torch(tmp_path):
    """The console script itself (not main()): Ctrl-C while torch is being imported (seconds,
    after lrf/__init__ ran) is one line and exit 130. Python's own start-up before any lrf code
    runs is out of reach, so the signal is sent once torch's library is mapped."""
    script = Path(sys.executable).parent / "lrf-generate"
    if not script.is_file() or not Path("/proc/self/maps").exists():
        pytest.skip("needs the installed lrf-generate console script and Linux /proc")
    p = subprocess.Popen([str(script), "--checkpoint", str(tmp_path / "none"), "--class", "cat",
                          "--out", str(tmp_path / "x.png")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        try:
            if "libtorch" in Path(f"/proc/{p.pid}/maps").read_text():
                break
        except OSError:
            pass
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    if p.returncode == 2:  # it reached the missing-checkpoint error before the signal
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        return
    assert p.returncode == 130 and err.splitlines() == ["lrf-generate: interrupted"]
    assert list(tmp_path.iterdir()) == []
