"""The third-party adapter example installs with pip, registers through its entry point and runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mmcore-adapter-example"
DISTRIBUTION = "mmcore-adapter-example"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed_example():
    """The example installed in this environment (editable, no dependencies), removed afterwards unless it
    was there before."""
    already = _pip("show", DISTRIBUTION).returncode == 0
    result = _pip("install", "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    try:
        yield
    finally:
        if not already:
            _pip("uninstall", "-y", DISTRIBUTION)


def test_example_adapter_package(installed_example, tmp_path, make_spec, program_path, tokenizer_dir):
    from mmcore.testing import VisionEncoderSpec

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(program_path(make_spec(vision=VisionEncoderSpec())), folder / "model.pte")
    for file in Path(tokenizer_dir).iterdir():
        shutil.copy(file, folder / file.name)
    (folder / "config.json").write_text(json.dumps({"model_type": "example-chatml"}))
    image = folder / "image.png"
    from PIL import Image

    Image.new("RGB", (40, 24), (200, 40, 90)).save(image)
    script = textwrap.dedent(
        f"""
        import json, mmcore
        model = mmcore.open_model({str(folder / "model.pte")!r})
        messages = [{{"role": "user", "content": [{{"type": "image", "image": {str(image)!r}}},
                                                  {{"type": "text", "text": "the red ball"}}]}}]
        prompt = model.render(messages)
        result = model.chat(messages, mmcore.GenerationConfig(temperature=0.0, max_new_tokens=5))
        print(json.dumps({{"adapter": model.name, "reason": model.detection.reason,
                          "placeholders": prompt.ids.count(2), "tokens": len(result.tokens)}}))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"adapter": "example-chatml", "reason": "config.json model_type 'example-chatml'",
                   "placeholders": 16, "tokens": 5}  # fmt: skip
    listing = subprocess.run([sys.executable, "-m", "mmcore", "plugins"], capture_output=True, text=True, timeout=300)
    assert "adapters: example-chatml" in listing.stdout
