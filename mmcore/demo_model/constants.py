"""Everything fixed about the demo model's inputs: vocabulary, prompts and preprocessing constants.

The image and audio plugins must reproduce the preprocessing below exactly:

* Image: decode to RGB (transparent pixels over white), stretch-resize to ``IMAGE_SIZE`` x
  ``IMAGE_SIZE`` with Pillow's ``IMAGE_RESAMPLE`` filter (aspect ratio ignored), multiply the 0-255
  values by ``IMAGE_RESCALE`` (no mean/std normalisation), lay out as ``[1, 3, H, W]`` float32.
  These are mmcore-image's defaults for a ``[1, 3, 48, 48]`` float32 encoder input.
* Audio: mix to mono (mean over channels), resample to ``AUDIO_SAMPLE_RATE`` (soxr), zero-pad or cut
  to ``N_FRAMES * HOP_LENGTH`` samples, then Whisper log-mel: centred STFT (reflect padding,
  periodic Hann of ``N_FFT``, hop ``HOP_LENGTH``, power 2, last frame dropped), ``N_MELS`` Slaney
  mel filters over 0 - 8 kHz, ``log10(max(x, 1e-10))``, floor at the window's maximum minus 8,
  ``(x + 4) / 4``; laid out as ``[1, N_MELS, N_FRAMES]`` float32. These are mmcore-audio's defaults
  for a ``[1, 32, 300]`` float32 encoder input.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "ANSWER_WORDS",
    "AUDIO_QUESTION",
    "AUDIO_SAMPLE_RATE",
    "AUDIO_TOKEN",
    "BOS_TOKEN",
    "BOTH_QUESTION",
    "COLOURS",
    "EOS_TOKEN",
    "F_MAX",
    "F_MIN",
    "HOP_LENGTH",
    "IMAGE_QUESTION",
    "IMAGE_RESAMPLE",
    "IMAGE_RESCALE",
    "IMAGE_SIZE",
    "IMAGE_TOKEN",
    "N_FFT",
    "N_FRAMES",
    "N_MELS",
    "PITCHES",
    "PITCH_RANGES_HZ",
    "QUESTIONS",
    "SHAPES",
    "SPECIAL_TOKENS",
    "TASKS",
    "Colour",
    "Pitch",
    "Shape",
    "Task",
    "answer_text",
]

Colour = Literal["red", "green", "blue", "yellow"]
Shape = Literal["circle", "square", "triangle"]
Pitch = Literal["low", "medium", "high"]
Task = Literal["image", "audio", "both"]

COLOURS: Final[tuple[Colour, ...]] = ("red", "green", "blue", "yellow")
SHAPES: Final[tuple[Shape, ...]] = ("circle", "square", "triangle")
PITCHES: Final[tuple[Pitch, ...]] = ("low", "medium", "high")
TASKS: Final[tuple[Task, ...]] = ("image", "audio", "both")

#: Tone frequency range of each pitch class, in Hz (the task's definition).
PITCH_RANGES_HZ: Final[dict[Pitch, tuple[float, float]]] = {
    "low": (150.0, 400.0),
    "medium": (600.0, 1200.0),
    "high": (2000.0, 5000.0),
}

BOS_TOKEN: Final = "<|begin_of_text|>"
EOS_TOKEN: Final = "<|end_of_text|>"
IMAGE_TOKEN: Final = "<|image|>"
AUDIO_TOKEN: Final = "<|audio|>"
#: Special tokens in id order (BOS = 0, EOS = 1, image = 2, audio = 3).
SPECIAL_TOKENS: Final[tuple[str, ...]] = (BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, AUDIO_TOKEN)

IMAGE_QUESTION: Final = "What is in the image?"
AUDIO_QUESTION: Final = "What do you hear?"
BOTH_QUESTION: Final = "Describe both."
#: The question asked after the media of each task.
QUESTIONS: Final[dict[Task, str]] = {"image": IMAGE_QUESTION, "audio": AUDIO_QUESTION, "both": BOTH_QUESTION}
#: Every word an answer may contain.
ANSWER_WORDS: Final[tuple[str, ...]] = ("a", *COLOURS, *SHAPES, "and", *PITCHES, "tone")

# Image preprocessing (mmcore-image settings: size, resample, do_rescale/rescale_factor, no normalisation).
IMAGE_SIZE: Final = 48
IMAGE_RESAMPLE: Final = "bicubic"
IMAGE_RESCALE: Final = 1 / 255

# Audio preprocessing (mmcore-audio settings: Whisper log-mel with these parameters).
AUDIO_SAMPLE_RATE: Final = 16000
N_FFT: Final = 400
HOP_LENGTH: Final = 160
N_MELS: Final = 32
N_FRAMES: Final = 300  # 3 s windows
F_MIN: Final = 0.0
F_MAX: Final = 8000.0


def answer_text(colour: Colour | None = None, shape: Shape | None = None, pitch: Pitch | None = None) -> str:
    """The expected answer for an image (colour and shape), a tone (pitch) or both."""
    parts = []
    if colour is not None and shape is not None:
        parts.append(f"a {colour} {shape}")
    if pitch is not None:
        parts.append(f"a {pitch} tone")
    if not parts:
        raise ValueError("an answer needs a colour and a shape, a pitch, or all three")
    return " and ".join(parts)
