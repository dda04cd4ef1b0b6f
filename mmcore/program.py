"""The program layer: the only code that touches the ExecuTorch runtime.

Each compute method is loaded from its own runtime program, so running one method (an encoder with
large activations) can never overwrite another method's planned memory (the decoder's KV cache).
With mmcore's native extension (the default when it is built) programs load, describe themselves
and run through ExecuTorch's runtime libraries alone, on numpy arrays: no torch is imported. The
fallback, ExecuTorch's Python bindings, needs torch; it is imported lazily there and arrays are
converted at that edge. Its extension module is used directly: `executorch.runtime` imports
`executorch.exir`, which adds seconds to start-up and is not needed to run programs.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mmcore import kernels, native
from mmcore.arrays import SCALAR_TYPES, as_array, dtype_name, is_tensor, numpy_dtype, scalar_type, to_torch
from mmcore.errors import ExecutionError, InvalidProgramError, MissingMethodError

__all__ = [
    "SCALAR_TYPES",
    "BindingMethod",
    "LoadedMethod",
    "MethodSpec",
    "NativeMethod",
    "Program",
    "TensorSpec",
    "native_extension",
]

logger = logging.getLogger(__name__)

_FILE_IDENTIFIER_PREFIX = b"ET"
_EXTENDED_HEADER_MAGIC = b"eh00"
_MIN_PROGRAM_BYTES = 16
# Modules that register ExecuTorch's LLM custom ops and quantized kernels with the runtime.
_runtime_module: Any = None


@dataclass(frozen=True)
class TensorSpec:
    """A method input or output: numpy dtype (a torch dtype is converted) and shape (upper bounds
    for dynamic dimensions)."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", numpy_dtype(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def describe(self) -> str:
        return f"{dtype_name(self.dtype)}{list(self.shape)}"


@dataclass(frozen=True)
class MethodSpec:
    """A method's signature; `None` stands for a non-tensor value."""

    name: str
    inputs: tuple[TensorSpec | None, ...]
    outputs: tuple[TensorSpec | None, ...]

    def input(self, index: int) -> TensorSpec:
        spec = self.inputs[index] if index < len(self.inputs) else None
        if spec is None:
            raise ExecutionError(f"method '{self.name}' has no tensor input {index}")
        return spec


class LoadedMethod:
    """A compute method loaded with its own planned memory, ready to execute."""

    def __init__(self, name: str, spec: MethodSpec) -> None:
        self.name = name
        self.spec = spec

    def execute(self, inputs: Sequence[Any], *, clone_outputs: bool = True) -> list[Any]:
        """Run the method on numpy arrays (torch tensors are accepted too) and scalars. Without
        `clone_outputs` the outputs alias the method's memory and are valid only until its next call."""
        try:
            return self._run(inputs, clone_outputs)
        except RuntimeError as exc:
            shapes = ", ".join(_describe_value(x) for x in inputs)
            expected = ", ".join(s.describe() if s else "value" for s in self.spec.inputs)
            raise ExecutionError(
                f"executing method '{self.name}' failed: {exc}. Inputs were ({shapes}); the method "
                f"expects ({expected}) (dynamic dimensions show their upper bound)"
            ) from exc

    def _run(self, inputs: Sequence[Any], clone_outputs: bool) -> list[Any]:
        raise NotImplementedError

    def check_inputs(self, inputs: Sequence[Any]) -> None:
        """Raise `ExecutionError` unless the inputs fit the method's declared dtypes and bounds."""
        if len(inputs) != len(self.spec.inputs):
            raise ExecutionError(f"method '{self.name}' takes {len(self.spec.inputs)} inputs, got {len(inputs)}")
        for index, (value, spec) in enumerate(zip(inputs, self.spec.inputs, strict=True)):
            if spec is None:
                continue
            if not (isinstance(value, np.ndarray) or is_tensor(value)):
                raise ExecutionError(
                    f"method '{self.name}' input {index} must be an array {spec.describe()}, got {type(value).__name__}"
                )
            fits = numpy_dtype(value.dtype) == spec.dtype and len(value.shape) == spec.rank
            fits = fits and all(0 < n <= bound for n, bound in zip(value.shape, spec.shape, strict=True))
            if not fits:
                raise ExecutionError(
                    f"method '{self.name}' input {index} must be {spec.describe()} (dynamic dimensions "
                    f"show their upper bound), got {_describe_value(value)}"
                )


class BindingMethod(LoadedMethod):
    """A method loaded from its own runtime program of ExecuTorch's Python bindings."""

    def __init__(self, name: str, method: Any, spec: MethodSpec) -> None:
        super().__init__(name, spec)
        self._call = method.call

    def _run(self, inputs: Sequence[Any], clone_outputs: bool) -> list[Any]:
        # the bindings take torch tensors: numpy arrays are viewed as tensors here, at their edge
        tensors = [to_torch(np.require(x, requirements="C")) if isinstance(x, np.ndarray) else x for x in inputs]
        return [as_array(v) if is_tensor(v) else v for v in self._call(tensors, clone_outputs)]


class NativeMethod(LoadedMethod):
    """A method of a program loaded by mmcore's native extension (its own planned memory)."""

    def __init__(self, name: str, module: Any, spec: MethodSpec) -> None:
        super().__init__(name, spec)
        self.module = module
        #: What the native module raises when ExecuTorch fails (a RuntimeError subclass).
        self.runtime_error: type[RuntimeError] = sys.modules[type(module).__module__].ExecutorchError

    def _run(self, inputs: Sequence[Any], clone_outputs: bool) -> list[Any]:
        # `dense` keeps any contiguous copies alive while the runtime reads them
        dense = [_dense(x) for x in inputs]
        values = [_native_input(x) for x in dense]
        return [_native_output(v) for v in self.module.execute(self.name, values, not clone_outputs)]


class Program:
    """An ExecuTorch `.pte` program: its methods, their signatures and its constant metadata."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        data_path: str | os.PathLike[str] | None = None,
        native: bool | None = None,
    ):
        """Open `path` (and its external weights `data_path`).

        `native` runs the program through mmcore's native extension (default: when it was built,
        unless the environment sets MMCORE_NATIVE=0); no torch is imported then. False uses
        ExecuTorch's Python bindings (which import torch).
        """
        self.path = Path(path)
        self.data_path = Path(data_path) if data_path is not None else None
        validate_program_file(self.path)
        kernels.prepare(self.path)  # kernel and backend libraries the program needs, before any load
        self.native = native_extension() is not None if native is None else native
        if self.native and native_extension() is None:
            raise InvalidProgramError(
                "native=True but mmcore's native extension is not built; reinstall mmcore with a C++ "
                "compiler (scripts/setup.sh) or pass native=False"
            )
        # The native module (program metadata and every method), or the bindings' program index.
        self._native_module: Any = None
        self._index: Any = None
        if self.native:
            self._native_module = self._load_native_module()
            names = list(self._native_module.method_names())
        else:
            self._index = self._load_runtime_program()
            names = [self._index.get_method_name(i) for i in range(self._index.num_methods())]
        self.method_names: frozenset[str] = frozenset(names)
        self._specs: dict[str, MethodSpec] = {}
        self._constants: dict[str, Any] = {}
        self._methods: dict[str, LoadedMethod] = {}

    def __repr__(self) -> str:
        return f"Program({str(self.path)!r}, methods={sorted(self.method_names)})"

    def has_method(self, name: str) -> bool:
        return name in self.method_names

    def require(self, *names: str) -> None:
        """Raise `MissingMethodError` naming every absent method."""
        missing = [n for n in names if n not in self.method_names]
        if missing:
            raise MissingMethodError(
                f"program {self.path} has no method(s) {missing}; it has {sorted(self.method_names)}. "
                "Export the model with these methods (see ExecuTorch's LLM export contract)"
            )

    def method_spec(self, name: str) -> MethodSpec:
        """Input and output dtypes and shapes of a method."""
        spec = self._specs.get(name)
        if spec is None:
            self.require(name)
            if self.native:
                inputs, outputs = self._native_module.method_meta(name)
                spec = MethodSpec(name=name, inputs=_native_specs(inputs), outputs=_native_specs(outputs))
            else:
                meta = self._index.method_meta(name)
                spec = MethodSpec(
                    name=name,
                    inputs=tuple(_tensor_spec(meta, "input", i) for i in range(meta.num_inputs())),
                    outputs=tuple(_tensor_spec(meta, "output", i) for i in range(meta.num_outputs())),
                )
            self._specs[name] = spec
        return spec

    def constant(self, name: str) -> Any:
        """Value of a zero-input metadata method: a scalar, or a list when it returns several."""
        if name not in self._constants:
            self.require(name)
            try:
                if self.native:
                    module = self._load_native_method(name)
                    outputs = [_native_output(v) for v in module.execute(name, [], False)]
                else:
                    outputs = self._load_method(self._index, name).call([], True)
            except RuntimeError as exc:
                raise ExecutionError(f"reading metadata method '{name}' failed: {exc}") from exc
            values = [_scalar(v) for v in outputs]
            self._constants[name] = values[0] if len(values) == 1 else values
        return self._constants[name]

    def constant_or(self, name: str, default: Any) -> Any:
        return self.constant(name) if name in self.method_names else default

    def method(self, name: str) -> LoadedMethod:
        """A compute method, loaded once with its own planned memory."""
        loaded = self._methods.get(name)
        if loaded is None:
            spec = self.method_spec(name)
            if self.native:
                loaded = NativeMethod(name, self._load_native_method(name), spec)
            else:
                loaded = BindingMethod(name, self._load_method(self._load_runtime_program(), name), spec)
            self._methods[name] = loaded
        return loaded

    @cached_property
    def metadata_names(self) -> frozenset[str]:
        """Names of the zero-input methods (constant metadata)."""
        return frozenset(n for n in self.method_names if not self.method_spec(n).inputs)

    def _load_runtime_program(self) -> Any:
        runtime = _runtime()
        try:
            return runtime._load_program(
                str(self.path),
                enable_etdump=False,
                debug_buffer_size=0,
                program_verification=runtime.Verification.InternalConsistency,
                data_path=str(self.data_path) if self.data_path else None,
            )
        except (RuntimeError, ValueError) as exc:
            raise InvalidProgramError(f"ExecuTorch could not load {self.path}: {exc}") from exc

    def _load_native_module(self) -> Any:
        """The program in mmcore's native module (its kernels and backends registered first)."""
        try:
            return native_extension().Module(str(self.path), str(self.data_path) if self.data_path else None)
        except RuntimeError as exc:
            raise InvalidProgramError(f"ExecuTorch could not load {self.path}: {exc}") from exc

    def _load_native_method(self, name: str) -> Any:
        """Load a method into the native module (its kernels were registered by `kernels.prepare`)."""
        try:
            self._native_module.load_method(name)
        except RuntimeError as error:
            message = f"loading method '{name}' of {self.path} failed: {error}. {self._load_hint()}"
            raise InvalidProgramError(message) from error
        return self._native_module

    def _load_hint(self) -> str:
        hint = "If the log mentions a missing operator, the program needs a kernel library this ExecuTorch build lacks"
        if self.data_path is None:
            hint += (
                "; if it says 'external_data_map is null', the program keeps its weights in a separate "
                ".ptd file: pass it as data_path (--data-path / data_path in a config)"
            )
        return hint

    def _load_method(self, runtime_program: Any, name: str) -> Any:
        try:
            return runtime_program.load_method(name)
        except RuntimeError as error:
            message = f"loading method '{name}' of {self.path} failed: {error}. {self._load_hint()}"
            raise InvalidProgramError(message) from error


