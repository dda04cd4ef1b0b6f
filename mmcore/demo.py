"""The built-in demo: a tiny multimodal model that tells which coloured shape it sees and which tone
it hears (`mmcore.demo_model`), run through the real image and audio plugins."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmcore.config import GenerationConfig
from mmcore.errors import UnsupportedInputError

if TYPE_CHECKING:
    from mmcore.chat_model import ChatModel
    from mmcore.demo_model.export import ExportProgress
    from mmcore.plugins import PluginManager
    from mmcore.runner import GenerationResult, MultimodalRunner

__all__ = [
    "DemoRequest",
    "demo_runner",
    "demo_chat_model",
    "demo_inputs",
    "sample_image",
    "sample_audio",
    "is_built",
    "DEMO_CONFIG",
    "SAMPLES_DIR",
]

#: Greedy, until the model's EOS (answers are a few tokens).
DEMO_CONFIG = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=16)
#: Clips are cut to the encoder's 3 s window rather than rejected.
DEMO_SETTINGS = {"audio": {"truncate": True}}


#: The folder of the shipped sample files (found without importing the demo model, which needs torch).
SAMPLES_DIR = Path(__file__).resolve().parent / "demo_model" / "samples"


def sample_image() -> Path:
    """The shipped sample photo (a red circle)."""
    return SAMPLES_DIR / "red_circle.jpg"


def sample_audio() -> Path:
    """The shipped sample recording (a high tone, stereo, 44.1 kHz)."""
    return SAMPLES_DIR / "high_tone.wav"


@dataclass(frozen=True)
class DemoRequest:
    """What to ask the demo model: an image, a recording, or both, and optionally the question."""

    image: Path | None = None
    audio: Path | None = None
    text: str | None = None


def is_built() -> bool:
    """Whether the demo program is already exported (the first export takes about 20 s)."""
    from mmcore.demo_model.export import cached_demo_path

    return cached_demo_path().is_file()


def demo_runner(
    plugin_manager: PluginManager | None = None, *, progress: ExportProgress | None = None
) -> MultimodalRunner:
    """A runner on the demo program (exported and cached on first use, calling `progress` after
    each export step)."""
    from mmcore.demo_model import export_demo_program, tokenizer_dir
    from mmcore.runner import MultimodalRunner

    program = export_demo_program(progress=progress)
    return MultimodalRunner(program, tokenizer_dir(), plugin_manager=plugin_manager, modality_settings=DEMO_SETTINGS)


def demo_chat_model(plugin_manager: PluginManager | None = None) -> ChatModel:
    """The demo program as a `ChatModel` (for `mmcore serve --demo`): a user turn of media and a
    question renders to the prompt it was trained on (BOS, the media in order, the question)."""
    from mmcore.chat_model import open_model
    from mmcore.demo_model import export_demo_program, tokenizer_dir

    return open_model(
        export_demo_program(),
        adapter="generic",
        tokenizer=tokenizer_dir(),
        settings=DEMO_SETTINGS,
        generation=DEMO_CONFIG.replace(num_bos=1),
        plugin_manager=plugin_manager,
    )


def demo_inputs(request: DemoRequest, plugin_manager: PluginManager) -> list[Any]:
    """The prompt the demo model was trained on: BOS, the media in order, then the question."""
    from mmcore.demo_model import AUDIO_QUESTION, BOTH_QUESTION, IMAGE_QUESTION
    from mmcore.inputs import TokensInput

    registry = plugin_manager.modality_registry()
    inputs: list[Any] = [TokensInput([0])]
    for kind, path in (("image", request.image), ("audio", request.audio)):
        if path is None:
            continue
        handler = registry.get(kind)
        if handler is None or not hasattr(handler, "parse_cli"):
            raise UnsupportedInputError(f"the demo needs the {kind} plugin (pip install mmcore-{kind})")
        inputs.append(handler.parse_cli(os.fspath(path)))
    default = BOTH_QUESTION if request.image and request.audio else IMAGE_QUESTION if request.image else AUDIO_QUESTION
    inputs.append(request.text or default)
    return inputs


def run_demo(request: DemoRequest, plugin_manager: PluginManager, **callbacks: Any) -> GenerationResult:
    """Ask the demo model; `callbacks` are passed to `generate` (e.g. `token_callback`)."""
    runner = demo_runner(plugin_manager)
    return runner.generate(demo_inputs(request, plugin_manager), DEMO_CONFIG, **callbacks)
