"""What `mmcore run` imports: optional heavy libraries load only when a request needs them.

Not timed (bench/startup.py measures start-up); these are the import rules that keep it short.
Each command runs in a fresh interpreter that sees only this project's plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

from mmcore.testing import AudioEncoderSpec, VisionEncoderSpec

_SCRIPT = """
import json, sys
from mmcore.cli import main
code = main(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""

#: Never on a plain run: torch, bfloat16 support (fp32 programs), the settings models (no settings
#: given), chat templates (none used), the tokenizer libraries of other formats, the event loop.
_NEVER = ("torch", "ml_dtypes", "pydantic", "jinja2", "tiktoken", "sentencepiece", "asyncio")
#: Pillow formats mmcore-image does not open (`Image.init()` would import them all).
_OTHER_PILLOW_FORMATS = ("PIL.EpsImagePlugin", "PIL.PdfImagePlugin", "PIL.PsdImagePlugin")


def _modules(args: list[str]) -> set[str]:
    env = {**os.environ, "MMCORE_PLUGINS": "text,image,audio,adapters"}
    env.pop("MMCORE_BLOCK_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(args)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr[-3000:]
    return set(report["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


def _flags(tokenizer_dir) -> list[str]:
    return ["--tokenizer", str(tokenizer_dir), "--max-new-tokens", "4", "--temperature", "0"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("startup-media")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((45, 70, 3)) * 255).astype(np.uint8)).save(folder / "photo.png")
    t = np.arange(4800) / 16000
    soundfile.write(folder / "tone.wav", 0.4 * np.sin(2 * np.pi * 440 * t), 16000)
    return str(folder / "photo.png"), str(folder / "tone.wav")


@pytest.mark.parametrize("raw", [True, False])
def test_a_text_run_imports_no_optional_library(raw, make_spec, program_path, tokenizer_dir):
    pte = program_path(make_spec(kind="text"))
    modules = _modules(["run", str(pte), "--text", "hello", *_flags(tokenizer_dir), *(["--raw"] if raw else [])])
    assert "mmcore._native" in modules  # the run happened on the native path
    assert _loaded(modules, (*_NEVER, "soundfile", "soxr")) == []


@pytest.mark.parametrize("raw", [True, False])
def test_an_image_and_audio_run_imports_only_what_decodes_them(raw, make_spec, program_path, tokenizer_dir, media):
    pte = program_path(make_spec(vision=VisionEncoderSpec(), audio=AudioEncoderSpec()))
    photo, tone = media
    args = ["run", str(pte), "--image", photo, "--audio", tone, "--text", "hi", *_flags(tokenizer_dir)]
    modules = _modules([*args, *(["--raw"] if raw else [])])
    assert {"PIL.PngImagePlugin", "soundfile"} <= modules
    assert _loaded(modules, (*_NEVER, *_OTHER_PILLOW_FORMATS)) == []


def test_settings_and_bfloat16_programs_import_their_libraries(make_spec, program_path, tokenizer_dir, media):
    photo, _ = media
    pte = program_path(make_spec(vision=VisionEncoderSpec()))
    modules = _modules(["run", str(pte), "--image", photo, "--set", "image.resample=bilinear", *_flags(tokenizer_dir)])
    assert "pydantic" in modules and "ml_dtypes" not in modules  # the [image] settings are validated
    bf16 = program_path(make_spec(vision=VisionEncoderSpec(dtype="bfloat16", rank=4)))
    modules = _modules(["run", str(bf16), "--image", photo, "--raw", *_flags(tokenizer_dir)])
    assert "ml_dtypes" in modules and "pydantic" not in modules  # bfloat16 pixels for the encoder


def test_empty_plugin_settings_give_what_validated_defaults_give():
    from mmcore_audio import AudioSettings
    from mmcore_image import PreprocessSettings

    from mmcore.program import TensorSpec

    # {} skips the pydantic table; a table that sets a key to its default goes through it
    pixels = TensorSpec(np.dtype(np.float32), (1, 3, 32, 32))
    assert PreprocessSettings.from_mapping({}, pixels) == PreprocessSettings.from_mapping({"do_resize": True}, pixels)
    features = TensorSpec(np.dtype(np.float32), (2, 80, 300))
    assert AudioSettings.for_encoder(features, {}) == AudioSettings.for_encoder(features, {"truncate": False})
