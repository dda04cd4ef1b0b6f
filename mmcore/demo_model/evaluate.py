"""Exact-match accuracy on fresh evaluation samples: ``python -m mmcore.demo_model.evaluate``.

Runs the eager model (batched greedy decoding) and the exported ``.pte`` through
``mmcore.runner.MultimodalRunner`` (media preprocessed here with the documented constants and fed as
``EmbeddingsInput`` from the program's encoders; the question as text).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmcore.demo_model.constants import QUESTIONS, TASKS, Task
from mmcore.demo_model.data import Example, eval_examples
from mmcore.demo_model.images import preprocess_image
from mmcore.demo_model.model import DemoModel
from mmcore.demo_model.sequences import Vocabulary, prompt_embeddings
from mmcore.demo_model.sounds import preprocess_audio, preprocess_clips
from mmcore.demo_model.tokenizer import load_tokenizer
from mmcore.demo_model.weights import WEIGHTS_PATH, load_model

__all__ = ["TaskScore", "evaluate_eager", "evaluate_program", "greedy_answers", "main"]

logger = logging.getLogger(__name__)

_MAX_NEW_TOKENS = 12
_EAGER_BATCH = 50


@dataclass
class TaskScore:
    """Exact-match results of one task."""

    task: Task
    correct: int = 0
    total: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (expected, got)

    @property
    def accuracy(self) -> float:
        """Fraction answered exactly."""
        return self.correct / self.total if self.total else 0.0

    def add(self, expected: str, got: str) -> None:
        """Record one answer."""
        self.total += 1
        if got == expected:
            self.correct += 1
        else:
            self.failures.append((expected, got))


def _media(examples: Sequence[Example]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Encoder inputs of a batch of one task's examples: pixels ``[B, 3, S, S]``, log-mel ``[B, M, T]``."""
    pictures = [e.picture for e in examples if e.picture is not None]
    clips = [e.clip for e in examples if e.clip is not None]
    images = torch.from_numpy(np.stack([preprocess_image(p) for p in pictures])) if pictures else None
    mels = torch.from_numpy(preprocess_clips(clips)) if clips else None
    return images, mels


@torch.no_grad()
def greedy_answers(model: DemoModel, vocab: Vocabulary, task: Task, examples: Sequence[Example]) -> list[str]:
    """Greedy answers of the eager model (whole-sequence recompute per step, no KV cache)."""
    images, mels = _media(examples)
    image_embeds = model.vision(images) if images is not None else None  # [B, K_img, D]
    audio_embeds = model.audio(mels) if mels is not None else None  # [B, K_aud, D]
    embeds = prompt_embeddings(model, vocab, task, image_embeds, audio_embeds)  # [B, P, D]
    generated: list[list[int]] = [[] for _ in examples]
    for _ in range(_MAX_NEW_TOKENS):
        next_ids = model.sequence_logits(embeds)[:, -1].argmax(-1)  # [B]
        for row, token in enumerate(next_ids.tolist()):
            generated[row].append(token)
        if all(vocab.eos_id in ids for ids in generated):
            break
        embeds = torch.cat((embeds, model.tok_embeddings(next_ids)[:, None]), dim=1)  # [B, P+1, D]
    return [vocab.decode(ids) if vocab.eos_id in ids else f"{vocab.decode(ids)} <no EOS>" for ids in generated]


def evaluate_eager(weights: Path, seed: int, count: int) -> dict[Task, TaskScore]:
    """Per-task accuracy of the eager model on ``count`` evaluation examples per task."""
    model = load_model(weights)
    vocab = Vocabulary.from_tokenizer(load_tokenizer())
    scores = {}
    for task in TASKS:
        score = TaskScore(task)
        examples = list(eval_examples(seed, count, task))
        for begin in range(0, count, _EAGER_BATCH):
            chunk = examples[begin : begin + _EAGER_BATCH]
            for example, got in zip(chunk, greedy_answers(model, vocab, task, chunk), strict=True):
                score.add(example.answer, got)
        scores[task] = score
    return scores


def evaluate_program(seed: int, count: int, cache_dir: Path | None = None) -> dict[Task, TaskScore]:
    """Per-task accuracy of the exported ``.pte`` run by ``MultimodalRunner`` (greedy)."""
    from mmcore import EmbeddingsInput, GenerationConfig, Program, TokensInput
    from mmcore.demo_model.export import export_demo_program, tokenizer_dir
    from mmcore.runner import MultimodalRunner

    program = Program(export_demo_program(cache_dir))
    runner = MultimodalRunner(program, tokenizer_dir())
    bos = int(program.constant("get_bos_id"))
    config = GenerationConfig(temperature=0.0, max_new_tokens=_MAX_NEW_TOKENS, echo=False)
    vision, audio = program.method("vision_encoder"), program.method("audio_encoder")
    scores = {}
    for task in TASKS:
        score = TaskScore(task)
        for example in eval_examples(seed, count, task):
            inputs: list[object] = [TokensInput([bos])]
            if example.picture is not None:
                pixels = torch.from_numpy(preprocess_image(example.picture))[None]  # [1, 3, S, S]
                inputs.append(EmbeddingsInput(vision.execute([pixels])[0]))
            if example.clip is not None:
                mels = torch.from_numpy(preprocess_audio(example.clip))  # [1, M, T]
                inputs.append(EmbeddingsInput(audio.execute([mels])[0]))
            inputs.append(QUESTIONS[task])
            runner.reset()
            result = runner.generate(inputs, config)
            score.add(example.answer, result.text if result.stop_reason == "eos" else f"{result.text} <no EOS>")
        scores[task] = score
    return scores


def _report(name: str, scores: dict[Task, TaskScore], seconds: float) -> None:
    for score in scores.values():
        logger.info("%s %-5s %4d/%d = %.1f%%", name, score.task, score.correct, score.total, 100 * score.accuracy)
        for expected, got in score.failures[:5]:
            logger.info("    expected %r, got %r", expected, got)
    logger.info("%s evaluation took %.1f s", name, seconds)


def main(argv: list[str] | None = None) -> dict[str, dict[Task, TaskScore]]:
    """Evaluate the eager model and/or the ``.pte``; returns the scores by mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=12345, help="evaluation seed (training uses other streams)")
    parser.add_argument("--count", type=int, default=300, help="eager examples per task")
    parser.add_argument("--pte-count", dest="pte_count", type=int, default=100, help=".pte examples per task")
    parser.add_argument("--mode", choices=("eager", "pte", "both"), default="both")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--cache-dir", dest="cache_dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    results: dict[str, dict[Task, TaskScore]] = {}
    if args.mode in ("eager", "both"):
        began = time.perf_counter()
        results["eager"] = evaluate_eager(args.weights, args.seed, args.count)
        _report("eager", results["eager"], time.perf_counter() - began)
    if args.mode in ("pte", "both"):
        began = time.perf_counter()
        results["pte"] = evaluate_program(args.seed, args.pte_count, args.cache_dir)
        _report(".pte", results["pte"], time.perf_counter() - began)
    return results


if __name__ == "__main__":
    main()
