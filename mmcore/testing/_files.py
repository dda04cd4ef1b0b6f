"""Cache directory, atomic writes and an advisory inter-process lock."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

try:  # POSIX only; elsewhere builds are still atomic, merely not serialised.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CACHE_ENV_VAR", "atomic_dir", "atomic_file", "default_cache_dir", "file_lock"]

#: Environment variable naming the cache directory.
CACHE_ENV_VAR = "MMCORE_TESTING_CACHE"


def default_cache_dir() -> Path:
    """``$MMCORE_TESTING_CACHE`` if set, else ``~/.cache/mmcore/testing``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "mmcore" / "testing"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


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
