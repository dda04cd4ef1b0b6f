"""The image input type."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeAlias, Union

import numpy as np
from PIL import Image

from mmcore.arrays import is_tensor

if TYPE_CHECKING:
    import torch

__all__ = ["ImageInput", "ImageSource"]

#: What an `ImageInput` may wrap: a file path, encoded bytes, a binary file object, a decoded
#: Pillow image, or pixels (numpy array or torch tensor, HWC or CHW, uint8 or float in [0, 1]).
ImageSource: TypeAlias = Union[
    str, os.PathLike[str], bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray[Any, Any], "torch.Tensor"
]


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
    if is_tensor(source):
        tensor: Any = source
        return f"tensor {str(tensor.dtype).removeprefix('torch.')}{list(tensor.shape)}"
    return type(source).__name__
