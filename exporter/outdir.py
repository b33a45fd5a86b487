"""Where an export may write: ``--out`` is safe to point anywhere.

- :func:`check_out` accepts a path that does not exist, an empty folder, or an lrf bundle (its
  manifest's ``schema`` says so) holding only the files its manifest lists, each unchanged since
  export (size and sha256). Anything else (a file, a symlink, a folder of someone else's files, a
  bundle the user added files to or edited) is refused with one line saying why.
- :func:`make_temp` makes the export's temporary folder beside ``out`` and holds a lock on it
  for the life of the process; :func:`sweep` removes the temporaries of an export that was killed
  (no process holds their lock) and reports the ones it cannot judge.
- :func:`replace` commits: the old bundle is moved aside, the new one renamed into place, and of
  the old one only the files it can prove it wrote are deleted (:func:`remove_listed`).

The rule for every delete (issue 25): a manifest is untrusted, so a file is deleted only when its
listed path is a bundle path (no ``..``, not absolute, bounded), every folder on the way is a
real folder inside, the file is a regular file, and its size and sha256 match the manifest.
Anything else is left in place and named in one line. A temporary folder is deleted only when
its name is exactly one :func:`make_temp` makes, it is private (mode 0700, as ``mkdtemp`` made
it), holds no links or special files, and no process holds its lock; a folder that merely has
the reserved prefix is reported, never deleted or moved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from lrf.digest import sha256_file
from lrf.runtime import MANIFEST, SCHEMA
from lrf.runtime.containment import folders_of, path_problem

MAX_MANIFEST_BYTES = 64 << 20
TEMP_TAG = ".lrf-export-"   # .<name>.lrf-export-<pid>-<random>: an export being written
OLD_TAG = ".lrf-old-"       # .<name>.lrf-old-<pid>-<random>: the replaced bundle, being deleted
LEGACY_TAGS = (".tmp", ".old")  # names the writer used before this module
_log = logging.getLogger("lrf.exporter")
_locks: dict[str, int] = {}  # temporary folder -> fd holding its lock


class OutDirError(ValueError):
    """``--out`` names something an export must not replace."""


def _refuse(out: Path, why: str, what: str = "choose a new or empty folder"):
    raise OutDirError(f"--out {str(out)!r} {why}; lrf-export replaces only a bundle it wrote, "
                      f"unchanged: {what}")


def _no_constant(name: str):
    raise ValueError(f"{name} is not strict JSON")


def read_own_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder`` when it is an lrf bundle manifest; None when there is none;
    OutDirError when there is one but it is not ours."""
    mpath = folder / MANIFEST
    try:
        st = os.lstat(mpath)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        _refuse(folder, f"holds a {MANIFEST} that is not a regular file")
    if st.st_size > MAX_MANIFEST_BYTES:
        _refuse(folder, f"holds a {MANIFEST} of {st.st_size} bytes, too large for an lrf bundle")
    try:
        m = json.loads(mpath.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        _refuse(folder, f"holds a {MANIFEST} that is not valid JSON, so it is not an lrf bundle")
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        _refuse(folder, f"holds a {MANIFEST} whose schema is not {SCHEMA!r} (not an lrf bundle)")
    files = m.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in files.items()):
        _refuse(folder, f"holds an lrf {MANIFEST} without a valid 'files' table")
    bad = next((k for k in files if path_problem(k)), None)
    if bad is not None:
        _refuse(folder, f"holds an lrf {MANIFEST} listing {bad[:60]!r}, which is not a path "
                        "inside the bundle (a bundle lrf-export wrote never lists one)")
    return m


def _entries(folder: Path):
    """(relative posix path, lstat) of everything under ``folder``, symlinks not followed."""
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            p = Path(root, name)
            yield p.relative_to(folder).as_posix(), os.lstat(p)


def unlisted(folder: Path, manifest: dict, hashes: bool = True) -> str | None:
    """Why ``folder`` holds something its manifest does not account for, or None."""
    files = manifest["files"]
    parents = folders_of(files)
    for rel, st in _entries(folder):
        if stat.S_ISLNK(st.st_mode):
            return f"holds a symbolic link {rel!r}, which no export writes"
        if stat.S_ISDIR(st.st_mode):
            if rel not in parents:
                return f"holds a folder {rel!r} that its manifest does not list"
        elif not stat.S_ISREG(st.st_mode):
            return f"holds {rel!r}, which is not a regular file"
        elif rel == MANIFEST:
            continue
        elif rel not in files:
            return f"holds {rel!r}, which its manifest does not list (added after export?)"
        elif st.st_size != files[rel].get("size") or (
                hashes and sha256_file(folder / rel) != files[rel].get("sha256")):
            return f"holds {rel!r}, which differs from its manifest (changed after export?)"
    return None


