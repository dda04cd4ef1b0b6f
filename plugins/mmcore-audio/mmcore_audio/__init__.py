"""mmcore-audio: the audio modality (decoding, resampling, Whisper-style log-mel features)."""

from __future__ import annotations

from mmcore import hookimpl
from mmcore.registry import ModalityRegistrar
from mmcore.settings import SettingsRegistrar
from mmcore_audio.handler import AUDIO_ENCODER, AudioHandler
from mmcore_audio.inputs import AudioInput
from mmcore_audio.loading import load_mono
from mmcore_audio.mel import LogMelSpectrogram, MelConfig, log_mel_spectrogram, mel_filter_bank
from mmcore_audio.processor import AudioProcessor
from mmcore_audio.settings import SETTING_KEYS, AudioSettings, AudioTable

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


@hookimpl
def mmcore_register_modalities(registry: ModalityRegistrar) -> None:
    """Register the audio handler (`AudioInput`)."""
    registry.add(AudioHandler())


@hookimpl
def mmcore_register_settings(registry: SettingsRegistrar) -> None:
    """The `[audio]` table's schema and validation."""
    registry.add("audio", AudioTable)