def validate_program_file(path: Path) -> None:
    """Check that a file is a whole ExecuTorch program before the runtime sees it.

    The runtime aborts the process on some malformed files, so the header is checked here: the
    flatbuffer file identifier (`ET..` at bytes 4-8) and, when present, the extended header's sizes.
    """
    if not path.exists():
        raise InvalidProgramError(f"program file {path} does not exist")
    if not path.is_file():
        raise InvalidProgramError(f"program path {path} is not a file")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(40)
    if size < _MIN_PROGRAM_BYTES or head[4:6] != _FILE_IDENTIFIER_PREFIX or not head[6:8].isdigit():
        raise InvalidProgramError(
            f"{path} is not an ExecuTorch program: expected a .pte file (flatbuffer identifier 'ETnn' "
            f"at byte 4), found {head[4:8]!r}. Export the model with executorch.exir to get a .pte"
        )
    if head[8:12] == _EXTENDED_HEADER_MAGIC and len(head) >= 32:
        (program_size,) = struct.unpack_from("<Q", head, 16)
        (segment_base,) = struct.unpack_from("<Q", head, 24)
        segment_size = struct.unpack_from("<Q", head, 32)[0] if len(head) >= 40 else 0
        if program_size > size or (segment_base and segment_base + segment_size > size):
            expected = max(program_size, segment_base + segment_size)
            raise InvalidProgramError(
                f"{path} is truncated: its header describes {expected} bytes but the file has {size}. "
                "Copy or export the program again"
            )


