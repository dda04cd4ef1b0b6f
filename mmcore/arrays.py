"""Arrays on the run path: numpy, with ExecuTorch's dtype ids, and torch tensors converted at the edge.

mmcore runs programs on numpy arrays and never needs torch for it. The public API still takes
torch tensors wherever it takes arrays: `as_array` converts them (sharing memory where it can),
and it looks for torch only in `sys.modules`, so code that passes no tensor never imports torch.
numpy has no bfloat16; `ml_dtypes` (a numpy extension, no torch) provides it. Importing ml_dtypes
costs more than the rest of start-up, so it is imported only when a bfloat16 dtype is met: asking
for `BFLOAT16`, `SCALAR_TYPES[15]`, `numpy_dtype("bfloat16")` or converting a bfloat16 tensor.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BFLOAT16",
    "SCALAR_TYPES",
    "as_array",
    "bfloat16",
    "dtype_name",
    "is_bfloat16",
    "is_floating",
    "is_tensor",
    "numpy_dtype",
    "scalar_type",
    "to_float32",
    "to_torch",
]

if TYPE_CHECKING:
    #: numpy's bfloat16 (from ml_dtypes; imported on first access of this name).
    BFLOAT16: np.dtype[Any]

_BFLOAT16_ID = 15
_bfloat16: np.dtype[Any] | None = None


def bfloat16() -> np.dtype[Any]:
    """numpy's bfloat16 dtype (`ml_dtypes.bfloat16`), importing ml_dtypes the first time."""
    global _bfloat16
    if _bfloat16 is None:
        import ml_dtypes

        _bfloat16 = np.dtype(ml_dtypes.bfloat16)
    return _bfloat16


def __getattr__(name: str) -> Any:
    if name == "BFLOAT16":
        return bfloat16()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _ScalarTypes(Mapping[int, "np.dtype[Any]"]):
    """ExecuTorch ScalarType ids -> numpy dtypes; bfloat16's entry imports ml_dtypes when read."""

    def __init__(self, eager: dict[int, np.dtype[Any]]) -> None:
        self._eager = eager
        self._ids = sorted([*eager, _BFLOAT16_ID])

    def __getitem__(self, code: int) -> np.dtype[Any]:
        dtype = self._eager.get(code)
        if dtype is not None:
            return dtype
        if code == _BFLOAT16_ID:
            return bfloat16()
        raise KeyError(code)

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, code: object) -> bool:
        return code in self._eager or code == _BFLOAT16_ID

    def __repr__(self) -> str:
        return f"SCALAR_TYPES({dict(self)!r})"


_NUMPY_TYPES: dict[int, np.dtype[Any]] = {
    0: np.dtype(np.uint8),
    1: np.dtype(np.int8),
    2: np.dtype(np.int16),
    3: np.dtype(np.int32),
    4: np.dtype(np.int64),
    5: np.dtype(np.float16),
    6: np.dtype(np.float32),
    7: np.dtype(np.float64),
    11: np.dtype(np.bool_),
    27: np.dtype(np.uint16),
}
#: ExecuTorch ScalarType ids -> numpy dtypes (runtime/core/portable_type/scalar_type.h); 15 is
#: bfloat16 (reading it imports ml_dtypes).
SCALAR_TYPES: Mapping[int, np.dtype[Any]] = _ScalarTypes(_NUMPY_TYPES)
_SCALAR_TYPE_IDS: dict[np.dtype[Any], int] = {dtype: code for code, dtype in _NUMPY_TYPES.items()}
_FLOATING = frozenset({"float16", "float32", "float64", "bfloat16"})


def is_bfloat16(dtype: Any) -> bool:
    """True for bfloat16 (a numpy dtype or scalar type, a torch dtype or the name), checked without
    importing ml_dtypes."""
    if isinstance(dtype, np.dtype):
        return dtype.name == "bfloat16"
    if isinstance(dtype, type):
        return dtype.__name__ == "bfloat16"
    return dtype_name(dtype) == "bfloat16"


def scalar_type(dtype: npt.DTypeLike) -> int | None:
    """ExecuTorch's ScalarType id of a numpy (or torch) dtype, None if ExecuTorch has none."""
    if is_bfloat16(dtype):
        return _BFLOAT16_ID
    try:
        return _SCALAR_TYPE_IDS.get(numpy_dtype(dtype))
    except TypeError:
        return None


def dtype_name(dtype: Any) -> str:
    """A dtype's short name as torch and numpy both spell it (`float32`, `bfloat16`, `int64`)."""
    return str(dtype).removeprefix("torch.")


def is_floating(dtype: npt.DTypeLike) -> bool:
    """True for float16, bfloat16, float32 and float64."""
    return is_bfloat16(dtype) or numpy_dtype(dtype).name in _FLOATING


def is_tensor(value: object) -> bool:
    """True if `value` is a torch tensor (checked without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def numpy_dtype(dtype: Any) -> np.dtype[Any]:
    """The numpy dtype of a numpy dtype, a dtype name or a torch dtype (`torch.bfloat16` included)."""
    if isinstance(dtype, np.dtype):
        return dtype
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dtype, torch.dtype):
        name = dtype_name(dtype)
        if name == "bool":
            return np.dtype(np.bool_)
        return bfloat16() if name == "bfloat16" else np.dtype(name)
    if isinstance(dtype, str) and dtype == "bfloat16":
        return bfloat16()
    try:
        result: np.dtype[Any] = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"not a dtype: {dtype!r}") from exc
    return result


def as_array(value: Any) -> npt.NDArray[Any]:
    """`value` as a numpy array: arrays as they are, torch tensors converted (sharing memory when
    they are on the CPU; bfloat16 included), anything else through `np.asarray`."""
    if isinstance(value, np.ndarray):
        return value
    if is_tensor(value):
        tensor = value.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if dtype_name(tensor.dtype) == "bfloat16":
            torch = sys.modules["torch"]
            return np.asarray(tensor.view(torch.int16).numpy()).view(bfloat16())
        return np.asarray(tensor.numpy())
    return np.asarray(value)


def to_float32(array: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """`array` as float32 (itself when it already is)."""
    return array if array.dtype == np.float32 else array.astype(np.float32)


def to_torch(array: npt.NDArray[Any]) -> Any:
    """A torch tensor sharing `array`'s memory (for ExecuTorch's Python bindings, which need torch).

    Imports torch: only the bindings fallback and callers that asked for tensors use it.
    """
    import torch

    if is_bfloat16(array.dtype):
        return torch.from_numpy(_writeable(array).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(_writeable(array))


def _writeable(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    # torch.from_numpy warns on read-only arrays; ExecuTorch only reads inputs, so a copy is not needed
    # for correctness, but a read-only array (e.g. np.frombuffer of bytes) is copied to stay quiet.
    return array if array.flags.writeable else array.copy()
