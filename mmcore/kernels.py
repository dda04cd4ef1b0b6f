"""Kernel and backend libraries, registered before a program's first method load, only when needed.

A `.pte` names every operator its methods call (`Operator {name, overload}` in the program
flatbuffer) and every delegate backend (`BackendDelegate.id`). `prepare(path)` reads those names
(no runtime involved), compares them with the runtime's registries and loads, from the executorch
wheel, only the libraries that provide what is missing:

| needs                     | provided by                                            | links torch |
|---------------------------|--------------------------------------------------------|-------------|
| `aten::*` operators       | `lib/libexecutorch_kernels_optimized.so`               | no          |
| `quantized_decomposed::*` | `lib/libexecutorch_kernels_quantized.so`               | no          |
| `llama::` in `OWN_KERNELS`| mmcore's own kernels (`_llm_ops.cpp`, native extension)| no          |
| other `llama::*`          | `extension/llm/custom_ops/libcustom_ops_aot_lib.so`    | yes         |
| `XnnpackBackend` etc.     | `lib/libexecutorch_backend_<name>.so`                  | no          |

`OWN_KERNELS` are `llama::custom_sdpa.out`, `llama::sdpa_with_kv_cache.out`, `llama::update_cache.out`
and `llama::update_cache_with_indices.out` (export_llm's and optimum-executorch's custom SDPA and
KV-cache ops); on the bindings path (no native extension) they too come from ExecuTorch's library,
as do `custom_quantized_sdpa` (quantized KV cache) and the rest of ExecuTorch's `llama::` ops.
mmcore's kernels register under the exact kernel keys (dtype and dim order of each tensor
argument) the program's calls use, read from the program; ExecuTorch's library registers its kernels
under the fallback key. The two never collide (ExecuTorch aborts the process on a duplicate name and
key), so ExecuTorch's library may be loaded before or after; when it is loaded first, mmcore leaves
those operators to it. `MMCORE_LLM_KERNELS=executorch` makes mmcore load ExecuTorch's library
instead of registering its own kernels (torch needed).

Loading happens before the first method load, so ExecuTorch never prints `Missing operator`
errors for a program that then runs, and it is quiet (native stderr is silenced while libraries
initialise). torch is imported only for a program that needs the torch-linked LLM custom ops library;
on an install without torch such a program raises `MissingKernelError` naming the operators and
`pip install 'mmcore[torch]'`. An operator no library provides raises `MissingKernelError` too.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import mmap
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.errors import InvalidProgramError, MissingKernelError, RuntimeUnavailableError

__all__ = [
    "BACKEND_LIBRARIES",
    "OWN_KERNELS",
    "LIBRARIES",
    "KernelLibrary",
    "own_kernels_enabled",
    "ProgramNeeds",
    "prepare",
    "program_needs",
    "quiet_stderr",
    "torch_installed",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KernelLibrary:
    """A kernel library in the executorch wheel and the operator namespaces it provides."""

    name: str
    #: Path relative to the executorch package directory.
    path: str
    namespaces: tuple[str, ...]
    #: Whether the library links libtorch (it then needs torch installed and imported first).
    needs_torch: bool = False


LIBRARIES: tuple[KernelLibrary, ...] = (
    KernelLibrary("optimized kernels", "lib/libexecutorch_kernels_optimized.so", ("aten::",)),
    KernelLibrary("quantized kernels", "lib/libexecutorch_kernels_quantized.so", ("quantized_decomposed::",)),
    KernelLibrary(
        "LLM custom ops", "extension/llm/custom_ops/libcustom_ops_aot_lib.so", ("llama::",), needs_torch=True
    ),
)

#: Delegate backend id (as a program names it) -> its library in the executorch wheel.
BACKEND_LIBRARIES: dict[str, str] = {
    "XnnpackBackend": "lib/libexecutorch_backend_xnnpack.so",
    "OpenvinoBackend": "lib/libexecutorch_backend_openvino.so",
    "QnnBackend": "lib/libexecutorch_backend_qnn.so",
}


#: The operators mmcore's native extension has its own kernels for (mmcore/_llm_ops.cpp).
OWN_KERNELS: frozenset[str] = frozenset(
    {
        "llama::custom_sdpa.out",
        "llama::sdpa_with_kv_cache.out",
        "llama::update_cache.out",
        "llama::update_cache_with_indices.out",
    }
)

#: A kernel key: (ExecuTorch ScalarType id, dim order) of each tensor argument of a call, in order.
KernelKey = tuple[tuple[int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class ProgramNeeds:
    """The operators ("aten::add.out") and delegate backends ("XnnpackBackend") a program uses.

    `kernel_keys` holds, for each operator of `OWN_KERNELS` the program calls, the kernel keys of
    its calls.
    """

    operators: frozenset[str]
    backends: frozenset[str]
    kernel_keys: dict[str, frozenset[KernelKey]] = field(default_factory=dict)


_lock = threading.Lock()
_loaded: set[str] = set()
_needs_cache: dict[tuple[str, int, int], ProgramNeeds] = {}


def program_needs(path: str | os.PathLike[str]) -> ProgramNeeds:
    """Operator and backend names used by any method of a `.pte` (read from its flatbuffer)."""
    file = Path(path)
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _needs_cache.get(key)
    if cached is None:
        try:
            with file.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                cached = _read_needs(data)
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
            raise InvalidProgramError(f"{file} is not a readable ExecuTorch program: {exc}") from exc
        _needs_cache[key] = cached
    return cached


def prepare(path: str | os.PathLike[str], registered: Callable[[], set[str]] | None = None) -> ProgramNeeds:
    """Load the kernel and backend libraries a program needs and the runtime lacks.

    `registered` lists the runtime's registered operators (default: the native extension's
    registry, or ExecuTorch's Python bindings' when the extension is not in use). Raises
    `MissingKernelError` when an operator stays unregistered.
    """
    needs = program_needs(path)
    root = _executorch_root()
    lister = registered or _registered_operators
    with _lock:
        for backend in sorted(needs.backends):
            library = BACKEND_LIBRARIES.get(backend)
            if library is not None and root is not None:
                _load(root / library)
        if needs.kernel_keys and _register_own_kernels(needs) and root is not None:
            _start_threadpool(root)  # mmcore's kernels run on it when it is there
        missing = needs.operators - lister()
        wanted = [lib for lib in LIBRARIES if any(op.startswith(lib.namespaces) for op in missing)]
        for lib in wanted:
            if root is None:
                break
            if lib.needs_torch and not torch_installed():
                continue
            if lib.needs_torch:
                import torch  # noqa: F401 - the library links libtorch; torch initialises it first
            _load(root / lib.path)
        if wanted:
            missing = needs.operators - lister()
        if root is not None and any(p.endswith(_THREADPOOL_USERS) for p in _loaded):
            _start_threadpool(root)
    if missing:
        raise MissingKernelError(_missing_message(Path(path), missing))
    return needs


def own_kernels_enabled() -> bool:
    """Whether mmcore registers its own `llama::` kernels (not with `MMCORE_LLM_KERNELS=executorch`)."""
    return os.environ.get("MMCORE_LLM_KERNELS", "mmcore") != "executorch"


def _register_own_kernels(needs: ProgramNeeds) -> bool:
    """Register mmcore's `llama::` kernels for the keys a program's calls use (native path only).

    Returns whether any of mmcore's kernels serves the program.
    """
    from mmcore import native

    if not own_kernels_enabled():
        return False
    module = native.extension()
    if module is None:
        return False
    ours = False
    for name, keys in sorted(needs.kernel_keys.items()):
        for key in sorted(keys):
            outcome = module.register_llm_kernel(name, [(dtype, list(order)) for dtype, order in key])
            logger.debug("%s %s: %s", name, key, outcome)
            ours = ours or outcome != "executorch"
    return ours


def torch_installed() -> bool:
    """Whether torch can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a finder that refuses torch, or a half-imported module
        return False


