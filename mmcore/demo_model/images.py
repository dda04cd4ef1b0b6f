"""Synthetic shape pictures and the image preprocessing the vision encoder expects."""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from mmcore.demo_model.constants import IMAGE_RESCALE, IMAGE_SIZE, Colour, Shape

__all__ = ["ImageStyle", "draw_picture", "preprocess_image"]

RGB = tuple[int, int, int]
ChannelRanges = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

#: Per-channel ranges of each colour name (inclusive bounds).
_COLOUR_RANGES: dict[Colour, ChannelRanges] = {
    "red": ((170, 255), (0, 70), (0, 70)),
    "green": ((0, 80), (100, 255), (0, 90)),
    "blue": ((0, 80), (0, 120), (150, 255)),
    "yellow": ((200, 255), (185, 255), (0, 80)),
}


@dataclass(frozen=True)
class ImageStyle:
    """Ranges a picture generator draws from.

    Fields:
        sizes: fixed (width, height) choices; empty = a random size from ``short_side`` and ``aspect``.
        short_side: range of the shorter side in pixels.
        aspect: range of width / height (sampled log-uniformly).
        shape_fraction: shape size as a fraction of the shorter side.
        rotate_probability: chance a square or triangle is rotated by a random angle.
        light_background: chance of a tinted light background instead of pure white.
        noise_std: range of the Gaussian pixel-noise standard deviation (0-255 scale).
        jpeg_probability, jpeg_quality: chance of a JPEG round trip, and its quality range.
        colour_jitter: 1 samples colours from the full per-channel ranges; smaller values stay
            nearer the range centres.
        supersample_below: pictures whose longer side is at most this are drawn 3x larger and
            downscaled (antialiased edges).
    """

    sizes: tuple[tuple[int, int], ...] = ()
    short_side: tuple[int, int] = (36, 220)
    aspect: tuple[float, float] = (0.4, 2.5)
    shape_fraction: tuple[float, float] = (0.13, 0.62)
    rotate_probability: float = 0.5
    light_background: float = 0.5
    noise_std: tuple[float, float] = (0.0, 14.0)
    jpeg_probability: float = 0.7
    jpeg_quality: tuple[int, int] = (15, 95)
    colour_jitter: float = 1.0
    supersample_below: int = 128


def _picture_size(rng: np.random.Generator, style: ImageStyle) -> tuple[int, int]:
    """(width, height) of a new picture."""
    if style.sizes:
        width, height = style.sizes[int(rng.integers(len(style.sizes)))]
        return width, height
    short = int(rng.integers(style.short_side[0], style.short_side[1] + 1))
    aspect = math.exp(rng.uniform(math.log(style.aspect[0]), math.log(style.aspect[1])))
    return (round(short * aspect), short) if aspect >= 1 else (short, round(short / aspect))


def _colour(rng: np.random.Generator, name: Colour, jitter: float) -> RGB:
    """A random shade of ``name``."""
    values = []
    for low, high in _COLOUR_RANGES[name]:
        mid, half = (low + high) / 2, (high - low) / 2 * jitter
        values.append(round(rng.uniform(mid - half, mid + half)))
    return values[0], values[1], values[2]


def _background(rng: np.random.Generator, style: ImageStyle) -> RGB:
    """White, or a light (possibly slightly tinted) colour."""
    if rng.random() >= style.light_background:
        return (255, 255, 255)
    base = rng.uniform(215, 252)
    r, g, b = (round(min(255.0, base + rng.uniform(-12, 12))) for _ in range(3))
    return r, g, b


