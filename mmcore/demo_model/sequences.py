"""How prompts and answers are laid out: [BOS] + media embeddings + question tokens -> answer + EOS."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer
from torch import Tensor

from mmcore.demo_model.constants import BOS_TOKEN, EOS_TOKEN, QUESTIONS, TASKS, Task
from mmcore.demo_model.model import DemoModel

__all__ = ["Vocabulary", "prompt_embeddings"]


@dataclass(frozen=True)
class Vocabulary:
    """The ids the demo prompts use."""

    tokenizer: Tokenizer
    bos_id: int
    eos_id: int
    questions: dict[Task, list[int]]

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> Vocabulary:
        """Ids of the special tokens and of each task's question."""
        bos, eos = tokenizer.token_to_id(BOS_TOKEN), tokenizer.token_to_id(EOS_TOKEN)
        if bos is None or eos is None:
            raise ValueError("the tokenizer lacks the BOS or EOS token")
        questions = {task: tokenizer.encode(QUESTIONS[task], add_special_tokens=False).ids for task in TASKS}
        return cls(tokenizer=tokenizer, bos_id=bos, eos_id=eos, questions=questions)

    def answer_ids(self, answer: str) -> list[int]:
        """Ids of ``answer`` followed by EOS."""
        return [*self.tokenizer.encode(answer, add_special_tokens=False).ids, self.eos_id]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` up to (not including) the first EOS."""
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text


def prompt_embeddings(
    model: DemoModel, vocab: Vocabulary, task: Task, image_embeds: Tensor | None, audio_embeds: Tensor | None
) -> Tensor:
    """Prompt embeddings ``[B, P, D]``: BOS, the image then the audio embeddings the task has, the question.

    ``image_embeds: [B, K_img, D]`` and ``audio_embeds: [B, K_aud, D]`` are the encoders' outputs.
    """
    media = image_embeds if image_embeds is not None else audio_embeds
    batch = media.shape[0] if media is not None else 1
    parts = [model.tok_embeddings(torch.tensor([[vocab.bos_id]])).expand(batch, -1, -1)]  # [B, 1, D]
    if task in ("image", "both"):
        if image_embeds is None:
            raise ValueError(f"task {task!r} needs image embeddings")
        parts.append(image_embeds)
    if task in ("audio", "both"):
        if audio_embeds is None:
            raise ValueError(f"task {task!r} needs audio embeddings")
        parts.append(audio_embeds)
    question = torch.tensor([vocab.questions[task]])  # [1, Q]
    parts.append(model.tok_embeddings(question).expand(batch, -1, -1))  # [B, Q, D]
    return torch.cat(parts, dim=1)