def check_out(out: str | os.PathLike) -> None:
    """Raise :class:`OutDirError` unless an export may write ``out`` (see the module doc)."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        _refuse(out, "does not name a folder of its own")
    try:
        st = os.lstat(out)
    except NotADirectoryError:
        _refuse(out, "is inside something that is not a folder")
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        _refuse(out, "is a symbolic link", "pass the folder it points to, or another path")
    if not stat.S_ISDIR(st.st_mode):
        _refuse(out, "exists and is not a folder")
    if not any(out.iterdir()):
        return
    manifest = read_own_manifest(out)
    if manifest is None:
        _refuse(out, f"is a folder that is not empty and is not an lrf bundle (no {MANIFEST})")
    why = unlisted(out, manifest)
    if why:
        _refuse(out, why, "move those files out, or choose another folder")


def prepare(out: str | os.PathLike) -> None:
    """Before an export: clean up after killed exports to ``out`` (:func:`sweep`, each thing
    left for the user logged as one warning line), then :func:`check_out`."""
    for note in sweep(out):
        _log.warning(note)
    check_out(out)


def _lock(folder: Path) -> int | None:
    """An fd holding an exclusive lock on ``folder``, or None when another process holds it."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): judge by the pid in the name instead
        return -1
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _owner_gone(p: Path) -> bool:
    pid = p.name.rsplit(TEMP_TAG if TEMP_TAG in p.name else OLD_TAG, 1)[1].split("-", 1)[0]
    fd = _lock(p)
    if fd is None:
        return False
    if fd >= 0:
        os.close(fd)
        return True
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def make_temp(out: str | os.PathLike) -> Path:
    """A fresh temporary folder beside ``out`` (same filesystem, so the commit is one rename),
    locked until :func:`replace` or :func:`discard`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for note in sweep(out):
        _log.warning(note)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TEMP_TAG}{os.getpid()}-", dir=out.parent))
    fd = _lock(tmp)
    if fd is not None and fd >= 0:
        _locks[str(tmp)] = fd
    return tmp


def _release(tmp: Path) -> None:
    fd = _locks.pop(str(tmp), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def discard(tmp: str | os.PathLike) -> None:
    """Delete a temporary folder made by :func:`make_temp` (an export that failed)."""
    tmp = Path(tmp)
    _release(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def _ours(folder: Path, rel: str, meta) -> bool:
    """Whether ``folder/rel`` is provably the file the manifest entry ``meta`` describes: a
    bundle path, reached through real folders only, a regular file with that size and sha256."""
    if path_problem(rel) or not isinstance(meta, dict):
        return False
    p = folder
    parts = rel.split("/")
    for i, part in enumerate(parts):
        p = p / part
        try:
            mode = os.lstat(p).st_mode
        except OSError:
            return False
        if not (stat.S_ISDIR(mode) if i < len(parts) - 1 else stat.S_ISREG(mode)):
            return False
    try:
        return os.lstat(p).st_size == meta.get("size") and sha256_file(p) == meta.get("sha256")
    except OSError:
        return False


def remove_listed(folder: Path, manifest: dict) -> list[str]:
    """Delete from ``folder`` each file of the manifest that is provably ours (:func:`_ours`),
    then the manifest and the folders left empty. Returns what was kept (listed entries that
    are not provably ours but exist, and anything unlisted); [] when the folder is gone."""
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    kept = []
    for rel, meta in files.items():
        if _ours(folder, rel, meta):
            with contextlib.suppress(OSError):
                os.unlink(folder / rel)
        elif not path_problem(rel) and os.path.lexists(folder / rel):
            kept.append(rel)
    if not kept:
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(folder / MANIFEST).st_mode):
                os.unlink(folder / MANIFEST)
    for root, dirs, _ in os.walk(folder, topdown=False):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(Path(root, d))   # only empty folders: never a file
    with contextlib.suppress(OSError):
        os.rmdir(folder)
    if os.path.lexists(folder) and not kept:
        kept = [rel for rel, _ in _entries(folder)][:5] or ["?"]
    return kept


def _kept_note(folder: Path, kept: list[str]) -> str:
    shown = ", ".join(repr(k[:60]) for k in kept[:3]) + (", ..." if len(kept) > 3 else "")
    return (f"lrf-export: note: {str(folder)!r} is a replaced bundle holding files no export "
            f"can be shown to have written ({shown}); it was kept: move them out and delete it")


def _temp_pattern(out: Path, tag: str) -> re.Pattern:
    tail = r"[a-z0-9_]{8}" if tag == TEMP_TAG else r"[0-9a-f]{8}"
    return re.compile(re.escape(f".{out.name}{tag}") + r"([0-9]{1,10})-" + tail)


def _only_plain_entries(folder: Path) -> bool:
    return all(stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
               for _, st in _entries(folder))


def sweep(out: str | os.PathLike) -> list[str]:
    """Clean up after exports to ``out`` that were killed: their temporary folders are removed,
    a bundle that a killed commit had moved aside is put back (or its provably-ours files
    deleted, when the new one is in place). Returns one line for each thing left for the user
    to judge (see the module doc for what counts as ours)."""
    out = Path(out)
    notes = []
    try:
        siblings = sorted(out.parent.iterdir())
    except OSError:
        return notes
    for p in siblings:
        name = p.name
        if not name.startswith(f".{out.name}.") or p.is_symlink() or not p.is_dir():
            continue
        rest = name[len(out.name) + 1:]
        if rest.startswith(TEMP_TAG):
            if _temp_pattern(out, TEMP_TAG).fullmatch(name) and \
                    stat.S_IMODE(os.lstat(p).st_mode) == 0o700 and _only_plain_entries(p):
                if _owner_gone(p):
                    shutil.rmtree(p, ignore_errors=True)
                continue
            notes.append(f"lrf-export: note: {str(p)!r} has the name of an export's temporary "
                         "folder but is not one lrf-export made; it was kept: delete or rename "
                         "it yourself")
        elif rest.startswith(OLD_TAG):
            m = _manifest_or_none(p)
            if not _temp_pattern(out, OLD_TAG).fullmatch(name) or m is None:
                notes.append(f"lrf-export: note: {str(p)!r} has the name of a replaced bundle "
                             "but is not an lrf bundle; it was kept: delete or rename it "
                             "yourself")
            elif not _owner_gone(p):
                continue
            elif not os.path.lexists(out) and unlisted(p, m) is None:
                p.rename(out)  # the commit was killed between its two renames: undo it
            else:
                kept = remove_listed(p, m)
                if kept:
                    notes.append(_kept_note(p, kept))
        elif rest.startswith(LEGACY_TAGS):
            notes.append(f"lrf-export: note: {str(p)!r} looks like the temporary folder of an "
                         "earlier, killed export; delete it if no export is running")
    return notes


def _manifest_or_none(folder: Path) -> dict | None:
    try:
        return read_own_manifest(folder)
    except OutDirError:
        return None


def replace(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Move the finished bundle ``tmp`` to ``out``: ``out`` is re-checked (it may have changed
    during the export), the old bundle moved aside, the new one renamed in, and the old one's
    listed files deleted."""
    tmp, out = Path(tmp), Path(out)
    _release(tmp)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    check_out(out)
    if not os.path.lexists(out) or not any(out.iterdir()):
        os.replace(tmp, out)  # a missing or empty folder: one rename
        return
    manifest = read_own_manifest(out)
    old = out.parent / f".{out.name}{OLD_TAG}{os.getpid()}-{secrets.token_hex(4)}"
    fd = _lock(out)  # the lock moves with the folder: a sweep elsewhere leaves it alone
    try:
        os.rename(out, old)
        why = unlisted(old, manifest, hashes=False)  # changed since check_out?
        if why:
            os.rename(old, out)
            _refuse(out, why, "move those files out, or choose another folder")
        os.rename(tmp, out)
        kept = remove_listed(old, manifest)
        if kept:
            _log.warning(_kept_note(old, kept))
    finally:
        if fd is not None and fd >= 0:
            os.close(fd)
