"""Preprocessing speed, images and audio, against transformers' processors, in one run.

    python3 bench/preprocess.py                 # 25 repeats each
    python3 bench/preprocess.py --repeats 51

Runs `bench/preprocess_image.py` (1280x960 photo -> LLaVA-1.5 336 and Gemma3 896 pixel tensors,
decoded and from JPEG bytes), `bench/preprocess_tiles.py` (the same photo -> SmolVLM's 13 split
tiles and Gemma3's image + 2 pan-and-scan crops) and `bench/preprocess_audio.py` (30 s 16 kHz mono -> 128-bin log-mel;
30 s 44.1 kHz stereo WAV file -> features) and prints one markdown table with medians, speed-ups and
the max abs difference of the outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import preprocess_audio
import preprocess_image
import preprocess_tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    print("| case | mmcore ms | transformers ms | speed-up | max abs diff |")
    print("|---|---|---|---|---|")
    for r in preprocess_image.run(args.repeats):
        print(f"| image: {r['target']}, {r['input']} | {r['mmcore_ms']:.2f} | {r['transformers_ms']:.2f} | "
              f"{r['speedup']:.2f}x | {r['max_abs_diff']:.3g} |", flush=True)  # fmt: skip
    for r in preprocess_tiles.run(args.repeats):
        print(f"| image: {r['target']} ({r['crops']} encoder inputs), {r['input']} | {r['mmcore_ms']:.2f} | "
              f"{r['transformers_ms']:.2f} | {r['speedup']:.2f}x | {r['max_abs_diff']:.3g} |", flush=True)  # fmt: skip
    for r in preprocess_audio.run(args.repeats):
        print(f"| audio: {r['case']} | {r['mmcore_audio_ms']:.2f} | {r['transformers_ms']:.2f} | "
              f"{r['speedup']:.2f}x | {r['max_abs_diff']:.3g} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
