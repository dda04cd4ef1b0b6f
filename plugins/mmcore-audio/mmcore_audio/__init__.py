"""mmcore-audio: the audio modality (decoding, resampling, Whisper-style log-mel features)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmcore import hookimpl
from mmcore.registry import ModalityRegistrar
from mmcore_audio.handler import AUDIO_ENCODER, AudioHandler
from mmcore_audio.inputs import AudioInput
from mmcore_audio.loading import load_mono
from mmcore_audio.mel import LogMelSpectrogram, MelConfig, log_mel_spectrogram, mel_filter_bank
from mmcore_audio.processor import AudioProcessor
from mmcore_audio.settings import AudioSettings

if TYPE_CHECKING:
    from mmcore.settings import SettingsRegistrar
    from mmcore_audio.table import SETTING_KEYS, AudioTable

__all__ = [
    "AUDIO_ENCODER",
    "SETTING_KEYS",
    "AudioHandler",
    "AudioInput",
    "AudioProcessor",
    "AudioSettings",
    "AudioTable",
    "LogMelSpectrogram",
    "MelConfig",
    "load_mono",
    "log_mel_spectrogram",
    "mel_filter_bank",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("AudioTable", "SETTING_KEYS"):  # the pydantic table: imported on first use
        from mmcore_audio import table

        return getattr(table, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def mmcore_register_modalities(registry: ModalityRegistrar) -> None:
    """Register the audio handler (`AudioInput`)."""
    registry.add(AudioHandler())


@hookimpl
def mmcore_register_settings(registry: SettingsRegistrar) -> None:
    """The `[audio]` table's schema and validation."""
    from mmcore_audio.table import AudioTable

    registry.add("audio", AudioTable)
