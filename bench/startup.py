"""Whole-process start-up: `mmcore run` against a Python script that does the same with ExecuTorch's
C++ runner binding (`executorch.extension.llm.runner`), and `mmcore --help`. Wall time, CPU time
(user + sys, less sensitive to other load on the machine than wall time) and peak memory (max RSS)
of each process, interleaved over the repeats, medians.

The processes run with bytecode caching on (`PYTHONDONTWRITEBYTECODE` is removed from their
environment), as an installed package runs: the warm-up pass writes the `.pyc` files of an
editable install's sources, which a user's second run would find too.

    python3 bench/startup.py                       # 7 repeats, mmcore in this environment
    python3 bench/startup.py --minimal-python ~/.cache/mmcore/testing/venvs/minimal-*/bin/python
    python3 bench/startup.py --python before=/path/to/python   # more mmcore rows, another interpreter

Rows:
- `mmcore --help`;
- text: the tiny text program, prompt -> 24 greedy tokens (`mmcore run --raw`), vs the binding's
  TextLLMRunner on the same prompt;
- image+audio: the tiny multimodal program with a PNG and a WAV file (mmcore decodes and
  preprocesses them), vs the binding's MultimodalRunner fed already preprocessed arrays (loaded
  from .npy: the binding has no preprocessing, so its row does less work);
- export_llm programs (custom SDPA + KV-cache ops, which run on mmcore's own kernels; 8da4w + 8-bit
  embeddings) against the same decoder exported without custom ops and against the plain text
  program, through `mmcore run` (issue #10's 1.2x bound), in every environment measured.
`--minimal-python` adds the mmcore rows run by a torch-free environment's python (the one
tests/test_minimal_install.py builds); `--python LABEL=PATH` (repeatable) adds mmcore rows run by any
other interpreter (e.g. a wrapper that puts an older checkout first on PYTHONPATH, for before/after
runs). The binding script always runs here (it needs torch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PROMPT = "the quick brown fox jumps over the lazy dog"
QUESTION = "what do you see and hear"
N = 24
EXPORT_LLM = ("no_custom_ops", "custom_ops", "quantized")

BINDING_TEXT = """
import sys
from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner
pieces = []
runner = TextLLMRunner(sys.argv[1], sys.argv[2])
config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=int(sys.argv[4]))
runner.generate(sys.argv[3], config, pieces.append)
print(len(pieces))
"""

BINDING_MEDIA = """
import sys
import numpy as np
import torch
from executorch.extension.llm import runner as et
pieces = []
runner = et.MultimodalRunner(sys.argv[1], sys.argv[2])
inputs = [et.make_image_input(torch.from_numpy(np.load(sys.argv[3]))),
          et.make_audio_input(torch.from_numpy(np.load(sys.argv[4]))), et.make_text_input(sys.argv[5])]
config = et.GenerationConfig(echo=False, temperature=0.0, max_new_tokens=int(sys.argv[6]))
runner.generate(inputs, config, pieces.append)
print(len(pieces))
"""


# Runs the processes from a small interpreter: a child forked from this (torch-importing) process
# would count this process's memory in its peak RSS before it execs.
LAUNCHER = """
import json, os, subprocess, sys, time
results = []
env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
for command in json.loads(sys.argv[1]):
    start = time.perf_counter()
    # from "/", so that `python -m mmcore` imports the installed mmcore, not a checkout in the cwd
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/", env=env)
    stderr = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(" ".join(command) + " failed:\\n" + stderr[-2000:])
    results.append((wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime))
print(json.dumps(results))
"""


def measure(commands: Sequence[Sequence[str]]) -> list[tuple[float, float, float]]:
    """Wall seconds, peak RSS (MB) and CPU seconds of each whole process, run one after the other."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps([list(c) for c in commands])],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return [(wall, rss, cpu) for wall, rss, cpu in json.loads(done.stdout)]


def prepare(folder: Path) -> dict[str, Path]:
    """The programs, tokenizer and media files (built once, cached like the test programs)."""
    from PIL import Image

    from mmcore.testing import AudioEncoderSpec, ProgramSpec, VisionEncoderSpec, build_program, build_tokenizer
    from mmcore.testing.llama_export import LlamaExportSpec, build_llama_program
    from mmcore.testing.tokenizer import tokenizer_vocab_size

    tokenizer = build_tokenizer()
    vocab = tokenizer_vocab_size(tokenizer)
    files = {
        "tokenizer": tokenizer,
        "text": build_program(ProgramSpec(kind="text")),
        "media": build_program(ProgramSpec(vision=VisionEncoderSpec(), audio=AudioEncoderSpec())),
        "custom_ops": build_llama_program(LlamaExportSpec(vocab_size=vocab)).pte,
        "no_custom_ops": build_llama_program(LlamaExportSpec(vocab_size=vocab, use_sdpa_with_kv_cache=False)).pte,
        "quantized": build_llama_program(
            LlamaExportSpec(
                vocab_size=vocab, qmode="8da4w", group_size=32, embedding_quantize="8,0", use_sdpa_with_kv_cache=False
            )
        ).pte,
    }
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((45, 70, 3)) * 255).astype(np.uint8)).save(folder / "photo.png")
    import soundfile

    t = np.arange(int(0.3 * 16000)) / 16000
    soundfile.write(folder / "tone.wav", 0.4 * np.sin(2 * np.pi * 440 * t), 16000)
    files["photo"], files["tone"] = folder / "photo.png", folder / "tone.wav"
    files["photo_npy"], files["tone_npy"] = preprocessed(files, folder)
    return files


