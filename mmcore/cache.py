"""mmcore's cache directory: the platform's user cache folder (platformdirs), or `$MMCORE_CACHE_DIR`."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "cache_dir"]

#: Environment variable that overrides the cache directory.
CACHE_DIR_ENV = "MMCORE_CACHE_DIR"


def cache_dir() -> Path:
    """`$MMCORE_CACHE_DIR` if set, else the user cache folder for "mmcore" as platformdirs names it
    (Linux: `$XDG_CACHE_HOME/mmcore`, by default `~/.cache/mmcore`; macOS: `~/Library/Caches/mmcore`;
    Windows: `%LOCALAPPDATA%\\mmcore\\Cache`). Nothing is created."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mmcore", appauthor=False))