def native_extension() -> Any:
    """mmcore's native extension module, or None when it is unusable (see mmcore.native) or MMCORE_NATIVE=0."""
    return native.extension()


def _dense(value: Any) -> Any:
    """Arrays as C-contiguous numpy arrays (torch tensors converted, sharing memory); scalars as they are."""
    if isinstance(value, np.ndarray) or is_tensor(value):
        return np.require(as_array(value), requirements="C")
    return value


def _native_input(value: Any) -> Any:
    """A contiguous array as (data_ptr, dtype id, shape) for the native extension; scalars as they are."""
    if isinstance(value, np.ndarray):
        code = scalar_type(value.dtype)
        if code is None:
            raise RuntimeError(f"input dtype {value.dtype} is not supported by ExecuTorch")
        return (value.ctypes.data, code, value.shape)
    return value


def _native_output(value: Any) -> Any:
    """A native output as a numpy array (sharing the returned buffer); scalars as they are."""
    if not isinstance(value, tuple):
        return value
    code, shape, buffer = value
    dtype = SCALAR_TYPES.get(code)
    if dtype is None:
        raise RuntimeError(f"output dtype (ExecuTorch scalar type {code}) is not supported")
    array: npt.NDArray[Any] = np.frombuffer(buffer, dtype=dtype) if len(buffer) else np.empty(0, dtype=dtype)
    return array.reshape(shape)