def _missing_message(path: Path, missing: set[str] | frozenset[str]) -> str:
    names = ", ".join(sorted(missing))
    for lib in LIBRARIES:
        if lib.needs_torch and any(op.startswith(lib.namespaces) for op in missing):
            own = ", ".join(sorted(OWN_KERNELS))
            return (
                f"program {path} needs operator(s) {names}, which ExecuTorch ships only in its {lib.name} "
                f"library ({Path(lib.path).name}, linked against libtorch) and torch is not installed "
                f"(mmcore's native extension has its own kernels only for {own}): "
                "pip install 'mmcore[torch]' (or export the program without them)"
            )
    return (
        f"program {path} needs operator(s) {names}, which no kernel library of the installed executorch "
        "provides: export the program with ops this ExecuTorch build has, or install the executorch "
        "version it was exported with (pip install executorch==1.5.1)"
    )


def _registered_operators() -> set[str]:
    from mmcore import native

    module = native.extension()
    if module is not None:
        return set(module.registered_operators())
    if not torch_installed():
        why = native.status().reason or "it is switched off (MMCORE_NATIVE=0)"
        raise RuntimeUnavailableError(
            f"mmcore cannot run programs here: its native extension is not usable ({why}) and the "
            "fallback, ExecuTorch's Python bindings, needs torch: fix the extension (reinstall mmcore in "
            "this environment with a C++ compiler) or pip install 'mmcore[torch]'"
        )
    import torch  # noqa: F401 - the bindings link libtorch
    from executorch.extension.pybindings import _C

    return set(_C._get_operator_names())


