"""mmcore's native extension (`mmcore._native`): checked against this environment, loaded once.

The extension is compiled against executorch's headers and links `libexecutorch.so`. The build
writes `_native.build.json` beside it (executorch version, Python, environment prefix, whether it
was built in the source tree). Before importing it, this module checks that record against the
running environment and loads the environment's own `libexecutorch.so`, so the extension always
shares the runtime (and its kernel and backend registries) that the rest of the process uses:

- an extension built for another executorch version is refused;
- an in-tree extension (an editable install) built from another environment is refused, since
  several environments can point at one source tree.

When the extension is missing or refused, mmcore runs programs through ExecuTorch's Python
bindings, and says so once, at first use, with the fix (`extension()` logs one warning;
`status()` tells `mmcore inspect` why). `MMCORE_NATIVE=0` turns the extension off on purpose
(no warning). Nothing here imports torch or executorch's Python packages.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BUILD_INFO", "NativeStatus", "executorch_root", "executorch_version", "extension", "status"]

logger = logging.getLogger("mmcore.native")

#: The build record written beside the extension by mmcore's setup.py.
BUILD_INFO = "_native.build.json"

_REINSTALL = (
    "reinstall mmcore in this environment with a C++ compiler present: `pip install --force-reinstall "
    "--no-deps mmcore` (from a checkout: `pip install -e .` or scripts/setup.sh)"
)
_SLOWER = (
    "mmcore runs programs through ExecuTorch's Python bindings instead, which need torch "
    "(pip install 'mmcore[torch]') and are slower (greedy decoding and prefill run in Python)"
)

_lock = threading.Lock()
_status: NativeStatus | None = None
_module: Any = None
_warned = False


@dataclass(frozen=True)
class NativeStatus:
    """Whether the native extension is usable here, and if not why."""

    available: bool
    #: Why the extension is not used ("" when it is).
    reason: str = ""
    #: The build record (`_native.build.json`), empty when there is none.
    build: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for `mmcore inspect`."""
        if self.available:
            return f"native (mmcore._native, built for executorch {self.build.get('executorch_version')})"
        return f"ExecuTorch's Python bindings ({self.reason}; to fix, {_REINSTALL})"


def executorch_root() -> Path | None:
    """The installed executorch package directory holding `lib/libexecutorch.so` (imports nothing)."""
    try:
        spec = importlib.util.find_spec("executorch")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        root = Path(location)
        if (root / "lib" / "libexecutorch.so").exists():
            return root
    return None


def executorch_version() -> str | None:
    """The installed executorch distribution's version, or None."""
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        return None


def status() -> NativeStatus:
    """Find, check and load the extension (once); say whether it is usable."""
    global _status, _module
    with _lock:
        if _status is None:
            _module, _status = _load()
        return _status


def extension() -> Any:
    """The loaded `mmcore._native` module, or None (one warning the first time it is unusable).

    None without a warning when the environment sets `MMCORE_NATIVE=0`.
    """
    global _warned
    if os.environ.get("MMCORE_NATIVE", "1") == "0":
        return None
    current = status()
    if not current.available and not _warned:
        _warned = True
        logger.warning("mmcore's native extension is not used: %s. %s. To fix, %s", current.reason, _SLOWER, _REINSTALL)
    return _module


def _load() -> tuple[Any, NativeStatus]:
    spec = importlib.util.find_spec("mmcore._native")
    if spec is None or spec.origin is None:
        return None, NativeStatus(
            False, "mmcore._native was not built (no C++ compiler or executorch headers at install)"
        )
    record = Path(spec.origin).with_name(BUILD_INFO)
    try:
        build = json.loads(record.read_text())
    except (OSError, ValueError):
        return None, NativeStatus(False, f"{spec.origin} has no build record ({record.name}); it predates this mmcore")
    problem = _mismatch(build)
    if problem:
        return None, NativeStatus(False, problem, build)
    root = executorch_root()
    if root is None:
        return None, NativeStatus(False, "executorch is not installed (pip install executorch==1.5.1)", build)
    try:
        # The extension's libexecutorch.so dependency resolves to this already loaded library.
        ctypes.CDLL(str(root / "lib" / "libexecutorch.so"), mode=os.RTLD_GLOBAL)
        module = importlib.import_module("mmcore._native")
    except (OSError, ImportError) as exc:
        return None, NativeStatus(False, f"mmcore._native cannot be loaded: {exc}", build)
    if not hasattr(module, "registered_operators"):
        return None, NativeStatus(False, f"{spec.origin} is an older build of mmcore._native", build)
    return module, NativeStatus(True, "", build)


def _mismatch(build: dict[str, Any]) -> str:
    """Why a build record does not fit this environment ("" when it does)."""
    installed = executorch_version()
    if installed is None:
        return "executorch is not installed (pip install executorch==1.5.1)"
    if build.get("executorch_version") != installed:
        built_for = build.get("executorch_version")
        return f"mmcore._native was built for executorch {built_for}, this environment has {installed}"
    python = sys.version.split()[0]
    if build.get("python", "").rsplit(".", 1)[0] != python.rsplit(".", 1)[0]:
        return f"mmcore._native was built for Python {build.get('python')}, this is Python {python}"
    if build.get("inplace") and not _same_path(build.get("prefix"), sys.prefix):
        return (
            f"mmcore._native in the source tree was built for the environment {build.get('prefix')}, "
            f"not this one ({sys.prefix}); an editable install shares it between environments"
        )
    return ""


def _same_path(a: Any, b: str) -> bool:
    try:
        return a is not None and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False
