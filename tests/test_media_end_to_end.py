"""Image, audio and text together, through the installed plugins, the runner and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmcore import GenerationConfig
from mmcore.cli import main
from mmcore.runner import MultimodalRunner
from mmcore.testing import AudioEncoderSpec, VisionEncoderSpec

GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=10)


@pytest.fixture
def media_plugins(plugin_manager):
    import mmcore_audio
    import mmcore_image

    plugin_manager.register(mmcore_image, name="image")
    plugin_manager.register(mmcore_audio, name="audio")
    return plugin_manager


@pytest.fixture
def both_encoders(make_spec, program_path):
    return program_path(make_spec(vision=VisionEncoderSpec(), audio=AudioEncoderSpec()))


@pytest.fixture(scope="module")
def media_files(tmp_path_factory):
    import soundfile

    folder = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    pixels = (rng.random((45, 70, 3)) * 255).astype(np.uint8)  # non-square, needs resizing
    Image.fromarray(pixels).save(folder / "photo.png")
    t = np.arange(int(0.3 * 22050)) / 22050
    tone = 0.4 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(folder / "tone.wav", np.stack([tone, 0.5 * tone], axis=1), 22050)  # stereo, 22.05 kHz
    return folder / "photo.png", folder / "tone.wav"


def test_image_audio_text_request_matches_cpp_fed_the_same_tensors(
    both_encoders, tokenizer_dir, media_plugins, media_files, cpp
):
    from mmcore_audio import AudioInput
    from mmcore_image import ImageInput

    photo, tone = media_files
    runner = MultimodalRunner(both_encoders, tokenizer_dir, plugin_manager=media_plugins)
    inputs = [ImageInput(photo), AudioInput(tone), "what do you see and hear"]
    result = runner.generate(inputs, GREEDY)

    # The same preprocessed arrays, fed to ExecuTorch's C++ runner (its binding takes torch tensors).
    torch = pytest.importorskip("torch")
    from mmcore import PrefillContext

    registry = media_plugins.modality_registry()
    ctx = PrefillContext(program=runner.program, tokenizer=runner.tokenizer)
    pixels = registry.handler_for(inputs[0]).preprocess(inputs[0], ctx)  # [1, 3, 32, 32]
    features = registry.handler_for(inputs[1]).preprocess(inputs[1], ctx)  # [B, 16, 40]
    assert isinstance(pixels, np.ndarray) and isinstance(features, np.ndarray)
    reference = cpp.generate(
        cpp.multimodal(both_encoders),
        cpp.inputs(
            [("image", torch.from_numpy(pixels[0])), ("audio", torch.from_numpy(features)), ("text", inputs[2])]
        ),
        10,
    )
    assert result.tokens == reference
    assert result.prompt_tokens == 16 + 10 * features.shape[0] + len(runner.tokenizer.encode(inputs[2]))


def test_cli_takes_media_in_command_line_order(capsys, both_encoders, tokenizer_dir, media_files, media_plugins):
    from mmcore_audio import AudioInput
    from mmcore_image import ImageInput

    photo, tone = media_files
    argv = [
        "run",
        str(both_encoders),
        "--tokenizer",
        str(tokenizer_dir),
        "--text",
        "listen",
        "--audio",
        str(tone),
        "--image",
        str(photo),
        "--max-new-tokens",
        "10",
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    runner = MultimodalRunner(both_encoders, tokenizer_dir, plugin_manager=media_plugins)
    expected = runner.generate(["listen", AudioInput(tone), ImageInput(photo)], GREEDY)
    assert out["tokens"] == expected.tokens


def test_modality_settings_change_preprocessing(both_encoders, tokenizer_dir, media_plugins, media_files, tmp_path):
    from mmcore_image import ImageInput

    photo, _ = media_files
    default = MultimodalRunner(both_encoders, tokenizer_dir, plugin_manager=media_plugins)
    nearest = MultimodalRunner(
        both_encoders,
        tokenizer_dir,
        plugin_manager=media_plugins,
        modality_settings={
            "image": {"resample": "nearest", "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "do_normalize": True}
        },
    )
    a = default.generate([ImageInput(photo), "hi"], GREEDY)
    b = nearest.generate([ImageInput(photo), "hi"], GREEDY)
    assert a.tokens != b.tokens
