"""Builds mmcore's native extension against the executorch wheel that will be installed with it.

`mmcore._native` runs ExecuTorch methods, and greedy decoding, below Python. It compiles against
executorch's headers and links its `libexecutorch.so`, so `build-system.requires` pins the same
executorch as the runtime dependency: `pip install .` (build isolation on) and `pip install -e .`
both build it, given a C++ compiler. Without a compiler (or headers) the extension is skipped and
mmcore says so once at run time (`mmcore.native`).

Next to the extension, `_native.build.json` records what it was built for (executorch version,
Python, environment); `mmcore.native` refuses an extension built for another executorch or, for
an in-tree (editable) build, for another environment. The extension carries no absolute library
path: `mmcore.native` loads the environment's own `libexecutorch.so` before importing it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BUILD_INFO = "_native.build.json"


def _executorch_root() -> Path | None:
    """The executorch package directory that ships headers and libexecutorch.so (imports nothing)."""
    spec = importlib.util.find_spec("executorch")
    for location in (spec.submodule_search_locations or []) if spec else []:
        root = Path(location)
        if (root / "include" / "executorch").is_dir() and (root / "lib" / "libexecutorch.so").exists():
            return root
    return None


def _executorch_version() -> str | None:
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        return None


class BuildExt(build_ext):
    """build_ext that writes `_native.build.json` beside each built extension."""

    def run(self) -> None:
        super().run()
        root = _executorch_root()
        for ext in self.extensions:
            target = Path(self.get_ext_fullpath(ext.name))
            if not target.exists() or root is None:
                continue
            info = {
                "executorch_version": _executorch_version(),
                "executorch_root": str(root),
                "python": sys.version.split()[0],
                "prefix": sys.prefix,
                "inplace": bool(self.inplace),
            }
            (target.parent / BUILD_INFO).write_text(json.dumps(info, indent=1) + "\n")

    def get_outputs(self) -> list[str]:
        outputs = list(super().get_outputs())
        return outputs + [str(Path(p).parent / BUILD_INFO) for p in outputs if Path(p).exists()]


def _extensions() -> list[Extension]:
    root = _executorch_root()
    if root is None:
        print("mmcore: executorch headers not found; building without the native extension")
        return []
    return [
        Extension(
            "mmcore._native",
            ["mmcore/_native.cpp", "mmcore/_llm_ops.cpp"],
            include_dirs=[str(root / "include"), str(root / "include/executorch/runtime/core/portable_type/c10")],
            library_dirs=[str(root / "lib")],
            libraries=["executorch"],
            # The definitions executorch's CMake config puts on its targets; they change inline layouts.
            define_macros=[
                ("C10_USING_CUSTOM_GENERATED_MACROS", None),
                ("ET_EVENT_TRACER_ENABLED", None),
                ("ET_USE_THREADPOOL", None),
                ("_GLIBCXX_USE_CXX11_ABI", "1"),
            ],
            extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden", "-Wno-deprecated-declarations"],
            # A relative fallback for wheels (mmcore/ beside executorch/ in site-packages); mmcore.native
            # loads the environment's libexecutorch.so first in any case.
            extra_link_args=["-Wl,-rpath,$ORIGIN/../executorch/lib"],
            language="c++",
            optional=True,
        )
    ]


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