def _outline(shape: Shape, centre: tuple[float, float], size: float, angle: float) -> list[tuple[float, float]]:
    """Polygon vertices of a square or equilateral triangle of side ``size``, rotated by ``angle``."""
    if shape == "square":
        radius, corners, start = size / math.sqrt(2), 4, math.pi / 4
    else:
        radius, corners, start = size / math.sqrt(3), 3, -math.pi / 2  # apex up
    cx, cy = centre
    return [
        (
            cx + radius * math.cos(start + angle + 2 * math.pi * k / corners),
            cy + radius * math.sin(start + angle + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def _draw(
    canvas: Image.Image, shape: Shape, colour: RGB, centre: tuple[float, float], size: float, angle: float
) -> None:
    """Paint one filled shape on ``canvas``."""
    draw = ImageDraw.Draw(canvas)
    cx, cy = centre
    if shape == "circle":
        r = size / 2
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        draw.polygon(_outline(shape, centre, size, angle), fill=colour)


def _place(
    rng: np.random.Generator, shape: Shape, width: int, height: int, size: float, angle: float
) -> tuple[float, float]:
    """A random centre keeping the whole shape inside the picture."""
    if shape == "circle":
        half_w = half_h = size / 2
    else:
        xs, ys = zip(*_outline(shape, (0.0, 0.0), size, angle), strict=True)
        half_w, half_h = max(map(abs, xs)), max(map(abs, ys))
    half_w, half_h = min(half_w, width / 2), min(half_h, height / 2)
    return rng.uniform(half_w, width - half_w), rng.uniform(half_h, height - half_h)


@functools.cache
def _noise_bank() -> npt.NDArray[np.float32]:
    """A fixed block of standard-normal values that pictures take random slices of (fast noise)."""
    return np.random.default_rng(1234).standard_normal(1 << 22, dtype=np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """Standard-normal noise of ``shape``: a random slice of the bank, or fresh values when larger."""
    count, bank = math.prod(shape), _noise_bank()
    if count > bank.shape[0]:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(bank.shape[0] - count + 1))
    return bank[start : start + count].reshape(shape)


def _degrade(rng: np.random.Generator, picture: Image.Image, style: ImageStyle) -> Image.Image:
    """Add pixel noise and maybe a JPEG round trip."""
    std = rng.uniform(*style.noise_std)
    if std > 0:
        pixels = np.asarray(picture, dtype=np.float32)  # [H, W, 3]
        noisy = pixels + _noise(rng, pixels.shape) * np.float32(std)
        picture = Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < style.jpeg_probability:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=int(rng.integers(style.jpeg_quality[0], style.jpeg_quality[1] + 1)))
        picture = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return picture


def draw_picture(rng: np.random.Generator, shape: Shape, colour: Colour, style: ImageStyle) -> Image.Image:
    """An RGB picture with one filled ``colour`` ``shape`` on a white or light background."""
    width, height = _picture_size(rng, style)
    size = rng.uniform(*style.shape_fraction) * min(width, height)
    angle = rng.uniform(0, 2 * math.pi) if rng.random() < style.rotate_probability else 0.0
    centre = _place(rng, shape, width, height, size, angle)
    fill, background = _colour(rng, colour, style.colour_jitter), _background(rng, style)
    scale = 3 if max(width, height) <= style.supersample_below else 1
    canvas = Image.new("RGB", (width * scale, height * scale), background)
    _draw(canvas, shape, fill, (centre[0] * scale, centre[1] * scale), size * scale, angle)
    if scale > 1:
        canvas = canvas.resize((width, height), Image.Resampling.BOX)
    return _degrade(rng, canvas, style)


def preprocess_image(picture: Image.Image) -> npt.NDArray[np.float32]:
    """Vision-encoder input ``[3, IMAGE_SIZE, IMAGE_SIZE]`` in [0, 1]: stretch, bicubic, rescale."""
    rgb = picture.convert("RGB")
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    table = (np.arange(256, dtype=np.float64) * IMAGE_RESCALE).astype(np.float32)  # [256]
    pixels = np.asarray(rgb)  # [H, W, 3] uint8
    out: npt.NDArray[np.float32] = np.ascontiguousarray(table[pixels].transpose(2, 0, 1))  # [3, H, W]
    return out
