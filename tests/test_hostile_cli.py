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

SCRIPTS = ["lrf.models.cli", "lrf.training.cli", "lrf.training.evaluate", "lrf.exporter.cli",
           "lrf.benchmarks.cli"]


@pytest.fixture(autouse=True)
def _sigint_not_ignored():
    """Tests send SIGINT; a suite started in the background (`pytest &` in a script) inherits
    it ignored, and ignored signals stay ignored (lrf.cli._signals, like Python itself)."""
    old = signal.getsignal(signal.SIGINT)
    if old is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _default_sigint():  # preexec_fn of the subprocesses the tests interrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
    from lrf.models.cli import main

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
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint)
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
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint)
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


# ------------------------------------------------------------- interrupts lost by third parties
def _interrupt_me():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the handler raises before this returns


def _rewrapped():
    """What pybind11 does to a Ctrl-C during an extension module's init (onnxruntime, torch):
    ImportError('initialization failed') from the KeyboardInterrupt."""
    try:
        _interrupt_me()
    except KeyboardInterrupt as e:
        raise ImportError("initialization failed") from e


def test_interrupt_rewrapped_by_an_extension_is_still_an_interrupt(capsys):
    code, err = _run(lambda argv: _rewrapped(), capsys)
    assert code == 130 and err.splitlines() == ["prog: interrupted"]


def test_interrupt_swallowed_by_an_optional_import_still_ends_the_run(capsys, monkeypatch):
    """``try: import ext except ImportError: ext = None`` around the rewrapped interrupt: the run
    must not go on for minutes; the interrupt is raised again."""
    monkeypatch.setattr(cli, "RECHECK_S", 0.2)
    reached = []

    def fn(argv):
        try:
            _rewrapped()
        except ImportError:
            pass  # "optional extension not available"
        reached.append("work")
        t0 = time.time()
        while time.time() - t0 < 30:  # the long work that follows
            sum(range(1000))
        reached.append("done")
        return 0

    t0 = time.time()
    code, err = _run(fn, capsys)
    assert code == 130 and err.splitlines() == ["prog: interrupted"]
    assert reached == ["work"] and time.time() - t0 < 10
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)


def test_interrupt_raised_again_never_cuts_the_cleanup(capsys, monkeypatch):
    monkeypatch.setattr(cli, "RECHECK_S", 0.05)
    cleaned = []

    def fn(argv):
        try:
            _interrupt_me()
        finally:
            t0 = time.time()
            while time.time() - t0 < 0.5:  # cleanup lasting ten rechecks
                sum(range(1000))
            cleaned.append(True)

    code, err = _run(fn, capsys)
    assert code == 130 and err.splitlines() == ["prog: interrupted"] and cleaned == [True]


def test_interrupt_during_a_run_that_then_finishes_is_still_reported(capsys):
    def fn(argv):
        try:
            _interrupt_me()
        except BaseException:  # noqa: BLE001 - third-party code that swallows everything
            pass
        return 0

    code, err = _run(fn, capsys)
    assert code == 130 and err.splitlines() == ["prog: interrupted"]


_STARTING = """
import sys, time
sys.argv[0] = "/somewhere/bin/lrf-fake"
from lrf.cli import guard_startup
guard_startup("lrf-fake")
print("ready", flush=True)
time.sleep(60)  # the heavy imports of a console script
"""


