"""The windowed resampler equals Pillow's resize followed by a crop, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from mmcore_image import resample
from mmcore_image.resample import FILTERS, native_resampler, resize_window
from PIL import Image

NATIVE_FILTERS = ["bilinear", "bicubic", "lanczos", "box", "hamming"]


def _pillow(pixels, size, name, window):
    height, width = size
    y0, x0, h, w = window
    resized = np.asarray(Image.fromarray(pixels, "RGB").resize((width, height), FILTERS[name]))
    return resized[y0 : y0 + h, x0 : x0 + w]


def _cases(count, seed):
    """Random (pixels, size, filter, window): up- and down-scaling, smooth and noisy images."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        in_h, in_w, out_h, out_w = (int(v) for v in rng.integers(1, 260, 4))
        pixels = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
        if i % 2:  # smooth gradients, where rounding ties are likelier than in noise
            pixels = np.clip(np.cumsum(pixels.astype(np.int64), axis=1) // (np.arange(in_w)[None, :, None] + 1), 0, 255)
            pixels = pixels.astype(np.uint8)
        y0, x0 = int(rng.integers(0, out_h)), int(rng.integers(0, out_w))
        window = (y0, x0, int(rng.integers(1, out_h - y0 + 1)), int(rng.integers(1, out_w - x0 + 1)))
        if i % 3 == 0:
            window = (0, 0, out_h, out_w)
        yield pixels, (out_h, out_w), NATIVE_FILTERS[i % len(NATIVE_FILTERS)], window


def test_native_resampler_is_built_and_agrees_with_this_pillow():
    assert native_resampler() is not None, "mmcore_image._resample was not built (is a C compiler installed?)"


def test_windows_equal_pillow_resize_then_crop():
    mismatches = [
        (pixels.shape, size, name, window)
        for pixels, size, name, window in _cases(400, seed=1)
        if not np.array_equal(resize_window(pixels, size, name, window), _pillow(pixels, size, name, window))
    ]
    assert mismatches == []


def test_table_output_is_the_table_applied_to_the_pixels():
    rng = np.random.default_rng(2)
    table = rng.standard_normal((3, 256)).astype(np.float32)
    for pixels, size, name, window in _cases(60, seed=3):
        expected = _pillow(pixels, size, name, window)
        values = resize_window(pixels, size, name, window, table)
        assert values.dtype == np.float32 and values.shape == (3, window[2], window[3])
        np.testing.assert_array_equal(values, np.stack([table[c][expected[:, :, c]] for c in range(3)]))


@pytest.mark.parametrize(
    "shape, size",
    [
        ((300, 40, 3), (20, 35)),  # height shrinks far more than width: Pillow 13 resamples rows first
        ((960, 1280, 3), (336, 448)),  # LLaVA-1.5's resize of a 4:3 photo
        ((50, 60, 3), (50, 60)),  # no resize: the window is copied
        ((50, 60, 3), (50, 90)),  # columns only
        ((50, 60, 3), (20, 60)),  # rows only
    ],
)
def test_pass_orders_and_single_axis_resizes(shape, size):
    pixels = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    window = (size[0] // 4, size[1] // 5, size[0] - size[0] // 4, size[1] - 2 * (size[1] // 5))
    for name in NATIVE_FILTERS:
        np.testing.assert_array_equal(resize_window(pixels, size, name, window), _pillow(pixels, size, name, window))


def test_pillow_fallback_gives_the_same_pixels(monkeypatch):
    cases = list(_cases(30, seed=5))
    native = [resize_window(pixels, size, name, window) for pixels, size, name, window in cases]
    monkeypatch.setattr(resample, "native_resampler", lambda: None)
    for (pixels, size, name, window), expected in zip(cases, native, strict=True):
        np.testing.assert_array_equal(resize_window(pixels, size, name, window), expected)


def test_nearest_uses_pillow():
    pixels = np.random.default_rng(6).integers(0, 256, (31, 17, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        resize_window(pixels, (9, 40), "nearest"), _pillow(pixels, (9, 40), "nearest", (0, 0, 9, 40))
    )


def test_native_call_checks_its_arguments():
    native = native_resampler()
    assert native is not None
    pixels = np.zeros((10, 12, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="window inside the output"):
        native.module.resize_window(pixels, 10, 12, 5, 6, "bicubic", 0, 0, 6, 6, np.empty((6, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="dst must be"):
        native.module.resize_window(pixels, 10, 12, 5, 6, "bicubic", 0, 0, 5, 6, np.empty((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="src must be"):
        native.module.resize_window(pixels, 11, 12, 5, 6, "bicubic", 0, 0, 5, 6, np.empty((5, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown filter"):
        native.module.resize_window(pixels, 10, 12, 5, 6, "nearest", 0, 0, 5, 6, np.empty((5, 6, 3), np.uint8))
