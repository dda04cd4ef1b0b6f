"""The image input type."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, Any, TypeAlias

import numpy as np
import torch
from PIL import Image

__all__ = ["ImageInput", "ImageSource"]

#: What an `ImageInput` may wrap: a file path, encoded bytes, a binary file object, a decoded
#: Pillow image, or pixels (numpy array or torch tensor, HWC or CHW, uint8 or float in [0, 1]).
ImageSource: TypeAlias = (
    str
    | os.PathLike[str]
    | bytes
    | bytearray
    | memoryview
    | IO[bytes]
    | Image.Image
    | np.ndarray[Any, Any]
    | torch.Tensor
)


@dataclass(frozen=True, eq=False)
class ImageInput:
    """One image of a request; `source` is decoded when the request is prefilled.

    A `str` source is a local path: URLs are refused (download the file first). Pillow images may
    also be passed without this wrapper.
    """

    source: ImageSource

    def __repr__(self) -> str:
        return f"ImageInput({describe_source(self.source)})"


def describe_source(source: object) -> str:
    """A short description of an image source for messages (never its whole content)."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"{len(source)} bytes"
    if isinstance(source, Image.Image):
        return f"PIL image {source.mode} {source.size[0]}x{source.size[1]}"
    if isinstance(source, np.ndarray):
        return f"numpy {source.dtype}{list(source.shape)}"
    if isinstance(source, torch.Tensor):
        return f"tensor {str(source.dtype).removeprefix('torch.')}{list(source.shape)}"
    return type(source).__name__
