"""Multi-crop image preprocessing speed: SmolVLM image splitting and Gemma3 pan-and-scan, mmcore-image
vs transformers' processors, one process.

    python3 bench/preprocess_tiles.py               # 25 repeats
    python3 bench/preprocess_tiles.py --repeats 51

Input: the photo-like 1280x960 image of `bench/preprocess_image.py`, decoded (a PIL image) or as JPEG
bytes (quality 90). Targets:

- SmolVLM (`Idefics3ImageProcessor(do_image_splitting=True)`, SmolVLM's settings: longest edge 2048,
  512-px tiles, Lanczos, mean = std = 0.5): 4 x 3 tiles plus the global image, `[13, 3, 512, 512]`.
- Gemma3 (`Gemma3ImageProcessor(do_pan_and_scan=True)`, min crop 256, at most 4 crops, ratio 1.2,
  896x896 bilinear): the image and 2 crops, `[3, 3, 896, 896]`.

mmcore's side is what its adapters run per image: `split_image` / `pan_and_scan`, then the image
plugin's `ImagePreprocessor` on each tile, stacked. Calls are interleaved and medians reported, with
the max abs difference of the two tensors; the bench stops when the shapes differ or the difference
exceeds 1e-6 (exact).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from mmcore_image import ImagePreprocessor, PanAndScan, PreprocessSettings, pan_and_scan, split_image
from PIL import Image

from mmcore.testing import photo_like

HALF = (0.5, 0.5, 0.5)
SMOLVLM_TILE = 512
SMOLVLM_LONGEST_EDGE = 2048
SMOLVLM = PreprocessSettings(
    size=(SMOLVLM_TILE, SMOLVLM_TILE),
    resample="lanczos",
    pre_resize_longest_edge=SMOLVLM_TILE,
    do_normalize=True,
    image_mean=HALF,
    image_std=HALF,
)
GEMMA3 = PreprocessSettings(size=(896, 896), resample="bilinear", do_normalize=True, image_mean=HALF, image_std=HALF)
PAN_AND_SCAN = PanAndScan(min_crop_size=256, max_num_crops=4, min_ratio_to_activate=1.2)
#: Largest difference still called exact (float32 rounding of the same normalisation).
EXACT = 1e-6


def _ours() -> dict[str, Callable[[Any], np.ndarray[Any, Any]]]:
    smolvlm, gemma3 = ImagePreprocessor(SMOLVLM), ImagePreprocessor(GEMMA3)

    def split(source: Any) -> np.ndarray[Any, Any]:
        tiles = split_image(source, longest_edge=SMOLVLM_LONGEST_EDGE, tile=SMOLVLM_TILE, resample="lanczos").tiles
        return np.concatenate([smolvlm(t) for t in tiles])

    def crops(source: Any) -> np.ndarray[Any, Any]:
        return np.concatenate([gemma3(x) for x in pan_and_scan(source, PAN_AND_SCAN)])

    return {"SmolVLM splitting": split, "Gemma3 pan-and-scan": crops}


def _theirs() -> dict[str, Callable[[Image.Image], np.ndarray[Any, Any]]]:
    from transformers import Gemma3ImageProcessor, Idefics3ImageProcessor

    idefics = Idefics3ImageProcessor(
        do_image_splitting=True,
        size={"longest_edge": SMOLVLM_LONGEST_EDGE},
        max_image_size={"longest_edge": SMOLVLM_TILE},
        resample=Image.Resampling.LANCZOS,
    )
    gemma = Gemma3ImageProcessor(
        size={"height": 896, "width": 896},
        do_pan_and_scan=True,
        pan_and_scan_min_crop_size=PAN_AND_SCAN.min_crop_size,
        pan_and_scan_max_num_crops=PAN_AND_SCAN.max_num_crops,
        pan_and_scan_min_ratio_to_activate=PAN_AND_SCAN.min_ratio_to_activate,
    )
    return {
        "SmolVLM splitting": lambda im: idefics(im, return_tensors="np")["pixel_values"][0],
        "Gemma3 pan-and-scan": lambda im: gemma(im, return_tensors="np")["pixel_values"],
    }


def _ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def run(repeats: int) -> list[dict[str, Any]]:
    """One row per (target, input form): median ms of both sides, speed-up, crops, max abs difference."""
    photo = photo_like(1280, 960)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    encoded = buffer.getvalue()
    forms: list[tuple[str, Any, Callable[[], Image.Image]]] = [
        ("decoded 1280x960", photo, lambda: photo),
        ("JPEG bytes", encoded, lambda: Image.open(io.BytesIO(encoded)).convert("RGB")),
    ]
    theirs_by_target = _theirs()
    rows: list[dict[str, Any]] = []
    for target, ours in _ours().items():
        theirs = theirs_by_target[target]
        for form, source, reference_image in forms:
            mine_out, their_out = ours(source), theirs(reference_image())
            if mine_out.shape != their_out.shape:
                raise SystemExit(f"{target}, {form}: mmcore gives {mine_out.shape}, transformers {their_out.shape}")
            diff = float(np.abs(mine_out - their_out).max())
            if diff > EXACT:
                raise SystemExit(f"{target}, {form}: mmcore's pixels differ from transformers' by up to {diff}")
            mine: list[float] = []
            other: list[float] = []
            for _ in range(repeats):  # interleaved, so load changes hit both sides
                mine.append(_ms(lambda o=ours, s=source: o(s)))
                other.append(_ms(lambda t=theirs, r=reference_image: t(r())))
            ours_ms, theirs_ms = statistics.median(mine), statistics.median(other)
            rows.append(
                {
                    "target": target,
                    "input": form,
                    "crops": mine_out.shape[0],
                    "mmcore_ms": ours_ms,
                    "transformers_ms": theirs_ms,
                    "speedup": theirs_ms / ours_ms,
                    "max_abs_diff": diff,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    print("| target | input | encoder inputs | mmcore-image ms | transformers ms | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in run(args.repeats):
        print(f"| {r['target']} | {r['input']} | {r['crops']} | {r['mmcore_ms']:.2f} | {r['transformers_ms']:.2f} | "
              f"{r['speedup']:.2f}x | {r['max_abs_diff']:.3g} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
