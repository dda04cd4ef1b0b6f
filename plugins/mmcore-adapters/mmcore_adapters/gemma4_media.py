"""Gemma 4 media as ExecuTorch's example prepares it (`examples/models/gemma4`).

Images: `image_utils.preprocess_image` (aspect-preserving bicubic resize to multiples of 48 px
within ``max_soft_tokens x 9`` patches, [0, 1] pixels, row-major 16x16 patches, (x, y) patch
positions, padding rows at position -1). Audio: 16-kHz mono samples padded to a multiple of 128,
the program's own `speech_transform` (log-mel inside the program), frames padded to ``48 k - 25``
with a validity mask, then `audio_encoder` (`run_gemma4._run_audio_pipeline`).
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mmcore.errors import InvalidInputError, PlaceholderMismatchError, ProgramError
from mmcore.inputs import EmbeddingsInput
from mmcore.program import Program

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "Gemma4Audio",
    "Gemma4Image",
    "encode",
    "prepare_audio",
    "preprocess_image",
]

PATCH_SIZE = 16
POOLING = 3
CELL = PATCH_SIZE * POOLING  # 48
AUDIO_SAMPLE_RATE = 16000
_PAD_SAMPLES = 128
_FRAME_LENGTH, _HOP = 320, 160  # speech_transform defaults (20 ms frames, 10 ms hop)


@dataclass(frozen=True)
class Gemma4Image:
    """A preprocessed image: `pixel_values` float32 ``[1, P, 768]``, `positions` int64 ``[1, P, 2]``."""

    pixel_values: npt.NDArray[np.float32]
    positions: npt.NDArray[np.int64]
    tokens: int


@dataclass(frozen=True)
class Gemma4Audio:
    """16-kHz mono samples padded to a multiple of 128, and the soft tokens they make."""

    samples: npt.NDArray[np.float32]
    tokens: int


# -- images ----------------------------------------------------------------------------------------
def _target_size(height: int, width: int, max_patches: int) -> tuple[int, int]:
    """`image_utils._get_aspect_ratio_preserving_size`: both sides multiples of 48."""
    factor = math.sqrt(max_patches * PATCH_SIZE**2 / (height * width))
    target_h = math.floor(factor * height / CELL) * CELL
    target_w = math.floor(factor * width / CELL) * CELL
    if target_h == 0 and target_w == 0:
        raise InvalidInputError(f"image {height}x{width} is too small for Gemma 4 ({CELL} px cells)")
    max_side = (max_patches // POOLING**2) * CELL
    if target_h == 0:
        target_h, target_w = CELL, min(math.floor(width / height) * CELL, max_side)
    elif target_w == 0:
        target_w, target_h = CELL, min(math.floor(height / width) * CELL, max_side)
    return target_h, target_w


def _rgb_image(item: Any) -> Any:
    from PIL import Image

    value = getattr(item, "source", item)  # mmcore_image.ImageInput keeps its source
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, (str, Path)):
        return Image.open(value).convert("RGB")
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(bytes(value))).convert("RGB")
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        return Image.fromarray(array)
    raise InvalidInputError(
        f"a Gemma 4 image must be a path, bytes, a PIL image or a uint8 [H, W, 3] array, got {type(value).__name__}"
    )


def preprocess_image(item: Any, max_soft_tokens: int) -> Gemma4Image:
    """Pixels and positions exactly as `image_utils.preprocess_image(path, max_soft_tokens)`."""
    from PIL import Image

    max_patches = max_soft_tokens * POOLING**2
    image = _rgb_image(item)
    pixels = np.array(image)  # [H, W, 3] uint8
    height, width = pixels.shape[:2]
    target_h, target_w = _target_size(height, width, max_patches)
    if (target_h, target_w) != (height, width):
        pixels = np.array(image.resize((target_w, target_h), Image.BICUBIC))
    chw = np.transpose(pixels.astype(np.float32) / 255.0, (2, 0, 1))  # [3, H, W]
    rows, cols = target_h // PATCH_SIZE, target_w // PATCH_SIZE
    patches = chw.reshape(3, rows, PATCH_SIZE, cols, PATCH_SIZE).transpose(1, 3, 2, 4, 0).reshape(rows * cols, -1)
    grid_x, grid_y = np.meshgrid(np.arange(cols), np.arange(rows), indexing="xy")
    positions = np.stack([grid_x, grid_y], axis=-1).reshape(-1, 2)
    tokens = patches.shape[0] // POOLING**2
    pad = max_patches - patches.shape[0]
    if pad > 0:
        patches = np.pad(patches, [(0, pad), (0, 0)], constant_values=0)
        positions = np.pad(positions, [(0, pad), (0, 0)], constant_values=-1)
    return Gemma4Image(
        np.ascontiguousarray(patches[None], dtype=np.float32),
        np.ascontiguousarray(positions[None], dtype=np.int64),
        tokens,
    )


# -- audio -----------------------------------------------------------------------------------------
def _wav_samples(path: Path) -> npt.NDArray[np.float32] | None:
    """16-bit mono 16-kHz WAV samples / 32768 (`run_gemma4.load_audio`), or None for other files."""
    try:
        with wave.open(str(path), "rb") as wf:
            if wf.getsampwidth() != 2 or wf.getnchannels() != 1 or wf.getframerate() != AUDIO_SAMPLE_RATE:
                return None
            raw = wf.readframes(wf.getnframes())
    except (wave.Error, EOFError):
        return None
    return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0


def _samples(item: Any) -> npt.NDArray[np.float32]:
    source = getattr(item, "source", item)
    if isinstance(source, (str, Path)):
        direct = _wav_samples(Path(source))
        if direct is not None:
            return direct
    from mmcore_audio import AudioInput, load_mono

    audio = item if isinstance(item, AudioInput) else AudioInput(source)
    return np.asarray(load_mono(audio, AUDIO_SAMPLE_RATE), dtype=np.float32)


def prepare_audio(item: Any) -> Gemma4Audio:
    """Samples padded to a multiple of 128 and their soft-token count (one per 4 log-mel frames)."""
    samples = _samples(item)
    if samples.ndim != 1 or samples.shape[0] < _FRAME_LENGTH + _HOP + 1:
        raise InvalidInputError(
            f"a Gemma 4 audio clip must be mono and at least {_FRAME_LENGTH + _HOP + 1} samples at 16 kHz, "
            f"got shape {list(samples.shape)}"
        )
    padded_len = -(-samples.shape[0] // _PAD_SAMPLES) * _PAD_SAMPLES
    padded = np.pad(samples, (0, padded_len - samples.shape[0]))
    frames = (padded_len + _FRAME_LENGTH // 2 - (_FRAME_LENGTH + 1)) // _HOP + 1
    return Gemma4Audio(np.ascontiguousarray(padded, dtype=np.float32), -(-frames // 4))


# -- encoding --------------------------------------------------------------------------------------
def _valid_frames(frames: int) -> int:
    """`run_gemma4.pad_to_valid_frames`: the encoder takes 48 k - 25 frames."""
    return 48 * ((frames + 25 + 47) // 48) - 25


def encode(program: Program, media: Gemma4Image | Gemma4Audio, *, where: str) -> EmbeddingsInput:
    """Embeddings ``[1, N, D]`` of the valid rows (N = the encoder's output mask), checked against
    the prompt's placeholder count."""
    if isinstance(media, Gemma4Image):
        kind = "image"
        outputs = program.method("vision_encoder").execute([media.pixel_values, media.positions])
    else:
        kind = "audio"
        mel = np.asarray(program.method("speech_transform").execute([media.samples])[0])  # [F, n_mels]
        frames = mel.shape[0]
        valid = _valid_frames(frames)
        features = np.zeros((1, valid, mel.shape[1]), dtype=np.float32)
        features[0, :frames] = mel
        mask = np.zeros((1, valid), dtype=np.bool_)
        mask[0, :frames] = True
        outputs = program.method("audio_encoder").execute([features, mask])
    embeds = np.asarray(outputs[0])
    if embeds.ndim != 3:
        raise ProgramError(f"{where}: the {kind} encoder returned shape {list(embeds.shape)}; expected [1, N, D]")
    rows = int(np.asarray(outputs[1]).sum()) if len(outputs) > 1 else media.tokens
    if rows != media.tokens:
        raise PlaceholderMismatchError(
            f"{where}: the prompt reserves {media.tokens} placeholder tokens for this {kind} but the encoder marks "
            f"{rows} rows valid; the program's {kind} encoder does not follow Gemma 4's example export"
        )
    return EmbeddingsInput(np.ascontiguousarray(embeds[:, :rows]))
