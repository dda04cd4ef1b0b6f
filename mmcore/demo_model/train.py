"""Train the demo model from scratch on synthetic data: ``python -m mmcore.demo_model.train``.

Deterministic for a given seed, step count and thread count (data of step ``i`` depends only on
``(seed, i)``). Writes the tokenizer directory and the weights file next to this module.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from mmcore.demo_model.constants import COLOURS, PITCHES, SHAPES, Task
from mmcore.demo_model.data import TaskBatch, train_batches
from mmcore.demo_model.model import DemoConfig, DemoModel, parameter_count
from mmcore.demo_model.sequences import Vocabulary, prompt_embeddings
from mmcore.demo_model.tokenizer import TOKENIZER_DIR, load_tokenizer, write_tokenizer
from mmcore.demo_model.weights import WEIGHTS_PATH, save_weights

__all__ = ["Probes", "TrainSettings", "main", "task_loss", "train"]

logger = logging.getLogger(__name__)

_PROBE_WEIGHT = 0.5


class TrainSettings(argparse.Namespace):
    """Command-line settings of a training run."""

    steps: int = 2000
    seed: int = 0
    image_batch: int = 24
    audio_batch: int = 8
    both_batch: int = 16
    lr: float = 1e-3
    warmup: int = 100
    threads: int = 1
    workers: int = 1
    log_every: int = 50
    weights: Path = WEIGHTS_PATH
    tokenizer_dir: Path = TOKENIZER_DIR

    def batch_sizes(self) -> dict[Task, int]:
        """Examples of each task per step."""
        return {"image": self.image_batch, "audio": self.audio_batch, "both": self.both_batch}


class _Batches(IterableDataset[list[TaskBatch]]):
    """Training batches of steps ``[0, steps)``, made in a worker process."""

    def __init__(self, seed: int, steps: int, sizes: dict[Task, int]) -> None:
        self.seed, self.steps, self.sizes = seed, steps, sizes

    def __iter__(self) -> Iterator[list[TaskBatch]]:
        for step in range(self.steps):
            yield train_batches(self.seed, step, self.sizes)


class Probes(nn.Module):
    """Training-only linear classifiers on the encoders' pooled features (colour, shape, pitch).

    Their loss gives the encoders a direct signal early on; they are not part of the saved model.
    """

    def __init__(self, model: DemoModel) -> None:
        super().__init__()
        self.colour = nn.Linear(model.vision.features, len(COLOURS))
        self.shape = nn.Linear(model.vision.features, len(SHAPES))
        self.pitch = nn.Linear(model.audio.features, len(PITCHES))


def _probe_loss(logits: Tensor, labels: np.ndarray | None) -> Tensor:
    if labels is None:
        raise ValueError("a batch with media must carry its class labels")
    return F.cross_entropy(logits, torch.from_numpy(labels))


def task_loss(model: DemoModel, probes: Probes, vocab: Vocabulary, batch: TaskBatch) -> tuple[Tensor, float]:
    """Next-token cross-entropy over the answer tokens (EOS included) plus the probes' losses, and the
    answer-token accuracy."""
    image_embeds = audio_embeds = None
    aux = torch.zeros(())
    if batch.images is not None:
        pooled = model.vision.pooled(torch.from_numpy(batch.images))  # [B, F_img]
        aux = aux + _probe_loss(probes.colour(pooled), batch.colour_ids)
        aux = aux + _probe_loss(probes.shape(pooled), batch.shape_ids)
        image_embeds = model.vision.project(pooled)  # [B, K_img, D]
    if batch.mels is not None:
        pooled = model.audio.pooled(torch.from_numpy(batch.mels))  # [B, F_aud]
        aux = aux + _probe_loss(probes.pitch(pooled), batch.pitch_ids)
        audio_embeds = model.audio.project(pooled)  # [B, K_aud, D]
    prompt = prompt_embeddings(model, vocab, batch.task, image_embeds, audio_embeds)  # [B, P, D]
    targets = torch.tensor([vocab.answer_ids(answer) for answer in batch.answers])  # [B, A+1]
    answer_in = model.tok_embeddings(targets[:, :-1])  # [B, A, D]
    logits = model.sequence_logits(torch.cat((prompt, answer_in), dim=1))  # [B, P+A, V]
    predicted = logits[:, prompt.shape[1] - 1 :]  # [B, A+1, V]
    loss = F.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), targets.reshape(-1))
    accuracy = (predicted.argmax(-1) == targets).float().mean().item()
    return loss + _PROBE_WEIGHT * aux, accuracy


def _learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    return settings.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(settings: TrainSettings) -> DemoModel:
    """Train a fresh model with ``settings`` and return it (eval mode)."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    write_tokenizer(settings.tokenizer_dir)
    vocab = Vocabulary.from_tokenizer(load_tokenizer(settings.tokenizer_dir))
    model = DemoModel(DemoConfig(vocab_size=vocab.tokenizer.get_vocab_size()))
    probes = Probes(model)
    logger.info("model: %d parameters", parameter_count(model))
    parameters = [*model.parameters(), *probes.parameters()]
    decay = [p for p in parameters if p.dim() >= 2]
    no_decay = [p for p in parameters if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr
    )
    loader = DataLoader(
        _Batches(settings.seed, settings.steps, settings.batch_sizes()),
        batch_size=None,
        num_workers=settings.workers,
        prefetch_factor=4,
    )
    began = time.perf_counter()
    totals: dict[str, list[float]] = {}
    model.train()
    for step, batches in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, settings)
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros(())
        for batch in batches:
            loss, accuracy = task_loss(model, probes, vocab, batch)
            loss_sum = loss_sum + loss
            totals.setdefault(batch.task, []).append(accuracy)
            totals.setdefault("loss", []).append(loss.item())
        loss_sum.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
            means = {name: sum(v) / len(v) for name, v in totals.items()}
            print(
                f"step {step + 1}/{settings.steps}  loss {means.pop('loss'):.4f}  token acc "
                + "  ".join(f"{name} {value:.3f}" for name, value in means.items())
                + f"  lr {_learning_rate(step, settings):.2e}  {time.perf_counter() - began:.0f}s",
                flush=True,
            )
            totals.clear()
    model.eval()
    logger.info("trained %d steps in %.1f s", settings.steps, time.perf_counter() - began)
    return model


def main(argv: list[str] | None = None) -> Path:
    """Train and write the weights; returns the weights path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    for task in ("image", "audio", "both"):
        default = getattr(TrainSettings, f"{task}_batch")
        parser.add_argument(f"--{task}-batch", dest=f"{task}_batch", type=int, default=default)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--threads", type=int, default=TrainSettings.threads)
    parser.add_argument("--workers", type=int, default=TrainSettings.workers)
    parser.add_argument("--log-every", dest="log_every", type=int, default=TrainSettings.log_every)
    parser.add_argument("--weights", type=Path, default=TrainSettings.weights)
    parser.add_argument("--tokenizer-dir", dest="tokenizer_dir", type=Path, default=TrainSettings.tokenizer_dir)
    settings = parser.parse_args(argv, namespace=TrainSettings())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    model = train(settings)
    path = save_weights(model, settings.weights)
    logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return path


if __name__ == "__main__":
    main()
