"""Cache directory, atomic writes and an advisory inter-process lock."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from mmcore.cache import cache_dir

try:  # POSIX only; elsewhere builds are still atomic, merely not serialised.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CACHE_ENV_VAR", "atomic_dir", "atomic_file", "default_cache_dir", "file_lock"]

#: Environment variable naming the cache directory.
CACHE_ENV_VAR = "MMCORE_TESTING_CACHE"


def default_cache_dir() -> Path:
    """``$MMCORE_TESTING_CACHE`` if set, else ``testing`` in mmcore's cache directory
    (:func:`mmcore.cache.cache_dir`: ``$MMCORE_CACHE_DIR``, else ``~/.cache/mmcore`` on Linux)."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env) if env else cache_dir() / "testing"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` for the block; the file exists only meanwhile.

    The holder deletes the file before releasing it. A waiter that then gets the lock on the
    deleted file sees that ``path`` is gone or is another file, and locks again, so two processes
    never both hold the lock and no lock file is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows: not serialised (writes are still atomic)
        yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the file was removed by the previous holder: lock the new one
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _temp_name(target: Path) -> Path:
    """A unique sibling of ``target`` (created later, so it gets the umask's permissions)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_file(target: Path, write: Callable[[Path], None]) -> Path:
    """Create ``target`` by calling ``write(tmp)`` and renaming; never leaves a partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_dir(target: Path, fill: Callable[[Path], None]) -> Path:
    """Create directory ``target`` by calling ``fill(tmp_dir)`` and renaming; never leaves a partial one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    tmp.mkdir()
    try:
        fill(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # lost a race to an equal build: keep the winner
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
