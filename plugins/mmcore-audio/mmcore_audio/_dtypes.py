"""Encoder dtypes as numpy dtypes, whichever form the program layer reports them in.

A dtype may come as a numpy dtype (or scalar type), an `ml_dtypes` dtype (bfloat16), a dtype name
("float32") or a torch dtype; only its name is read, so torch is never imported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmcore.errors import ConfigError

__all__ = ["as_dtype", "cast", "dtype_name"]


def dtype_name(dtype: object) -> str:
    """"float32", "bfloat16", "uint8", ... for `dtype` in any of the accepted forms."""
    if isinstance(dtype, str):
        return dtype.removeprefix("torch.")
    if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
        return np.dtype(dtype).name
    return str(dtype).removeprefix("torch.")


def as_dtype(dtype: object) -> np.dtype[Any]:
    """The numpy dtype named like `dtype`; bfloat16 is `ml_dtypes.bfloat16`.

    Raises `ConfigError` for names numpy does not know, or bfloat16 without ml_dtypes installed.
    """
    if isinstance(dtype, np.dtype):
        return dtype
    name = dtype_name(dtype)
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as exc:
            raise ConfigError(
                "the encoder takes bfloat16 input, which numpy gets from ml_dtypes; pip install ml_dtypes"
            ) from exc
        return np.dtype(ml_dtypes.bfloat16)
    try:
        return np.dtype(name)
    except TypeError as exc:
        raise ConfigError(f"unknown dtype {dtype!r}") from exc


def cast(values: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """`values` as C-contiguous `dtype` (no copy when it already is); float32 -> bfloat16 rounds to nearest even."""
    return np.ascontiguousarray(values, dtype=dtype)