@pytest.mark.parametrize("sig,status,word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated")])
def test_signal_while_a_console_script_starts(sig, status, word):
    p = subprocess.Popen([sys.executable, "-c", _STARTING], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == status and err.splitlines() == [f"lrf-fake: {word}"]


def test_importing_the_scripts_changes_no_signal_handling():
    """A program that imports lrf or a console script's module keeps its own handlers."""
    code = ("import signal\n"
            "before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}\n"
            "import lrf, lrf.models.cli, lrf.training.cli, lrf.exporter.cli\n"
            "after = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}\n"
            "assert before == after, (before, after)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).parent, timeout=300)
    assert r.returncode == 0, r.stderr


_TEARDOWN = """
import sys, time
sys.argv[0] = "/somewhere/bin/lrf-fake"
from lrf.cli import entry, guard_startup
guard_startup("lrf-fake")


class Heavy:  # an extension whose unloading takes a while (torch, onnxruntime)
    def __del__(self):
        print("tearing down", flush=True)
        time.sleep(2)


heavy = Heavy()


@entry("lrf-fake")
def main(argv=None):
    print("done", flush=True)
    return 0


sys.exit(main())
"""


def test_signal_after_the_work_while_python_tears_down_keeps_the_status():
    """CPython resets signals to the default action before it unloads modules; a Ctrl-C then
    must not kill a finished run (status -2, no line)."""
    p = subprocess.Popen([sys.executable, "-c", _TEARDOWN], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint)
    assert p.stdout.readline().strip() == "done"
    assert p.stdout.readline().strip() == "tearing down"
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and err == ""


# ------------------------------------------------------------- LRF_DEBUG, broken pipes, CLIs
@pytest.mark.parametrize("value,shown", [("1", True), ("yes", True), ("0", False), ("", False),
                                         ("false", False), ("maybe\n\x1b[2J", False)])
def test_lrf_debug_means_what_it_says(capsys, monkeypatch, value, shown):
    monkeypatch.setenv("LRF_DEBUG", value)

    def fn(argv):
        raise ValueError("bad input")
    code, err = _run(fn, capsys)
    assert code == 2 and err.splitlines()[-1] == "prog: error: bad input"
    assert ("Traceback" in err) is shown


def test_broken_stdout_pipe_is_one_clear_line(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_silence_stdout", lambda: None)  # pytest's capture is no fd

    def fn(argv):
        raise BrokenPipeError(32, "Broken pipe")
    code, err = _run(fn, capsys)
    assert code == 2 and err.splitlines() == [
        "prog: error: standard output was closed (broken pipe) before the run finished; files "
        "it wrote before that are complete"]


def test_generate_into_a_closed_pipe(tmp_path):
    """The console script piped into a reader that is gone: one line, exit 2 (not 0, not a
    second 'Exception ignored' line at exit)."""
    script = Path(sys.executable).parent / "lrf-generate"
    if not script.is_file():
        pytest.skip("needs the installed lrf-generate console script")
    r = subprocess.run(["/bin/bash", "-c", f"set -o pipefail; '{script}' --bundle --class cat "
                        f"--out '{tmp_path / 'x.png'}' --no-progress | true"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "broken pipe" in r.stderr


@pytest.mark.parametrize("module,argv,patch", [
    ("lrf.exporter.cli", ["--check", "somewhere"], ("lrf.exporter.check", "check_bundle")),
    ("lrf.models.cli", ["--bundle", "somewhere", "--class", "cat", "--out", "x.png"],
     ("lrf.models.cli", "_bundle_images")),
])
def test_interrupt_turned_into_an_error_by_a_library_is_one_line(module, argv, patch, capsys,
                                                                   monkeypatch, tmp_path):
    """lrf.exporter.targets turns an ImportError (an interrupted extension init) into a
    ValueError 'needs the package'; the CLI must not print that as an error before the
    interrupt line."""
    import importlib

    monkeypatch.chdir(tmp_path)
    def rewrapped(*a, **k):
        try:
            _rewrapped()
        except ImportError as e:
            raise ValueError("export target 'onnx' needs the Python package onnxruntime") from e
    monkeypatch.setattr(importlib.import_module(patch[0]), patch[1], rewrapped)
    main = importlib.import_module(module).main
    assert main(argv) == 130
    prog = "lrf-export" if "exporter" in module else "lrf-generate"
    assert capsys.readouterr().err.splitlines() == [f"{prog}: interrupted"]


def test_an_ignored_sigint_stays_ignored():
    """`lrf-export ... &` in a script (or nohup) starts with SIGINT ignored, so a Ctrl-C meant
    for the foreground job leaves it running; SIGTERM still stops it with its one line."""
    code = _SLEEPER.replace("time.sleep(60)", "time.sleep(3)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert p.poll() is None
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 143 and err.splitlines() == ["lrf-sleep: terminated"]


@pytest.mark.parametrize("char", ["\u200e", "\u200f", "\u061c", "\ud800", "\udfff", "\x9b",
                                  "\u2066", "\u202e"])
def test_every_bidi_mark_and_lone_surrogate_is_escaped(char):
    """Issue 25: the marks (LRM, RLM, ALM) reorder text too, and a lone surrogate cannot even be
    encoded for the terminal; both are escaped on error lines and success lines alike."""
    from lrf.cli import escape

    for shown in (cli.one_line(f"class a{char}b"), escape(f"class a{char}b")):
        assert char not in shown and f"{ord(char):02x}" in shown
        shown.encode("utf-8")
