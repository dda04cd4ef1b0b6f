"""The example third-party plugin `examples/mmcore-video`, installed with pip like any plugin.

The session fixture copies the example to a temporary directory, `pip install --no-deps
--no-build-isolation --target`s it into another temporary directory (no network: no dependencies,
and the build uses the installed setuptools), puts that directory first on `sys.path` (and on
`PYTHONPATH` for subprocesses) and removes all of it afterwards: the environment running the tests
is never changed. A video of N sampled frames must prefill exactly like N image segments in a row.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

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


def _site_listing() -> list[str]:
    """What the running interpreter's site-packages holds (names only)."""
    return sorted(os.listdir(sysconfig.get_paths()["purelib"]))


@pytest.fixture(scope="session")
def video_target() -> Iterator[Path]:
    """A temporary directory the example is pip-installed into (removed after the session)."""
    missing = [name for name in ("pip", "setuptools") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"cannot install examples/mmcore-video offline: {', '.join(missing)} not installed")
    root = Path(tempfile.mkdtemp(prefix="mmcore-video-test-"))
    try:
        # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
        source = shutil.copytree(EXAMPLE, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
        target = root / "site"
        command = [
            sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile",
            "--disable-pip-version-check", "--target", str(target), str(source),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        yield target
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def site_before() -> list[str]:
    return _site_listing()


@pytest.fixture(scope="session")
def video_plugin(site_before: list[str], video_target: Path) -> Iterator[Any]:
    """The example plugin's module, imported from the temporary install (first on `sys.path`);
    afterwards `sys.path` and `sys.modules` are as before."""
    names = [name for name in sys.modules if name == "mmcore_video" or name.startswith("mmcore_video.")]
    hidden = {name: sys.modules.pop(name) for name in names}
    sys.path.insert(0, str(video_target))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module("mmcore_video")
        assert Path(module.__file__ or "").is_relative_to(video_target), module.__file__
        yield module
    finally:
        sys.path.remove(str(video_target))
        for name in [name for name in sys.modules if name == "mmcore_video" or name.startswith("mmcore_video.")]:
            del sys.modules[name]
        sys.modules.update(hidden)
        importlib.invalidate_caches()


def _env_with_plugin(target: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MMCORE_PLUGINS", "MMCORE_BLOCK_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_the_install_stays_in_its_temporary_directory(
    video_plugin: Any, video_target: Path, site_before: list[str]
) -> None:
    assert (video_target / "mmcore_video" / "__init__.py").is_file()
    assert [p.name for p in video_target.glob("mmcore_video-*.dist-info")] == ["mmcore_video-0.1.0.dist-info"]
    assert _site_listing() == site_before  # nothing was installed into the running environment
    assert not list(EXAMPLE.glob("*.egg-info")) and not (EXAMPLE / "build").exists()  # nor built in the checkout


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


def test_installed_example_is_found_through_its_entry_point(
    video_plugin: Any, video_target: Path, clean_plugin_env: None
) -> None:
    pm = PluginManager()
    infos = {info.name: info for info in pm.plugin_infos()}
    assert "video" in infos, f"plugins found: {sorted(infos)}; failures: {pm.failures}"
    info = infos["video"]
    assert (info.distribution, info.version) == ("mmcore-video", "0.1.0")
    assert Path(str(metadata.distribution("mmcore-video").locate_file("mmcore_video"))).is_relative_to(video_target)
    assert info.modalities == ["video"] and info.input_types == ["VideoInput"]
    assert info.hooks == ["mmcore_register_modalities", "mmcore_register_settings"]
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
    video_plugin: Any,
    video_target: Path,
    video_pm: PluginManager,
    vision: tuple[Any, Path],
    tokenizer_dir: Path,
    gif_path: Path,
) -> None:
    env = _env_with_plugin(video_target)
    command = [
        sys.executable, "-m", "mmcore", "run", str(vision[1]), "--tokenizer", str(tokenizer_dir),
        "--video", str(gif_path), "--text", PROMPT, "--max-new-tokens", str(GREEDY.max_new_tokens), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    runner = MultimodalRunner(vision[1], tokenizer_dir, plugin_manager=video_pm)
    assert out["tokens"] == runner.generate([video_plugin.VideoInput(gif_path), PROMPT], GREEDY).tokens