def preprocessed(files: dict[str, Path], folder: Path) -> tuple[Path, Path]:
    """The image and audio arrays mmcore's plugins feed the encoders, saved for the binding script."""
    from mmcore_audio import AudioInput
    from mmcore_image import ImageInput

    from mmcore import PrefillContext
    from mmcore.plugins import get_plugin_manager
    from mmcore.runner import MultimodalRunner

    runner = MultimodalRunner(files["media"], files["tokenizer"], plugin_manager=get_plugin_manager())
    registry = runner._plugins().modality_registry()
    paths = []
    for item, name in ((ImageInput(files["photo"]), "photo"), (AudioInput(files["tone"]), "tone")):
        handler = registry.handler_for(item)
        settings = runner.modality_settings.get(handler.name, {})
        ctx = PrefillContext(program=runner.program, tokenizer=runner.tokenizer, settings=settings)
        value = handler.preprocess(item, ctx)
        array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        path = folder / f"{name}.npy"
        np.save(path, np.ascontiguousarray(array))
        paths.append(path)
    return paths[0], paths[1]


def cases(files: dict[str, Path], mmcore_pythons: dict[str, str]) -> dict[str, list[str]]:
    here = sys.executable
    tok = str(files["tokenizer"])
    run_flags = ["--tokenizer", tok, "--raw", "--max-new-tokens", str(N), "--temperature", "0"]
    rows: dict[str, list[str]] = {}
    for label, python in mmcore_pythons.items():
        rows[f"mmcore --help ({label})"] = [python, "-m", "mmcore", "--help"]
        rows[f"text: mmcore run ({label})"] = [
            python,
            "-m",
            "mmcore",
            "run",
            str(files["text"]),
            "--text",
            PROMPT,
            *run_flags,
        ]
        rows[f"image+audio: mmcore run ({label})"] = [
            python, "-m", "mmcore", "run", str(files["media"]), "--image", str(files["photo"]),
            "--audio", str(files["tone"]), "--text", QUESTION, *run_flags,
        ]  # fmt: skip
    rows["text: C++ runner binding script"] = [here, "-c", BINDING_TEXT, str(files["text"]), tok, PROMPT, str(N)]
    rows["image+audio: C++ runner binding script"] = [
        here, "-c", BINDING_MEDIA, str(files["media"]), tok, str(files["photo_npy"]), str(files["tone_npy"]),
        QUESTION, str(N),
    ]  # fmt: skip
    for label, python in mmcore_pythons.items():
        for name in EXPORT_LLM:
            rows[f"export_llm {name}: mmcore run ({label})"] = [
                python, "-m", "mmcore", "run", str(files[name]), "--text", PROMPT, *run_flags,
            ]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--minimal-python", help="python of a torch-free environment with mmcore installed")
    parser.add_argument("--python", action="append", default=[], metavar="LABEL=PATH", help="more mmcore rows")
    args = parser.parse_args()
    pythons = {"this env": sys.executable}
    if args.minimal_python:
        pythons["torch-free env"] = args.minimal_python
    for item in args.python:
        label, eq, path = item.partition("=")
        if not (eq and label and path):
            parser.error(f"--python takes LABEL=PATH, got {item!r}")
        pythons[label] = path
    with tempfile.TemporaryDirectory() as tmp:
        rows = cases(prepare(Path(tmp)), pythons)
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in rows}
        measure(list(rows.values()))  # warm the page cache once
        for _ in range(args.repeats):
            for name, sample in zip(rows, measure(list(rows.values())), strict=True):  # interleaved
                results[name].append(sample)
    print(f"| process ({args.repeats} runs, medians) | wall s | CPU s (user+sys) | peak RSS MB |")
    print("|---|---|---|---|")
    for name, samples in results.items():
        wall = statistics.median(s[0] for s in samples)
        rss = statistics.median(s[1] for s in samples)
        cpu = statistics.median(s[2] for s in samples)
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {rss:.0f} |")
    for label in pythons:
        for kind in ("text", "image+audio"):
            ours = results[f"{kind}: mmcore run ({label})"]
            theirs = results[f"{kind}: C++ runner binding script"]
            wall = statistics.median(s[0] for s in ours) / statistics.median(s[0] for s in theirs)
            rss = statistics.median(s[1] for s in ours) / statistics.median(s[1] for s in theirs)
            cpu = statistics.median(s[2] for s in ours) / statistics.median(s[2] for s in theirs)
            print(f"{kind} ({label}): wall {wall:.2f}x, CPU {cpu:.2f}x, peak memory {rss:.2f}x the binding script")

    def median_wall(row: str) -> float:
        return statistics.median(s[0] for s in results[row])

    for label in pythons:
        plain = median_wall(f"text: mmcore run ({label})")
        same = median_wall(f"export_llm no_custom_ops: mmcore run ({label})")
        for name in ("custom_ops", "quantized"):
            other = median_wall(f"export_llm {name}: mmcore run ({label})")
            print(
                f"export_llm {name} ({label}): {other / same:.2f}x the decoder without custom ops, "
                f"{other / plain:.2f}x the plain text program (mmcore run wall)"
            )


if __name__ == "__main__":
    main()
