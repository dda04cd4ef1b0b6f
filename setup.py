"""Builds mmcore's optional native extension against the installed executorch wheel.

`mmcore._native` runs ExecuTorch methods, and greedy decoding, below Python. It needs a C++
compiler and executorch's headers and libraries at build time, so install with
`pip install --no-build-isolation` after executorch (scripts/setup.sh does). Without them the
extension is skipped and mmcore runs programs through executorch's Python bindings.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import Extension, setup


def _executorch_root() -> Path | None:
    """The installed executorch package directory that ships headers and libexecutorch.so."""
    spec = importlib.util.find_spec("executorch")
    for location in (spec.submodule_search_locations or []) if spec else []:
        root = Path(location)
        if (root / "include" / "executorch").is_dir() and (root / "lib" / "libexecutorch.so").exists():
            return root
    return None


def _extensions() -> list[Extension]:
    root = _executorch_root()
    if root is None:
        print("mmcore: executorch headers not found; building without the native extension")
        return []
    return [
        Extension(
            "mmcore._native",
            ["mmcore/_native.cpp"],
            include_dirs=[str(root / "include"), str(root / "include/executorch/runtime/core/portable_type/c10")],
            library_dirs=[str(root / "lib")],
            runtime_library_dirs=[str(root / "lib")],
            libraries=["executorch"],
            # The definitions executorch's CMake config puts on its targets; they change inline layouts.
            define_macros=[
                ("C10_USING_CUSTOM_GENERATED_MACROS", None),
                ("ET_EVENT_TRACER_ENABLED", None),
                ("ET_USE_THREADPOOL", None),
                ("_GLIBCXX_USE_CXX11_ABI", "1"),
            ],
            extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden", "-Wno-deprecated-declarations"],
            language="c++",
            optional=True,
        )
    ]


setup(ext_modules=_extensions())
