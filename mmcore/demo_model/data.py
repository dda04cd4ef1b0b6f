"""Examples for the three tasks: a training batch generator and a separate evaluation generator."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from mmcore.demo_model.constants import COLOURS, PITCHES, SHAPES, TASKS, Colour, Pitch, Shape, Task, answer_text
from mmcore.demo_model.images import ImageStyle, draw_picture, preprocess_image
from mmcore.demo_model.sounds import Clip, ToneStyle, preprocess_clips, synth_tone

__all__ = [
    "EVAL_IMAGE_STYLE",
    "EVAL_TONE_STYLE",
    "TRAIN_IMAGE_STYLE",
    "TRAIN_TONE_STYLE",
    "Example",
    "TaskBatch",
    "eval_examples",
    "make_example",
    "train_batches",
]

#: Training pictures: wide size/aspect/size/noise/JPEG ranges, half the polygons rotated.
TRAIN_IMAGE_STYLE = ImageStyle()
#: Evaluation pictures: common photo and screen sizes, the task's exact shape-size range.
EVAL_IMAGE_STYLE = ImageStyle(
    sizes=(
        (640, 480),
        (480, 640),
        (800, 600),
        (1024, 768),
        (1280, 720),
        (720, 1280),
        (300, 300),
        (256, 256),
        (500, 375),
        (375, 500),
        (333, 250),
        (200, 150),
        (150, 200),
        (128, 128),
        (96, 96),
        (64, 64),
        (512, 384),
        (1000, 1000),
        (420, 280),
        (280, 420),
    ),
    shape_fraction=(0.15, 0.60),
    rotate_probability=0.25,
    light_background=0.4,
    noise_std=(0.0, 8.0),
    jpeg_probability=0.6,
    jpeg_quality=(30, 95),
    colour_jitter=0.8,
    supersample_below=400,
)
#: Training tones: 70% at 16 kHz, ranges widened by 6%, strong noise allowed.
TRAIN_TONE_STYLE = ToneStyle()
#: Evaluation tones: mostly other sample rates, exact pitch ranges, half stereo, clips under 3 s.
EVAL_TONE_STYLE = ToneStyle(
    sample_rates=(44100, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 48000, 96000),
    first_rate_probability=0.3,
    duration=(0.5, 2.98),
    range_margin=1.0,
    amplitude=(0.1, 0.9),
    snr_db=(15.0, 40.0),
    stereo_probability=0.5,
    fade_probability=0.3,
)


@dataclass(frozen=True)
class Example:
    """One question: the media of ``task`` and the expected answer."""

    task: Task
    picture: Image.Image | None
    clip: Clip | None
    answer: str
    colour: Colour | None = None
    shape: Shape | None = None
    pitch: Pitch | None = None


@dataclass(frozen=True)
class TaskBatch:
    """Preprocessed examples of one task: encoder inputs and answers."""

    task: Task
    images: npt.NDArray[np.float32] | None  # [B, 3, H, W]
    mels: npt.NDArray[np.float32] | None  # [B, N_MELS, N_FRAMES]
    answers: list[str]
    #: Class indices into COLOURS, SHAPES and PITCHES ([B] each; None when the task lacks that medium).
    colour_ids: npt.NDArray[np.int64] | None = None
    shape_ids: npt.NDArray[np.int64] | None = None
    pitch_ids: npt.NDArray[np.int64] | None = None


def make_example(rng: np.random.Generator, task: Task, image_style: ImageStyle, tone_style: ToneStyle) -> Example:
    """A random example of ``task`` (uniform colour, shape and pitch)."""
    picture = clip = None
    colour = shape = pitch = None
    if task in ("image", "both"):
        colour, shape = COLOURS[int(rng.integers(len(COLOURS)))], SHAPES[int(rng.integers(len(SHAPES)))]
        picture = draw_picture(rng, shape, colour, image_style)
    if task in ("audio", "both"):
        pitch = PITCHES[int(rng.integers(len(PITCHES)))]
        clip = synth_tone(rng, pitch, tone_style)
    answer = answer_text(colour, shape, pitch)
    return Example(task=task, picture=picture, clip=clip, answer=answer, colour=colour, shape=shape, pitch=pitch)


def _task_batch(rng: np.random.Generator, task: Task, size: int) -> TaskBatch:
    """``size`` fresh training examples of ``task``, preprocessed."""
    examples = [make_example(rng, task, TRAIN_IMAGE_STYLE, TRAIN_TONE_STYLE) for _ in range(size)]
    images = mels = colour_ids = shape_ids = pitch_ids = None
    if task in ("image", "both"):
        images = np.stack([preprocess_image(e.picture) for e in examples if e.picture is not None])
        colour_ids = np.array([COLOURS.index(e.colour) for e in examples if e.colour is not None])
        shape_ids = np.array([SHAPES.index(e.shape) for e in examples if e.shape is not None])
    if task in ("audio", "both"):
        mels = preprocess_clips([e.clip for e in examples if e.clip is not None])
        pitch_ids = np.array([PITCHES.index(e.pitch) for e in examples if e.pitch is not None])
    answers = [e.answer for e in examples]
    return TaskBatch(task, images, mels, answers, colour_ids=colour_ids, shape_ids=shape_ids, pitch_ids=pitch_ids)


def train_batches(seed: int, step: int, sizes: Mapping[Task, int]) -> list[TaskBatch]:
    """The training batches of one step: ``sizes[task]`` examples of each task, fixed by ``(seed, step)``."""
    rng = np.random.default_rng([seed, step])
    return [_task_batch(rng, task, sizes[task]) for task in TASKS if sizes.get(task, 0) > 0]


def eval_examples(seed: int, count: int, task: Task) -> Iterator[Example]:
    """``count`` evaluation examples of ``task`` from the evaluation styles (independent of training)."""
    for index in range(count):
        rng = np.random.default_rng([seed, 7919, TASKS.index(task), index])
        yield make_example(rng, task, EVAL_IMAGE_STYLE, EVAL_TONE_STYLE)