def _native_specs(values: Sequence[tuple[int, Sequence[int]] | None]) -> tuple[TensorSpec | None, ...]:
    """TensorSpecs of the native module's (dtype id, shape) pairs; None for non-tensor values and
    dtypes numpy cannot hold."""
    specs: list[TensorSpec | None] = []
    for value in values:
        dtype = SCALAR_TYPES.get(value[0]) if value is not None else None
        specs.append(TensorSpec(dtype, tuple(value[1])) if value is not None and dtype is not None else None)
    return tuple(specs)


def _runtime() -> Any:
    """ExecuTorch's runtime extension module (torch is imported first: it loads libtorch)."""
    global _runtime_module
    if _runtime_module is None:
        import torch  # noqa: F401
        from executorch.extension.pybindings import _C

        # Creating the thread pool logs CPU probing details to stderr; create it quietly, once.
        with kernels.quiet_stderr():
            _C._threadpool_get_thread_count()
        _runtime_module = _C
    return _runtime_module


def _tensor_spec(meta: Any, kind: str, index: int) -> TensorSpec | None:
    try:
        info = meta.input_tensor_meta(index) if kind == "input" else meta.output_tensor_meta(index)
    except (RuntimeError, IndexError):
        return None
    dtype = SCALAR_TYPES.get(int(info.dtype()))
    if dtype is None:
        return None
    return TensorSpec(dtype=dtype, shape=tuple(int(n) for n in info.sizes()))


def _scalar(value: Any) -> Any:
    if isinstance(value, np.ndarray) or is_tensor(value):
        return as_array(value).item()
    return value


def _describe_value(value: Any) -> str:
    if isinstance(value, np.ndarray) or is_tensor(value):
        return f"{dtype_name(value.dtype)}{list(value.shape)}"
    return type(value).__name__
