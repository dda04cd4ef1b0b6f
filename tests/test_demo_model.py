"""The built-in demo model answers correctly on fresh samples, through the real image/audio plugins."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmcore.demo import DEMO_CONFIG, demo_runner

COUNT = 150  # per task; >= 97% exact match allows at most 4 misses
SEED = 20261127  # not the training or the evaluation script's seeds


@pytest.fixture(scope="module")
def media_pm():
    import mmcore_audio
    import mmcore_image
    import mmcore_text

    from mmcore.plugins import PluginManager

    pm = PluginManager(entry_points=False)
    for name, module in (("text", mmcore_text), ("image", mmcore_image), ("audio", mmcore_audio)):
        pm.register(module, name=name)
    return pm


@pytest.mark.parametrize("task", ["image", "audio", "both"])
def test_accuracy_on_fresh_samples(task, media_pm):
    from mmcore_audio import AudioInput
    from mmcore_image import ImageInput

    from mmcore import TokensInput
    from mmcore.demo_model.constants import AUDIO_QUESTION, BOTH_QUESTION, IMAGE_QUESTION
    from mmcore.demo_model.data import eval_examples

    runner = demo_runner(media_pm)
    question = {"image": IMAGE_QUESTION, "audio": AUDIO_QUESTION, "both": BOTH_QUESTION}[task]
    misses = []
    for example in eval_examples(SEED, COUNT, task):
        inputs: list[object] = [TokensInput([0])]
        if example.picture is not None:
            inputs.append(ImageInput(example.picture))  # any size: the image plugin resizes it
        if example.clip is not None:
            inputs.append(AudioInput(example.clip.samples, sample_rate=example.clip.sample_rate))
        inputs.append(question)
        runner.reset()
        result = runner.generate(inputs, DEMO_CONFIG)
        if result.text != example.answer or result.stop_reason != "eos":
            misses.append((example.answer, result.text, result.stop_reason))
    accuracy = 1 - len(misses) / COUNT
    assert accuracy >= 0.97, f"{task}: {accuracy:.1%} exact match; misses: {misses[:5]}"


def test_demo_command_answers_about_the_shipped_samples():
    proc = subprocess.run(
        [sys.executable, "-m", "mmcore", "demo", "--json"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["text"] == "a red circle and a high tone"
    assert out["tokens"][-1] == 1 and out["stats"]["generated_tokens"] == len(out["tokens"]) - 1


@pytest.mark.slow
def test_first_use_export_shows_progress_and_no_library_warnings(tmp_path):
    """In a fresh cache (`MMCORE_CACHE_DIR`), `mmcore demo` exports with a progress bar on the
    terminal, says when it is done, shows no torch/ExecuTorch warnings and leaves no lock file."""
    import fcntl
    import os
    import pty
    import struct
    import termios
    import threading

    env = {**os.environ, "MMCORE_CACHE_DIR": str(tmp_path / "cache")}
    master, slave = pty.openpty()  # stderr is a terminal, as for a user
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # of 100 columns
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmcore", "demo", "--json"], stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=900)
    reader.join(10)
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, terminal[-3000:]
    assert json.loads(stdout)["text"] == "a red circle and a high tone"
    assert "exporting the demo model" in terminal
    assert "exported text_decoder" in terminal and "8/8" in terminal, terminal[-3000:]  # the bar's steps
    assert "demo model ready in" in terminal
    assert "Warning" not in terminal and "warnings.warn" not in terminal, terminal
    demo_dir = tmp_path / "cache" / "demo"
    assert [p.suffix for p in demo_dir.iterdir()] == [".pte"]  # no lock or temporary file left