def _executorch_root() -> Path | None:
    from mmcore import native

    return native.executorch_root()


# Libraries whose kernels run on ExecuTorch's thread pool; creating the pool probes the CPU and logs
# the findings to stderr, so it is created here, quietly, once.
_THREADPOOL = "libexecutorch_threadpool.so"
_THREADPOOL_USERS = (
    "libexecutorch_kernels_optimized.so",
    "libexecutorch_kernels_quantized.so",
    "libexecutorch_backend_xnnpack.so",
    "libcustom_ops_aot_lib.so",
)
_GET_THREADPOOL = "_ZN10executorch9extension10threadpool14get_threadpoolEv"  # threadpool::get_threadpool()
_THREAD_COUNT = "_ZNK10executorch9extension10threadpool10ThreadPool16get_thread_countEv"  # get_thread_count()
_RESET = "_ZN10executorch9extension10threadpool10ThreadPool24_unsafe_reset_threadpoolEj"  # _unsafe_reset_threadpool(n)
_threadpool_started = False
_threadpool: int | None = None  # the ThreadPool* once created
_threadpool_library: ctypes.CDLL | None = None
_threadpool_limit: int | None = None  # threads for the pool when it is created (limit_threadpool)


def _start_threadpool(root: Path) -> None:
    global _threadpool_started, _threadpool, _threadpool_library
    if _threadpool_started:
        return
    _threadpool_started = True
    library = root / "lib" / _THREADPOOL
    if not library.exists():
        return
    with quiet_stderr():
        handle = ctypes.CDLL(str(library), mode=os.RTLD_GLOBAL)
        get_threadpool = getattr(handle, _GET_THREADPOOL, None)
        if get_threadpool is not None:
            get_threadpool.restype = ctypes.c_void_p
            get_threadpool.argtypes = []
            _threadpool = get_threadpool()
            _threadpool_library = handle
            if _threadpool_limit is not None:
                _shrink_threadpool(_threadpool_limit)  # before any program or delegate uses it


def threadpool_size() -> int | None:
    """Threads of ExecuTorch's kernel thread pool in this process; None when no program loaded so
    far needed it (portable kernels only)."""
    count = getattr(_threadpool_library, _THREAD_COUNT, None)
    if not _threadpool or count is None:
        return None
    count.restype = ctypes.c_size_t
    count.argtypes = [ctypes.c_void_p]
    return int(count(_threadpool))


def limit_threadpool(threads: int) -> bool:
    """Give ExecuTorch's kernel thread pool (one thread per core by default) at most `threads`
    threads in this process. Call it before loading a program: the pool is shrunk as it is created,
    before any delegate holds it (resetting a pool that kernels have used can hang). False, and the
    pool left alone, when it already exists."""
    global _threadpool_limit
    _threadpool_limit = threads
    return not _threadpool_started


def _shrink_threadpool(threads: int) -> None:
    size = threadpool_size()
    reset = getattr(_threadpool_library, _RESET, None)
    if size is None or size <= threads or reset is None:
        return
    reset.restype = ctypes.c_bool
    reset.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    reset(_threadpool, threads)  # (inside _start_threadpool's quiet_stderr: the runtime logs the reset)


def _load(library: Path) -> None:
    """dlopen a library globally (once); its static initialisers register kernels or a backend."""
    key = str(library)
    if key in _loaded:
        return
    with quiet_stderr():
        ctypes.CDLL(key, mode=os.RTLD_GLOBAL)
    _loaded.add(key)
    logger.debug("loaded %s", library)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence native (file-descriptor 2) stderr output, unless mmcore's logger is at DEBUG."""
    if logging.getLogger("mmcore").isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ---- the program flatbuffer (executorch/schema/program.fbs), read without a flatbuffers library ----

# Field slots: Program.execution_plan = 1; ExecutionPlan.values = 2, .chains = 5, .operators = 6,
# .delegates = 7; Operator.name = 0, .overload = 1; BackendDelegate.id = 0; Chain.instructions = 2;
# Instruction.instr_args (union: type 0, value 1); KernelCall.op_index = 0, .args = 1;
# EValue.val (union: type 0, value 1); Tensor.scalar_type = 0, .dim_order = 3.
_PROGRAM_EXECUTION_PLAN = 1
_PLAN_VALUES = 2
_PLAN_CHAINS = 5
_PLAN_OPERATORS = 6
_PLAN_DELEGATES = 7
_CHAIN_INSTRUCTIONS = 2
_INSTRUCTION_KERNEL_CALL = 1  # InstructionArguments.KernelCall
_EVALUE_TENSOR = 5  # KernelTypes.Tensor


