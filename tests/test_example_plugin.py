"""The example third-party plugin `examples/mmcore-video`, installed with pip like any plugin.

The session fixture runs `pip install --no-deps --no-build-isolation -e examples/mmcore-video`
(no network: no dependencies, and the build uses the installed setuptools) unless that checkout is
already installed, and leaves it installed. A video of N sampled frames must prefill exactly like
N image segments in a row.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import site
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from mmcore import ConfigError, GenerationConfig, InvalidInputError, MultimodalRunner, PrefillContext
from mmcore.assemble import load_config
from mmcore.chat import part_to_input
from mmcore.plugins import PluginManager
from mmcore.testing import VisionEncoderSpec, eager_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mmcore-video"
GREEDY = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=10)
N_FRAMES = 6  # frames in the test video; the default setting samples 4 of them: 0, 2, 3, 5
SAMPLED = [0, 2, 3, 5]
PROMPT = "what happens"


def _installed_from_example() -> bool:
    """True when the `mmcore-video` distribution is an editable install of this checkout."""
    try:
        direct_url = metadata.distribution("mmcore-video").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return False
    if not direct_url:
        return False
    url = urlparse(json.loads(direct_url).get("url", ""))
    return url.scheme == "file" and Path(unquote(url.path)).resolve() == EXAMPLE


@pytest.fixture(scope="session")
def video_plugin() -> Any:
    """The installed example plugin's module (pip-installing it first when needed)."""
    if not _installed_from_example():
        missing = [name for name in ("pip", "setuptools") if importlib.util.find_spec(name) is None]
        if missing:
            pytest.skip(f"cannot install examples/mmcore-video offline: {', '.join(missing)} not installed")
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        # The editable install adds a .pth import hook, which Python reads only at start-up.
        importlib.invalidate_caches()
        site.addsitedir(sysconfig.get_paths()["purelib"])
    return importlib.import_module("mmcore_video")


@pytest.fixture
def clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMCORE_PLUGINS", raising=False)
    monkeypatch.delenv("MMCORE_BLOCK_PLUGINS", raising=False)


@pytest.fixture
def video_pm(plugin_manager: PluginManager, video_plugin: Any) -> PluginManager:
    """A fresh manager with the text plugin and the example (not whatever else is installed)."""
    plugin_manager.register(video_plugin, name="video")
    return plugin_manager


@pytest.fixture(scope="module")
def vision(make_spec: Any, program_path: Any) -> tuple[Any, Path]:
    spec = make_spec(vision=VisionEncoderSpec())
    return spec, program_path(spec)


@pytest.fixture(scope="module")
def frames() -> list[Image.Image]:
    rng = np.random.default_rng(11)
    return [Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)) for _ in range(N_FRAMES)]


@pytest.fixture(scope="module")
def gif_path(tmp_path_factory: pytest.TempPathFactory, frames: list[Image.Image]) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
    return path


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory: pytest.TempPathFactory, frames: list[Image.Image]) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for i, frame in enumerate(frames):
        frame.save(folder / f"frame_{i + 8}.png")  # 8..13: name order would put 10-13 before 8, 9
    (folder / "notes.txt").write_text("not a frame")
    return folder


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _preprocess(runner: MultimodalRunner, pm: PluginManager, item: Any, settings: Any = None) -> np.ndarray:
    ctx = PrefillContext(program=runner.program, tokenizer=runner.tokenizer, settings=settings or {})
    prepared: np.ndarray = pm.modality_registry().get("video").preprocess(item, ctx)  # type: ignore[union-attr]
    assert isinstance(prepared, np.ndarray)
    return prepared


def test_installed_example_is_found_through_its_entry_point(video_plugin: Any, clean_plugin_env: None) -> None:
    pm = PluginManager()
    infos = {info.name: info for info in pm.plugin_infos()}
    assert "video" in infos, f"plugins found: {sorted(infos)}; failures: {pm.failures}"
    info = infos["video"]
    assert (info.distribution, info.version) == ("mmcore-video", "0.1.0")
    assert info.modalities == ["video"] and info.input_types == ["VideoInput"]
    assert info.hooks == ["mmcore_register_modalities"]
    assert not [f for f in pm.failures if f.name == "video"]


def test_video_prefills_like_its_frames_as_image_segments(
    video_plugin: Any, video_pm: PluginManager, vision: tuple[Any, Path], tokenizer_dir: Path, gif_path: Path
) -> None:
    from mmcore_image import ImagePreprocessor, PreprocessSettings

    spec, pte = vision
    runner = MultimodalRunner(pte, tokenizer_dir, plugin_manager=video_pm)
    result = runner.generate([video_plugin.VideoInput(gif_path), PROMPT], GREEDY)

    # The sampled frames, read and preprocessed here without the plugin.
    preprocessor = ImagePreprocessor(
        PreprocessSettings.from_mapping({}, runner.program.method_spec("vision_encoder").input(0))
    )
    with Image.open(gif_path) as gif:
        expected_frames = []
        for index in SAMPLED:
            gif.seek(index)
            expected_frames.append(preprocessor(gif.copy()))  # [1, 3, 32, 32]
    prepared = _preprocess(runner, video_pm, video_plugin.VideoInput(gif_path))
    assert np.array_equal(prepared, np.stack(expected_frames))

    ids = runner.tokenizer.encode(PROMPT)
    segments = [("image", frame) for frame in expected_frames] + [("tokens", ids)]
    assert result.tokens == eager_model(spec).greedy_generate(segments, GREEDY.max_new_tokens)
    assert result.prompt_tokens == len(SAMPLED) * spec.vision.rows + len(ids)


