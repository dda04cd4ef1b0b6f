"""A built-in demo model that answers what shape and colour it sees and what pitch it hears.

Trained on synthetic data by ``python -m mmcore.demo_model.train`` (weights and tokenizer committed
next to this package), exported on first use by :func:`export_demo_program`, scored by
``python -m mmcore.demo_model.evaluate``. Preprocessing constants live in
:mod:`mmcore.demo_model.constants`.
"""

from mmcore.demo_model.constants import (
    AUDIO_QUESTION,
    AUDIO_SAMPLE_RATE,
    BOTH_QUESTION,
    HOP_LENGTH,
    IMAGE_QUESTION,
    IMAGE_RESAMPLE,
    IMAGE_RESCALE,
    IMAGE_SIZE,
    N_FFT,
    N_FRAMES,
    N_MELS,
)
from mmcore.demo_model.export import export_demo_program, tokenizer_dir

__all__ = [
    "AUDIO_QUESTION",
    "AUDIO_SAMPLE_RATE",
    "BOTH_QUESTION",
    "HOP_LENGTH",
    "IMAGE_QUESTION",
    "IMAGE_RESAMPLE",
    "IMAGE_RESCALE",
    "IMAGE_SIZE",
    "N_FFT",
    "N_FRAMES",
    "N_MELS",
    "export_demo_program",
    "tokenizer_dir",
]
