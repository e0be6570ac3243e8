"""Writing the files a command makes for its user so that a failure never leaves half of one.

Every such file (exports, predictions, cloze sets, metrics, cards) is written to a temporary name beside its final
path and renamed over it only when complete: a run killed, or a disk that fills, mid-write leaves the previous
file (or none) as it was, never a fragment under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in `path`'s directory to write into; renamed to `path` when the block ends without an
    error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    temporary = Path(temporary)
    # mkstemp makes the file private (0600); the finished file gets what open() would give it, or the mode of the
    # file it replaces (an Ollama or web server running as another user must still read an export).
    os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~current_umask())
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", **kwargs):
    """`open(path, mode)` for writing, through `atomic_path`: the file appears under its name only when complete."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as temporary, open(temporary, mode, encoding=encoding, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def same_file(first: str | Path, second: str | Path) -> bool:
    """Whether two paths name one file (the second need not exist): an output that would replace an input."""
    first, second = Path(first), Path(second)
    if second.exists() and first.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def pid_alive(pid: int) -> bool:
    """Whether a process with id `pid` runs on this machine (another user's counts): the writer of a lock or of a
    temporary folder that is not gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