def test_directory_array_and_frame_counts(
    video_plugin: Any,
    video_pm: PluginManager,
    vision: tuple[Any, Path],
    tokenizer_dir: Path,
    frames: list[Image.Image],
    frame_dir: Path,
    gif_path: Path,
) -> None:
    VideoInput = video_plugin.VideoInput
    runner = MultimodalRunner(vision[1], tokenizer_dir, plugin_manager=video_pm)
    array = np.stack([np.asarray(frame) for frame in frames])  # [T, H, W, 3] uint8
    from_dir = _preprocess(runner, video_pm, VideoInput(frame_dir))
    assert from_dir.shape == (4, 1, 3, 32, 32)
    assert np.array_equal(from_dir, _preprocess(runner, video_pm, VideoInput(array)))  # natural file order
    assert np.array_equal(_preprocess(runner, video_pm, VideoInput(array[SAMPLED])), from_dir)

    assert _preprocess(runner, video_pm, VideoInput(array), {"frames": 2}).shape[0] == 2
    assert _preprocess(runner, video_pm, VideoInput(array, frames=3), {"frames": 2}).shape[0] == 3  # input wins
    everything = _preprocess(runner, video_pm, VideoInput(array, frames=50))  # fewer frames than asked: all
    assert np.array_equal(everything[SAMPLED], from_dir) and everything.shape[0] == N_FRAMES
    assert _preprocess(runner, video_pm, VideoInput(gif_path.read_bytes())).shape[0] == 4
    assert video_plugin.sample_indices(6, 4) == SAMPLED and video_plugin.sample_indices(2, 4) == [0, 1]


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda tmp: tmp, "no frame images"),
        (lambda tmp: tmp / "missing.gif", "does not exist"),
        (lambda tmp: _write(tmp / "broken.gif", b"GIF89a, but not really"), "not a readable"),
        (lambda tmp: np.zeros((0, 8, 8, 3), np.uint8), "no frames"),
        (lambda tmp: np.zeros((8, 8, 3), np.uint8), r"\[T, H, W, 3\]"),
        (lambda tmp: b"", "empty"),
        (lambda tmp: "https://example.com/clip.gif", "URLs are not fetched"),
    ],
    ids=["empty-dir", "missing", "unreadable", "no-frames", "wrong-shape", "empty-bytes", "url"],
)
def test_bad_videos_raise_invalid_input_naming_the_input(
    video_plugin: Any,
    video_pm: PluginManager,
    vision: tuple[Any, Path],
    tokenizer_dir: Path,
    tmp_path: Path,
    make_source: Any,
    message: str,
) -> None:
    runner = MultimodalRunner(vision[1], tokenizer_dir, plugin_manager=video_pm)
    with pytest.raises(InvalidInputError, match=rf"input 1 \(video .*{message}"):
        runner.generate(["look:", video_plugin.VideoInput(make_source(tmp_path))], GREEDY)
    assert runner.generate(["look:"], GREEDY).tokens  # the failed request left the runner usable


def test_settings_are_validated(
    video_plugin: Any, video_pm: PluginManager, vision: tuple[Any, Path], tokenizer_dir: Path, gif_path: Path
) -> None:
    with pytest.raises(ConfigError, match="frames"):
        load_config({"program": str(vision[1]), "video": {"frames": 0}}, plugin_manager=video_pm)
    with pytest.raises(ConfigError, match="video.fps"):
        load_config({"program": str(vision[1]), "video": {"fps": 2}}, plugin_manager=video_pm)
    config = load_config(
        {"program": str(vision[1]), "video": {"frames": 2, "resample": "nearest"}}, plugin_manager=video_pm
    )
    assert config.modalities["video"] == {"frames": 2, "resample": "nearest"}
    runner = MultimodalRunner(
        vision[1], tokenizer_dir, plugin_manager=video_pm, modality_settings={"video": {"size": 64}}
    )
    with pytest.raises(ConfigError, match=r"\[video\].*size"):
        runner.generate([video_plugin.VideoInput(gif_path), PROMPT], GREEDY)
    small = MultimodalRunner(
        vision[1], tokenizer_dir, plugin_manager=video_pm, modality_settings={"video": {"max_pixels": 100}}
    )
    with pytest.raises(InvalidInputError, match=r"input 0 \(video .*40x30 pixels exceed the max_pixels limit 100$"):
        small.generate([video_plugin.VideoInput(gif_path), PROMPT], GREEDY)
    with pytest.raises(InvalidInputError, match="positive integer"):
        video_plugin.VideoInput(gif_path, frames=0)


def test_chat_content_parts(video_plugin: Any, video_pm: PluginManager, gif_path: Path) -> None:
    registry = video_pm.modality_registry()
    item = part_to_input({"type": "video", "video": str(gif_path), "frames": 2}, registry, "message 0 part 0")
    assert isinstance(item, video_plugin.VideoInput) and item.source == gif_path and item.frames == 2
    with pytest.raises(InvalidInputError, match="needs a 'video'"):
        part_to_input({"type": "video"}, registry, "message 0 part 0")


def test_cli_run_with_video(
    video_plugin: Any, video_pm: PluginManager, vision: tuple[Any, Path], tokenizer_dir: Path, gif_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MMCORE_PLUGINS", "MMCORE_BLOCK_PLUGINS")}
    command = [
        sys.executable, "-m", "mmcore", "run", str(vision[1]), "--tokenizer", str(tokenizer_dir),
        "--video", str(gif_path), "--text", PROMPT, "--max-new-tokens", str(GREEDY.max_new_tokens), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    runner = MultimodalRunner(vision[1], tokenizer_dir, plugin_manager=video_pm)
    assert out["tokens"] == runner.generate([video_plugin.VideoInput(gif_path), PROMPT], GREEDY).tokens
