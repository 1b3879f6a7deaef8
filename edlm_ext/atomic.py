"""Atomic file outputs: every file edlm_ext, its command line and its scripts write
is, at any instant, either its previous content or its complete new content.

A write goes to a temporary file in the target's directory (``.NAME.PID.RANDOM.tmp``),
is flushed and fsynced, renamed over the target (``os.replace``, atomic on POSIX)
and the directory is fsynced, so a kill, a crash, a full disk or a file-size limit
at any point leaves the old file (or none) and at most a temporary file, which the
failed write removes when it can and :func:`remove_stale_temporaries` otherwise.

* :func:`check_output_file` / :func:`check_output_dir` — validate an output path
  before the work starts (a directory where a file is wanted, a file as a parent,
  an unwritable location fail at once, as :class:`~edlm_ext.errors.InputError`).
* :func:`write_bytes`, :func:`write_text`, :func:`write_json`, :func:`write_csv` — one atomic write.
* :func:`atomic_path` — a temporary path for libraries that write by file name
  (matplotlib's savefig, ...), committed atomically when the block succeeds.

Test hook (fault-injection tests only): ``EDLM_TEST_WRITE_FAULT=POINT:NAME:N:MARKER``
makes the N-th write (1-based) of a file named NAME in this process stop at POINT —
``partial`` (half the bytes written to the temporary file), ``before_rename``
(complete and fsynced, not renamed) or ``after_rename`` (renamed, directory not yet
fsynced) — write the file MARKER and wait to be killed; POINT ``enospc`` instead
fails the write half-way with ENOSPC, a simulated full disk.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import secrets
import time
from pathlib import Path

from .errors import InputError, OutputError

_FAULT_ENV = "EDLM_TEST_WRITE_FAULT"
_write_counts: dict[str, int] = {}


def _temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        p = p.parent
    return p


def _probe_writable(directory: Path, target: Path, what: str) -> None:
    """Create and remove a temporary file in directory (os.access is no proof: root,
    read-only mounts, /sys)."""
    probe = _temporary_name(target)
    probe = directory / probe.name
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise InputError(f"{what} {target}: cannot write in {directory} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """An output directory that exists or can be created, and is writable. Creates
    nothing; raises InputError (one line naming `what` and the path) otherwise."""
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise InputError(f"{what} {target} exists and is not a directory")
    base = _nearest_existing(target)
    if not base.is_dir():
        raise InputError(f"{what} {target}: {base} is not a directory")
    _probe_writable(base, target, what)
    return target


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """An output file path whose directory exists or can be created and is writable,
    and which is not itself a directory. Creates nothing; raises InputError otherwise."""
    if str(path) == "":
        raise InputError(f"{what}: empty path")
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise InputError(f"{what} {target} is a directory")
    if str(path).endswith(os.sep):
        raise InputError(f"{what} {path} names a directory, not a file")
    base = _nearest_existing(target.parent)
    if not base.is_dir():
        raise InputError(f"{what} {target}: {base} is not a directory")
    _probe_writable(base, target, what)
    return target


def _fault(point: str, target: Path) -> None:
    """The fault-injection hook (see the module docstring); a no-op unless the env var is set."""
    spec = os.environ.get(_FAULT_ENV)
    if not spec:
        return
    want_point, name, n, marker = spec.split(":", 3)
    if name != target.name:
        return
    if point == "start":
        _write_counts[name] = _write_counts.get(name, 0) + 1
        return
    if _write_counts.get(name) != int(n):
        return
    if want_point == "enospc" and point == "partial":
        raise OSError(errno.ENOSPC, "No space left on device (simulated by " + _FAULT_ENV + ")")
    if want_point != point:
        return
    Path(marker).write_text(f"{point} {target}\n")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # wait for the test's SIGKILL
        time.sleep(0.05)
    os._exit(99)  # never left behind: the test kills long before


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, target: Path) -> None:
    _fault("before_rename", target)
    os.replace(tmp, target)
    _fault("after_rename", target)
    _fsync_dir(target.parent)


def _failed(target: Path, tmp: Path, error: OSError) -> OutputError:
    with contextlib.suppress(OSError):
        tmp.unlink()
    return OutputError(f"could not write {target}: {error.strerror or error} "
                       f"(errno {error.errno}); the previous file there, if any, is unchanged")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write data to path atomically (parents created). Returns the path.
    Raises OutputError when the write fails (disk full, size limit, I/O error)."""
    target = Path(path).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    _fault("start", target)
    tmp = _temporary_name(target)
    try:
        with open(tmp, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            _fault("partial", target)
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, target)
    except OSError as e:
        raise _failed(target, tmp, e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) to path atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    """Write obj as JSON (plus a final newline) to path atomically."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    """Write rows (dicts) as a CSV with a header to path atomically; fieldnames default
    to the keys of all rows in first-seen order. A writer that appends rows as they come
    rewrites the whole file each time: a kill leaves the last complete version."""
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fieldnames)
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path in path's directory for a writer that takes a file name;
    when the block succeeds the file is fsynced and renamed over path, when it raises
    the temporary file is removed. suffix: the temporary file's extension (libraries
    that infer the format from it, e.g. ".png"); default: path's own."""
    target = Path(path).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    _fault("start", target)
    tmp = _temporary_name(target)
    tmp = tmp.with_name(tmp.name + (target.suffix if suffix is None else suffix))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _commit(tmp, target)
    except OSError as e:
        raise _failed(target, tmp, e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_stale_temporaries(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporary files that killed writers left in directory (of the
    file `name`, or of any file): those whose writing process no longer runs.
    Returns the removed paths."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in directory.glob(f".{name or '*'}.*.tmp*"):
        parts = p.name.rsplit(".tmp", 1)[0].split(".")
        try:
            pid = int(parts[-2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and _alive(pid):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
