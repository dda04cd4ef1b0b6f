"""Image preprocessing speed: mmcore-image vs transformers' image processors, one process.

    python3 bench/preprocess_image.py               # 25 repeats
    python3 bench/preprocess_image.py --repeats 51

Inputs are a photo-like 1280x960 image (gradients, shapes, noise), either decoded (a PIL image) or
as JPEG bytes (quality 90). Targets: LLaVA-1.5 (`CLIPImageProcessor`, shortest edge 336, bicubic,
centre crop 336, CLIP mean/std) and Gemma3 (`Gemma3ImageProcessor`, 896x896, bilinear, mean = std
= 0.5). Both sides produce a float32 `[1, 3, H, W]` numpy array; from bytes, transformers' time includes
`Image.open(...).convert("RGB")`. Calls are interleaved and medians reported, with the max abs
difference of the two tensors. "draft" rows decode the JPEG at reduced scale (`jpeg_draft=True`):
faster, not exact.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from mmcore_image import ImagePreprocessor, PreprocessSettings
from PIL import Image

from mmcore.testing import photo_like

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LLAVA = PreprocessSettings(
    size=(336, 336),
    resize_mode="shortest_edge_crop",
    resample="bicubic",
    do_normalize=True,
    image_mean=CLIP_MEAN,
    image_std=CLIP_STD,
)
GEMMA3 = PreprocessSettings(
    size=(896, 896), resample="bilinear", do_normalize=True, image_mean=(0.5,) * 3, image_std=(0.5,) * 3
)


def _median_ms(fn: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _processors() -> dict[str, Callable[[Image.Image], np.ndarray[Any, Any]]]:
    from transformers import CLIPImageProcessor, Gemma3ImageProcessor

    clip = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    gemma = Gemma3ImageProcessor(size={"height": 896, "width": 896})
    return {
        "LLaVA-1.5 336 (CLIPImageProcessor)": lambda im: clip(im, return_tensors="np")["pixel_values"],
        "Gemma3 896 (Gemma3ImageProcessor)": lambda im: gemma(im, return_tensors="np")["pixel_values"],
    }


def run(repeats: int) -> list[dict[str, Any]]:
    """One row per (target, input form): median ms of both sides, speed-up, max and mean abs difference."""
    photo = photo_like(1280, 960)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    encoded = buffer.getvalue()
    rows: list[dict[str, Any]] = []
    for (target, theirs), settings in zip(_processors().items(), (LLAVA, GEMMA3), strict=True):
        variants: list[tuple[str, Any, ImagePreprocessor, Callable[[], Image.Image]]] = [
            ("decoded 1280x960", photo, ImagePreprocessor(settings), lambda: photo),
            (
                "JPEG bytes",
                encoded,
                ImagePreprocessor(settings),
                lambda: Image.open(io.BytesIO(encoded)).convert("RGB"),
            ),
            (
                "JPEG bytes, draft",
                encoded,
                ImagePreprocessor(dataclasses.replace(settings, jpeg_draft=True)),
                lambda: Image.open(io.BytesIO(encoded)).convert("RGB"),
            ),
        ]
        for form, source, ours, reference_image in variants:
            delta = np.abs(ours(source) - theirs(reference_image()))
            diff, mean_diff = float(delta.max()), float(delta.mean())
            mine: list[float] = []
            other: list[float] = []
            for _ in range(repeats):  # interleaved, so load changes hit both sides
                mine += _median_ms(lambda o=ours, s=source: o(s), 1)
                other += _median_ms(lambda t=theirs, r=reference_image: t(r()), 1)
            ours_ms, theirs_ms = statistics.median(mine), statistics.median(other)
            rows.append(
                {
                    "target": target,
                    "input": form,
                    "mmcore_ms": ours_ms,
                    "transformers_ms": theirs_ms,
                    "speedup": theirs_ms / ours_ms,
                    "max_abs_diff": diff,
                    "mean_abs_diff": mean_diff,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    rows = run(args.repeats)
    lines = [
        "| target | input | mmcore-image ms | transformers ms | speed-up | max abs diff | mean abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['target']} | {r['input']} | {r['mmcore_ms']:.2f} | {r['transformers_ms']:.2f} | "
        f"{r['speedup']:.2f}x | {r['max_abs_diff']:.3g} | {r['mean_abs_diff']:.3g} |"
        for r in rows
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