def _read_needs(buf: Any) -> ProgramNeeds:
    root = _u32(buf, 0)
    operators: set[str] = set()
    backends: set[str] = set()
    kernel_keys: dict[str, set[KernelKey]] = {}
    for plan in _tables(buf, root, _PROGRAM_EXECUTION_PLAN):
        names = []
        for op in _tables(buf, plan, _PLAN_OPERATORS):
            name = _string(buf, op, 0)
            overload = _string(buf, op, 1)
            names.append(f"{name}.{overload}" if overload else name)
        operators.update(names)
        for delegate in _tables(buf, plan, _PLAN_DELEGATES):
            backends.add(_string(buf, delegate, 0))
        if OWN_KERNELS.intersection(names):
            for name, key in _own_kernel_calls(buf, plan, names):
                kernel_keys.setdefault(name, set()).add(key)
    keys = {name: frozenset(found) for name, found in kernel_keys.items()}
    return ProgramNeeds(frozenset(operators), frozenset(backends), keys)


def _own_kernel_calls(buf: Any, plan: int, names: list[str]) -> Iterator[tuple[str, KernelKey]]:
    """(operator, kernel key) of every call of an `OWN_KERNELS` operator in an execution plan."""
    values_field = _field(buf, plan, _PLAN_VALUES)
    values = values_field + _u32(buf, values_field)  # the vector; EValue i is read on demand
    for chain in _tables(buf, plan, _PLAN_CHAINS):
        for instruction in _tables(buf, chain, _CHAIN_INSTRUCTIONS):
            kind = _field(buf, instruction, 0)
            if not kind or buf[kind] != _INSTRUCTION_KERNEL_CALL:
                continue
            call = _table(buf, instruction, 1)
            name = names[_scalar(buf, call, 0, "<i")]
            if name not in OWN_KERNELS:
                continue
            key = []
            for index in _ints(buf, call, 1):
                element = values + 4 + 4 * index
                value = element + _u32(buf, element)
                kind = _field(buf, value, 0)
                if kind and buf[kind] == _EVALUE_TENSOR:
                    tensor = _table(buf, value, 1)
                    key.append((_scalar(buf, tensor, 0, "<b"), tuple(_bytes(buf, tensor, 3))))
            yield name, tuple(key)


def _u32(buf: Any, pos: int) -> int:
    value: int = struct.unpack_from("<I", buf, pos)[0]
    return value


def _field(buf: Any, table: int, slot: int) -> int:
    """Absolute position of a table field, or 0 when absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vtable_size = struct.unpack_from("<H", buf, vtable)[0]
    entry = 4 + 2 * slot
    if entry >= vtable_size:
        return 0
    offset: int = struct.unpack_from("<H", buf, vtable + entry)[0]
    return table + offset if offset else 0


def _table(buf: Any, table: int, slot: int) -> int:
    pos = _field(buf, table, slot)
    return pos + _u32(buf, pos)


def _scalar(buf: Any, table: int, slot: int, fmt: str) -> int:
    pos = _field(buf, table, slot)
    value: int = struct.unpack_from(fmt, buf, pos)[0] if pos else 0
    return value


def _ints(buf: Any, table: int, slot: int) -> tuple[int, ...]:
    pos = _field(buf, table, slot)
    if not pos:
        return ()
    vector = pos + _u32(buf, pos)
    count = _u32(buf, vector)
    return struct.unpack_from(f"<{count}i", buf, vector + 4)


def _bytes(buf: Any, table: int, slot: int) -> bytes:
    pos = _field(buf, table, slot)
    if not pos:
        return b""
    vector = pos + _u32(buf, pos)
    return bytes(buf[vector + 4 : vector + 4 + _u32(buf, vector)])


def _tables(buf: Any, table: int, slot: int) -> Iterator[int]:
    """The tables of a vector-of-tables field."""
    pos = _field(buf, table, slot)
    if not pos:
        return
    vector = pos + _u32(buf, pos)
    for i in range(_u32(buf, vector)):
        element = vector + 4 + 4 * i
        yield element + _u32(buf, element)


def _string(buf: Any, table: int, slot: int) -> str:
    pos = _field(buf, table, slot)
    if not pos:
        return ""
    start = pos + _u32(buf, pos)
    length = _u32(buf, start)
    return bytes(buf[start + 4 : start + 4 + length]).decode("utf-8")
