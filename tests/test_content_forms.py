"""Chat content parts in every form users write them, through `mmcore.open_model(...).chat`: OpenAI's
`image_url` / `input_audio`, Hugging Face's `image` / `audio` with `url`, `path`, `base64` or the value,
`data:` URIs, `file://` URLs and raw bytes all give the tokens of the plain path; bad ones are one
typed line naming the input and the fix, and leave the runner as it was."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mmcore_image")
pytest.importorskip("mmcore_audio")

import mmcore
from mmcore.errors import InvalidInputError, MediaNotFoundError, UnsupportedInputError
from mmcore.testing import AudioEncoderSpec, VisionEncoderSpec

CONFIG = mmcore.GenerationConfig(temperature=0.0, echo=False, max_new_tokens=4)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import soundfile
    from PIL import Image

    folder = tmp_path_factory.mktemp("forms")
    image = folder / "picture.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)).save(image)
    audio = folder / "clip.wav"
    t = np.arange(16_000) / 16_000
    soundfile.write(audio, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16_000, subtype="PCM_16")
    return {"image": image, "audio": audio}


@pytest.fixture(scope="module")
def model(make_spec: Any, program_path: Any, tokenizer_dir: Path) -> mmcore.ChatModel:
    pte = program_path(make_spec(vision=VisionEncoderSpec(), audio=AudioEncoderSpec()))
    return mmcore.open_model(pte, tokenizer=tokenizer_dir)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _uri(path: Path, media_type: str) -> str:
    return f"data:{media_type};base64,{_b64(path)}"


def _ask(model: mmcore.ChatModel, *parts: dict[str, Any]) -> list[int]:
    content = [*parts, {"type": "text", "text": "what is it"}]
    return model.chat([{"role": "user", "content": content}], CONFIG).tokens


IMAGE_FORMS = {
    "hf path": lambda p: {"type": "image", "path": str(p)},
    "hf url file://": lambda p: {"type": "image", "url": p.as_uri()},
    "hf url data URI": lambda p: {"type": "image", "url": _uri(p, "image/png")},
    "hf base64": lambda p: {"type": "image", "base64": _b64(p)},
    "raw bytes": lambda p: {"type": "image", "image": p.read_bytes()},
    "openai image_url": lambda p: {"type": "image_url", "image_url": {"url": _uri(p, "image/png")}},
    "openai image_url string": lambda p: {"type": "image_url", "image_url": _uri(p, "image/png")},
    "responses input_image": lambda p: {"type": "input_image", "image_url": _uri(p, "image/png")},
}
AUDIO_FORMS = {
    "hf path": lambda p: {"type": "audio", "path": str(p)},
    "hf url data URI": lambda p: {"type": "audio", "url": _uri(p, "audio/wav")},
    "hf base64": lambda p: {"type": "audio", "base64": _b64(p)},
    "raw bytes": lambda p: {"type": "audio", "audio": p.read_bytes()},
    "openai input_audio": lambda p: {"type": "input_audio", "input_audio": {"data": _b64(p), "format": "wav"}},
}


@pytest.mark.parametrize("form", sorted(IMAGE_FORMS))
def test_image_forms_give_the_tokens_of_the_path(model, media, form):
    expected = _ask(model, {"type": "image", "image": str(media["image"])})
    assert _ask(model, IMAGE_FORMS[form](media["image"])) == expected


@pytest.mark.parametrize("form", sorted(AUDIO_FORMS))
def test_audio_forms_give_the_tokens_of_the_path(model, media, form):
    expected = _ask(model, {"type": "audio", "audio": str(media["audio"])})
    assert _ask(model, AUDIO_FORMS[form](media["audio"])) == expected


BAD = {
    "remote URL": (
        lambda m: {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}},
        InvalidInputError,
        r"remote URL 'https://example.org/cat.png' refused: .*data: URI",
    ),
    "corrupt base64": (
        lambda m: {"type": "image", "base64": "iVBORw0KG@@@"},
        InvalidInputError,
        r"corrupt base64 payload .*standard base64",
    ),
    "corrupt base64 in a data URI": (
        lambda m: {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}},
        InvalidInputError,
        r"corrupt base64 payload",
    ),
    "data URI of the wrong media type": (
        lambda m: {"type": "image_url", "image_url": {"url": _uri(m["audio"], "audio/wav")}},
        InvalidInputError,
        r"data URI of type 'audio/wav' cannot be a image part; send image/\* data",
    ),
    "audio data URI sent as an image": (
        lambda m: {"type": "input_audio", "input_audio": {"data": _uri(m["image"], "image/png"), "format": "wav"}},
        InvalidInputError,
        r"'image/png' cannot be a audio part",
    ),
    "missing file": (
        lambda m: {"type": "image", "path": str(m["image"].with_name("nope.png"))},
        MediaNotFoundError,
        r"no such media file .*nope.png",
    ),
    "bytes that are no image": (
        lambda m: {"type": "image", "image": b"not an image at all"},
        InvalidInputError,
        r"image",
    ),
    "unknown part type": (
        lambda m: {"type": "video", "video": "clip.mp4"},
        UnsupportedInputError,
        r"no installed plugin handles 'video' content",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_parts_are_one_typed_line_and_leave_the_session_alone(model, media, case):
    part, error, match = BAD[case]
    picture = {"type": "image", "image": str(media["image"])}
    session = model.session()
    session.send({"role": "user", "content": [picture, {"type": "text", "text": "what is it"}]}, CONFIG)
    position, history = model.runner.pos, list(session.messages)
    with pytest.raises(error, match=match) as info:
        session.send({"role": "user", "content": [part(media), {"type": "text", "text": "and this"}]}, CONFIG)
    assert "\n" not in str(info.value)
    assert (model.runner.pos, session.messages) == (position, history)
    follow_up = {"role": "user", "content": [{"type": "text", "text": "and this"}]}
    fresh = model.session()
    fresh.set_history(history)
    assert session.send(follow_up, CONFIG).tokens == fresh.send(follow_up, CONFIG).tokens


def test_an_image_url_part_without_the_image_plugin_names_mmcore_image(make_spec, program_path, tokenizer_dir, media):
    import mmcore_adapters
    import mmcore_text

    from mmcore.plugins import PluginManager

    pm = PluginManager(entry_points=False)
    pm.register(mmcore_text, name="text")
    pm.register(mmcore_adapters, name="adapters")
    model = mmcore.open_model(program_path(make_spec()), tokenizer=tokenizer_dir, plugin_manager=pm)
    part = {"type": "image_url", "image_url": {"url": _uri(media["image"], "image/png")}}
    fix = r"'image' content \(install mmcore-image: pip install mmcore-image\)"
    with pytest.raises(UnsupportedInputError, match=fix):
        _ask(model, part)
